//! The bench's client side of the network: WebSockets from chosen loopback
//! source addresses, one bounded HTTP sender, and the open-file limit.
//!
//! The server caps what one address may do: 300 WebSocket connects a
//! minute (`ws_connect`) and 256 open connections (`HTTP_MAX_CONNECTIONS_PER_IP`).
//! A real deployment has many client addresses; the bench imitates that by
//! binding each socket to an address of 127.0.0.0/8 before connecting,
//! instead of lifting the server's caps.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use uuid::Uuid;

pub type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Sockets per source address: under both per-address caps (300
/// connects/min, 256 open).
const PER_ADDRESS: u32 = 250;

/// The source address of client socket number `i` (250 per address,
/// 127.0.1.2 onwards). Give a reconnect a number no earlier socket had, so
/// it comes from an address whose connect budget is unused.
pub fn local_ip(i: u32) -> Ipv4Addr {
    let n = i / PER_ADDRESS;
    Ipv4Addr::new(127, 0, (n / 250 + 1) as u8, (n % 250 + 2) as u8)
}

/// The source address of the bench's HTTP sender: apart from every
/// [`local_ip`] (those stop at 127.0.250.x long before this).
pub const SENDER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 255, 1);

/// Opens `/ws?<query>` from `local`.
pub async fn ws_connect_query(
    port: u16,
    local: Ipv4Addr,
    query: &str,
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(local), 0))?;
    let stream = sock
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    let url = format!("ws://127.0.0.1:{port}/ws?{query}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

/// [`ws_connect_query`] with just a token.
pub async fn ws_connect(port: u16, local: Ipv4Addr, token: &str) -> anyhow::Result<WsStream> {
    Ok(ws_connect_query(port, local, &format!("token={token}")).await?)
}

/// The HTTP status of a refused upgrade, with the start of its body.
pub fn refusal(e: &tokio_tungstenite::tungstenite::Error) -> Option<(u16, String)> {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            let body = r
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned())
                .unwrap_or_default();
            Some((r.status().as_u16(), body))
        }
        _ => None,
    }
}

/// Requests the sender keeps in flight at most (= its open connections).
pub const SENDER_CONNECTIONS: usize = 64;

/// The bench's one HTTP sender. Every post waits for one of
/// [`SENDER_CONNECTIONS`] slots, so the client never opens more
/// connections than that from [`SENDER_IP`], however slow the server gets
/// (reqwest alone opens a new connection whenever all are busy, which is
/// how an earlier fan-out run met the 256-per-address cap).
#[derive(Clone)]
pub struct Poster {
    http: reqwest::Client,
    slots: Arc<Semaphore>,
}

/// How a post ended when it did not return a message.
#[derive(Debug)]
pub enum PostError {
    Status(u16),
    Transport,
}

impl Poster {
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .local_address(IpAddr::V4(SENDER_IP))
            .pool_max_idle_per_host(SENDER_CONNECTIONS)
            .build()?;
        Ok(Self {
            http,
            slots: Arc::new(Semaphore::new(SENDER_CONNECTIONS)),
        })
    }

    /// `POST /api/messages`; the new message's id and when the response
    /// arrived.
    pub async fn message(
        &self,
        port: u16,
        token: &str,
        chat: Uuid,
        content: &str,
    ) -> Result<(String, Instant), PostError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| PostError::Transport)?;
        let r = self
            .http
            .post(format!("http://127.0.0.1:{port}/api/messages"))
            .bearer_auth(token)
            .json(&serde_json::json!({"chat_id": chat, "content": content}))
            .send()
            .await
            .map_err(|_| PostError::Transport)?;
        let done = Instant::now();
        let status = r.status();
        let v: serde_json::Value = r.json().await.map_err(|_| PostError::Transport)?;
        match v["data"]["id"].as_str() {
            Some(id) if status.is_success() => Ok((id.to_string(), done)),
            _ => Err(PostError::Status(status.as_u16())),
        }
    }
}

/// Counts of failed posts by cause, for the report.
#[derive(Default, Debug)]
pub struct PostFailures(pub std::collections::BTreeMap<String, u32>);

impl PostFailures {
    pub fn add(&mut self, e: &PostError) {
        let k = match e {
            PostError::Status(s) => s.to_string(),
            PostError::Transport => "transport".to_string(),
        };
        *self.0.entry(k).or_default() += 1;
    }

    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }
}

impl std::fmt::Display for PostFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "0 posts failed");
        }
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{n}× {k}")).collect();
        write!(f, "{} posts failed ({})", self.total(), parts.join(", "))
    }
}

/// Raises this process's open-file limit (the servers it starts inherit
/// it): a storm holds 10,000 sockets here plus reconnects, and each server
/// its half of them. Tries `want`, else the hard limit.
pub fn raise_fd_limit(want: u64) {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) != 0 {
            return;
        }
        if cur.rlim_cur >= want {
            return;
        }
        let high = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(cur.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &high) != 0 {
            let hard = libc::rlimit {
                rlim_cur: cur.rlim_max,
                rlim_max: cur.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &hard);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
    }
    eprintln!("==> open-file limit {}", cur.rlim_cur);
}
