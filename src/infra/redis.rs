//! Redis: one Redis node (a multiplexed, self-reconnecting connection plus a
//! dedicated pub/sub connection for the event bus) or, with
//! `REDIS_CLUSTER_NODES`, a Redis Cluster (the `redis` crate's cluster
//! client, which follows MOVED/ASK and a master's failover). Every key and
//! channel is prefixed with `REDIS_KEY_PREFIX`, so deployments (and tests)
//! can share one server without seeing each other.
//!
//! On a cluster a script or MULTI may only touch keys of one slot: such keys
//! share a hash tag (see [`Redis::tag`]). A plain pipeline may span slots:
//! [`RedisConn`] sends it as one sub-pipeline per slot, concurrently, so
//! commands on one key keep their order.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

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

/// A command connection: one node or the cluster. Clone freely.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            // offset 0 = a plain pipeline (a MULTI one has offset len + 1).
            Self::Cluster(c) if offset == 0 => Box::pin(split_pipeline(c.clone(), cmd)),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The slot a command's key is in (None: no key, or several slots).
fn slot_of(cmd: &Cmd) -> Option<u16> {
    let Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(_))) =
        RoutingInfo::for_routable(cmd)
    else {
        return None;
    };
    let mut args = cmd.args_iter();
    let name = match args.next()? {
        redis::Arg::Simple(n) => n.to_ascii_uppercase(),
        redis::Arg::Cursor => return None,
    };
    // EVAL/EVALSHA: script, numkeys, then the keys.
    let key_at = if name == b"EVAL" || name == b"EVALSHA" {
        2
    } else {
        0
    };
    match args.nth(key_at)? {
        redis::Arg::Simple(k) => Some(redis::cluster_routing::get_slot(k)),
        redis::Arg::Cursor => None,
    }
}

/// Runs a plain pipeline on a cluster: one sub-pipeline per slot, all at
/// once; commands without one slot go alone (the client splits those).
async fn split_pipeline(
    mut c: ClusterConnection,
    pipe: &Pipeline,
) -> redis::RedisResult<Vec<Value>> {
    let mut groups: HashMap<Option<u16>, Vec<usize>> = HashMap::new();
    let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
    for (i, cmd) in cmds.iter().enumerate() {
        groups.entry(slot_of(cmd)).or_default().push(i);
    }
    if groups.len() == 1 && !groups.contains_key(&None) {
        return c.req_packed_commands(pipe, 0, cmds.len()).await;
    }
    let mut calls: Vec<Vec<usize>> = Vec::new();
    for (slot, idx) in groups {
        match slot {
            Some(_) => calls.push(idx),
            None => calls.extend(idx.into_iter().map(|i| vec![i])),
        }
    }
    let results = futures::future::try_join_all(calls.iter().map(|idx| {
        let mut c = c.clone();
        let mut sub = redis::pipe();
        for i in idx {
            sub.add_command(cmds[*i].clone());
        }
        async move { c.req_packed_commands(&sub, 0, idx.len()).await }
    }))
    .await?;
    let mut out = vec![Value::Nil; cmds.len()];
    for (idx, values) in calls.iter().zip(results) {
        for (i, v) in idx.iter().zip(values) {
            out[*i] = v;
        }
    }
    Ok(out)
}

/// A cluster's state as one of its nodes sees it.
#[derive(Debug, Clone, Copy)]
pub struct ClusterHealth {
    /// `cluster_state:ok`: every slot is served.
    pub ok: bool,
    /// Masters serving slots (`cluster_size`).
    pub masters: u64,
}

/// Where the event bus subscribes.
#[derive(Clone)]
enum Backend {
    Single(redis::Client),
    Cluster(Seeds),
}

/// What a cluster client is made from.
#[derive(Clone)]
struct Seeds {
    nodes: Vec<String>,
    password: String,
}

impl Seeds {
    /// A client of these seeds (RESP3 with push messages for a subscriber).
    fn client(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> redis::RedisResult<ClusterClient> {
        let mut b = ClusterClient::builder(self.nodes.clone())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2));
        if !self.password.is_empty() {
            b = b.password(self.password.clone());
        }
        if let Some(tx) = push {
            b = b
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx);
        }
        b.build()
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
        // NOSCRIPT is expected after a restart, a failover or on a fresh
        // cluster node: every EVALSHA caller loads the script and retries,
        // and a failed retry is counted then.
        if matches!(&self, Err(e) if e.kind() != redis::ErrorKind::NoScriptError) {
            crate::infra::metrics::redis_error(path);
        }
        self
    }
}

/// Shared handle to Redis. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    backend: Backend,
    conn: RedisConn,
    prefix: String,
}

impl Redis {
    /// Connects (and pings) within a few seconds, or explains what to check.
    pub async fn connect(cfg: &Config) -> anyhow::Result<Self> {
        let redis = if cfg.redis_cluster_nodes.is_empty() {
            Self::connect_single(cfg).await?
        } else {
            Self::connect_cluster(cfg).await?
        };
        redis.ping().await.map_err(|e| redis.explain(cfg, e.0))?;
        Ok(redis)
    }

    fn explain(&self, cfg: &Config, e: redis::RedisError) -> anyhow::Error {
        match self.backend {
            Backend::Single(_) => anyhow::anyhow!(
                "cannot connect to Redis at {}:{}: {e}; start Redis or set REDIS_HOST/REDIS_PORT/REDIS_PASSWORD",
                cfg.redis_host,
                cfg.redis_port
            ),
            Backend::Cluster(_) => anyhow::anyhow!(
                "cannot reach the Redis Cluster at REDIS_CLUSTER_NODES={}: {e}",
                cfg.redis_cluster_nodes.join(",")
            ),
        }
    }

    async fn connect_single(cfg: &Config) -> anyhow::Result<Self> {
        let client = redis::Client::open(cfg.redis_connection_info())?;
        let manager_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2)
            .set_max_delay(1000);
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
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to Redis at {}:{}: {e}; start Redis or set REDIS_HOST/REDIS_PORT/REDIS_PASSWORD",
                cfg.redis_host,
                cfg.redis_port
            )
        })?;
        Ok(Self {
            backend: Backend::Single(client),
            conn: RedisConn::Single(conn),
            prefix: cfg.redis_key_prefix.clone(),
        })
    }

    async fn connect_cluster(cfg: &Config) -> anyhow::Result<Self> {
        let seeds = Seeds {
            nodes: cfg.redis_cluster_nodes.clone(),
            password: cfg.redis_password.clone(),
        };
        let conn = cluster_connection(&seeds.client(None)?, &seeds.nodes).await?;
        Ok(Self {
            backend: Backend::Cluster(seeds),
            conn: RedisConn::Cluster(conn),
            prefix: cfg.redis_key_prefix.clone(),
        })
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// The full key for a logical key name.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// `{tag}` on a cluster (keys with it share a slot), "" on one node, so
    /// single-node key names stay what they always were.
    pub fn tag(&self, tag: &str) -> String {
        if self.is_cluster() {
            format!("{{{tag}}}")
        } else {
            String::new()
        }
    }

    /// A connection for commands (multiplexed; clone freely).
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// A fresh dedicated pub/sub connection (one node only; on a cluster
    /// the bus uses [`Redis::cluster_subscriber`]).
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        match &self.backend {
            Backend::Single(c) => c.get_async_pubsub().await,
            Backend::Cluster(_) => Err((
                redis::ErrorKind::ClientError,
                "pub/sub on a cluster goes through cluster_subscriber",
            )
                .into()),
        }
    }

    /// A fresh RESP3 cluster connection whose push messages (sharded
    /// pub/sub messages, `sunsubscribe`, disconnections) go to `tx`.
    pub async fn cluster_subscriber(
        &self,
        tx: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> redis::RedisResult<ClusterConnection> {
        match &self.backend {
            Backend::Cluster(seeds) => seeds.client(Some(tx))?.get_async_connection().await,
            Backend::Single(_) => Err((redis::ErrorKind::ClientError, "not a cluster").into()),
        }
    }

    /// On a cluster, what `CLUSTER INFO` of one node says (None: one node).
    pub async fn cluster_health(&self) -> Result<Option<ClusterHealth>, RedisUnavailable> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut self.conn())
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("")
                .to_string()
        };
        Ok(Some(ClusterHealth {
            ok: field("cluster_state") == "ok",
            masters: field("cluster_size").parse().unwrap_or(0),
        }))
    }

    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        let mut c = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}

/// Connects to the cluster within a few seconds, or explains what to check.
pub async fn cluster_connection(
    client: &ClusterClient,
    seeds: &[String],
) -> anyhow::Result<ClusterConnection> {
    tokio::time::timeout(Duration::from_secs(5), client.get_async_connection())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "timed out connecting to the Redis Cluster at {}",
                seeds.join(",")
            )
        })?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the Redis Cluster at {}: {e}",
                seeds.join(",")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::get_slot;

    #[test]
    fn commands_are_grouped_by_the_slot_of_their_key() {
        let mut get = redis::cmd("GET");
        get.arg("p:rt:{u:1}:m");
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("abc")
            .arg(2)
            .arg("p:rt:{u:1}:s")
            .arg("p:rt:{u:1}:m");
        assert_eq!(slot_of(&get), Some(get_slot(b"u:1")));
        assert_eq!(slot_of(&eval), slot_of(&get));
        let mut other = redis::cmd("SET");
        other.arg("online:x").arg(1);
        assert_eq!(slot_of(&other), Some(get_slot(b"online:x")));
        // No key, or keys in several slots: sent alone.
        assert_eq!(slot_of(&redis::cmd("PING")), None);
        let mut mget = redis::cmd("MGET");
        mget.arg("a").arg("b");
        assert_ne!(get_slot(b"a"), get_slot(b"b"));
        assert_eq!(slot_of(&mget), None);
    }
}
