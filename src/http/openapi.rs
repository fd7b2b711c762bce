//! The API description served by the API itself: OpenAPI 3 generated from
//! the handlers' annotations at `/openapi.json`, a self-contained docs page
//! at `/docs` (no CDN, no build-time download) and the WebSocket contract at
//! `/asyncapi.yaml`.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;

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

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "AtoiTalk API", version = "1.0.0", description = "REST API of AtoiTalk. Every success is `{\"data\": ...}`; every error is `{\"error\": \"...\"}`."),
    paths(crate::http::health::healthz, crate::http::health::readyz),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The full document: the root plus every feature's paths.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in crate::app::feature_docs() {
        doc.merge(part);
    }
    doc
}

/// `/openapi.json`, `/docs`, `/asyncapi.yaml`.
pub fn routes() -> Router<AppState> {
    let json = std::sync::Arc::new(document().to_json().unwrap_or_else(|_| "{}".into()));
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
