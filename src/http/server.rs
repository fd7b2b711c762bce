//! The HTTP/1.1 listener: our own accept loop over hyper, because
//! `axum::serve` has no timeouts, no connection caps, a fixed back-off on
//! accept errors and a graceful shutdown that waits forever.
//!
//! - every connection runs through [`GuardedIo`] (header-read, keep-alive
//!   idle and write-stall timeouts) and holds an [`IpPermit`];
//! - running out of file descriptors backs the accept loop off (10 ms
//!   doubling to 1 s) instead of spinning;
//! - on shutdown, idle connections close at once, in-flight requests get
//!   until the deadline, then whatever is left is dropped.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::conn::{ConnState, GuardedIo, InFlight, IpPermit, PerIpLimiter, Timeouts};
use crate::config::ListenerConfig;

/// Answer to a connection over its address's cap (best effort: written
/// without waiting, then the socket is closed).
const REFUSED: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
content-length: 45\r\nconnection: close\r\n\r\n{\"error\":\"Too many connections from this IP\"}";

/// Serves `app` on `listener` until `stop` carries a deadline, then shuts
/// down as described in the module docs and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: ListenerConfig,
    trusted: Vec<ipnet::IpNet>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let limiter = PerIpLimiter::new(cfg.max_connections_per_ip, trusted);
    let timeouts = Timeouts {
        header: cfg.header_read_timeout,
        idle: cfg.idle_timeout,
    };
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let (graceful_tx, graceful_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut backoff = Backoff::default();
    let deadline = loop {
        tokio::select! {
            // The watch guard is not Send: copy the deadline out right away.
            at = async { stop.wait_for(Option::is_some).await.ok().and_then(|d| *d) } => {
                break at.unwrap_or_else(Instant::now);
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    let permit = match limiter.acquire(peer.ip()) {
                        Ok(p) => p,
                        Err(()) => {
                            let _ = stream.try_write(REFUSED);
                            continue;
                        }
                    };
                    let service = match make_service.call(peer).await {
                        Ok(s) => s,
                        Err(never) => match never {},
                    };
                    conns.spawn(serve_connection(
                        stream,
                        service,
                        timeouts,
                        permit,
                        graceful_rx.clone(),
                    ));
                }
                Err(e) => backoff.wait(&e).await,
            }
        }
    };
    drop(listener);
    let _ = graceful_tx.send(true);
    let drained = tokio::time::timeout_at(deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "shutdown grace period over: dropping connections still open"
        );
        conns.shutdown().await;
    }
}

/// One connection: hyper's HTTP/1.1 server with upgrades (WebSocket), the
/// router behind a wrapper that tells [`GuardedIo`] when a request is in
/// flight.
async fn serve_connection<S>(
    stream: TcpStream,
    service: S,
    timeouts: Timeouts,
    permit: Option<IpPermit>,
    mut graceful: watch::Receiver<bool>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    // Small writes go out at once: without this, Nagle's algorithm holds a
    // WebSocket frame until the client acknowledges the previous one, and a
    // client with nothing to send acknowledges late (delayed ACK), which put
    // ~30 ms on every delivery at 100 messages a second.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(GuardedIo::new(stream, state.clone(), timeouts, permit));
    let hyper_service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = InFlight::start(&state);
        let call = service.clone().oneshot(req.map(Body::new));
        async move {
            let res = match call.await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                in_flight.upgraded();
            }
            Ok::<_, Infallible>(res.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Timed by GuardedIo, which can tell a keep-alive pause from a slow head.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, hyper_service).with_upgrades());
    let mut shutting_down = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = graceful.wait_for(|g| *g), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it is
/// written out (or dropped).
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Accept-error handling: per-connection errors are skipped, resource
/// exhaustion (EMFILE and friends) waits before retrying, because the
/// pending connection keeps the listener readable and would spin the loop.
#[derive(Default)]
struct Backoff {
    delay: Option<Duration>,
    last_warning: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn reset(&mut self) {
        self.delay = None;
    }

    async fn wait(&mut self, e: &io::Error) {
        if !is_resource_exhaustion(e) {
            tracing::debug!(error = %e, "accept failed");
            return;
        }
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.delay = Some(delay);
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(error = %e, "accept failed: out of resources; backing off");
        }
        tokio::time::sleep(delay).await;
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(serde_json::from_str::<serde_json::Value>(body).unwrap()["error"].is_string());
    }

    #[test]
    fn only_exhaustion_backs_off() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
