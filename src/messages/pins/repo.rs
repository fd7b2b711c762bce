//! SQL of pinned messages.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A message whose pin changes, row-locked so a pin and a delete of the
/// same message serialise.
#[derive(Debug, sqlx::FromRow)]
pub struct LockedMessage {
    pub chat_id: Uuid,
    pub kind: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
}

pub async fn lock_message(
    conn: &mut PgConnection,
    message_id: Uuid,
) -> Result<Option<LockedMessage>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chat_id, type AS kind, deleted_at IS NOT NULL AS deleted, created_at \
           FROM messages WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(message_id)
    .fetch_optional(conn)
    .await
}

/// One pin.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PinRow {
    pub message_id: Uuid,
    pub pinned_at: DateTime<Utc>,
    pub pinned_by: Option<Uuid>,
}

/// The pin of a message, if any.
pub async fn get(conn: &mut PgConnection, message_id: Uuid) -> Result<Option<PinRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT message_id, pinned_at, pinned_by FROM message_pins WHERE message_id = $1",
    )
    .bind(message_id)
    .fetch_optional(conn)
    .await
}

/// Pins of live messages in a chat (the cap counts only those).
pub async fn count(conn: &mut PgConnection, chat_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM message_pins p JOIN messages m ON m.id = p.message_id \
          WHERE p.chat_id = $1 AND m.deleted_at IS NULL",
    )
    .bind(chat_id)
    .fetch_one(conn)
    .await
}

pub async fn insert(
    conn: &mut PgConnection,
    message_id: Uuid,
    chat_id: Uuid,
    by: Uuid,
) -> Result<PinRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO message_pins (message_id, chat_id, pinned_by) VALUES ($1, $2, $3) \
         RETURNING message_id, pinned_at, pinned_by",
    )
    .bind(message_id)
    .bind(chat_id)
    .bind(by)
    .fetch_one(conn)
    .await
}

/// Removes a message's pin (unpin, or its soft delete); whether one went.
pub async fn remove(conn: &mut PgConnection, message_id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM message_pins WHERE message_id = $1")
        .bind(message_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// A page of a chat's pins, newest pin first, after the keyset position
/// `(pinned_at, message_id)`: live messages only, none from before the
/// viewer's `hidden_at`. One index range of `message_pins_chat_idx`.
pub async fn page(
    conn: &mut PgConnection,
    chat_id: Uuid,
    hidden_at: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<PinRow>, sqlx::Error> {
    // A sentinel rather than `$3 IS NULL OR ...` keeps the row comparison an
    // index condition in a cached generic plan.
    let (at, id) = after.unwrap_or((DateTime::<Utc>::MAX_UTC, Uuid::max()));
    sqlx::query_as(
        "SELECT p.message_id, p.pinned_at, p.pinned_by \
           FROM message_pins p JOIN messages m ON m.id = p.message_id \
          WHERE p.chat_id = $1 AND m.deleted_at IS NULL \
            AND ($2::timestamptz IS NULL OR m.created_at > $2) \
            AND (p.pinned_at, p.message_id) < ($3, $4) \
          ORDER BY p.pinned_at DESC, p.message_id DESC LIMIT $5",
    )
    .bind(chat_id)
    .bind(hidden_at)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
