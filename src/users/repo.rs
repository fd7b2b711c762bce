//! SQL of the users feature. Lists are one query per page (avatar and the
//! private chat id joined in), keyset-paginated on `(full_name, id)`, which
//! `users_active_full_name_id_idx` serves.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::cursor::{prefix_pattern, ListParams};

/// A user as their own profile shows them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OwnRow {
    pub id: Uuid,
    pub email: Option<String>,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub role: String,
    pub has_password: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub avatar_id: Option<Uuid>,
    pub avatar_file: Option<String>,
}

const OWN_COLUMNS: &str = "u.id, u.email, u.username, u.full_name, u.bio, u.role, \
     (u.password_hash IS NOT NULL) AS has_password, u.last_seen_at, u.avatar_id, \
     m.file_name AS avatar_file";

/// The active user `id`.
pub async fn own(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<OwnRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {OWN_COLUMNS} FROM users u LEFT JOIN media m ON m.id = u.avatar_id \
         WHERE u.id = $1 AND u.deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The active user `id`, row-locked for an update.
pub async fn own_for_update(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<OwnRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {OWN_COLUMNS} FROM users u LEFT JOIN media m ON m.id = u.avatar_id \
         WHERE u.id = $1 AND u.deleted_at IS NULL FOR UPDATE OF u"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Whether someone other than `me` uses `username`.
pub async fn username_taken_by_other(
    db: impl PgExecutor<'_>,
    username: &str,
    me: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1 AND id <> $2)")
        .bind(username)
        .bind(me)
        .fetch_one(db)
        .await
}

/// Whether `media` may become `me`'s avatar (§13.2): a completed
/// `user_avatar` upload of `me`, not attached to a message and not anyone's
/// (or any group's) avatar already.
pub async fn avatar_usable(
    db: impl PgExecutor<'_>,
    media: Uuid,
    me: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS ( \
           SELECT 1 FROM media m \
           WHERE m.id = $1 AND m.category = 'user_avatar' AND m.upload_status = 'completed' \
             AND m.uploaded_by_id = $2 AND m.message_id IS NULL \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM group_chats g WHERE g.avatar_id = m.id))",
    )
    .bind(media)
    .bind(me)
    .fetch_one(db)
    .await
}

/// The profile fields after an update.
pub struct ProfileUpdate<'a> {
    pub full_name: &'a str,
    pub username: Option<&'a str>,
    pub bio: Option<&'a str>,
    pub avatar_id: Option<Uuid>,
}

/// Writes the profile fields.
pub async fn update_profile(
    db: impl PgExecutor<'_>,
    id: Uuid,
    u: &ProfileUpdate<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET full_name = $2, username = $3, bio = $4, avatar_id = $5, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(u.full_name)
    .bind(u.username)
    .bind(u.bio)
    .bind(u.avatar_id)
    .execute(db)
    .await
    .map(|_| ())
}

/// Another user's profile as `me` sees it.
#[derive(Debug, sqlx::FromRow)]
pub struct ViewRow {
    pub id: Uuid,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub role: String,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub actively_banned: bool,
    pub avatar_file: Option<String>,
    pub blocked_by_me: bool,
    pub blocked_by_other: bool,
}

/// The active user `id` with the block relations to `me` (one query).
pub async fn view(db: &PgPool, me: Uuid, id: Uuid) -> Result<Option<ViewRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.username, u.full_name, u.bio, u.role, u.last_seen_at, \
                (u.is_banned AND (u.banned_until IS NULL OR u.banned_until > now())) \
                  AS actively_banned, \
                m.file_name AS avatar_file, \
                EXISTS (SELECT 1 FROM user_blocks b WHERE b.blocker_id = $1 AND b.blocked_id = u.id) \
                  AS blocked_by_me, \
                EXISTS (SELECT 1 FROM user_blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $1) \
                  AS blocked_by_other \
         FROM users u LEFT JOIN media m ON m.id = u.avatar_id \
         WHERE u.id = $2 AND u.deleted_at IS NULL",
    )
    .bind(me)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// One row of a user list.
#[derive(Debug, sqlx::FromRow)]
pub struct ListRow {
    pub id: Uuid,
    pub username: Option<String>,
    pub full_name: String,
    pub role: String,
    pub avatar_file: Option<String>,
    pub private_chat_id: Option<Uuid>,
}

/// Filters of the user search that apply to a candidate row `u` (`$1` is the
/// caller, `$4`/`$5` the cursor: `''` and the nil id on the first page).
/// Not `$4 IS NULL OR …`: a generic plan cannot start an
/// index walk at an OR, and walked the directory from its first name
/// (2,501 rows filtered away for a page 2,500 deep in the plan test).
const SEARCH_FILTERS: &str = "u.deleted_at IS NULL AND u.full_name IS NOT NULL AND u.id <> $1 \
    AND NOT (u.is_banned AND (u.banned_until IS NULL OR u.banned_until > now())) \
    AND (u.full_name, u.id) > (COALESCE($4::text, ''), $5) \
    AND NOT EXISTS ( \
      SELECT 1 FROM user_blocks b \
      WHERE (b.blocker_id = $1 AND b.blocked_id = u.id) \
         OR (b.blocker_id = u.id AND b.blocked_id = $1))";

/// The search's `exclude_chat_id` (`$6`): members of that group are left out.
const NOT_IN_GROUP: &str = " AND NOT EXISTS ( \
      SELECT 1 FROM group_members gm JOIN group_chats g ON g.id = gm.group_chat_id \
      WHERE g.chat_id = $6 AND gm.user_id = u.id)";

/// Avatar and (optionally, `$7`) the private chat with the caller, joined
/// onto the page's rows only.
const SEARCH_PAGE_JOINS: &str = "SELECT p.id, p.username, p.full_name, p.role, \
            m.file_name AS avatar_file, pc.chat_id AS private_chat_id \
     FROM page p \
     LEFT JOIN media m ON m.id = p.avatar_id \
     LEFT JOIN LATERAL ( \
       SELECT c.chat_id FROM private_chats c \
       WHERE $7 AND ((c.user1_id = $1 AND c.user2_id = p.id) \
                  OR (c.user1_id = p.id AND c.user2_id = $1)) \
       LIMIT 1 \
     ) pc ON true \
     ORDER BY p.full_name, p.id";

/// The statement of [`search`] with or without a search text and an
/// excluded group: `$1` the caller, `$2`/`$3` the text and its prefix
/// pattern, `$4`/`$5` the cursor, `$6` the excluded group chat, `$7`
/// whether to join private chat ids; `limit` rows. The optional parts are
/// variants of the text and the limit (a validated integer) is in it: a
/// `$n IS NULL OR …` filter or a `LIMIT $n` (estimated as a tenth of all
/// users) kept the statement on a fresh plan per request.
pub fn search_sql(with_query: bool, exclude: bool, limit: i64) -> String {
    let filters = format!(
        "{SEARCH_FILTERS}{}",
        if exclude { NOT_IN_GROUP } else { "" }
    );
    if with_query {
        format!(
            "WITH matches AS MATERIALIZED ( \
               SELECT u.id FROM users u \
               WHERE u.deleted_at IS NULL AND u.full_name IS NOT NULL \
                 AND (lower(u.full_name) LIKE lower($3) \
                      OR lower(u.username) LIKE lower($3) \
                      OR lower(u.email) = lower($2)) \
             ), page AS ( \
               SELECT u.id, u.username, u.full_name, u.role, u.avatar_id \
               FROM matches x JOIN users u ON u.id = x.id \
               WHERE {filters} \
               ORDER BY u.full_name, u.id LIMIT {limit} \
             ) {SEARCH_PAGE_JOINS}"
        )
    } else {
        // `$2`/`$3` (NULL) go unmentioned: their types come with the bind.
        format!(
            "WITH page AS ( \
               SELECT u.id, u.username, u.full_name, u.role, u.avatar_id \
               FROM users u \
               WHERE {filters} \
               ORDER BY u.full_name, u.id LIMIT {limit} \
             ) {SEARCH_PAGE_JOINS}"
        )
    }
}

/// User search (§13.3): one query per page, `limit + 1` rows so the caller
/// can tell whether a next page exists.
///
/// With a search text, the matching ids come first from the three indexes
/// (name prefix, username prefix, exact email; a BitmapOr) in a
/// materialised CTE, so a narrow search never walks the whole name index;
/// the page is then sorted and cut before avatars and chat ids are joined.
/// Without one, the `(full_name, id)` index is walked in order.
pub async fn search(
    db: &mut PgConnection,
    me: Uuid,
    p: &ListParams,
) -> Result<Vec<ListRow>, sqlx::Error> {
    let sql = search_sql(p.query.is_some(), p.exclude_chat_id.is_some(), p.limit + 1);
    let pattern = p.query.as_deref().map(prefix_pattern);
    sqlx::query_as(&sql)
        .bind(me)
        .bind(p.query.as_deref())
        .bind(pattern)
        .bind(p.cursor.as_ref().map(|c| c.name.as_str()))
        .bind(p.cursor.as_ref().map_or(Uuid::nil(), |c| c.id))
        .bind(p.exclude_chat_id)
        .bind(p.include_chat_id)
        .fetch_all(db)
        .await
}

/// Users `me` blocked (§13.4), `limit + 1` rows.
pub async fn blocked(db: &PgPool, me: Uuid, p: &ListParams) -> Result<Vec<ListRow>, sqlx::Error> {
    let pattern = p.query.as_deref().map(prefix_pattern);
    sqlx::query_as(
        "SELECT u.id, u.username, u.full_name, u.role, m.file_name AS avatar_file, \
                NULL::uuid AS private_chat_id \
         FROM user_blocks b \
         JOIN users u ON u.id = b.blocked_id \
         LEFT JOIN media m ON m.id = u.avatar_id \
         WHERE b.blocker_id = $1 AND u.deleted_at IS NULL AND u.full_name IS NOT NULL \
           AND ($2::text IS NULL \
                OR lower(u.full_name) LIKE lower($2) \
                OR lower(u.username) LIKE lower($2)) \
           AND (u.full_name, u.id) \
               > (COALESCE($3::text, ''), $4) \
         ORDER BY u.full_name, u.id \
         LIMIT $5",
    )
    .bind(me)
    .bind(pattern)
    .bind(p.cursor.as_ref().map(|c| c.name.as_str()))
    .bind(p.cursor.as_ref().map_or(Uuid::nil(), |c| c.id))
    .bind(p.limit + 1)
    .fetch_all(db)
    .await
}

/// Whether `id` is an active (not soft-deleted) user.
pub async fn is_active(db: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL)")
        .bind(id)
        .fetch_one(db)
        .await
}

/// Creates the block; false when it existed already.
pub async fn insert_block(db: &PgPool, blocker: Uuid, blocked: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO user_blocks (id, blocker_id, blocked_id) VALUES ($1, $2, $3) \
         ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(blocker)
    .bind(blocked)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes the block; false when there was none.
pub async fn delete_block(db: &PgPool, blocker: Uuid, blocked: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2")
        .bind(blocker)
        .bind(blocked)
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}
