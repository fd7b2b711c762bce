//! Removes private chats whose two participants are both gone.

use super::{delete_batches, JobContext, BATCH};

pub(super) async fn run(ctx: &JobContext) -> anyhow::Result<(u64, u64)> {
    let deleted = delete_batches(|| async {
        sqlx::query(
            "DELETE FROM chats WHERE id IN ( \
               SELECT p.chat_id FROM private_chats p \
               WHERE p.user1_id IS NULL AND p.user2_id IS NULL \
               LIMIT $1)",
        )
        .bind(BATCH)
        .execute(&ctx.db)
        .await
        .map(|r| r.rows_affected())
    })
    .await?;
    Ok((deleted, 0))
}
