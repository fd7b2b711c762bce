//! Cross-instance fan-out over Redis pub/sub.
//!
//! Every delivery goes through one channel (`events:broadcast`, prefixed by
//! `REDIS_KEY_PREFIX`) with the reference's message shape
//! `{"target_user_id", "event_data": base64(event JSON)}`, so reference and
//! Rust instances can share a Redis during a migration. Each instance
//! delivers only what it receives from the channel, which gives exactly one
//! delivery per socket; if publishing fails, the publisher delivers to its
//! own sockets instead. Forced disconnects travel on a second channel so a
//! ban or logout closes the user's sockets on every instance.
//!
//! By default (`EVENT_BUS_FORMAT=batched`) an event goes out ONCE on
//! `events:batch` with its recipients and their unread counters, instead of
//! once per recipient: a message to a 1,000-member group is one Redis message
//! per instance rather than 1,000. The per-recipient `meta.unread_count` is
//! patched in by the receiving instance, only for users connected there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::event::Event;
use super::hub::{CloseReason, Hub};
use crate::infra::redis::Redis;

#[derive(Serialize, Deserialize)]
struct BroadcastMessage {
    target_user_id: Uuid,
    event_data: String,
}

/// One event for many users: `event_data` is the event JSON with
/// `meta.unread_count` 0; each target carries its own counter.
#[derive(Serialize, Deserialize)]
struct BatchMessage {
    event_data: String,
    targets: Vec<(Uuid, i64)>,
}

#[derive(Serialize, Deserialize)]
struct ControlMessage {
    disconnect_user_id: Uuid,
    code: u16,
    /// Only the sockets of this login session ([`super::hub::session_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<u64>,
}

/// Publishes events to users wherever they are connected.
#[derive(Clone)]
pub struct EventBus {
    redis: Redis,
    hub: Arc<Hub>,
    events_channel: String,
    batch_channel: String,
    control_channel: String,
    batched: bool,
    subscribed: Arc<AtomicBool>,
}

impl EventBus {
    pub fn new(redis: Redis, hub: Arc<Hub>, batched: bool) -> Self {
        Self {
            events_channel: redis.key("events:broadcast"),
            batch_channel: redis.key("events:batch"),
            batched,
            control_channel: redis.key("events:control"),
            redis,
            hub,
            subscribed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the subscriber currently listens (part of readiness).
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Sends one event to one user.
    pub async fn to_user(&self, user: Uuid, event: &Event) {
        self.to_users(&[user], event).await;
    }

    /// Sends the same event to several users in one Redis round trip.
    pub async fn to_users(&self, users: &[Uuid], event: &Event) {
        if self.batched {
            let unread = event.meta.unread_count;
            let targets = users.iter().map(|u| (*u, unread)).collect();
            self.publish_batches(vec![(event.with_unread(0).to_json(), targets)])
                .await;
        } else {
            let json = event.to_json();
            self.publish_many(users.iter().map(|u| (*u, json.clone())).collect())
                .await;
        }
    }

    /// Sends a personalised event to each user, in order, in one round trip.
    /// Recipients whose events differ only in `meta.unread_count` share one
    /// batch.
    pub async fn to_each(&self, items: Vec<(Uuid, Event)>) {
        if !self.batched {
            self.publish_many(items.into_iter().map(|(u, e)| (u, e.to_json())).collect())
                .await;
            return;
        }
        let mut batches: Vec<(String, Vec<(Uuid, i64)>)> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (user, event) in items {
            let unread = event.meta.unread_count;
            let json = event.with_unread(0).to_json();
            match index.get(&json) {
                Some(&i) => batches[i].1.push((user, unread)),
                None => {
                    index.insert(json.clone(), batches.len());
                    batches.push((json, vec![(user, unread)]));
                }
            }
        }
        self.publish_batches(batches).await;
    }

    async fn publish_batches(&self, batches: Vec<(String, Vec<(Uuid, i64)>)>) {
        if batches.iter().all(|b| b.1.is_empty()) {
            return;
        }
        let mut pipe = redis::pipe();
        for (json, targets) in &batches {
            let msg = BatchMessage {
                event_data: json.clone(),
                targets: targets.clone(),
            };
            pipe.publish(
                &self.batch_channel,
                serde_json::to_string(&msg).unwrap_or_default(),
            )
            .ignore();
        }
        let mut conn = self.redis.conn();
        let res = pipe.query_async::<()>(&mut conn).await;
        crate::infra::metrics::bus_published("batch", batches.len(), res.is_ok());
        if let Err(e) = res {
            tracing::error!(error = %e, "event publish failed; delivering to local sockets only");
            for (json, targets) in batches {
                self.deliver_batch(&json, &targets);
            }
        }
    }

    /// Delivers a batch to the targets connected to this instance.
    fn deliver_batch(&self, json: &str, targets: &[(Uuid, i64)]) {
        let base: Arc<str> = Arc::from(json);
        for (user, unread) in targets {
            self.hub.deliver_with(*user, || {
                if *unread == 0 {
                    base.clone()
                } else {
                    Arc::from(with_unread_count(json, *unread))
                }
            });
        }
    }

    async fn publish_many(&self, items: Vec<(Uuid, String)>) {
        if items.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (user, json) in &items {
            let msg = BroadcastMessage {
                target_user_id: *user,
                event_data: base64::engine::general_purpose::STANDARD.encode(json),
            };
            let body = serde_json::to_string(&msg).unwrap_or_default();
            pipe.publish(&self.events_channel, body).ignore();
        }
        let mut conn = self.redis.conn();
        let res = pipe.query_async::<()>(&mut conn).await;
        crate::infra::metrics::bus_published("reference", items.len(), res.is_ok());
        if let Err(e) = res {
            tracing::error!(error = %e, "event publish failed; delivering to local sockets only");
            for (user, json) in items {
                self.hub.deliver(user, Arc::from(json));
            }
        }
    }

    /// Closes every socket of `user` on every instance.
    pub async fn disconnect_user(&self, user: Uuid, reason: CloseReason) {
        self.publish_disconnect(user, None, reason).await;
    }

    /// Closes, on every instance, the sockets `user` opened with `token`
    /// (their other devices stay connected).
    pub async fn disconnect_session(&self, user: Uuid, token: &str, reason: CloseReason) {
        let session = super::hub::session_id(token);
        self.publish_disconnect(user, Some(session), reason).await;
    }

    async fn publish_disconnect(&self, user: Uuid, session: Option<u64>, reason: CloseReason) {
        let msg = ControlMessage {
            disconnect_user_id: user,
            code: reason.code(),
            session,
        };
        let body = serde_json::to_string(&msg).unwrap_or_default();
        let mut conn = self.redis.conn();
        let res: redis::RedisResult<()> = redis::cmd("PUBLISH")
            .arg(&self.control_channel)
            .arg(body)
            .query_async(&mut conn)
            .await;
        crate::infra::metrics::bus_published("control", 1, res.is_ok());
        if let Err(e) = res {
            tracing::error!(error = %e, "disconnect publish failed; closing local sockets only");
            self.close_local(user, session, reason);
        }
    }

    fn close_local(&self, user: Uuid, session: Option<u64>, reason: CloseReason) {
        match session {
            Some(s) => self.hub.disconnect_session(user, s, reason),
            None => self.hub.disconnect_user(user, reason),
        };
    }

    /// Starts the subscriber loop and waits until the first subscription is
    /// confirmed (or `wait` passes). The loop reconnects by itself whenever
    /// Redis goes away.
    pub async fn start_subscriber(
        &self,
        wait: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let bus = self.clone();
        tokio::spawn(async move { bus.subscriber_loop(Some(ready_tx), shutdown).await });
        let _ = tokio::time::timeout(wait, ready_rx).await;
    }

    async fn subscriber_loop(
        self,
        mut ready: Option<oneshot::Sender<()>>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.redis.pubsub().await {
                Ok(mut pubsub) => {
                    let subscribed = async {
                        pubsub.subscribe(&self.events_channel).await?;
                        pubsub.subscribe(&self.batch_channel).await?;
                        pubsub.subscribe(&self.control_channel).await
                    }
                    .await;
                    if let Err(e) = subscribed {
                        tracing::warn!(error = %e, "event bus subscribe failed; retrying");
                    } else {
                        self.subscribed.store(true, Ordering::Relaxed);
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        tracing::info!(channel = %self.events_channel, "event bus subscribed");
                        backoff = Duration::from_millis(100);
                        let mut stream = pubsub.on_message();
                        loop {
                            tokio::select! {
                                msg = stream.next() => match msg {
                                    Some(msg) => self.handle(msg),
                                    None => break,
                                },
                                _ = shutdown.changed() => return,
                            }
                        }
                        self.subscribed.store(false, Ordering::Relaxed);
                        crate::infra::metrics::bus_reconnect();
                        tracing::warn!("event bus connection lost; reconnecting");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event bus cannot reach Redis; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn handle(&self, msg: redis::Msg) {
        let payload: Vec<u8> = match msg.get_payload() {
            Ok(p) => p,
            Err(_) => return,
        };
        if msg.get_channel_name() == self.control_channel {
            match serde_json::from_slice::<ControlMessage>(&payload) {
                Ok(c) => {
                    crate::infra::metrics::bus_received("control", None);
                    let reason =
                        CloseReason::from_code(c.code).unwrap_or(CloseReason::SessionRevoked);
                    self.close_local(c.disconnect_user_id, c.session, reason);
                }
                Err(e) => tracing::warn!(error = %e, "undecodable control message skipped"),
            }
            return;
        }
        if msg.get_channel_name() == self.batch_channel {
            match serde_json::from_slice::<BatchMessage>(&payload) {
                Ok(b) => {
                    crate::infra::metrics::bus_received("batch", Some(&b.event_data));
                    self.deliver_batch(&b.event_data, &b.targets)
                }
                Err(e) => tracing::warn!(error = %e, "undecodable batch message skipped"),
            }
            return;
        }
        let decoded = serde_json::from_slice::<BroadcastMessage>(&payload)
            .ok()
            .and_then(|m| {
                base64::engine::general_purpose::STANDARD
                    .decode(m.event_data)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|s| (m.target_user_id, s))
            });
        match decoded {
            Some((user, json)) => {
                crate::infra::metrics::bus_received("reference", Some(&json));
                self.hub.deliver(user, Arc::from(json))
            }
            None => tracing::warn!("Failed to unmarshal redis pubsub payload"),
        }
    }
}

/// `json` (an event serialised with `meta.unread_count` 0, which is its last
/// key) with the counter set to `unread`.
fn with_unread_count(json: &str, unread: i64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::event::kinds;

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
}
