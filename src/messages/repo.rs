//! SQL of the messages feature. Messages are loaded for rendering by one
//! query per page ([`message_json_sql`]): sender, sender role, attachments,
//! reply preview and the users named in `action_data` come from correlated
//! subqueries of that same statement, serialised by Postgres as one JSON
//! object per message.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::dto::MessageRow;

/// A UUID in canonical text form (for ids stored inside `action_data`).
const UUID_RE: &str =
    "'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'";

/// The rendering query of messages matching `filter` (a condition on `m`),
/// one `jsonb` column `j` per message (shape: `dto::MessageRow`). Ordering is
/// left to the caller.
pub fn message_json_sql(filter: &str) -> String {
    let user_ref = |key: &str| {
        format!(
            "(SELECT jsonb_build_object('deleted', u.deleted_at IS NOT NULL, 'name', u.full_name) \
               FROM users u \
              WHERE u.id = CASE WHEN (m.action_data->>'{key}') ~ {UUID_RE} \
                                THEN (m.action_data->>'{key}')::uuid END)"
        )
    };
    format!(
        "SELECT to_jsonb(x) AS j FROM ( \
           SELECT m.id, m.chat_id, m.sender_id, \
                  COALESCE(su.deleted_at IS NOT NULL, false) AS sender_deleted, \
                  su.full_name AS sender_name, \
                  sav.file_name AS sender_avatar, \
                  (SELECT gm.role FROM group_chats g \
                     JOIN group_members gm ON gm.group_chat_id = g.id \
                    WHERE g.chat_id = m.chat_id AND gm.user_id = m.sender_id) AS sender_role, \
                  m.type, m.content, m.action_data, m.created_at, m.deleted_at, m.edited_at, \
                  (SELECT jsonb_agg(jsonb_build_object( \
                             'id', md.id, 'file_name', md.file_name, \
                             'original_name', md.original_name, 'file_size', md.file_size, \
                             'mime_type', md.mime_type) ORDER BY md.id) \
                     FROM media md WHERE md.message_id = m.id) AS attachments, \
                  (SELECT jsonb_build_object( \
                             'id', r.id, 'sender_id', r.sender_id, \
                             'sender_deleted', COALESCE(ru.deleted_at IS NOT NULL, false), \
                             'sender_name', ru.full_name, 'type', r.type, 'content', r.content, \
                             'action_data', r.action_data, 'created_at', r.created_at, \
                             'deleted_at', r.deleted_at) \
                     FROM messages r LEFT JOIN users ru ON ru.id = r.sender_id \
                    WHERE r.id = m.reply_to_id) AS reply, \
                  {target} AS target, \
                  {actor} AS actor \
             FROM messages m \
             LEFT JOIN users su ON su.id = m.sender_id \
             LEFT JOIN media sav ON sav.id = su.avatar_id \
            WHERE {filter} \
         ) x",
        target = user_ref("target_id"),
        actor = user_ref("actor_id"),
    )
}

fn decode_rows(values: Vec<Value>) -> Result<Vec<MessageRow>, sqlx::Error> {
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .collect()
}

/// Loads messages by id for rendering (any order; callers sort).
pub async fn load_rows(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<MessageRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One id (every send/edit) gets its own statement: with `= $1` the
    // generic plan's estimates match a custom plan's, so PostgreSQL stops
    // re-planning this many-sub-select statement on every call (planning
    // was 0.37 ms of 0.39 ms per send with `= ANY($1)`).
    let values: Vec<Value> = if let [id] = ids {
        let sql = message_json_sql("m.id = $1");
        sqlx::query_scalar(&sql).bind(id).fetch_all(conn).await?
    } else {
        // Planned on every call (a generic plan of `= ANY($1)` assumes ten
        // ids, so a custom plan for fewer looks cheaper). Padding the array
        // to ten kept the generic plan but made search slower (global p50
        // 11 → 18 ms, `bench/README.md`): the custom plans stay.
        let sql = message_json_sql("m.id = ANY($1)");
        sqlx::query_scalar(&sql).bind(ids).fetch_all(conn).await?
    };
    decode_rows(values)
}

/// A page of history plus whether visible messages exist beyond its far
/// side (see [`history_page`]).
pub struct HistoryRows {
    pub rows: Vec<MessageRow>,
    /// For `older`: a newer visible message exists at or after the cursor.
    /// For `newer`: an older one exists at or before it.
    pub beyond_cursor: bool,
}

/// Visibility of a message (of table alias `t`, or none) in chat `$1` for a
/// viewer who hid the chat at `$hidden` (no such parameter when they did
/// not). Two texts, not `$n IS NULL OR created_at > $n`: with that filter
/// the generic plan of a history page read the chat's index entries by
/// `(chat_id, created_at)`, all 100,000 of a big chat, to sort them by id
/// (measured: 20-28 ms for its first page); without it, the
/// `(chat_id, id)` index walks back from the cursor and stops.
fn visible(t: &str, hidden: Option<usize>) -> String {
    match hidden {
        None => format!("{t}chat_id = $1"),
        Some(n) => format!("{t}chat_id = $1 AND {t}created_at > ${n}"),
    }
}

/// The statement of [`history_page`]: `$1` chat, `$2` cursor, `$3` limit
/// and, when the viewer hid the chat, `$4` their `hidden_at`.
pub fn history_page_sql(older: bool, hidden: bool) -> String {
    let (cmp, order, beyond, back) = if older {
        ("<", "DESC", ">=", "ASC")
    } else {
        (">", "ASC", "<=", "DESC")
    };
    let vis = visible("", hidden.then_some(4));
    let filter = format!(
        "m.id IN (SELECT id FROM messages WHERE {vis} AND id {cmp} $2 \
                  ORDER BY id {order} LIMIT $3)"
    );
    format!(
        // The nearest message beyond the cursor, in id order: as a plain
        // EXISTS the generic plan took the `(chat_id)` index and filtered
        // the chat's every entry by id (3,000 of 3,000 in the plan test).
        "SELECT q.j, (SELECT id FROM messages WHERE {vis} AND id {beyond} $2 \
                       ORDER BY id {back} LIMIT 1) IS NOT NULL AS beyond \
           FROM ({inner}) q",
        inner = message_json_sql(&filter)
    )
}

/// One history page in `older` (`id < cursor`, newest first) or `newer`
/// (`id > cursor`, oldest first) direction, `limit` rows at most. The flag
/// is computed from the cursor alone: every visible message between the page
/// and the cursor would have been part of the page.
pub async fn history_page(
    conn: &mut PgConnection,
    chat_id: Uuid,
    hidden_at: Option<DateTime<Utc>>,
    cursor: Option<Uuid>,
    older: bool,
    limit: i64,
) -> Result<HistoryRows, sqlx::Error> {
    // No cursor = start from the far end. A sentinel keeps `id <cmp> $2` a
    // plain index condition: with `$2 IS NULL OR ...` a cached generic plan
    // walks the chat from its newest message and filters (measured: 8.6 ms
    // for a page 90% back in a 100k-message chat).
    let cursor = cursor.unwrap_or(if older { Uuid::max() } else { Uuid::nil() });
    let sql = history_page_sql(older, hidden_at.is_some());
    let q = sqlx::query_as(&sql).bind(chat_id).bind(cursor).bind(limit);
    let rows: Vec<(Value, bool)> = match hidden_at {
        Some(h) => q.bind(h),
        None => q,
    }
    .fetch_all(conn)
    .await?;
    let beyond_cursor = rows.first().is_some_and(|r| r.1);
    Ok(HistoryRows {
        rows: decode_rows(rows.into_iter().map(|r| r.0).collect())?,
        beyond_cursor,
    })
}

/// The target message (if visible) with up to `before` older and `after`
/// newer visible messages around it.
pub async fn around_page(
    conn: &mut PgConnection,
    chat_id: Uuid,
    hidden_at: Option<DateTime<Utc>>,
    target: Uuid,
    before: i64,
    after: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let (vis, vis_t) = (
        visible("", hidden_at.map(|_| 5)),
        visible("t.", hidden_at.map(|_| 5)),
    );
    let filter = format!(
        "m.id IN ( \
           SELECT t.id FROM messages t WHERE t.id = $2 AND {vis_t} \
           UNION ALL \
           (SELECT id FROM messages WHERE {vis} AND id < $2 ORDER BY id DESC LIMIT $3) \
           UNION ALL \
           (SELECT id FROM messages WHERE {vis} AND id > $2 ORDER BY id ASC LIMIT $4)) \
         AND EXISTS (SELECT 1 FROM messages t WHERE t.id = $2 AND {vis_t})"
    );
    let sql = message_json_sql(&filter);
    let q = sqlx::query_scalar(&sql)
        .bind(chat_id)
        .bind(target)
        .bind(before)
        .bind(after);
    let values: Vec<Value> = match hidden_at {
        Some(h) => q.bind(h),
        None => q,
    }
    .fetch_all(conn)
    .await?;
    decode_rows(values)
}

/// A chat seen from one user, for every permission decision of this
/// feature. Loaded (and optionally row-locked) in one statement.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatContext {
    pub chat_type: String,
    pub deleted: bool,
    pub last_message_id: Option<Uuid>,
    pub last_message_at: Option<DateTime<Utc>>,
    /// The database clock when the row was read (one clock for every
    /// instance, so created_at/hidden_at comparisons never depend on skew).
    pub now: DateTime<Utc>,
    /// Private: the user is in a slot. Group: the user has a member row.
    pub is_member: bool,
    pub group_id: Option<Uuid>,
    pub my_role: Option<String>,
    pub unread: i64,
    pub last_read_at: Option<DateTime<Utc>>,
    pub hidden_at: Option<DateTime<Utc>>,
    /// Private chats: the other slot's user id (NULL after a hard delete).
    pub other_id: Option<Uuid>,
    pub other_exists: bool,
    pub other_deleted: bool,
    pub other_banned: bool,
    /// Private chats: a block row in either direction with the other user.
    pub blocked: bool,
}

impl ChatContext {
    pub fn is_private(&self) -> bool {
        self.chat_type == "private"
    }
}

/// Loads the chat as seen by `me`; `lock` takes the chat row `FOR UPDATE`
/// (serialising message creation, read and hide on that chat).
pub async fn chat_context(
    conn: &mut PgConnection,
    chat_id: Uuid,
    me: Uuid,
    lock: bool,
) -> Result<Option<ChatContext>, sqlx::Error> {
    static PLAIN: LazyLock<String> = LazyLock::new(|| chat_context_sql("", "", ""));
    static LOCKED: LazyLock<String> = LazyLock::new(|| chat_context_sql("", "", LOCK_CHAT));
    sqlx::query_as(if lock { &LOCKED } else { &PLAIN })
        .bind(chat_id)
        .bind(me)
        .fetch_optional(conn)
        .await
}

/// The chat context of a send plus what rendering the new message needs
/// about its sender, so the send answers without re-reading the message,
/// and the sender's account as the authentication reads it (the send
/// authenticates in this statement instead of a statement of its own).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SendContext {
    #[sqlx(flatten)]
    pub chat: ChatContext,
    pub sender_deleted: bool,
    pub sender_name: Option<String>,
    /// `media.file_name` of the sender's avatar.
    pub sender_avatar: Option<String>,
    /// The sender's account exists and is not deleted.
    pub account_live: bool,
    pub account_role: Option<String>,
    pub account_banned: Option<bool>,
    pub account_banned_until: Option<DateTime<Utc>>,
    /// The token's session is live (true for a token without one).
    pub account_session_live: bool,
}

impl SendContext {
    /// The account as [`crate::auth::principal::TokenChecked::accept`]
    /// takes it; `None` when there is no live account.
    pub fn account(&self) -> Option<crate::auth::principal::AccountState> {
        Some(crate::auth::principal::AccountState {
            role: self.account_role.clone().filter(|_| self.account_live)?,
            is_banned: self.account_banned.unwrap_or(false),
            banned_until: self.account_banned_until,
            session_live: self.account_session_live,
        })
    }
}

/// [`chat_context`] with the chat row locked, plus the sender's rendering
/// fields (the same joins as [`message_json_sql`]'s sender) and account;
/// `sid` is the token's session, whose liveness is read too.
pub async fn send_context(
    conn: &mut PgConnection,
    chat_id: Uuid,
    me: Uuid,
    sid: Option<Uuid>,
) -> Result<Option<SendContext>, sqlx::Error> {
    // One text per case, not `$3 IS NULL OR …`, which PostgreSQL would
    // re-plan on every send (see `record_new_message`).
    static WITHOUT_SESSION: LazyLock<String> = LazyLock::new(|| send_context_sql(None, LOCK_CHAT));
    static WITH_SESSION: LazyLock<String> = LazyLock::new(|| send_context_sql(Some(3), LOCK_CHAT));
    match sid {
        None => sqlx::query_as(&WITHOUT_SESSION).bind(chat_id).bind(me),
        Some(sid) => sqlx::query_as(&WITH_SESSION)
            .bind(chat_id)
            .bind(me)
            .bind(sid),
    }
    .fetch_optional(conn)
    .await
}

/// The row lock of [`chat_context`]'s `lock`.
pub const LOCK_CHAT: &str = "FOR UPDATE OF c";

/// The text of [`send_context`] (`$1` chat, `$2` sender) with the token's
/// session as parameter `session` (None: a token without one) and `lock`
/// as its row-locking clause.
pub fn send_context_sql(session: Option<u8>, lock: &str) -> String {
    let session_live = match session {
        None => "true".to_string(),
        Some(n) => format!(
            "EXISTS (SELECT 1 FROM sessions s WHERE s.id = ${n} AND s.user_id = $2 \
                       AND s.revoked_at IS NULL)"
        ),
    };
    chat_context_sql(
        &format!(
            ", COALESCE(su.deleted_at IS NOT NULL, false) AS sender_deleted, \
               su.full_name AS sender_name, sav.file_name AS sender_avatar, \
               (su.id IS NOT NULL AND su.deleted_at IS NULL) AS account_live, \
               su.role AS account_role, su.is_banned AS account_banned, \
               su.banned_until AS account_banned_until, {session_live} AS account_session_live"
        ),
        "LEFT JOIN users su ON su.id = $2 LEFT JOIN media sav ON sav.id = su.avatar_id",
        lock,
    )
}

/// The chat-context statement (`$1` chat, `$2` viewer) with extra columns
/// and joins, and `lock` (empty, or a row-locking clause) at its end.
fn chat_context_sql(columns: &str, joins: &str, lock: &str) -> String {
    format!(
        "SELECT c.type AS chat_type, c.deleted_at IS NOT NULL AS deleted, \
                c.last_message_id, c.last_message_at, clock_timestamp() AS now, \
                COALESCE(CASE WHEN p.id IS NOT NULL THEN (p.user1_id = $2 OR p.user2_id = $2) \
                              ELSE gm.id IS NOT NULL END, false) AS is_member, \
                g.id AS group_id, gm.role AS my_role, \
                COALESCE(CASE WHEN p.user1_id = $2 THEN p.user1_unread_count \
                              WHEN p.user2_id = $2 THEN p.user2_unread_count \
                              ELSE c.message_seq - gm.read_seq END, 0)::bigint AS unread, \
                CASE WHEN p.user1_id = $2 THEN p.user1_last_read_at \
                     WHEN p.user2_id = $2 THEN p.user2_last_read_at \
                     ELSE gm.last_read_at END AS last_read_at, \
                CASE WHEN p.user1_id = $2 THEN p.user1_hidden_at \
                     WHEN p.user2_id = $2 THEN p.user2_hidden_at END AS hidden_at, \
                o.other_id, \
                ou.id IS NOT NULL AS other_exists, \
                COALESCE(ou.deleted_at IS NOT NULL, false) AS other_deleted, \
                COALESCE(ou.is_banned AND (ou.banned_until IS NULL OR ou.banned_until > now()), false) \
                  AS other_banned, \
                EXISTS (SELECT 1 FROM user_blocks b \
                         WHERE (b.blocker_id = $2 AND b.blocked_id = o.other_id) \
                            OR (b.blocker_id = o.other_id AND b.blocked_id = $2)) AS blocked \
                {columns} \
           FROM chats c \
           LEFT JOIN private_chats p ON p.chat_id = c.id \
           LEFT JOIN group_chats g ON g.chat_id = c.id \
           LEFT JOIN group_members gm ON gm.group_chat_id = g.id AND gm.user_id = $2 \
           LEFT JOIN LATERAL (SELECT CASE WHEN p.user1_id = $2 THEN p.user2_id \
                                          WHEN p.user2_id = $2 THEN p.user1_id END AS other_id) o ON true \
           LEFT JOIN users ou ON ou.id = o.other_id \
           {joins} \
          WHERE c.id = $1 {lock}"
    )
}

/// Whether `reply_to` is a live regular message of `chat_id`.
pub async fn can_reply_to(
    conn: &mut PgConnection,
    chat_id: Uuid,
    reply_to: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1 AND chat_id = $2 \
                          AND deleted_at IS NULL AND type = 'regular')",
    )
    .bind(reply_to)
    .bind(chat_id)
    .fetch_one(conn)
    .await
}

/// A message row to insert.
pub struct NewMessage<'a> {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub sender_id: Option<Uuid>,
    pub kind: &'a str,
    pub content: Option<&'a str>,
    pub action_data: Option<&'a Value>,
    pub reply_to_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// Inserts a message.
pub async fn insert_message(
    conn: &mut PgConnection,
    m: &NewMessage<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO messages (id, created_at, updated_at, type, content, action_data, chat_id, \
                               reply_to_id, sender_id) \
         VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(m.id)
    .bind(m.created_at)
    .bind(m.kind)
    .bind(m.content)
    .bind(m.action_data)
    .bind(m.chat_id)
    .bind(m.reply_to_id)
    .bind(m.sender_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The users in a block relation (either direction) with `$N`, for
/// `NOT IN`: read once per statement through both block indexes, so a
/// big group costs one hash probe per member, not one lookup each.
macro_rules! block_partners {
    ($n:literal) => {
        concat!(
            "SELECT b.blocked_id FROM user_blocks b WHERE b.blocker_id = $",
            $n,
            " UNION ALL SELECT b.blocker_id FROM user_blocks b WHERE b.blocked_id = $",
            $n
        )
    };
}

pub(crate) use block_partners;

/// A new message's `private_chats` update (`SET` list): the participant
/// other than sender `$N` gets one more unread, the sender reads up to it
/// (at `t.at`). Shared by both sends of a private chat.
macro_rules! private_counters {
    ($n:literal) => {
        concat!(
            "user1_unread_count = CASE WHEN user1_id = $",
            $n,
            " THEN 0 ELSE user1_unread_count + 1 END, \
             user1_last_read_at = CASE WHEN user1_id = $",
            $n,
            " THEN t.at ELSE user1_last_read_at END, \
             user2_unread_count = CASE WHEN user2_id = $",
            $n,
            " THEN 0 ELSE user2_unread_count + 1 END, \
             user2_last_read_at = CASE WHEN user2_id = $",
            $n,
            " THEN t.at ELSE user2_last_read_at END "
        )
    };
}
pub(crate) use private_counters;

/// Whether the message being recorded (`$1` at `t.at`) is newer than the
/// chat's last message: the pointer only moves forward.
macro_rules! forward {
    () => {
        "(last_message_at IS NULL OR last_message_at < t.at \
          OR (last_message_at = t.at AND (last_message_id IS NULL OR last_message_id < $1)))"
    };
}

/// Records a new regular message in ONE statement: inserts it, moves the
/// chat's last-message pointer forward, counts it in `chats.message_seq`,
/// bumps the other participant's counter in a private chat (a group
/// member's counter is `message_seq - read_seq`, so a group send writes no
/// member row but the sender's: see migration `20260301000000`), marks it
/// read for the sender and returns the recipients of
/// `message.new` with their new counters: everyone except, in a group, the
/// members in a block relation with the sender (their counter still moves;
/// they see the message in the history, not live). The send path only
/// reaches here when no block stands between private-chat participants.
///
/// `created_at` is stamped HERE, from the database clock, at least
/// `m.created_at` (the chat's previous last message): the caller holds the
/// chat row lock, so a mark-read that committed before this statement has
/// an earlier `last_read_at`, and one after it a later one. A timestamp
/// read before the lock wait could land behind a concurrent reader's
/// `last_read_at` while still counting as unread. Each row also carries
/// that stamp (the send renders its response from it).
pub async fn record_new_message(
    conn: &mut PgConnection,
    m: &NewMessage<'_>,
    group_id: Option<Uuid>,
) -> Result<Vec<(Uuid, i64, DateTime<Utc>)>, sqlx::Error> {
    // One text per kind of chat rather than one with `$9 IS NULL` branches:
    // PostgreSQL folds such a branch away in a custom plan, finds that
    // cheaper than the generic one and re-plans the statement on every send.
    let sql = match group_id {
        None => RECORD_PRIVATE,
        Some(_) => RECORD_GROUP,
    };
    let q = sqlx::query_as(sql)
        .bind(m.id)
        .bind(m.created_at)
        .bind(m.kind)
        .bind(m.content)
        .bind(m.action_data)
        .bind(m.chat_id)
        .bind(m.reply_to_id)
        .bind(m.sender_id);
    match group_id {
        Some(g) => q.bind(g),
        None => q,
    }
    .fetch_all(conn)
    .await
}

/// The stamp, the insert and the chat row's update shared by both
/// statements of [`record_new_message`].
macro_rules! record_head {
    () => {
        concat!(
            "WITH t AS MATERIALIZED (SELECT GREATEST(clock_timestamp(), $2::timestamptz) AS at), \
             ins AS ( \
               INSERT INTO messages (id, created_at, updated_at, type, content, action_data, \
                                     chat_id, reply_to_id, sender_id) \
               SELECT $1, t.at, t.at, $3, $4, $5, $6, $7, $8 FROM t), \
             adv AS ( \
               UPDATE chats SET message_seq = message_seq + 1, \
                 last_message_id = CASE WHEN ",
            forward!(),
            " THEN $1 ELSE last_message_id END, \
                 last_message_at = CASE WHEN ",
            forward!(),
            " THEN t.at ELSE last_message_at END, \
                 updated_at = CASE WHEN ",
            forward!(),
            " THEN t.at ELSE updated_at END \
                 FROM t \
                WHERE id = $6 \
               RETURNING message_seq), "
        )
    };
}

/// Private chat: the other participant's counter goes up, the sender's to 0.
const RECORD_PRIVATE: &str = concat!(
    record_head!(),
    "pc AS (UPDATE private_chats SET ",
    private_counters!("8"),
    "FROM t \
        WHERE chat_id = $6 \
       RETURNING user1_id, user1_unread_count, user2_id, user2_unread_count) \
     SELECT v.u, v.n::bigint, t.at FROM t, pc \
       CROSS JOIN LATERAL (VALUES (pc.user1_id, pc.user1_unread_count), \
                                  (pc.user2_id, pc.user2_unread_count)) v(u, n) \
      WHERE v.u IS NOT NULL"
);

/// Group `$9`: the sender's read position moves to the new message.
const RECORD_GROUP: &str = concat!(
    record_head!(),
    "me AS ( \
       UPDATE group_members SET read_seq = adv.message_seq, last_read_at = t.at \
         FROM t, adv \
        WHERE group_chat_id = $9 AND user_id = $8) \
     SELECT gm.user_id, \
            CASE WHEN gm.user_id = $8 THEN 0 ELSE adv.message_seq - gm.read_seq END, t.at \
       FROM t, adv, group_members gm \
      WHERE gm.group_chat_id = $9 \
        AND gm.user_id NOT IN (",
    block_partners!("8"),
    ")"
);

/// Moves the chat's last-message pointer forward, never backwards.
pub async fn advance_last_message(
    conn: &mut PgConnection,
    chat_id: Uuid,
    message_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chats SET last_message_id = $2, last_message_at = $3, updated_at = $3 \
          WHERE id = $1 \
            AND (last_message_at IS NULL OR last_message_at < $3 \
                 OR (last_message_at = $3 AND (last_message_id IS NULL OR last_message_id < $2)))",
    )
    .bind(chat_id)
    .bind(message_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Links attachments being sent: only the sender's own, completed,
/// unattached message attachments. Returns how many rows were linked; the
/// `message_id IS NULL` guard makes concurrent sends of one media id link it
/// at most once.
pub async fn attach_on_send(
    conn: &mut PgConnection,
    message_id: Uuid,
    sender: Uuid,
    media_ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE media SET message_id = $1, updated_at = now() \
          WHERE id = ANY($3) AND message_id IS NULL AND uploaded_by_id = $2 \
            AND category = 'message_attachment' AND upload_status = 'completed'",
    )
    .bind(message_id)
    .bind(sender)
    .bind(media_ids)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Unlinks the given attachments from a message (edit); they become orphans
/// that their uploader may attach again.
pub async fn detach(
    conn: &mut PgConnection,
    message_id: Uuid,
    media_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE media SET message_id = NULL, updated_at = now() \
          WHERE message_id = $1 AND id = ANY($2)",
    )
    .bind(message_id)
    .bind(media_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// A message with what edit/delete decide on, row-locked.
#[derive(Debug, sqlx::FromRow)]
pub struct MessageState {
    pub chat_id: Uuid,
    pub sender_id: Option<Uuid>,
    pub kind: String,
    pub content: Option<String>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub chat_deleted: bool,
    pub now: DateTime<Utc>,
    pub attachment_ids: Vec<Uuid>,
}

/// The chat a message belongs to (to take the chat's ordering lock first).
pub async fn message_chat<'e, E>(exec: E, message_id: Uuid) -> Result<Option<Uuid>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query_scalar("SELECT chat_id FROM messages WHERE id = $1")
        .bind(message_id)
        .fetch_optional(exec)
        .await
}

/// Loads and locks a message for edit/delete.
pub async fn lock_message(
    conn: &mut PgConnection,
    message_id: Uuid,
) -> Result<Option<MessageState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.chat_id, m.sender_id, m.type AS kind, m.content, m.deleted_at IS NOT NULL AS deleted, \
                m.created_at, c.deleted_at IS NOT NULL AS chat_deleted, clock_timestamp() AS now, \
                ARRAY(SELECT md.id FROM media md WHERE md.message_id = m.id ORDER BY md.id) \
                  AS attachment_ids \
           FROM messages m JOIN chats c ON c.id = m.chat_id \
          WHERE m.id = $1 FOR UPDATE OF m",
    )
    .bind(message_id)
    .fetch_optional(conn)
    .await
}

/// Links attachments added by an edit: the editor's own, completed,
/// unattached message attachments that are nobody's avatar.
pub async fn attach_on_edit(
    conn: &mut PgConnection,
    message_id: Uuid,
    editor: Uuid,
    media_ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE media md SET message_id = $1, updated_at = now() \
          WHERE md.id = ANY($3) AND md.message_id IS NULL AND md.uploaded_by_id = $2 \
            AND md.category = 'message_attachment' AND md.upload_status = 'completed' \
            AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_id = md.id) \
            AND NOT EXISTS (SELECT 1 FROM group_chats g WHERE g.avatar_id = md.id)",
    )
    .bind(message_id)
    .bind(editor)
    .bind(media_ids)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Stores edited content.
pub async fn update_content(
    conn: &mut PgConnection,
    message_id: Uuid,
    content: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE messages SET content = $2, edited_at = $3, updated_at = $3 WHERE id = $1")
        .bind(message_id)
        .bind(content)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Soft-deletes a message: tombstone without content; its attachments are
/// unlinked AND disowned, so the deleted content cannot be re-attached.
pub async fn soft_delete(
    conn: &mut PgConnection,
    message_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET deleted_at = $2, content = NULL, updated_at = $2 WHERE id = $1",
    )
    .bind(message_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE media SET message_id = NULL, uploaded_by_id = NULL, updated_at = $2 \
          WHERE message_id = $1",
    )
    .bind(message_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Recipients of a chat's message events with each one's current unread
/// counter, in one query: every participant (private) or member row
/// (group), minus anyone in a block relation with `sender`, in groups too
/// (spec: heavy delivery). No `sender` (a moderator's takedown): no filter.
pub async fn message_recipients(
    conn: &mut PgConnection,
    chat_id: Uuid,
    sender: Option<Uuid>,
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT r.user_id, r.unread::bigint FROM ( \
            SELECT p.user1_id AS user_id, p.user1_unread_count AS unread \
              FROM private_chats p WHERE p.chat_id = $1 AND p.user1_id IS NOT NULL \
            UNION ALL \
            SELECT p.user2_id, p.user2_unread_count \
              FROM private_chats p WHERE p.chat_id = $1 AND p.user2_id IS NOT NULL \
            UNION ALL \
            SELECT gm.user_id, c.message_seq - gm.read_seq \
              FROM chats c JOIN group_chats g ON g.chat_id = c.id \
              JOIN group_members gm ON gm.group_chat_id = g.id \
             WHERE c.id = $1 \
         ) r \
         WHERE r.user_id NOT IN (",
        block_partners!("2"),
        ")"
    ))
    .bind(chat_id)
    .bind(sender)
    .fetch_all(conn)
    .await
}
