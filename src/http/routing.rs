//! Route groups with their middleware chains (the reference's route table).
//! Each takes and returns an [`OpenApiRouter`], so a feature's route table is
//! also its OpenAPI paths. Public routes are limited per IP; authenticated
//! routes authenticate first, then count against `auth_verify` and their own
//! bucket per user (one Redis round trip for both); admin routes add the
//! admin guard before counting.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use super::auth::bearer_token;
use super::json::BODY_LIMIT;
use super::rate_limit::{self, Bucket, Buckets};
use crate::auth::principal::{self, Caller, Principal};
use crate::error::AppError;
use crate::state::AppState;

/// Admin bodies are not limited by the reference; we still cap them.
const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

/// Public routes: body limit + per-IP bucket.
pub fn public(
    router: OpenApiRouter<AppState>,
    state: &AppState,
    bucket: Bucket,
) -> OpenApiRouter<AppState> {
    router
        .layer(from_fn_with_state(
            (state.clone(), Buckets::from([bucket])),
            rate_limit::limit,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Authenticated routes: auth, `auth_verify`, then `bucket` (per user).
pub fn authenticated(
    router: OpenApiRouter<AppState>,
    state: &AppState,
    bucket: Bucket,
) -> OpenApiRouter<AppState> {
    let buckets = Buckets::from([rate_limit::AUTH_VERIFY, bucket]);
    // On a cluster the counters are in other slots than the token's keys,
    // so they cannot ride in its round trip: count after authenticating.
    let router = if state.redis.is_cluster() {
        router
            .layer(from_fn_with_state(
                (state.clone(), buckets),
                rate_limit::limit,
            ))
            .layer(from_fn_with_state(state.clone(), require_auth))
    } else {
        router.layer(from_fn_with_state(
            (state.clone(), buckets),
            require_auth_limited,
        ))
    };
    router.layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Admin routes: auth, `auth_verify`, admin guard, then `admin_action`.
pub fn admin(router: OpenApiRouter<AppState>, state: &AppState) -> OpenApiRouter<AppState> {
    router
        .layer(from_fn_with_state(
            (state.clone(), Buckets::from([rate_limit::ADMIN_ACTION])),
            rate_limit::limit,
        ))
        .layer(axum::middleware::from_fn(require_admin))
        .layer(from_fn_with_state(
            (state.clone(), Buckets::from([rate_limit::AUTH_VERIFY])),
            rate_limit::limit,
        ))
        .layer(from_fn_with_state(state.clone(), require_auth))
        .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
}

/// Authenticates the bearer token and stores the principal in extensions.
pub async fn require_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let token = match bearer_token(&parts) {
        Some(t) => t.to_string(),
        None => return AppError::unauthorized().into_response(),
    };
    match principal::authenticate(&state.db, &state.redis, &state.cfg.jwt_secret, &token).await {
        Ok(p) => run_as(&state, p, parts, body, |req| next.run(req)).await,
        Err(e) => e.into_response(),
    }
}

/// Routes whose handler reads the caller's account in its own first
/// statement (the send: its chat-context statement), saving the
/// authentication's round trip. Their handlers take
/// [`crate::auth::principal::Caller`] and verify the account before any
/// other answer, so what a refused account sees does not change.
const ACCOUNT_READ_BY_HANDLER: &[(Method, &str)] = &[(Method::POST, "/api/messages")];

fn account_read_by_handler(parts: &Parts) -> bool {
    let Some(path) = parts.extensions.get::<MatchedPath>() else {
        return false;
    };
    ACCOUNT_READ_BY_HANDLER
        .iter()
        .any(|(m, p)| *m == parts.method && *p == path.as_str())
}

/// [`require_auth`] followed by [`rate_limit::limit`] for the caller, with
/// the counting in the token checks' Redis round trip. As when the two ran
/// one after the other, a request that fails authentication is answered
/// with that failure and not counted (its hits are taken back).
async fn require_auth_limited(
    State((state, buckets)): State<(AppState, Buckets)>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let token = match bearer_token(&parts) {
        Some(t) => t.to_string(),
        None => return AppError::unauthorized().into_response(),
    };
    let mut counters = Vec::new();
    let count = |user: uuid::Uuid| {
        counters = rate_limit::counters(&state, &buckets, "user", &user.to_string());
        rate_limit::hit_cmd(&counters)
    };
    let secret = &state.cfg.jwt_secret;
    let (res, reply) = principal::check_token_and(&state.redis, secret, &token, Some(count)).await;
    let deferred = account_read_by_handler(&parts);
    let res = match res {
        Ok(checked) if deferred => Ok(Caller::Deferred(checked)),
        Ok(checked) => checked.verify(&state.db).await.map(Caller::Verified),
        Err(e) => Err(e),
    };
    let caller = match res {
        Ok(c) => c,
        Err(e) => {
            if reply.is_some() {
                rate_limit::unhit(&state.redis, &counters).await;
            }
            return e.into_response();
        }
    };
    let verdicts = match reply.map(|r| rate_limit::hit_reply(&counters, &r)) {
        Some(Ok(v)) => v,
        Some(Err(e)) => return rate_limit::unavailable(e),
        // Authenticated, so the round trip that carried the count answered.
        None => {
            return rate_limit::unavailable(redis::RedisError::from((
                redis::ErrorKind::ResponseError,
                "no rate-limit reply",
            )))
        }
    };
    // A refused account hears so before it hears about the rate limit.
    let caller = match caller {
        Caller::Deferred(checked) if verdicts.iter().any(|v| !v.allowed) => {
            match checked.verify(&state.db).await {
                Ok(p) => Caller::Verified(p),
                Err(e) => {
                    rate_limit::unhit(&state.redis, &counters).await;
                    return e.into_response();
                }
            }
        }
        c => c,
    };
    run_as(&state, caller, parts, body, |req| {
        rate_limit::respond(&buckets, &verdicts, req, next)
    })
    .await
}

/// Runs the rest of the chain as `caller`, then records a write for the
/// replica.
async fn run_as<F, Fut>(
    state: &AppState,
    caller: impl Into<Caller>,
    mut parts: Parts,
    body: Body,
    run: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let caller = caller.into();
    let user = caller.user_id();
    let writes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    match caller {
        Caller::Verified(p) => {
            parts.extensions.insert(p);
        }
        Caller::Deferred(t) => {
            parts.extensions.insert(t);
        }
    }
    let res = run(Request::from_parts(parts, body)).await;
    // Read-after-write on the replica. Before the response leaves, so the
    // client's next request already sees it. Refusals (4xx, the rate
    // limit's 429 included) wrote nothing; a 5xx may have committed before
    // failing, so it counts.
    if writes && state.replica.is_some() && !res.status().is_client_error() {
        state.remember_write(user).await;
    }
    res
}

async fn require_admin(req: Request, next: Next) -> Response {
    match req.extensions().get::<Principal>() {
        Some(p) if p.is_admin() => next.run(req).await,
        Some(_) => AppError::forbidden("Admin access required").into_response(),
        None => AppError::unauthorized().into_response(),
    }
}
