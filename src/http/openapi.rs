//! The API description served by the API itself: OpenAPI 3 generated from
//! the handlers' annotations at `/openapi.json`, a self-contained docs page
//! at `/docs` (no CDN, no build-time download) and the WebSocket contract at
//! `/asyncapi.yaml`.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::http::response::schema::ErrorBody;
use crate::state::AppState;

/// Adds the bearer scheme every authenticated operation refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "BearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Errors every route of `routing::public` can answer, whatever the
/// handler does: the per-IP limiter and the failures any handler may meet.
/// Handlers list their own statuses next to this set.
#[derive(IntoResponses)]
pub enum PublicErrors {
    /// The route's rate-limit bucket is exhausted (`Retry-After` says for
    /// how many seconds).
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// An unexpected failure (logged; the body never carries the cause).
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Redis or PostgreSQL is unreachable (rate limiter, sessions, OTP
    /// store, database); retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Errors every route of `routing::authenticated` can answer besides the
/// handler's own: missing/invalid/revoked token, the per-user limiters and
/// the failures any handler may meet.
#[derive(IntoResponses)]
pub enum AuthenticatedErrors {
    /// Missing, malformed, expired or revoked bearer token, or the account
    /// is gone, banned or deleted.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// `auth_verify` or the route's bucket is exhausted (`Retry-After`).
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// An unexpected failure (logged; the body never carries the cause).
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Redis or PostgreSQL is unreachable; retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Errors every route of `routing::admin` can answer besides the handler's
/// own: as [`AuthenticatedErrors`] plus the admin guard's 403.
#[derive(IntoResponses)]
pub enum AdminErrors {
    /// Missing, malformed, expired or revoked bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller is not an admin (`Admin access required`), or the action
    /// is refused for the target (e.g. another admin).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// `auth_verify` or `admin_action` is exhausted (`Retry-After`).
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// An unexpected failure (logged; the body never carries the cause).
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Redis or PostgreSQL is unreachable; retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The root of the OpenAPI document: info, shared schemas, the bearer
/// scheme. The paths are added by the route tables (see `crate::app`).
#[derive(OpenApi)]
#[openapi(
    info(title = "AtoiTalk API", version = "1.0.0", description = "REST API of AtoiTalk. Every success is `{\"data\": ...}`; every error is `{\"error\": \"...\"}`."),
    components(schemas(
        ErrorBody,
        crate::http::response::schema::EmptyBody,
        crate::http::response::schema::PageMetaSchema
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `/openapi.json` (serving `doc`), `/docs`, `/asyncapi.yaml`.
pub fn routes(doc: &utoipa::openapi::OpenApi) -> Router<AppState> {
    let json = std::sync::Arc::new(doc.to_json().unwrap_or_else(|_| "{}".into()));
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.as_str().to_owned(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
        .route("/asyncapi.yaml", get(asyncapi))
}

async fn asyncapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        include_str!("../../docs/contract/asyncapi.yaml"),
    )
        .into_response()
}

const DOCS_PAGE: &str = include_str!("docs.html");
