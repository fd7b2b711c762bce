//! Removes `Idempotency-Key` records of sends past their 24 h window
//! (expired ones are already ignored; this only keeps the table small).

use super::{JobContext, BATCH};
use crate::messages::idempotency::repo;

pub(super) async fn run(ctx: &JobContext) -> anyhow::Result<(u64, u64)> {
    let mut deleted = 0;
    loop {
        let n = repo::delete_expired(&ctx.db, BATCH).await?;
        deleted += n;
        if n < BATCH as u64 {
            return Ok((deleted, 0));
        }
    }
}
