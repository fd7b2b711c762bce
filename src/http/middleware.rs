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

/// Removes a client `X-Request-Id` that is not `[A-Za-z0-9._-]{1,64}`, so
/// the id layer generates a fresh one: the id is echoed and logged, and a
/// crafted one could forge fields in the text log format.
pub fn drop_unsafe_request_id<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let safe = |v: &[u8]| {
        (1..=64).contains(&v.len())
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let headers = req.headers_mut();
    let ids = headers.get_all("x-request-id");
    let mut ids = ids.iter();
    let keep = matches!((ids.next(), ids.next()), (Some(v), None) if safe(v.as_bytes()));
    if !keep {
        headers.remove("x-request-id");
    }
    req
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
