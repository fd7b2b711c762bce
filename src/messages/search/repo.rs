//! SQL of message search. Both statements match through
//! `messages_search_idx` (GIN on `atoitalk_search_doc(content)`, live text
//! only), so their conditions repeat its expression and predicate exactly
//! (which also lets the planner use the statistics on that expression).
//! They run as unnamed statements: planned with the actual search text each
//! time, so the planner sees how common its words are.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::query::TsQuery;

/// The match condition on `m`: the query's words are `$2`, its prefix
/// token the parameter `token` (see `query::TsQuery`).
fn matching(token: &str) -> String {
    format!(
        "m.deleted_at IS NULL AND m.content IS NOT NULL \
         AND atoitalk_search_doc(m.content) @@ atoitalk_search_query($2, {token})"
    )
}

/// The per-chat statement: `$1` chat, `$2`/`$6` the query, `$3` hidden_at,
/// `$4` cursor id, `$5` limit. The planner picks between intersecting the
/// index with the chat's rows and walking the chat newest first.
pub fn in_chat_sql() -> String {
    let matching = matching("$6");
    format!(
        "SELECT m.id FROM messages m \
          WHERE m.chat_id = $1 AND {matching} \
            AND ($3::timestamptz IS NULL OR m.created_at > $3) AND m.id < $4 \
          ORDER BY m.id DESC LIMIT $5"
    )
}

/// Set for the per-chat statement's transaction. With the statistics on
/// the search document the planner knows a mid-frequency word (`kopi`, in
/// 0.9 % of messages) is rare enough to intersect the index with the chat,
/// and at the default `random_page_cost` (4, for uncached disks) it costs
/// checking a small chat's rows as reading ~100 pages from disk; measured
/// on the bench's 100-message chat that chose 8-20 ms instead of 1 ms. The
/// rows a search reads are cached (hot messages), so they are costed so.
pub const IN_CHAT_SETTINGS: &str = "SET LOCAL random_page_cost = 1.1";

/// The global statement: `$1` the caller's readable chats, `$2`/`$7` the
/// query, `$3` cursor id, `$4` limit, `$5`/`$6` the hidden chats and their
/// `hidden_at`. One plain statement, planned with the actual search text
/// and the statistics of the search document (migration
/// `20260201000000_message_search_stats.sql`), so the planner picks per
/// search: a common word walks `messages_pkey` newest first and stops at
/// the page (the matches are dense), a rarer one intersects
/// `messages_search_idx` with the chats' rows and sorts the few matches.
/// Before those statistics every search was estimated alike, which is why
/// this used to force the intersection (137 ms for a word in 37 % of the
/// messages, now a few ms: bench/README.md).
pub fn global_sql() -> String {
    let matching = matching("$7");
    format!(
        "SELECT m.id FROM messages m \
          WHERE m.chat_id = ANY($1) AND {matching} AND m.id < $3 \
            AND NOT EXISTS (SELECT 1 FROM unnest($5::uuid[], $6::timestamptz[]) x(chat_id, at) \
                             WHERE x.chat_id = m.chat_id AND m.created_at <= x.at) \
          ORDER BY m.id DESC LIMIT $4"
    )
}

/// Set for the global statement's transaction: a parallel newest-first
/// walk is far slower than a serial one (each worker fills its queue
/// before the first row is merged: 0.7-1 s instead of 20-40 ms measured),
/// and a search is small enough for one process either way.
pub const GLOBAL_SETTINGS: &str = "SET LOCAL max_parallel_workers_per_gather = 0";

/// Ids of one chat's matching messages older than `before`, newest first,
/// none from before the viewer's `hidden_at`.
pub async fn in_chat(
    conn: &mut PgConnection,
    chat_id: Uuid,
    query: &TsQuery,
    hidden_at: Option<DateTime<Utc>>,
    before: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query(IN_CHAT_SETTINGS).execute(&mut *tx).await?;
    let ids = sqlx::query_scalar(&in_chat_sql())
        .persistent(false)
        .bind(chat_id)
        .bind(&query.words)
        .bind(hidden_at)
        .bind(before)
        .bind(limit)
        .bind(&query.token)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids)
}

/// The chats `viewer` may read, with their `hidden_at`: private chats in one
/// of whose slots they sit and groups they are a member of (not those they
/// left), neither deleted. The same rules as `chat_context`.
///
/// The chat and group lookups are scalar subqueries on purpose: as joins,
/// the planner hashed all of `chats` and `group_chats` for a viewer in 500
/// chats (seq scans of 10,000 and 6,000 rows: 5.5 ms, a quarter of a global
/// search's budget); as subqueries they are one primary-key probe per chat
/// of the viewer's (measured 4.0 → 2.5 ms per call through psql on the
/// bench's data). `OFFSET 0` keeps the group arm from being flattened back.
const READABLE_CHATS: &str = "\
    SELECT p.chat_id, CASE WHEN p.user1_id = $1 THEN p.user1_hidden_at \
                           ELSE p.user2_hidden_at END AS hidden_at \
      FROM private_chats p \
     WHERE (p.user1_id = $1 OR p.user2_id = $1) \
       AND (SELECT c.deleted_at IS NULL FROM chats c WHERE c.id = p.chat_id) \
    UNION ALL \
    SELECT x.chat_id, NULL::timestamptz \
      FROM (SELECT (SELECT g.chat_id FROM group_chats g WHERE g.id = gm.group_chat_id) AS chat_id \
              FROM group_members gm WHERE gm.user_id = $1 OFFSET 0) x \
     WHERE (SELECT c.deleted_at IS NULL FROM chats c WHERE c.id = x.chat_id)";

/// The chats a global search covers.
#[derive(Debug, Default)]
pub struct Readable {
    pub chats: Vec<Uuid>,
    /// Hidden chats and their `hidden_at` (few).
    pub hidden: Vec<Uuid>,
    pub hidden_at: Vec<DateTime<Utc>>,
}

pub async fn readable_chats(
    conn: &mut PgConnection,
    viewer: Uuid,
) -> Result<Readable, sqlx::Error> {
    let rows: Vec<(Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(READABLE_CHATS)
        .bind(viewer)
        .fetch_all(conn)
        .await?;
    let mut out = Readable::default();
    for (chat, hidden_at) in rows {
        out.chats.push(chat);
        if let Some(at) = hidden_at {
            out.hidden.push(chat);
            out.hidden_at.push(at);
        }
    }
    Ok(out)
}

/// Ids of matching messages older than `before` in `chats`, newest first,
/// none from before a chat's `hidden_at`.
pub async fn global(
    conn: &mut PgConnection,
    chats: &Readable,
    query: &TsQuery,
    before: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    if chats.chats.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = conn.begin().await?;
    sqlx::query(GLOBAL_SETTINGS).execute(&mut *tx).await?;
    let ids = sqlx::query_scalar(&global_sql())
        .persistent(false)
        .bind(&chats.chats)
        .bind(&query.words)
        .bind(before)
        .bind(limit)
        .bind(&chats.hidden)
        .bind(&chats.hidden_at)
        .bind(&query.token)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids)
}
