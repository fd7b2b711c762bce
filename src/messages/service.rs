//! Rules of the messages feature: send, edit, delete, history paging, and
//! the helpers other features reuse (rendering messages, inserting system
//! messages, fanning message events out to a chat).

use std::collections::HashSet;
use std::future::Future;

use chrono::Duration;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::dto::{
    decode_message_cursor, encode_message_cursor, Direction, EditInput, MessageDeletedPayload,
    MessageResponse, RenderOpts, SendMessageRequest, MAX_CONTENT_CHARS,
};
use super::idempotency::{self, Claim};
use super::ordering::{next_message_id, ChatOrderGuard};
use super::reactions::service as reactions;
use super::repo::{self, NewMessage};
use super::sent::{self, Sender};
use crate::auth::principal::Caller;
use crate::error::{AppError, AppResult};
use crate::http::response::{Page, PageMeta};
use crate::infra::storage::Storage;
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

/// How long after sending a message may be edited.
const EDIT_WINDOW_MINUTES: i64 = 15;

/// Runs a mutation to completion even if the client goes away: the handler
/// future may be dropped on disconnect, a spawned task is not, so committed
/// changes always get their events.
pub async fn run_detached<T, F>(fut: F) -> AppResult<T>
where
    F: Future<Output = AppResult<T>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(fut)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("request task failed: {e}")))?
}

/// Renders messages by id, ascending by id (creation order).
pub async fn load_message_responses(
    conn: &mut PgConnection,
    storage: &dyn Storage,
    ids: &[Uuid],
    opts: RenderOpts,
) -> Result<Vec<MessageResponse>, sqlx::Error> {
    if ids.is_empty() {
        // An empty page (a search with no hits) needs no round trip.
        return Ok(Vec::new());
    }
    let mut rows = repo::load_rows(conn, ids).await?;
    rows.sort_by_key(|r| r.id);
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(MessageResponse::render(row, storage, opts).await);
    }
    Ok(out)
}

/// Inserts a system message (`system_create`, `system_join`, ...) inside the
/// caller's transaction: takes the chat row lock, gives the message the
/// chat's next id/timestamp and moves the chat's last-message pointer.
/// System messages never change unread counters. Returns the message id.
pub async fn insert_system_message(
    tx: &mut PgConnection,
    chat_id: Uuid,
    actor: Option<Uuid>,
    kind: &str,
    action_data: Option<&Value>,
) -> Result<Uuid, sqlx::Error> {
    let (last_id, last_at, now): (
        Option<Uuid>,
        Option<chrono::DateTime<chrono::Utc>>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT last_message_id, last_message_at, clock_timestamp() FROM chats WHERE id = $1 FOR UPDATE",
    )
    .bind(chat_id)
    .fetch_one(&mut *tx)
    .await?;
    let (id, at) = next_message_id(last_id, last_at, now);
    repo::insert_message(
        tx,
        &NewMessage {
            id,
            chat_id,
            sender_id: actor,
            kind,
            content: None,
            action_data,
            reply_to_id: None,
            created_at: at,
        },
    )
    .await?;
    repo::advance_last_message(tx, chat_id, id, at).await?;
    Ok(id)
}

/// Publishes a message event (`message.new` / `.update` / `.delete`) to every
/// member of the chat, each with their own `meta.unread_count`, in one
/// Redis round trip. Call after commit. Failures are logged: the change is
/// already committed and delivery is at-most-once.
pub async fn publish_to_chat(
    state: &AppState,
    conn: &mut PgConnection,
    chat_id: Uuid,
    sender: Option<Uuid>,
    kind: &'static str,
    payload: impl Serialize,
) {
    match repo::message_recipients(conn, chat_id, sender).await {
        Ok(recipients) => {
            let event = Event::new(kind, payload, Some(chat_id), sender);
            state.bus.to_counted(vec![(&event, recipients)]).await;
        }
        Err(e) => {
            tracing::error!(error = %e, %chat_id, "Failed to fetch chat members for broadcast")
        }
    }
}

/// As [`publish_to_chat`], with `personalise` adjusting each recipient's
/// copy of the payload (the `me` of reactions).
pub async fn publish_to_chat_personalised(
    state: &AppState,
    conn: &mut PgConnection,
    chat_id: Uuid,
    sender: Option<Uuid>,
    kind: &'static str,
    payload: impl Serialize,
    personalise: impl Fn(Uuid, &mut Value),
) {
    match repo::message_recipients(conn, chat_id, sender).await {
        Ok(recipients) => {
            let event = Event::new(kind, payload, Some(chat_id), sender);
            let items = recipients
                .into_iter()
                .map(|(user, unread)| {
                    let mut e = event.with_unread(unread);
                    personalise(user, &mut e.payload);
                    (user, e)
                })
                .collect();
            state.bus.to_each(items).await;
        }
        Err(e) => {
            tracing::error!(error = %e, %chat_id, "Failed to fetch chat members for broadcast")
        }
    }
}

/// A validated send request.
#[derive(Debug, Clone)]
pub struct SendInput {
    pub chat_id: Uuid,
    pub content: String,
    pub attachment_ids: Vec<Uuid>,
    pub reply_to_id: Option<Uuid>,
}

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

fn parse_ids(raw: Option<Vec<String>>) -> Result<Vec<Uuid>, AppError> {
    raw.unwrap_or_default()
        .iter()
        .map(|s| Uuid::try_parse(s.trim()).map_err(|_| bad_request()))
        .collect()
}

/// At most 4000 code points, and no NUL (Postgres text cannot store it).
fn content_ok(content: &str) -> bool {
    content.chars().count() <= MAX_CONTENT_CHARS && !content.contains('\0')
}

fn has_duplicates(ids: &[Uuid]) -> bool {
    let mut seen = HashSet::with_capacity(ids.len());
    !ids.iter().all(|id| seen.insert(*id))
}

/// Validates a send body (400 `Bad Request` on any failure). Unlike the
/// reference, a message must end up with text or an attachment: whitespace
/// only or `attachment_ids: []` without text is refused.
pub fn validate_send(req: SendMessageRequest) -> AppResult<SendInput> {
    let chat_id = req
        .chat_id
        .as_deref()
        .and_then(|s| Uuid::try_parse(s.trim()).ok())
        .filter(|id| !id.is_nil())
        .ok_or_else(bad_request)?;
    let content = req.content.unwrap_or_default();
    if !content_ok(&content) {
        return Err(bad_request());
    }
    let attachment_ids = parse_ids(req.attachment_ids)?;
    let reply_to_id = match req.reply_to_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(Uuid::try_parse(s).map_err(|_| bad_request())?),
    };
    let content = content.trim().to_string();
    if content.is_empty() && attachment_ids.is_empty() {
        return Err(bad_request());
    }
    if has_duplicates(&attachment_ids) {
        return Err(bad_request());
    }
    Ok(SendInput {
        chat_id,
        content,
        attachment_ids,
        reply_to_id,
    })
}

/// `POST /api/messages`. With an idempotency `claim`, a retry of a send
/// that already happened returns that message and publishes nothing.
pub async fn send(
    state: &AppState,
    caller: Caller,
    input: SendInput,
    claim: Option<Claim>,
) -> AppResult<MessageResponse> {
    let me = caller.user_id();
    // A retry may answer with the stored message: the account comes first.
    let caller = match (caller, &claim) {
        (Caller::Deferred(t), Some(_)) => Caller::Verified(t.verify(&state.db).await?),
        (c, _) => c,
    };
    if let Some(claim) = &claim {
        let mut conn = crate::infra::db::acquire(&state.db).await?;
        if let Some(id) = claim.prior(&mut conn, me).await? {
            return load_one(&mut conn, state, id, RenderOpts::FULL).await;
        }
    }
    let mut guard = ChatOrderGuard::acquire_deferred(&state.db, input.chat_id).await?;
    let res = send_ordered(state, &mut guard, caller, &input, claim.as_ref()).await;
    guard.release().await;
    res
}

/// The send under the chat's ordering guard: a plain text message in one
/// statement when it can be, else the general path.
async fn send_ordered(
    state: &AppState,
    guard: &mut ChatOrderGuard,
    caller: Caller,
    input: &SendInput,
    claim: Option<&Claim>,
) -> AppResult<MessageResponse> {
    let plain = claim.is_none() && input.attachment_ids.is_empty() && input.reply_to_id.is_none();
    let caller = if plain {
        match super::plain_send::service::send(state, guard, caller, input.chat_id, &input.content)
            .await?
        {
            Ok(msg) => return Ok(msg),
            Err(caller) => caller,
        }
    } else {
        caller
    };
    send_locked(state, guard, caller, input, claim).await
}

async fn send_locked(
    state: &AppState,
    guard: &mut ChatOrderGuard,
    caller: Caller,
    input: &SendInput,
    claim: Option<&Claim>,
) -> AppResult<MessageResponse> {
    let chat_id = input.chat_id;
    let me = caller.user_id();
    let sid = caller.unread_session();
    let mut tx = guard.begin_locked().await?;
    let sctx = repo::send_context(&mut tx, chat_id, me, sid).await?;
    // The authentication's account read rides on this statement; its
    // verdict comes before any about the chat. Without a chat row the
    // statement read no account: it is read on its own.
    if let Caller::Deferred(t) = caller {
        match &sctx {
            Some(c) => t.accept(&state.db, c.account()).await?,
            None => t.verify(&state.db).await?,
        };
    }
    let sctx = sctx
        .filter(|c| !c.chat.deleted)
        .ok_or_else(|| AppError::not_found("Chat not found or deleted"))?;
    let ctx = &sctx.chat;
    let (id, at) = next_message_id(ctx.last_message_id, ctx.last_message_at, ctx.now);
    // The key is taken before anything else is written: a concurrent retry
    // waits on its primary key here and then answers with the winner's
    // message, whatever changed in between.
    if let Some(claim) = claim {
        let key = claim.key.as_str();
        if !idempotency::repo::claim(&mut tx, me, key, &claim.request_hash, id).await? {
            tx.rollback().await?;
            let conn = guard.conn();
            let prior = claim.prior(conn, me).await?.ok_or_else(|| {
                AppError::conflict("Idempotency-Key is in use by another request; retry")
            })?;
            return load_one(conn, state, prior, RenderOpts::FULL).await;
        }
    }
    if !ctx.is_member {
        return Err(AppError::forbidden("Forbidden"));
    }
    super::access::check_private_write(ctx)?;
    if let Some(reply) = input.reply_to_id {
        if !repo::can_reply_to(&mut tx, chat_id, reply).await? {
            return Err(AppError::bad_request("Cannot reply to this message"));
        }
    }
    // Insert, pointer, counters and recipients in one round trip.
    let rows = repo::record_new_message(
        &mut tx,
        &NewMessage {
            id,
            chat_id,
            sender_id: Some(me),
            kind: "regular",
            content: Some(&input.content),
            action_data: None,
            reply_to_id: input.reply_to_id,
            created_at: at,
        },
        ctx.group_id,
    )
    .await?;
    if !input.attachment_ids.is_empty() {
        let linked = repo::attach_on_send(&mut tx, id, me, &input.attachment_ids).await?;
        if linked != input.attachment_ids.len() as u64 {
            return Err(bad_request());
        }
    }
    tx.commit().await?;
    let conn = guard.conn();

    let stamped = rows.first().map(|r| r.2);
    let recipients = rows.into_iter().map(|(user, unread, _)| (user, unread));
    let msg = match stamped {
        Some(created_at) if input.attachment_ids.is_empty() && input.reply_to_id.is_none() => {
            let sender = Sender {
                deleted: sctx.sender_deleted,
                name: sctx.sender_name.clone(),
                avatar: sctx.sender_avatar.clone(),
                // The rendering query's role is the sender's member row in
                // the chat's group: exactly the context's `my_role`.
                role: sctx.chat.my_role.clone(),
            };
            let content = input.content.as_str();
            sent::render_plain(state, id, chat_id, me, content, created_at, sender).await
        }
        // Attachments and reply previews are read back with the message.
        _ => load_one(conn, state, id, RenderOpts::FULL).await?,
    };
    sent::publish_new(state, &msg, chat_id, me, recipients, claim).await;
    Ok(msg)
}

async fn load_one(
    conn: &mut PgConnection,
    state: &AppState,
    id: Uuid,
    opts: RenderOpts,
) -> AppResult<MessageResponse> {
    load_message_responses(conn, state.storage.as_ref(), &[id], opts)
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("message {id} vanished after commit")))
}

/// Validates an edit body. `attachment_ids` is `Some` only when the key was
/// present (`null` meaning "remove all").
pub fn validate_edit(
    req: super::dto::EditMessageRequest,
    has_attachment_key: bool,
) -> AppResult<EditInput> {
    let content = req.content.unwrap_or_default();
    if !content_ok(&content) {
        return Err(bad_request());
    }
    // As the reference: text is required unless attachments are being set.
    if content.is_empty() && !(has_attachment_key && req.attachment_ids.is_some()) {
        return Err(bad_request());
    }
    let attachment_ids = if has_attachment_key {
        let ids = parse_ids(req.attachment_ids)?;
        if has_duplicates(&ids) {
            return Err(AppError::bad_request("Invalid attachments"));
        }
        Some(ids)
    } else {
        None
    };
    Ok(EditInput {
        content: Some(content.trim().to_string()),
        attachment_ids,
    })
}

/// `PUT /api/messages/{id}`.
pub async fn edit(
    state: &AppState,
    me: Uuid,
    message_id: Uuid,
    input: EditInput,
) -> AppResult<MessageResponse> {
    let chat_id = repo::message_chat(&state.db, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    let mut guard = ChatOrderGuard::acquire(&state.db, chat_id).await?;
    let res = edit_locked(state, guard.conn(), me, message_id, input).await;
    guard.release().await;
    res
}

async fn edit_locked(
    state: &AppState,
    conn: &mut PgConnection,
    me: Uuid,
    message_id: Uuid,
    input: EditInput,
) -> AppResult<MessageResponse> {
    let mut tx = conn.begin().await?;
    let st = repo::lock_message(&mut tx, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    if st.chat_deleted {
        return Err(AppError::bad_request("Chat is deleted"));
    }
    if st.sender_id != Some(me) {
        return Err(AppError::forbidden("Forbidden"));
    }
    if st.kind != "regular" {
        return Err(AppError::bad_request("Cannot edit this type of message"));
    }
    if st.deleted {
        return Err(AppError::bad_request("Cannot edit a deleted message"));
    }
    if st.now - st.created_at > Duration::minutes(EDIT_WINDOW_MINUTES) {
        return Err(AppError::bad_request("Message is too old to edit"));
    }
    // Unlike the reference, an author who left the group, or who is in a
    // block relation with the other party of a private chat, cannot edit.
    let ctx = repo::chat_context(&mut tx, st.chat_id, me, false)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    if !ctx.is_member || (ctx.is_private() && ctx.blocked) {
        return Err(AppError::forbidden("Forbidden"));
    }

    let content = input.content.unwrap_or_default();
    let current: HashSet<Uuid> = st.attachment_ids.iter().copied().collect();
    let wanted: HashSet<Uuid> = match &input.attachment_ids {
        Some(ids) => ids.iter().copied().collect(),
        None => current.clone(),
    };
    if content.is_empty() && wanted.is_empty() {
        return Err(bad_request());
    }
    let unchanged = content == st.content.clone().unwrap_or_default() && wanted == current;
    if unchanged {
        tx.commit().await?;
        let mut msg = load_one(conn, state, message_id, RenderOpts::FULL).await?;
        reactions::fill(conn, std::slice::from_mut(&mut msg), me).await?;
        return Ok(msg);
    }
    // The version being replaced goes to the edit history first.
    super::edits::repo::record(&mut tx, message_id, st.now).await?;
    let removed: Vec<Uuid> = current.difference(&wanted).copied().collect();
    let added: Vec<Uuid> = wanted.difference(&current).copied().collect();
    if !removed.is_empty() {
        repo::detach(&mut tx, message_id, &removed).await?;
    }
    if !added.is_empty() {
        let linked = repo::attach_on_edit(&mut tx, message_id, me, &added).await?;
        if linked != added.len() as u64 {
            return Err(AppError::bad_request("Invalid attachments"));
        }
    }
    repo::update_content(&mut tx, message_id, &content, st.now).await?;
    tx.commit().await?;

    let mut msg = load_one(conn, state, message_id, RenderOpts::FULL).await?;
    // Each recipient's copy carries their own `me`.
    let reactors = crate::messages::reactions::repo::reactors(conn, message_id).await?;
    msg.reactions = Some(reactions::for_viewer(&reactors, me));
    publish_to_chat_personalised(
        state,
        conn,
        st.chat_id,
        Some(me),
        kinds::MESSAGE_UPDATE,
        &msg,
        |user, payload| reactions::personalise(payload, &reactors, user),
    )
    .await;
    Ok(msg)
}

/// `DELETE /api/messages/{id}`.
pub async fn delete(state: &AppState, me: Uuid, message_id: Uuid) -> AppResult<()> {
    let chat_id = repo::message_chat(&state.db, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    let mut guard = ChatOrderGuard::acquire(&state.db, chat_id).await?;
    let res = delete_locked(state, guard.conn(), me, message_id).await;
    guard.release().await;
    res
}

async fn delete_locked(
    state: &AppState,
    conn: &mut PgConnection,
    me: Uuid,
    message_id: Uuid,
) -> AppResult<()> {
    let mut tx = conn.begin().await?;
    let st = repo::lock_message(&mut tx, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    if st.chat_deleted {
        return Err(AppError::bad_request("Chat is deleted"));
    }
    let allowed = if st.sender_id == Some(me) {
        true
    } else {
        let ctx = repo::chat_context(&mut tx, st.chat_id, me, false).await?;
        ctx.is_some_and(|c| {
            !c.is_private()
                && c.is_member
                && matches!(c.my_role.as_deref(), Some("owner" | "admin"))
        })
    };
    if !allowed {
        return Err(AppError::forbidden("Forbidden"));
    }
    if st.kind != "regular" {
        return Err(AppError::bad_request("Cannot delete this type of message"));
    }
    if st.deleted {
        return Err(AppError::bad_request("Message already deleted"));
    }
    repo::soft_delete(&mut tx, message_id, st.now).await?;
    super::edits::repo::forget(&mut tx, message_id).await?;
    super::pins::repo::remove(&mut tx, message_id).await?;
    tx.commit().await?;
    publish_to_chat(
        state,
        conn,
        st.chat_id,
        Some(me),
        kinds::MESSAGE_DELETE,
        MessageDeletedPayload { message_id },
    )
    .await;
    Ok(())
}

/// Parsed history query.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub limit: i64,
    pub direction: Direction,
    pub cursor: Option<Uuid>,
    pub around: Option<Uuid>,
}

impl HistoryQuery {
    /// Validates the query string in the reference's order.
    pub fn parse(q: &crate::chats::dto::QueryParams) -> AppResult<Self> {
        let limit = q.limit()?;
        let direction = match q.non_empty("direction") {
            None | Some("older") => Direction::Older,
            Some("newer") => Direction::Newer,
            Some(_) => return Err(bad_request()),
        };
        let around = match q.non_empty("around_message_id") {
            None => None,
            Some(raw) => Some(crate::http::path::parse_uuid(
                raw,
                "Invalid around_message_id format",
            )?),
        };
        // Around mode ignores the cursor entirely (as the reference does).
        let cursor = match q.non_empty("cursor").filter(|_| around.is_none()) {
            None => None,
            Some(raw) => Some(
                decode_message_cursor(raw)
                    .ok_or_else(|| AppError::bad_request("Invalid cursor format"))?,
            ),
        };
        Ok(Self {
            limit,
            direction,
            cursor,
            around,
        })
    }
}

/// `GET /api/chats/{id}/messages`: a page in ascending id order.
pub async fn history(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
    q: HistoryQuery,
) -> AppResult<Page<MessageResponse>> {
    let mut conn = state.read_conn(me).await?;
    let ctx = repo::chat_context(&mut conn, chat_id, me, false)
        .await?
        .filter(|c| !c.deleted)
        .ok_or_else(|| AppError::not_found("Chat not found or deleted"))?;
    if !ctx.is_member {
        return Err(AppError::forbidden("Forbidden"));
    }
    let (mut rows, has_next, has_prev) = match q.around {
        Some(target) => {
            // Exactly `limit` items at most (the reference returns limit+1).
            let after = (q.limit - 1) / 2;
            let before = q.limit - 1 - after;
            let mut rows = repo::around_page(
                &mut conn,
                chat_id,
                ctx.hidden_at,
                target,
                before + 1,
                after + 1,
            )
            .await?;
            rows.sort_by_key(|r| r.id);
            let Some(pos) = rows.iter().position(|r| r.id == target) else {
                return Err(AppError::not_found("Message not found"));
            };
            let older_found = pos as i64;
            let newer_found = (rows.len() - pos - 1) as i64;
            if newer_found > after {
                rows.truncate(pos + 1 + after as usize);
            }
            if older_found > before {
                rows.drain(..(older_found - before) as usize);
            }
            (rows, older_found > before, newer_found > after)
        }
        None => {
            let older = q.direction == Direction::Older;
            let page = repo::history_page(
                &mut conn,
                chat_id,
                ctx.hidden_at,
                q.cursor,
                older,
                q.limit + 1,
            )
            .await?;
            let mut rows = page.rows;
            rows.sort_by_key(|r| r.id);
            let more = rows.len() as i64 > q.limit;
            if more {
                if older {
                    rows.remove(0);
                } else {
                    rows.pop();
                }
            }
            if older {
                (rows, more, page.beyond_cursor)
            } else {
                (rows, page.beyond_cursor, more)
            }
        }
    };
    let meta = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => PageMeta {
            next_cursor: Some(encode_message_cursor(first.id)),
            has_next,
            prev_cursor: Some(encode_message_cursor(last.id)),
            has_prev,
        },
        _ => PageMeta::default(),
    };
    let mut data = Vec::with_capacity(rows.len());
    for row in rows.drain(..) {
        data.push(MessageResponse::render(row, state.storage.as_ref(), RenderOpts::FULL).await);
    }
    reactions::fill(&mut conn, &mut data, me).await?;
    Ok(Page { data, meta })
}
