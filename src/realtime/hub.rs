//! The per-instance registry of open sockets: user id → that user's
//! connections. Delivery never blocks: each connection has a bounded queue
//! and a client that lets it fill up is disconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

use super::direct::Direct;
use super::store::Pos;

mod delivery;
pub use delivery::DIRECT_WRITE_MIN_SOCKETS;

/// Outbound queue length per connection.
pub const SEND_QUEUE: usize = 256;

/// A queue slot. Boxed because tokio's channel allocates its first block
/// of 32 slots up front: 8-byte slots keep an idle connection's queue at
/// about 300 bytes instead of 1.6 KiB (issue 21, 100,000 idle sockets).
pub type Queued = Box<Outbound>;

/// Why the server closes a socket; becomes the WebSocket close code/reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The process is shutting down (1001 going away).
    Shutdown,
    /// The client could not keep up with its events (1008).
    SlowConsumer,
    /// The session was logged out or revoked (4001).
    SessionRevoked,
    /// The account was banned (4003).
    Banned,
    /// The account was deleted (4004).
    AccountDeleted,
    /// Events may have been missed and could not be filled from the store
    /// (4010): reconnect with `since` (extension, issue 16).
    ResumeRequired,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            Self::Shutdown => 1001,
            Self::SlowConsumer => 1008,
            Self::SessionRevoked => 4001,
            Self::Banned => 4003,
            Self::AccountDeleted => 4004,
            Self::ResumeRequired => 4010,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::Shutdown => "server shutting down",
            Self::SlowConsumer => "client too slow",
            Self::SessionRevoked => "session revoked",
            Self::Banned => "account banned",
            Self::AccountDeleted => "account deleted",
            Self::ResumeRequired => "resume required",
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        [
            Self::Shutdown,
            Self::SlowConsumer,
            Self::SessionRevoked,
            Self::Banned,
            Self::AccountDeleted,
            Self::ResumeRequired,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

/// One queued frame and, for stored events, its resume position (the
/// socket uses it to drop duplicates and fill gaps). The bytes go into the
/// WebSocket message as they are: a clone shares them, no copy per socket.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub data: Utf8Bytes,
    pub pos: Option<Pos>,
}

/// The hub's handle to one connection.
struct Conn {
    user_id: Uuid,
    id: u64,
    /// Where frames are written straight to the socket while its task idles.
    direct: Arc<Direct>,
    /// Frames of this connection handed to a writer lane and not yet
    /// offered (see `delivery`: a small delivery skips the lanes only
    /// when none are).
    in_lane: std::sync::atomic::AtomicU32,
    tx: mpsc::Sender<Queued>,
    close: watch::Sender<Option<CloseReason>>,
    /// Poked when this instance may have missed bus messages.
    catch_up: Arc<Notify>,
    /// Which login session (token) opened it; see [`session_id`].
    session: u64,
}

impl Conn {
    /// Writes the frame straight to the socket if its task idles, else
    /// queues it. A connection whose queue is full is told to close (it is
    /// too slow to keep up).
    fn offer(&self, out: Outbound, now: bool) {
        self.direct.offer(out.data, out.pos, now, |data| {
            match self.tx.try_send(Box::new(Outbound { data, pos: out.pos })) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    crate::infra::metrics::ws_queue_drop();
                    tracing::warn!(user_id = %self.user_id, conn_id = self.id, "send queue full; disconnecting slow client");
                    let _ = self.close.send(Some(CloseReason::SlowConsumer));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        });
    }
}

/// Pairs each of a user's connections with the frame. A clone of the bytes
/// allocates their shared header, so only a user with several sockets
/// here pays it (the last one takes the original).
fn each_conn(
    conns: &HashMap<u64, Arc<Conn>>,
    data: Outbound,
    found: &mut Vec<(Arc<Conn>, Outbound)>,
) {
    let last = conns.len().saturating_sub(1);
    let mut data = Some(data);
    for (k, conn) in conns.values().enumerate() {
        let out = if k == last { data.take() } else { data.clone() };
        if let Some(out) = out {
            found.push((conn.clone(), out));
        }
    }
}

/// A short fingerprint of a bearer token, so a logout can close the sockets
/// that token opened without the hub keeping tokens around.
pub fn session_id(token: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// What the socket task holds: its queue and its close signal.
pub struct Registration {
    pub conn_id: u64,
    pub user_id: Uuid,
    pub rx: mpsc::Receiver<Queued>,
    pub close: watch::Receiver<Option<CloseReason>>,
    /// Notified after the bus was lost and came back: read the store.
    pub catch_up: Arc<Notify>,
    /// Where the idle task lends its writer (write-through delivery).
    pub direct: Arc<Direct>,
    /// True when this is the user's first connection on this instance.
    pub first_local: bool,
}

/// Connection registry of this instance.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<Uuid, HashMap<u64, Arc<Conn>>>>,
    next_id: AtomicU64,
    writers: delivery::Writers,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Self::with_direct_writes_from(DIRECT_WRITE_MIN_SOCKETS)
    }

    /// A hub whose deliveries to at least `sockets` of its sockets are
    /// written straight to them (0 = never; see [`delivery`]).
    pub fn with_direct_writes_from(sockets: usize) -> Arc<Self> {
        Arc::new(Self {
            writers: delivery::Writers::new(sockets),
            ..Self::default()
        })
    }

    /// Registers a connection before its tasks start, so an early unregister
    /// can never overtake the registration.
    pub fn register(&self, user_id: Uuid, session: u64) -> Registration {
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let (close_tx, close_rx) = watch::channel(None);
        let catch_up = Arc::new(Notify::new());
        let direct = Arc::new(Direct::default());
        let mut users = self.lock();
        let conns = users.entry(user_id).or_default();
        let first_local = conns.is_empty();
        conns.insert(
            conn_id,
            Arc::new(Conn {
                user_id,
                id: conn_id,
                direct: direct.clone(),
                in_lane: Default::default(),
                tx,
                close: close_tx,
                catch_up: catch_up.clone(),
                session,
            }),
        );
        Registration {
            conn_id,
            user_id,
            rx,
            close: close_rx,
            catch_up,
            direct,
            first_local,
        }
    }

    /// Removes a connection. Returns true when it was the user's last local one.
    pub fn unregister(&self, user_id: Uuid, conn_id: u64) -> bool {
        let mut users = self.lock();
        let Some(conns) = users.get_mut(&user_id) else {
            return false;
        };
        if conns.remove(&conn_id).is_none() {
            return false;
        }
        if conns.is_empty() {
            users.remove(&user_id);
            return true;
        }
        false
    }

    /// Sends an event to every local connection of `user_id`.
    pub async fn deliver(&self, user_id: Uuid, data: Utf8Bytes) {
        self.deliver_with(user_id, || Outbound { data, pos: None })
            .await;
    }

    /// Like [`Hub::deliver`], but builds the bytes only when `user_id` has a
    /// connection here (most targets of a broadcast live on other instances).
    pub async fn deliver_with(&self, user_id: Uuid, build: impl FnOnce() -> Outbound) {
        let mut found = Vec::new();
        if let Some(conns) = self.lock().get(&user_id) {
            each_conn(conns, build(), &mut found);
        }
        self.writers.write(found).await;
    }

    /// Delivers to every local connection of each `(user, i)`, `build(i)`
    /// making that user's frame (only for users connected here). The
    /// connections are looked up under the lock and written after it, by
    /// the instance's writers ([`delivery`]), so a 5,000-socket delivery
    /// never holds up connects and disconnects.
    pub async fn deliver_many(
        &self,
        targets: impl IntoIterator<Item = (Uuid, usize)>,
        mut build: impl FnMut(usize) -> Outbound,
    ) {
        let mut found = Vec::new();
        {
            let users = self.lock();
            for (user_id, i) in targets {
                if let Some(conns) = users.get(&user_id) {
                    each_conn(conns, build(i), &mut found);
                }
            }
        }
        self.writers.write(found).await;
    }

    /// Returns once every frame handed over before it was written or
    /// queued: a close that follows a delivery must not overtake it.
    pub async fn settle(&self) {
        self.writers.settle().await;
    }

    /// Asks every local connection of `user_id` to close with `reason`.
    pub fn disconnect_user(&self, user_id: Uuid, reason: CloseReason) -> usize {
        let users = self.lock();
        users.get(&user_id).map_or(0, |conns| {
            for conn in conns.values() {
                let _ = conn.close.send(Some(reason));
            }
            conns.len()
        })
    }

    /// Asks the local connections of `user_id` opened by one login session
    /// to close (logout ends that session only).
    pub fn disconnect_session(&self, user_id: Uuid, session: u64, reason: CloseReason) -> usize {
        let users = self.lock();
        users.get(&user_id).map_or(0, |conns| {
            let mut n = 0;
            for conn in conns.values().filter(|c| c.session == session) {
                let _ = conn.close.send(Some(reason));
                n += 1;
            }
            n
        })
    }

    /// Tells every connection to read what it may have missed from the
    /// store (the bus was lost and is back).
    pub fn catch_up_all(&self) {
        for conns in self.lock().values() {
            for conn in conns.values() {
                conn.catch_up.notify_one();
            }
        }
    }

    /// Asks every connection to close (graceful shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for conns in self.lock().values() {
            for conn in conns.values() {
                let _ = conn.close.send(Some(reason));
            }
        }
    }

    /// Whether `user_id` has a connection on this instance.
    pub fn is_connected_locally(&self, user_id: Uuid) -> bool {
        self.lock().contains_key(&user_id)
    }

    /// Number of open connections of `user_id` on this instance.
    pub fn user_connection_count(&self, user_id: Uuid) -> usize {
        self.lock().get(&user_id).map_or(0, HashMap::len)
    }

    /// Number of open connections on this instance.
    pub fn connection_count(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HashMap<u64, Arc<Conn>>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every critical section is a single insert/remove), so recover.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_connection_are_reported() {
        let hub = Hub::new();
        let u = Uuid::now_v7();
        let a = hub.register(u, 1);
        let b = hub.register(u, 2);
        assert!(a.first_local);
        assert!(!b.first_local);
        assert!(!hub.unregister(u, a.conn_id));
        assert!(hub.unregister(u, b.conn_id));
        assert!(!hub.unregister(u, b.conn_id));
    }

    #[tokio::test]
    async fn full_queue_closes_only_that_connection() {
        let hub = Hub::new();
        let u = Uuid::now_v7();
        let slow = hub.register(u, 1);
        for _ in 0..SEND_QUEUE {
            hub.deliver(u, Utf8Bytes::from("x")).await;
        }
        assert!(slow.close.borrow().is_none());
        hub.deliver(u, Utf8Bytes::from("overflow")).await;
        assert_eq!(*slow.close.borrow(), Some(CloseReason::SlowConsumer));
    }
}
