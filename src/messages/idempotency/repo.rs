//! SQL of idempotent sends.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// How long a key holds (`interval` text for the statements).
const WINDOW: &str = "24 hours";

/// The message a live (younger than 24 h) key of `user` stands for, with
/// the hash of the request that created it.
pub async fn find(
    conn: &mut PgConnection,
    user: Uuid,
    key: &str,
) -> Result<Option<(Uuid, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT message_id, request_hash FROM message_idempotency_keys \
          WHERE user_id = $1 AND key = $2 AND created_at > now() - interval '{WINDOW}'"
    ))
    .bind(user)
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// Records `key` for `message_id` inside the send's transaction. False when
/// a live record exists (a concurrent insert of the same key waits here for
/// the other transaction and then sees its row). An expired record is
/// taken over.
pub async fn claim(
    conn: &mut PgConnection,
    user: Uuid,
    key: &str,
    request_hash: &[u8],
    message_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let claimed: Option<bool> = sqlx::query_scalar(&format!(
        "INSERT INTO message_idempotency_keys (user_id, key, request_hash, message_id, created_at) \
         VALUES ($1, $2, $3, $4, now()) \
         ON CONFLICT (user_id, key) DO UPDATE \
            SET request_hash = EXCLUDED.request_hash, message_id = EXCLUDED.message_id, \
                created_at = EXCLUDED.created_at \
          WHERE message_idempotency_keys.created_at <= now() - interval '{WINDOW}' \
         RETURNING true"
    ))
    .bind(user)
    .bind(key)
    .bind(request_hash)
    .bind(message_id)
    .fetch_optional(conn)
    .await?;
    Ok(claimed.is_some())
}

/// Deletes up to `limit` expired records; returns how many.
pub async fn delete_expired(db: &PgPool, limit: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(&format!(
        "DELETE FROM message_idempotency_keys WHERE (user_id, key) IN ( \
           SELECT user_id, key FROM message_idempotency_keys \
            WHERE created_at <= now() - interval '{WINDOW}' \
            ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
    ))
    .bind(limit)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}
