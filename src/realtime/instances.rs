//! Instance leases: every API instance renews `instances` (sorted set,
//! member = its presence instance id, score = lease expiry in ms) and
//! `instance:<id>` (its socket count and start time) every 15 s, so an
//! operator (`atoitalk status`) sees which instances are alive and how many
//! sockets each holds. A crashed instance's lease runs out like its
//! presence leases do; a stopping one removes its own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Hub;
use crate::infra::redis::Redis;

/// Renewal period and lease length.
const RENEW_EVERY: Duration = Duration::from_secs(15);
const LEASE_MS: i64 = 45_000;

/// One live instance.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub id: String,
    pub sockets: u64,
    /// Unix seconds.
    pub started_at: i64,
    /// Milliseconds until the lease runs out.
    pub expires_in_ms: i64,
}

/// Renews this instance's lease until `stop`, then drops it.
pub fn spawn_lease(redis: Redis, hub: Arc<Hub>, id: String, mut stop: watch::Receiver<bool>) {
    let started_at = chrono::Utc::now().timestamp();
    tokio::spawn(async move {
        loop {
            renew(&redis, &id, hub.connection_count() as u64, started_at).await;
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = stop.changed() => break,
            }
        }
        let mut c = redis.conn();
        let _: redis::RedisResult<()> = redis::pipe()
            .cmd("ZREM")
            .arg(redis.key("instances"))
            .arg(&id)
            .ignore()
            .cmd("DEL")
            .arg(redis.key(&format!("instance:{id}")))
            .ignore()
            .query_async(&mut c)
            .await;
    });
}

async fn renew(redis: &Redis, id: &str, sockets: u64, started_at: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    let info = redis.key(&format!("instance:{id}"));
    let mut c = redis.conn();
    let res: redis::RedisResult<()> = redis::pipe()
        .cmd("ZREMRANGEBYSCORE")
        .arg(redis.key("instances"))
        .arg("-inf")
        .arg(now)
        .ignore()
        .cmd("ZADD")
        .arg(redis.key("instances"))
        .arg(now + LEASE_MS)
        .arg(id)
        .ignore()
        .cmd("HSET")
        .arg(&info)
        .arg("sockets")
        .arg(sockets)
        .arg("started_at")
        .arg(started_at)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&info)
        .arg(LEASE_MS)
        .ignore()
        .query_async(&mut c)
        .await;
    if let Err(e) = res {
        crate::infra::metrics::redis_error("instances");
        tracing::warn!(error = %e, "instance lease renewal failed");
    }
}

/// The instances whose lease has not run out, oldest first.
pub async fn alive(redis: &Redis) -> redis::RedisResult<Vec<InstanceInfo>> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut c = redis.conn();
    let leases: Vec<(String, i64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(redis.key("instances"))
        .arg(now)
        .arg("+inf")
        .arg("WITHSCORES")
        .query_async(&mut c)
        .await?;
    let mut out = Vec::with_capacity(leases.len());
    for (id, expiry) in leases {
        let (sockets, started_at): (Option<u64>, Option<i64>) = redis::cmd("HMGET")
            .arg(redis.key(&format!("instance:{id}")))
            .arg("sockets")
            .arg("started_at")
            .query_async(&mut c)
            .await?;
        out.push(InstanceInfo {
            id,
            sockets: sockets.unwrap_or(0),
            started_at: started_at.unwrap_or(0),
            expires_in_ms: expiry - now,
        });
    }
    out.sort_by_key(|i| i.started_at);
    Ok(out)
}
