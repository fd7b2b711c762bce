//! Wire types of pinned messages.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::messages::dto::MessageResponse;

/// Most pins one chat may hold.
pub const MAX_PINS_PER_CHAT: i64 = 50;

/// Response of `PUT` / `DELETE /api/messages/{messageID}/pin`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PinState {
    pub message_id: Uuid,
    pub chat_id: Uuid,
    pub pinned: bool,
    /// When it was pinned (RFC 3339, seconds); absent when not pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_at: Option<String>,
    /// Who pinned it; absent when not pinned or that user is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<Uuid>,
}

/// An item of `GET /api/chats/{chatID}/pins`: the message as in history
/// plus when and by whom it was pinned.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PinnedMessage {
    #[serde(flatten)]
    pub message: MessageResponse,
    /// RFC 3339, seconds.
    pub pinned_at: String,
    /// Absent when the pinning user was deleted for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_by: Option<Uuid>,
}

/// `message.pin` payload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PinEvent {
    pub message_id: Uuid,
    pub chat_id: Uuid,
    /// `true`: pinned; `false`: unpinned.
    pub pinned: bool,
    /// Who pinned or unpinned it.
    pub by: Uuid,
}
