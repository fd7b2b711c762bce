//! Rules of the chats feature: the chat list, chat detail, read state,
//! hiding, private-chat creation, and the `ChatListResponse` builders other
//! features reuse (`chat_list_item`, `chat_list_items_for`).

use std::collections::HashSet;

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::dto::{
    decode_chat_cursor, encode_chat_cursor, like_substring, ChatIdPayload, ChatListResponse,
    ChatReadPayload, ChatResponse, ChatRow, QueryParams, MAX_QUERY_CHARS,
};
use super::repo;
use crate::error::{AppError, AppResult};
use crate::http::response::{Page, PageMeta};
use crate::infra::redis::CountErrors;
use crate::messages::dto::{format_ts, MessageResponse, MessageRow, RenderOpts};
use crate::messages::ordering::ChatOrderGuard;
use crate::messages::repo::chat_context;
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

/// Which of `users` have a live `online:<id>` key: ONE `MGET` for a page.
/// Redis trouble degrades to "nobody online" rather than failing the list.
pub async fn online_users(state: &AppState, users: &[Uuid]) -> HashSet<Uuid> {
    if users.is_empty() {
        return HashSet::new();
    }
    let keys: Vec<String> = users
        .iter()
        .map(|u| crate::realtime::presence::online_key(&state.redis, *u))
        .collect();
    let mut conn = state.redis.conn();
    let values: redis::RedisResult<Vec<Option<String>>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .counted("request");
    match values {
        Ok(values) => users
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_some())
            .map(|(u, _)| *u)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "presence lookup failed; showing everyone offline");
            HashSet::new()
        }
    }
}

/// Turns loaded rows into responses: presence in one `MGET`, last messages
/// rendered from the row (no further queries).
pub async fn build_chat_responses(state: &AppState, rows: Vec<ChatRow>) -> Vec<ChatListResponse> {
    let candidates: Vec<Uuid> = rows
        .iter()
        .filter_map(ChatRow::presence_candidate)
        .collect();
    let online = online_users(state, &candidates).await;
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        let last_message = match row.last_message.take() {
            Some(json) => match serde_json::from_value::<MessageRow>(json) {
                Ok(m) => Some(
                    MessageResponse::render(m, state.storage.as_ref(), RenderOpts::PREVIEW).await,
                ),
                Err(e) => {
                    tracing::error!(error = %e, chat_id = %row.chat_id, "undecodable last message");
                    None
                }
            },
            None => None,
        };
        let is_online = row.other_id.is_some_and(|o| online.contains(&o));
        out.push(ChatListResponse::build(
            row,
            last_message,
            is_online,
            state.storage.as_ref(),
        ));
    }
    out
}

/// One chat as `viewer` sees it (chat detail, `chat.new`): `None` when the
/// chat is deleted or not visible to them.
pub async fn chat_list_item(
    state: &AppState,
    chat_id: Uuid,
    viewer: Uuid,
) -> AppResult<Option<ChatListResponse>> {
    let mut conn = crate::infra::db::acquire(&state.db).await?;
    Ok(chat_list_items_for(state, &mut conn, chat_id, &[viewer])
        .await?
        .pop()
        .map(|(_, r)| r))
}

/// One chat personalised for each of `viewers` in ONE query (for per-member
/// `chat.new` / `chat.update`). Viewers who cannot see it are left out.
pub async fn chat_list_items_for(
    state: &AppState,
    conn: &mut PgConnection,
    chat_id: Uuid,
    viewers: &[Uuid],
) -> Result<Vec<(Uuid, ChatListResponse)>, sqlx::Error> {
    let rows = repo::chat_for_viewers(conn, chat_id, viewers).await?;
    let order: Vec<Uuid> = rows.iter().map(|r| r.viewer).collect();
    let built = build_chat_responses(state, rows).await;
    let mut pairs: Vec<(Uuid, ChatListResponse)> = order.into_iter().zip(built).collect();
    // Keep the caller's viewer order.
    pairs.sort_by_key(|(v, _)| viewers.iter().position(|x| x == v));
    Ok(pairs)
}

/// `GET /api/chats`.
pub async fn list(
    state: &AppState,
    me: Uuid,
    q: &QueryParams,
) -> AppResult<Page<ChatListResponse>> {
    let query = q.get("query").unwrap_or("");
    if query.chars().count() > MAX_QUERY_CHARS || query.contains('\0') {
        return Err(AppError::bad_request("Bad Request"));
    }
    let limit = q.limit()?;
    let query = query.trim();
    let like = (!query.is_empty()).then(|| like_substring(query));
    let cursor = match q.non_empty("cursor") {
        Some(raw) => decode_chat_cursor(raw)?,
        None => None,
    };
    let mut rows = repo::list_page(
        &mut *state.read_conn(me).await?,
        me,
        cursor,
        like.as_deref(),
        limit + 1,
    )
    .await?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_next {
        rows.last().and_then(|r| {
            r.last_message_at
                .map(|at| encode_chat_cursor(at, r.chat_id))
        })
    } else {
        None
    };
    let data = build_chat_responses(state, rows).await;
    Ok(Page {
        data,
        meta: PageMeta {
            next_cursor,
            has_next,
            prev_cursor: None,
            has_prev: false,
        },
    })
}

/// `GET /api/chats/{id}`.
pub async fn detail(state: &AppState, me: Uuid, chat_id: Uuid) -> AppResult<ChatListResponse> {
    chat_list_item(state, chat_id, me)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))
}

/// `POST /api/chats/{id}/read`. Unlike the reference, a read with no unread
/// messages still moves `last_read_at` (and tells the others) when newer
/// messages exist than the last read, e.g. after a hide zeroed the counter.
pub async fn mark_read(state: &AppState, me: Uuid, chat_id: Uuid) -> AppResult<()> {
    // Under the chat's ordering lock, as every writer of read positions:
    // the one-statement send reads them from its snapshot (plain_send), and
    // `chat.read` takes its place among the chat's `message.new` events in
    // the order of the changes, so a client's counter follows them exactly.
    let mut guard = ChatOrderGuard::acquire_deferred(&state.db, chat_id).await?;
    let res = record_read(&mut guard, me, chat_id).await;
    if let Ok(Some(members)) = &res {
        let payload = ChatReadPayload {
            chat_id,
            user_id: me,
        };
        let event = Event::new(kinds::CHAT_READ, payload, Some(chat_id), Some(me));
        state.bus.to_users(members, &event).await;
    }
    guard.release().await;
    res.map(|_| ())
}

/// The read itself; returns who hears `chat.read` (None: nobody).
async fn record_read(
    guard: &mut ChatOrderGuard,
    me: Uuid,
    chat_id: Uuid,
) -> AppResult<Option<Vec<Uuid>>> {
    let mut tx = guard.begin_locked().await?;
    let ctx = chat_context(&mut tx, chat_id, me, true)
        .await?
        .filter(|c| !c.deleted)
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    if !ctx.is_member {
        return Err(AppError::forbidden(if ctx.is_private() {
            "Forbidden"
        } else {
            "Not a member of this group"
        }));
    }
    // Under a block the reader's position stays private ("ninja mode").
    let silent = ctx.is_private() && ctx.blocked;
    let stale = match (ctx.last_message_at, ctx.last_read_at) {
        (Some(msg), Some(read)) => read < msg,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if ctx.unread == 0 && (silent || !stale) {
        return Ok(None);
    }
    repo::mark_read(&mut tx, chat_id, ctx.group_id, me, silent).await?;
    tx.commit().await?;
    if silent {
        return Ok(None);
    }
    Ok(Some(repo::members(guard.conn(), chat_id).await?))
}

/// `POST /api/chats/{id}/hide`.
pub async fn hide(state: &AppState, me: Uuid, chat_id: Uuid) -> AppResult<()> {
    // Under the chat's ordering lock, as mark-read.
    let mut guard = ChatOrderGuard::acquire_deferred(&state.db, chat_id).await?;
    let res = record_hide(&mut guard, me, chat_id).await;
    guard.release().await;
    res?;
    let event = Event::new(
        kinds::CHAT_HIDE,
        ChatIdPayload { chat_id },
        Some(chat_id),
        Some(me),
    );
    state.bus.to_user(me, &event).await;
    Ok(())
}

async fn record_hide(guard: &mut ChatOrderGuard, me: Uuid, chat_id: Uuid) -> AppResult<()> {
    let mut tx = guard.begin_locked().await?;
    let ctx = chat_context(&mut tx, chat_id, me, true)
        .await?
        .filter(|c| !c.deleted)
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    if !ctx.is_private() {
        return Err(AppError::bad_request("Bad Request"));
    }
    if !ctx.is_member {
        return Err(AppError::forbidden("Forbidden"));
    }
    repo::hide(&mut tx, chat_id, me).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /api/chats/private`: idempotent per unordered pair.
pub async fn create_private(state: &AppState, me: Uuid, target: Uuid) -> AppResult<ChatResponse> {
    if target == me {
        return Err(AppError::bad_request("Cannot chat with yourself"));
    }
    let states = repo::user_states(&state.db, &[me, target]).await?;
    let live = |id: Uuid| states.iter().find(|s| s.id == id && !s.deleted);
    let (Some(_), Some(target_state)) = (live(me), live(target)) else {
        return Err(AppError::not_found("One or both users not found"));
    };
    let (user1, user2) = if me < target {
        (me, target)
    } else {
        (target, me)
    };
    // Unlike the reference, an existing chat is returned before the block
    // check: a blocked pair can still open (read) their history.
    if let Some(existing) = repo::find_private(&state.db, user1, user2).await? {
        return Ok(chat_response(existing.id, existing.created_at));
    }
    if target_state.banned {
        return Err(AppError::forbidden("User is currently suspended/banned"));
    }
    if repo::blocked_either_way(&state.db, me, target).await? {
        return Err(AppError::forbidden("Cannot create chat with blocked user"));
    }
    let mut conn = crate::infra::db::acquire(&state.db).await?;
    let mut tx = conn.begin().await?;
    let Some(created) = repo::insert_private(&mut tx, user1, user2).await? else {
        // A concurrent create won: its row is committed (the unique index
        // waited for it), so it is visible now.
        tx.rollback().await?;
        return match repo::find_private(&mut *conn, user1, user2).await? {
            Some(c) => Ok(chat_response(c.id, c.created_at)),
            None => Err(AppError::conflict("Private chat already exists")),
        };
    };
    tx.commit().await?;

    invalidate_contacts(state, &[me, target]).await;
    // The target first (they see the creator), then the creator.
    match chat_list_items_for(state, &mut conn, created.id, &[target, me]).await {
        Ok(items) => {
            let events = items
                .into_iter()
                .map(|(viewer, item)| {
                    (
                        viewer,
                        Event::new(kinds::CHAT_NEW, item, Some(created.id), Some(me)),
                    )
                })
                .collect();
            state.bus.to_each(events).await;
        }
        Err(e) => tracing::error!(error = %e, chat_id = %created.id, "chat.new not sent"),
    }
    Ok(chat_response(created.id, created.created_at))
}

fn chat_response(id: Uuid, created_at: chrono::DateTime<chrono::Utc>) -> ChatResponse {
    ChatResponse {
        id,
        kind: "private".into(),
        created_at: format_ts(created_at),
    }
}

/// Drops the cached contact lists of `users` (their contacts changed).
async fn invalidate_contacts(state: &AppState, users: &[Uuid]) {
    let keys: Vec<String> = users
        .iter()
        .map(|u| state.redis.key(&format!("contacts:{u}")))
        .collect();
    let mut conn = state.redis.conn();
    let res: redis::RedisResult<i64> = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .counted("request");
    if let Err(e) = res {
        tracing::warn!(error = %e, "contact cache invalidation failed");
    }
}
