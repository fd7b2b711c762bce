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
    db: &PgPool,
    query: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ListRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT g.id, g.chat_id, g.name, {MEMBER_COUNT} AS member_count, g.is_public, c.created_at \
         FROM group_chats g JOIN chats c ON c.id = g.chat_id \
         WHERE c.deleted_at IS NULL \
           AND ($1::uuid IS NULL OR g.id > $1) \
           AND ($2::text IS NULL OR g.name ILIKE '%' || $2 || '%') \
         ORDER BY g.id ASC LIMIT $3"
    ))
    .bind(after)
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
pub async fn live_group_id(db: &PgPool, chat: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
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
    db: &PgPool,
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
           AND ($2::timestamptz IS NULL OR (gm.joined_at, gm.id) > ($2, $3)) \
           AND ($4::text IS NULL OR u.username ILIKE $4 || '%' OR u.full_name ILIKE $4 || '%') \
         ORDER BY gm.joined_at, gm.id LIMIT $5",
    )
    .bind(group)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(prefix)
    .bind(limit + 1)
    .fetch_all(db)
    .await
}

/// Dissolves a live group; returns every member's user id, `None` when the
/// group is missing or already dissolved.
pub async fn dissolve(
    conn: &mut PgConnection,
    chat: Uuid,
) -> Result<Option<Vec<Uuid>>, sqlx::Error> {
    let group: Option<Uuid> = sqlx::query_scalar(
        "UPDATE chats c SET deleted_at = now(), updated_at = now() \
         FROM group_chats g \
         WHERE c.id = $1 AND g.chat_id = c.id AND c.deleted_at IS NULL \
         RETURNING g.id",
    )
    .bind(chat)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(group) = group else {
        return Ok(None);
    };
    let members = sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_chat_id = $1")
        .bind(group)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(members))
}

/// A live group locked for an admin reset.
#[derive(Debug, sqlx::FromRow)]
pub struct GroupRow {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub avatar_id: Option<Uuid>,
}

pub async fn lock_live_group(
    conn: &mut PgConnection,
    chat: Uuid,
) -> Result<Option<GroupRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.id, g.chat_id, g.name, g.description, g.avatar_id \
         FROM group_chats g JOIN chats c ON c.id = g.chat_id \
         WHERE g.chat_id = $1 AND c.deleted_at IS NULL \
         FOR UPDATE OF g",
    )
    .bind(chat)
    .fetch_optional(conn)
    .await
}

/// Applies the reset fields (`None` = unchanged).
pub async fn update_group(
    conn: &mut PgConnection,
    group: Uuid,
    name: Option<&str>,
    clear_description: bool,
    clear_avatar: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE group_chats SET name = COALESCE($2, name), \
           description = CASE WHEN $3 THEN '' ELSE description END, \
           avatar_id = CASE WHEN $4 THEN NULL ELSE avatar_id END \
         WHERE id = $1",
    )
    .bind(group)
    .bind(name)
    .bind(clear_description)
    .bind(clear_avatar)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts a system message and returns its creation time.
pub async fn insert_system_message(
    conn: &mut PgConnection,
    id: Uuid,
    chat: Uuid,
    sender: Uuid,
    kind: &str,
    action_data: &serde_json::Value,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO messages (id, chat_id, sender_id, type, action_data, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, clock_timestamp(), clock_timestamp()) RETURNING created_at",
    )
    .bind(id)
    .bind(chat)
    .bind(sender)
    .bind(kind)
    .bind(action_data)
    .fetch_one(conn)
    .await
}

/// Points the chat's last message at `message`.
pub async fn set_last_message(
    conn: &mut PgConnection,
    chat: Uuid,
    message: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chats SET last_message_id = $2, last_message_at = $3, updated_at = now() \
         WHERE id = $1",
    )
    .bind(chat)
    .bind(message)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The group as members see it after a change.
#[derive(Debug, sqlx::FromRow)]
pub struct GroupView {
    pub name: String,
    pub description: Option<String>,
    pub avatar_file: Option<String>,
    pub is_public: bool,
    pub invite_code: String,
    pub invite_expires_at: Option<DateTime<Utc>>,
    pub member_count: i64,
}

pub async fn group_view(db: &PgPool, group: Uuid) -> Result<Option<GroupView>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT g.name, g.description, a.file_name AS avatar_file, g.is_public, g.invite_code, \
           g.invite_expires_at, {MEMBER_COUNT} AS member_count \
         FROM group_chats g LEFT JOIN media a ON a.id = g.avatar_id WHERE g.id = $1"
    ))
    .bind(group)
    .fetch_optional(db)
    .await
}

/// A member's side of the group, for personalised `chat.update`s.
#[derive(Debug, sqlx::FromRow)]
pub struct MemberState {
    pub user_id: Uuid,
    pub role: String,
    pub last_read_at: Option<DateTime<Utc>>,
}

pub async fn member_states(db: &PgPool, group: Uuid) -> Result<Vec<MemberState>, sqlx::Error> {
    sqlx::query_as("SELECT user_id, role, last_read_at FROM group_members WHERE group_chat_id = $1")
        .bind(group)
        .fetch_all(db)
        .await
}

/// A user's full name.
pub async fn full_name(db: &PgPool, user: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar::<_, Option<String>>("SELECT full_name FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(db)
        .await
        .map(Option::flatten)
}
