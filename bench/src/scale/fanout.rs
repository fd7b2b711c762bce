//! `scale fanout`: one group of `members` (seeded with SQL: no API call per
//! member), every member connected, split over the instances by index;
//! posts at `rate` per second rotate over 200 senders and over the
//! instances. Each post carries its number in its content, so readers
//! record arrivals in fixed counters (no per-frame allocation or JSON parse
//! in the driver). Latency = the post's response → its LAST member's
//! `message.new`; every member must get every message exactly once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use super::super::{fresh_db, ms, percentile, seed_group, seed_users, token, Row, ServerProc};
use super::{connect_all, fd_limit, Spread};

pub struct Cfg {
    pub members: u32,
    pub rate: u32,
    pub secs: u64,
    pub instances: u16,
    pub senders: u32,
}

const MARK: &str = "scale#";

/// Per message: arrivals, the latest arrival and the post's response, in
/// microseconds since the run's origin (0 = not yet).
struct Track {
    origin: Instant,
    arrivals: Vec<AtomicU32>,
    last_us: Vec<AtomicU64>,
    answered_us: Vec<AtomicU64>,
}

impl Track {
    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64 + 1
    }

    /// The message number a `message.new` frame carries, if it is ours.
    fn number(frame: &str) -> Option<usize> {
        if !frame.contains("\"message.new\"") {
            return None;
        }
        let at = frame.find(MARK)? + MARK.len();
        let digits = frame[at..].split('#').next()?;
        digits.parse().ok()
    }
}

pub async fn run(args: &super::super::Args, cfg: Cfg, spread: Spread) -> anyhow::Result<Vec<Row>> {
    fd_limit(cfg.members as u64 + 512)?;
    let db = fresh_db(args).await?;
    let t = Instant::now();
    let ids = seed_users(&db, cfg.members).await?;
    let chat = seed_group(&db, ids[0], &ids).await?;
    db.close().await;
    eprintln!(
        "==> fanout: {} members seeded in {:.1} s",
        cfg.members,
        t.elapsed().as_secs_f64()
    );
    let mut servers = Vec::new();
    for i in 0..cfg.instances {
        servers.push(ServerProc::start(args, args.port + i).await?);
    }
    let total = (cfg.rate as u64 * cfg.secs) as usize;
    let track = Arc::new(Track {
        origin: Instant::now(),
        arrivals: (0..total).map(|_| AtomicU32::new(0)).collect(),
        last_us: (0..total).map(|_| AtomicU64::new(0)).collect(),
        answered_us: (0..total).map(|_| AtomicU64::new(0)).collect(),
    });
    // What each member got: count, and whether any number came twice.
    let per_member: Arc<Vec<(AtomicU32, AtomicU32)>> = Arc::new(
        (0..cfg.members)
            .map(|_| (AtomicU32::new(0), AtomicU32::new(0)))
            .collect(),
    );
    let jobs: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let port = servers[i % servers.len()].port;
            (port, spread.addr(i as u32), token(*u))
        })
        .collect();
    eprintln!(
        "==> fanout: connecting {} members over {} instances from {} addresses",
        cfg.members,
        servers.len(),
        spread.addresses(cfg.members)
    );
    let mut readers = Vec::new();
    let failed = connect_all(jobs, 64, |i, mut ws| {
        let (track, per_member) = (track.clone(), per_member.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = vec![false; track.arrivals.len()];
            while let Some(Ok(msg)) = futures::StreamExt::next(&mut ws).await {
                let Message::Text(t) = msg else { continue };
                let Some(n) = Track::number(&t).filter(|n| *n < seen.len()) else {
                    continue;
                };
                let now = track.now_us();
                track.last_us[n].fetch_max(now, Ordering::Relaxed);
                track.arrivals[n].fetch_add(1, Ordering::Relaxed);
                let (got, twice) = &per_member[i];
                got.fetch_add(1, Ordering::Relaxed);
                if std::mem::replace(&mut seen[n], true) {
                    twice.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    })
    .await;
    if failed > 0 {
        anyhow::bail!("{failed} members could not connect");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!("==> fanout: {total} messages at {}/s", cfg.rate);
    // Each sender task has its own client and sends one post at a time, so
    // 127.0.0.1 holds at most `senders` connections per instance.
    let senders: Arc<Vec<String>> = Arc::new(ids.iter().take(200).map(|u| token(*u)).collect());
    let ports: Arc<Vec<u16>> = Arc::new(servers.iter().map(|s| s.port).collect());
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let every = Duration::from_secs_f64(1.0 / cfg.rate as f64);
    let mut tasks = Vec::new();
    let cpu0 = crate::cpu::Snapshot::take();
    for k in 0..cfg.senders as usize {
        let (track, senders, ports) = (track.clone(), senders.clone(), ports.clone());
        let step = cfg.senders as usize;
        tasks.push(tokio::spawn(async move {
            // A post that takes longer than this counts as failed (and is
            // reported), so a stuck send cannot hang the run.
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client");
            let (mut lat, mut late, mut errors) = (Vec::new(), 0u32, 0u32);
            for n in (k..total).step_by(step) {
                let due = start + every * n as u32;
                if tokio::time::Instant::now() > due + Duration::from_millis(20) {
                    late += 1;
                }
                tokio::time::sleep_until(due).await;
                let url = format!("http://127.0.0.1:{}/api/messages", ports[n % ports.len()]);
                let t0 = Instant::now();
                let res = http
                    .post(&url)
                    .bearer_auth(&senders[n % senders.len()])
                    .json(&serde_json::json!({"chat_id": chat, "content": format!("{MARK}{n}#")}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        track.answered_us[n].store(track.now_us(), Ordering::Relaxed);
                        lat.push(t0.elapsed().as_micros() as u64);
                        let _ = r.bytes().await;
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!("    post {n}: {}", r.status());
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!("    post {n}: {e}");
                        }
                    }
                }
            }
            (lat, late, errors)
        }));
    }
    let (mut post_lat, mut late, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, la, e) = t.await?;
        post_lat.extend(l);
        late += la;
        errors += e;
    }
    // Deliveries still in flight: wait until every answered post reached
    // every member, or 5 s.
    let answered: Vec<usize> = (0..total)
        .filter(|n| track.answered_us[*n].load(Ordering::Relaxed) > 0)
        .collect();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until
        && answered
            .iter()
            .any(|n| track.arrivals[*n].load(Ordering::Relaxed) < cfg.members)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_note = crate::cpu::per_op(&crate::cpu::Snapshot::take(), &cpu0, total as f64);
    for r in readers {
        r.abort();
    }
    let complete = answered
        .iter()
        .filter(|n| track.arrivals[**n].load(Ordering::Relaxed) == cfg.members)
        .count();
    let mut lat: Vec<u64> = answered
        .iter()
        .map(|n| {
            let last = track.last_us[*n].load(Ordering::Relaxed);
            last.saturating_sub(track.answered_us[*n].load(Ordering::Relaxed))
        })
        .collect();
    lat.sort_unstable();
    post_lat.sort_unstable();
    let got_all = per_member
        .iter()
        .filter(|(got, twice)| {
            got.load(Ordering::Relaxed) as usize == answered.len()
                && twice.load(Ordering::Relaxed) == 0
        })
        .count();
    let dupes: u32 = per_member
        .iter()
        .map(|(_, t)| t.load(Ordering::Relaxed))
        .sum();
    Ok(vec![
        Row {
            name: format!(
                "fan-out to {} members, {} msg/s, {} instances",
                cfg.members,
                cfg.rate,
                servers.len()
            ),
            value: format!(
                "p50 {} / p99 {} / max {}",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap_or(&0))
            ),
            goal: "p99 < 100 ms".into(),
            note: format!(
                "{complete}/{} answered posts reached every member; {got_all}/{} members got every \
                 message exactly once ({dupes} duplicates); {errors} posts failed, {late} started late",
                answered.len(),
                cfg.members
            ),
        },
        Row {
            name: "… its POST /api/messages latency".into(),
            value: format!(
                "p50 {} / p99 {}",
                ms(percentile(&post_lat, 0.5)),
                ms(percentile(&post_lat, 0.99))
            ),
            goal: "—".into(),
            note: format!("{} senders, one post at a time each", cfg.senders),
        },
        Row {
            name: "CPU per message (by process)".into(),
            value: cpu_note,
            goal: "—".into(),
            note: "atoitalk-bench is the driver and every member's socket".into(),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_number_of_our_messages_only() {
        let ours = r#"{"type":"message.new","payload":{"content":"scale#42#"},"meta":{}}"#;
        assert_eq!(Track::number(ours), Some(42));
        let other = r#"{"type":"chat.updated","payload":{"content":"scale#42#"}}"#;
        assert_eq!(Track::number(other), None);
    }
}
