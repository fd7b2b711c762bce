//! Deletes object keys listed in `storage_stale_objects` once they are due:
//! upload keys whose bytes were copied to a fresh key on completion (see
//! `media::seal`), which a still-valid presigned PUT could have written
//! again. A key some media row references is only unlisted, never deleted.
//! Storage first, then the row, so a storage failure keeps the row for the
//! next run.

use chrono::{DateTime, Utc};

use super::{JobContext, BATCH};
use crate::infra::storage::Bucket;

pub(super) async fn run(ctx: &JobContext) -> anyhow::Result<(u64, u64)> {
    // Referenced keys (the copy a completion kept) just leave the list.
    sqlx::query(
        "DELETE FROM storage_stale_objects s WHERE s.delete_after < now() \
         AND EXISTS (SELECT 1 FROM media m WHERE m.file_name = s.key)",
    )
    .execute(&ctx.db)
    .await?;
    let (mut deleted, mut failed) = (0u64, 0u64);
    let mut after: (DateTime<Utc>, String, String) =
        (DateTime::UNIX_EPOCH, String::new(), String::new());
    loop {
        let due: Vec<(DateTime<Utc>, String, String)> = sqlx::query_as(
            "SELECT delete_after, bucket, key FROM storage_stale_objects \
             WHERE delete_after < now() AND (delete_after, bucket, key) > ($1, $2, $3) \
             ORDER BY delete_after, bucket, key LIMIT $4",
        )
        .bind(after.0)
        .bind(&after.1)
        .bind(&after.2)
        .bind(BATCH)
        .fetch_all(&ctx.db)
        .await?;
        let Some(last) = due.last() else { break };
        after = last.clone();
        for (_, bucket, key) in &due {
            let which = if bucket == "public" {
                Bucket::Public
            } else {
                Bucket::Private
            };
            if let Err(e) = ctx.storage.delete(which, key).await {
                failed += 1;
                tracing::error!(error = %e, "stale object delete failed; kept for the next run");
                continue;
            }
            sqlx::query(
                "DELETE FROM storage_stale_objects s WHERE s.bucket = $1 AND s.key = $2 \
                 AND NOT EXISTS (SELECT 1 FROM media m WHERE m.file_name = s.key)",
            )
            .bind(bucket)
            .bind(key)
            .execute(&ctx.db)
            .await?;
            deleted += 1;
        }
        if due.len() < BATCH as usize {
            break;
        }
    }
    Ok((deleted, failed))
}
