//! SQL of the groups feature.
//!
//! Every membership-changing transaction starts with [`lock_group`]: the
//! chat row, then the group row, `FOR UPDATE`, always in that order (the
//! order message sends and read marks use for the chat row), so concurrent
//! joins, kicks, role changes and transfers of one group run one after the
//! other and each re-reads roles after taking the lock.
//!
//! `group_chats.member_count` (live members) is maintained by triggers (see
//! the `group_member_count` migration); this file only reads it.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::dto::{MemberRow, PublicCursor, PublicGroupRow, PublicSort};

/// An active ban, for a `users u` row.
const ACTIVE_BAN: &str = "(u.is_banned AND (u.banned_until IS NULL OR u.banned_until > now()))";

/// A group as its transaction sees it after locking, with the caller's role.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LockedGroup {
    pub group_id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub invite_code: String,
    pub invite_expires_at: Option<DateTime<Utc>>,
    pub avatar_id: Option<Uuid>,
    pub member_count: i64,
    /// The caller's role; `None` when not a member.
    pub my_role: Option<String>,
}

/// Locks a live group by CHAT id (chat row, then group row) and reads it
/// with `me`'s role. `None` when there is no such live group.
pub async fn lock_group(
    conn: &mut PgConnection,
    chat_id: Uuid,
    me: Uuid,
) -> Result<Option<LockedGroup>, sqlx::Error> {
    let live: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM chats WHERE id = $1 AND type = 'group' AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(chat_id)
    .fetch_optional(&mut *conn)
    .await?;
    if live.is_none() {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT g.id AS group_id, g.chat_id, g.name, g.description, g.is_public, g.invite_code, \
                g.invite_expires_at, g.avatar_id, g.member_count, gm.role AS my_role \
           FROM group_chats g \
           LEFT JOIN group_members gm ON gm.group_chat_id = g.id AND gm.user_id = $2 \
          WHERE g.chat_id = $1 \
            FOR UPDATE OF g",
    )
    .bind(chat_id)
    .bind(me)
    .fetch_optional(conn)
    .await
}

/// The live member count of a group (read inside the transaction that
/// changed it, so it includes that change).
pub async fn member_count(conn: &mut PgConnection, group_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT member_count FROM group_chats WHERE id = $1")
        .bind(group_id)
        .fetch_one(conn)
        .await
}

/// What the add/create rules need to know about one candidate user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub id: Uuid,
    pub full_name: Option<String>,
    pub deleted: bool,
    pub banned: bool,
    /// A block row in either direction with the acting user.
    pub blocked_with_actor: bool,
    /// A block row in either direction with the group's owner.
    pub blocked_with_owner: bool,
    /// Already has a membership row in the group.
    pub is_member: bool,
}

/// The existing users among `ids`, with their relation to `actor`, to the
/// group's owner and to the group (`group_id` may be nil for a new group;
/// `owner` may equal `actor`). One query.
pub async fn candidates(
    conn: &mut PgConnection,
    ids: &[Uuid],
    actor: Uuid,
    owner: Option<Uuid>,
    group_id: Option<Uuid>,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let sql = format!(
        "SELECT u.id, u.full_name, u.deleted_at IS NOT NULL AS deleted, {ACTIVE_BAN} AS banned, \
                EXISTS (SELECT 1 FROM user_blocks b \
                         WHERE (b.blocker_id = $2 AND b.blocked_id = u.id) \
                            OR (b.blocker_id = u.id AND b.blocked_id = $2)) AS blocked_with_actor, \
                ($3::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM user_blocks b \
                         WHERE (b.blocker_id = $3 AND b.blocked_id = u.id) \
                            OR (b.blocker_id = u.id AND b.blocked_id = $3))) AS blocked_with_owner, \
                ($4::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM group_members gm \
                         WHERE gm.group_chat_id = $4 AND gm.user_id = u.id)) AS is_member \
           FROM users u WHERE u.id = ANY($1)"
    );
    sqlx::query_as(&sql)
        .bind(ids)
        .bind(actor)
        .bind(owner)
        .bind(group_id)
        .fetch_all(conn)
        .await
}

/// The owner of a group (`None` only for a broken group without one).
pub async fn owner(conn: &mut PgConnection, group_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM group_members WHERE group_chat_id = $1 AND role = 'owner' \
          ORDER BY joined_at, id LIMIT 1",
    )
    .bind(group_id)
    .fetch_optional(conn)
    .await
}

/// A member targeted by kick / role change / transfer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetMember {
    pub role: String,
    pub deleted: bool,
    pub banned: bool,
    pub full_name: Option<String>,
}

/// `user`'s membership in the group with their account state; `None` when
/// not a member.
pub async fn target_member(
    conn: &mut PgConnection,
    group_id: Uuid,
    user: Uuid,
) -> Result<Option<TargetMember>, sqlx::Error> {
    let sql = format!(
        "SELECT gm.role, u.deleted_at IS NOT NULL AS deleted, {ACTIVE_BAN} AS banned, u.full_name \
           FROM group_members gm JOIN users u ON u.id = gm.user_id \
          WHERE gm.group_chat_id = $1 AND gm.user_id = $2"
    );
    sqlx::query_as(&sql)
        .bind(group_id)
        .bind(user)
        .fetch_optional(conn)
        .await
}

/// Whether a block row exists in either direction between `a` and `b`.
pub async fn blocked_either_way(
    conn: &mut PgConnection,
    a: Uuid,
    b: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_blocks \
                         WHERE (blocker_id = $1 AND blocked_id = $2) \
                            OR (blocker_id = $2 AND blocked_id = $1))",
    )
    .bind(a)
    .bind(b)
    .fetch_one(conn)
    .await
}

/// Locks a media row and tells whether `owner` may use it as a group
/// avatar: their own, `group_avatar`, completed, not attached to a message
/// and nobody's avatar. The lock makes two requests using the same media
/// run one after the other, and the check runs after it (a fresh statement
/// sees what the first one committed).
pub async fn lock_usable_group_avatar(
    conn: &mut PgConnection,
    media_id: Uuid,
    owner: Uuid,
) -> Result<bool, sqlx::Error> {
    let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM media WHERE id = $1 FOR UPDATE")
        .bind(media_id)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Ok(false);
    }
    sqlx::query_scalar(
        "SELECT md.category = 'group_avatar' AND md.upload_status = 'completed' \
                AND md.uploaded_by_id = $2 AND md.message_id IS NULL \
                AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_id = md.id) \
                AND NOT EXISTS (SELECT 1 FROM group_chats g WHERE g.avatar_id = md.id) \
           FROM media md WHERE md.id = $1",
    )
    .bind(media_id)
    .bind(owner)
    .fetch_one(conn)
    .await
}

/// A group to insert.
pub struct NewGroup<'a> {
    pub chat_id: Uuid,
    pub group_id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub is_public: bool,
    pub invite_code: &'a str,
    pub avatar_id: Option<Uuid>,
    pub created_by: Uuid,
}

/// Inserts the chat and group rows. Private groups get an invite expiry of
/// 7 days (database clock); public ones none.
pub async fn insert_group(conn: &mut PgConnection, g: &NewGroup<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO chats (id, type, created_at, updated_at) \
         VALUES ($1, 'group', clock_timestamp(), clock_timestamp())",
    )
    .bind(g.chat_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO group_chats (id, name, description, is_public, invite_code, invite_expires_at, \
                                  chat_id, avatar_id, created_by) \
         VALUES ($1, $2, $3, $4, $5, \
                 CASE WHEN $4 THEN NULL ELSE clock_timestamp() + interval '7 days' END, \
                 $6, $7, $8)",
    )
    .bind(g.group_id)
    .bind(g.name)
    .bind(g.description)
    .bind(g.is_public)
    .bind(g.invite_code)
    .bind(g.chat_id)
    .bind(g.avatar_id)
    .bind(g.created_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds memberships in list order (ids and `joined_at` both grow along the
/// list, so the member list shows them in that order). Users already in the
/// group are skipped. Returns the users actually added, in list order.
pub async fn insert_members(
    conn: &mut PgConnection,
    group_id: Uuid,
    members: &[(Uuid, &str)],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let ids: Vec<Uuid> = members.iter().map(|_| Uuid::now_v7()).collect();
    let users: Vec<Uuid> = members.iter().map(|m| m.0).collect();
    let roles: Vec<String> = members.iter().map(|m| m.1.to_string()).collect();
    let added: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "INSERT INTO group_members (id, role, joined_at, unread_count, group_chat_id, user_id) \
         SELECT m.id, m.role, clock_timestamp(), 0, $4, m.user_id \
           FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY AS m(id, user_id, role, n) \
          ORDER BY m.n \
         ON CONFLICT ON CONSTRAINT pk_group_member DO NOTHING \
         RETURNING id, user_id",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&roles)
    .bind(group_id)
    .fetch_all(conn)
    .await?;
    let mut added: Vec<(Uuid, Uuid)> = added;
    added.sort_by_key(|(id, _)| *id);
    Ok(added.into_iter().map(|(_, user)| user).collect())
}

/// Removes a membership; whether one was removed.
pub async fn delete_member(
    conn: &mut PgConnection,
    group_id: Uuid,
    user: Uuid,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM group_members WHERE group_chat_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Sets a member's role.
pub async fn set_role(
    conn: &mut PgConnection,
    group_id: Uuid,
    user: Uuid,
    role: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE group_members SET role = $3 WHERE group_chat_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user)
        .bind(role)
        .execute(conn)
        .await?;
    Ok(())
}

/// The group's info fields after an update.
pub struct GroupInfo<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub is_public: bool,
    pub avatar_id: Option<Uuid>,
}

/// Writes name, description, visibility and avatar.
pub async fn update_info(
    conn: &mut PgConnection,
    group_id: Uuid,
    info: &GroupInfo<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE group_chats SET name = $2, description = $3, is_public = $4, avatar_id = $5 \
          WHERE id = $1",
    )
    .bind(group_id)
    .bind(info.name)
    .bind(info.description)
    .bind(info.is_public)
    .bind(info.avatar_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the invite code: private groups get a fresh 7-day expiry,
/// public ones none. Returns the new expiry.
pub async fn set_invite(
    conn: &mut PgConnection,
    group_id: Uuid,
    code: &str,
    is_public: bool,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE group_chats SET invite_code = $2, \
                invite_expires_at = CASE WHEN $3 THEN NULL \
                                         ELSE clock_timestamp() + interval '7 days' END \
          WHERE id = $1 RETURNING invite_expires_at",
    )
    .bind(group_id)
    .bind(code)
    .bind(is_public)
    .fetch_one(conn)
    .await
}

/// Soft-deletes a group's chat.
pub async fn soft_delete_chat(conn: &mut PgConnection, chat_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chats SET deleted_at = clock_timestamp(), updated_at = clock_timestamp() \
          WHERE id = $1",
    )
    .bind(chat_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Members of a group with their roles, in join order.
pub async fn members_with_roles(
    conn: &mut PgConnection,
    group_id: Uuid,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, role FROM group_members WHERE group_chat_id = $1 ORDER BY joined_at, id",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await
}

/// A live group found by its invite code (exact, case-sensitive).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InviteTarget {
    pub chat_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub member_count: i64,
    pub is_public: bool,
    pub expired: bool,
}

/// Looks a live group up by invite code (served by the code's unique index).
pub async fn by_invite_code<'e, E>(exec: E, code: &str) -> Result<Option<InviteTarget>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query_as(
        "SELECT g.chat_id, g.name, g.description, av.file_name AS avatar, g.member_count, \
                g.is_public, COALESCE(g.invite_expires_at < now(), false) AS expired \
           FROM group_chats g \
           JOIN chats c ON c.id = g.chat_id AND c.deleted_at IS NULL \
           LEFT JOIN media av ON av.id = g.avatar_id \
          WHERE g.invite_code = $1",
    )
    .bind(code)
    .fetch_optional(exec)
    .await
}

/// Whether the (locked) group's invite has expired, by the database clock.
pub async fn invite_expired(conn: &mut PgConnection, group_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(invite_expires_at < now(), false) FROM group_chats WHERE id = $1",
    )
    .bind(group_id)
    .fetch_one(conn)
    .await
}

/// A live group's id and whether `viewer` is a member (member list checks).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupAccess {
    pub group_id: Uuid,
    pub is_member: bool,
}

/// Finds a live group by chat id, with `viewer`'s membership.
pub async fn access(
    db: &PgPool,
    chat_id: Uuid,
    viewer: Option<Uuid>,
) -> Result<Option<GroupAccess>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.id AS group_id, \
                ($2::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM group_members gm \
                        WHERE gm.group_chat_id = g.id AND gm.user_id = $2)) AS is_member \
           FROM group_chats g JOIN chats c ON c.id = g.chat_id AND c.deleted_at IS NULL \
          WHERE g.chat_id = $1",
    )
    .bind(chat_id)
    .bind(viewer)
    .fetch_optional(db)
    .await
}

/// One page of a group's live members in join order (served by
/// `group_members_group_joined_idx`), optionally filtered by a
/// case-insensitive prefix of username or full name.
pub async fn member_page(
    db: &PgPool,
    group_id: Uuid,
    prefix: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    let mut sql = format!(
        "SELECT gm.id, gm.user_id, u.username, u.full_name, av.file_name AS avatar, gm.role, \
                gm.joined_at, {ACTIVE_BAN} AS is_banned \
           FROM group_members gm \
           JOIN users u ON u.id = gm.user_id AND u.deleted_at IS NULL \
           LEFT JOIN media av ON av.id = u.avatar_id \
          WHERE gm.group_chat_id = $1"
    );
    if prefix.is_some() {
        sql.push_str(
            " AND (lower(u.username) LIKE lower($2) OR lower(u.full_name) LIKE lower($2))",
        );
    }
    if after.is_some() {
        sql.push_str(" AND (gm.joined_at, gm.id) > ($3, $4)");
    }
    sql.push_str(" ORDER BY gm.joined_at, gm.id LIMIT $5");
    // A search is planned with its actual prefix (unprepared), so the users'
    // prefix indexes serve it; a plain page is a keyset walk either way.
    sqlx::query_as(&sql)
        .persistent(prefix.is_none())
        .bind(group_id)
        .bind(prefix)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(db)
        .await
}

/// One page of the public directory. The statement text holds only the
/// predicates in use and is sent unprepared (`persistent(false)`), so the
/// planner sees the actual prefix and can turn `LIKE 'q%'` into ranges of
/// the `*_prefix_idx` indexes; without a query the page is a walk of
/// `group_chats_public_name_id_idx` / `group_chats_public_member_count_idx`
/// from the keyset position. Deleted groups are removed by an anti-join
/// against the few soft-deleted chats (`chats_deleted_at_idx`), never by
/// probing or scanning `chats` for every candidate row.
pub async fn public_page(
    db: &mut PgConnection,
    viewer: Uuid,
    prefix: Option<&str>,
    sort: PublicSort,
    after: Option<&PublicCursor>,
    limit: i64,
) -> Result<Vec<PublicGroupRow>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT g.id, g.chat_id, g.name, g.description, av.file_name AS avatar, g.member_count, \
                EXISTS (SELECT 1 FROM group_members gm \
                         WHERE gm.group_chat_id = g.id AND gm.user_id = $1) AS is_member \
           FROM group_chats g \
           LEFT JOIN media av ON av.id = g.avatar_id \
          WHERE g.is_public = true \
            AND NOT EXISTS (SELECT 1 FROM chats c \
                             WHERE c.id = g.chat_id AND c.deleted_at IS NOT NULL)",
    );
    if prefix.is_some() {
        sql.push_str(" AND (lower(g.name) LIKE lower($2) OR lower(g.description) LIKE lower($2))");
    }
    let (name_after, count_after, id_after) = match after {
        Some(PublicCursor::Name(n, id)) => (Some(n.as_str()), None, Some(*id)),
        Some(PublicCursor::MemberCount(n, id)) => (None, Some(*n), Some(*id)),
        None => (None, None, None),
    };
    match sort {
        PublicSort::Name => {
            if name_after.is_some() {
                sql.push_str(" AND (g.name, g.id) > ($3, $5)");
            }
            sql.push_str(" ORDER BY g.name, g.id");
        }
        PublicSort::MemberCount => {
            if count_after.is_some() {
                sql.push_str(" AND (-g.member_count, g.id) > (-$4::bigint, $5)");
            }
            sql.push_str(" ORDER BY -g.member_count, g.id");
        }
    }
    sql.push_str(" LIMIT $6");
    sqlx::query_as(&sql)
        .persistent(false)
        .bind(viewer)
        .bind(prefix)
        .bind(name_after)
        .bind(count_after)
        .bind(id_after)
        .bind(limit)
        .fetch_all(db)
        .await
}
