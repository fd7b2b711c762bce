//! SQL of the one-statement send.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::messages::repo::{block_partners, private_counters, send_context_sql};

/// One recipient of the new message with their counter. The sender's own
/// row (always present when the message was stored) also carries what the
/// response renders and the account's role.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recorded {
    pub user_id: Uuid,
    pub unread: i64,
    /// `created_at` as stamped.
    pub at: DateTime<Utc>,
    pub sender_name: Option<String>,
    pub sender_avatar: Option<String>,
    /// The sender's role in the group (the rendering's `sender_role`).
    pub my_role: Option<String>,
    pub account_role: Option<String>,
}

/// Stores message `id` with `content` from `me` in `chat_id` when the send
/// is allowed outright, returning its recipients (empty: nothing stored).
/// `sid` is the token's session. The caller holds the chat's advisory lock,
/// which every writer of what this statement reads about the chat (member
/// rows, read positions, hides) also takes, so the statement's snapshot,
/// taken after that lock, is as fresh as the general path's.
pub async fn record_plain_send(
    conn: &mut PgConnection,
    chat_id: Uuid,
    me: Uuid,
    sid: Option<Uuid>,
    id: Uuid,
    content: &str,
) -> Result<Vec<Recorded>, sqlx::Error> {
    // One text per case, as `send_context` (a `$5 IS NULL` branch would be
    // re-planned on every send).
    static WITHOUT_SESSION: LazyLock<String> = LazyLock::new(|| statement(None));
    static WITH_SESSION: LazyLock<String> = LazyLock::new(|| statement(Some(5)));
    let q = match sid {
        None => sqlx::query_as(&WITHOUT_SESSION),
        Some(_) => sqlx::query_as(&WITH_SESSION),
    }
    .bind(chat_id)
    .bind(me)
    .bind(id)
    .bind(content);
    match sid {
        Some(sid) => q.bind(sid),
        None => q,
    }
    .fetch_all(conn)
    .await
}

/// `$1` chat, `$2` sender, `$3` the new id, `$4` content, `$5` session.
///
/// `ctx` keeps its row only when the general path's verdicts all pass: a
/// live account with a live session and no ban (an expired one is lifted
/// by the general path),
/// a live chat the sender is in, and in a private chat a live, unbanned,
/// unblocked other participant. It also requires `$3` to be newer than the
/// chat's last message, so the pointer and `created_at` simply move
/// forward. The chat row is taken `SKIP LOCKED`: a row lock held by anyone
/// else means "let the general path wait for it". The stamp is read after
/// the row lock (`t` scans `ctx`), as in `record_new_message`. Member rows
/// are found by `(SELECT group_id FROM ctx)`, a value the index takes,
/// rather than by a join the planner may turn into a scan of all the
/// sender's memberships.
fn statement(session: Option<u8>) -> String {
    let ctx = send_context_sql(session, "FOR UPDATE OF c SKIP LOCKED");
    format!(
        "WITH ctx0 AS ({ctx}), \
         ctx AS MATERIALIZED ( \
           SELECT group_id, my_role, sender_name, sender_avatar, account_role, last_message_at \
             FROM ctx0 \
            WHERE NOT deleted AND is_member AND account_live AND account_session_live \
              AND NOT COALESCE(account_banned, false) \
              AND (chat_type <> 'private' \
                   OR (other_exists AND NOT other_deleted AND NOT other_banned AND NOT blocked)) \
              AND (last_message_id IS NULL OR last_message_id < $3)), \
         t AS MATERIALIZED (SELECT GREATEST(clock_timestamp(), ctx.last_message_at) AS at FROM ctx), \
         ins AS ( \
           INSERT INTO messages (id, created_at, updated_at, type, content, chat_id, sender_id) \
           SELECT $3, t.at, t.at, 'regular', $4, $1, $2 FROM t), \
         adv AS ( \
           UPDATE chats SET message_seq = message_seq + 1, last_message_id = $3, \
                  last_message_at = t.at, updated_at = t.at \
             FROM t WHERE id = $1 \
           RETURNING message_seq), \
         pc AS ( \
           UPDATE private_chats SET {counters} \
             FROM t WHERE chat_id = $1 \
           RETURNING CASE WHEN user1_id = $2 THEN user2_id ELSE user1_id END AS other, \
                     CASE WHEN user1_id = $2 THEN user2_unread_count ELSE user1_unread_count END AS n), \
         me AS ( \
           UPDATE group_members SET read_seq = adv.message_seq, last_read_at = t.at \
             FROM t, adv \
            WHERE group_chat_id = (SELECT group_id FROM ctx) AND user_id = $2) \
         SELECT $2::uuid AS user_id, 0::bigint AS unread, t.at, ctx.sender_name, ctx.sender_avatar, \
                ctx.my_role, ctx.account_role \
           FROM t, ctx \
         UNION ALL \
         SELECT pc.other, pc.n::bigint, t.at, NULL, NULL, NULL, NULL FROM t, pc \
          WHERE pc.other IS NOT NULL \
         UNION ALL \
         SELECT gm.user_id, adv.message_seq - gm.read_seq, t.at, NULL, NULL, NULL, NULL \
           FROM t, adv, group_members gm \
          WHERE gm.group_chat_id = (SELECT group_id FROM ctx) AND gm.user_id <> $2 \
            AND gm.user_id NOT IN ({blocks})",
        counters = private_counters!("2"),
        blocks = block_partners!("2"),
    )
}
