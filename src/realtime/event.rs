//! The server event envelope `{type, payload, meta}` of `asyncapi.yaml`.

use serde::Serialize;
use uuid::Uuid;

use super::store::Pos;

/// Event metadata; the four contract keys are always present (nil UUIDs
/// when unset). `seq` (extension, issue 16) is the resume position; it is
/// patched into the serialised bytes per recipient (see [`with_seq`]), so it
/// stays last and absent here except on server-made frames (`sync.reset`).
#[derive(Debug, Clone, Serialize)]
pub struct EventMeta {
    pub timestamp: i64,
    pub chat_id: Uuid,
    pub sender_id: Uuid,
    pub unread_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<String>,
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
                seq: None,
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

/// `json` (an event serialised without `meta.seq`; meta is its last key)
/// with `meta.seq` set. Positions are made of digits, `.` and `-` only, so
/// they need no escaping.
pub fn with_seq(json: &str, seq: &str) -> String {
    match json.strip_suffix("}}") {
        Some(head) => format!("{head},\"seq\":\"{seq}\"}}}}"),
        None => {
            // Not the shape we serialise; patch through a parse (never expected).
            let mut v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            v["meta"]["seq"] = seq.into();
            v.to_string()
        }
    }
}

/// `json` (an event serialised with `meta.unread_count` 0 and no seq, so
/// the counter is its last key) with the counter set to `unread`.
pub fn with_unread_count(json: &str, unread: i64) -> String {
    const TAIL: &str = "\"unread_count\":0}}";
    match json.strip_suffix(TAIL) {
        Some(head) => format!("{head}\"unread_count\":{unread}}}}}"),
        None => {
            // Not the shape we serialise; patch through a parse (never expected).
            let mut v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            v["meta"]["unread_count"] = unread.into();
            v.to_string()
        }
    }
}

/// The bytes one recipient gets: `json` (unread 0, no seq) with its counter
/// and resume position. Built in ONE allocation of the final size: this
/// runs once per recipient connected here (5,000 per message of a
/// 10,000-member group on each of two instances), and the patch-by-patch
/// version cost three allocations and their regrowth per frame.
pub fn frame(json: &str, unread: i64, pos: Option<Pos>) -> String {
    use std::fmt::Write;
    const TAIL: &str = "\"unread_count\":0}}";
    let Some(head) = json.strip_suffix(TAIL) else {
        // Not the shape we serialise; patch through a parse (never expected).
        let counted = with_unread_count(json, unread);
        return match pos {
            Some(p) => with_seq(&counted, &p.to_string()),
            None => counted,
        };
    };
    // "unread_count": + 20 digits and a sign, ,"seq":"…" with three
    // 20-digit numbers and two separators, "}}".
    let mut out = String::with_capacity(head.len() + 16 + 21 + 9 + 62 + 2);
    out.push_str(head);
    // Writing into a String cannot fail.
    let _ = write!(out, "\"unread_count\":{unread}");
    if let Some(p) = pos {
        let _ = write!(out, ",\"seq\":\"{p}\"");
    }
    out.push_str("}}");
    out
}

/// The position [`with_seq`] put into `json`, if any.
pub fn seq_of(json: &str) -> Option<Pos> {
    let head = json.strip_suffix("\"}}")?;
    let at = head.rfind("\"seq\":\"")?;
    Pos::parse(&head[at + 7..])
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
    /// Extension (issue 16): the first frame of a `/ws?since=` that cannot
    /// be resumed.
    pub const SYNC_RESET: &str = "sync.reset";

    /// Every name above (metrics label them without allocating).
    pub const ALL: [&str; 20] = [
        MESSAGE_NEW,
        MESSAGE_UPDATE,
        MESSAGE_DELETE,
        MESSAGE_REACTION,
        MESSAGE_PIN,
        CHAT_NEW,
        CHAT_READ,
        CHAT_HIDE,
        CHAT_DELETE,
        CHAT_UPDATE,
        CHAT_TYPING,
        USER_ONLINE,
        USER_OFFLINE,
        USER_UPDATE,
        USER_BLOCK,
        USER_UNBLOCK,
        USER_BANNED,
        USER_UNBANNED,
        USER_DELETED,
        SYNC_RESET,
    ];
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
        assert!(!s.contains("seq"), "{s}");
    }

    #[test]
    fn unread_patch_matches_serialisation() {
        let e = Event::new(
            kinds::MESSAGE_NEW,
            serde_json::json!({"content": "}}"}),
            None,
            None,
        );
        let patched = with_unread_count(&e.to_json(), 17);
        assert_eq!(patched, e.with_unread(17).to_json());
        let v: serde_json::Value = serde_json::from_str(&patched).unwrap();
        assert_eq!(v["meta"]["unread_count"], 17);
    }

    #[test]
    fn frames_carry_counter_and_position() {
        let e = Event::new(kinds::CHAT_READ, serde_json::json!({}), None, None);
        let pos = Pos {
            generation: 5,
            n: 2,
            ms: 9,
        };
        let f = frame(&e.to_json(), 4, Some(pos));
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["meta"]["unread_count"], 4);
        assert_eq!(v["meta"]["seq"], "5.2-9");
        assert_eq!(seq_of(&f), Some(pos));
        assert_eq!(seq_of(&e.to_json()), None);
    }

    #[test]
    fn a_frame_is_the_event_serialised_with_its_counter_and_position() {
        let mut e = Event::new(
            kinds::MESSAGE_NEW,
            serde_json::json!({"content": "\"unread_count\":0}}"}),
            Some(Uuid::now_v7()),
            Some(Uuid::now_v7()),
        );
        let base = e.to_json();
        let pos = Pos {
            generation: u64::MAX,
            n: u64::MAX,
            ms: u64::MAX,
        };
        for (unread, at) in [(0, None), (0, Some(pos)), (-3, None), (i64::MIN, Some(pos))] {
            let f = frame(&base, unread, at);
            e.meta.unread_count = unread;
            e.meta.seq = at.map(|p| p.to_string());
            assert_eq!(f, e.to_json(), "unread {unread}, pos {at:?}");
            assert!(
                f.capacity() == f.len() || f.capacity() - f.len() < 128,
                "one allocation"
            );
        }
    }

    #[test]
    fn seq_patch_matches_serialisation() {
        let mut e = Event::new(
            kinds::MESSAGE_NEW,
            serde_json::json!({"c": "}}"}),
            None,
            None,
        );
        let patched = with_seq(&e.with_unread(3).to_json(), "17.4-99");
        e.meta.unread_count = 3;
        e.meta.seq = Some("17.4-99".into());
        assert_eq!(patched, e.to_json());
    }
}
