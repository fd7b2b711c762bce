//! Per-account login throttling (issue 15, C10): failures are counted per
//! normalised email, whoever sends them, and from the
//! `LOGIN_THROTTLE_AFTER`-th attempt on each one closes the account's login
//! for a delay that doubles from `LOGIN_THROTTLE_BASE_SECONDS` up to
//! `LOGIN_THROTTLE_MAX_SECONDS`. The delay always runs out, so a stranger
//! can slow an owner down but never lock them out for longer than the cap;
//! a successful login clears the count.
//!
//! Key `login_failures:<email>` is a hash: `n` = attempts not yet cleared
//! by a success, `until` = end of the current delay (ms, Redis clock, so
//! instances agree). An attempt is counted when it starts, in the same
//! round trip that checks the delay, so parallel guesses cannot slip in
//! before the first failure is recorded. Unknown emails are counted like
//! real ones: the 429 does not reveal whether an account exists.

use std::time::Duration;

use crate::error::AppError;
use crate::state::AppState;

/// Failures are forgotten this long after the last attempt.
const MEMORY: Duration = Duration::from_secs(3600);

/// Throttling settings.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    /// Attempts allowed before delays start.
    pub after: u32,
    pub base: Duration,
    pub max: Duration,
}

fn key(state: &AppState, email: &str) -> String {
    state.redis.key(&format!("login_failures:{email}"))
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "login throttle unavailable");
    crate::infra::metrics::redis_error("request");
    AppError::unavailable("Session service unavailable")
}

/// Starts a login attempt for `email`: 429 while a delay runs, otherwise
/// counts the attempt (and starts the next delay when it is one too many).
pub async fn begin_attempt(state: &AppState, email: &str) -> Result<(), AppError> {
    let script = redis::Script::new(
        r"local t = redis.call('TIME')
          local now = t[1] * 1000 + math.floor(t[2] / 1000)
          local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
          if untl > now then return untl - now end
          local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
          local after, base, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
          local delay = 0
          if n >= after then
            delay = math.floor(math.min(max, base * 2 ^ math.min(n - after, 40)))
            redis.call('HSET', KEYS[1], 'until', now + delay)
          end
          redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), delay))
          return 0",
    );
    let cfg = state.cfg.login_throttle;
    let mut c = state.redis.conn();
    let wait_ms: i64 = script
        .key(key(state, email))
        .arg(cfg.after.max(1))
        .arg(cfg.base.as_millis() as u64)
        .arg(cfg.max.as_millis() as u64)
        .arg(MEMORY.as_millis() as u64)
        .invoke_async(&mut c)
        .await
        .map_err(unavailable)?;
    if wait_ms > 0 {
        let secs = (wait_ms as u64).div_ceil(1000).max(1);
        return Err(AppError::TooManyRequests {
            message: format!("Too many failed login attempts. Please try again in {secs} seconds"),
            retry_after: Some(secs),
        });
    }
    Ok(())
}

/// Clears the count after a correct password. A failure here only leaves
/// the count to expire, so it is logged, not reported.
pub async fn succeeded(state: &AppState, email: &str) {
    let mut c = state.redis.conn();
    let res: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(key(state, email))
        .query_async(&mut c)
        .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot clear login failures");
    }
}
