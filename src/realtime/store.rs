//! The resume store: one Redis Stream per user holding the events that
//! user's sockets were sent, plus a small meta hash (epoch + counter), both
//! under the hash tag `{u:<uuid>}` so a user's keys share one Redis Cluster
//! slot. Every Redis command of the store is in this module; it runs on the
//! main Redis (a node, or the `REDIS_CLUSTER_NODES` cluster) or, with only
//! `RESUME_REDIS_CLUSTER_NODES`, on a Redis Cluster of its own.
//!
//! - `<prefix>rt:{u:<id>}:m` hash: `e` epoch (made when the hash is created
//!   or the stream was found missing), `n` last event number.
//! - `<prefix>rt:{u:<id>}:s` stream: entry id `<n>-<unix ms>`, fields
//!   `d` (event JSON, `meta.unread_count` 0, no `meta.seq`) and `u` (unread).
//!
//! `n` is dense (1, 2, 3, ... per epoch), so a socket sees a gap in what
//! reaches it live and fills it from here; the ms half of the id drives the
//! time part of the retention and lets a position prove it names the entry
//! it was made for (a failover that lost writes reuses `n` with other ms).
//! A position (`meta.seq`) is `<epoch>.<n>-<ms>`; clients treat it as opaque.

use std::fmt;
use std::sync::Arc;

use redis::{Cmd, Script, Value};
use uuid::Uuid;

use crate::config::ResumeConfig;
use crate::infra::redis::{CountErrors, Redis, RedisConn as Conn};

/// Appends events for many users; keys are (meta, stream) pairs.
/// ARGV: retention ms, min events, ttl ms, body count K, K bodies, then per
/// user (body index, unread). Returns epoch, id per user. Trims every 8th
/// event and refreshes TTLs once 1/16 of them has run down (fewer commands
/// per user: see the script).
const APPEND: &str = include_str!("lua/append.lua");

/// Entries after event `ARGV[2]` up to `ARGV[4]` (`+` = the end), at most
/// `ARGV[5]`, when the epoch is `ARGV[1]` (empty: any) and, if `ARGV[3]` is
/// an id, that exact entry is still kept.
const RANGE: &str = include_str!("lua/range.lua");

/// The newest position of a user, if any.
const HEAD: &str = include_str!("lua/head.lua");

/// Users per append script call: bounds how long one call blocks Redis.
const APPEND_CHUNK: usize = 128;
/// Entries per range read (a replay pages through them).
pub const PAGE: usize = 256;
/// Longest `since` accepted.
const MAX_POSITION_LEN: usize = 64;

/// A resume position: the epoch of the user's store, the event number and
/// the ms half of its stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub epoch: u64,
    pub n: u64,
    pub ms: u64,
}

impl Pos {
    fn from_parts(epoch: &str, id: &str) -> Option<Self> {
        let (n, ms) = id.split_once('-')?;
        Some(Self {
            epoch: parse_digits(epoch)?,
            n: parse_digits(n)?,
            ms: parse_digits(ms)?,
        })
    }

    /// Parses a client's `since` (None when it is not one of ours).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > MAX_POSITION_LEN {
            return None;
        }
        let (epoch, id) = s.split_once('.')?;
        Self::from_parts(epoch, id).filter(|p| p.n > 0)
    }

    fn id(&self) -> String {
        format!("{}-{}", self.n, self.ms)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}-{}", self.epoch, self.n, self.ms)
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One stored event: its position, its JSON (no seq) and its unread counter.
#[derive(Debug, Clone)]
pub struct Stored {
    pub pos: Pos,
    pub json: String,
    pub unread: i64,
}

/// What a range read found.
#[derive(Debug)]
pub enum Range {
    /// Entries in order (possibly none).
    Entries(Vec<Stored>),
    /// The store has another epoch than asked for (flushed, lost, expired).
    EpochChanged,
    /// The position's entry is no longer kept.
    Expired,
}

/// One user's part of an append: which body, which unread counter.
pub struct Target {
    pub user: Uuid,
    pub body: usize,
    pub unread: i64,
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    conn: Conn,
    prefix: String,
    cfg: Arc<ResumeConfig>,
    scripts: Arc<[Script; 3]>,
}

impl EventStore {
    /// The store on the main Redis, or on the configured cluster.
    pub async fn connect(redis: &Redis, cfg: ResumeConfig) -> anyhow::Result<Self> {
        // REDIS_CLUSTER_NODES puts everything, the store too, on one
        // cluster; RESUME_REDIS_CLUSTER_NODES alone gives the store its own.
        let conn = if cfg.cluster_nodes.is_empty() || redis.is_cluster() {
            if !cfg.cluster_nodes.is_empty() {
                tracing::warn!("RESUME_REDIS_CLUSTER_NODES ignored: REDIS_CLUSTER_NODES puts the store on that cluster");
            }
            redis.conn()
        } else {
            let client = redis::cluster::ClusterClient::builder(cfg.cluster_nodes.clone())
                .connection_timeout(std::time::Duration::from_secs(2))
                .response_timeout(std::time::Duration::from_secs(2))
                .build()?;
            Conn::Cluster(
                crate::infra::redis::cluster_connection(&client, &cfg.cluster_nodes).await?,
            )
        };
        Ok(Self {
            conn,
            prefix: redis.key(""),
            cfg: Arc::new(cfg),
            scripts: Arc::new([Script::new(APPEND), Script::new(RANGE), Script::new(HEAD)]),
        })
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn keys(&self, user: Uuid) -> (String, String) {
        let tag = format!("{}rt:{{u:{user}}}", self.prefix);
        (format!("{tag}:m"), format!("{tag}:s"))
    }

    /// Stores one event per target in one round trip; the result has one
    /// position per target (None for all of them when Redis failed).
    pub async fn append(&self, bodies: &[&str], targets: &[Target]) -> Vec<Option<Pos>> {
        if !self.cfg.enabled || targets.is_empty() {
            return vec![None; targets.len()];
        }
        // One script call per chunk of users. On a cluster a call may only
        // touch one slot, so each user is its own call there.
        let chunk = match self.conn {
            Conn::Single(_) => APPEND_CHUNK,
            Conn::Cluster(_) => 1,
        };
        let cmds: Vec<Cmd> = targets
            .chunks(chunk)
            .map(|c| self.append_cmd(bodies, c))
            .collect();
        let mut res = self.run_all(&cmds).await;
        if matches!(&res, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
            // Redis restarted (or SCRIPT FLUSH): load once, retry once.
            let mut conn = self.conn.clone();
            if let Err(e) = self.scripts[0].prepare_invoke().load_async(&mut conn).await {
                tracing::error!(error = %e, "event store script load failed");
            }
            res = self.run_all(&cmds).await;
        }
        match res {
            Ok(chunks) => {
                let flat: Vec<String> = chunks.into_iter().flatten().collect();
                let mut out: Vec<Option<Pos>> = flat
                    .chunks(2)
                    .map(|p| Pos::from_parts(&p[0], p.get(1).map_or("", String::as_str)))
                    .collect();
                out.resize(targets.len(), None);
                out
            }
            Err(e) => {
                tracing::error!(error = %e, "event store append failed; events go out without meta.seq");
                vec![None; targets.len()]
            }
        }
    }

    /// The append script call for one chunk of users.
    fn append_cmd(&self, bodies: &[&str], chunk: &[Target]) -> Cmd {
        // Only the bodies this chunk uses, renumbered from 1.
        let mut used: Vec<usize> = chunk.iter().map(|t| t.body).collect();
        used.sort_unstable();
        used.dedup();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts[0].get_hash()).arg(chunk.len() * 2);
        for t in chunk {
            let (m, s) = self.keys(t.user);
            cmd.arg(m).arg(s);
        }
        cmd.arg(self.cfg.retention.as_millis() as u64)
            .arg(self.cfg.min_events)
            .arg(self.cfg.idle_ttl.as_millis() as u64)
            .arg(used.len());
        for b in &used {
            cmd.arg(bodies.get(*b).copied().unwrap_or("{}"));
        }
        for t in chunk {
            let idx = used.binary_search(&t.body).unwrap_or(0) + 1;
            cmd.arg(idx).arg(t.unread);
        }
        cmd
    }

    /// Runs the calls in one round trip: a pipeline on one node; on a
    /// cluster, concurrent requests that the client routes to their slots.
    async fn run_all(&self, cmds: &[Cmd]) -> redis::RedisResult<Vec<Vec<String>>> {
        match &self.conn {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone());
                }
                pipe.query_async(&mut c.clone()).await.counted("resume")
            }
            Conn::Cluster(c) => futures::future::try_join_all(cmds.iter().map(|cmd| {
                let mut c = c.clone();
                async move { cmd.query_async::<Vec<String>>(&mut c).await }
            }))
            .await
            .counted("resume"),
        }
    }

    /// Drops a user's store (their positions then get `sync.reset`).
    pub async fn forget(&self, user: Uuid) -> redis::RedisResult<()> {
        let (m, s) = self.keys(user);
        redis::cmd("DEL")
            .arg(m)
            .arg(s)
            .query_async(&mut self.conn.clone())
            .await
            .counted("resume")
    }

    /// Entries after event `after` (exclusive) up to `upto` (inclusive;
    /// None = the end), at most [`PAGE`]. `epoch` None accepts any epoch;
    /// `exact` asks that this position's own entry still be kept.
    pub async fn range(
        &self,
        user: Uuid,
        epoch: Option<u64>,
        after: u64,
        upto: Option<u64>,
        exact: Option<Pos>,
    ) -> redis::RedisResult<Range> {
        let (m, s) = self.keys(user);
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = self.scripts[1]
            .key(m)
            .key(s)
            .arg(epoch.map(|e| e.to_string()).unwrap_or_default())
            .arg(after)
            .arg(exact.map(|p| p.id()).unwrap_or_default())
            .arg(upto.map_or_else(|| "+".to_string(), |u| u.to_string()))
            .arg(PAGE)
            .invoke_async(&mut conn)
            .await
            .counted("resume")?;
        let status: String = reply
            .first()
            .map(redis::from_redis_value)
            .transpose()?
            .unwrap_or_default();
        match status.as_str() {
            "reset" => Ok(Range::EpochChanged),
            "expired" => Ok(Range::Expired),
            _ => {
                let epoch: String = reply
                    .get(1)
                    .map(redis::from_redis_value)
                    .transpose()?
                    .unwrap_or_default();
                let rows: Vec<(String, Vec<String>)> = reply
                    .get(2)
                    .map(redis::from_redis_value)
                    .transpose()?
                    .unwrap_or_default();
                Ok(Range::Entries(
                    rows.into_iter()
                        .filter_map(|(id, fields)| decode(&epoch, &id, fields))
                        .collect(),
                ))
            }
        }
    }

    /// The user's newest position (None: nothing stored).
    pub async fn head(&self, user: Uuid) -> redis::RedisResult<Option<Pos>> {
        let (m, s) = self.keys(user);
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self.scripts[2]
            .key(m)
            .key(s)
            .invoke_async(&mut conn)
            .await
            .counted("resume")?;
        Ok(match reply.as_slice() {
            [epoch, id] => Pos::from_parts(epoch, id),
            _ => None,
        })
    }
}

fn decode(epoch: &str, id: &str, fields: Vec<String>) -> Option<Stored> {
    let pos = Pos::from_parts(epoch, id)?;
    let (mut json, mut unread) = (None, 0);
    let mut it = fields.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match k.as_str() {
            "d" => json = Some(v),
            "u" => unread = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(Stored {
        pos,
        json: json?,
        unread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_reject_garbage() {
        let p = Pos {
            epoch: 1767400000123456,
            n: 42,
            ms: 1767400000999,
        };
        assert_eq!(Pos::parse(&p.to_string()), Some(p));
        for bad in [
            "",
            "x",
            "1.2",
            "1.0-5",
            "1.-5",
            ".1-2",
            "1.2-",
            "1.2-3-4",
            "-1.2-3",
            "1.+2-3",
            "99999999999999999999999.1-1",
            &"9".repeat(70),
        ] {
            assert_eq!(Pos::parse(bad), None, "{bad}");
        }
    }
}
