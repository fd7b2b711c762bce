//! SQL of the edit history.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Keeps the current version of a message (text and attachment metadata)
/// as replaced at `at`; call before the edit changes it.
pub async fn record(
    conn: &mut PgConnection,
    message_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_edits (id, message_id, content, attachments, replaced_at) \
         SELECT $1, m.id, m.content, \
                COALESCE((SELECT jsonb_agg(jsonb_build_object( \
                            'id', md.id, 'file_name', md.file_name, \
                            'original_name', md.original_name, 'file_size', md.file_size, \
                            'mime_type', md.mime_type) ORDER BY md.id) \
                            FROM media md WHERE md.message_id = m.id), '[]'::jsonb), $3 \
           FROM messages m WHERE m.id = $2",
    )
    .bind(Uuid::now_v7())
    .bind(message_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a message's earlier versions (its soft delete).
pub async fn forget(conn: &mut PgConnection, message_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM message_edits WHERE message_id = $1")
        .bind(message_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// One earlier version.
#[derive(Debug, sqlx::FromRow)]
pub struct EditRow {
    pub content: Option<String>,
    pub attachments: Value,
    pub replaced_at: DateTime<Utc>,
}

/// A message's earlier versions, newest first.
pub async fn list(conn: &mut PgConnection, message_id: Uuid) -> Result<Vec<EditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT content, attachments, replaced_at FROM message_edits WHERE message_id = $1 \
          ORDER BY replaced_at DESC, id DESC",
    )
    .bind(message_id)
    .fetch_all(conn)
    .await
}

/// The message as the history check needs it.
#[derive(Debug, sqlx::FromRow)]
pub struct Target {
    pub chat_id: Uuid,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
}

pub async fn target(
    conn: &mut PgConnection,
    message_id: Uuid,
) -> Result<Option<Target>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chat_id, deleted_at IS NOT NULL AS deleted, created_at FROM messages WHERE id = $1",
    )
    .bind(message_id)
    .fetch_optional(conn)
    .await
}
