//! Presence across instances.
//!
//! `online:<user>` (value `true`, TTL 70 s) is what REST reads, as in the
//! reference. Each instance keeps a lease in the sorted set
//! `presence:<user>` (member = instance id, score = lease expiry in ms),
//! renewed on every pong; see [`scripts`] for the other keys.
//!
//! Contacts hear `user.online` when a user goes from "offline" to connected
//! anywhere, and `user.offline` only once no instance has held a lease for
//! `PRESENCE_OFFLINE_GRACE_SECONDS`: a page reload (old socket closes while
//! the new one opens, on any instance) announces nothing. The offline
//! decision is taken by a sweeper that runs on every instance against one
//! Redis sorted set of due users, so it happens even when the instance the
//! user left has stopped or crashed, and exactly once. Every announcement
//! carries `version`, increasing per user; one already superseded when it
//! is about to be published is dropped, and a client can drop a stale
//! event that still overtook a newer one on the way.
//!
//! Each instance applies its own connects and disconnects for one user in
//! order (a per-user lock, then the hub's current count decides join or
//! leave), so a close racing an open on the same instance can never leave
//! the instance's lease missing while a socket is open.

mod scripts;
mod slots;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

pub use slots::SocketSlot;

use super::event::{kinds, Event};
use super::recipients;
use super::{EventBus, Hub};
use crate::infra::keyed_lock::KeyedLocks;
use crate::infra::redis::{CountErrors, Redis};

/// Presence key lifetime (and instance lease length).
pub const ONLINE_TTL_SECS: u64 = 70;

/// How often each instance looks for users due for an offline decision.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Due users decided per sweep round (the rest wait for the next round).
const SWEEP_BATCH: isize = 200;
/// Offline announcements prepared at once (each looks up contacts).
const ANNOUNCE_CONCURRENCY: usize = 16;

static JOIN: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(scripts::JOIN));
static LEAVE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(scripts::LEAVE));
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(scripts::SETTLE));

/// Due-set partitions on a cluster: a user's presence keys and their due
/// set share the hash tag `{p<n>}`, so the scripts touch one slot, and the
/// sets spread over the shards.
const PARTITIONS: u32 = 16;

fn partition(user: Uuid) -> u32 {
    (user.as_u128() % u128::from(PARTITIONS)) as u32
}

/// `{p<n>}:` on a cluster, "" on a single node (names stay as they were).
fn part_tag(redis: &Redis, user: Uuid) -> String {
    if redis.is_cluster() {
        format!("{}:", redis.tag(&format!("p{}", partition(user))))
    } else {
        String::new()
    }
}

fn due_key(redis: &Redis, part: u32) -> String {
    if redis.is_cluster() {
        redis.key(&format!("presence:due:{}", redis.tag(&format!("p{part}"))))
    } else {
        redis.key("presence:due")
    }
}

/// The key REST reads to tell whether `user` is online.
pub fn online_key(redis: &Redis, user: Uuid) -> String {
    redis.key(&format!("online:{}{user}", part_tag(redis, user)))
}

/// Presence tracker of this instance.
#[derive(Clone)]
pub struct Presence {
    db: PgPool,
    redis: Redis,
    bus: EventBus,
    hub: Arc<Hub>,
    instance_id: Arc<str>,
    grace: Duration,
    /// Serialises this instance's join/leave decisions per user.
    order: Arc<KeyedLocks<Uuid>>,
}

impl Presence {
    pub fn new(db: PgPool, redis: Redis, bus: EventBus, hub: Arc<Hub>, grace: Duration) -> Self {
        Self {
            db,
            redis,
            bus,
            hub,
            instance_id: Arc::from(Uuid::new_v4().to_string()),
            grace,
            order: Arc::new(KeyedLocks::default()),
        }
    }

    /// This instance's id in presence and instance leases.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    fn leases_key(&self, user: Uuid) -> String {
        self.redis
            .key(&format!("presence:{}{user}", part_tag(&self.redis, user)))
    }

    fn online_key(&self, user: Uuid) -> String {
        online_key(&self.redis, user)
    }

    fn state_key(&self, user: Uuid) -> String {
        self.redis.key(&format!(
            "presence:state:{}{user}",
            part_tag(&self.redis, user)
        ))
    }

    /// The due set `user` is in: the one set on a single node; on a cluster
    /// the set of the user's partition (a script touches both).
    fn due_key(&self, user: Uuid) -> String {
        due_key(&self.redis, partition(user))
    }

    /// Every due set, one per partition.
    fn due_keys(&self) -> Vec<String> {
        if self.redis.is_cluster() {
            (0..PARTITIONS).map(|p| due_key(&self.redis, p)).collect()
        } else {
            vec![due_key(&self.redis, 0)]
        }
    }

    fn grace_ms(&self) -> u64 {
        u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX)
    }

    /// First local connection of `user`.
    pub async fn connected(&self, user: Uuid) {
        self.sync(user).await;
    }

    /// Another connection or a pong: renew the lease and the online key.
    pub async fn refresh(&self, user: Uuid) {
        self.sync(user).await;
    }

    /// Last local connection of `user` closed.
    pub async fn disconnected(&self, user: Uuid) {
        self.sync(user).await;
    }

    /// Makes this instance's lease match the hub: held while the user has
    /// a socket here, dropped otherwise. The count is read under the
    /// per-user lock, so the last sync to run always sees the final state.
    async fn sync(&self, user: Uuid) {
        let _turn = self.order.lock(user).await;
        let res = if self.hub.user_connection_count(user) > 0 {
            self.join(user).await
        } else {
            self.leave(user).await
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, %user, "presence update failed");
        }
    }

    async fn join(&self, user: Uuid) -> redis::RedisResult<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut c = self.redis.conn();
        let version: i64 = JOIN
            .key(self.leases_key(user))
            .key(self.online_key(user))
            .key(self.state_key(user))
            .key(self.due_key(user))
            .arg(&*self.instance_id)
            .arg(now)
            .arg(ONLINE_TTL_SECS * 1000)
            .arg(self.grace_ms())
            .arg(user.to_string())
            .invoke_async(&mut c)
            .await
            .counted("presence")?;
        if version > 0 {
            let payload = json!({
                "user_id": user,
                "is_online": true,
                "last_seen_at": now,
                "version": version,
            });
            self.announce(
                user,
                version,
                Event::new(kinds::USER_ONLINE, payload, None, Some(user)),
            )
            .await;
        }
        Ok(())
    }

    async fn leave(&self, user: Uuid) -> redis::RedisResult<()> {
        let mut c = self.redis.conn();
        let _left: i64 = LEAVE
            .key(self.leases_key(user))
            .key(self.due_key(user))
            .arg(&*self.instance_id)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(self.grace_ms())
            .arg(user.to_string())
            .invoke_async(&mut c)
            .await
            .counted("presence")?;
        Ok(())
    }

    /// Starts this instance's sweeper: it announces `user.offline` for the
    /// users whose grace period ran out, until `shutdown` says stop.
    pub fn start_sweeper(&self, mut shutdown: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() { return; }
                        continue;
                    }
                }
                if let Err(e) = me.sweep().await {
                    tracing::debug!(error = %e, "presence sweep failed; retrying");
                }
            }
        });
    }

    /// One sweep round: settles every due user (see [`scripts::SETTLE`]).
    async fn sweep(&self) -> redis::RedisResult<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let keys = self.due_keys();
        let due: Vec<Vec<String>> = futures::future::try_join_all(keys.iter().map(|key| {
            let mut c = self.redis.conn();
            async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(key)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(SWEEP_BATCH)
                    .query_async::<Vec<String>>(&mut c)
                    .await
            }
        }))
        .await
        .counted("presence")?;
        futures::stream::iter(due.iter().flatten().filter_map(|u| Uuid::try_parse(u).ok()))
            .for_each_concurrent(ANNOUNCE_CONCURRENCY, |user| async move {
                if let Err(e) = self.settle(user, now).await {
                    tracing::warn!(error = %e, %user, "presence settle failed");
                }
            })
            .await;
        Ok(())
    }

    async fn settle(&self, user: Uuid, now: i64) -> redis::RedisResult<()> {
        let mut c = self.redis.conn();
        let (version, last_seen): (i64, i64) = SETTLE
            .key(self.leases_key(user))
            .key(self.online_key(user))
            .key(self.state_key(user))
            .key(self.due_key(user))
            .arg(user.to_string())
            .arg(now)
            .arg(self.grace_ms())
            .invoke_async(&mut c)
            .await
            .counted("presence")?;
        if version == 0 {
            return Ok(());
        }
        let seen =
            chrono::DateTime::from_timestamp_millis(last_seen).unwrap_or_else(chrono::Utc::now);
        if let Err(e) = sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
            .bind(user)
            .bind(seen)
            .execute(&self.db)
            .await
        {
            tracing::error!(error = %e, %user, "Failed to update user last_seen_at in DB");
        }
        let payload = json!({
            "user_id": user,
            "is_online": false,
            "last_seen_at": last_seen,
            "version": version,
        });
        self.announce(
            user,
            version,
            Event::new(kinds::USER_OFFLINE, payload, None, Some(user)),
        )
        .await;
        Ok(())
    }

    /// Publishes a presence event to the user's contacts, unless a newer
    /// announcement (another instance's) was decided meanwhile: that one
    /// is the truth, and sending this one could only make it overtake.
    async fn announce(&self, user: Uuid, version: i64, event: Event) {
        let contacts = match recipients::unblocked_contacts(&self.db, user).await {
            Ok(contacts) => contacts,
            Err(e) => {
                tracing::error!(error = %e, %user, "contact lookup failed");
                return;
            }
        };
        let mut c = self.redis.conn();
        let current: redis::RedisResult<Option<i64>> = redis::cmd("HGET")
            .arg(self.state_key(user))
            .arg("v")
            .query_async(&mut c)
            .await
            .counted("presence");
        if matches!(current, Ok(Some(v)) if v > version) {
            tracing::debug!(%user, version, "presence announcement superseded; not sent");
            return;
        }
        self.bus.to_users(&contacts, &event).await;
    }

    /// Whether `user` is online anywhere.
    pub async fn is_online(&self, user: Uuid) -> bool {
        let mut c = self.redis.conn();
        redis::cmd("EXISTS")
            .arg(self.online_key(user))
            .query_async::<bool>(&mut c)
            .await
            .counted("presence")
            .unwrap_or(false)
    }
}
