//! SQL of reactions. Summaries of a whole page come from one statement.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// One emoji of one message as `viewer` sees it.
#[derive(Debug, sqlx::FromRow)]
pub struct SummaryRow {
    pub message_id: Uuid,
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

/// The reactions of every message in `ids`, grouped per message and in
/// order of first use, with `me` for `viewer`: one statement per page.
pub async fn summaries(
    conn: &mut PgConnection,
    ids: &[Uuid],
    viewer: Uuid,
) -> Result<Vec<SummaryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT message_id, emoji, count(*)::bigint AS count, bool_or(user_id = $2) AS me \
           FROM message_reactions WHERE message_id = ANY($1) \
          GROUP BY message_id, emoji \
          ORDER BY message_id, min(created_at), emoji",
    )
    .bind(ids)
    .bind(viewer)
    .fetch_all(conn)
    .await
}

/// Per emoji of one message (order of first use), who reacted with it, so
/// an event can carry each recipient's own `me`.
pub async fn reactors(
    conn: &mut PgConnection,
    message_id: Uuid,
) -> Result<Vec<(String, Vec<Uuid>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT emoji, array_agg(user_id) FROM message_reactions WHERE message_id = $1 \
          GROUP BY emoji ORDER BY min(created_at), emoji",
    )
    .bind(message_id)
    .fetch_all(conn)
    .await
}

/// A message whose reactions change, row-locked so concurrent changes of
/// one message serialise (the distinct-emoji cap holds under races).
#[derive(Debug, sqlx::FromRow)]
pub struct LockedMessage {
    pub chat_id: Uuid,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
}

/// Locks a message for a reaction change.
pub async fn lock_message(
    conn: &mut PgConnection,
    message_id: Uuid,
) -> Result<Option<LockedMessage>, sqlx::Error> {
    sqlx::query_as(
        "SELECT chat_id, deleted_at IS NOT NULL AS deleted, created_at FROM messages \
          WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(message_id)
    .fetch_optional(conn)
    .await
}

/// What adding a reaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Inserted,
    AlreadyThere,
    /// The emoji would be one more than `cap` distinct ones.
    TooMany,
}

/// Adds `user`'s `emoji` to a message unless present or over `cap`
/// distinct emoji, in one statement (the message row is locked).
pub async fn add(
    conn: &mut PgConnection,
    message_id: Uuid,
    emoji: &str,
    user: Uuid,
    cap: i64,
) -> Result<Added, sqlx::Error> {
    let (mine, inserted): (bool, i64) = sqlx::query_as(
        "WITH st AS ( \
           SELECT EXISTS (SELECT 1 FROM message_reactions \
                           WHERE message_id = $1 AND emoji = $2 AND user_id = $3) AS mine, \
                  EXISTS (SELECT 1 FROM message_reactions \
                           WHERE message_id = $1 AND emoji = $2) AS used, \
                  (SELECT count(DISTINCT emoji) FROM message_reactions \
                    WHERE message_id = $1) AS n), \
         ins AS ( \
           INSERT INTO message_reactions (message_id, emoji, user_id) \
           SELECT $1, $2, $3 FROM st WHERE NOT st.mine AND (st.used OR st.n < $4) \
           ON CONFLICT DO NOTHING RETURNING 1) \
         SELECT st.mine, (SELECT count(*) FROM ins) FROM st",
    )
    .bind(message_id)
    .bind(emoji)
    .bind(user)
    .bind(cap)
    .fetch_one(conn)
    .await?;
    Ok(match (mine, inserted) {
        (true, _) => Added::AlreadyThere,
        (false, 0) => Added::TooMany,
        _ => Added::Inserted,
    })
}

/// Removes `user`'s `emoji` from a message; whether a row went.
pub async fn remove(
    conn: &mut PgConnection,
    message_id: Uuid,
    emoji: &str,
    user: Uuid,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM message_reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
    )
    .bind(message_id)
    .bind(emoji)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}
