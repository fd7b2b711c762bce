//! Router-wide middleware: client IP resolution, fallbacks for unknown
//! routes and methods, and the panic handler.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::error_response;
use crate::state::AppState;

/// The resolved client IP, stored in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Resolves the client IP once per request (see [`super::client_ip`]).
pub async fn client_ip(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let ip = super::client_ip::resolve(peer, req.headers(), &state.cfg.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

/// 404 for unknown routes, in the envelope.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "Not Found")
}

/// 405 for known paths with another method, in the envelope.
pub async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Turns a handler panic into a 500 with the envelope; the process lives on.
pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = %detail, "handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}
