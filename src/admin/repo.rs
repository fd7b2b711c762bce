//! SQL of the admin console (users part).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::dto::DashboardStats;

/// Effective ban of the `u` alias (an expired temporary ban counts as none).
const ACTIVE_BAN: &str = "(u.is_banned AND (u.banned_until IS NULL OR u.banned_until > now()))";

/// Platform totals (deleted users, dissolved groups and deleted messages
/// included, as the contract defines them).
pub async fn dashboard(db: &mut PgConnection) -> Result<DashboardStats, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM users) AS total_users, \
                (SELECT count(*) FROM group_chats) AS total_groups, \
                (SELECT count(*) FROM messages) AS total_messages, \
                (SELECT count(*) FROM reports WHERE status = 'pending') AS active_reports",
    )
    .fetch_one(db)
    .await
}

/// A row of the admin user list.
#[derive(Debug, sqlx::FromRow)]
pub struct UserListRow {
    pub id: Uuid,
    pub username: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: String,
    pub is_banned: bool,
    pub created_at: DateTime<Utc>,
}

/// Filters of the admin user list.
pub struct UserFilter<'a> {
    pub role: Option<&'a str>,
    /// Already LIKE-escaped.
    pub query: Option<&'a str>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// The statement of [`list_users`]: `$1` role, `$2` cursor, `$3` text,
/// `$4` limit. Keyset bounds here and in the other admin lists get a
/// sentinel on the first page (`Uuid::max()`, a COALESCE for times), not
/// `$n IS NULL OR …`, so a generic plan starts its index walk at the
/// cursor instead of filtering its way there.
pub fn list_users_sql() -> String {
    format!(
        "SELECT u.id, u.username, u.email, u.full_name, u.role, {ACTIVE_BAN} AS is_banned, \
           u.created_at \
         FROM users u \
         WHERE u.deleted_at IS NULL \
           AND ($1::text IS NULL OR u.role = $1) \
           AND u.id < $2 \
           AND ($3::text IS NULL \
                OR u.username ILIKE '%' || $3 || '%' \
                OR u.email ILIKE '%' || $3 || '%' \
                OR u.full_name ILIKE '%' || $3 || '%') \
         ORDER BY u.id DESC LIMIT $4"
    )
}

/// Live users newest first (`id DESC`, keyset on `id`), `limit + 1` rows.
pub async fn list_users(
    db: &mut PgConnection,
    f: &UserFilter<'_>,
) -> Result<Vec<UserListRow>, sqlx::Error> {
    sqlx::query_as(&list_users_sql())
        .bind(f.role)
        .bind(f.before.unwrap_or(Uuid::max()))
        .bind(f.query)
        .bind(f.limit + 1)
        .fetch_all(db)
        .await
}

/// Everything the admin user detail shows (soft-deleted users included).
#[derive(Debug, sqlx::FromRow)]
pub struct UserDetailRow {
    pub id: Uuid,
    pub username: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_file: Option<String>,
    pub role: String,
    pub is_banned: bool,
    pub ban_reason: Option<String>,
    pub banned_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub total_messages: i64,
    pub total_groups: i64,
}

pub async fn user_detail(db: &PgPool, id: Uuid) -> Result<Option<UserDetailRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT u.id, u.username, u.email, u.full_name, u.bio, a.file_name AS avatar_file, u.role, \
           {ACTIVE_BAN} AS is_banned, u.ban_reason, u.banned_until, u.created_at, u.last_seen_at, \
           (SELECT count(*) FROM messages m WHERE m.sender_id = u.id) AS total_messages, \
           (SELECT count(*) FROM group_members gm WHERE gm.user_id = u.id) AS total_groups \
         FROM users u LEFT JOIN media a ON a.id = u.avatar_id \
         WHERE u.id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The moderation-relevant state of a user, locked for the decision.
#[derive(Debug, sqlx::FromRow)]
pub struct ModerationRow {
    pub id: Uuid,
    pub role: String,
    pub is_banned: bool,
    pub ban_reason: Option<String>,
    pub banned_until: Option<DateTime<Utc>>,
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_id: Option<Uuid>,
}

pub async fn lock_user(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<ModerationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, role, is_banned, ban_reason, banned_until, full_name, bio, avatar_id \
         FROM users WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Bans a user (permanently when `until` is `None`).
pub async fn ban(
    conn: &mut PgConnection,
    id: Uuid,
    reason: &str,
    until: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET is_banned = true, ban_reason = $2, banned_until = $3, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lifts a ban.
pub async fn unban(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET is_banned = false, ban_reason = NULL, banned_until = NULL, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Profile fields an admin resets; `None` leaves a field alone.
pub struct ProfileReset {
    pub clear_bio: bool,
    pub full_name: Option<String>,
    pub clear_avatar: bool,
}

pub async fn reset_profile(
    conn: &mut PgConnection,
    id: Uuid,
    r: &ProfileReset,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET \
           bio = CASE WHEN $2 THEN NULL ELSE bio END, \
           full_name = COALESCE($3, full_name), \
           avatar_id = CASE WHEN $4 THEN NULL ELSE avatar_id END, \
           updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(r.clear_bio)
    .bind(r.full_name.as_deref())
    .bind(r.clear_avatar)
    .execute(conn)
    .await?;
    Ok(())
}

/// The public profile fields of `user.update`.
#[derive(Debug, sqlx::FromRow)]
pub struct PublicProfileRow {
    pub id: Uuid,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_file: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

pub async fn public_profile(
    db: &PgPool,
    id: Uuid,
) -> Result<Option<PublicProfileRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.username, u.full_name, u.bio, a.file_name AS avatar_file, u.last_seen_at \
         FROM users u LEFT JOIN media a ON a.id = u.avatar_id WHERE u.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}
