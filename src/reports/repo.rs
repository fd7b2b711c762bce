//! SQL of the reports feature.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// "Actively banned" as SQL over a users alias.
macro_rules! active_ban {
    ($u:literal) => {
        concat!(
            "COALESCE(",
            $u,
            ".is_banned AND (",
            $u,
            ".banned_until IS NULL OR ",
            $u,
            ".banned_until > now()), false)"
        )
    };
}

/// A reported message with what the snapshot and the access check need.
#[derive(Debug, sqlx::FromRow)]
pub struct MessageTarget {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub chat_type: String,
    pub group_id: Option<Uuid>,
    pub sender_id: Option<Uuid>,
    pub sender_username: Option<String>,
    pub sender_name: Option<String>,
    pub content: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited: bool,
    /// The reporter is a participant (private) or member (group).
    pub reporter_in_chat: bool,
}

/// The message, locked against concurrent changes while the report is
/// written (so the snapshot and the pinned attachments agree).
pub async fn message_target(
    conn: &mut PgConnection,
    message: Uuid,
    reporter: Uuid,
) -> Result<Option<MessageTarget>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.id, m.chat_id, c.type AS chat_type, g.id AS group_id, m.sender_id, \
           u.username AS sender_username, u.full_name AS sender_name, m.content, m.created_at, \
           (m.edited_at IS NOT NULL) AS edited, \
           CASE WHEN c.type = 'private' THEN EXISTS ( \
               SELECT 1 FROM private_chats pc WHERE pc.chat_id = m.chat_id \
               AND (pc.user1_id = $2 OR pc.user2_id = $2)) \
             ELSE EXISTS ( \
               SELECT 1 FROM group_members gm WHERE gm.group_chat_id = g.id AND gm.user_id = $2) \
           END AS reporter_in_chat \
         FROM messages m \
         JOIN chats c ON c.id = m.chat_id \
         LEFT JOIN group_chats g ON g.chat_id = m.chat_id \
         LEFT JOIN users u ON u.id = m.sender_id \
         WHERE m.id = $1 \
         FOR SHARE OF m",
    )
    .bind(message)
    .bind(reporter)
    .fetch_optional(conn)
    .await
}

/// An attachment of a reported message.
#[derive(Debug, sqlx::FromRow)]
pub struct AttachmentRow {
    pub id: Uuid,
    pub file_name: String,
    pub original_name: String,
    pub file_size: i64,
    pub mime_type: String,
}

/// Attachments currently linked to `message`.
pub async fn attachments(
    conn: &mut PgConnection,
    message: Uuid,
) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, file_name, original_name, file_size, mime_type FROM media \
         WHERE message_id = $1 ORDER BY id",
    )
    .bind(message)
    .fetch_all(conn)
    .await
}

/// A reported group (looked up by its chat id; deletion not checked).
#[derive(Debug, sqlx::FromRow)]
pub struct GroupTarget {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_by: Option<Uuid>,
    pub avatar_id: Option<Uuid>,
    pub avatar_file: Option<String>,
    pub reporter_is_member: bool,
}

pub async fn group_target(
    conn: &mut PgConnection,
    chat: Uuid,
    reporter: Uuid,
) -> Result<Option<GroupTarget>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.id, g.chat_id, g.name, g.description, g.created_by, g.avatar_id, \
           a.file_name AS avatar_file, \
           EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_chat_id = g.id \
                   AND gm.user_id = $2) AS reporter_is_member \
         FROM group_chats g LEFT JOIN media a ON a.id = g.avatar_id \
         WHERE g.chat_id = $1",
    )
    .bind(chat)
    .bind(reporter)
    .fetch_optional(conn)
    .await
}

/// A reported user (soft-deleted users included).
#[derive(Debug, sqlx::FromRow)]
pub struct UserTarget {
    pub id: Uuid,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_id: Option<Uuid>,
    pub avatar_file: Option<String>,
}

pub async fn user_target(
    conn: &mut PgConnection,
    user: Uuid,
) -> Result<Option<UserTarget>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.username, u.full_name, u.bio, u.avatar_id, a.file_name AS avatar_file \
         FROM users u LEFT JOIN media a ON a.id = u.avatar_id WHERE u.id = $1",
    )
    .bind(user)
    .fetch_optional(conn)
    .await
}

/// A report to insert.
pub struct NewReport<'a> {
    pub id: Uuid,
    pub target_type: &'a str,
    pub reason: &'a str,
    pub description: Option<&'a str>,
    pub snapshot: serde_json::Value,
    pub reporter: Uuid,
    pub message_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub target_user_id: Option<Uuid>,
}

/// Inserts a pending report and pins its evidence media.
pub async fn insert(
    conn: &mut PgConnection,
    r: &NewReport<'_>,
    evidence: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reports (id, target_type, reason, description, evidence_snapshot, status, \
           reporter_id, message_id, group_id, target_user_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, now(), now())",
    )
    .bind(r.id)
    .bind(r.target_type)
    .bind(r.reason)
    .bind(r.description)
    .bind(&r.snapshot)
    .bind(r.reporter)
    .bind(r.message_id)
    .bind(r.group_id)
    .bind(r.target_user_id)
    .execute(&mut *conn)
    .await?;
    if !evidence.is_empty() {
        sqlx::query(
            "INSERT INTO report_evidence_media (report_id, media_id) \
             SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(r.id)
        .bind(evidence)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A row of the admin list.
#[derive(Debug, sqlx::FromRow)]
pub struct ListRow {
    pub id: Uuid,
    pub target_type: String,
    pub reason: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub reporter_name: Option<String>,
}

/// Filters of the admin list.
pub struct ListFilter<'a> {
    pub status: Option<&'a str>,
    /// Already LIKE-escaped.
    pub query: Option<&'a str>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first (`id DESC`), keyset on `id`; `limit + 1` rows so the caller
/// can tell whether a next page exists.
pub async fn list(db: &mut PgConnection, f: &ListFilter<'_>) -> Result<Vec<ListRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, r.target_type, r.reason, r.status, r.created_at, u.full_name AS reporter_name \
         FROM reports r LEFT JOIN users u ON u.id = r.reporter_id \
         WHERE ($1::text IS NULL OR r.status = $1) \
           AND ($2::uuid IS NULL OR r.id < $2) \
           AND ($3::text IS NULL \
                OR r.reason ILIKE '%' || $3 || '%' \
                OR u.username ILIKE $3 || '%' \
                OR u.full_name ILIKE $3 || '%') \
         ORDER BY r.id DESC LIMIT $4",
    )
    .bind(f.status)
    .bind(f.before)
    .bind(f.query)
    .bind(f.limit + 1)
    .fetch_all(db)
    .await
}

/// Everything the admin detail shows, in one query.
#[derive(Debug, sqlx::FromRow)]
pub struct DetailRow {
    pub id: Uuid,
    pub target_type: String,
    pub reason: String,
    pub description: Option<String>,
    pub status: String,
    pub evidence_snapshot: Option<serde_json::Value>,
    pub resolution_notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub message_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub target_user_id: Option<Uuid>,
    pub reporter_id: Option<Uuid>,
    pub reporter_name: Option<String>,
    pub reporter_deleted: bool,
    pub reporter_banned: bool,
    pub reporter_avatar: Option<String>,
    pub target_user_gone: bool,
    pub target_user_banned: bool,
    pub message_gone: bool,
    pub sender_banned: bool,
    pub group_gone: bool,
}

pub async fn detail(db: &PgPool, id: Uuid) -> Result<Option<DetailRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT r.id, r.target_type, r.reason, r.description, r.status, r.evidence_snapshot, \
           r.resolution_notes, r.created_at, r.updated_at, r.message_id, r.group_id, \
           r.target_user_id, rep.id AS reporter_id, rep.full_name AS reporter_name, \
           (rep.id IS NULL OR rep.deleted_at IS NOT NULL) AS reporter_deleted, ",
        active_ban!("rep"),
        " AS reporter_banned, ra.file_name AS reporter_avatar, \
           (tu.id IS NULL OR tu.deleted_at IS NOT NULL) AS target_user_gone, ",
        active_ban!("tu"),
        " AS target_user_banned, \
           (msg.id IS NULL OR msg.deleted_at IS NOT NULL) AS message_gone, ",
        active_ban!("ms"),
        " AS sender_banned, \
           (g.id IS NULL OR gc.deleted_at IS NOT NULL) AS group_gone \
         FROM reports r \
         LEFT JOIN users rep ON rep.id = r.reporter_id \
         LEFT JOIN media ra ON ra.id = rep.avatar_id \
         LEFT JOIN users tu ON tu.id = r.target_user_id \
         LEFT JOIN messages msg ON msg.id = r.message_id \
         LEFT JOIN users ms ON ms.id = msg.sender_id \
         LEFT JOIN group_chats g ON g.id = r.group_id \
         LEFT JOIN chats gc ON gc.id = g.chat_id \
         WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Status and message of a report, locked for an admin decision.
pub async fn lock(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<(String, Option<Uuid>)>, sqlx::Error> {
    sqlx::query_as("SELECT status, message_id FROM reports WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Records an admin decision; `notes` replaces the notes only when given.
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    admin: Uuid,
    notes: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reports SET status = $2, resolved_by_id = $3, resolved_at = now(), \
           resolution_notes = COALESCE($4, resolution_notes), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(admin)
    .bind(notes)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes a reported message down: content cleared, attachments unlinked
/// (they stay pinned as evidence), soft-deleted if it was not yet. Returns
/// the chat id when the message was live before (so `message.delete` must
/// go out), `None` when it was missing or already deleted.
pub async fn take_down_message(
    conn: &mut PgConnection,
    message: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let row: Option<(Uuid, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT chat_id, deleted_at FROM messages WHERE id = $1 FOR UPDATE")
            .bind(message)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((chat, deleted_at)) = row else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE messages SET content = NULL, deleted_at = COALESCE(deleted_at, now()), \
         updated_at = now() WHERE id = $1",
    )
    .bind(message)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE media SET message_id = NULL, updated_at = now() WHERE message_id = $1")
        .bind(message)
        .execute(&mut *conn)
        .await?;
    // A deleted message keeps no pin and no earlier versions.
    crate::messages::pins::repo::remove(conn, message).await?;
    crate::messages::edits::repo::forget(conn, message).await?;
    Ok(deleted_at.is_none().then_some(chat))
}

/// Hard-deletes a report (its evidence links cascade; media rows stay).
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM reports WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
