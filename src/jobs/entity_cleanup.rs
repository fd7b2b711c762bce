//! Hard-deletes users and chats soft-deleted longer than the retention.
//! Foreign-key actions remove or detach what hangs off them.

use chrono::{Duration, Utc};

use super::{JobContext, BATCH};

pub(super) async fn run(ctx: &JobContext) -> anyhow::Result<(u64, u64)> {
    let cutoff = Utc::now() - Duration::days(ctx.soft_delete_retention_days);
    let mut deleted = 0;
    for table in ["users", "chats"] {
        loop {
            let sql = format!(
                "DELETE FROM {table} WHERE id IN ( \
                   SELECT id FROM {table} WHERE deleted_at IS NOT NULL AND deleted_at < $1 \
                   LIMIT $2 FOR UPDATE SKIP LOCKED)"
            );
            let n = sqlx::query(&sql)
                .bind(cutoff)
                .bind(BATCH)
                .execute(&ctx.db)
                .await?
                .rows_affected();
            deleted += n;
            if n < BATCH as u64 {
                break;
            }
        }
    }
    Ok((deleted, 0))
}
