//! Router assembly and the HTTP server with graceful shutdown: the top of
//! the program. Only `cli.rs` (and the tests) import this module; features
//! import the state from [`crate::state`] instead.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::http::middleware;
use crate::realtime::CloseReason;
use crate::state::{AppState, BackgroundStop};

/// A bound, ready-to-run API server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    shutdown_tx: BackgroundStop,
}

impl Server {
    /// Connects to every dependency, migrates when `DB_MIGRATE=true`, starts
    /// the event-bus subscriber and binds `APP_PORT` (0 picks a free port).
    pub async fn build(mut cfg: Config) -> anyhow::Result<Self> {
        let addr = SocketAddr::from(([0, 0, 0, 0], cfg.app_port));
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr}: {e}; is APP_PORT already in use?")
        })?;
        if cfg.app_url.is_empty() {
            // Self-served URLs (local storage) need the real port.
            let port = listener.local_addr()?.port();
            cfg.app_url = format!("http://127.0.0.1:{port}");
        }
        let (state, shutdown_tx) = AppState::connect(cfg).await?;
        Ok(Self {
            listener,
            state,
            shutdown_tx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish, closes sockets with a close frame and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let grace = state.cfg.shutdown_grace;
        let app = router(state.clone());
        // Carries the shutdown deadline (signal time + grace) once signalled.
        let (stop_tx, stop_rx) = watch::channel(None);
        let hub = state.hub.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: closing sockets and finishing in-flight requests");
            hub.close_all(CloseReason::Shutdown);
            let _ = stop_tx.send(Some(tokio::time::Instant::now() + grace));
        });
        tracing::info!(addr = %self.local_addr(), "AtoiTalk API listening");
        let trusted = state.cfg.trusted_proxies.clone();
        crate::http::server::serve(
            self.listener,
            app,
            state.cfg.listener,
            trusted,
            stop_rx.clone(),
        )
        .await;
        // Sockets were asked to close; give them until the same deadline.
        let signalled = *stop_rx.borrow();
        let deadline = signalled.unwrap_or_else(tokio::time::Instant::now);
        while state.hub.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.shutdown_tx.send(true);
        tracing::info!("server stopped");
        Ok(())
    }
}

/// Every documented route: the health probes, each feature's route table
/// (with its middleware groups) and `/ws`. The same table yields the axum
/// routes and the OpenAPI paths, so neither can miss what the other has.
pub fn api(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::http::openapi::ApiDoc::openapi())
        .routes(routes!(crate::http::health::healthz))
        .routes(routes!(crate::http::health::readyz))
        .routes(routes!(crate::http::metrics::scrape))
        .merge(crate::auth::routes::routes(state))
        .merge(crate::users::routes::routes(state))
        .merge(crate::account::routes::routes(state))
        .merge(crate::chats::routes::routes(state))
        .merge(crate::groups::routes::routes(state))
        .merge(crate::messages::routes::routes(state))
        .merge(crate::messages::reactions::routes::routes(state))
        .merge(crate::messages::edits::routes::routes(state))
        .merge(crate::messages::pins::routes::routes(state))
        .merge(crate::messages::search::routes::routes(state))
        .merge(crate::media::routes::routes(state))
        .merge(crate::reports::routes::routes(state))
        .merge(crate::admin::routes::routes(state))
        .merge(crate::realtime::ws::routes(state))
}

/// The full router with its middleware; `/openapi.json` serves the document
/// of [`api`].
pub fn router(state: AppState) -> Router {
    let (api, doc) = api(&state).split_for_parts();
    Router::new()
        .route("/", get(|| async { "Welcome to AtoiTalkAPI" }))
        .merge(crate::infra::storage::local_routes())
        .merge(crate::http::openapi::routes(&doc))
        .merge(api)
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::client_ip,
        ))
        .layer(cors_layer(&state.cfg.cors_allowed_origins))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                // The path only: query strings can carry tokens (`/ws?token=`).
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %request_id,
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower::util::MapRequestLayer::new(
            middleware::drop_unsafe_request_id::<axum::body::Body>,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        // Outermost, so panics (500) and timeouts (504) are counted too.
        .layer(axum::middleware::from_fn(crate::http::metrics::track))
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        // `Idempotency-Key`: browsers must be allowed to send it (issue 16).
        .allow_headers([
            header::ACCEPT,
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(crate::messages::idempotency::service::HEADER),
        ])
        .expose_headers([HeaderName::from_static("link")])
        .max_age(Duration::from_secs(300));
    if origins.iter().any(|o| o == "*") {
        // Any origin, so never with credentials: a literal `*` is what
        // browsers accept for that, and it lends no site the user's cookies.
        return layer.allow_origin(AllowOrigin::any());
    }
    layer
        .allow_origin(AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ))
        .allow_credentials(true)
}
