//! SQL of login sessions.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// Most sessions a list shows (newest first).
pub const LIST_LIMIT: i64 = 100;

/// A new session row.
pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<&'a str>,
    pub name: &'a str,
}

pub async fn insert(db: impl PgExecutor<'_>, s: &NewSession<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, expires_at, ip, user_agent, name) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(s.id)
    .bind(s.user_id)
    .bind(s.expires_at)
    .bind(s.ip.as_deref())
    .bind(s.user_agent)
    .bind(s.name)
    .execute(db)
    .await
    .map(|_| ())
}

/// A session as listed.
#[derive(Debug, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub name: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// The user's live (not revoked, not expired) sessions, newest first.
pub async fn list_live(db: &PgPool, user: Uuid) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, ip, user_agent, created_at, last_seen_at FROM sessions \
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() \
         ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(user)
    .bind(LIST_LIMIT)
    .fetch_all(db)
    .await
}

/// Revokes one live session of `user`; false when there is none with that
/// id (another user's, unknown, already ended or expired).
pub async fn revoke_one(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE sessions SET revoked_at = now() \
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(id)
    .bind(user)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Revokes every live session of `user` except `keep`; returns their ids.
pub async fn revoke_others(
    db: &PgPool,
    user: Uuid,
    keep: Option<Uuid>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = now() \
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() \
           AND ($2::uuid IS NULL OR id <> $2) \
         RETURNING id",
    )
    .bind(user)
    .bind(keep)
    .fetch_all(db)
    .await
}

/// Revokes every session of `user` (inside a revoke-all transaction).
pub async fn revoke_all(db: impl PgExecutor<'_>, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user)
        .execute(db)
        .await
        .map(|_| ())
}

/// Deletes sessions that expired before `cutoff` (cleanup job; a revoked
/// row goes when it would have expired), at most `limit` rows.
pub async fn delete_stale(
    db: &PgPool,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM sessions WHERE id IN ( \
           SELECT id FROM sessions WHERE expires_at < $1 \
           LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(cutoff)
    .bind(limit)
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}
