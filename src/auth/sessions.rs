//! Session state in Redis: the per-token logout blacklist and the per-user
//! "revoked before T" marker. Key shapes match the reference (tests and
//! operators read them directly).

use redis::AsyncCommands;
use uuid::Uuid;

use crate::infra::redis::{Redis, RedisUnavailable};

/// Whether this exact token was logged out.
pub async fn is_blacklisted(redis: &Redis, token: &str) -> Result<bool, RedisUnavailable> {
    let mut c = redis.conn();
    let exists: bool = c.exists(redis.key(&format!("blacklist:{token}"))).await?;
    Ok(exists)
}

/// Blacklists one token for `ttl_secs`.
pub async fn blacklist(redis: &Redis, token: &str, ttl_secs: i64) -> Result<(), RedisUnavailable> {
    let mut c = redis.conn();
    let _: () = c
        .set_ex(
            redis.key(&format!("blacklist:{token}")),
            "revoked",
            ttl_secs.max(1) as u64,
        )
        .await?;
    Ok(())
}

/// Parses a revoke marker: `<ms>:<uuid>`, or a bare number (seconds when it
/// is too small to be milliseconds).
pub fn parse_marker(value: &str) -> Option<i64> {
    let head = match value.find(':') {
        Some(i) if i > 0 => &value[..i],
        _ => value,
    };
    let n: i64 = head.trim().parse().ok()?;
    Some(if n < 1_000_000_000_000 { n * 1000 } else { n })
}

/// The user's current revoke-all marker, which new tokens are bound to.
pub async fn current_marker(redis: &Redis, user: Uuid) -> Result<Option<String>, RedisUnavailable> {
    let mut c = redis.conn();
    let marker: Option<String> = c.get(redis.key(&format!("revoked_user:{user}"))).await?;
    Ok(marker)
}

/// How often a session's `last_seen_at` is written at most.
pub const SEEN_EVERY_SECS: u64 = 60;

/// Whether a verified token was revoked: logged out (blacklisted), or
/// issued before the user's latest revoke-all (see [`super::tokens`]: a
/// bound token by its marker, an unbound one by issue time). For a token of
/// a login session it also takes the once-a-minute `last_seen_at` guard
/// (`SET NX`), so the caller knows whether to write it. One round trip.
pub async fn token_state(
    redis: &Redis,
    token: &str,
    claims: &super::tokens::Claims,
) -> Result<(TokenState, bool), RevocationError> {
    token_state_and(redis, token, claims, None).await.0
}

/// [`token_state`] with `extra` sent in the same round trip (the rate
/// limiter's count). Its reply comes back untouched whatever the verdict,
/// `None` when the round trip failed.
pub async fn token_state_and(
    redis: &Redis,
    token: &str,
    claims: &super::tokens::Claims,
    extra: Option<redis::Cmd>,
) -> (
    Result<(TokenState, bool), RevocationError>,
    Option<redis::Value>,
) {
    let user = claims.user_id;
    let mut c = redis.conn();
    let mut pipe = redis::pipe();
    pipe.exists(redis.key(&format!("blacklist:{token}")))
        .get(redis.key(&format!("revoked_user:{user}")));
    if let Some(sid) = claims.sid {
        pipe.cmd("SET")
            .arg(redis.key(&format!("session_seen:{sid}")))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(SEEN_EVERY_SECS);
    }
    let has_extra = extra.is_some();
    if let Some(cmd) = extra {
        pipe.add_command(cmd);
    }
    let mut replies: Vec<redis::Value> = match pipe.query_async(&mut c).await {
        Ok(r) => r,
        Err(e) => return (Err(RevocationError::Redis(e.into())), None),
    };
    let extra_reply = if has_extra { replies.pop() } else { None };
    (judge(claims, replies), extra_reply)
}

/// The verdict of [`token_state`] from the replies of its commands.
fn judge(
    claims: &super::tokens::Claims,
    replies: Vec<redis::Value>,
) -> Result<(TokenState, bool), RevocationError> {
    let redis_err = |e: redis::RedisError| RevocationError::Redis(e.into());
    let mut replies = replies.into_iter();
    let mut next = || replies.next().unwrap_or(redis::Value::Nil);
    let blacklisted: bool = redis::from_redis_value(&next()).map_err(redis_err)?;
    let marker: Option<String> = redis::from_redis_value(&next()).map_err(redis_err)?;
    // `seen` is `OK` when this request took the guard (first in the minute).
    let seen: Option<String> = if claims.sid.is_some() {
        redis::from_redis_value(&next()).map_err(redis_err)?
    } else {
        None
    };
    let touch = seen.is_some();
    if blacklisted {
        return Ok((TokenState::LoggedOut, false));
    }
    let revoked = match (marker, &claims.rev) {
        (None, _) => false,
        (Some(m), Some(rev)) => &m != rev,
        (Some(m), None) => {
            claims.issued_at_ms() <= parse_marker(&m).ok_or(RevocationError::BadMarker)?
        }
    };
    Ok(if revoked {
        (TokenState::Revoked, false)
    } else {
        (TokenState::Live, touch)
    })
}

/// What [`token_state`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Live,
    /// Logged out: `Token has been revoked`.
    LoggedOut,
    /// Issued before a revoke-all: plain `Unauthorized`.
    Revoked,
}

/// Revocation lookup failures.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error(transparent)]
    Redis(#[from] RedisUnavailable),
    #[error("unreadable revocation marker")]
    BadMarker,
}

/// Writes a revoke-all marker at "now" for `ttl_secs` and returns it, so a
/// failed transaction can restore what was there before.
pub async fn revoke_all(
    redis: &Redis,
    user: Uuid,
    ttl_secs: i64,
) -> Result<RevokeGuard, RedisUnavailable> {
    let key = redis.key(&format!("revoked_user:{user}"));
    let mut c = redis.conn();
    let (previous, prev_ttl): (Option<String>, i64) = redis::pipe()
        .get(&key)
        .pttl(&key)
        .query_async(&mut c)
        .await?;
    let marker = format!(
        "{}:{}",
        chrono::Utc::now().timestamp_millis(),
        Uuid::new_v4()
    );
    let _: () = c.set_ex(&key, &marker, ttl_secs.max(1) as u64).await?;
    Ok(RevokeGuard {
        key,
        marker,
        previous: previous.map(|p| (p, prev_ttl)),
    })
}

/// A written revoke marker that can be rolled back if the DB commit fails.
pub struct RevokeGuard {
    key: String,
    marker: String,
    previous: Option<(String, i64)>,
}

impl RevokeGuard {
    /// Restores the previous marker, but only if ours is still the current one.
    pub async fn rollback(self, redis: &Redis) {
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
                if tonumber(ARGV[3]) > 0 then
                  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
                end
                return redis.call('SET', KEYS[1], ARGV[2])
              end
              return 0",
        );
        let (prev, ttl) = self.previous.unwrap_or_default();
        let mut c = redis.conn();
        let res: redis::RedisResult<redis::Value> = script
            .key(&self.key)
            .arg(&self.marker)
            .arg(prev)
            .arg(ttl)
            .invoke_async(&mut c)
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "failed to roll back revocation marker");
        }
    }
}

/// Commits `tx` together with a revoke-all for `user` (spec §8): every
/// login session of the user ends in `tx`, and the marker is written before
/// the commit, so no token issued earlier can outlive the change; if Redis
/// fails the transaction is rolled back (503 `Session service
/// unavailable`), and if the commit fails the marker is restored.
pub async fn commit_revoking(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    redis: &Redis,
    user: Uuid,
    ttl_secs: i64,
) -> Result<(), crate::error::AppError> {
    crate::account::sessions::repo::revoke_all(&mut *tx, user).await?;
    let guard = match revoke_all(redis, user, ttl_secs).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, %user, "cannot write revocation marker");
            // Dropping `tx` rolls the change back.
            return Err(crate::error::AppError::unavailable(
                "Session service unavailable",
            ));
        }
    };
    if let Err(e) = tx.commit().await {
        guard.rollback(redis).await;
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_marker;

    #[test]
    fn marker_formats() {
        assert_eq!(parse_marker("1700000000500:abc"), Some(1_700_000_000_500));
        assert_eq!(parse_marker("1700000000500"), Some(1_700_000_000_500));
        assert_eq!(parse_marker("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_marker("garbage"), None);
    }
}
