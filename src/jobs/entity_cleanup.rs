//! Hard-deletes users and chats soft-deleted longer than the retention.
//! Foreign-key actions remove or detach what hangs off them (a chat's
//! messages, and with them their reactions, edit history and pins). Groups
//! left without any member are removed too, and so are login sessions that
//! expired before the retention cutoff.

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
    // Groups whose every member is gone would otherwise live forever.
    loop {
        let n = sqlx::query(
            "DELETE FROM chats WHERE id IN ( \
               SELECT c.id FROM chats c JOIN group_chats g ON g.chat_id = c.id \
               WHERE c.type = 'group' \
                 AND NOT EXISTS (SELECT 1 FROM group_members m WHERE m.group_chat_id = g.id) \
               LIMIT $1 FOR UPDATE OF c SKIP LOCKED)",
        )
        .bind(BATCH)
        .execute(&ctx.db)
        .await?
        .rows_affected();
        deleted += n;
        if n < BATCH as u64 {
            break;
        }
    }
    // Login sessions whose token expired longer than the retention ago.
    loop {
        let n = crate::account::sessions::repo::delete_stale(&ctx.db, cutoff, BATCH).await?;
        deleted += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok((deleted, 0))
}
