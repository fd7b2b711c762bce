//! `scale idle`: N authenticated idle WebSockets on ONE instance. Users are
//! seeded with SQL and their tokens signed with the server's configured
//! `JWT_SECRET` (as sign-in does), so 100,000 users take seconds. Sockets
//! open in `steps` equal steps; after each, the server's VmRSS and the
//! kernel's socket figures are read. Every socket has a reader task, so
//! the server's pings are answered and nothing times out while the rest
//! open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::{fresh_db, seed_users, token, Row, ServerProc};
use super::{connect_all, fd_limit, Spread};

/// Kernel-side figures, from /proc/net/sockstat and /proc/slabinfo.
#[derive(Clone, Copy, Default)]
struct Kernel {
    tcp_inuse: u64,
    /// Pages charged to TCP socket buffers (`TCP: ... mem`).
    tcp_mem_pages: u64,
    /// Bytes of the `TCP` and `sock_inode_cache` slabs (the socket structs).
    slab_bytes: u64,
}

fn kernel() -> Kernel {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let tcp: Vec<&str> = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let field = |name: &str| {
        tcp.iter()
            .position(|w| *w == name)
            .and_then(|p| tcp.get(p + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let slab = std::fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    let slab_bytes = slab
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let wanted = matches!(f.first(), Some(&"TCP") | Some(&"sock_inode_cache"));
            let objs: u64 = f.get(1)?.parse().ok()?;
            let size: u64 = f.get(3)?.parse().ok()?;
            wanted.then_some(objs * size)
        })
        .sum();
    Kernel {
        tcp_inuse: field("inuse"),
        tcp_mem_pages: field("mem"),
        slab_bytes,
    }
}

/// `ws_open_sockets` as the server's `/metrics` reports it.
async fn server_open_sockets(port: u16) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("ws_open_sockets"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

pub async fn run(
    args: &super::super::Args,
    count: u32,
    steps: u32,
    spread: Spread,
) -> anyhow::Result<Vec<Row>> {
    // The bench holds one descriptor per client socket, the server one per
    // accepted socket, plus pools and listeners.
    fd_limit(count as u64 + 512)?;
    let db = fresh_db(args).await?;
    let t = Instant::now();
    let ids = seed_users(&db, count).await?;
    let tokens: Vec<String> = ids.iter().map(|u| token(*u)).collect();
    db.close().await;
    eprintln!(
        "==> idle: {count} users seeded and their tokens signed in {:.1} s; {} source addresses",
        t.elapsed().as_secs_f64(),
        spread.addresses(count)
    );
    let server = ServerProc::start(args, args.port).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_rss = server.rss_kib()?;
    let base_k = kernel();
    let open = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(count as usize);
    let mut points = Vec::new();
    let mut failed = 0;
    let mut jobs: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, tok)| (server.port, spread.addr(i as u32), tok))
        .collect();
    let started = Instant::now();
    for step in 1..=steps {
        let upto = (count as u64 * step as u64 / steps as u64) as usize;
        let opened_so_far = count as usize - jobs.len();
        let batch: Vec<_> = jobs.drain(..upto - opened_so_far).collect();
        failed += connect_all(batch, 64, |_, mut ws| {
            let open = open.clone();
            open.fetch_add(1, Ordering::Relaxed);
            readers.push(tokio::spawn(async move {
                // Reading answers pings; an idle socket gets nothing else.
                while let Some(Ok(_)) = futures::StreamExt::next(&mut ws).await {}
                open.fetch_sub(1, Ordering::Relaxed);
            }));
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let n = open.load(Ordering::Relaxed);
        let (rss, k) = (server.rss_kib()?, kernel());
        eprintln!("    step {step}: {n} open, server RSS {rss} KiB");
        points.push((n, rss, k));
    }
    let connect_secs = started.elapsed().as_secs_f64() - 3.0 * steps as f64;
    let seen = server_open_sockets(server.port).await;
    let (n, rss, k) = *points.last().unwrap_or(&(0, base_rss, base_k));
    let per_conn = |rss_a: u64, rss_b: u64, n_a: u64, n_b: u64| {
        (rss_b.saturating_sub(rss_a)) as f64 / (n_b.saturating_sub(n_a)).max(1) as f64
    };
    let overall = per_conn(base_rss, rss, 0, n);
    let slopes: Vec<String> = points
        .iter()
        .scan((0u64, base_rss), |prev, &(n, rss, _)| {
            let s = per_conn(prev.1, rss, prev.0, n);
            *prev = (n, rss);
            Some(format!("{s:.2}"))
        })
        .collect();
    for r in readers {
        r.abort();
    }
    let per_conn_bytes = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / n.max(1) as f64;
    Ok(vec![
        Row {
            name: format!("{count} idle WebSockets, one instance"),
            value: format!("{overall:.2} KiB per connection"),
            goal: "< 8 KiB".into(),
            note: format!(
                "server VmRSS {base_rss} → {rss} KiB with {n} open (server's ws_open_sockets: {}); \
                 {failed} failed; KiB per connection within each step: {}; opened at {:.0}/s",
                seen.map_or("?".into(), |v| format!("{v:.0}")),
                slopes.join(", "),
                n as f64 / connect_secs.max(0.001),
            ),
        },
        Row {
            name: "kernel, both ends of each loopback connection".into(),
            value: format!(
                "{:.0} B buffers + {:.0} B socket structs per connection",
                per_conn_bytes(base_k.tcp_mem_pages, k.tcp_mem_pages) * 4096.0,
                per_conn_bytes(base_k.slab_bytes, k.slab_bytes),
            ),
            goal: "reported".into(),
            note: format!(
                "/proc/net/sockstat TCP inuse {} → {}, mem {} → {} pages; \
                 TCP + sock_inode_cache slabs {:.1} → {:.1} MiB (whole machine)",
                base_k.tcp_inuse,
                k.tcp_inuse,
                base_k.tcp_mem_pages,
                k.tcp_mem_pages,
                base_k.slab_bytes as f64 / 1048576.0,
                k.slab_bytes as f64 / 1048576.0,
            ),
        },
    ])
}
