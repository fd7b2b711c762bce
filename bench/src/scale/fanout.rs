//! `scale fanout`: one group of `members` (seeded with SQL: no API call per
//! member), every member connected, split over the instances by index;
//! posts at `rate` per second rotate over 200 senders and over the
//! instances. Each post carries its number in its content, so readers
//! record arrivals in fixed counters (no per-frame allocation or JSON parse
//! in the driver). Latency = the post's response → its LAST member's
//! `message.new`; every member must get every message exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::{fresh_db, ms, percentile, seed_group, seed_users, token, Row, ServerProc};
use super::track::{Track, MARK};
use super::{fd_limit, Spread};

pub struct Cfg {
    pub members: u32,
    pub rate: u32,
    pub secs: u64,
    pub instances: u16,
    pub senders: u32,
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
    let track = Track::new(total, cfg.members);
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
    let readers = track.connect(jobs).await?;

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
                        track.sent(n);
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
    // The rate asked for is not always the rate reached: a chat's sends
    // wait on each other, so a slow send makes the later ones late.
    let achieved = post_lat.len() as f64 / start.elapsed().as_secs_f64().max(1e-3);
    // Deliveries still in flight: wait until every answered post reached
    // every member, or 5 s.
    track.settle().await;
    let cpu_note = crate::cpu::per_op(&crate::cpu::Snapshot::take(), &cpu0, total as f64);
    for r in readers {
        r.abort();
    }
    post_lat.sort_unstable();
    Ok(vec![
        track.row(
            format!(
                "fan-out to {} members, {} msg/s, {} instances",
                cfg.members,
                cfg.rate,
                servers.len()
            ),
            &format!("; {errors} posts failed, {late} started late ({achieved:.0} msg/s reached)"),
        ),
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
