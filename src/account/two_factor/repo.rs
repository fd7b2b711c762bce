//! SQL of two-factor authentication: the sealed secret with its replay
//! guard, and the recovery codes.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

/// A user's 2FA row.
#[derive(Debug, sqlx::FromRow)]
pub struct TwoFactorRow {
    pub secret_enc: Vec<u8>,
    pub enabled_at: Option<DateTime<Utc>>,
}

pub async fn get(db: impl PgExecutor<'_>, user: Uuid) -> Result<Option<TwoFactorRow>, sqlx::Error> {
    sqlx::query_as("SELECT secret_enc, enabled_at FROM user_two_factor WHERE user_id = $1")
        .bind(user)
        .fetch_optional(db)
        .await
}

/// Whether 2FA is active for the user.
pub async fn is_enabled(db: &PgPool, user: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_two_factor WHERE user_id = $1 AND enabled_at IS NOT NULL)",
    )
    .bind(user)
    .fetch_one(db)
    .await
}

/// Stores a new pending secret (replacing an earlier pending one); false
/// when 2FA is already active.
pub async fn put_pending(db: &PgPool, user: Uuid, sealed: &[u8]) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO user_two_factor (user_id, secret_enc) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE \
           SET secret_enc = EXCLUDED.secret_enc, last_step = NULL, created_at = now() \
           WHERE user_two_factor.enabled_at IS NULL",
    )
    .bind(user)
    .bind(sealed)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Activates the pending secret of `sealed` with `step` as used; false
/// when it is no longer the pending one (enabled meanwhile or replaced).
pub async fn enable(
    db: &mut PgConnection,
    user: Uuid,
    sealed: &[u8],
    step: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE user_two_factor SET enabled_at = now(), last_step = $3 \
         WHERE user_id = $1 AND secret_enc = $2 AND enabled_at IS NULL",
    )
    .bind(user)
    .bind(sealed)
    .bind(step)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Replaces the user's recovery codes with `hashes`.
pub async fn replace_recovery_codes(
    db: &mut PgConnection,
    user: Uuid,
    hashes: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut *db)
        .await?;
    let ids: Vec<Uuid> = hashes.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO user_recovery_codes (id, user_id, code_hash) \
         SELECT id, $2, h FROM UNNEST($1::uuid[], $3::text[]) AS t(id, h)",
    )
    .bind(&ids)
    .bind(user)
    .bind(hashes)
    .execute(db)
    .await
    .map(|_| ())
}

/// Accepts time step `step` once: true only when it is later than every
/// step accepted before (atomic, so two requests cannot both use a code).
pub async fn accept_step(db: &PgPool, user: Uuid, step: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE user_two_factor SET last_step = $2 \
         WHERE user_id = $1 AND enabled_at IS NOT NULL AND (last_step IS NULL OR last_step < $2)",
    )
    .bind(user)
    .bind(step)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Spends an unused recovery code; false when there is none with that hash.
pub async fn use_recovery_code(db: &PgPool, user: Uuid, hash: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE user_recovery_codes SET used_at = now() \
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(user)
    .bind(hash)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes 2FA from the account (disable, account deletion).
pub async fn delete(db: &mut PgConnection, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut *db)
        .await?;
    sqlx::query("DELETE FROM user_two_factor WHERE user_id = $1")
        .bind(user)
        .execute(db)
        .await
        .map(|_| ())
}
