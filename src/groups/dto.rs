//! Wire types of the groups feature (`model.CreateGroupChatRequest`,
//! `model.UpdateGroupChatRequest`, `model.PublicGroupDTO`,
//! `model.GroupPreviewDTO`, `model.GroupInviteResponse`,
//! `model.GroupMemberDTO` and the small request bodies), the rows the repo
//! loads, and the cursors of the two group lists.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::AppError;
use crate::http::multipart::TextFields;
use crate::http::pagination;
use crate::infra::storage::Storage;

/// Group names: 3–100 code points (after trimming, see `service`).
pub const NAME_MIN_CHARS: usize = 3;
/// Longest group name, in code points.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest group description, in code points.
pub const DESCRIPTION_MAX_CHARS: usize = 255;
/// Longest search query of the group lists, in code points.
pub const QUERY_MAX_CHARS: usize = 100;

/// `POST /api/chats/group` body. Every field optional at the decoder so a
/// missing one is our 400, and `null` is accepted.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::CreateGroupChatRequest)]
pub struct CreateGroupChatRequest {
    /// 3–100 characters after trimming, no control characters.
    #[serde(default)]
    #[schema(required = true, min_length = 3, max_length = 100)]
    pub name: Option<String>,
    /// At most 255 characters after trimming.
    #[serde(default)]
    #[schema(max_length = 255)]
    pub description: Option<String>,
    /// User ids of the first members (not the caller), at least one.
    #[serde(default)]
    #[schema(required = true, min_items = 1, value_type = Option<Vec<uuid::Uuid>>)]
    pub member_ids: Option<Vec<String>>,
    /// An uploaded image of the caller (`POST /api/media/upload-url`).
    #[serde(default)]
    #[schema(format = Uuid)]
    pub avatar_media_id: Option<String>,
    /// Listed in the public directory; default `false`.
    #[serde(default)]
    pub is_public: Option<bool>,
}

/// `PUT /api/chats/group/{chatID}` body; absent or `null` fields stay as
/// they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::UpdateGroupChatRequest)]
pub struct UpdateGroupChatRequest {
    /// 3–100 characters after trimming, no control characters.
    #[serde(default)]
    #[schema(min_length = 3, max_length = 100)]
    pub name: Option<String>,
    /// At most 255 characters after trimming.
    #[serde(default)]
    #[schema(max_length = 255)]
    pub description: Option<String>,
    /// An uploaded image of the caller.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub avatar_media_id: Option<String>,
    #[serde(default)]
    pub is_public: Option<bool>,
    /// Remove the avatar (wins over `avatar_media_id`).
    #[serde(default)]
    pub delete_avatar: Option<bool>,
}

impl CreateGroupChatRequest {
    /// The multipart form of the earlier generation: `member_ids` is a JSON
    /// array of ids encoded as a string; the `avatar` file is already
    /// stored as media `avatar`.
    pub fn from_form(fields: &TextFields, avatar: Option<Uuid>) -> Result<Self, AppError> {
        let member_ids = match fields.get("member_ids").map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(
                serde_json::from_str::<Vec<String>>(raw)
                    .map_err(|_| AppError::bad_request("Invalid member_ids format"))?,
            ),
        };
        Ok(Self {
            name: fields.string("name"),
            description: fields.string("description"),
            member_ids,
            avatar_media_id: avatar.map(|id| id.to_string()),
            is_public: fields.bool("is_public")?,
        })
    }
}

impl UpdateGroupChatRequest {
    /// The multipart form of the earlier generation (see
    /// [`CreateGroupChatRequest::from_form`]).
    pub fn from_form(fields: &TextFields, avatar: Option<Uuid>) -> Result<Self, AppError> {
        Ok(Self {
            name: fields.string("name"),
            description: fields.string("description"),
            avatar_media_id: avatar.map(|id| id.to_string()),
            is_public: fields.bool("is_public")?,
            delete_avatar: fields.bool("delete_avatar")?,
        })
    }
}

/// `POST /api/chats/group` as `multipart/form-data` (the earlier client
/// generation).
#[derive(ToSchema)]
pub struct CreateGroupChatForm {
    #[schema(min_length = 3, max_length = 100)]
    pub name: String,
    #[schema(max_length = 255)]
    pub description: Option<String>,
    /// A JSON array of user ids, as a string: `["<uuid>", ...]`.
    #[schema(example = r#"["0190f0c4-7d5e-7c9a-9b1a-2f3e4d5c6b7a"]"#)]
    pub member_ids: String,
    /// Group avatar: JPEG, PNG or WebP, at most 2 MiB (the whole body at
    /// most 5 MiB).
    #[schema(value_type = Option<String>, format = Binary)]
    pub avatar: Option<Vec<u8>>,
    pub is_public: Option<bool>,
}

/// `PUT /api/chats/group/{chatID}` as `multipart/form-data` (the earlier
/// client generation); absent fields stay as they are.
#[derive(ToSchema)]
pub struct UpdateGroupChatForm {
    #[schema(min_length = 3, max_length = 100)]
    pub name: Option<String>,
    #[schema(max_length = 255)]
    pub description: Option<String>,
    /// New avatar (as in the create form); the previous one is released.
    #[schema(value_type = Option<String>, format = Binary)]
    pub avatar: Option<Vec<u8>>,
    /// `true` removes the avatar.
    pub delete_avatar: Option<bool>,
    pub is_public: Option<bool>,
}

/// `POST /api/chats/group/{chatID}/members` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::AddGroupMemberRequest)]
pub struct AddGroupMemberRequest {
    /// Users to add, at least one.
    #[serde(default)]
    #[schema(required = true, min_items = 1, value_type = Option<Vec<uuid::Uuid>>)]
    pub user_ids: Option<Vec<String>>,
}

/// `PUT /api/chats/group/{chatID}/members/{userID}/role` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::UpdateGroupMemberRoleRequest)]
pub struct UpdateGroupMemberRoleRequest {
    /// `admin` or `member`.
    #[serde(default)]
    #[schema(required = true, pattern = "^(admin|member)$", example = "admin")]
    pub role: Option<String>,
}

/// `POST /api/chats/group/{chatID}/transfer` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::TransferGroupOwnershipRequest)]
pub struct TransferGroupOwnershipRequest {
    /// A member of the group other than the caller.
    #[serde(default)]
    #[schema(required = true, format = Uuid)]
    pub new_owner_id: Option<String>,
}

/// `POST /api/chats/group/join/invite` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::JoinGroupByInviteRequest)]
pub struct JoinGroupByInviteRequest {
    #[serde(default)]
    #[schema(required = true)]
    pub invite_code: Option<String>,
}

fn is_empty(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

/// A group of the public directory (`model.PublicGroupDTO`). `id` is the
/// GROUP row id (the reference leaks it here), `chat_id` the chat id.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = model::PublicGroupDTO)]
pub struct PublicGroupDto {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub description: Option<String>,
    pub avatar: String,
    pub member_count: i64,
    pub is_member: bool,
}

/// A group seen through its invite code (`model.GroupPreviewDTO`); `id` is
/// the CHAT id.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = model::GroupPreviewDTO)]
pub struct GroupPreviewDto {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub description: Option<String>,
    pub avatar: String,
    pub member_count: i64,
    pub is_public: bool,
}

/// `PUT /api/chats/group/{chatID}/invite` response (`model.GroupInviteResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = model::GroupInviteResponse)]
pub struct GroupInviteResponse {
    pub invite_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One member of a group (`model.GroupMemberDTO`); `id` is the membership id.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = model::GroupMemberDTO)]
pub struct GroupMemberDto {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub full_name: String,
    pub avatar: String,
    pub role: String,
    /// Display text in the reference's (Go) default time format.
    pub joined_at: String,
    pub is_banned: bool,
}

/// A public-directory row as loaded.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PublicGroupRow {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub member_count: i64,
    pub is_member: bool,
}

impl PublicGroupRow {
    /// The wire form.
    pub fn into_dto(self, storage: &dyn Storage) -> PublicGroupDto {
        PublicGroupDto {
            id: self.id,
            chat_id: self.chat_id,
            name: self.name,
            description: self.description,
            avatar: self
                .avatar
                .map(|f| storage.public_url(&f))
                .unwrap_or_default(),
            member_count: self.member_count,
            is_member: self.is_member,
        }
    }
}

/// A member-list row as loaded.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub avatar: Option<String>,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub is_banned: bool,
}

impl MemberRow {
    /// The wire form.
    pub fn into_dto(self, storage: &dyn Storage) -> GroupMemberDto {
        GroupMemberDto {
            id: self.id,
            user_id: self.user_id,
            username: self.username.unwrap_or_default(),
            full_name: self.full_name.unwrap_or_default(),
            avatar: self
                .avatar
                .map(|f| storage.public_url(&f))
                .unwrap_or_default(),
            role: self.role,
            joined_at: go_time_text(self.joined_at),
            is_banned: self.is_banned,
        }
    }
}

/// The reference's `joined_at` text: Go's default `time.Time` format,
/// e.g. `2026-07-01 11:28:00.123456 +0000 UTC` (fraction without trailing
/// zeros, omitted when zero).
pub fn go_time_text(t: DateTime<Utc>) -> String {
    let nanos = t.timestamp_subsec_nanos();
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!("{}{fraction} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

fn b64_encode(plain: &str) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(plain)
}

/// Decodes URL-safe base64, padded or not.
fn b64_decode(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Member-list cursor: base64 of `<joined_at RFC 3339 nanos>|<membership id>`.
pub fn encode_member_cursor(joined_at: DateTime<Utc>, id: Uuid) -> String {
    b64_encode(&format!(
        "{}|{id}",
        joined_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    ))
}

/// Decodes a member-list cursor (user and admin lists); `None` when
/// malformed or out of the database's range.
pub fn decode_member_cursor(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let text = b64_decode(raw)?;
    let (at, id) = text.rsplit_once('|')?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    let at = pagination::cursor_time(at).ok()?;
    Some((at, Uuid::try_parse(id).ok()?))
}

/// Sort order of the public directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicSort {
    /// `name` ASC, id ASC (default).
    Name,
    /// live member count DESC, id ASC.
    MemberCount,
}

/// Where a public-directory page starts (after this row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicCursor {
    Name(String, Uuid),
    MemberCount(i64, Uuid),
}

const PUBLIC_DELIMITER: &str = "|||";

/// Public-directory cursor: base64 of `<name>|||<group id>` or
/// `<member count>|||<group id>`.
pub fn encode_public_cursor(cursor: &PublicCursor) -> String {
    match cursor {
        PublicCursor::Name(name, id) => b64_encode(&format!("{name}{PUBLIC_DELIMITER}{id}")),
        PublicCursor::MemberCount(n, id) => b64_encode(&format!("{n}{PUBLIC_DELIMITER}{id}")),
    }
}

/// Decodes a public-directory cursor for `sort`. Split at the LAST
/// delimiter (the id never contains one), so names containing `|||` page
/// correctly, unlike the reference. 400 `Bad Request` when malformed, 400
/// `Invalid cursor format` when out of the database's range.
pub fn decode_public_cursor(raw: &str, sort: PublicSort) -> Result<PublicCursor, AppError> {
    let bad = || AppError::bad_request("Bad Request");
    let text = b64_decode(raw).ok_or_else(bad)?;
    let (left, id) = text.rsplit_once(PUBLIC_DELIMITER).ok_or_else(bad)?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    Ok(match sort {
        PublicSort::Name => PublicCursor::Name(pagination::cursor_text(left)?.to_string(), id),
        PublicSort::MemberCount => {
            let n = left.parse().map_err(|_| bad())?;
            PublicCursor::MemberCount(pagination::cursor_count(n)?, id)
        }
    })
}

/// A `LIKE` prefix pattern for `q` (wildcards and the escape escaped).
pub fn like_prefix(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 1);
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_text_trims_the_fraction() {
        let t = DateTime::parse_from_rfc3339("2026-07-01T11:28:00.123450Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(go_time_text(t), "2026-07-01 11:28:00.12345 +0000 UTC");
        let whole = DateTime::parse_from_rfc3339("2026-07-01T11:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(go_time_text(whole), "2026-07-01 11:28:00 +0000 UTC");
    }

    #[test]
    fn member_cursor_round_trips_microseconds() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(
            decode_member_cursor(&encode_member_cursor(at, id)),
            Some((at, id))
        );
        assert_eq!(decode_member_cursor("not base64!"), None);
        assert_eq!(decode_member_cursor(&b64_encode("x|y")), None);
    }

    #[test]
    fn public_cursor_survives_names_with_the_delimiter() {
        let id = Uuid::now_v7();
        let c = PublicCursor::Name("a|||b".into(), id);
        assert_eq!(
            decode_public_cursor(&encode_public_cursor(&c), PublicSort::Name).ok(),
            Some(c)
        );
        let n = PublicCursor::MemberCount(7, id);
        let raw = encode_public_cursor(&n);
        assert_eq!(
            decode_public_cursor(&raw, PublicSort::MemberCount).ok(),
            Some(n)
        );
        // A name cursor is not a count cursor.
        let named = encode_public_cursor(&PublicCursor::Name("x".into(), id));
        let message = |raw: &str, sort| decode_public_cursor(raw, sort).unwrap_err().to_string();
        assert_eq!(message(&named, PublicSort::MemberCount), "Bad Request");
        assert_eq!(message("%%%", PublicSort::Name), "Bad Request");
        let nul = b64_encode(&format!("a\0b|||{id}"));
        assert_eq!(message(&nul, PublicSort::Name), "Invalid cursor format");
        let min = b64_encode(&format!("{}|||{id}", i64::MIN));
        assert_eq!(
            message(&min, PublicSort::MemberCount),
            "Invalid cursor format"
        );
    }

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("50%_a\\"), "50\\%\\_a\\\\%");
    }
}
