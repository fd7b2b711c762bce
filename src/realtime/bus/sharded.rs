//! The bus on a Redis Cluster: the three channels are sharded channels
//! (`SPUBLISH`/`SSUBSCRIBE`), each living on the shard that owns its slot,
//! so a message travels to that shard's master and its subscribers only,
//! not over every node's cluster bus as a plain `PUBLISH` does.
//!
//! One RESP3 cluster connection subscribes; the `redis` client routes each
//! `SSUBSCRIBE` to the master of the channel's slot and follows MOVED. When
//! a shard drops the subscription (its master failed over or the slot moved:
//! the node sends `sunsubscribe`) or a node connection breaks, the loop
//! counts a bus loss, subscribes again (the client finds the new master) and
//! then pokes every local socket to read its gap from the store, exactly as
//! after a reconnect on one node.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::EventBus;

/// Why the listening stopped.
enum Lost {
    /// A shard dropped us or a node went away: subscribe again.
    Shard,
    /// The connection is gone: make a new one.
    Connection,
}

impl EventBus {
    fn channels(&self) -> [&str; 3] {
        [
            &self.events_channel,
            &self.batch_channel,
            &self.control_channel,
        ]
    }

    /// Subscribes every channel (one command each: they are in different
    /// slots).
    async fn ssubscribe_all(&self, conn: &mut ClusterConnection) -> redis::RedisResult<()> {
        for ch in self.channels() {
            conn.ssubscribe(ch).await?;
        }
        Ok(())
    }

    pub(super) async fn sharded_loop(
        self,
        mut ready: Option<oneshot::Sender<()>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let (tx, mut rx) = mpsc::unbounded_channel();
            match self.redis.cluster_subscriber(tx).await {
                Ok(mut conn) => loop {
                    if let Err(e) = self.ssubscribe_all(&mut conn).await {
                        tracing::warn!(error = %e, "event bus ssubscribe failed; retrying");
                        break;
                    }
                    self.subscribed.store(true, Ordering::Relaxed);
                    // Whatever was published while we were away is in the
                    // store: every socket here reads its gap.
                    self.hub.catch_up_all();
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    tracing::info!(channel = %self.batch_channel, "event bus subscribed (sharded)");
                    backoff = Duration::from_millis(100);
                    let lost = tokio::select! {
                        lost = self.listen(&mut rx) => lost,
                        _ = shutdown.changed() => return,
                    };
                    self.subscribed.store(false, Ordering::Relaxed);
                    crate::infra::metrics::bus_reconnect();
                    tracing::warn!("event bus shard subscription lost; subscribing again");
                    if matches!(lost, Lost::Connection) {
                        break;
                    }
                    // Give the cluster a moment to finish the failover.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                },
                Err(e) => {
                    tracing::warn!(error = %e, "event bus cannot reach the Redis Cluster; retrying")
                }
            }
            self.subscribed.store(false, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Delivers messages until a subscription is lost.
    async fn listen(&self, rx: &mut mpsc::UnboundedReceiver<PushInfo>) -> Lost {
        while let Some(push) = rx.recv().await {
            match push.kind {
                PushKind::SMessage | PushKind::Message => {
                    if let [Value::BulkString(ch), Value::BulkString(payload)] =
                        push.data.as_slice()
                    {
                        self.handle_payload(&String::from_utf8_lossy(ch), payload)
                            .await;
                    }
                }
                PushKind::SUnsubscribe | PushKind::Disconnection => return Lost::Shard,
                _ => {}
            }
        }
        Lost::Connection
    }
}
