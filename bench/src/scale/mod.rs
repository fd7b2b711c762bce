//! Issue 21 §3, larger scale targets: `scale idle` (many idle authenticated
//! sockets on one instance, memory per connection) and `scale fanout` (a
//! large group over two instances, time to the last member) and `scale
//! floor` (the same delivery from plain WebSocket servers: the machine's
//! own floor for it).
//!
//! Both need many client sockets from one machine, so clients bind to
//! loopback source addresses from 127.0.0.2 on ([`Spread`]): a few hundred
//! sockets per address stay under the per-address caps (300 `/ws` connects
//! a minute, `HTTP_MAX_CONNECTIONS_PER_IP` = 256 open connections) and each
//! address has its own ephemeral ports. Server settings are the defaults;
//! the servers inherit the bench's environment, so any other setting
//! (e.g. `HTTP_MAX_CONNECTIONS_PER_IP`) can be given for a run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::net::WsStream;

mod fanout;
mod floor;
mod idle;
mod track;

#[derive(clap::Subcommand, Clone)]
pub enum Which {
    /// N idle authenticated WebSockets on one instance: RSS per connection
    /// and the kernel's socket memory.
    Idle {
        #[arg(long, default_value_t = 100_000)]
        count: u32,
        /// Measure after each of this many equal steps (shows the slope).
        #[arg(long, default_value_t = 4)]
        steps: u32,
        #[arg(long, default_value_t = 250)]
        per_address: u32,
    },
    /// A group with every member connected over several instances; time
    /// from each send's response to its LAST member.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        members: u32,
        #[arg(long, default_value_t = 10)]
        rate: u32,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, default_value_t = 2)]
        instances: u16,
        /// Sender connections (each sends its posts one after another), so
        /// the sender's address never holds more than this many.
        #[arg(long, default_value_t = 8)]
        senders: u32,
        #[arg(long, default_value_t = 250)]
        per_address: u32,
    },
    /// `fanout`'s delivery with nothing of AtoiTalk in it: plain WebSocket
    /// servers sending one frame to every member per trigger (the machine's
    /// own floor for the same driver, sockets and rate).
    Floor {
        #[arg(long, default_value_t = 10_000)]
        members: u32,
        #[arg(long, default_value_t = 10)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long, default_value_t = 2)]
        instances: u16,
        /// Frame size; `scale fanout` reports what a real `message.new` weighs.
        #[arg(long, default_value_t = 534)]
        bytes: usize,
        /// One thread per instance writes the encoded frame to each socket
        /// in turn (no task per socket, no runtime): the system calls alone.
        #[arg(long)]
        raw: bool,
        #[arg(long, default_value_t = 250)]
        per_address: u32,
    },
    /// One `floor` instance (started by `floor` itself).
    #[command(hide = true)]
    FloorServe {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        bytes: usize,
        #[arg(long)]
        raw: bool,
    },
}

pub async fn run(args: &super::Args, which: Which) -> anyhow::Result<Vec<super::Row>> {
    match which {
        Which::Idle {
            count,
            steps,
            per_address,
        } => idle::run(args, count, steps.max(1), Spread::new(per_address)).await,
        Which::Fanout {
            members,
            rate,
            secs,
            instances,
            senders,
            per_address,
        } => {
            let cfg = fanout::Cfg {
                members,
                rate: rate.max(1),
                secs,
                instances: instances.max(1),
                senders: senders.max(1),
            };
            fanout::run(args, cfg, Spread::new(per_address)).await
        }
        Which::Floor {
            members,
            rate,
            secs,
            instances,
            bytes,
            raw,
            per_address,
        } => {
            let cfg = floor::Cfg {
                members,
                rate: rate.max(1),
                secs,
                instances: instances.max(1),
                bytes,
                raw,
            };
            floor::run(args, cfg, Spread::new(per_address)).await
        }
        Which::FloorServe { port, bytes, raw } => floor::serve(port, bytes, raw).await,
    }
}

/// Lifts this process's soft open-file limit to the hard one (the servers
/// it starts inherit it, and raise their own too) and fails early, naming
/// the limit, when `need` descriptors do not fit.
fn fd_limit(need: u64) -> anyhow::Result<u64> {
    let (soft, hard) = atoitalk::infra::fd_limit::raise_nofile()?;
    eprintln!("    open-file limit: soft {soft}, hard {hard}; this run needs about {need}");
    if soft < need {
        anyhow::bail!(
            "the open-file hard limit is {hard}, but this run needs about {need} descriptors \
             in the bench and in the server; raise it as root (`ulimit -Hn {need}`, \
             `LimitNOFILE={need}`) or lower the count"
        );
    }
    Ok(soft)
}

/// Loopback source addresses 127.0.0.2, .3, ... with `per` sockets each
/// (127.0.0.1 is left to the bench's HTTP senders).
#[derive(Clone, Copy)]
pub struct Spread {
    per: u32,
}

impl Spread {
    fn new(per: u32) -> Self {
        Self { per: per.max(1) }
    }

    /// The source address of client `i`: hosts .2–.254 of 127.0.0.0/24,
    /// then of 127.0.1.0/24, and so on.
    fn addr(self, i: u32) -> Ipv4Addr {
        let n = i / self.per;
        let block = n / 253;
        Ipv4Addr::new(
            127,
            (block / 256) as u8,
            (block % 256) as u8,
            (n % 253 + 2) as u8,
        )
    }

    fn addresses(self, clients: u32) -> u32 {
        clients.div_ceil(self.per)
    }
}

/// A client socket with a small read buffer: tungstenite's default 128 KiB
/// is zero-filled on first read, which would make the CLIENT side of
/// 100,000 sockets cost 12 GiB.
async fn connect(port: u16, local: Ipv4Addr, token: &str) -> anyhow::Result<WsStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(local), 0))?;
    let stream = sock
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .with_context(|| format!("connect from {local}"))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://127.0.0.1:{port}/ws?token={token}");
    let cfg = WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(cfg)).await?;
    Ok(ws)
}

/// Opens sockets for `(port, source address, token)` with `parallel` handshakes
/// in flight, each tried up to three times; hands every open socket to
/// `keep` with its index and returns how many failed.
async fn connect_all<F>(jobs: Vec<(u16, Ipv4Addr, String)>, parallel: usize, mut keep: F) -> u32
where
    F: FnMut(usize, WsStream),
{
    let total = jobs.len();
    let mut opening = futures::stream::iter(jobs.into_iter().enumerate().map(
        |(i, (port, local, token))| async move {
            let mut last = None;
            for attempt in 0..3u64 {
                match connect(port, local, &token).await {
                    Ok(ws) => return (i, Ok(ws)),
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(std::time::Duration::from_millis(200 * (attempt + 1))).await;
            }
            (
                i,
                Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt"))),
            )
        },
    ))
    .buffer_unordered(parallel);
    let (mut done, mut failed) = (0usize, 0u32);
    while let Some((i, res)) = opening.next().await {
        done += 1;
        match res {
            Ok(ws) => keep(i, ws),
            Err(e) => {
                if failed < 5 {
                    eprintln!("    socket {i} failed: {e:#}");
                }
                failed += 1;
            }
        }
        if done % 10_000 == 0 || done == total {
            eprintln!("    {done}/{total} handshakes ({failed} failed)");
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_skips_the_senders_address_and_broadcast_hosts() {
        let s = Spread::new(250);
        assert_eq!(s.addr(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(s.addr(249), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(s.addr(250), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(s.addr(252 * 250), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(s.addr(253 * 250), Ipv4Addr::new(127, 0, 1, 2));
        assert_eq!(s.addresses(100_000), 400);
    }
}
