//! Per-user socket slots: the cap on sockets one user holds across every
//! instance (`WS_MAX_CONNECTIONS_PER_USER`).

use uuid::Uuid;

use super::{scripts, Presence, ONLINE_TTL_SECS};
use crate::infra::redis::{CountErrors, Redis};

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
            .await
            .counted("presence");
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
                    .await
                    .counted("presence");
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
        let taken: i64 = redis::Script::new(scripts::RESERVE_SOCKET)
            .key(&key)
            .arg(&member)
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(ONLINE_TTL_SECS * 1000)
            .arg(max)
            .invoke_async(&mut c)
            .await
            .counted("presence")?;
        Ok((taken == 1).then(|| SocketSlot {
            redis: self.redis.clone(),
            key,
            member,
        }))
    }
}
