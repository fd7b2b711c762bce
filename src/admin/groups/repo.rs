//! SQL of the admin group endpoints (plain SQL on `group_chats`,
//! `group_members`, `chats` and `messages`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Members whose user is not soft-deleted, as a correlated count.
const MEMBER_COUNT: &str =
    "(SELECT count(*) FROM group_members gm JOIN users mu ON mu.id = gm.user_id \
     WHERE gm.group_chat_id = g.id AND mu.deleted_at IS NULL)";

/// A row of the admin group list.
#[derive(Debug, sqlx::FromRow)]
pub struct ListRow {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub member_count: i64,
    pub is_public: bool,
    pub created_at: DateTime<Utc>,
}

/// Live groups by `group_chats.id` ascending (keyset), `limit + 1` rows.
pub async fn list(
    db: &mut PgConnection,
    query: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ListRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT g.id, g.chat_id, g.name, {MEMBER_COUNT} AS member_count, g.is_public, c.created_at \
         FROM group_chats g JOIN chats c ON c.id = g.chat_id \
         WHERE c.deleted_at IS NULL \
           AND g.id > $1 \
           AND ($2::text IS NULL OR g.name ILIKE '%' || $2 || '%') \
         ORDER BY g.id ASC LIMIT $3"
    ))
    .bind(after.unwrap_or(Uuid::nil()))
    .bind(query)
    .bind(limit + 1)
    .fetch_all(db)
    .await
}

/// Everything the admin group detail shows (dissolved groups included).
#[derive(Debug, sqlx::FromRow)]
pub struct DetailRow {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub avatar_file: Option<String>,
    pub is_public: bool,
    pub creator_id: Option<Uuid>,
    pub creator_name: Option<String>,
    pub member_count: i64,
    pub total_messages: i64,
    pub created_at: DateTime<Utc>,
}

pub async fn detail(db: &PgPool, chat: Uuid) -> Result<Option<DetailRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT g.id, g.chat_id, g.name, g.description, a.file_name AS avatar_file, g.is_public, \
           g.created_by AS creator_id, cu.full_name AS creator_name, {MEMBER_COUNT} AS member_count, \
           (SELECT count(*) FROM messages m WHERE m.chat_id = g.chat_id) AS total_messages, \
           c.created_at \
         FROM group_chats g JOIN chats c ON c.id = g.chat_id \
         LEFT JOIN media a ON a.id = g.avatar_id \
         LEFT JOIN users cu ON cu.id = g.created_by \
         WHERE g.chat_id = $1"
    ))
    .bind(chat)
    .fetch_optional(db)
    .await
}

/// The internal id of a live (not dissolved) group.
pub async fn live_group_id(db: &mut PgConnection, chat: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT g.id FROM group_chats g JOIN chats c ON c.id = g.chat_id \
         WHERE g.chat_id = $1 AND c.deleted_at IS NULL",
    )
    .bind(chat)
    .fetch_optional(db)
    .await
}

/// A member row of the member list.
#[derive(Debug, sqlx::FromRow)]
pub struct MemberRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub avatar_file: Option<String>,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub is_banned: bool,
}

/// Members of a group (soft-deleted users excluded) by `joined_at, id`,
/// keyset after `(t, id)`, `limit + 1` rows; `prefix` (LIKE-escaped)
/// matches the start of the username or full name.
pub async fn members(
    db: &mut PgConnection,
    group: Uuid,
    prefix: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT gm.id, gm.user_id, u.username, u.full_name, a.file_name AS avatar_file, gm.role, \
           gm.joined_at, \
           (u.is_banned AND (u.banned_until IS NULL OR u.banned_until > now())) AS is_banned \
         FROM group_members gm JOIN users u ON u.id = gm.user_id \
         LEFT JOIN media a ON a.id = u.avatar_id \
         WHERE gm.group_chat_id = $1 AND u.deleted_at IS NULL \
           AND (gm.joined_at, gm.id) > (COALESCE($2::timestamptz, '-infinity'), $3) \
           AND ($4::text IS NULL OR u.username ILIKE $4 || '%' OR u.full_name ILIKE $4 || '%') \
         ORDER BY gm.joined_at, gm.id LIMIT $5",
    )
    .bind(group)
    .bind(after.map(|a| a.0))
    .bind(after.map_or(Uuid::nil(), |a| a.1))
    .bind(prefix)
    .bind(limit + 1)
    .fetch_all(db)
    .await
}
