//! Client → server messages. The only one with an effect is `chat.typing`,
//! relayed to the other members of that chat: only when the sender is a
//! member, never to users in a block relation with the sender, and throttled
//! per user and per chat. Bad input is ignored silently; the socket stays.
//!
//! The throttles come before any database work: first this instance's own
//! per-user clock (no I/O at all), then the shared Redis keys, and only a
//! frame that passes both costs the membership and block lookups (so at
//! most one lookup per user per 300 ms, however many sockets flood).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::event::{kinds, Event};
use super::EventBus;
use crate::infra::redis::{CountErrors, Redis};

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: serde_json::Value,
    meta: Option<ClientMeta>,
}

#[derive(Deserialize)]
struct ClientMeta {
    chat_id: Uuid,
}

/// One typing event per user per this long (any chat).
const USER_WINDOW: Duration = Duration::from_millis(300);
/// The local clock map is swept of stale entries beyond this many users.
const LOCAL_SWEEP_AT: usize = 4096;

/// The typing relay.
#[derive(Clone)]
pub struct TypingRelay {
    db: PgPool,
    redis: Redis,
    bus: EventBus,
    /// When each user last passed the local per-user throttle.
    local: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl TypingRelay {
    pub fn new(db: PgPool, redis: Redis, bus: EventBus) -> Self {
        Self {
            db,
            redis,
            bus,
            local: Arc::default(),
        }
    }

    /// This instance's per-user throttle: true when `user` may go on.
    fn local_pass(&self, user: Uuid) -> bool {
        let now = Instant::now();
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&user)
            .is_some_and(|at| now.duration_since(*at) < USER_WINDOW)
        {
            return false;
        }
        if map.len() >= LOCAL_SWEEP_AT {
            map.retain(|_, at| now.duration_since(*at) < USER_WINDOW);
        }
        map.insert(user, now);
        true
    }

    /// Handles one client frame.
    pub async fn handle_client_message(&self, user: Uuid, bytes: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<ClientMessage>(bytes) else {
            return;
        };
        if msg.kind != kinds::CHAT_TYPING {
            return;
        }
        let Some(chat_id) = msg.meta.map(|m| m.chat_id).filter(|c| !c.is_nil()) else {
            return;
        };
        if let Err(e) = self.relay(user, chat_id, msg.payload).await {
            tracing::debug!(error = %e, %user, %chat_id, "typing not relayed");
        }
    }

    async fn relay(
        &self,
        user: Uuid,
        chat_id: Uuid,
        payload: serde_json::Value,
    ) -> anyhow::Result<()> {
        if !self.local_pass(user) {
            return Ok(());
        }
        let mut c = self.redis.conn();
        let (a, b): (Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(self.redis.key(&format!("typing_user:{user}")))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(USER_WINDOW.as_millis() as u64)
            .cmd("SET")
            .arg(self.redis.key(&format!("typing:{user}:{chat_id}")))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(2)
            .query_async(&mut c)
            .await
            .counted("typing")?;
        if a.is_none() || b.is_none() {
            return Ok(());
        }
        let Some(recipients) = self.recipients(user, chat_id).await? else {
            return Ok(());
        };
        let event = Event::new(kinds::CHAT_TYPING, payload, Some(chat_id), Some(user));
        self.bus.to_users(&recipients, &event).await;
        Ok(())
    }

    /// Other members of the chat with no block relation to `user`, or `None`
    /// when `user` is not a member of a live chat.
    async fn recipients(
        &self,
        user: Uuid,
        chat_id: Uuid,
    ) -> Result<Option<Vec<Uuid>>, sqlx::Error> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "WITH members AS ( \
               SELECT gm.user_id FROM group_chats g \
               JOIN group_members gm ON gm.group_chat_id = g.id \
               JOIN chats c ON c.id = g.chat_id AND c.deleted_at IS NULL \
               WHERE g.chat_id = $1 \
               UNION ALL \
               SELECT u FROM private_chats p \
               JOIN chats c ON c.id = p.chat_id AND c.deleted_at IS NULL \
               CROSS JOIN LATERAL (VALUES (p.user1_id), (p.user2_id)) v(u) \
               WHERE p.chat_id = $1 AND u IS NOT NULL \
             ) \
             SELECT user_id FROM members",
        )
        .bind(chat_id)
        .fetch_all(&self.db)
        .await?;
        let members: Vec<Uuid> = rows.into_iter().map(|r| r.0).collect();
        if !members.contains(&user) {
            return Ok(None);
        }
        let blocked: Vec<Uuid> = sqlx::query_scalar(
            "SELECT CASE WHEN blocker_id = $1 THEN blocked_id ELSE blocker_id END \
             FROM user_blocks WHERE blocker_id = $1 OR blocked_id = $1",
        )
        .bind(user)
        .fetch_all(&self.db)
        .await?;
        Ok(Some(
            members
                .into_iter()
                .filter(|m| *m != user && !blocked.contains(m))
                .collect(),
        ))
    }
}
