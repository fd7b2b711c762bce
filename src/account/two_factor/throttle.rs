//! Per-account throttling of second-factor codes: more than
//! [`MAX_FAILURES`] wrong codes within [`WINDOW_SECS`] answer 429 until the
//! window ends, whoever sends them. An attempt is counted when it starts
//! (parallel guesses cannot slip in), and a correct code clears the count.

use crate::error::AppError;
use crate::infra::redis::CountErrors;
use crate::state::AppState;

/// Wrong codes allowed per window.
pub const MAX_FAILURES: u32 = 5;
/// The window, from the first counted attempt.
pub const WINDOW_SECS: u64 = 15 * 60;

fn key(state: &AppState, user: uuid::Uuid) -> String {
    state.redis.key(&format!("2fa_failures:{user}"))
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "2fa throttle unavailable");
    crate::infra::metrics::redis_error("request");
    AppError::unavailable("Session service unavailable")
}

/// Starts a code attempt for `user`: 429 when the window's budget is spent.
pub async fn begin_attempt(state: &AppState, user: uuid::Uuid) -> Result<(), AppError> {
    let script = redis::Script::new(
        r"local n = redis.call('INCR', KEYS[1])
          if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
          if n > tonumber(ARGV[1]) then
            local ttl = redis.call('TTL', KEYS[1])
            if ttl < 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
            return ttl
          end
          return 0",
    );
    let mut c = state.redis.conn();
    let wait: i64 = script
        .key(key(state, user))
        .arg(MAX_FAILURES)
        .arg(WINDOW_SECS)
        .invoke_async(&mut c)
        .await
        .map_err(unavailable)?;
    if wait > 0 {
        return Err(AppError::TooManyRequests {
            message: format!("Too many invalid codes. Please try again in {wait} seconds"),
            retry_after: Some(wait as u64),
        });
    }
    Ok(())
}

/// Clears the count after a correct code (a failure only leaves it to expire).
pub async fn succeeded(state: &AppState, user: uuid::Uuid) {
    let mut c = state.redis.conn();
    let res: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(key(state, user))
        .query_async(&mut c)
        .await
        .counted("request");
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot clear 2fa failures");
    }
}
