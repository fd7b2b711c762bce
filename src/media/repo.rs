//! SQL of the media feature.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A media row as the media endpoints need it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MediaRow {
    pub id: Uuid,
    pub file_name: String,
    pub original_name: String,
    pub file_size: i64,
    pub mime_type: String,
    pub category: String,
    pub upload_status: String,
    pub upload_expires_at: Option<DateTime<Utc>>,
    pub uploaded_by_id: Option<Uuid>,
}

const MEDIA_COLUMNS: &str = "id, file_name, original_name, file_size, mime_type, category, \
     upload_status, upload_expires_at, uploaded_by_id";

/// A new media row: a pending presigned upload (`expires_at` set), or a
/// file the API stored itself (multipart upload), complete at once.
pub struct NewMedia<'a> {
    pub id: Uuid,
    pub file_name: &'a str,
    pub original_name: &'a str,
    pub file_size: i64,
    pub mime_type: &'a str,
    pub category: &'a str,
    /// `Some`: pending until then; `None`: completed now.
    pub expires_at: Option<DateTime<Utc>>,
    pub uploader: Uuid,
}

/// Inserts a media row and returns it.
pub async fn insert(db: &PgPool, m: &NewMedia<'_>) -> Result<MediaRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO media (id, file_name, original_name, file_size, mime_type, category, \
         upload_status, upload_expires_at, uploaded_by_id, completed_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, \
                 CASE WHEN $7::timestamptz IS NULL THEN 'completed' ELSE 'pending' END, $7, $8, \
                 CASE WHEN $7::timestamptz IS NULL THEN now() END, now(), now()) \
         RETURNING {MEDIA_COLUMNS}"
    ))
    .bind(m.id)
    .bind(m.file_name)
    .bind(m.original_name)
    .bind(m.file_size)
    .bind(m.mime_type)
    .bind(m.category)
    .bind(m.expires_at)
    .bind(m.uploader)
    .fetch_one(db)
    .await
}

/// Count and declared bytes of `uploader`'s unexpired pending uploads.
pub async fn pending_usage(db: &PgPool, uploader: Uuid) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(sum(file_size), 0)::bigint FROM media \
         WHERE uploaded_by_id = $1 AND upload_status = 'pending' AND upload_expires_at > now()",
    )
    .bind(uploader)
    .fetch_one(db)
    .await
}

/// Deletes a media row nothing links to (no message, avatar or report);
/// false when it is linked or gone.
pub async fn delete_unlinked(db: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM media m WHERE m.id = $1 AND m.message_id IS NULL \
           AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_id = m.id) \
           AND NOT EXISTS (SELECT 1 FROM group_chats g WHERE g.avatar_id = m.id) \
           AND NOT EXISTS (SELECT 1 FROM report_evidence_media r WHERE r.media_id = m.id)",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One media row.
pub async fn find(db: &PgPool, id: Uuid) -> Result<Option<MediaRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {MEDIA_COLUMNS} FROM media WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Marks a pending upload of `uploader` completed. `None` when it is no
/// longer pending (a concurrent completion won): the status condition in the
/// UPDATE makes completion happen exactly once without holding a row lock
/// across the storage round trip.
/// `sealed_key`: the fresh key the bytes were copied to (see
/// `media::seal`), which becomes the media's `file_name`.
pub async fn mark_completed(
    db: &PgPool,
    id: Uuid,
    uploader: Uuid,
    sealed_key: Option<&str>,
) -> Result<Option<MediaRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE media SET upload_status = 'completed', completed_at = now(), \
         upload_expires_at = NULL, updated_at = now(), file_name = COALESCE($3, file_name) \
         WHERE id = $1 AND uploaded_by_id = $2 AND upload_status = 'pending' \
         RETURNING {MEDIA_COLUMNS}"
    ))
    .bind(id)
    .bind(uploader)
    .bind(sealed_key)
    .fetch_optional(db)
    .await
}

/// Records keys to delete from `bucket` after `after` unless a media row
/// references them by then (a later date for the same key wins).
pub async fn retire_keys(
    db: &PgPool,
    bucket: &str,
    keys: &[&str],
    after: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO storage_stale_objects (bucket, key, delete_after) \
         SELECT $1, k, $3 FROM unnest($2::text[]) AS k \
         ON CONFLICT (bucket, key) DO UPDATE \
         SET delete_after = GREATEST(storage_stale_objects.delete_after, EXCLUDED.delete_after)",
    )
    .bind(bucket)
    .bind(keys)
    .bind(after)
    .execute(db)
    .await
    .map(|_| ())
}

/// What decides who may fetch a media item's URL.
#[derive(Debug, sqlx::FromRow)]
pub struct AccessRow {
    pub file_name: String,
    pub category: String,
    pub upload_status: String,
    pub uploaded_by_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    /// The linked message is soft-deleted.
    pub message_deleted: bool,
    /// The caller is a participant/member of the linked message's chat.
    pub caller_in_chat: bool,
    /// The media is pinned as evidence of some report.
    pub in_evidence: bool,
}

/// Access facts of `id` for `caller`, in one query.
pub async fn access(db: &PgPool, id: Uuid, caller: Uuid) -> Result<Option<AccessRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.file_name, m.category, m.upload_status, m.uploaded_by_id, m.message_id, \
           (msg.deleted_at IS NOT NULL) AS message_deleted, \
           COALESCE(( \
             EXISTS (SELECT 1 FROM private_chats pc WHERE pc.chat_id = msg.chat_id \
                     AND (pc.user1_id = $2 OR pc.user2_id = $2)) \
             OR EXISTS (SELECT 1 FROM group_chats g \
                        JOIN group_members gm ON gm.group_chat_id = g.id \
                        WHERE g.chat_id = msg.chat_id AND gm.user_id = $2) \
           ), false) AS caller_in_chat, \
           EXISTS (SELECT 1 FROM report_evidence_media r WHERE r.media_id = m.id) AS in_evidence \
         FROM media m LEFT JOIN messages msg ON msg.id = m.message_id \
         WHERE m.id = $1",
    )
    .bind(id)
    .bind(caller)
    .fetch_optional(db)
    .await
}
