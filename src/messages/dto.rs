//! Wire types of the messages feature: `MessageResponse`, `MediaDTO`,
//! `ReplyPreviewDTO`, the request bodies, and the row shape the repo loads
//! messages into (one JSON object per message, see `repo::MESSAGE_SELECT`).

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::infra::storage::{Bucket, Storage};

/// Longest accepted message text, in Unicode code points.
pub const MAX_CONTENT_CHARS: usize = 4000;
/// Lifetime of presigned attachment URLs.
pub const ATTACHMENT_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Display name of soft-deleted users.
pub const DELETED_USER: &str = "Deleted User";

/// RFC 3339 in UTC with second precision (`2026-07-01T11:28:00Z`), the
/// format of every chat/message timestamp on the wire. Truncates, as the
/// reference does.
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn is_blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

/// An attachment (`model.MediaDTO`). In messages `category` and
/// `upload_status` are empty strings, as in the reference.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[schema(as = model::MediaDTO)]
pub struct MediaDto {
    pub id: Uuid,
    pub file_name: String,
    pub original_name: String,
    pub file_size: i64,
    pub mime_type: String,
    pub category: String,
    pub upload_status: String,
    pub url: String,
}

/// Preview of the message replied to (`model.ReplyPreviewDTO`).
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[schema(as = model::ReplyPreviewDTO)]
pub struct ReplyPreviewDto {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<Uuid>,
    /// Always present: `""` without a sender, `Deleted User` when soft-deleted.
    pub sender_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "is_blank")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub action_data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    pub created_at: String,
}

/// A message as clients see it (`model.MessageResponse`): REST responses and
/// `message.new` / `message.update` payloads. Field order is the wire order.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[schema(as = model::MessageResponse)]
pub struct MessageResponse {
    pub id: Uuid,
    pub chat_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_avatar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_role: Option<String>,
    /// `text`, `image`, `file`, ... or a system type (`system_create`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "is_blank")]
    pub content: Option<String>,
    /// System messages: what happened (`target_id`, `target_name`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub action_data: Option<Value>,
    pub attachments: Vec<MediaDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyPreviewDto>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// Only on the system messages of add / join / leave / kick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// Extension: reactions in order of first use (`me`: the caller
    /// reacted); `[]` when none. Absent from chat-list previews.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reactions: Option<Vec<crate::messages::reactions::dto::ReactionSummary>>,
}

/// How `action_data` user references are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrich {
    /// Reads (history, chat list/detail): `target_name` / `actor_name` added;
    /// ids of soft-deleted users replaced by `Deleted User`.
    Full,
    /// Group mutation responses: only `target_name` (current full name).
    TargetNameOnly,
    /// Raw `action_data`.
    None,
}

/// What a rendering of a message includes; the reference differs per
/// endpoint and clients rely on it.
#[derive(Debug, Clone, Copy)]
pub struct RenderOpts {
    pub reply: bool,
    pub sender_role: bool,
    pub sender_avatar: bool,
    pub enrich: Enrich,
    /// Carry `reactions` (`[]`; readers fill them in).
    pub reactions: bool,
}

impl RenderOpts {
    /// History, send/edit responses and their WS copies.
    pub const FULL: RenderOpts = RenderOpts {
        reply: true,
        sender_role: true,
        sender_avatar: true,
        enrich: Enrich::Full,
        reactions: true,
    };
    /// `last_message` of chat list / detail: no reply preview, no role.
    pub const PREVIEW: RenderOpts = RenderOpts {
        reply: false,
        sender_role: false,
        sender_avatar: true,
        enrich: Enrich::Full,
        reactions: false,
    };
    /// System messages returned by group actions (add, kick, role, ...).
    pub const SYSTEM_ACTION: RenderOpts = RenderOpts {
        reply: false,
        sender_role: true,
        sender_avatar: false,
        enrich: Enrich::TargetNameOnly,
        reactions: true,
    };
}

/// A user referenced by a message (`action_data` target/actor).
#[derive(Debug, Clone, Deserialize)]
pub struct UserRef {
    pub deleted: bool,
    pub name: Option<String>,
}

/// One attachment as loaded.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachmentRow {
    pub id: Uuid,
    pub file_name: String,
    pub original_name: String,
    pub file_size: i64,
    pub mime_type: String,
}

/// The replied-to message as loaded.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplyRow {
    pub id: Uuid,
    pub sender_id: Option<Uuid>,
    pub sender_deleted: bool,
    pub sender_name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: Option<String>,
    pub action_data: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A message with everything needed to render it, loaded in one query
/// (`repo::MESSAGE_SELECT`, serialised by Postgres as one JSON object).
#[derive(Debug, Clone, Deserialize)]
pub struct MessageRow {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub sender_id: Option<Uuid>,
    pub sender_deleted: bool,
    pub sender_name: Option<String>,
    /// `media.file_name` of the sender's avatar.
    pub sender_avatar: Option<String>,
    /// The sender's current group role (None: private chat, not a member).
    pub sender_role: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: Option<String>,
    pub action_data: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub edited_at: Option<DateTime<Utc>>,
    pub attachments: Option<Vec<AttachmentRow>>,
    pub reply: Option<ReplyRow>,
    pub target: Option<UserRef>,
    pub actor: Option<UserRef>,
}

/// Adds the names of referenced users to `action_data` (spec §9.2).
fn enrich_action_data(
    data: Option<Value>,
    target: Option<&UserRef>,
    actor: Option<&UserRef>,
    mode: Enrich,
) -> Option<Value> {
    let mut data = data?;
    let Some(obj) = data.as_object_mut() else {
        return Some(data);
    };
    match mode {
        Enrich::None => {}
        Enrich::TargetNameOnly => {
            if let Some(name) = target.and_then(|t| t.name.clone()) {
                obj.insert("target_name".into(), Value::String(name));
            }
        }
        Enrich::Full => {
            for (id_key, name_key, user) in [
                ("target_id", "target_name", target),
                ("actor_id", "actor_name", actor),
            ] {
                let Some(user) = user else { continue };
                if user.deleted {
                    obj.remove(id_key);
                    obj.insert(name_key.into(), Value::String(DELETED_USER.into()));
                } else if let Some(name) = &user.name {
                    obj.insert(name_key.into(), Value::String(name.clone()));
                }
            }
        }
    }
    Some(data)
}

/// Presigned GET of a private-bucket object; `""` when presigning fails
/// (the message is still worth showing; clients refresh URLs on demand).
pub async fn attachment_url(storage: &dyn Storage, file_name: &str) -> String {
    match storage
        .presign_get(Bucket::Private, file_name, ATTACHMENT_URL_TTL)
        .await
    {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(error = %e, "presigning an attachment URL failed");
            String::new()
        }
    }
}

impl MessageResponse {
    /// Renders a loaded row.
    pub async fn render(row: MessageRow, storage: &dyn Storage, opts: RenderOpts) -> Self {
        let deleted = row.deleted_at.is_some();
        let (sender_id, sender_name, sender_avatar) = match row.sender_id {
            None => (None, None, None),
            Some(_) if row.sender_deleted => (None, Some(DELETED_USER.to_string()), None),
            Some(id) => (
                Some(id),
                row.sender_name.clone().filter(|n| !n.is_empty()),
                match (&row.sender_avatar, opts.sender_avatar) {
                    (Some(f), true) => Some(storage.public_url(f)),
                    _ => None,
                },
            ),
        };
        let sender_role = if opts.sender_role && !row.sender_deleted {
            row.sender_role.clone()
        } else {
            None
        };
        let mut attachments = Vec::new();
        if !deleted {
            for a in row.attachments.unwrap_or_default() {
                let url = attachment_url(storage, &a.file_name).await;
                attachments.push(MediaDto {
                    id: a.id,
                    file_name: a.file_name,
                    original_name: a.original_name,
                    file_size: a.file_size,
                    mime_type: a.mime_type,
                    category: String::new(),
                    upload_status: String::new(),
                    url,
                });
            }
        }
        let reply_to = if opts.reply {
            row.reply.map(|r| {
                let r_deleted = r.deleted_at.is_some();
                let (sid, sname) = match r.sender_id {
                    None => (None, String::new()),
                    Some(_) if r.sender_deleted => (None, DELETED_USER.to_string()),
                    Some(id) => (Some(id), r.sender_name.unwrap_or_default()),
                };
                ReplyPreviewDto {
                    id: r.id,
                    sender_id: sid,
                    sender_name: sname,
                    kind: r.kind,
                    content: if r_deleted { None } else { r.content },
                    action_data: if r_deleted { None } else { r.action_data },
                    deleted_at: r.deleted_at.map(format_ts),
                    created_at: format_ts(r.created_at),
                }
            })
        } else {
            None
        };
        let action_data = if deleted {
            None
        } else {
            enrich_action_data(
                row.action_data,
                row.target.as_ref(),
                row.actor.as_ref(),
                opts.enrich,
            )
        };
        MessageResponse {
            id: row.id,
            chat_id: row.chat_id,
            sender_id,
            sender_name,
            sender_avatar,
            sender_role,
            kind: row.kind,
            content: if deleted { None } else { row.content },
            action_data,
            attachments,
            reply_to,
            created_at: format_ts(row.created_at),
            deleted_at: row.deleted_at.map(format_ts),
            edited_at: if deleted {
                None
            } else {
                row.edited_at.map(format_ts)
            },
            member_count: None,
            reactions: opts.reactions.then(Vec::new),
        }
    }
}

/// `POST /api/messages` body. Ids are strings so a malformed id is a 400 of
/// ours rather than a decoder failure; `null` is accepted everywhere.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::SendMessageRequest)]
pub struct SendMessageRequest {
    #[serde(default)]
    #[schema(required = true, format = Uuid)]
    pub chat_id: Option<String>,
    /// At most 4000 characters; required unless there are attachments.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub content: Option<String>,
    /// Completed uploads of the caller, no duplicates.
    #[serde(default)]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub attachment_ids: Option<Vec<String>>,
    #[serde(default)]
    #[schema(format = Uuid)]
    pub reply_to_id: Option<String>,
}

/// `PUT /api/messages/{id}` body. Whether attachments are edited depends on
/// the presence of the `attachment_ids` key, so the handler decodes the raw
/// object first (see `routes::edit`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::EditMessageRequest)]
pub struct EditMessageRequest {
    /// The new text (at most 4000 characters); required unless
    /// `attachment_ids` is given.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub content: Option<String>,
    /// When present, replaces the attachments (`null` or `[]` removes them).
    #[serde(default)]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub attachment_ids: Option<Vec<String>>,
}

/// A decoded edit request.
#[derive(Debug)]
pub struct EditInput {
    pub content: Option<String>,
    /// `Some(ids)` when the `attachment_ids` key was present (null → empty).
    pub attachment_ids: Option<Vec<Uuid>>,
}

/// Decodes an edit body: lenient JSON object, wrong types rejected.
pub fn decode_edit(bytes: &[u8]) -> Option<(EditMessageRequest, bool)> {
    let value: Value = crate::http::json::decode_lenient(bytes)?;
    let obj: &Map<String, Value> = value.as_object()?;
    let has_attachments = obj.contains_key("attachment_ids");
    let req: EditMessageRequest = serde_json::from_value(value).ok()?;
    Some((req, has_attachments))
}

/// `message.delete` payload.
#[derive(Debug, Clone, Serialize)]
pub struct MessageDeletedPayload {
    pub message_id: Uuid,
}

/// Encodes a message cursor: base64 (URL-safe, padded) of the id string.
pub fn encode_message_cursor(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(id.to_string())
}

/// Decodes a message cursor; `None` when it is not base64 of a UUID.
pub fn decode_message_cursor(raw: &str) -> Option<Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    Uuid::try_parse(&text).ok()
}

/// Paging direction of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards older messages (scroll up), the default.
    Older,
    /// Towards newer messages (scroll down).
    Newer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_second_precision() {
        let t = DateTime::parse_from_rfc3339("2026-07-01T11:28:00.987654+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_ts(t), "2026-07-01T09:28:00Z");
    }

    #[test]
    fn message_cursor_round_trips_and_rejects_garbage() {
        let id = Uuid::now_v7();
        let c = encode_message_cursor(id);
        assert_eq!(decode_message_cursor(&c), Some(id));
        assert_eq!(decode_message_cursor("bukan-base64-valid"), None);
        let not_uuid = base64::engine::general_purpose::URL_SAFE.encode("hello");
        assert_eq!(decode_message_cursor(&not_uuid), None);
    }

    #[test]
    fn enrichment_replaces_deleted_users() {
        let data = serde_json::json!({"target_id": "a", "actor_id": "b"});
        let out = enrich_action_data(
            Some(data),
            Some(&UserRef {
                deleted: true,
                name: None,
            }),
            Some(&UserRef {
                deleted: false,
                name: Some("Bob".into()),
            }),
            Enrich::Full,
        )
        .unwrap();
        assert!(out.get("target_id").is_none());
        assert_eq!(out["target_name"], DELETED_USER);
        assert_eq!(out["actor_id"], "b");
        assert_eq!(out["actor_name"], "Bob");
    }

    #[test]
    fn edit_body_detects_attachment_key() {
        let (r, has) = decode_edit(br#"{"content":"x"}"#).unwrap();
        assert_eq!(r.content.as_deref(), Some("x"));
        assert!(!has);
        let (r, has) = decode_edit(br#"{"content":"x","attachment_ids":null}"#).unwrap();
        assert!(has && r.attachment_ids.is_none());
        assert!(decode_edit(br#"{"content":5}"#).is_none());
        assert!(decode_edit(b"[1]").is_none());
    }
}
