//! `scale floor`: the fan-out of `scale fanout` with nothing of AtoiTalk in
//! it — the machine's own floor for "one frame to N sockets". Each instance
//! is this binary in a hidden `scale floor-serve` mode: a plain
//! tokio-tungstenite server (the library under axum's WebSocket) whose
//! connections each wait on one `tokio::sync::broadcast`; a trigger line on
//! its control port makes it send one frame of the given size to all of
//! them. The driver, the members' sockets, the loopback addresses, the
//! rate and the latency (trigger → last member) are those of `scale
//! fanout`, so the two runs differ only in what the server does per
//! message: no database, no Redis, no resume store, no per-member counter.

use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::super::Row;
use super::track::{Track, MARK};
use super::{fd_limit, Spread};

pub struct Cfg {
    pub members: u32,
    pub rate: u32,
    pub secs: u64,
    pub instances: u16,
    pub bytes: usize,
    /// Instances write the encoded frame straight to each socket from one
    /// thread (no task per socket): the floor of the system calls alone.
    pub raw: bool,
}

/// An instance's control port: its WebSocket port + this.
const CONTROL_OFFSET: u16 = 1000;

pub async fn run(args: &super::super::Args, cfg: Cfg, spread: Spread) -> anyhow::Result<Vec<Row>> {
    fd_limit(cfg.members as u64 + 512)?;
    let exe = std::env::current_exe().context("finding the bench binary")?;
    let mut servers = Vec::new();
    let mut controls = Vec::new();
    for i in 0..cfg.instances {
        let port = args.port + i;
        servers.push(
            tokio::process::Command::new(&exe)
                .args(["--bin", &args.bin, "scale", "floor-serve"])
                .args(["--port", &port.to_string()])
                .args(["--bytes", &cfg.bytes.to_string()])
                .args(cfg.raw.then_some("--raw"))
                .kill_on_drop(true)
                .spawn()
                .context("starting a floor instance")?,
        );
        controls.push(control(port + CONTROL_OFFSET).await?);
    }
    let ports: Vec<u16> = (0..cfg.instances).map(|i| args.port + i).collect();
    let total = (cfg.rate as u64 * cfg.secs) as usize;
    let track = Track::new(total, cfg.members);
    let jobs: Vec<_> = (0..cfg.members)
        .map(|i| {
            (
                ports[i as usize % ports.len()],
                spread.addr(i),
                String::new(),
            )
        })
        .collect();
    eprintln!(
        "==> floor: connecting {} members over {} plain WebSocket instances",
        cfg.members, cfg.instances
    );
    let readers = track.connect(jobs).await?;
    eprintln!("==> floor: {total} messages at {}/s", cfg.rate);
    let every = Duration::from_secs_f64(1.0 / cfg.rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let cpu0 = crate::cpu::Snapshot::take();
    for n in 0..total {
        tokio::time::sleep_until(start + every * n as u32).await;
        // Every instance sends every message (each to its own members).
        for c in &mut controls {
            c.write_all(format!("{n}\n").as_bytes()).await?;
        }
        track.sent(n);
    }
    track.settle().await;
    let cpu_note = crate::cpu::per_op(&crate::cpu::Snapshot::take(), &cpu0, total as f64);
    for r in readers {
        r.abort();
    }
    drop(servers);
    Ok(vec![
        track.row(
            format!(
                "floor ({}): WebSocket fan-out to {} members, {} msg/s, {} instances",
                if cfg.raw {
                    "one writer thread"
                } else {
                    "task per socket"
                },
                cfg.members,
                cfg.rate,
                cfg.instances
            ),
            "",
        ),
        Row {
            name: "CPU per message (by process)".into(),
            value: cpu_note,
            goal: "—".into(),
            note: "floor-serve are the instances; atoitalk-bench is the driver and every \
                   member's socket"
                .into(),
        },
    ])
}

/// Connects to an instance's control port, waiting for it to listen.
async fn control(port: u16) -> anyhow::Result<TcpStream> {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s.set_nodelay(true);
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the floor instance on control port {port} did not start")
}

/// One floor instance (never returns): members on `port`, triggers on
/// `port + 1000`, one `bytes`-sized `message.new` frame per trigger line.
pub async fn serve(port: u16, bytes: usize, raw: bool) -> anyhow::Result<Vec<Row>> {
    // Its own name in /proc, so the CPU table tells it from the driver.
    let _ = std::fs::write("/proc/self/comm", "floor-serve");
    if raw {
        return tokio::task::spawn_blocking(move || serve_raw(port, bytes)).await?;
    }
    let members = TcpListener::bind(("127.0.0.1", port)).await?;
    let triggers = TcpListener::bind(("127.0.0.1", port + CONTROL_OFFSET)).await?;
    // As deep as the server's own per-socket queue (hub::SEND_QUEUE).
    let (tx, _) = broadcast::channel::<Utf8Bytes>(256);
    let to = tx.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = triggers.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = to.send(Utf8Bytes::from(frame(line.trim(), bytes)));
                }
            });
        }
    });
    loop {
        let (stream, _) = members.accept().await?;
        let mut rx = tx.subscribe();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            // The server's own socket settings (src/realtime/ws.rs): the
            // default 128 KiB read buffer is zero-filled on every read.
            let cfg = WebSocketConfig::default()
                .read_buffer_size(1024)
                .write_buffer_size(0);
            let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(cfg)).await
            else {
                return;
            };
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(text) => if ws.send(Message::Text(text)).await.is_err() { return },
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    incoming = ws.next() => if !matches!(incoming, Some(Ok(_))) { return },
                }
            }
        });
    }
}

/// [`serve`] without a runtime: handshakes on one thread, and per trigger
/// one thread writes the encoded frame to every socket in turn (a socket
/// whose buffer is full loses the frame, and says so).
fn serve_raw(port: u16, bytes: usize) -> anyhow::Result<Vec<Row>> {
    use std::io::{BufRead, Write};
    use std::sync::{Arc, Mutex};
    let members = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let triggers = std::net::TcpListener::bind(("127.0.0.1", port + CONTROL_OFFSET))?;
    type Ws = tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream>;
    let socks: Arc<Mutex<Vec<Ws>>> = Arc::default();
    let to = socks.clone();
    std::thread::spawn(move || {
        for stream in triggers.incoming().flatten() {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                let text = frame(line.trim(), bytes);
                // Unmasked text frame, 16-bit length (126..65535 bytes).
                let mut wire = vec![0x81, 126];
                wire.extend_from_slice(&(text.len() as u16).to_be_bytes());
                wire.extend_from_slice(text.as_bytes());
                let mut lost = 0;
                for s in to.lock().expect("sockets").iter_mut() {
                    if !matches!(s.get_mut().write(&wire), Ok(n) if n == wire.len()) {
                        lost += 1;
                    }
                }
                if lost > 0 {
                    eprintln!("    floor-serve {port}: {lost} sockets lost frame {line}");
                }
            }
        }
    });
    for stream in members.incoming().flatten() {
        let _ = stream.set_nodelay(true);
        let Ok(ws) = tokio_tungstenite::tungstenite::accept(stream) else {
            continue;
        };
        ws.get_ref().set_nonblocking(true)?;
        socks.lock().expect("sockets").push(ws);
    }
    Ok(Vec::new())
}

/// A `message.new` frame of message `n`, padded to about `bytes`.
fn frame(n: &str, bytes: usize) -> String {
    let head = format!(r#"{{"type":"message.new","payload":{{"content":"{MARK}{n}#","pad":""#);
    let tail = r#""},"meta":{}}"#;
    let pad = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_frame_has_the_size_asked_and_carries_its_number() {
        let f = frame("17", 700);
        assert_eq!(f.len(), 700);
        assert_eq!(Track::number(&f), Some(17));
        assert!(serde_json::from_str::<serde_json::Value>(&f).is_ok());
    }
}
