//! Rules of the groups feature, one file per concern: `lifecycle` (create,
//! update, delete), `lists` (members, the public directory), `invites`
//! (preview, reset, joining), `membership` (add, leave, kick) and `roles`
//! (role changes, ownership transfer), with their system messages and
//! events. This module holds what they share.
//!
//! Concurrency: every action on an existing group runs inside the chat's
//! [`ChatOrderGuard`](crate::messages::ordering::ChatOrderGuard) (so its
//! system messages and events are ordered with concurrent sends) and its
//! transaction starts by locking the chat and group rows
//! ([`lock_group`](super::repo::lock_group)); roles and memberships are read
//! after that lock. Events are published after commit, before the guard is
//! released, so every client sees them in commit order.

use rand::distributions::Alphanumeric;
use rand::Rng;
use sqlx::PgConnection;
use uuid::Uuid;

use super::repo::LockedGroup;
use crate::chats::dto::ChatListResponse;
use crate::chats::service::chat_list_items_for;
use crate::error::{AppError, AppResult};
use crate::messages::dto::{MessageResponse, RenderOpts};
use crate::messages::service::{load_message_responses, publish_to_chat};
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

/// Length of invite codes: 22 characters of `[A-Za-z0-9]` carry 131 bits
/// from the OS CSPRNG (the reference's 12 carry 71), URL-safe as they are.
pub const INVITE_CODE_LEN: usize = 22;

const NOT_FOUND: &str = "Group chat not found";
const NOT_MEMBER: &str = "You are not a member of this group";
const TARGET_NOT_MEMBER: &str = "Target user is not a member of this group";
const BANNED_MEMBER: &str = "Cannot add suspended/banned user to group";

/// A fresh invite code.
pub fn new_invite_code() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(INVITE_CODE_LEN)
        .map(char::from)
        .collect()
}

/// Who performs a group action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A user through the group endpoints: membership and role rules apply.
    Member(Uuid),
    /// A platform admin through the admin console (dissolve, reset): no
    /// membership needed, acts with the owner's powers, is the sender of
    /// the system messages and events.
    PlatformAdmin(Uuid),
}

impl Actor {
    /// The acting user.
    pub fn id(self) -> Uuid {
        match self {
            Actor::Member(u) | Actor::PlatformAdmin(u) => u,
        }
    }
}

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

fn internal(what: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("{what}"))
}

fn parse_ids(raw: Option<Vec<String>>) -> AppResult<Vec<Uuid>> {
    let raw = raw.filter(|v| !v.is_empty()).ok_or_else(bad_request)?;
    raw.iter()
        .map(|s| Uuid::try_parse(s.trim()).map_err(|_| bad_request()))
        .collect()
}

/// Runs `$body` (a future using `$conn: &mut PgConnection`) inside the
/// chat's ordering guard, then releases it. A macro rather than a helper
/// taking a closure: the body's future borrows the guard's connection, and a
/// generic `FnOnce(&mut PgConnection) -> Fut` cannot tie `Fut` to that borrow.
macro_rules! in_chat_order {
    ($state:expr, $chat_id:expr, |$conn:ident| $body:expr) => {{
        let mut guard =
            $crate::messages::ordering::ChatOrderGuard::acquire(&$state.db, $chat_id).await?;
        let res = {
            let $conn: &mut sqlx::PgConnection = guard.conn();
            $body.await
        };
        guard.release().await;
        res
    }};
}

/// Renders freshly inserted system messages (no avatar, `target_name`
/// only), ascending.
async fn render_system(
    state: &AppState,
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> AppResult<Vec<MessageResponse>> {
    let msgs = load_message_responses(conn, state.storage.as_ref(), ids, RenderOpts::SYSTEM_ACTION)
        .await?;
    if msgs.len() != ids.len() {
        return Err(internal("system message vanished after commit"));
    }
    Ok(msgs)
}

async fn render_one(
    state: &AppState,
    conn: &mut PgConnection,
    id: Uuid,
) -> AppResult<MessageResponse> {
    render_system(state, conn, &[id])
        .await?
        .pop()
        .ok_or_else(|| internal("system message vanished after commit"))
}

/// `kind` personalised per viewer (each one's role, invite visibility and
/// counters), in one query and one Redis round trip.
async fn publish_chat_items(
    state: &AppState,
    conn: &mut PgConnection,
    kind: &'static str,
    chat_id: Uuid,
    sender: Uuid,
    viewers: &[Uuid],
) -> Vec<(Uuid, ChatListResponse)> {
    if viewers.is_empty() {
        return Vec::new();
    }
    match chat_list_items_for(state, conn, chat_id, viewers).await {
        Ok(items) => {
            let events = items
                .iter()
                .map(|(viewer, item)| {
                    (*viewer, Event::new(kind, item, Some(chat_id), Some(sender)))
                })
                .collect();
            state.bus.to_each(events).await;
            items
        }
        Err(e) => {
            tracing::error!(error = %e, %chat_id, kind, "group chat event not sent");
            Vec::new()
        }
    }
}

async fn publish_messages(
    state: &AppState,
    conn: &mut PgConnection,
    chat_id: Uuid,
    sender: Uuid,
    msgs: &[MessageResponse],
) {
    for m in msgs {
        publish_to_chat(state, conn, chat_id, Some(sender), kinds::MESSAGE_NEW, m).await;
    }
}

/// The role a member actor needs, or the error of the endpoint.
fn member_role(g: &LockedGroup, not_member: AppError) -> AppResult<&str> {
    g.my_role.as_deref().ok_or(not_member)
}

mod invites;
mod lifecycle;
mod lists;
mod membership;
mod roles;

pub use invites::{join_by_invite, join_public, preview, reset_invite};
pub use lifecycle::{
    create, delete, update, validate_create, validate_update, CreateInput, UpdateInput,
};
pub use lists::{list_members, public_groups};
pub use membership::{add_members, kick, leave, validate_add};
pub use roles::{change_role, transfer, validate_role, validate_transfer};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_codes_are_long_random_and_url_safe() {
        let a = new_invite_code();
        let b = new_invite_code();
        assert_eq!(a.len(), INVITE_CODE_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
