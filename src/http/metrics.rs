//! HTTP side of the metrics: the per-request middleware (route template,
//! method, status class, latency) and `GET /metrics` (extension), shared by
//! the API and the scheduler's own metrics listener.
//!
//! `/metrics` touches neither PostgreSQL nor Redis (pool figures are read
//! from the pool's in-memory counters), so it answers while they are down
//! and needs no rate limit of its own.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use crate::error::error_response;
use crate::infra::metrics;
use crate::state::AppState;

/// The route label of requests no route matched (404s of unknown paths):
/// one fixed value, so scanners cannot grow the label set.
pub const UNMATCHED: &str = "unmatched";

/// Middleware: counts and times every request under its route template.
/// `Router::layer` wraps each route, so `MatchedPath` is already set here.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let res = next.run(req).await;
    metrics::http_request(
        route.as_deref().unwrap_or(UNMATCHED),
        &method,
        res.status().as_u16(),
        started.elapsed(),
    );
    res
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tags = ["system", "extension"], operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Extension (issue 19). Prometheus text format (HTTP, WebSocket, event bus, \
        PostgreSQL pool, Redis, rate limits, email, storage). Open when `METRICS_TOKEN` is unset; \
        otherwise `Authorization: Bearer <METRICS_TOKEN>` is required.",
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain", body = String),
        (status = 401, description = "METRICS_TOKEN is set and the bearer token does not match", body = crate::http::response::schema::ErrorBody)
    ))]
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    exposition(
        state.cfg.metrics_token.as_deref(),
        &headers,
        Some(&state.db),
    )
}

/// The exposition behind the optional bearer token.
pub fn exposition(token: Option<&str>, headers: &HeaderMap, db: Option<&PgPool>) -> Response {
    if let Some(expected) = token.filter(|t| !t.is_empty()) {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    }
    if let Some(db) = db {
        metrics::db_pool(db.size(), db.num_idle(), None);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response()
}

/// Compares without an early exit, so the token cannot be guessed byte by
/// byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
