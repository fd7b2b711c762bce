//! Rules of reactions: who may react (the rules of sending in the chat),
//! the per-message cap, the `message.reaction` event, and the `reactions`
//! of rendered messages (one statement per page, `me` per viewer).

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::dto::{
    ReactionCount, ReactionEvent, ReactionSummary, ReactionsResponse, MAX_DISTINCT_EMOJI,
};
use super::repo::{self, Added};
use crate::error::{AppError, AppResult};
use crate::messages::access::{self, Intent};
use crate::messages::dto::MessageResponse;
use crate::messages::ordering::ChatOrderGuard;
use crate::messages::repo as messages_repo;
use crate::messages::service::publish_to_chat;
use crate::realtime::event::kinds;
use crate::state::AppState;

/// `PUT` (`add`) / `DELETE` of the caller's `emoji` on a message. Both are
/// idempotent: a no-op answers 200 with the current reactions and sends no
/// event.
pub async fn set(
    state: &AppState,
    me: Uuid,
    message_id: Uuid,
    emoji: &'static str,
    add: bool,
) -> AppResult<ReactionsResponse> {
    let chat_id = messages_repo::message_chat(&state.db, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Message not found"))?;
    // In the chat's order, so the event never overtakes (or trails) the
    // message's own `message.delete` / `message.update`.
    let mut guard = ChatOrderGuard::acquire(&state.db, chat_id).await?;
    let res = set_locked(state, guard.conn(), me, message_id, emoji, add).await;
    guard.release().await;
    res
}

async fn set_locked(
    state: &AppState,
    conn: &mut PgConnection,
    me: Uuid,
    message_id: Uuid,
    emoji: &'static str,
    add: bool,
) -> AppResult<ReactionsResponse> {
    let mut tx = conn.begin().await?;
    let msg = repo::lock_message(&mut tx, message_id)
        .await?
        .ok_or_else(|| AppError::not_found("Message not found"))?;
    let ctx = messages_repo::chat_context(&mut tx, msg.chat_id, me, false).await?;
    access::check(ctx, msg.created_at, Intent::Write)?;
    if msg.deleted {
        return Err(AppError::bad_request("Cannot react to a deleted message"));
    }
    let changed = if add {
        match repo::add(&mut tx, message_id, emoji, me, MAX_DISTINCT_EMOJI).await? {
            Added::Inserted => true,
            Added::AlreadyThere => false,
            Added::TooMany => {
                return Err(AppError::bad_request(format!(
                    "A message can have at most {MAX_DISTINCT_EMOJI} different reactions"
                )))
            }
        }
    } else {
        repo::remove(&mut tx, message_id, emoji, me).await?
    };
    let reactions: Vec<ReactionSummary> = repo::summaries(&mut tx, &[message_id], me)
        .await?
        .into_iter()
        .map(|r| ReactionSummary {
            emoji: r.emoji,
            count: r.count,
            me: r.me,
        })
        .collect();
    tx.commit().await?;
    if changed {
        let payload = ReactionEvent {
            message_id,
            chat_id: msg.chat_id,
            emoji: emoji.to_string(),
            user_id: me,
            added: add,
            reactions: reactions
                .iter()
                .map(|r| ReactionCount {
                    emoji: r.emoji.clone(),
                    count: r.count,
                })
                .collect(),
        };
        publish_to_chat(
            state,
            conn,
            msg.chat_id,
            Some(me),
            kinds::MESSAGE_REACTION,
            payload,
        )
        .await;
    }
    Ok(ReactionsResponse {
        message_id,
        chat_id: msg.chat_id,
        reactions,
    })
}

/// Sets `reactions` of every live message of a page for `viewer`, with one
/// statement for the whole page. Deleted messages keep an empty list.
pub async fn fill(
    conn: &mut PgConnection,
    msgs: &mut [MessageResponse],
    viewer: Uuid,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = msgs
        .iter()
        .filter(|m| m.deleted_at.is_none())
        .map(|m| m.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut by_message: HashMap<Uuid, Vec<ReactionSummary>> = HashMap::new();
    for r in repo::summaries(conn, &ids, viewer).await? {
        by_message
            .entry(r.message_id)
            .or_default()
            .push(ReactionSummary {
                emoji: r.emoji,
                count: r.count,
                me: r.me,
            });
    }
    for m in msgs.iter_mut() {
        if let Some(list) = by_message.remove(&m.id) {
            m.reactions = Some(list);
        }
    }
    Ok(())
}

/// Who reacted with what on one message (see [`repo::reactors`]).
pub type Reactors = Vec<(String, Vec<Uuid>)>;

/// The reactions of one message as `viewer` sees them.
pub fn for_viewer(reactors: &Reactors, viewer: Uuid) -> Vec<ReactionSummary> {
    reactors
        .iter()
        .map(|(emoji, users)| ReactionSummary {
            emoji: emoji.clone(),
            count: users.len() as i64,
            me: users.contains(&viewer),
        })
        .collect()
}

/// Rewrites the `reactions` of a rendered message payload for `viewer`
/// (one event, each recipient's own `me`).
pub fn personalise(payload: &mut Value, reactors: &Reactors, viewer: Uuid) {
    if let Some(obj) = payload.as_object_mut() {
        let list = serde_json::to_value(for_viewer(reactors, viewer)).unwrap_or_default();
        obj.insert("reactions".into(), list);
    }
}
