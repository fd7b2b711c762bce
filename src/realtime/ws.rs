//! `GET /ws?token=JWT`: authenticates before the upgrade (JSON 401/403/503
//! like REST), checks the Origin, then runs one task per connection that
//! writes queued events, pings, enforces the read deadline and the inbound
//! size limit, and hands client messages to the typing relay.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::time::{sleep_until, Instant};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};

use super::direct::{flush, send, Direct, SocketSink, Writer, WRITE_DEADLINE};
use super::hub::{CloseReason, Outbound, Registration};
use super::inbound::{Allowance, Verdict, FLOOD_CLOSE};
use super::presence::SocketSlot;
use super::resume::{self, Step, Stop};
use crate::auth::principal;
use crate::error::AppError;
use crate::http::{rate_limit, routing};
use crate::state::AppState;

/// Server ping period (9/10 of the read deadline, as the reference).
const PING_EVERY: Duration = Duration::from_secs(54);
/// A client that answers no ping for this long is dropped.
const READ_DEADLINE: Duration = Duration::from_secs(60);
/// Socket read buffer. Every socket's is zero-filled on its first read and
/// stays resident; an inbound frame is at most `MAX_INBOUND` + 14 header
/// bytes, so 1 KiB holds any of them (2 KiB measured 0.6-1 KiB more RSS per
/// idle connection: bench/README.md).
const READ_BUFFER: usize = 1024;
/// Largest accepted client message.
pub const MAX_INBOUND: usize = 512;
/// Close code and reason when the token the socket was opened with expires.
const TOKEN_EXPIRED: (u16, &str) = (4001, "token expired");
/// Pongs renew presence at most this often (a pong flood must not become
/// a Redis flood).
const PRESENCE_EVERY: Duration = Duration::from_secs(10);

/// The `/ws` route: public, counted per IP against `ws_connect`.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::public(
        OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi()).routes(routes!(ws_handler)),
        state,
        rate_limit::WS_CONNECT,
    )
}

/// The upgrade handler.
#[utoipa::path(get, path = "/ws", tags = ["websocket", "extension"], operation_id = "websocket_connect",
    summary = "WebSocket Connection", description = "Upgrade to a WebSocket carrying the events of \
        `/asyncapi.yaml`. The token is the `token` query parameter.\n\n\
        **Resume (extension, issue 16):** every event but `chat.typing` carries `meta.seq`, an opaque \
        resume position. Reconnecting with `since=<the last meta.seq received>` first replays, in order \
        and exactly once, every event sent to this user after it (on any instance), then continues live. \
        If that cannot be done (position older than kept, store flushed or reset, unparsable, store \
        unreachable) the FIRST frame is a `sync.reset` event `{reason}` and the socket stays live: refetch \
        state over REST. Close code `4010` (resume required): events may have been missed and could not be \
        filled; reconnect with `since`.",
    security(("BearerAuth" = [])),
    params(
        ("token" = Option<String>, Query, description = "The JWT"),
        ("since" = Option<String>, Query, description = "Extension (issue 16): the last `meta.seq` the \
            client received; empty = none. Replays what came after it, or answers a first frame `sync.reset`.")
    ),
    responses(
        (status = 101, description = "Switching Protocols"),
        (status = 400, description = "Not a WebSocket upgrade request", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing, invalid or revoked token", body = crate::http::response::schema::ErrorBody),
        (status = 403, description = "Origin not allowed", body = String, content_type = "text/plain"),
        (status = 429, description = "Too many connection attempts from this IP, or the user already holds `WS_MAX_CONNECTIONS_PER_USER` sockets (extension)", body = crate::http::response::schema::ErrorBody),
        (status = 503, description = "Redis or PostgreSQL is unreachable", body = crate::http::response::schema::ErrorBody)
    ))]
pub async fn ws_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let param = |name: &str| {
        query.as_deref().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    let token = param("token").unwrap_or_default();
    let since = param("since");
    let principal =
        match principal::authenticate(&state.db, &state.redis, &state.cfg.jwt_secret, &token).await
        {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
    if !origin_allowed(&state.cfg.cors_allowed_origins, &headers) {
        return (
            StatusCode::FORBIDDEN,
            [("Sec-Websocket-Version", "13")],
            "Forbidden",
        )
            .into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade refused");
            return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
        }
    };
    let user_id = principal.user_id;
    let slot = match reserve_slot(&state, user_id).await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let expires_at = principal.claims.exp.map(|exp| {
        let left_ms = exp.saturating_mul(1000) - chrono::Utc::now().timestamp_millis();
        Instant::now() + Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
    });
    // Grouped by login session, so remote sign-out closes exactly these.
    let session = super::hub::session_id(&principal.socket_key());
    upgrade
        // Small socket buffers keep an idle connection cheap (tungstenite's
        // defaults are 128 KiB each way); inbound messages are tiny anyway.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_INBOUND)
        .max_frame_size(MAX_INBOUND)
        .on_upgrade(move |socket| {
            // Split here, not inside the task: a future keeps room for what
            // it captures all its life, and the socket itself moves into
            // the halves' shared allocation (+0.7 KiB per idle connection
            // when the task captured it whole).
            let halves = socket.split();
            async move {
                // Register before anything can fail, so unregister always follows.
                let reg = state.hub.register(user_id, session);
                let conn_id = reg.conn_id;
                if reg.first_local {
                    state.presence.connected(user_id).await;
                } else {
                    state.presence.refresh(user_id).await;
                }
                run_connection(&state, halves, reg, slot.as_ref(), expires_at, since).await;
                if state.hub.unregister(user_id, conn_id) {
                    state.presence.disconnected(user_id).await;
                }
            }
        })
}

/// A place under the per-user socket cap, counted on every instance; when
/// Redis cannot answer, this instance's own sockets are counted instead.
async fn reserve_slot(
    state: &AppState,
    user_id: uuid::Uuid,
) -> Result<Option<SocketSlot>, AppError> {
    let max = state.cfg.ws_max_connections_per_user;
    if max == 0 {
        return Ok(None);
    }
    let too_many = || AppError::TooManyRequests {
        message: format!("Too many open connections for this user (at most {max})"),
        retry_after: None,
    };
    match state.presence.reserve_socket(user_id, max).await {
        Ok(Some(slot)) => Ok(Some(slot)),
        Ok(None) => Err(too_many()),
        Err(e) => {
            tracing::warn!(error = %e, "socket cap check failed; counting local sockets only");
            if state.hub.user_connection_count(user_id) >= max as usize {
                return Err(too_many());
            }
            Ok(None)
        }
    }
}

/// Whether the Origin may open a socket: any when `*` is configured or no
/// Origin is sent, else an exact `scheme://host[:port]` match.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.iter().any(|o| o == "*") {
        return true;
    }
    let Some(origin) = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|o| !o.is_empty())
    else {
        return true;
    };
    let Some(origin) = normalise_origin(origin) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|o| normalise_origin(o))
        .any(|o| o == origin)
}

fn normalise_origin(s: &str) -> Option<String> {
    let u = url::Url::parse(s.trim()).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{}:{}", u.scheme(), host, p).to_lowercase(),
        None => format!("{}://{}", u.scheme(), host).to_lowercase(),
    })
}

/// Drives one socket until it closes. One task does both directions, which
/// keeps an idle connection small; while it idles, its writer is lent to
/// the hub, which writes live frames straight to the socket ([`Direct`]).
async fn run_connection(
    state: &AppState,
    (mut sink, mut stream): (SocketSink, SplitStream<WebSocket>),
    mut reg: Registration,
    slot: Option<&SocketSlot>,
    expires_at: Option<Instant>,
    since: Option<String>,
) {
    let user_id = reg.user_id;
    let store = state.bus.store();
    // Counted before the resume, so every close below (send_close) pairs.
    crate::infra::metrics::ws_opened();
    // Registered already, so live events queue while the replay runs.
    let cursor = match resume::open(store, user_id, since.as_deref(), &mut sink).await {
        Ok(c) => c,
        Err(stop) => return send_close(Some(&mut sink), stop_frame(stop)).await,
    };
    let direct = reg.direct.clone();
    let mut held = Some(Writer { sink, cursor });
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    // One timer and one waiter each for the socket's life, moved or renewed
    // when they fire: a fresh `sleep_until`/`notified()` per loop turn cost
    // a timer-wheel and a waiter-list insert and removal for every frame.
    let read_deadline = sleep_until(Instant::now() + READ_DEADLINE);
    tokio::pin!(read_deadline);
    let catch_up = reg.catch_up.clone();
    let mut caught_up = std::pin::pin!(catch_up.notified());
    let mut poked = std::pin::pin!(direct.poked());
    // A token without `exp` never expires (the reference accepts those).
    let token_expiry =
        sleep_until(expires_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30)));
    tokio::pin!(token_expiry);
    let mut allowance = Allowance::new();
    let mut presence_at = Instant::now();
    let close_with = loop {
        // Idle with nothing queued: lend the writer (else keep it and let
        // the queue's branch below take the next frame).
        if let Some(w) = held.take() {
            held = direct.lend(w, || reg.rx.is_empty()).err();
        }
        // Polled in this order, not at random: a frame that could not be
        // written directly (the common wake-up) reaches the queue second
        // and polls nothing after it. The queue is bounded (SEND_QUEUE), so
        // the branches after it wait at most one drained queue; the read
        // comes before its deadline, so a pong behind a burst still renews it.
        tokio::select! {
            biased;
            changed = reg.close.changed() => {
                if changed.is_err() { break None; }
                let reason = *reg.close.borrow();
                if let Some(reason) = reason {
                    let Some(w) = writer(&mut held, &direct) else { break None };
                    // Flush what is already queued unless the queue is the problem.
                    if reason != CloseReason::SlowConsumer {
                        if !flush(&mut w.sink).await { break None; }
                        while let Ok(msg) = reg.rx.try_recv() {
                            if w.cursor.on_live(msg.pos) == Step::Skip { continue; }
                            if !send(&mut w.sink, Message::Text(msg.data.clone())).await { break; }
                            crate::infra::metrics::ws_event_delivered(&msg.data);
                        }
                    }
                    break Some((reason.code(), reason.text()));
                }
            }
            msg = reg.rx.recv() => match (msg, writer(&mut held, &direct)) {
                (Some(msg), Some(w)) => {
                    if let Err(stop) = live(store, user_id, w, *msg).await {
                        break stop_frame(stop);
                    }
                }
                _ => break None,
            },
            _ = poked.as_mut() => {
                poked.set(direct.poked());
                let Some(w) = writer(&mut held, &direct) else { break None };
                if !flush(&mut w.sink).await { break None; }
            }
            _ = caught_up.as_mut() => {
                caught_up.set(catch_up.notified());
                let Some(w) = writer(&mut held, &direct) else { break None };
                if let Err(stop) = resume::fill(store, user_id, &mut w.cursor, None, &mut w.sink).await {
                    break stop_frame(stop);
                }
            }
            incoming = stream.next() => {
                if let Some(Ok(msg)) = &incoming {
                    if !matches!(msg, Message::Close(_)) {
                        match allowance.frame() {
                            Verdict::Handle => {}
                            Verdict::Ignore => continue,
                            Verdict::Close => {
                                tracing::info!(%user_id, "closing a socket that floods");
                                break Some(FLOOD_CLOSE);
                            }
                        }
                    }
                }
                match incoming {
                None => break None,
                Some(Err(e)) => {
                    let too_big = e.to_string().to_lowercase().contains("too long")
                        || e.to_string().to_lowercase().contains("capacity")
                        || e.to_string().to_lowercase().contains("too big");
                    if too_big {
                        break Some((1009, ""));
                    }
                    break None;
                }
                Some(Ok(Message::Pong(_))) => {
                    read_deadline.as_mut().reset(Instant::now() + READ_DEADLINE);
                    if presence_at.elapsed() >= PRESENCE_EVERY {
                        presence_at = Instant::now();
                        state.presence.refresh(user_id).await;
                        if let Some(slot) = slot {
                            slot.renew().await;
                        }
                    }
                }
                Some(Ok(Message::Text(text))) => state.typing.handle_client_message(user_id, text.as_bytes()).await,
                Some(Ok(Message::Binary(bytes))) => state.typing.handle_client_message(user_id, &bytes).await,
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(_))) => break None,
                }
            },
            _ = ping.tick() => {
                let Some(w) = writer(&mut held, &direct) else { break None };
                if !send(&mut w.sink, Message::Ping(Vec::new().into())).await {
                    break None;
                }
            }
            _ = &mut read_deadline => {
                tracing::debug!(%user_id, "websocket read deadline passed");
                break None;
            }
            _ = &mut token_expiry => break Some(TOKEN_EXPIRED),
        }
    };
    let sink = writer(&mut held, &direct).map(|w| &mut w.sink);
    send_close(sink, close_with).await;
}

/// The task's writer: the one it holds, or the one it lent, taken back.
fn writer<'a>(held: &'a mut Option<Writer>, direct: &Direct) -> Option<&'a mut Writer> {
    if held.is_none() {
        *held = direct.reclaim();
    }
    held.as_mut()
}

/// Sends one live event, after the stored ones it shows were missed.
async fn live(
    store: &super::store::EventStore,
    user_id: uuid::Uuid,
    w: &mut Writer,
    msg: Outbound,
) -> Result<(), Stop> {
    match w.cursor.on_live(msg.pos) {
        Step::Skip => return Ok(()),
        Step::Deliver => {}
        Step::Fill { after, upto } => {
            resume::fill(
                store,
                user_id,
                &mut w.cursor,
                Some((after, upto)),
                &mut w.sink,
            )
            .await?;
        }
    }
    // Counted before the bytes move into the message (a clone of them
    // would allocate a shared header per frame).
    let counted = crate::infra::metrics::event_kind(&msg.data);
    if send(&mut w.sink, Message::Text(msg.data)).await {
        crate::infra::metrics::ws_event_delivered_kind(counted);
        Ok(())
    } else {
        Err(Stop::Gone)
    }
}

fn stop_frame(stop: Stop) -> Option<(u16, &'static str)> {
    match stop {
        Stop::Gone => None,
        Stop::Close(r) => Some((r.code(), r.text())),
    }
}

async fn send_close(sink: Option<&mut SocketSink>, close_with: Option<(u16, &'static str)>) {
    crate::infra::metrics::ws_closed(close_with.map(|c| c.0));
    let (Some(sink), Some((code, reason))) = (sink, close_with) else {
        return;
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // A slow consumer's socket is likely stalled: don't wait long on it.
    let wait = if code == CloseReason::SlowConsumer.code() {
        Duration::from_secs(1)
    } else {
        WRITE_DEADLINE
    };
    let _ = tokio::time::timeout(wait, sink.send(Message::Close(Some(frame)))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        let mut h = HeaderMap::new();
        let allowed = vec!["https://App.example.com".to_string()];
        assert!(origin_allowed(&allowed, &h));
        h.insert("origin", "https://app.example.com".parse().unwrap());
        assert!(origin_allowed(&allowed, &h));
        h.insert("origin", "https://evil.example.com".parse().unwrap());
        assert!(!origin_allowed(&allowed, &h));
        assert!(origin_allowed(&["*".to_string()], &h));
        h.insert("origin", "not a url".parse().unwrap());
        assert!(!origin_allowed(&allowed, &h));
    }
}
