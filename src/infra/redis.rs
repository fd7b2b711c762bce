//! Redis: a multiplexed, self-reconnecting connection for commands plus a
//! dedicated pub/sub connection for the event bus. Every key and channel is
//! prefixed with `REDIS_KEY_PREFIX`, so deployments (and tests) can share one
//! server without seeing each other.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::config::Config;

/// A Redis failure surfaced to the HTTP layer as 503.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct RedisUnavailable(pub redis::RedisError);

/// Every `?` on a command result passes here: the one place Redis command
/// errors are counted for the metrics.
impl From<redis::RedisError> for RedisUnavailable {
    fn from(e: redis::RedisError) -> Self {
        crate::infra::metrics::redis_error("request");
        Self(e)
    }
}

/// For paths that handle a failed command themselves (log it, degrade,
/// retry) instead of turning it into [`RedisUnavailable`] with `?`:
/// presence, typing, the resume store, the replica's write marks. Without
/// this their errors would never reach `redis_command_errors_total`.
/// Never combine with a `?` into `RedisUnavailable` (that counts again).
pub trait CountErrors {
    fn counted(self, path: &'static str) -> Self;
}

impl<T> CountErrors for redis::RedisResult<T> {
    fn counted(self, path: &'static str) -> Self {
        if self.is_err() {
            crate::infra::metrics::redis_error(path);
        }
        self
    }
}

/// Shared handle to Redis. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl Redis {
    /// Connects (and pings) within a few seconds, or explains what to check.
    pub async fn connect(cfg: &Config) -> anyhow::Result<Self> {
        let client = redis::Client::open(cfg.redis_connection_info())?;
        let manager_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let fail = |e: redis::RedisError| {
            anyhow::anyhow!(
                "cannot connect to Redis at {}:{}: {e}; start Redis or set REDIS_HOST/REDIS_PORT/REDIS_PASSWORD",
                cfg.redis_host,
                cfg.redis_port
            )
        };
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), manager_cfg),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "timed out connecting to Redis at {}:{}; start Redis or set REDIS_HOST/REDIS_PORT",
                cfg.redis_host,
                cfg.redis_port
            )
        })?
        .map_err(fail)?;
        let redis = Self {
            client,
            conn,
            prefix: cfg.redis_key_prefix.clone(),
        };
        redis.ping().await.map_err(|e| fail(e.0))?;
        Ok(redis)
    }

    /// The full key for a logical key name.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// A connection for commands (multiplexed; clone freely).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A fresh dedicated pub/sub connection.
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        self.client.get_async_pubsub().await
    }

    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        let mut c = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}
