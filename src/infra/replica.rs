//! The PostgreSQL read replica (a streaming standby): a second bounded pool
//! for read-heavy endpoints, and what keeps read-after-write true on it.
//!
//! After a user's successful write the primary's WAL insert position is
//! remembered for that user in Redis (every instance sees it). A monitor
//! task polls how far the standby has replayed; a read from a user whose
//! last write is beyond that position, or any read while the standby is
//! unreachable or lags more than `DB_READ_MAX_LAG_SECONDS`, goes to the
//! primary. Without a replica none of this exists (see `AppState::read_conn`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::Config;
use crate::infra::redis::{CountErrors, Redis};

/// How long a user's last write position is kept; the allowed lag must be
/// shorter, or a lagging standby could serve a user whose write it lacks.
pub const WRITE_MEMORY: Duration = Duration::from_secs(600);
/// How often each instance asks the standby how far it has replayed.
pub const POLL_EVERY: Duration = Duration::from_millis(100);
/// One poll (connect included) gives up after this. Generous: a timed-out
/// poll drops its connection, and on a saturated machine a tight limit
/// would keep timing out the reconnects themselves.
const POLL_TIMEOUT: Duration = Duration::from_secs(3);
/// A replay position older than this is not trusted (the monitor is stuck).
const STALE_AFTER: Duration = Duration::from_secs(5);
/// Primary positions not yet replayed that are kept to measure the lag.
const MAX_SAMPLES: usize = 4096;

/// Where the primary is inserting WAL: at or past the commit of every
/// transaction that finished before (also with `synchronous_commit=off`,
/// where the flushed position may still be behind it).
const PRIMARY_POSITION: &str = "SELECT pg_current_wal_insert_lsn()::text";
/// How far the standby has replayed. A server that is not in recovery (a
/// promoted standby, or the primary itself) has everything it wrote.
const REPLAYED_POSITION: &str = "SELECT (CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text";

/// Keeps the greater of the stored and the new position (two writes of one
/// user may finish in either order) and renews the expiry. Positions are
/// fixed-width hex, so string order is numeric order.
const REMEMBER_WRITE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and cur >= ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1";

/// What the monitor last learnt about the standby.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaStatus {
    /// The last poll answered.
    pub up: bool,
    /// Replayed WAL position at the last answered poll.
    pub replayed: Option<u64>,
    /// When the last poll answered.
    pub polled_at: Option<Instant>,
    /// How long ago the primary was at the oldest position not yet replayed.
    pub lag: Duration,
}

/// The replica pool and its monitor's findings. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    pool: PgPool,
    options: PgConnectOptions,
    redis: Redis,
    max_lag: Duration,
    status: Arc<Mutex<ReplicaStatus>>,
}

impl Replica {
    /// The replica of `cfg`, if one is configured. The pool connects lazily,
    /// so a standby that is down does not stop the instance from starting.
    pub fn from_config(cfg: &Config, redis: &Redis) -> Option<Replica> {
        let r = cfg.db_read.as_ref()?;
        let options = cfg.pg_read_connect_options()?;
        let pool = PgPoolOptions::new()
            .max_connections(r.max_connections)
            // Short: a request waiting on a sick standby is better served
            // by the primary (see `AppState::read_conn`).
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(options.clone());
        Some(Replica {
            pool,
            options,
            redis: redis.clone(),
            max_lag: r.max_lag,
            status: Arc::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn status(&self) -> ReplicaStatus {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplicaStatus> {
        // The status is plain data: a panic elsewhere cannot leave it torn.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replayed position when the standby may serve reads at all:
    /// answering, polled recently, and not lagging too far.
    pub fn usable_position(&self) -> Option<u64> {
        let s = self.status();
        (health(&s, self.max_lag) == "ok")
            .then_some(s.replayed)
            .flatten()
    }

    /// Whether `user`'s reads may go to the standby now: it is usable and has
    /// replayed the user's last write. Any doubt (Redis trouble) says no.
    pub async fn serves(&self, user: Uuid) -> bool {
        let Some(replayed) = self.usable_position() else {
            return false;
        };
        let mut c = self.redis.conn();
        let last: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(self.redis.key(&write_key(user)))
            .query_async(&mut c)
            .await
            .counted("replica");
        match last {
            Ok(None) => true,
            Ok(Some(hex)) => u64::from_str_radix(&hex, 16).is_ok_and(|w| w <= replayed),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last write position; reading from the primary");
                false
            }
        }
    }

    /// Called when a read could not get a replica connection: reads go to
    /// the primary until the monitor hears from the standby again.
    pub fn mark_down(&self, error: &sqlx::Error) {
        let was_up = std::mem::replace(&mut self.lock().up, false);
        if was_up {
            tracing::warn!(error = %error, "read replica unavailable; reading from the primary");
        }
    }

    /// Remembers the primary's position after `user`'s write (one statement
    /// and one Redis call). Failures are logged: the write itself stands.
    pub async fn remember_write(&self, primary: &PgPool, user: Uuid) {
        let position: Result<String, sqlx::Error> = sqlx::query_scalar(PRIMARY_POSITION)
            .fetch_one(primary)
            .await;
        let Some(lsn) = position.ok().as_deref().and_then(parse_lsn) else {
            tracing::warn!("cannot read the primary's WAL position after a write");
            return;
        };
        let mut c = self.redis.conn();
        let stored: redis::RedisResult<i64> = redis::Script::new(REMEMBER_WRITE)
            .key(self.redis.key(&write_key(user)))
            .arg(format!("{lsn:016X}"))
            .arg(WRITE_MEMORY.as_secs())
            .invoke_async(&mut c)
            .await
            .counted("replica");
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cannot remember a write position; the writer may read a stale replica");
        }
    }

    /// Starts the monitor: polls the primary's and the standby's positions
    /// every [`POLL_EVERY`] on connections of its own (a busy pool cannot
    /// starve it) until `shutdown` turns true or is dropped.
    pub fn start_monitor(&self, primary: PgConnectOptions, mut shutdown: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut primary_conn, mut replica_conn) = (None, None);
            let mut lag = LagMeter::default();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break },
                }
                if let Some(h) = poll(&mut primary_conn, &primary, PRIMARY_POSITION).await {
                    lag.primary_at(h, Instant::now());
                }
                let replayed = poll(&mut replica_conn, &this.options, REPLAYED_POSITION).await;
                this.update(replayed.map(|r| (r, lag.replayed(r, Instant::now()))));
            }
        });
    }

    /// Folds one poll of the standby (its position and lag, `None` when it
    /// did not answer) into the status, logging changes of health.
    fn update(&self, replayed: Option<(u64, Duration)>) {
        let mut s = self.lock();
        let before = health(&s, self.max_lag);
        match replayed {
            Some((r, lag)) => {
                s.up = true;
                s.replayed = Some(r);
                s.polled_at = Some(Instant::now());
                s.lag = lag;
            }
            None => s.up = false,
        }
        let after = health(&s, self.max_lag);
        if before != after {
            match after {
                "ok" => tracing::info!("read replica is serving reads"),
                other => tracing::warn!(
                    state = other,
                    lag_ms = s.lag.as_millis() as u64,
                    "read replica is not serving reads; reading from the primary"
                ),
            }
        }
    }

    /// `ok`, `unreachable`, `stale` or `lagging`, for `/readyz` and logs.
    pub fn health(&self) -> &'static str {
        health(&self.status(), self.max_lag)
    }
}

fn health(s: &ReplicaStatus, max_lag: Duration) -> &'static str {
    if !s.up || s.replayed.is_none() {
        "unreachable"
    } else if s.polled_at.is_none_or(|t| t.elapsed() >= STALE_AFTER) {
        "stale"
    } else if s.lag > max_lag {
        "lagging"
    } else {
        "ok"
    }
}

/// Measures replay lag: how long ago the primary was at the oldest position
/// the standby has not replayed yet.
#[derive(Default)]
struct LagMeter {
    /// (when, primary position) samples not replayed yet, oldest first.
    behind: VecDeque<(Instant, u64)>,
}

impl LagMeter {
    fn primary_at(&mut self, position: u64, now: Instant) {
        // When full, keeping the oldest only overstates the lag.
        let newer = self.behind.back().is_none_or(|&(_, b)| position > b);
        if newer && self.behind.len() < MAX_SAMPLES {
            self.behind.push_back((now, position));
        }
    }

    fn replayed(&mut self, position: u64, now: Instant) -> Duration {
        while self.behind.front().is_some_and(|&(_, b)| b <= position) {
            self.behind.pop_front();
        }
        self.behind
            .front()
            .map_or(Duration::ZERO, |&(t, _)| now.saturating_duration_since(t))
    }
}

fn write_key(user: Uuid) -> String {
    format!("replica:lsn:{user}")
}

/// One position query on a connection kept between polls (reopened after
/// any failure); `None` when it fails or takes too long.
async fn poll(conn: &mut Option<PgConnection>, opts: &PgConnectOptions, sql: &str) -> Option<u64> {
    let attempt = tokio::time::timeout(POLL_TIMEOUT, async {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(opts.connect().await?),
        };
        sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_one(c)
            .await
    })
    .await;
    let position = match attempt {
        Ok(Ok(text)) => text.as_deref().and_then(parse_lsn),
        _ => None,
    };
    if position.is_none() {
        *conn = None;
    }
    position
}

/// `pg_lsn` text (`16/B374D848`) as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_parses_and_orders() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert!(parse_lsn("1/0") > parse_lsn("0/FFFFFFFF"));
        for bad in ["", "16", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
        // Stored fixed-width, so Redis string order is numeric order.
        assert!(format!("{:016X}", 0x1_0000_0000u64) > format!("{:016X}", 0xFFFF_FFFFu64));
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_replayed() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = LagMeter::default();
        assert_eq!(m.replayed(0, t0), Duration::ZERO, "idle primary: no lag");
        m.primary_at(100, t0);
        m.primary_at(100, t0 + s); // unchanged head: no new sample
        m.primary_at(200, t0 + 2 * s);
        assert_eq!(m.replayed(50, t0 + 3 * s), 3 * s);
        assert_eq!(
            m.replayed(100, t0 + 3 * s),
            s,
            "caught up with the first sample"
        );
        assert_eq!(m.replayed(250, t0 + 3 * s), Duration::ZERO);
        assert!(m.behind.is_empty());
    }
}
