//! Removes private chats whose two participants are both gone.

use super::{JobContext, BATCH};

pub(super) async fn run(ctx: &JobContext) -> anyhow::Result<(u64, u64)> {
    let mut deleted = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM chats WHERE id IN ( \
               SELECT p.chat_id FROM private_chats p \
               WHERE p.user1_id IS NULL AND p.user2_id IS NULL \
               LIMIT $1)",
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
    Ok((deleted, 0))
}
