//! Deletes admin audit entries older than `AUDIT_RETENTION_DAYS`.

use chrono::{Duration, Utc};

use super::{delete_batches, JobContext, BATCH};

pub(super) async fn run(ctx: &JobContext) -> anyhow::Result<(u64, u64)> {
    let cutoff = Utc::now() - Duration::days(ctx.audit_retention_days);
    let deleted = delete_batches(|| async {
        sqlx::query(
            "DELETE FROM admin_audit WHERE id IN ( \
               SELECT id FROM admin_audit WHERE created_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(BATCH)
        .execute(&ctx.db)
        .await
        .map(|r| r.rows_affected())
    })
    .await?;
    Ok((deleted, 0))
}
