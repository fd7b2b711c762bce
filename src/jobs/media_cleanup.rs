//! Deletes orphaned media: expired pending uploads and completed uploads
//! older than the retention that nothing references. Storage first, then the
//! row, under a row lock with the orphan conditions re-checked, so a media
//! item attached meanwhile is never lost and a storage failure keeps the row
//! for the next run. The pending-upload sweep runs the same code limited to
//! expired pending uploads.

use chrono::{Duration, Utc};
use uuid::Uuid;

use super::{JobContext, BATCH};
use crate::infra::storage::Bucket;

const ORPHAN: &str = "m.message_id IS NULL \
    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_id = m.id) \
    AND NOT EXISTS (SELECT 1 FROM group_chats g WHERE g.avatar_id = m.id) \
    AND NOT EXISTS (SELECT 1 FROM report_evidence_media r WHERE r.media_id = m.id) \
    AND ((m.upload_status = 'pending' AND COALESCE(m.upload_expires_at, m.created_at) < now()) \
      OR (m.upload_status = 'completed' AND COALESCE(m.completed_at, m.created_at) < $1))";

/// The extra condition of the pending-only sweep.
fn scope(pending_only: bool) -> &'static str {
    if pending_only {
        "AND m.upload_status = 'pending'"
    } else {
        ""
    }
}

pub(super) async fn run(ctx: &JobContext, pending_only: bool) -> anyhow::Result<(u64, u64)> {
    let retention_ms = (ctx.media_retention_days * 86_400_000.0) as i64;
    let cutoff = Utc::now() - Duration::milliseconds(retention_ms);
    let (mut deleted, mut failed) = (0u64, 0u64);
    let mut after = Uuid::nil();
    loop {
        let candidates: Vec<(Uuid,)> = sqlx::query_as(&format!(
            "SELECT m.id FROM media m WHERE {ORPHAN} {} AND m.id > $2 ORDER BY m.id LIMIT $3",
            scope(pending_only)
        ))
        .bind(cutoff)
        .bind(after)
        .bind(BATCH)
        .fetch_all(&ctx.db)
        .await?;
        let Some(last) = candidates.last() else { break };
        after = last.0;
        for (id,) in &candidates {
            match delete_one(ctx, *id, cutoff).await {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(e) => {
                    failed += 1;
                    tracing::error!(media_id = %id, error = %format!("{e:#}"), "media cleanup failed; row kept for the next run");
                }
            }
        }
        if candidates.len() < BATCH as usize {
            break;
        }
    }
    Ok((deleted, failed))
}

/// Deletes one media item if it is still an orphan. Returns false when it
/// was attached (or removed) since it was selected.
async fn delete_one(
    ctx: &JobContext,
    id: Uuid,
    cutoff: chrono::DateTime<Utc>,
) -> anyhow::Result<bool> {
    let mut tx = crate::infra::db::begin(&ctx.db).await?;
    let row: Option<(String, String)> = sqlx::query_as(&format!(
        "SELECT m.file_name, m.category FROM media m WHERE m.id = $2 AND {ORPHAN} FOR UPDATE OF m"
    ))
    .bind(cutoff)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((key, category)) = row else {
        return Ok(false);
    };
    let bucket = if category == "message_attachment" {
        Bucket::Private
    } else {
        Bucket::Public
    };
    ctx.storage.delete(bucket, &key).await?;
    sqlx::query("DELETE FROM media WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
