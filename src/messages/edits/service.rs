//! Rules of the edit history: visible to whoever may read the message.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::repo;
use crate::error::{AppError, AppResult};
use crate::messages::access::{self, Intent};
use crate::messages::dto::{attachment_url, format_ts, AttachmentRow, MediaDto};
use crate::messages::repo as messages_repo;
use crate::state::AppState;

/// One earlier version of a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageVersion {
    pub content: Option<String>,
    pub attachments: Vec<MediaDto>,
    /// When the edit replaced this version (RFC 3339, seconds).
    pub replaced_at: String,
}

/// `GET /api/messages/{messageID}/history`: newest first; empty for an
/// unedited or deleted message.
pub async fn history(
    state: &AppState,
    me: Uuid,
    message_id: Uuid,
) -> AppResult<Vec<MessageVersion>> {
    let mut conn = crate::infra::db::acquire(&state.db).await?;
    let msg = repo::target(&mut conn, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Message not found"))?;
    let ctx = messages_repo::chat_context(&mut conn, msg.chat_id, me, false).await?;
    access::check(ctx, msg.created_at, Intent::Read)?;
    if msg.deleted {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for row in repo::list(&mut conn, message_id).await? {
        let rows: Vec<AttachmentRow> = serde_json::from_value(row.attachments)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("stored edit attachments: {e}")))?;
        let mut attachments = Vec::with_capacity(rows.len());
        for a in rows {
            let url = attachment_url(state.storage.as_ref(), &a.file_name).await;
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
        out.push(MessageVersion {
            content: row.content,
            attachments,
            replaced_at: format_ts(row.replaced_at),
        });
    }
    Ok(out)
}
