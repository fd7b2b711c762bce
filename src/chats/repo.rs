//! SQL of the chats feature. A chat-list page (or a chat detail, or one chat
//! seen by several viewers) is ONE statement: a `page` CTE picks the chats
//! and the viewer's side of them, then the other party, the group, the
//! member count and the rendered last message are joined to those rows only.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::dto::ChatRow;
use crate::messages::repo::message_json_sql;

/// Everything of [`ChatRow`] computed from a `page` CTE with the columns
/// viewer, chat_id, chat_type, is_participant, other_id, unread,
/// last_read_at, hidden_at, other_last_read_at, group_id, my_role,
/// last_message_id, last_message_at.
fn render_sql(page_cte: &str, order: &str) -> String {
    format!(
        "WITH page AS MATERIALIZED ({page_cte}) \
         SELECT page.viewer, page.chat_id, page.chat_type, page.is_participant, page.other_id, \
                page.unread, page.last_read_at, page.hidden_at, page.other_last_read_at, \
                page.group_id, page.my_role, page.last_message_at, \
                ou.id IS NOT NULL AS other_exists, \
                COALESCE(ou.deleted_at IS NOT NULL, false) AS other_deleted, \
                ou.full_name AS other_name, oav.file_name AS other_avatar, \
                COALESCE(ou.is_banned AND (ou.banned_until IS NULL OR ou.banned_until > now()), false) \
                  AS other_banned, \
                EXISTS (SELECT 1 FROM user_blocks b \
                         WHERE b.blocker_id = page.viewer AND b.blocked_id = page.other_id) \
                  AS blocked_by_me, \
                EXISTS (SELECT 1 FROM user_blocks b \
                         WHERE b.blocker_id = page.other_id AND b.blocked_id = page.viewer) \
                  AS blocked_by_other, \
                g.name AS group_name, g.description, g.is_public, g.invite_code, \
                g.invite_expires_at, gav.file_name AS group_avatar, \
                /* live members, kept by triggers (group_member_count migration): \
                   one column read, not a count per viewer row */ \
                COALESCE(g.member_count, 0) AS member_count, \
                lm.j AS last_message \
           FROM page \
           LEFT JOIN users ou ON ou.id = page.other_id \
           LEFT JOIN media oav ON oav.id = ou.avatar_id \
           LEFT JOIN group_chats g ON g.id = page.group_id \
           LEFT JOIN media gav ON gav.id = g.avatar_id \
           LEFT JOIN LATERAL ({last_message}) lm ON page.is_participant \
          {order}",
        last_message = message_json_sql("m.id = page.last_message_id"),
    )
}

/// The keys of the caller's chats for sorting: both private slots and group
/// memberships (served by `unique_user_pair`, `privatechat_user2_id` and
/// `groupmember_user_id`). Only what the sort and filters need: every one
/// of the caller's chats passes through the sort, so each column here is
/// paid for thousands of times by a member of thousands of chats (measured:
/// carrying the full side cost 3 ms more at 10,000 chats).
fn my_chat_keys(search: bool) -> String {
    let (p1, p2, g) = if search {
        (
            ", p.user2_id AS other_id, NULL::uuid AS group_id",
            ", p.user1_id, NULL",
            ", NULL, g.id",
        )
    } else {
        ("", "", "")
    };
    format!(
        "SELECT p.chat_id, p.user1_hidden_at AS hidden_at{p1} \
           FROM private_chats p WHERE p.user1_id = $1 \
         UNION ALL \
         SELECT p.chat_id, p.user2_hidden_at{p2} FROM private_chats p WHERE p.user2_id = $1 \
         UNION ALL \
         SELECT g.chat_id, NULL{g} \
           FROM group_members gm JOIN group_chats g ON g.id = gm.group_chat_id \
          WHERE gm.user_id = $1"
    )
}

/// The columns of viewer `{v}`'s side of chat `c` (joined as `p`, `g`,
/// `gm` by [`side_joins`]) for a `page` CTE of [`render_sql`].
fn side_columns(v: &str) -> String {
    format!(
        "{v} AS viewer, c.id AS chat_id, c.type AS chat_type, \
         COALESCE(CASE WHEN p.id IS NOT NULL THEN (p.user1_id = {v} OR p.user2_id = {v}) \
                       ELSE gm.id IS NOT NULL END, false) AS is_participant, \
         CASE WHEN p.user1_id = {v} THEN p.user2_id \
              WHEN p.user2_id = {v} THEN p.user1_id END AS other_id, \
         COALESCE(CASE WHEN p.user1_id = {v} THEN p.user1_unread_count \
                       WHEN p.user2_id = {v} THEN p.user2_unread_count \
                       ELSE c.message_seq - gm.read_seq END, 0)::bigint AS unread, \
         CASE WHEN p.user1_id = {v} THEN p.user1_last_read_at \
              WHEN p.user2_id = {v} THEN p.user2_last_read_at \
              ELSE gm.last_read_at END AS last_read_at, \
         CASE WHEN p.user1_id = {v} THEN p.user1_hidden_at \
              WHEN p.user2_id = {v} THEN p.user2_hidden_at END AS hidden_at, \
         CASE WHEN p.user1_id = {v} THEN p.user2_last_read_at \
              WHEN p.user2_id = {v} THEN p.user1_last_read_at END AS other_last_read_at, \
         g.id AS group_id, gm.role AS my_role, c.last_message_id, c.last_message_at"
    )
}

/// The joins of [`side_columns`] for viewer `{v}`.
fn side_joins(v: &str) -> String {
    format!(
        "LEFT JOIN private_chats p ON p.chat_id = c.id \
         LEFT JOIN group_chats g ON g.chat_id = c.id \
         LEFT JOIN group_members gm ON gm.group_chat_id = g.id AND gm.user_id = {v}"
    )
}

/// The keyset condition of a chat-list page (`$2`/`$3`: NULL and
/// `Uuid::max()` on the first).
const CURSOR: &str = "(c.last_message_at, c.id) \
    < (COALESCE($2::timestamptz, 'infinity'), $3)";
/// A viewer in at least this many chats has their first page looked for
/// among everyone's newest chats first ...
const WALK_FOR: i64 = 200;
/// ... and at most this many of those are looked at.
const WALK_LIMIT: i64 = 2000;

/// The statement of [`list_page`]: `$1` viewer, `$2`/`$3` keyset cursor
/// (see [`CURSOR`]), and with `search` `$4` the ILIKE pattern.
/// The newest `limit` chats are picked from narrow keys first; the
/// viewer's side is read for those rows only.
///
/// PostgreSQL re-plans a statement on every execution (measured: 2.5 ms
/// of planning per chat list) when its generic plan looks costlier than
/// the custom ones, and both a `$n IS NULL OR …` branch and a `LIMIT $n`
/// (estimated as a tenth of the rows, so the rendering looked 16 times
/// dearer) do that. So: one text with and one without search, the cursor
/// with first-page sentinels, and the limit (a validated integer) in the
/// text; a client uses one page size, so each connection caches a few.
pub fn list_page_sql(search: bool, limit: i64) -> String {
    let filter = if search {
        "AND CASE WHEN mine.group_id IS NULL THEN EXISTS ( \
                    SELECT 1 FROM users su WHERE su.id = mine.other_id AND su.deleted_at IS NULL \
                       AND (su.full_name ILIKE $4 OR su.username ILIKE $4)) \
                  ELSE EXISTS (SELECT 1 FROM group_chats sg WHERE sg.id = mine.group_id \
                                  AND sg.name ILIKE $4) END"
    } else {
        ""
    };
    let gather = format!(
        "SELECT c.id FROM ({keys}) mine \
          CROSS JOIN LATERAL (SELECT c.id, c.last_message_at FROM chats c \
                               WHERE c.id = mine.chat_id AND c.deleted_at IS NULL \
                                 AND c.last_message_at IS NOT NULL AND {CURSOR} \
                              OFFSET 0) c \
          WHERE (mine.hidden_at IS NULL OR c.last_message_at > mine.hidden_at) {filter} \
          ORDER BY c.last_message_at DESC, c.id DESC \
          LIMIT {limit}",
        keys = my_chat_keys(search),
    );
    // (`OFFSET 0` keeps the chats a lookup per chat of the viewer: joined,
    // a generic plan built on a few members of thousands of chats hashed
    // every chat for everyone, 6 ms for a viewer in one chat.)
    let top = if search {
        gather
    } else {
        // The newest chats of everyone, walked until `limit` of them are
        // the viewer's: a member of thousands of chats is usually in many
        // of the newest, so this ends after a few index entries where the
        // gathering reads all of their chats. It is tried only for such a
        // member (the count stops at WALK_FOR) and for at most WALK_LIMIT
        // chats; when fewer than `limit` turn up, the gathering answers.
        // Either way the rows are the viewer's newest `limit`.
        format!(
            "WITH many AS MATERIALIZED ( \
               SELECT (SELECT count(*) FROM (SELECT 1 FROM private_chats p \
                                              WHERE p.user1_id = $1 LIMIT {WALK_FOR}) a) \
                    + (SELECT count(*) FROM (SELECT 1 FROM private_chats p \
                                              WHERE p.user2_id = $1 LIMIT {WALK_FOR}) b) \
                    + (SELECT count(*) FROM (SELECT 1 FROM group_members gm \
                                              WHERE gm.user_id = $1 LIMIT {WALK_FOR}) g) \
                    >= {WALK_FOR} AS yes), \
             hits AS MATERIALIZED ( \
               SELECT w.id FROM ( \
                 SELECT c.id, c.last_message_at FROM chats c \
                  WHERE (SELECT yes FROM many) \
                    AND c.deleted_at IS NULL AND c.last_message_at IS NOT NULL AND {CURSOR} \
                  ORDER BY c.last_message_at DESC, c.id DESC LIMIT {WALK_LIMIT}) w \
                WHERE EXISTS (SELECT 1 FROM private_chats p WHERE p.chat_id = w.id \
                                 AND ((p.user1_id = $1 AND (p.user1_hidden_at IS NULL \
                                                            OR w.last_message_at > p.user1_hidden_at)) \
                                   OR (p.user2_id = $1 AND (p.user2_hidden_at IS NULL \
                                                            OR w.last_message_at > p.user2_hidden_at)))) \
                   OR EXISTS (SELECT 1 FROM group_chats g \
                                JOIN group_members gm ON gm.group_chat_id = g.id AND gm.user_id = $1 \
                               WHERE g.chat_id = w.id) \
                ORDER BY w.last_message_at DESC, w.id DESC LIMIT {limit}) \
             SELECT id FROM hits WHERE (SELECT count(*) FROM hits) >= {limit} \
             UNION ALL \
             (SELECT * FROM ({gather}) gathered WHERE (SELECT count(*) FROM hits) < {limit})"
        )
    };
    let page = format!(
        "WITH top AS MATERIALIZED ({top}) \
         SELECT {columns} FROM top JOIN chats c ON c.id = top.id {joins}",
        columns = side_columns("$1::uuid"),
        joins = side_joins("$1"),
    );
    render_sql(
        &page,
        "ORDER BY page.last_message_at DESC, page.chat_id DESC",
    )
}

/// One page of `viewer`'s chat list, newest activity first: live chats with
/// a message, not hidden (or with activity after the hide), after the
/// keyset `cursor`, matching the `like` pattern when given. Returns at most
/// `limit` rows.
pub async fn list_page(
    db: &mut PgConnection,
    viewer: Uuid,
    cursor: Option<(DateTime<Utc>, Uuid)>,
    like: Option<&str>,
    limit: i64,
) -> Result<Vec<ChatRow>, sqlx::Error> {
    let sql = list_page_sql(like.is_some(), limit);
    let q = sqlx::query_as(&sql)
        .bind(viewer)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map_or(Uuid::max(), |c| c.1));
    match like {
        Some(like) => q.bind(like),
        None => q,
    }
    .fetch_all(db)
    .await
}

/// One chat as seen by each of `viewers` (a row per viewer who may see it:
/// a private participant, a group member, or anyone for a public group).
/// Hidden chats are included; deleted chats are not.
pub async fn chat_for_viewers(
    conn: &mut PgConnection,
    chat_id: Uuid,
    viewers: &[Uuid],
) -> Result<Vec<ChatRow>, sqlx::Error> {
    fn sql(viewers: &str) -> String {
        let page = format!(
            "SELECT {columns} \
               FROM {viewers} AS v(viewer) \
              CROSS JOIN chats c {joins} \
              WHERE c.id = $1 AND c.deleted_at IS NULL \
                AND (p.user1_id = v.viewer OR p.user2_id = v.viewer OR gm.id IS NOT NULL \
                     OR g.is_public)",
            columns = side_columns("v.viewer"),
            joins = side_joins("v.viewer"),
        );
        render_sql(&page, "")
    }
    // A chat's detail has one viewer. With `unnest($2)` its generic plan
    // counts on ten viewer rows to render, so PostgreSQL re-planned the
    // statement on every request; one viewer gets a text of its own.
    static ONE: LazyLock<String> = LazyLock::new(|| sql("(VALUES ($2::uuid))"));
    static MANY: LazyLock<String> = LazyLock::new(|| sql("unnest($2::uuid[])"));
    match viewers {
        [one] => sqlx::query_as(&ONE).bind(chat_id).bind(one),
        _ => sqlx::query_as(&MANY).bind(chat_id).bind(viewers),
    }
    .fetch_all(conn)
    .await
}

/// A user's state for private-chat creation.
#[derive(Debug, sqlx::FromRow)]
pub struct UserState {
    pub id: Uuid,
    pub deleted: bool,
    pub banned: bool,
}

/// Existence / deletion / active ban of the given users.
pub async fn user_states(db: &PgPool, ids: &[Uuid]) -> Result<Vec<UserState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, deleted_at IS NOT NULL AS deleted, \
                (is_banned AND (banned_until IS NULL OR banned_until > now())) AS banned \
           FROM users WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Whether a block row exists in either direction.
pub async fn blocked_either_way(db: &PgPool, a: Uuid, b: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_blocks \
                         WHERE (blocker_id = $1 AND blocked_id = $2) \
                            OR (blocker_id = $2 AND blocked_id = $1))",
    )
    .bind(a)
    .bind(b)
    .fetch_one(db)
    .await
}

/// A private chat's id and creation time.
#[derive(Debug, sqlx::FromRow)]
pub struct PrivateChat {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// The private chat of an (ordered) pair, whichever way its slots were
/// filled.
pub async fn find_private<'e, E>(
    exec: E,
    user1: Uuid,
    user2: Uuid,
) -> Result<Option<PrivateChat>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query_as(
        "SELECT c.id, c.created_at FROM private_chats p JOIN chats c ON c.id = p.chat_id \
          WHERE (p.user1_id = $1 AND p.user2_id = $2) OR (p.user1_id = $2 AND p.user2_id = $1) \
          ORDER BY c.id LIMIT 1",
    )
    .bind(user1)
    .bind(user2)
    .fetch_optional(exec)
    .await
}

/// Inserts a private chat for the ordered pair; `None` when the pair
/// already has one (a concurrent create won the unique index).
pub async fn insert_private(
    conn: &mut PgConnection,
    user1: Uuid,
    user2: Uuid,
) -> Result<Option<PrivateChat>, sqlx::Error> {
    let chat_id = Uuid::now_v7();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO chats (id, type, created_at, updated_at) \
         VALUES ($1, 'private', clock_timestamp(), clock_timestamp()) RETURNING created_at",
    )
    .bind(chat_id)
    .fetch_one(&mut *conn)
    .await?;
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO private_chats (id, chat_id, user1_id, user2_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT ON CONSTRAINT unique_user_pair DO NOTHING RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(chat_id)
    .bind(user1)
    .bind(user2)
    .fetch_optional(conn)
    .await?;
    Ok(inserted.map(|_| PrivateChat {
        id: chat_id,
        created_at,
    }))
}

/// The read (or hide) boundary of chat `$1`, taken when the statement
/// runs: the caller holds the chat row lock that every send takes, so each
/// message either committed before (and is covered: `created_at` is at most
/// `last_message_at`) or stamps its `created_at` after this moment (see
/// `messages::repo::record_new_message`). A timestamp read before the lock
/// wait could fall behind a message counted as unread.
const BOUNDARY: &str =
    "(SELECT GREATEST(clock_timestamp(), c.last_message_at) FROM chats c WHERE c.id = $1)";

/// Marks the chat read for `me`: unread to zero and, unless `keep_read_at`
/// (private chat under a block: "ninja mode"), `last_read_at` to the read
/// boundary ([`BOUNDARY`]).
pub async fn mark_read(
    conn: &mut PgConnection,
    chat_id: Uuid,
    group_id: Option<Uuid>,
    me: Uuid,
    keep_read_at: bool,
) -> Result<(), sqlx::Error> {
    let sql = match group_id {
        Some(_) => format!(
            "UPDATE group_members SET read_seq = (SELECT c.message_seq FROM chats c WHERE c.id = $1), \
                    last_read_at = CASE WHEN $3 THEN last_read_at ELSE {BOUNDARY} END \
              WHERE group_chat_id = $4 AND user_id = $2"
        ),
        None => format!(
            "UPDATE private_chats SET \
               user1_unread_count = CASE WHEN user1_id = $2 THEN 0 ELSE user1_unread_count END, \
               user1_last_read_at = CASE WHEN user1_id = $2 AND NOT $3 THEN {BOUNDARY} \
                                         ELSE user1_last_read_at END, \
               user2_unread_count = CASE WHEN user2_id = $2 THEN 0 ELSE user2_unread_count END, \
               user2_last_read_at = CASE WHEN user2_id = $2 AND NOT $3 THEN {BOUNDARY} \
                                         ELSE user2_last_read_at END \
             WHERE chat_id = $1 AND $4::uuid IS NULL"
        ),
    };
    sqlx::query(&sql)
        .bind(chat_id)
        .bind(me)
        .bind(keep_read_at)
        .bind(group_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Hides a private chat for `me` (and clears their unread counter); the
/// hide boundary is taken like the read boundary ([`BOUNDARY`]).
pub async fn hide(conn: &mut PgConnection, chat_id: Uuid, me: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE private_chats SET \
           user1_hidden_at = CASE WHEN user1_id = $2 THEN {BOUNDARY} ELSE user1_hidden_at END, \
           user1_unread_count = CASE WHEN user1_id = $2 THEN 0 ELSE user1_unread_count END, \
           user2_hidden_at = CASE WHEN user2_id = $2 THEN {BOUNDARY} ELSE user2_hidden_at END, \
           user2_unread_count = CASE WHEN user2_id = $2 THEN 0 ELSE user2_unread_count END \
         WHERE chat_id = $1"
    ))
    .bind(chat_id)
    .bind(me)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every member of a chat (private: the non-null slots; group: all member
/// rows), for `chat.read`.
pub async fn members(conn: &mut PgConnection, chat_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT u FROM private_chats p \
           CROSS JOIN LATERAL (VALUES (p.user1_id), (p.user2_id)) v(u) \
          WHERE p.chat_id = $1 AND u IS NOT NULL \
         UNION ALL \
         SELECT gm.user_id FROM group_chats g JOIN group_members gm ON gm.group_chat_id = g.id \
          WHERE g.chat_id = $1",
    )
    .bind(chat_id)
    .fetch_all(conn)
    .await
}
