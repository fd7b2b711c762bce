//! What follows the storing of a new message, shared by the general send
//! and the one-statement send: its rendering from the values the send
//! already holds, and its `message.new` to the recipients.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dto::{MessageResponse, MessageRow, RenderOpts};
use super::idempotency::Claim;
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

/// What rendering a new message needs about its sender.
pub struct Sender {
    pub deleted: bool,
    pub name: Option<String>,
    /// `media.file_name` of the sender's avatar.
    pub avatar: Option<String>,
    /// The sender's role in the chat's group (None: a private chat).
    pub role: Option<String>,
}

/// The response to a plain text send: the same rendering as the stored
/// row's, without reading it back (no attachments, no reply; a new message
/// has no edits or deletion).
pub async fn render_plain(
    state: &AppState,
    id: Uuid,
    chat_id: Uuid,
    me: Uuid,
    content: &str,
    created_at: DateTime<Utc>,
    sender: Sender,
) -> MessageResponse {
    let row = MessageRow {
        id,
        chat_id,
        sender_id: Some(me),
        sender_deleted: sender.deleted,
        sender_name: sender.name,
        sender_avatar: sender.avatar,
        sender_role: sender.role,
        kind: "regular".into(),
        content: Some(content.to_string()),
        action_data: None,
        created_at,
        deleted_at: None,
        edited_at: None,
        attachments: None,
        reply: None,
        target: None,
        actor: None,
    };
    MessageResponse::render(row, state.storage.as_ref(), RenderOpts::FULL).await
}

/// Publishes `message.new` of `msg` to its recipients, each with their
/// counter. Only the sender's own sockets learn the idempotency key (to
/// match their optimistic copy); it is nobody else's business.
pub async fn publish_new(
    state: &AppState,
    msg: &MessageResponse,
    chat_id: Uuid,
    me: Uuid,
    recipients: impl Iterator<Item = (Uuid, i64)>,
    claim: Option<&Claim>,
) {
    let event = Event::new(kinds::MESSAGE_NEW, msg, Some(chat_id), Some(me));
    let keyed = claim.map(|claim| {
        let mut e = event.clone();
        if let Some(obj) = e.payload.as_object_mut() {
            obj.insert("idempotency_key".into(), claim.key.as_str().into());
        }
        e
    });
    let (mine, others): (Vec<_>, Vec<_>) =
        recipients.partition(|(user, _)| *user == me && keyed.is_some());
    let mut groups = vec![(&event, others)];
    if let Some(keyed) = &keyed {
        groups.push((keyed, mine));
    }
    state.bus.to_counted(groups).await;
}
