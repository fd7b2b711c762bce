//! SQL of message search. Both statements match through
//! `messages_search_idx` (GIN on `(chat_id, atoitalk_search_doc(content))`,
//! live text only), so their conditions repeat its expression and
//! predicate exactly. They run as unnamed statements: planned with the
//! actual search text each time, so the planner sees how common its words
//! are (a cached generic plan cannot, and might walk a big chat's messages
//! newest-first looking for a rare word).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The match condition on `m`, with the tsquery text as `$2`.
const MATCH: &str = "m.deleted_at IS NULL AND m.content IS NOT NULL \
    AND atoitalk_search_doc(m.content) @@ atoitalk_search_query($2)";

/// The per-chat statement: `$1` chat, `$2` tsquery text, `$3` hidden_at,
/// `$4` cursor id, `$5` limit.
pub fn in_chat_sql() -> String {
    format!(
        "SELECT m.id FROM messages m \
          WHERE m.chat_id = $1 AND {MATCH} \
            AND ($3::timestamptz IS NULL OR m.created_at > $3) AND m.id < $4 \
          ORDER BY m.id DESC LIMIT $5"
    )
}

/// The global statement: `$1` viewer, `$2` tsquery text, `$3` cursor id,
/// `$4` limit.
pub fn global_sql() -> String {
    format!(
        "SELECT m.id FROM ({READABLE_CHATS}) r \
           JOIN messages m ON m.chat_id = r.chat_id \
          WHERE {MATCH} AND (r.hidden_at IS NULL OR m.created_at > r.hidden_at) AND m.id < $3 \
          ORDER BY m.id DESC LIMIT $4"
    )
}

/// Ids of one chat's matching messages older than `before`, newest first,
/// none from before the viewer's `hidden_at`.
pub async fn in_chat(
    conn: &mut PgConnection,
    chat_id: Uuid,
    tsquery: &str,
    hidden_at: Option<DateTime<Utc>>,
    before: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(&in_chat_sql())
        .persistent(false)
        .bind(chat_id)
        .bind(tsquery)
        .bind(hidden_at)
        .bind(before)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The chats `viewer` may read, with their `hidden_at`: private chats in one
/// of whose slots they sit and groups they are a member of (not those they
/// left), neither deleted. The same rules as `chat_context`.
pub const READABLE_CHATS: &str = "\
    SELECT p.chat_id, CASE WHEN p.user1_id = $1 THEN p.user1_hidden_at \
                           ELSE p.user2_hidden_at END AS hidden_at \
      FROM private_chats p JOIN chats c ON c.id = p.chat_id AND c.deleted_at IS NULL \
     WHERE p.user1_id = $1 OR p.user2_id = $1 \
    UNION ALL \
    SELECT g.chat_id, NULL::timestamptz \
      FROM group_members gm JOIN group_chats g ON g.id = gm.group_chat_id \
      JOIN chats c ON c.id = g.chat_id AND c.deleted_at IS NULL \
     WHERE gm.user_id = $1";

/// Ids of matching messages older than `before` in every chat `viewer` may
/// read, newest first, none from before the chat's `hidden_at`.
pub async fn global(
    conn: &mut PgConnection,
    viewer: Uuid,
    tsquery: &str,
    before: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(&global_sql())
        .persistent(false)
        .bind(viewer)
        .bind(tsquery)
        .bind(before)
        .bind(limit)
        .fetch_all(conn)
        .await
}
