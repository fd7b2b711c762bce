//! The resume store: one Redis Stream per user holding the events that
//! user's sockets were sent, under the hash tag `{u:<uuid>}` so it sits in
//! one Redis Cluster slot. Every Redis command of the store is in this
//! module; it runs on the main Redis (a node, or the `REDIS_CLUSTER_NODES`
//! cluster) or, with only `RESUME_REDIS_CLUSTER_NODES`, on a Redis Cluster
//! of its own.
//!
//! - `<prefix>rt:{u:<id>}:e` stream: entry id `1-<n>`, fields `d` (event
//!   JSON, `meta.unread_count` 0, no `meta.seq`) or, for an event with
//!   many recipients, `r` (the id of its body, stored once: [`shared`]),
//!   `u` (unread) and `t` (the publisher's clock in ms when it was written).
//! - `<prefix>rt:b:<id>` string: a shared body.
//!
//! Redis numbers the entries itself: `XADD <key> 1-*` gives the next `n`
//! after the stream's last one, so an append is one plain command per user
//! in one pipeline, no script, no counter key, plus a `PEXPIRE` when this
//! instance has not refreshed that stream's expiry for a minute (1 % of
//! the TTL; [`ttl`]). The script this replaced (counter hash + stream,
//! four calls inside Lua) cost Redis about three times as much per member
//! (bench/README, ninth session).
//!
//! `n` is dense within a stream, so a socket sees a gap in what reaches it
//! live and fills it from here. A stream that has to be created (first
//! event, or the old one expired, was evicted or flushed) starts at its
//! creation ms × 1000 (`lua/create.lua`), above anything the user had, so a
//! lost store shows as a gap that cannot be filled, never as old numbers.
//! A position (`meta.seq`) is `1.<n>-<t>`; the `t` half lets it prove that
//! it names the entry it was made for (a failover that lost writes reuses
//! `n` with another `t`). Clients treat it as opaque.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::{Cmd, Script, Value};
use uuid::Uuid;

use crate::config::ResumeConfig;
use crate::infra::redis::{CountErrors, Redis, RedisConn as Conn};

mod shared;
mod ttl;

use shared::{Body, Raw};

/// A user's first entry, or the first after their stream was lost.
/// KEYS[1] stream; ARGV body, unread, write ms, ttl ms, body field;
/// returns the id.
const CREATE: &str = include_str!("lua/create.lua");

/// Entries from `ARGV[3]` to `ARGV[4]` (`+` = the end), at most `ARGV[5]`,
/// if the position `ARGV[1]`/`ARGV[2]` (none: '') is still kept.
const RANGE: &str = include_str!("lua/range.lua");

/// Drops what both retention rules let go, for each stream in KEYS.
const TRIM: &str = include_str!("lua/trim.lua");

/// The ms half of every entry id (`1-<n>`): one fixed value, so that
/// `XADD <key> 1-*` numbers a stream's entries 1 apart. Positions of the
/// earlier layout (`<epoch>.<n>-<ms>` with a time-made epoch) name another
/// value here and get `sync.reset` `store_reset`.
pub const GEN: u64 = 1;
/// `XADD`'s "next number after the last" id under [`GEN`].
const NEXT_ID: &str = "1-*";
/// Streams per trim script call: bounds how long one call blocks Redis.
const TRIM_CHUNK: usize = 128;
/// Entries per range read (a replay pages through them).
pub const PAGE: usize = 256;
/// Longest `since` accepted.
const MAX_POSITION_LEN: usize = 64;

/// A resume position: the ms half of the entry id ([`GEN`] for every
/// position this layout makes), the event number and the write ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub generation: u64,
    pub n: u64,
    pub ms: u64,
}

impl Pos {
    fn from_parts(generation: &str, id: &str) -> Option<Self> {
        let (n, ms) = id.split_once('-')?;
        Some(Self {
            generation: parse_digits(generation)?,
            n: parse_digits(n)?,
            ms: parse_digits(ms)?,
        })
    }

    /// Parses a client's `since` (None when it is not one of ours).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > MAX_POSITION_LEN {
            return None;
        }
        let (generation, id) = s.split_once('.')?;
        Self::from_parts(generation, id).filter(|p| p.n > 0)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}-{}", self.generation, self.n, self.ms)
    }
}

/// `user`'s turn among every `every` numbers (its UUID's random low half).
fn trim_turn(user: Uuid, n: u64, every: u64) -> bool {
    n % every == user.as_u64_pair().1 % every
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
    /// The position's stream is gone or began after it (flushed, lost,
    /// expired), or the position is of the earlier layout.
    Reset,
    /// The position's entry is no longer kept.
    Expired,
}

/// One user's part of an append: which body, which unread counter.
pub struct Target {
    pub user: Uuid,
    pub body: usize,
    pub unread: i64,
}

/// What an append stored: one position per target (None where it failed)
/// and the users whose streams are due a trim ([`EventStore::trim`]).
pub struct Appended {
    pub positions: Vec<Option<Pos>>,
    pub due: Vec<Uuid>,
}

/// Each user's commands, packed for the connection ([`EventStore::pipes`]).
enum Pipes {
    One(redis::Pipeline),
    PerUser(Vec<redis::Pipeline>),
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    conn: Conn,
    prefix: String,
    cfg: Arc<ResumeConfig>,
    scripts: Arc<[Script; 3]>,
    refreshed: Arc<ttl::Refreshed>,
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
        if cfg.enabled {
            check_version(&conn).await?;
        }
        Ok(Self {
            conn,
            prefix: redis.key(""),
            refreshed: Arc::new(ttl::Refreshed::new(cfg.idle_ttl)),
            cfg: Arc::new(cfg),
            scripts: Arc::new([Script::new(CREATE), Script::new(RANGE), Script::new(TRIM)]),
        })
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn key(&self, user: Uuid) -> String {
        format!("{}rt:{{u:{user}}}:e", self.prefix)
    }

    /// A stream is trimmed once per this many numbers: every event for a
    /// tiny `min_events`, every 64th for the default 1,000, so the trim's
    /// reads cost a fraction of a command per append.
    fn trim_every(&self) -> u64 {
        (self.cfg.min_events / 8).clamp(1, 64)
    }

    /// Whether `user`'s append numbered `n` is its stream's turn to be
    /// trimmed. The turn is offset per user: the members of one group
    /// get their events in step, and a plain `n % every` made all 10,000
    /// of a big group's streams due on the same message (a burst of trim
    /// calls every 64th message instead of a 64th of them on each).
    fn trim_due(&self, user: Uuid, n: u64) -> bool {
        trim_turn(user, n, self.trim_every())
    }

    /// Stores one event per target in one round trip (a second one for
    /// users whose stream must be created; on a cluster, one before it for
    /// the shared bodies).
    pub async fn append(&self, bodies: &[&str], targets: &[Target]) -> Appended {
        let none = || Appended {
            positions: vec![None; targets.len()],
            due: Vec::new(),
        };
        if !self.cfg.enabled || targets.is_empty() {
            return none();
        }
        let written = now_ms();
        let sent_at = std::time::Instant::now();
        let refresh = self.refreshed.due(targets.iter().map(|t| &t.user), sent_at);
        let plan = shared::plan(bodies.len(), targets);
        let held = Held::new(bodies, &plan);
        let cmds: Vec<Vec<Cmd>> = targets
            .iter()
            .zip(&refresh)
            .map(|(t, expire)| self.append_cmds(t.user, held.of(t), t.unread, written, *expire))
            .collect();
        let sets = self.body_sets(bodies, &plan);
        // Every body must be readable before an entry names it: on a node
        // its SET leads the append's pipeline; a cluster puts the keys on
        // other nodes, so the SETs go first in a round trip of their own.
        let lead = match (&self.conn, sets.is_empty()) {
            (Conn::Cluster(_), false) => {
                if let Err(e) = self.run_each(sets).await {
                    tracing::error!(error = %e, "event store could not store a shared body; events go out without meta.seq");
                    return none();
                }
                Vec::new()
            }
            _ => sets,
        };
        let ids = match self.run(&self.pipes(lead, cmds)).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "event store append failed; events go out without meta.seq");
                return none();
            }
        };
        let mut positions: Vec<Option<Pos>> = ids
            .iter()
            .map(|id| id.as_deref().and_then(|id| entry_pos(id, written)))
            .collect();
        positions.resize(targets.len(), None);
        // NOMKSTREAM answered nil: the stream does not exist (yet).
        let missing: Vec<usize> = (0..targets.len())
            .filter(|&i| ids.get(i).is_some_and(Option::is_none))
            .collect();
        if !missing.is_empty() {
            let created = self.create(&missing, targets, &held, written).await;
            for (i, pos) in missing.into_iter().zip(created) {
                positions[i] = pos;
            }
        }
        // Stored with a refresh: not due again for a while.
        self.refreshed.done(
            targets
                .iter()
                .zip(&refresh)
                .zip(&positions)
                .filter(|((_, refresh), pos)| **refresh && pos.is_some())
                .map(|((t, _), _)| &t.user),
            sent_at,
        );
        let due = targets
            .iter()
            .zip(&positions)
            .filter(|(t, p)| p.is_some_and(|p| self.trim_due(t.user, p.n)))
            .map(|(t, _)| t.user)
            .collect();
        Appended { positions, due }
    }

    /// One user's append: `XADD NOMKSTREAM` (nil if the stream is missing)
    /// and, when its expiry is due a refresh ([`ttl`]), `PEXPIRE` (its
    /// reply ignored).
    fn append_cmds(
        &self,
        user: Uuid,
        (field, body): (&str, &str),
        unread: i64,
        written: u64,
        expire: bool,
    ) -> Vec<Cmd> {
        let key = self.key(user);
        // Sized up front: growing each command's buffer to the body's size
        // was a chain of reallocations per member (10,000 per message).
        let mut xadd = Cmd::with_capacity(10, key.len() + body.len() + 64);
        xadd.arg("XADD")
            .arg(&key)
            .arg("NOMKSTREAM")
            .arg(NEXT_ID)
            .arg(field)
            .arg(body)
            .arg("u")
            .arg(unread)
            .arg("t")
            .arg(written);
        let mut cmds = vec![xadd];
        if expire {
            let mut exp = redis::cmd("PEXPIRE");
            exp.arg(&key).arg(self.cfg.idle_ttl.as_millis() as u64);
            cmds.push(exp);
        }
        cmds
    }

    /// The `SET`s of the bodies `plan` shares.
    fn body_sets(&self, bodies: &[&str], plan: &[Option<String>]) -> Vec<Cmd> {
        let ttl = shared::ttl(&self.cfg).as_millis() as u64;
        plan.iter()
            .zip(bodies)
            .filter_map(|(id, body)| {
                let mut set = redis::cmd("SET");
                set.arg(self.body_key(id.as_deref()?))
                    .arg(*body)
                    .arg("PX")
                    .arg(ttl);
                Some(set)
            })
            .collect()
    }

    fn body_key(&self, id: &str) -> String {
        format!("{}rt:b:{id}", self.prefix)
    }

    /// Creates the missing streams (one script call each; rare).
    async fn create(
        &self,
        missing: &[usize],
        targets: &[Target],
        held: &Held<'_>,
        written: u64,
    ) -> Vec<Option<Pos>> {
        let cmds: Vec<Vec<Cmd>> = missing
            .iter()
            .map(|&i| {
                let t = &targets[i];
                let (field, body) = held.of(t);
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.scripts[0].get_hash())
                    .arg(1)
                    .arg(self.key(t.user))
                    .arg(body)
                    .arg(t.unread)
                    .arg(written)
                    .arg(self.cfg.idle_ttl.as_millis() as u64)
                    .arg(field);
                vec![cmd]
            })
            .collect();
        match self.run_script(0, cmds).await {
            Ok(ids) => ids
                .iter()
                .map(|id| id.as_deref().and_then(|id| entry_pos(id, written)))
                .chain(std::iter::repeat(None))
                .take(missing.len())
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "event store could not create a stream; events go out without meta.seq");
                vec![None; missing.len()]
            }
        }
    }

    /// [`Self::run`] for `EVALSHA` calls of `scripts[script]`: if Redis
    /// lost its scripts (restart, SCRIPT FLUSH), loads it once and retries once.
    async fn run_script(
        &self,
        script: usize,
        cmds: Vec<Vec<Cmd>>,
    ) -> redis::RedisResult<Vec<Option<String>>> {
        let pipes = self.pipes(Vec::new(), cmds);
        let res = self.run(&pipes).await;
        if !matches!(&res, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
            return res;
        }
        let mut conn = self.conn.clone();
        if let Err(e) = self.scripts[script]
            .prepare_invoke()
            .load_async(&mut conn)
            .await
        {
            tracing::error!(error = %e, "event store script load failed");
        }
        self.run(&pipes).await
    }

    /// Packs each user's commands for [`Self::run`]: one pipeline on a
    /// node, after the `lead` commands (replies ignored; a cluster gets
    /// none); on a cluster, one pipeline per user (its keys share a slot).
    /// Only the first reply of each user's commands is kept. The commands
    /// are moved, not copied: an inline body is in every user's command.
    fn pipes(&self, lead: Vec<Cmd>, per_user: Vec<Vec<Cmd>>) -> Pipes {
        let add = |pipe: &mut redis::Pipeline, cmds: Vec<Cmd>| {
            for (i, cmd) in cmds.into_iter().enumerate() {
                pipe.add_command(cmd);
                if i > 0 {
                    pipe.ignore();
                }
            }
        };
        match self.conn {
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                for cmd in lead {
                    pipe.add_command(cmd).ignore();
                }
                for cmds in per_user {
                    add(&mut pipe, cmds);
                }
                Pipes::One(pipe)
            }
            Conn::Cluster(_) => Pipes::PerUser(
                per_user
                    .into_iter()
                    .map(|cmds| {
                        let mut pipe = redis::pipe();
                        add(&mut pipe, cmds);
                        pipe
                    })
                    .collect(),
            ),
        }
    }

    /// Runs [`Self::pipes`] in one round trip (on a cluster concurrently);
    /// one reply per user.
    async fn run(&self, pipes: &Pipes) -> redis::RedisResult<Vec<Option<String>>> {
        match (&self.conn, pipes) {
            (Conn::Cluster(c), Pipes::PerUser(pipes)) => {
                let replies = futures::future::try_join_all(pipes.iter().map(|pipe| {
                    let mut c = c.clone();
                    async move { pipe.query_async::<Vec<Option<String>>>(&mut c).await }
                }))
                .await
                .counted("resume")?;
                Ok(replies
                    .into_iter()
                    .map(|r| r.into_iter().next().flatten())
                    .collect())
            }
            (conn, Pipes::One(pipe)) => pipe.query_async(&mut conn.clone()).await.counted("resume"),
            // Packed by `pipes` for the other kind of connection: cannot happen.
            (Conn::Single(_), Pipes::PerUser(_)) => Ok(Vec::new()),
        }
    }

    /// Runs single-key commands concurrently on the cluster (each to its
    /// slot's node); their replies are ignored.
    async fn run_each(&self, cmds: Vec<Cmd>) -> redis::RedisResult<()> {
        futures::future::try_join_all(cmds.iter().map(|cmd| {
            let mut c = self.conn.clone();
            async move { cmd.query_async::<Value>(&mut c).await }
        }))
        .await
        .counted("resume")?;
        Ok(())
    }

    /// The shared bodies `ids` names that are still kept.
    async fn bodies(&self, ids: &[&str]) -> redis::RedisResult<HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.body_key(id)).collect();
        let found: Vec<Option<String>> = match &self.conn {
            Conn::Single(_) => redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut self.conn.clone())
                .await
                .counted("resume")?,
            // Keys on many slots: one GET each, concurrently.
            Conn::Cluster(_) => futures::future::try_join_all(keys.iter().map(|k| {
                let mut c = self.conn.clone();
                async move { redis::cmd("GET").arg(k).query_async(&mut c).await }
            }))
            .await
            .counted("resume")?,
        };
        Ok(ids
            .iter()
            .zip(found)
            .filter_map(|(id, body)| Some((id.to_string(), body?)))
            .collect())
    }

    /// Trims the streams an append said were due (after the event went
    /// out, so delivery never waits for it).
    pub async fn trim(&self, due: &[Uuid]) {
        if due.is_empty() {
            return;
        }
        // On a cluster a call may only touch one slot: one user per call.
        let chunk = match self.conn {
            Conn::Single(_) => TRIM_CHUNK,
            Conn::Cluster(_) => 1,
        };
        let cmds: Vec<Vec<Cmd>> = due
            .chunks(chunk)
            .map(|users| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.scripts[2].get_hash()).arg(users.len());
                for u in users {
                    cmd.arg(self.key(*u));
                }
                cmd.arg(self.cfg.retention.as_millis() as u64)
                    .arg(self.cfg.min_events)
                    .arg(2 * self.trim_every());
                vec![cmd]
            })
            .collect();
        if let Err(e) = self.run_script(2, cmds).await {
            // Harmless: the next due append trims again.
            tracing::warn!(error = %e, "event store trim failed");
        }
    }

    /// Drops a user's store (their positions then get `sync.reset`). The
    /// keys of the earlier layout go too.
    pub async fn forget(&self, user: Uuid) -> redis::RedisResult<()> {
        let tag = format!("{}rt:{{u:{user}}}", self.prefix);
        redis::cmd("DEL")
            .arg(self.key(user))
            .arg(format!("{tag}:m"))
            .arg(format!("{tag}:s"))
            .query_async(&mut self.conn.clone())
            .await
            .counted("resume")
    }

    /// Entries after event `after` (exclusive) up to `upto` (inclusive;
    /// None = the end), at most [`PAGE`]; `exact` asks that this
    /// position's own entry still be kept.
    pub async fn range(
        &self,
        user: Uuid,
        after: u64,
        upto: Option<u64>,
        exact: Option<Pos>,
    ) -> redis::RedisResult<Range> {
        let mut conn = self.conn.clone();
        // Bounds as ids built here: n + 1 would pass through a Lua double.
        let reply: Vec<Value> = self.scripts[1]
            .key(self.key(user))
            .arg(exact.map(|p| p.n.to_string()).unwrap_or_default())
            .arg(exact.map(|p| p.ms.to_string()).unwrap_or_default())
            .arg(format!("{GEN}-{}", after.saturating_add(1)))
            .arg(upto.map_or_else(|| "+".to_string(), |u| format!("{GEN}-{u}")))
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
            "reset" => Ok(Range::Reset),
            "expired" => Ok(Range::Expired),
            _ => {
                let rows: Vec<(String, Vec<String>)> = reply
                    .get(1)
                    .map(redis::from_redis_value)
                    .transpose()?
                    .unwrap_or_default();
                let raws: Vec<Raw> = rows
                    .into_iter()
                    .filter_map(|(id, fields)| decode(&id, fields))
                    .collect();
                let found = self.bodies(&shared::ids(&raws)).await?;
                // A shared body outlived by its entry: as if trimmed.
                Ok(shared::resolve(raws, &found).map_or(Range::Expired, Range::Entries))
            }
        }
    }

    /// The user's newest position (None: nothing stored).
    pub async fn head(&self, user: Uuid) -> redis::RedisResult<Option<Pos>> {
        let rows: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(self.key(user))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await
            .counted("resume")?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|(id, fields)| decode(&id, fields))
            .map(|s| s.pos))
    }
}

/// `XADD <key> 1-*` (an explicit ms half with a generated sequence) came
/// with Redis 7.0; older servers would refuse every append.
async fn check_version(conn: &Conn) -> anyhow::Result<()> {
    // On a cluster the client asks every node and answers with a map.
    let info: Value = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn.clone())
        .await?;
    let mut texts = Vec::new();
    collect_texts(&info, &mut texts);
    if let Some(old) = too_old(&texts) {
        anyhow::bail!(
            "the resume store needs Redis 7.0 or newer, found {old:?}: upgrade Redis, \
             or set RESUME_ENABLED=false to run without resume after reconnect"
        );
    }
    Ok(())
}

/// The first `redis_version` below 7 in `INFO server` texts.
fn too_old(texts: &[String]) -> Option<&str> {
    let major = |v: &str| -> u32 {
        v.split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    };
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.strip_prefix("redis_version:"))
        .map(str::trim)
        .find(|v| major(v) < 7)
}

fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|i| collect_texts(i, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(_, i)| collect_texts(i, out)),
        _ => {}
    }
}

/// What a target's entry holds: its body inline or its shared body's id.
struct Held<'a> {
    bodies: &'a [&'a str],
    plan: &'a [Option<String>],
}

impl<'a> Held<'a> {
    fn new(bodies: &'a [&'a str], plan: &'a [Option<String>]) -> Self {
        Self { bodies, plan }
    }

    /// The field and its value.
    fn of(&self, t: &Target) -> (&'static str, &'a str) {
        match self.plan.get(t.body).and_then(Option::as_deref) {
            Some(id) => ("r", id),
            None => ("d", self.bodies.get(t.body).copied().unwrap_or("{}")),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The position of entry `<GEN>-<n>` written at `ms`.
fn entry_pos(id: &str, ms: u64) -> Option<Pos> {
    let (generation, n) = id.split_once('-')?;
    Some(Pos {
        generation: parse_digits(generation)?,
        n: parse_digits(n)?,
        ms,
    })
}

fn decode(id: &str, fields: Vec<String>) -> Option<Raw> {
    let (mut body, mut unread, mut written) = (None, 0, None);
    let mut it = fields.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match k.as_str() {
            "d" => body = Some(Body::Inline(v)),
            "r" => body = Some(Body::Shared(v)),
            "u" => unread = v.parse().unwrap_or(0),
            "t" => written = parse_digits(&v),
            _ => {}
        }
    }
    Some(Raw {
        pos: entry_pos(id, written?)?,
        body: body?,
        unread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_has_one_trim_turn_per_period_and_a_groups_turns_are_spread() {
        let users: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
        let mut per_turn = [0u32; 64];
        for u in &users {
            let turns: Vec<u64> = (1..=64).filter(|n| trim_turn(*u, *n, 64)).collect();
            assert_eq!(turns.len(), 1, "{u}: {turns:?}");
            per_turn[(turns[0] % 64) as usize] += 1;
        }
        // 1,000 streams over 64 turns: about 16 each, never all at once.
        let busiest = per_turn.iter().max().copied().unwrap_or(0);
        assert!(busiest < 60, "{per_turn:?}");
        assert!(
            (1..=5).all(|n| trim_turn(users[0], n, 1)),
            "every = 1 trims each time"
        );
    }

    #[test]
    fn redis_before_7_is_named() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        assert_eq!(too_old(&[info("7.0.15")]), None);
        assert_eq!(too_old(&[info("7.0.15"), info("8.2.1")]), None);
        assert_eq!(too_old(&[info("7.0.15"), info("6.2.14")]), Some("6.2.14"));
        assert_eq!(too_old(&[info("garbage")]), Some("garbage"));
    }

    #[test]
    fn positions_round_trip_and_reject_garbage() {
        let p = Pos {
            generation: 1767400000123456,
            n: 42,
            ms: 1767400000999,
        };
        assert_eq!(Pos::parse(&p.to_string()), Some(p));
        assert_eq!(NEXT_ID, format!("{GEN}-*"));
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
