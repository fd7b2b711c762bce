//! Wire types of the chats feature (`model.ChatListResponse`,
//! `model.ChatResponse`, the private-chat request), the row the chat queries
//! load, query-string parsing and the chat-list cursor.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::AppError;
use crate::http::pagination;
use crate::infra::storage::Storage;
use crate::messages::dto::{format_ts, MessageResponse, DELETED_USER};

/// Default page size of every list.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page size of every list.
pub const MAX_LIMIT: i64 = 50;
/// Longest chat-list search query, in code points.
pub const MAX_QUERY_CHARS: usize = 100;

/// A chat as it appears in the list, the detail, `chat.new` and
/// `chat.update` (`model.ChatListResponse`). Field order is the wire order.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[schema(as = model::ChatListResponse)]
pub struct ChatListResponse {
    pub id: Uuid,
    /// `private` or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub avatar: String,
    /// Never omitted: `null` when there is none.
    #[schema(required = true)]
    pub last_message: Option<MessageResponse>,
    pub unread_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_at: Option<String>,
    pub is_blocked_by_me: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_user_id: Option<Uuid>,
    pub other_user_is_deleted: bool,
    pub other_user_is_banned: bool,
    pub is_blocked_by_other: bool,
    pub is_online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_last_read_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_public: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_role: Option<String>,
    pub member_count: i64,
}

/// One chat seen by one viewer, as loaded by `repo` (one row per chat and
/// viewer, everything but presence and URLs resolved in SQL).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatRow {
    pub viewer: Uuid,
    pub chat_id: Uuid,
    pub chat_type: String,
    /// Private participant or group member (public-group outsiders: false).
    pub is_participant: bool,
    pub other_id: Option<Uuid>,
    pub unread: i64,
    pub last_read_at: Option<DateTime<Utc>>,
    pub hidden_at: Option<DateTime<Utc>>,
    pub other_last_read_at: Option<DateTime<Utc>>,
    pub group_id: Option<Uuid>,
    pub my_role: Option<String>,
    pub last_message_at: Option<DateTime<Utc>>,
    pub other_exists: bool,
    pub other_deleted: bool,
    pub other_name: Option<String>,
    pub other_avatar: Option<String>,
    pub other_banned: bool,
    pub blocked_by_me: bool,
    pub blocked_by_other: bool,
    pub group_name: Option<String>,
    pub description: Option<String>,
    pub is_public: Option<bool>,
    pub invite_code: Option<String>,
    pub invite_expires_at: Option<DateTime<Utc>>,
    pub group_avatar: Option<String>,
    pub member_count: i64,
    /// The `last_message` rendered as a `messages::dto::MessageRow` object.
    pub last_message: Option<serde_json::Value>,
}

impl ChatRow {
    /// Whether the other party of a private chat is gone (slot NULL or
    /// soft-deleted).
    pub fn other_gone(&self) -> bool {
        !self.other_exists || self.other_deleted
    }

    /// The other party, when it is a live account whose presence may be shown.
    pub fn presence_candidate(&self) -> Option<Uuid> {
        if self.chat_type != "private"
            || self.other_gone()
            || self.other_banned
            || self.blocked_by_me
            || self.blocked_by_other
        {
            return None;
        }
        self.other_id
    }
}

impl ChatListResponse {
    /// Builds the response from a loaded row, its rendered last message and
    /// the other party's presence.
    pub fn build(
        row: ChatRow,
        last_message: Option<MessageResponse>,
        online: bool,
        storage: &dyn Storage,
    ) -> Self {
        let mut r = ChatListResponse {
            id: row.chat_id,
            kind: row.chat_type.clone(),
            name: String::new(),
            avatar: String::new(),
            last_message: if row.is_participant {
                last_message
            } else {
                None
            },
            unread_count: if row.is_participant { row.unread } else { 0 },
            last_read_at: row.last_read_at.map(format_ts),
            hidden_at: None,
            is_blocked_by_me: false,
            other_user_id: None,
            other_user_is_deleted: false,
            other_user_is_banned: false,
            is_blocked_by_other: false,
            is_online: false,
            other_last_read_at: None,
            description: None,
            is_public: None,
            invite_code: None,
            invite_expires_at: None,
            my_role: None,
            member_count: 0,
        };
        if row.chat_type == "private" {
            r.hidden_at = row.hidden_at.map(format_ts);
            r.other_user_id = row.other_id;
            r.other_last_read_at = row.other_last_read_at.map(format_ts);
            if row.other_gone() {
                r.name = DELETED_USER.to_string();
                r.other_user_is_deleted = true;
            } else {
                r.name = row.other_name.clone().unwrap_or_default();
                r.avatar = row
                    .other_avatar
                    .as_deref()
                    .map(|f| storage.public_url(f))
                    .unwrap_or_default();
                r.other_user_is_banned = row.other_banned;
                r.is_blocked_by_me = row.blocked_by_me;
                r.is_blocked_by_other = row.blocked_by_other;
                r.is_online = online && row.presence_candidate().is_some();
            }
        } else {
            let privileged = matches!(row.my_role.as_deref(), Some("owner" | "admin"));
            let public = row.is_public.unwrap_or(false);
            r.name = row.group_name.unwrap_or_default();
            r.avatar = row
                .group_avatar
                .as_deref()
                .map(|f| storage.public_url(f))
                .unwrap_or_default();
            r.description = row.description;
            r.is_public = Some(public);
            if public || privileged {
                r.invite_code = row.invite_code;
            }
            if privileged {
                r.invite_expires_at = row.invite_expires_at.map(format_ts);
            }
            r.my_role = row.my_role;
            r.member_count = row.member_count;
        }
        r
    }
}

/// `POST /api/chats/private` response (`model.ChatResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = model::ChatResponse)]
pub struct ChatResponse {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
}

/// `POST /api/chats/private` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::CreatePrivateChatRequest)]
pub struct CreatePrivateChatRequest {
    /// The other user's id.
    #[serde(default)]
    #[schema(required = true, format = Uuid)]
    pub target_user_id: Option<String>,
}

/// `chat.read` payload.
#[derive(Debug, Clone, Serialize)]
pub struct ChatReadPayload {
    pub chat_id: Uuid,
    pub user_id: Uuid,
}

/// `chat.hide` / `chat.delete` payload.
#[derive(Debug, Clone, Serialize)]
pub struct ChatIdPayload {
    pub chat_id: Uuid,
}

/// The decoded query string (first value of each key wins).
#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Parses a raw query string; never fails.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, `None` when absent or empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// `limit` per the shared rule: non-integer → 400 `Invalid limit`;
    /// absent or 0 → default; negative or above the maximum → 400.
    pub fn limit(&self) -> Result<i64, AppError> {
        let Some(raw) = self.non_empty("limit") else {
            return Ok(DEFAULT_LIMIT);
        };
        let n: i64 = raw
            .trim()
            .parse()
            .map_err(|_| AppError::bad_request("Invalid limit"))?;
        match n {
            0 => Ok(DEFAULT_LIMIT),
            1..=MAX_LIMIT => Ok(n),
            _ => Err(AppError::bad_request("Bad Request")),
        }
    }
}

/// Chat-list cursor: base64 (URL-safe, padded) of
/// `<last_message_at Unix microseconds>,<chat id>`.
pub fn encode_chat_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(format!("{},{}", at.timestamp_micros(), id))
}

/// Decodes a chat-list cursor; `Ok(None)` when malformed (the list then
/// starts from the first page, as the reference does), 400 `Invalid cursor
/// format` when well-formed but out of the database's range.
pub fn decode_chat_cursor(raw: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, AppError> {
    let Some((micros, id)) = chat_cursor_parts(raw) else {
        return Ok(None);
    };
    Ok(Some((pagination::cursor_micros(micros)?, id)))
}

/// The parts `(micros, id)` of a `<Unix microseconds>,<uuid>` cursor
/// (chat list, pins list); `None` when malformed.
pub fn chat_cursor_parts(raw: &str) -> Option<(i64, Uuid)> {
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split(',');
    let (micros, id) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((micros.parse().ok()?, Uuid::try_parse(id).ok()?))
}

/// Escapes `%`, `_` and `\` for a `LIKE`/`ILIKE` pattern and wraps it as a
/// substring match.
pub fn like_substring(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
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
    fn chat_cursor_round_trips_with_microseconds() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let c = encode_chat_cursor(at, id);
        assert_eq!(decode_chat_cursor(&c).unwrap(), Some((at, id)));
        assert_eq!(decode_chat_cursor("bukan-base64-valid").unwrap(), None);
        let three = base64::engine::general_purpose::URL_SAFE.encode(format!("1,{id},x"));
        assert_eq!(decode_chat_cursor(&three).unwrap(), None);
        let far =
            base64::engine::general_purpose::URL_SAFE.encode(format!("-8000000000000000000,{id}"));
        assert!(decode_chat_cursor(&far).is_err());
    }

    #[test]
    fn limit_rules() {
        let q = |s: &str| QueryParams::parse(Some(s)).limit();
        assert_eq!(q("").unwrap(), 20);
        assert_eq!(q("limit=0").unwrap(), 20);
        assert_eq!(q("limit=50").unwrap(), 50);
        assert!(matches!(q("limit=x"), Err(AppError::BadRequest(m)) if m == "Invalid limit"));
        assert!(matches!(q("limit=51"), Err(AppError::BadRequest(m)) if m == "Bad Request"));
        assert!(matches!(q("limit=-1"), Err(AppError::BadRequest(m)) if m == "Bad Request"));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_substring("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
