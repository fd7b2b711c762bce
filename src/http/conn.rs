//! Per-connection protections under hyper: the socket wrapper that enforces
//! the header-read, keep-alive idle and write-stall timeouts, and the cap on
//! open connections per client address.
//!
//! hyper's own `header_read_timeout` starts when it begins waiting for a
//! request, so it cannot tell a keep-alive pause from a slow header; the
//! wrapper tells them apart by knowing whether a request is in flight
//! (counted by the service wrapper in `server.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};

/// What the service side tells the socket side about one connection.
#[derive(Default)]
pub struct ConnState {
    in_flight: AtomicUsize,
    upgraded: AtomicBool,
    /// The last pending read, woken when the last response finishes so the
    /// idle timer starts even if hyper has nothing else to do.
    reader: AtomicWaker,
}

/// Held from the moment a request is dispatched until its response body is
/// dropped (fully written or abandoned).
pub struct InFlight(Arc<ConnState>);

impl InFlight {
    pub fn start(conn: &Arc<ConnState>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(conn.clone())
    }

    /// The response switches protocols (WebSocket): from now on the socket
    /// belongs to the upgraded protocol, which has its own deadlines.
    pub fn upgraded(&self) {
        self.0.upgraded.store(true, Ordering::Release);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Between requests, nothing received yet.
    Idle,
    /// A request is being served; its handler has its own timeout.
    Busy,
    Upgraded,
}

/// A TCP stream with the listener's deadlines. A deadline that passes
/// surfaces as a `TimedOut` error, on which hyper drops the connection.
pub struct GuardedIo {
    stream: TcpStream,
    conn: Arc<ConnState>,
    timeouts: Timeouts,
    phase: Phase,
    read_deadline: Option<Pin<Box<Sleep>>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
    _permit: Option<IpPermit>,
}

impl GuardedIo {
    /// The first request head must be complete `header` after accept.
    pub fn new(
        stream: TcpStream,
        conn: Arc<ConnState>,
        timeouts: Timeouts,
        permit: Option<IpPermit>,
    ) -> Self {
        Self {
            stream,
            conn,
            timeouts,
            phase: Phase::Head,
            read_deadline: Some(Box::pin(sleep_until(Instant::now() + timeouts.header))),
            write_deadline: None,
            _permit: permit,
        }
    }

    fn arm_read(&mut self, after: Duration) {
        let at = Instant::now() + after;
        match &mut self.read_deadline {
            Some(s) => s.as_mut().reset(at),
            None => self.read_deadline = Some(Box::pin(sleep_until(at))),
        }
    }

    fn is_upgraded(&mut self) -> bool {
        if self.phase != Phase::Upgraded && self.conn.upgraded.load(Ordering::Acquire) {
            self.phase = Phase::Upgraded;
            self.read_deadline = None;
            self.write_deadline = None;
        }
        self.phase == Phase::Upgraded
    }

    /// Fails a write that has made no progress for the idle timeout (a
    /// client that stopped reading its response).
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.is_upgraded() {
            return res;
        }
        if res.is_ready() {
            self.write_deadline = None;
            return res;
        }
        let idle = self.timeouts.idle;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(sleep_until(Instant::now() + idle)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response write stalled",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_upgraded() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        this.conn.reader.register(cx.waker());
        if this.conn.in_flight.load(Ordering::Acquire) > 0 {
            this.phase = Phase::Busy;
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        if this.phase == Phase::Busy {
            this.phase = Phase::Idle;
            this.arm_read(this.timeouts.idle);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.phase = Phase::Head;
                    this.arm_read(this.timeouts.header);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(d) = this.read_deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        let what = if this.phase == Phase::Head {
                            "request header read timed out"
                        } else {
                            "idle keep-alive connection timed out"
                        };
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch_write(cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Open connections per client address. The TCP peer is what counts here
/// (no headers exist yet); trusted proxies carry many clients, so they are
/// exempt and the per-user limits behind them apply instead.
pub struct PerIpLimiter {
    max: usize,
    trusted: Vec<IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
    last_warning: AtomicU64,
    started: std::time::Instant,
}

/// One counted connection; releases its slot when dropped (for a WebSocket,
/// when the socket closes).
pub struct IpPermit {
    limiter: Arc<PerIpLimiter>,
    key: IpAddr,
}

impl PerIpLimiter {
    pub fn new(max: usize, trusted: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self {
            max,
            trusted,
            open: Mutex::default(),
            last_warning: AtomicU64::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// `Ok(None)`: not counted (no cap or a trusted proxy); `Err(())`: the
    /// address is at its cap.
    #[allow(clippy::result_unit_err)]
    pub fn acquire(self: &Arc<Self>, peer: IpAddr) -> Result<Option<IpPermit>, ()> {
        let peer = peer.to_canonical();
        if self.max == 0 || self.trusted.iter().any(|n| n.contains(&peer)) {
            return Ok(None);
        }
        let key = cap_key(peer);
        let mut open = self.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            drop(open);
            self.warn_refused(key);
            return Err(());
        }
        *n += 1;
        Ok(Some(IpPermit {
            limiter: self.clone(),
            key,
        }))
    }

    fn warn_refused(&self, key: IpAddr) {
        // At most one line per 10 s: a flood must not become a log flood.
        let now = self.started.elapsed().as_secs() + 10;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(client = %key, max = self.max, "connection refused: too many open connections from this address");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Every critical section is one counter update; a poisoned map is intact.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// IPv4 addresses count alone; IPv6 by /64, the block one subscriber holds.
fn cap_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_cap_counts_releases_and_exempts_proxies() {
        let limiter = PerIpLimiter::new(2, vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let p1 = limiter.acquire(a).unwrap();
        let _p2 = limiter.acquire(a).unwrap();
        assert!(limiter.acquire(a).is_err());
        assert!(limiter.acquire("192.0.2.2".parse().unwrap()).is_ok());
        drop(p1);
        assert!(limiter.acquire(a).is_ok());
        for _ in 0..10 {
            assert!(limiter
                .acquire("10.1.2.3".parse().unwrap())
                .unwrap()
                .is_none());
        }
        // One IPv6 subscriber (/64) is one address; the mapped IPv4 form is the IPv4.
        let v6 = PerIpLimiter::new(1, vec![]);
        let _k = v6.acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert!(v6.acquire("2001:db8::ffff:1".parse().unwrap()).is_err());
        assert!(v6.acquire("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _m = v6.acquire("::ffff:192.0.2.9".parse().unwrap()).unwrap();
        assert!(v6.acquire("192.0.2.9".parse().unwrap()).is_err());
    }
}
