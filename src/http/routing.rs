//! Route groups with their middleware chains (the reference's route table).
//! Each takes and returns an [`OpenApiRouter`], so a feature's route table is
//! also its OpenAPI paths. Public routes are limited per IP; authenticated
//! routes authenticate first, then count against `auth_verify` and their own
//! bucket per user (one Redis round trip for both); admin routes add the
//! admin guard before counting.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use super::auth::bearer_token;
use super::json::BODY_LIMIT;
use super::rate_limit::{self, Bucket, Buckets};
use crate::auth::principal;
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
    router
        .layer(from_fn_with_state(
            (
                state.clone(),
                Buckets::from([rate_limit::AUTH_VERIFY, bucket]),
            ),
            rate_limit::limit,
        ))
        .layer(from_fn_with_state(state.clone(), require_auth))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
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
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let token = match bearer_token(&parts) {
        Some(t) => t.to_string(),
        None => return AppError::unauthorized().into_response(),
    };
    match principal::authenticate(&state.db, &state.redis, &state.cfg.jwt_secret, &token).await {
        Ok(p) => {
            let user = p.user_id;
            let writes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            parts.extensions.insert(p);
            req = Request::from_parts(parts, body);
            let res = next.run(req).await;
            // Read-after-write on the replica. Before the response leaves, so
            // the client's next request already sees it. Refusals (4xx, the
            // rate limit's 429 included) wrote nothing; a 5xx may have
            // committed before failing, so it counts.
            if writes && state.replica.is_some() && !res.status().is_client_error() {
                state.remember_write(user).await;
            }
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn require_admin(req: Request, next: Next) -> Response {
    match req.extensions().get::<principal::Principal>() {
        Some(p) if p.is_admin() => next.run(req).await,
        Some(_) => AppError::forbidden("Admin access required").into_response(),
        None => AppError::unauthorized().into_response(),
    }
}
