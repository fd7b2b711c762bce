//! Rules of pinned messages: who may pin (the rules of sending in the chat;
//! in groups owners and admins only), the per-chat cap, the `system_pin`
//! timeline entry and the `message.pin` event, and the pins list (the rules
//! of reading history).

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::dto::{PinEvent, PinState, PinnedMessage, MAX_PINS_PER_CHAT};
use super::repo::{self, PinRow};
use crate::error::{AppError, AppResult};
use crate::http::pagination::forward_page;
use crate::http::response::Page;
use crate::messages::access::{self, Intent};
use crate::messages::dto::{format_ts, RenderOpts};
use crate::messages::ordering::ChatOrderGuard;
use crate::messages::reactions::service as reactions;
use crate::messages::repo as messages_repo;
use crate::messages::service::{insert_system_message, load_message_responses, publish_to_chat};
use crate::realtime::event::kinds;
use crate::state::AppState;

/// `PUT` (`pin`) / `DELETE` of a message's pin. Both are idempotent: a
/// no-op answers 200 with the current state and sends no event.
pub async fn set(state: &AppState, me: Uuid, message_id: Uuid, pin: bool) -> AppResult<PinState> {
    let chat_id = messages_repo::message_chat(&state.db, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Message not found"))?;
    // In the chat's order: the cap holds under concurrent pins, and the
    // `system_pin` message gets the chat's next id like any other.
    let mut guard = ChatOrderGuard::acquire(&state.db, chat_id).await?;
    let res = set_locked(state, guard.conn(), me, message_id, pin).await;
    guard.release().await;
    res
}

async fn set_locked(
    state: &AppState,
    conn: &mut PgConnection,
    me: Uuid,
    message_id: Uuid,
    pin: bool,
) -> AppResult<PinState> {
    let mut tx = conn.begin().await?;
    let msg = repo::lock_message(&mut tx, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Message not found"))?;
    let ctx = messages_repo::chat_context(&mut tx, msg.chat_id, me, false).await?;
    let ctx = access::check(ctx, msg.created_at, Intent::Write)?;
    if !ctx.is_private() && !matches!(ctx.my_role.as_deref(), Some("owner" | "admin")) {
        return Err(AppError::forbidden(
            "Only the owner and admins can pin messages",
        ));
    }
    if msg.deleted {
        return Err(AppError::bad_request("Cannot pin a deleted message"));
    }
    if msg.kind != "regular" {
        return Err(AppError::bad_request("Cannot pin this type of message"));
    }
    let current = repo::get(&mut tx, message_id).await?;
    // (the pin afterwards, whether it changed, the `system_pin` message)
    let (after, changed, system_message) = match (pin, current) {
        (true, Some(row)) => (Some(row), false, None),
        (false, None) => (None, false, None),
        (true, None) => {
            if repo::count(&mut tx, msg.chat_id).await? >= MAX_PINS_PER_CHAT {
                return Err(AppError::bad_request(format!(
                    "A chat can have at most {MAX_PINS_PER_CHAT} pinned messages"
                )));
            }
            let row = repo::insert(&mut tx, message_id, msg.chat_id, me).await?;
            let data = json!({ "message_id": message_id, "actor_id": me });
            let sys =
                insert_system_message(&mut tx, msg.chat_id, Some(me), "system_pin", Some(&data))
                    .await?;
            (Some(row), true, Some(sys))
        }
        (false, Some(_)) => {
            repo::remove(&mut tx, message_id).await?;
            (None, true, None)
        }
    };
    tx.commit().await?;
    if changed {
        let payload = PinEvent {
            message_id,
            chat_id: msg.chat_id,
            pinned: pin,
            by: me,
        };
        publish_to_chat(
            state,
            conn,
            msg.chat_id,
            Some(me),
            kinds::MESSAGE_PIN,
            payload,
        )
        .await;
    }
    if let Some(sys) = system_message {
        let rendered =
            load_message_responses(conn, state.storage.as_ref(), &[sys], RenderOpts::FULL).await?;
        if let Some(m) = rendered.first() {
            publish_to_chat(state, conn, msg.chat_id, Some(me), kinds::MESSAGE_NEW, m).await;
        }
    }
    Ok(PinState {
        message_id,
        chat_id: msg.chat_id,
        pinned: after.is_some(),
        pinned_at: after.as_ref().map(|r| format_ts(r.pinned_at)),
        pinned_by: after.and_then(|r| r.pinned_by),
    })
}

/// Cursor of a pins page: `<pinned_at micros>,<message id>`.
fn cursor_of(p: &PinnedMessage, at: DateTime<Utc>) -> String {
    format!("{},{}", at.timestamp_micros(), p.message.id)
}

/// Decodes a pins cursor; 400 `Invalid cursor format` when malformed.
pub fn decode_cursor(raw: &str) -> AppResult<(DateTime<Utc>, Uuid)> {
    let (micros, id) = crate::chats::dto::chat_cursor_parts(raw)
        .ok_or_else(crate::http::pagination::invalid_cursor)?;
    Ok((crate::http::pagination::cursor_micros(micros)?, id))
}

/// `GET /api/chats/{chatID}/pins`: newest pin first, readable by whoever
/// may read the chat's history (403 non-member, 404 unknown/deleted chat).
pub async fn list(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> AppResult<Page<PinnedMessage>> {
    let mut conn = crate::infra::db::acquire(&state.db).await?;
    let ctx = messages_repo::chat_context(&mut conn, chat_id, me, false)
        .await?
        .filter(|c| !c.deleted)
        .ok_or_else(|| AppError::not_found("Chat not found or deleted"))?;
    if !ctx.is_member {
        return Err(AppError::forbidden("Forbidden"));
    }
    let pins: Vec<PinRow> = repo::page(&mut conn, chat_id, ctx.hidden_at, after, limit + 1).await?;
    let ids: Vec<Uuid> = pins.iter().map(|p| p.message_id).collect();
    let mut rendered =
        load_message_responses(&mut conn, state.storage.as_ref(), &ids, RenderOpts::FULL).await?;
    reactions::fill(&mut conn, &mut rendered, me).await?;
    // Back into pin order (rendering returns id order).
    let mut items = Vec::with_capacity(pins.len());
    let mut times = Vec::with_capacity(pins.len());
    for p in pins {
        if let Some(pos) = rendered.iter().position(|m| m.id == p.message_id) {
            items.push(PinnedMessage {
                message: rendered.swap_remove(pos),
                pinned_at: format_ts(p.pinned_at),
                pinned_by: p.pinned_by,
            });
            times.push(p.pinned_at);
        }
    }
    let keyed: Vec<(PinnedMessage, DateTime<Utc>)> = items.into_iter().zip(times).collect();
    let (keyed, meta) = forward_page(keyed, limit, |(p, at)| cursor_of(p, *at));
    Ok(Page {
        data: keyed.into_iter().map(|(p, _)| p).collect(),
        meta,
    })
}
