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

#[derive(Serialize, Deserialize)]
struct ControlMessage {
    disconnect_user_id: Uuid,
    code: u16,
}

/// Publishes events to users wherever they are connected.
#[derive(Clone)]
pub struct EventBus {
    redis: Redis,
    hub: Arc<Hub>,
    events_channel: String,
    control_channel: String,
    subscribed: Arc<AtomicBool>,
}

impl EventBus {
    pub fn new(redis: Redis, hub: Arc<Hub>) -> Self {
        Self {
            events_channel: redis.key("events:broadcast"),
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
        self.publish_many(vec![(user, event.to_json())]).await;
    }

    /// Sends the same event to several users in one Redis round trip.
    pub async fn to_users(&self, users: &[Uuid], event: &Event) {
        let json = event.to_json();
        self.publish_many(users.iter().map(|u| (*u, json.clone())).collect())
            .await;
    }

    /// Sends a personalised event to each user, in order, in one round trip.
    pub async fn to_each(&self, items: Vec<(Uuid, Event)>) {
        self.publish_many(items.into_iter().map(|(u, e)| (u, e.to_json())).collect())
            .await;
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
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::error!(error = %e, "event publish failed; delivering to local sockets only");
            for (user, json) in items {
                self.hub.deliver(user, Arc::from(json));
            }
        }
    }

    /// Closes every socket of `user` on every instance.
    pub async fn disconnect_user(&self, user: Uuid, reason: CloseReason) {
        let msg = ControlMessage {
            disconnect_user_id: user,
            code: reason.code(),
        };
        let body = serde_json::to_string(&msg).unwrap_or_default();
        let mut conn = self.redis.conn();
        let res: redis::RedisResult<()> = redis::cmd("PUBLISH")
            .arg(&self.control_channel)
            .arg(body)
            .query_async(&mut conn)
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "disconnect publish failed; closing local sockets only");
            self.hub.disconnect_user(user, reason);
        }
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
                    let reason =
                        CloseReason::from_code(c.code).unwrap_or(CloseReason::SessionRevoked);
                    self.hub.disconnect_user(c.disconnect_user_id, reason);
                }
                Err(e) => tracing::warn!(error = %e, "undecodable control message skipped"),
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
            Some((user, json)) => self.hub.deliver(user, Arc::from(json)),
            None => tracing::warn!("Failed to unmarshal redis pubsub payload"),
        }
    }
}
