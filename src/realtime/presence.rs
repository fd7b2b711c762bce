//! Presence across instances.
//!
//! `online:<user>` (value `true`, TTL 70 s) is what REST reads, as in the
//! reference. To send `user.online` only for a user's first connection
//! anywhere and `user.offline` only after the last one closes everywhere,
//! each instance keeps a lease in the sorted set `presence:<user>` (member =
//! instance id, score = lease expiry in ms), renewed on every pong. A crashed
//! instance's lease simply runs out, so its users go offline by themselves.

use std::sync::Arc;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::event::{kinds, Event};
use super::recipients;
use super::EventBus;
use crate::infra::redis::Redis;

/// Presence key lifetime (and instance lease length).
pub const ONLINE_TTL_SECS: u64 = 70;

/// Presence tracker of this instance.
#[derive(Clone)]
pub struct Presence {
    db: PgPool,
    redis: Redis,
    bus: EventBus,
    instance_id: Arc<str>,
}

/// Adds/renews this instance's lease; returns how many live leases exist
/// and whether this instance's lease was new.
const JOIN: &str = r"
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('SET', KEYS[2], 'true', 'PX', tonumber(ARGV[3]))
return {added, redis.call('ZCARD', KEYS[1])}
";

/// Drops this instance's lease; returns how many live leases remain (and
/// deletes the online key when none do).
const LEAVE: &str = r"
local now = tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[2]) end
return left
";

/// Takes a slot in `wsconns:<user>` (member = one socket, score = lease
/// expiry in ms) unless the user already holds `ARGV[4]` live ones; expired
/// members (a crashed instance's sockets) are dropped first. 1 = taken.
const RESERVE_SOCKET: &str = r"
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
";

/// One socket's place under the per-user cap, released when dropped.
pub struct SocketSlot {
    redis: Redis,
    key: String,
    member: String,
}

impl SocketSlot {
    /// Renews the lease (with every pong, like presence).
    pub async fn renew(&self) {
        let expiry = chrono::Utc::now().timestamp_millis() + (ONLINE_TTL_SECS * 1000) as i64;
        let mut c = self.redis.conn();
        let res: redis::RedisResult<()> = redis::pipe()
            .cmd("ZADD")
            .arg(&self.key)
            .arg(expiry)
            .arg(&self.member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&self.key)
            .arg(ONLINE_TTL_SECS * 1000)
            .ignore()
            .query_async(&mut c)
            .await;
        if let Err(e) = res {
            tracing::debug!(error = %e, "socket lease renewal failed");
        }
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let (redis, key, member) = (
            self.redis.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.member),
        );
        // Outside a runtime (process teardown) the lease simply runs out.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut c = redis.conn();
                let _: redis::RedisResult<i64> = redis::cmd("ZREM")
                    .arg(key)
                    .arg(member)
                    .query_async(&mut c)
                    .await;
            });
        }
    }
}

impl Presence {
    /// Reserves a slot for one more socket of `user`, counting the sockets
    /// it holds on every instance. `Ok(None)`: the user is at `max`.
    pub async fn reserve_socket(
        &self,
        user: Uuid,
        max: u32,
    ) -> redis::RedisResult<Option<SocketSlot>> {
        let key = self.redis.key(&format!("wsconns:{user}"));
        let member = format!("{}:{}", self.instance_id, Uuid::new_v4().simple());
        let mut c = self.redis.conn();
        let taken: i64 = redis::Script::new(RESERVE_SOCKET)
            .key(&key)
            .arg(&member)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(ONLINE_TTL_SECS * 1000)
            .arg(max)
            .invoke_async(&mut c)
            .await?;
        Ok((taken == 1).then(|| SocketSlot {
            redis: self.redis.clone(),
            key,
            member,
        }))
    }

    pub fn new(db: PgPool, redis: Redis, bus: EventBus) -> Self {
        Self {
            db,
            redis,
            bus,
            instance_id: Arc::from(Uuid::new_v4().to_string()),
        }
    }

    /// This instance's id in presence and instance leases.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    fn keys(&self, user: Uuid) -> (String, String) {
        (
            self.redis.key(&format!("presence:{user}")),
            self.redis.key(&format!("online:{user}")),
        )
    }

    /// First local connection of `user`.
    pub async fn connected(&self, user: Uuid) {
        match self.lease(user).await {
            Ok((added, live)) if added == 1 && live == 1 => {
                let payload = json!({
                    "user_id": user,
                    "is_online": true,
                    "last_seen_at": chrono::Utc::now().timestamp_millis(),
                });
                self.announce(
                    user,
                    Event::new(kinds::USER_ONLINE, payload, None, Some(user)),
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, %user, "presence update failed"),
        }
    }

    /// Another connection or a pong: renew the lease and the online key.
    pub async fn refresh(&self, user: Uuid) {
        if let Err(e) = self.lease(user).await {
            tracing::warn!(error = %e, %user, "presence refresh failed");
        }
    }

    /// Last local connection of `user` closed.
    pub async fn disconnected(&self, user: Uuid) {
        let (zkey, okey) = self.keys(user);
        let now = chrono::Utc::now().timestamp_millis();
        let mut c = self.redis.conn();
        let left: redis::RedisResult<i64> = redis::Script::new(LEAVE)
            .key(zkey)
            .key(okey)
            .arg(&*self.instance_id)
            .arg(now)
            .invoke_async(&mut c)
            .await;
        match left {
            Ok(0) => {
                if let Err(e) = sqlx::query("UPDATE users SET last_seen_at = now() WHERE id = $1")
                    .bind(user)
                    .execute(&self.db)
                    .await
                {
                    tracing::error!(error = %e, %user, "Failed to update user last_seen_at in DB");
                }
                let payload = json!({
                    "user_id": user,
                    "is_online": false,
                    "last_seen_at": now,
                });
                self.announce(
                    user,
                    Event::new(kinds::USER_OFFLINE, payload, None, Some(user)),
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, %user, "presence update failed"),
        }
    }

    async fn lease(&self, user: Uuid) -> redis::RedisResult<(i64, i64)> {
        let (zkey, okey) = self.keys(user);
        let mut c = self.redis.conn();
        redis::Script::new(JOIN)
            .key(zkey)
            .key(okey)
            .arg(&*self.instance_id)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(ONLINE_TTL_SECS * 1000)
            .invoke_async(&mut c)
            .await
    }

    async fn announce(&self, user: Uuid, event: Event) {
        match recipients::unblocked_contacts(&self.db, user).await {
            Ok(contacts) => self.bus.to_users(&contacts, &event).await,
            Err(e) => tracing::error!(error = %e, %user, "contact lookup failed"),
        }
    }

    /// Whether `user` is online anywhere.
    pub async fn is_online(&self, user: Uuid) -> bool {
        let mut c = self.redis.conn();
        redis::cmd("EXISTS")
            .arg(self.redis.key(&format!("online:{user}")))
            .query_async::<bool>(&mut c)
            .await
            .unwrap_or(false)
    }
}
