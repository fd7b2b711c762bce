//! Cross-instance fan-out over Redis pub/sub (on a Redis Cluster, sharded
//! pub/sub: see [`sharded`]).
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
//!
//! Before publishing, every event but `chat.typing` is appended to each
//! recipient's resume store (one pipelined round trip for all of them), and
//! the positions travel in the bus message, so any instance can stamp
//! `meta.seq` and a reconnect anywhere can replay (see `store`, `resume`).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::event::{frame, kinds, seq_of, Event};
use super::hub::{CloseReason, Hub, Outbound};
use super::store::{EventStore, Pos, Target};
use crate::infra::redis::Redis;

mod sharded;

#[derive(Serialize, Deserialize)]
struct BroadcastMessage {
    target_user_id: Uuid,
    event_data: String,
}

/// One event for many users: `event_data` is the event JSON with
/// `meta.unread_count` 0; each target carries its own counter and, when the
/// event was stored, `seqs` its resume position (same order; "" = none).
/// Written from borrowed parts and read into borrowed ones: a message to
/// a 10,000-member group was 10,000 position strings built on the
/// publisher and 10,000 more on every instance that read it.
#[derive(Serialize)]
struct BatchOut<'a> {
    event_data: &'a str,
    targets: &'a [(Uuid, i64)],
    #[serde(skip_serializing_if = "Seqs::is_empty")]
    seqs: Seqs<'a>,
}

#[derive(Deserialize)]
struct BatchIn<'a> {
    #[serde(borrow)]
    event_data: Cow<'a, str>,
    targets: Vec<(Uuid, i64)>,
    #[serde(default, borrow)]
    seqs: Vec<SeqIn<'a>>,
}

/// One position as read: borrowed from the message unless it was escaped
/// (serde's `Cow` borrows only as a field of its own, not inside a `Vec`).
#[derive(Deserialize)]
struct SeqIn<'a>(#[serde(borrow)] Cow<'a, str>);

/// The positions of a batch's targets, serialised as strings straight
/// into the message ("" for none); empty when none was stored.
struct Seqs<'a>(&'a [Option<Pos>]);

impl Seqs<'_> {
    fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

impl Serialize for Seqs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| SeqStr(*p)))
    }
}

struct SeqStr(Option<Pos>);

impl Serialize for SeqStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(p) => s.collect_str(&p),
            None => s.serialize_str(""),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ControlMessage {
    disconnect_user_id: Uuid,
    code: u16,
    /// Only the sockets of this login session ([`super::hub::session_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<u64>,
}

/// One event (unread 0, no seq) for several users with their counters.
struct Batch {
    json: String,
    targets: Vec<(Uuid, i64)>,
    /// Appended to the resume store (everything but typing).
    stored: bool,
}

/// Publishes events to users wherever they are connected.
#[derive(Clone)]
pub struct EventBus {
    redis: Redis,
    hub: Arc<Hub>,
    store: EventStore,
    events_channel: String,
    batch_channel: String,
    control_channel: String,
    batched: bool,
    subscribed: Arc<AtomicBool>,
}

impl EventBus {
    pub fn new(redis: Redis, hub: Arc<Hub>, batched: bool, store: EventStore) -> Self {
        Self {
            events_channel: redis.key("events:broadcast"),
            batch_channel: redis.key("events:batch"),
            batched,
            control_channel: redis.key("events:control"),
            store,
            redis,
            hub,
            subscribed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The resume store the bus writes before publishing.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// `SPUBLISH` on a cluster: a sharded channel's messages stay on the
    /// shard that owns its slot instead of crossing every node's bus.
    fn publish_cmd(&self) -> &'static str {
        if self.redis.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
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
        let unread = event.meta.unread_count;
        self.publish(vec![Batch {
            json: event.with_unread(0).to_json(),
            targets: users.iter().map(|u| (*u, unread)).collect(),
            stored: event.kind != kinds::CHAT_TYPING,
        }])
        .await;
    }

    /// Sends each event to its users, every user with their own
    /// `meta.unread_count`, in one round trip. Each event is serialised
    /// once, however many users it has: a message to a 10,000-member group
    /// costs one JSON rendering, not 10,000 (as [`Self::to_each`] would).
    pub async fn to_counted(&self, groups: Vec<(&Event, Vec<(Uuid, i64)>)>) {
        let batches = groups
            .into_iter()
            .filter(|(_, targets)| !targets.is_empty())
            .map(|(event, targets)| Batch {
                json: event.with_unread(0).to_json(),
                targets,
                stored: event.kind != kinds::CHAT_TYPING,
            })
            .collect();
        self.publish(batches).await;
    }

    /// Sends a personalised event to each user, in order, in one round trip.
    /// Recipients whose events differ only in `meta.unread_count` share one
    /// batch.
    pub async fn to_each(&self, items: Vec<(Uuid, Event)>) {
        let mut batches: Vec<Batch> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (user, mut event) in items {
            let unread = event.meta.unread_count;
            // Owned: zero the counter in place rather than clone the payload.
            event.meta.unread_count = 0;
            let json = event.to_json();
            match index.get(&json) {
                Some(&i) => batches[i].targets.push((user, unread)),
                None => {
                    index.insert(json.clone(), batches.len());
                    batches.push(Batch {
                        json,
                        targets: vec![(user, unread)],
                        stored: event.kind != kinds::CHAT_TYPING,
                    });
                }
            }
        }
        self.publish(batches).await;
    }

    async fn publish(&self, batches: Vec<Batch>) {
        if batches.iter().all(|b| b.targets.is_empty()) {
            return;
        }
        let (seqs, due) = self.store_all(&batches).await;
        if self.batched {
            self.publish_batches(batches, seqs).await;
        } else {
            self.publish_many(batches, seqs).await;
        }
        // After publishing: the trim's round trip never delays delivery.
        self.store.trim(&due).await;
    }

    /// Appends the stored batches to their recipients' resume stores; one
    /// position (or None) per target of each batch, and the users whose
    /// stores are due a trim.
    async fn store_all(&self, batches: &[Batch]) -> (Vec<Vec<Option<Pos>>>, Vec<Uuid>) {
        let bodies: Vec<&str> = batches.iter().map(|b| b.json.as_str()).collect();
        let targets: Vec<Target> = batches
            .iter()
            .enumerate()
            .filter(|(_, b)| b.stored)
            .flat_map(|(i, b)| {
                b.targets.iter().map(move |(user, unread)| Target {
                    user: *user,
                    body: i,
                    unread: *unread,
                })
            })
            .collect();
        let appended = self.store.append(&bodies, &targets).await;
        let mut positions = appended.positions.into_iter();
        let seqs = batches
            .iter()
            .map(|b| {
                b.targets
                    .iter()
                    .map(|_| {
                        if b.stored {
                            positions.next().flatten()
                        } else {
                            None
                        }
                    })
                    .collect()
            })
            .collect();
        (seqs, appended.due)
    }

    async fn publish_batches(&self, batches: Vec<Batch>, seqs: Vec<Vec<Option<Pos>>>) {
        let mut pipe = redis::pipe();
        for (b, seqs) in batches.iter().zip(&seqs) {
            let msg = BatchOut {
                event_data: &b.json,
                targets: &b.targets,
                seqs: Seqs(seqs),
            };
            pipe.cmd(self.publish_cmd())
                .arg(&self.batch_channel)
                .arg(serde_json::to_string(&msg).unwrap_or_default())
                .ignore();
        }
        let mut conn = self.redis.conn();
        let res = pipe.query_async::<()>(&mut conn).await;
        crate::infra::metrics::bus_published("batch", batches.len(), res.is_ok());
        if let Err(e) = res {
            tracing::error!(error = %e, "event publish failed; delivering to local sockets only");
            for (b, seqs) in batches.iter().zip(&seqs) {
                self.deliver_batch(&b.json, &b.targets, |i| seqs.get(i).copied().flatten())
                    .await;
            }
        }
    }

    /// Delivers a batch to the targets connected to this instance; `seq(i)`
    /// is target i's position (only asked for targets connected here).
    async fn deliver_batch(
        &self,
        json: &str,
        targets: &[(Uuid, i64)],
        seq: impl Fn(usize) -> Option<Pos>,
    ) {
        let base = Utf8Bytes::from(json);
        let users = targets.iter().enumerate().map(|(i, (user, _))| (*user, i));
        self.hub
            .deliver_many(users, |i| {
                let unread = targets.get(i).map_or(0, |t| t.1);
                let pos = seq(i);
                Outbound {
                    data: if unread == 0 && pos.is_none() {
                        base.clone()
                    } else {
                        Utf8Bytes::from(frame(json, unread, pos))
                    },
                    pos,
                }
            })
            .await;
    }

    /// The reference's shape: one message per recipient, its counter and
    /// position already in the event bytes.
    async fn publish_many(&self, batches: Vec<Batch>, seqs: Vec<Vec<Option<Pos>>>) {
        let mut items = Vec::new();
        for (b, seqs) in batches.iter().zip(&seqs) {
            for ((user, unread), pos) in b.targets.iter().zip(seqs) {
                items.push((*user, frame(&b.json, *unread, *pos), *pos));
            }
        }
        let mut pipe = redis::pipe();
        for (user, json, _) in &items {
            let msg = BroadcastMessage {
                target_user_id: *user,
                event_data: base64::engine::general_purpose::STANDARD.encode(json),
            };
            let body = serde_json::to_string(&msg).unwrap_or_default();
            pipe.cmd(self.publish_cmd())
                .arg(&self.events_channel)
                .arg(body)
                .ignore();
        }
        let mut conn = self.redis.conn();
        let res = pipe.query_async::<()>(&mut conn).await;
        crate::infra::metrics::bus_published("reference", items.len(), res.is_ok());
        if let Err(e) = res {
            tracing::error!(error = %e, "event publish failed; delivering to local sockets only");
            for (user, json, pos) in items {
                self.hub
                    .deliver_with(user, || Outbound {
                        data: Utf8Bytes::from(json),
                        pos,
                    })
                    .await;
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
        let res: redis::RedisResult<()> = redis::cmd(self.publish_cmd())
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
        if self.redis.is_cluster() {
            tokio::spawn(async move { bus.sharded_loop(Some(ready_tx), shutdown).await });
        } else {
            tokio::spawn(async move { bus.subscriber_loop(Some(ready_tx), shutdown).await });
        }
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
                        // Whatever was published while we were away is in
                        // the store: every socket here reads its gap.
                        self.hub.catch_up_all();
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        tracing::info!(channel = %self.events_channel, "event bus subscribed");
                        backoff = Duration::from_millis(100);
                        let mut stream = pubsub.on_message();
                        loop {
                            tokio::select! {
                                msg = stream.next() => match msg {
                                    Some(msg) => self.handle(&msg).await,
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

    async fn handle(&self, msg: &redis::Msg) {
        self.handle_payload(msg.get_channel_name(), msg.get_payload_bytes())
            .await;
    }

    /// One bus message, from whichever channel it came.
    async fn handle_payload(&self, channel: &str, payload: &[u8]) {
        if channel == self.control_channel {
            match serde_json::from_slice::<ControlMessage>(payload) {
                Ok(c) => {
                    crate::infra::metrics::bus_received("control", None);
                    let reason =
                        CloseReason::from_code(c.code).unwrap_or(CloseReason::SessionRevoked);
                    // After the frames read before it, as a task-per-socket
                    // queue would have had them.
                    self.hub.settle().await;
                    self.close_local(c.disconnect_user_id, c.session, reason);
                }
                Err(e) => tracing::warn!(error = %e, "undecodable control message skipped"),
            }
            return;
        }
        if channel == self.batch_channel {
            match serde_json::from_slice::<BatchIn>(payload) {
                Ok(b) => {
                    crate::infra::metrics::bus_received("batch", Some(&b.event_data));
                    self.deliver_batch(&b.event_data, &b.targets, |i| {
                        b.seqs.get(i).and_then(|s| Pos::parse(&s.0))
                    })
                    .await;
                }
                Err(e) => tracing::warn!(error = %e, "undecodable batch message skipped"),
            }
            return;
        }
        let decoded = serde_json::from_slice::<BroadcastMessage>(payload)
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
                let pos = seq_of(&json);
                self.hub
                    .deliver_with(user, || Outbound {
                        data: Utf8Bytes::from(json),
                        pos,
                    })
                    .await;
            }
            None => tracing::warn!("Failed to unmarshal redis pubsub payload"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_written_and_read_in_the_shape_instances_share() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let targets = [(a, 3), (b, 0)];
        let seqs = [
            Some(Pos {
                generation: 1,
                n: 5,
                ms: 7,
            }),
            None,
        ];
        let json = serde_json::to_string(&BatchOut {
            event_data: "{\"type\":\"message.new\",\"x\":\"\\\"\"}",
            targets: &targets,
            seqs: Seqs(&seqs),
        })
        .unwrap_or_default();
        assert_eq!(
            json,
            format!(
                "{{\"event_data\":\"{{\\\"type\\\":\\\"message.new\\\",\\\"x\\\":\\\"\\\\\\\"\\\"}}\",\
                 \"targets\":[[\"{a}\",3],[\"{b}\",0]],\"seqs\":[\"1.5-7\",\"\"]}}"
            )
        );
        let back: BatchIn = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back.event_data, "{\"type\":\"message.new\",\"x\":\"\\\"\"}");
        assert_eq!(back.targets, targets);
        let read: Vec<&str> = back.seqs.iter().map(|s| s.0.as_ref()).collect();
        assert_eq!(read, ["1.5-7", ""]);
        assert!(matches!(back.seqs[0].0, Cow::Borrowed(_)), "not copied");

        // Nothing stored: no `seqs` at all, and a reader defaults it.
        let json = serde_json::to_string(&BatchOut {
            event_data: "{}",
            targets: &targets,
            seqs: Seqs(&[None, None]),
        })
        .unwrap_or_default();
        assert!(!json.contains("seqs"), "{json}");
        let back: BatchIn = serde_json::from_str(&json).expect("reads back");
        assert!(back.seqs.is_empty());
    }
}
