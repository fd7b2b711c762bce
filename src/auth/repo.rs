//! SQL of the auth feature: credentials lookups, user creation, password
//! updates, Google identities.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// What sign-in needs to know about an account.
#[derive(Debug, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub email: Option<String>,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub password_hash: Option<String>,
    pub role: String,
    pub is_banned: bool,
    pub banned_until: Option<DateTime<Utc>>,
    pub avatar_file: Option<String>,
}

const ACCOUNT_COLUMNS: &str = "u.id, u.email, u.username, u.full_name, u.password_hash, u.role, \
     u.is_banned, u.banned_until, m.file_name AS avatar_file";

/// The active (not soft-deleted) account with this normalised email.
pub async fn find_by_email(db: &PgPool, email: &str) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM users u LEFT JOIN media m ON m.id = u.avatar_id \
         WHERE u.email = $1 AND u.deleted_at IS NULL"
    ))
    .bind(email)
    .fetch_optional(db)
    .await
}

/// The active account with this id.
pub async fn find_by_id(db: &PgPool, id: Uuid) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM users u LEFT JOIN media m ON m.id = u.avatar_id \
         WHERE u.id = $1 AND u.deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The active account linked to this Google subject id.
pub async fn find_by_google_id(
    db: &PgPool,
    provider_id: &str,
) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM user_identities i \
         JOIN users u ON u.id = i.user_id \
         LEFT JOIN media m ON m.id = u.avatar_id \
         WHERE i.provider = 'google' AND i.provider_id = $1 AND u.deleted_at IS NULL"
    ))
    .bind(provider_id)
    .fetch_optional(db)
    .await
}

/// Lifts a ban whose end time has passed.
pub async fn lift_expired_ban(db: &PgPool, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET is_banned = false, banned_until = NULL, ban_reason = NULL, \
         updated_at = now() WHERE id = $1 AND is_banned AND banned_until <= now()",
    )
    .bind(user)
    .execute(db)
    .await
    .map(|_| ())
}

/// Which of email / username an active account already uses.
pub async fn taken(db: &PgPool, email: &str, username: &str) -> Result<(bool, bool), sqlx::Error> {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM users WHERE email = $1), \
                EXISTS (SELECT 1 FROM users WHERE username = $2)",
    )
    .bind(email)
    .bind(username)
    .fetch_one(db)
    .await
}

/// Whether any account uses `username`.
pub async fn username_taken(db: &PgPool, username: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)")
        .bind(username)
        .fetch_one(db)
        .await
}

/// A new account row (role `user`).
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub username: &'a str,
    pub full_name: &'a str,
    pub password_hash: Option<&'a str>,
}

/// Inserts a user. Unique violations surface as `sqlx::Error::Database`
/// with the constraint name (`users_email_key`, `users_username_key`).
pub async fn insert_user(db: impl PgExecutor<'_>, u: &NewUser<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, username, full_name, password_hash) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(u.id)
    .bind(u.email)
    .bind(u.username)
    .bind(u.full_name)
    .bind(u.password_hash)
    .execute(db)
    .await
    .map(|_| ())
}

/// Sets a new password hash; false when the account is gone.
pub async fn set_password(
    db: impl PgExecutor<'_>,
    user: Uuid,
    hash: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE users SET password_hash = $2, updated_at = now() \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(user)
    .bind(hash)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Links a Google identity to a user unless one exists already.
pub async fn link_google(
    db: impl PgExecutor<'_>,
    user: Uuid,
    provider_id: &str,
    email: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_identities (id, provider, provider_id, provider_email, user_id) \
         VALUES ($1, 'google', $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(provider_id)
    .bind(email)
    .bind(user)
    .execute(db)
    .await
    .map(|_| ())
}

/// A completed `user_avatar` media row for a server-side upload.
pub struct NewAvatar<'a> {
    pub id: Uuid,
    pub file_name: &'a str,
    pub original_name: &'a str,
    pub size: i64,
    pub mime_type: &'a str,
    pub uploaded_by: Uuid,
}

/// Inserts the media row of a server-side avatar upload.
pub async fn insert_avatar_media(
    db: impl PgExecutor<'_>,
    m: &NewAvatar<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO media (id, file_name, original_name, file_size, mime_type, category, \
                            upload_status, completed_at, uploaded_by_id) \
         VALUES ($1, $2, $3, $4, $5, 'user_avatar', 'completed', now(), $6)",
    )
    .bind(m.id)
    .bind(m.file_name)
    .bind(m.original_name)
    .bind(m.size)
    .bind(m.mime_type)
    .bind(m.uploaded_by)
    .execute(db)
    .await
    .map(|_| ())
}

/// Makes `media` the user's avatar.
pub async fn set_avatar(
    db: impl PgExecutor<'_>,
    user: Uuid,
    media: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET avatar_id = $2, updated_at = now() WHERE id = $1")
        .bind(user)
        .bind(media)
        .execute(db)
        .await
        .map(|_| ())
}

/// The unique constraint a database error violated, if that is what it is.
pub fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Some(d.constraint().unwrap_or_default().to_string())
        }
        _ => None,
    }
}
