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
use crate::app::AppState;
use crate::auth::principal::Principal;
use crate::error::AppError;

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
    let script = redis::Script::new(
        r"local n = redis.call('INCR', KEYS[1])
          local ttl = redis.call('PTTL', KEYS[1])
          if n == 1 or ttl < 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            ttl = tonumber(ARGV[1])
          end
          return {n, ttl}",
    );
    let mut c = redis.conn();
    let (count, ttl): (u64, i64) = script
        .key(key)
        .arg(window.as_millis() as u64)
        .invoke_async(&mut c)
        .await?;
    Ok(Verdict {
        allowed: count <= limit,
        count,
        reset_ms: ttl.max(0) as u64,
    })
}

/// Middleware body: `from_fn_with_state((state, bucket), limit)`.
pub async fn limit(
    State((state, bucket)): State<(AppState, Bucket)>,
    req: Request,
    next: Next,
) -> Response {
    let identity = match req.extensions().get::<Principal>() {
        Some(p) => format!("user:{}:{}", bucket.name, p.user_id),
        None => {
            let ip = req
                .extensions()
                .get::<ClientIp>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            format!("ip:{}:{}", bucket.name, ip)
        }
    };
    let key = state.redis.key(&format!("ratelimit:{identity}"));
    let verdict = match hit(&state.redis, &key, bucket.limit, bucket.window).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, bucket = bucket.name, "rate limiter unavailable");
            return AppError::unavailable("Rate limiting service unavailable").into_response();
        }
    };
    let reset_secs = verdict.reset_ms / 1000;
    let mut res = if verdict.allowed {
        next.run(req).await
    } else {
        let mut r = AppError::TooManyRequests {
            message: "Rate limit exceeded. Please try again later.".into(),
            retry_after: Some(verdict.reset_ms.div_ceil(1000)),
        }
        .into_response();
        r.headers_mut()
            .insert("X-RateLimit-Remaining", HeaderValue::from_static("0"));
        r
    };
    let headers = res.headers_mut();
    // The innermost limiter runs last on the way out, so set only if absent.
    if !headers.contains_key("X-RateLimit-Limit") {
        if let Ok(v) = HeaderValue::from_str(&bucket.limit.to_string()) {
            headers.insert("X-RateLimit-Limit", v);
        }
        if let Ok(v) = HeaderValue::from_str(&reset_secs.to_string()) {
            headers.insert("X-RateLimit-Reset", v);
        }
    }
    res
}
