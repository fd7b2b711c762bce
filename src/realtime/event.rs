//! The server event envelope `{type, payload, meta}` of `asyncapi.yaml`.

use serde::Serialize;
use uuid::Uuid;

/// Event metadata; all four keys are always present (nil UUIDs when unset).
#[derive(Debug, Clone, Serialize)]
pub struct EventMeta {
    pub timestamp: i64,
    pub chat_id: Uuid,
    pub sender_id: Uuid,
    pub unread_count: i64,
}

/// One server → client event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub payload: serde_json::Value,
    pub meta: EventMeta,
}

impl Event {
    /// Builds an event stamped with the current time.
    pub fn new(
        kind: &'static str,
        payload: impl Serialize,
        chat_id: Option<Uuid>,
        sender_id: Option<Uuid>,
    ) -> Self {
        Self {
            kind,
            payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
            meta: EventMeta {
                timestamp: chrono::Utc::now().timestamp_millis(),
                chat_id: chat_id.unwrap_or(Uuid::nil()),
                sender_id: sender_id.unwrap_or(Uuid::nil()),
                unread_count: 0,
            },
        }
    }

    /// A copy with a per-recipient unread counter.
    pub fn with_unread(&self, unread: i64) -> Self {
        let mut e = self.clone();
        e.meta.unread_count = unread;
        e
    }

    /// The wire bytes.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Event type names of the contract.
pub mod kinds {
    pub const MESSAGE_NEW: &str = "message.new";
    pub const MESSAGE_UPDATE: &str = "message.update";
    pub const MESSAGE_DELETE: &str = "message.delete";
    /// Extension (issue 17).
    pub const MESSAGE_REACTION: &str = "message.reaction";
    /// Extension (issue 17).
    pub const MESSAGE_PIN: &str = "message.pin";
    pub const CHAT_NEW: &str = "chat.new";
    pub const CHAT_READ: &str = "chat.read";
    pub const CHAT_HIDE: &str = "chat.hide";
    pub const CHAT_DELETE: &str = "chat.delete";
    pub const CHAT_UPDATE: &str = "chat.update";
    pub const CHAT_TYPING: &str = "chat.typing";
    pub const USER_ONLINE: &str = "user.online";
    pub const USER_OFFLINE: &str = "user.offline";
    pub const USER_UPDATE: &str = "user.update";
    pub const USER_BLOCK: &str = "user.block";
    pub const USER_UNBLOCK: &str = "user.unblock";
    pub const USER_BANNED: &str = "user.banned";
    pub const USER_UNBANNED: &str = "user.unbanned";
    pub const USER_DELETED: &str = "user.deleted";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_keeps_key_order_and_nil_ids() {
        let e = Event::new(
            kinds::USER_DELETED,
            serde_json::json!({"user_id": "x"}),
            None,
            None,
        );
        let s = e.to_json();
        let t = s.find("\"type\"").unwrap();
        let p = s.find("\"payload\"").unwrap();
        let m = s.find("\"meta\"").unwrap();
        assert!(t < p && p < m, "{s}");
        assert!(s.contains("\"chat_id\":\"00000000-0000-0000-0000-000000000000\""));
        assert!(s.contains("\"unread_count\":0"));
    }
}
