//! Fixed-window rate limiting in Redis, shared by every instance.
//!
//! Buckets and limits follow the reference's route table. The key is the
//! authenticated user when the request has one, otherwise the client IP.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::middleware::ClientIp;
use crate::auth::principal::Principal;
use crate::error::AppError;
use crate::state::AppState;

/// One rate-limit bucket: `limit` requests per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub name: &'static str,
    pub limit: u64,
    pub window: Duration,
}

const MINUTE: Duration = Duration::from_secs(60);

/// Public auth endpoints, per IP.
pub const AUTH_PUBLIC: Bucket = Bucket {
    name: "auth_public",
    limit: 10,
    window: MINUTE,
};
/// WebSocket connects, per IP (before authentication).
pub const WS_CONNECT: Bucket = Bucket {
    name: "ws_connect",
    limit: 300,
    window: MINUTE,
};
/// Every authenticated request, per user.
pub const AUTH_VERIFY: Bucket = Bucket {
    name: "auth_verify",
    limit: 1000,
    window: MINUTE,
};
/// Logout, per user.
pub const AUTH_LOGOUT: Bucket = Bucket {
    name: "auth_logout",
    limit: 20,
    window: MINUTE,
};
/// Media upload and completion, per user.
pub const MEDIA_UPLOAD: Bucket = Bucket {
    name: "media_upload",
    limit: 20,
    window: MINUTE,
};
/// Profile and group create/update, per user.
pub const USER_MANAGEMENT: Bucket = Bucket {
    name: "user_management",
    limit: 30,
    window: MINUTE,
};
/// Admin console, per admin.
pub const ADMIN_ACTION: Bucket = Bucket {
    name: "admin_action",
    limit: 1000,
    window: MINUTE,
};
/// Everything else authenticated, per user.
pub const GENERAL_READ: Bucket = Bucket {
    name: "general_read",
    limit: 200,
    window: MINUTE,
};

/// Outcome of one counter increment.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    pub count: u64,
    /// Milliseconds left in the window.
    pub reset_ms: u64,
}

/// Counts one hit on `key` (full key, already prefixed) in a fixed window.
/// Blocked hits still count but never extend the window.
pub async fn hit(
    redis: &crate::infra::redis::Redis,
    key: &str,
    limit: u64,
    window: Duration,
) -> Result<Verdict, redis::RedisError> {
    let mut v = hit_many(redis, &[(key.to_string(), limit, window)]).await?;
    Ok(v.pop().unwrap_or(Verdict {
        allowed: false,
        count: 0,
        reset_ms: window.as_millis() as u64,
    }))
}

/// The fixed-window counting script: per key, INCR and (re)arm the window.
const HIT_SCRIPT: &str = r"local out = {}
          for i, key in ipairs(KEYS) do
            local n = redis.call('INCR', key)
            local ttl = redis.call('PTTL', key)
            if n == 1 or ttl < 0 then
              redis.call('PEXPIRE', key, ARGV[i])
              ttl = tonumber(ARGV[i])
            end
            out[#out + 1] = n
            out[#out + 1] = ttl
          end
          return out";

/// Counts one hit on each key in ONE Redis round trip (on a cluster, one
/// call per counter, all at once: a script may touch one slot only there,
/// and the counters are independent).
pub async fn hit_many(
    redis: &crate::infra::redis::Redis,
    counters: &[(String, u64, Duration)],
) -> Result<Vec<Verdict>, redis::RedisError> {
    let script = redis::Script::new(HIT_SCRIPT);
    let calls: Vec<&[(String, u64, Duration)]> = if redis.is_cluster() {
        counters.chunks(1).collect()
    } else {
        vec![counters]
    };
    let flat: Vec<i64> = futures::future::try_join_all(calls.into_iter().map(|part| {
        let mut inv = script.prepare_invoke();
        for (key, _, window) in part {
            inv.key(key).arg(window.as_millis() as u64);
        }
        let mut c = redis.conn();
        async move { inv.invoke_async::<Vec<i64>>(&mut c).await }
    }))
    .await?
    .concat();
    Ok(verdicts(counters, &flat))
}

/// The counting of [`hit_many`] as one command to ride in another round
/// trip (`EVAL` with the script text: no script cache to miss). Single
/// node only: its keys are in several slots on a cluster.
pub fn hit_cmd(counters: &[(String, u64, Duration)]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(HIT_SCRIPT).arg(counters.len());
    for (key, _, _) in counters {
        cmd.arg(key);
    }
    for (_, _, window) in counters {
        cmd.arg(window.as_millis() as u64);
    }
    cmd
}

/// Reads the reply of [`hit_cmd`].
pub fn hit_reply(
    counters: &[(String, u64, Duration)],
    reply: &redis::Value,
) -> Result<Vec<Verdict>, redis::RedisError> {
    let flat: Vec<i64> = redis::from_redis_value(reply)?;
    Ok(verdicts(counters, &flat))
}

/// Takes back hits that [`hit_cmd`] counted for a request that then failed
/// authentication (which was never counted when authentication ran first).
/// A counter left at 0 keeps its window; the next hit re-arms it as a
/// fresh one would.
pub async fn unhit(redis: &crate::infra::redis::Redis, counters: &[(String, u64, Duration)]) {
    let mut pipe = redis::pipe();
    for (key, _, _) in counters {
        pipe.decr(key, 1).ignore();
    }
    let mut c = redis.conn();
    if let Err(e) = pipe.query_async::<()>(&mut c).await {
        tracing::warn!(error = %e, "cannot take back rate-limit hits of a refused request");
    }
}

fn verdicts(counters: &[(String, u64, Duration)], flat: &[i64]) -> Vec<Verdict> {
    counters
        .iter()
        .zip(flat.chunks(2))
        .map(|((_, limit, _), pair)| {
            let count = pair.first().copied().unwrap_or(0).max(0) as u64;
            Verdict {
                allowed: count <= *limit,
                count,
                reset_ms: pair.get(1).copied().unwrap_or(0).max(0) as u64,
            }
        })
        .collect()
}

/// The buckets one limiter layer counts against, outermost first; the last
/// one's figures go into the `X-RateLimit-*` headers.
pub type Buckets = std::sync::Arc<[Bucket]>;

/// Middleware body: `from_fn_with_state((state, buckets), limit)`. All
/// buckets are counted in one Redis round trip.
pub async fn limit(
    State((state, buckets)): State<(AppState, Buckets)>,
    req: Request,
    next: Next,
) -> Response {
    let (kind, id) = match req.extensions().get::<Principal>() {
        Some(p) => ("user", p.user_id.to_string()),
        None => (
            "ip",
            req.extensions()
                .get::<ClientIp>()
                .map(|c| c.0.to_string())
                .unwrap_or_default(),
        ),
    };
    let counters = counters(&state, &buckets, kind, &id);
    let verdicts = match hit_many(&state.redis, &counters).await {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    respond(&buckets, &verdicts, req, next).await
}

/// The full keys of `buckets` for one caller, with limits and windows.
pub fn counters(
    state: &AppState,
    buckets: &[Bucket],
    kind: &str,
    id: &str,
) -> Vec<(String, u64, Duration)> {
    buckets
        .iter()
        .map(|b| {
            let key = state
                .redis
                .key(&format!("ratelimit:{kind}:{}:{id}", b.name));
            (key, b.limit, b.window)
        })
        .collect()
}

/// The answer when the counters cannot be reached.
pub fn unavailable(e: redis::RedisError) -> Response {
    crate::infra::metrics::redis_error("request");
    tracing::error!(error = %e, "rate limiter unavailable");
    AppError::unavailable("Rate limiting service unavailable").into_response()
}

/// Runs the request if every bucket allows it (else 429) and sets the
/// `X-RateLimit-*` headers from the last bucket.
pub async fn respond(
    buckets: &[Bucket],
    verdicts: &[Verdict],
    req: Request,
    next: Next,
) -> Response {
    let Some((bucket, shown)) = buckets.last().zip(verdicts.last()) else {
        return next.run(req).await;
    };
    let blocked = buckets.iter().zip(verdicts).find(|(_, v)| !v.allowed);
    let mut res = match blocked {
        None => next.run(req).await,
        Some((b, v)) => {
            crate::infra::metrics::rate_limited(b.name);
            let mut r = AppError::TooManyRequests {
                message: "Rate limit exceeded. Please try again later.".into(),
                retry_after: Some(v.reset_ms.div_ceil(1000)),
            }
            .into_response();
            r.headers_mut()
                .insert("X-RateLimit-Remaining", HeaderValue::from_static("0"));
            r
        }
    };
    let headers = res.headers_mut();
    // An inner limiter (admin routes) already set them: innermost wins.
    if !headers.contains_key("X-RateLimit-Limit") {
        if let Ok(v) = HeaderValue::from_str(&bucket.limit.to_string()) {
            headers.insert("X-RateLimit-Limit", v);
        }
        if let Ok(v) = HeaderValue::from_str(&(shown.reset_ms / 1000).to_string()) {
            headers.insert("X-RateLimit-Reset", v);
        }
    }
    res
}
