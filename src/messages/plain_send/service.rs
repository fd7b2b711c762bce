//! The one-statement send's rules: when it applies and what it answers.

use uuid::Uuid;

use super::repo;
use crate::auth::principal::{AccountState, Caller};
use crate::error::AppResult;
use crate::messages::dto::MessageResponse;
use crate::messages::ordering::ChatOrderGuard;
use crate::messages::sent::{self, Sender};
use crate::state::AppState;

/// Sends `content` to `chat_id` in one statement. `Err(caller)` hands the
/// send back untouched (nothing stored, the ordering lock held) for the
/// general path to answer.
pub async fn send(
    state: &AppState,
    guard: &mut ChatOrderGuard,
    caller: Caller,
    chat_id: Uuid,
    content: &str,
) -> AppResult<Result<MessageResponse, Caller>> {
    let me = caller.user_id();
    let sid = caller.unread_session();
    guard.lock().await?;
    // The chat's ids only grow: a clock behind the last message's id makes
    // the statement decline, and the general path bumps the id.
    let id = Uuid::now_v7();
    let rows = repo::record_plain_send(guard.conn(), chat_id, me, sid, id, content).await?;
    let Some(mine) = rows.iter().find(|r| r.user_id == me) else {
        return Ok(Err(caller));
    };
    if let Caller::Deferred(t) = caller {
        // The statement stored the message only for a live account with a
        // live session and no ban: this is the verdict it already passed.
        let account = AccountState {
            role: mine.account_role.clone().unwrap_or_default(),
            is_banned: false,
            banned_until: None,
            session_live: true,
        };
        t.accept(&state.db, Some(account)).await?;
    }
    let sender = Sender {
        deleted: false,
        name: mine.sender_name.clone(),
        avatar: mine.sender_avatar.clone(),
        role: mine.my_role.clone(),
    };
    let msg = sent::render_plain(state, id, chat_id, me, content, mine.at, sender).await;
    let recipients = rows.iter().map(|r| (r.user_id, r.unread));
    sent::publish_new(state, &msg, chat_id, me, recipients, None).await;
    Ok(Ok(msg))
}
