//! The fan-out scenario: one group with every member connected over
//! WebSocket; latency from a post's response to the LAST member's
//! `message.new` for it. With `--compare-resume` the same run alternates
//! rounds with the resume store off and on (off, on, off, on, ...) against
//! the same seeded database, so the two sides share the machine's load.

use std::collections::HashMap;

use super::net::{local_ip, ws_connect, PostFailures, Poster};
use super::*;

/// One round's outcome.
struct Round {
    resume: bool,
    lat: Vec<u64>,
    complete: usize,
    sent: usize,
    failures: PostFailures,
}

pub async fn fanout(
    args: &Args,
    members: u32,
    rate: u32,
    secs: u64,
    instances: u16,
    rounds: u32,
    compare_resume: bool,
) -> anyhow::Result<Vec<Row>> {
    let db = fresh_db(args).await?;
    let ids = seed_users(&db, members).await?;
    let chat = seed_group(&db, ids[0], &ids).await?;
    let default_on = env("BENCH_RESUME_ENABLED", "true") != "false";
    let mut done = Vec::new();
    for r in 0..rounds.max(1) {
        let resume = if compare_resume {
            r % 2 == 1
        } else {
            default_on
        };
        // Every round starts from the same Redis state (no streams, no
        // rate-limit counts, no presence).
        redis_flush().await?;
        let round = one_round(args, &ids, chat, rate, secs, instances, r, resume).await?;
        eprintln!(
            "    round {}: resume {}, p99 {}",
            r + 1,
            if resume { "on" } else { "off" },
            ms(percentile(&round.lat, 0.99))
        );
        done.push(round);
    }
    let n = ids.len();
    let mut rows: Vec<Row> = done
        .iter()
        .enumerate()
        .map(|(i, r)| Row {
            name: format!(
                "fan-out to {n} members, {rate} msg/s, {instances} instance(s), round {} (resume {})",
                i + 1,
                if r.resume { "on" } else { "off" }
            ),
            value: format!(
                "p50 {} / p99 {} / max {}",
                ms(percentile(&r.lat, 0.5)),
                ms(percentile(&r.lat, 0.99)),
                ms(*r.lat.last().unwrap_or(&0))
            ),
            goal: "p99 < 50 ms".into(),
            note: format!(
                "{}/{} messages reached every member; {}",
                r.complete, r.sent, r.failures
            ),
        })
        .collect();
    if compare_resume {
        let pooled = |on: bool| {
            let mut all: Vec<u64> = done
                .iter()
                .filter(|r| r.resume == on)
                .flat_map(|r| r.lat.iter().copied())
                .collect();
            all.sort_unstable();
            all
        };
        let (off, on) = (pooled(false), pooled(true));
        let (p_off, p_on) = (percentile(&off, 0.99), percentile(&on, 0.99));
        let ratio = p_on as f64 / p_off.max(1) as f64;
        rows.push(Row {
            name: "fan-out p99, resume store on vs off (rounds pooled)".into(),
            value: format!("on {} / off {} = {ratio:.2}", ms(p_on), ms(p_off)),
            goal: "≤ 1.20".into(),
            note: format!(
                "p50 on {} / off {}",
                ms(percentile(&on, 0.5)),
                ms(percentile(&off, 0.5))
            ),
        });
    }
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
async fn one_round(
    args: &Args,
    ids: &[Uuid],
    chat: Uuid,
    rate: u32,
    secs: u64,
    instances: u16,
    round: u32,
    resume: bool,
) -> anyhow::Result<Round> {
    let on = resume.to_string();
    let mut servers = Vec::new();
    for i in 0..instances.max(1) {
        servers.push(
            ServerProc::start_with(args, args.port + i, &[("RESUME_ENABLED", on.as_str())]).await?,
        );
    }
    let members = ids.len() as u32;
    eprintln!(
        "==> fanout round {}: connecting {members} members over {} instance(s), resume {}",
        round + 1,
        servers.len(),
        if resume { "on" } else { "off" }
    );
    // message id -> per-member receive instants
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut readers = Vec::new();
    for (i, user) in ids.iter().enumerate() {
        let port = servers[i % servers.len()].port;
        // Fresh source addresses each round: the connect budget is per minute.
        let local = local_ip(i as u32 + round * members);
        let mut ws = ws_connect(port, local, &token(*user)).await?;
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                    let now = Instant::now();
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                        if v["type"] == "message.new" {
                            if let Some(id) = v["payload"]["id"].as_str() {
                                let _ = tx.send((id.to_string(), now));
                            }
                        }
                    }
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let poster = Poster::new()?;
    // Senders rotate over the members: one user alone would hit the
    // per-user limit (200 requests/min) within two seconds.
    let senders: Vec<String> = ids.iter().take(200).map(|u| token(*u)).collect();
    let port = servers[0].port;
    let total = rate as u64 * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    eprintln!("==> fanout: {total} messages at {rate}/s");
    let mut ticker = tokio::time::interval(interval);
    let mut posts = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let sender = senders[i as usize % senders.len()].clone();
        let poster = poster.clone();
        posts.push(tokio::spawn(async move {
            poster.message(port, &sender, chat, "fan-out").await
        }));
    }
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut failures = PostFailures::default();
    for p in posts {
        match p.await {
            Ok(Ok((id, t))) => {
                sent.insert(id, t);
            }
            Ok(Err(e)) => failures.add(&e),
            Err(_) => failures.add(&super::net::PostError::Transport),
        }
    }
    // Collect deliveries for a little longer than the last send.
    let mut last: HashMap<String, (Instant, u32)> = HashMap::new();
    let collect_until = Instant::now() + Duration::from_secs(3);
    while let Ok(Some((id, t))) = tokio::time::timeout_at(collect_until.into(), rx.recv()).await {
        let e = last.entry(id).or_insert((t, 0));
        e.0 = e.0.max(t);
        e.1 += 1;
    }
    let mut lat = Vec::new();
    let mut complete = 0;
    for (id, posted) in &sent {
        if let Some((t, n)) = last.get(id) {
            if *n == members {
                complete += 1;
            }
            lat.push(t.saturating_duration_since(*posted).as_micros() as u64);
        }
    }
    lat.sort_unstable();
    for r in readers {
        r.abort();
    }
    for s in servers {
        s.stop().await;
    }
    Ok(Round {
        resume,
        lat,
        complete,
        sent: sent.len(),
        failures,
    })
}
