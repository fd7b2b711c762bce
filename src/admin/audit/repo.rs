//! SQL of the audit log.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    admin_id: Uuid,
    action: &str,
    target_type: &str,
    target_id: Option<Uuid>,
    detail: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit (id, admin_id, action, target_type, target_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(admin_id)
    .bind(action)
    .bind(target_type)
    .bind(target_id)
    .bind(detail)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub id: Uuid,
    pub admin_id: Uuid,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<Uuid>,
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Filters of the list; `before` is the keyset cursor (ids are UUIDv7, so
/// `id DESC` is newest first).
#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    pub admin_id: Option<Uuid>,
    pub action: Option<&'a str>,
    pub target_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first, `limit + 1` rows.
pub async fn list(db: &PgPool, f: &AuditFilter<'_>) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, admin_id, action, target_type, target_id, detail, created_at \
         FROM admin_audit \
         WHERE ($1::uuid IS NULL OR admin_id = $1) \
           AND ($2::text IS NULL OR action = $2) \
           AND ($3::uuid IS NULL OR target_id = $3) \
           AND created_at >= COALESCE($4::timestamptz, '-infinity') \
           AND created_at < COALESCE($5::timestamptz, 'infinity') \
           AND id < $6 \
         ORDER BY id DESC LIMIT $7",
    )
    .bind(f.admin_id)
    .bind(f.action)
    .bind(f.target_id)
    .bind(f.since)
    .bind(f.until)
    .bind(f.before.unwrap_or(Uuid::max()))
    .bind(f.limit + 1)
    .fetch_all(db)
    .await
}
