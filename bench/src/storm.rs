//! The reconnect storm (issue 16): every user connected over two instances,
//! messages flowing into their groups, then every socket drops and comes
//! back with `since` within the window. Checks that every user ends up with
//! exactly the messages of their group (none missing, none twice, no
//! `sync.reset`) and measures replay latency, server and Redis CPU during
//! the storm, and Redis memory per retained event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::net::{local_ip, refusal, ws_connect_query, PostFailures, Poster, WsStream};
use super::*;

/// What one user's sockets received, across both lives.
#[derive(Default)]
struct Log {
    last_seq: Option<String>,
    got: Vec<(String, Instant)>,
    /// (epoch, n) of every frame with `meta.seq`, and which life got it.
    seqs: Vec<(u64, u64, u8)>,
    /// 0 before the drop, 1 after the reconnect.
    life: u8,
    resets: u32,
}

/// `<epoch>.<n>-<ms>` → (epoch, n).
fn seq_parts(s: &str) -> Option<(u64, u64)> {
    let (e, rest) = s.split_once('.')?;
    let (n, _) = rest.split_once('-')?;
    Some((e.parse().ok()?, n.parse().ok()?))
}

/// Whether the events a user received are exactly in store order with
/// nothing missing: each life's positions consecutive, one epoch, and the
/// second life starting right after `since`.
fn in_order(l: &Log, since: Option<(u64, u64)>) -> bool {
    let dense = |life: u8| {
        let v: Vec<(u64, u64)> = l
            .seqs
            .iter()
            .filter(|s| s.2 == life)
            .map(|s| (s.0, s.1))
            .collect();
        v.windows(2)
            .all(|w| w[1].0 == w[0].0 && w[1].1 == w[0].1 + 1)
    };
    let seam = match (since, l.seqs.iter().find(|s| s.2 == 1)) {
        (Some((e, n)), Some(first)) => first.0 == e && first.1 == n + 1,
        _ => true,
    };
    dense(0) && dense(1) && seam
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads a socket until it ends, recording message.new ids and positions.
fn reader(mut ws: WsStream, log: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let tokio_tungstenite::tungstenite::Message::Text(t) = msg else {
                continue;
            };
            let now = Instant::now();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                continue;
            };
            let mut l = lock(&log);
            if let Some(s) = v["meta"]["seq"].as_str() {
                l.last_seq = Some(s.to_string());
                if let Some((e, n)) = seq_parts(s) {
                    let life = l.life;
                    l.seqs.push((e, n, life));
                }
            }
            match v["type"].as_str() {
                Some("message.new") => {
                    if let Some(id) = v["payload"]["id"].as_str() {
                        l.got.push((id.to_string(), now));
                    }
                }
                Some("sync.reset") => l.resets += 1,
                _ => {}
            }
        }
    })
}

/// Attempts a reconnect makes at most.
const ATTEMPTS: u32 = 8;

/// Reconnects as a real client would: a refused upgrade (429, 503) or a
/// failed connection is retried after a back-off (250 ms doubling to 4 s,
/// with jitter), each attempt from a fresh source address (a real client
/// has its own; the bench's addresses are shared by 250 sockets and have
/// a connect budget per minute). Returns the socket and why each failed
/// attempt failed.
async fn reconnect(
    port: u16,
    i: u32,
    users: u32,
    block: u32,
    query: &str,
) -> (Option<WsStream>, Vec<String>) {
    let mut failures = Vec::new();
    for attempt in 0..ATTEMPTS {
        let local = local_ip(i + users * (block + attempt));
        match ws_connect_query(port, local, query).await {
            Ok(ws) => return (Some(ws), failures),
            Err(e) => {
                let why = match refusal(&e) {
                    Some((status, body)) => format!("{status} {body}"),
                    None => format!("{e}"),
                };
                if failures.is_empty() && i.is_multiple_of(500) {
                    eprintln!("    reconnect {i} attempt {attempt} failed: {why}");
                }
                failures.push(why);
            }
        }
        let base = 250u64 << attempt.min(4);
        let jitter = (Uuid::new_v4().as_u128() % base as u128) as u64;
        tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
    }
    (None, failures)
}

/// user, utime+stime in seconds, of a process.
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: utime is the 12th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn redis_cli(input: String) -> anyhow::Result<Vec<String>> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("redis-cli")
        .args([
            "-h",
            &env("BENCH_REDIS_HOST", "127.0.0.1"),
            "-p",
            &env("BENCH_REDIS_PORT", "6379"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

async fn redis_pid() -> Option<u32> {
    redis_cli("INFO server\n".into())
        .await
        .ok()?
        .iter()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes per stored event over a sample of users' streams.
async fn bytes_per_event(users: &[Uuid]) -> anyhow::Result<(f64, u64)> {
    let mut cmds = String::new();
    for u in users {
        let tag = format!("{}rt:{{u:{u}}}", redis_prefix());
        cmds.push_str(&format!("MEMORY USAGE {tag}:e SAMPLES 0\nXLEN {tag}:e\n"));
    }
    let lines = redis_cli(cmds).await?;
    let (mut bytes, mut events) = (0u64, 0u64);
    for c in lines.chunks(2) {
        let n = |i: usize| {
            c.get(i)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        bytes += n(0);
        events += n(1);
    }
    Ok((bytes as f64 / events.max(1) as f64, events))
}

pub async fn storm(
    args: &Args,
    users: u32,
    group_size: u32,
    rate: u32,
    window: u64,
) -> anyhow::Result<Vec<Row>> {
    let db = fresh_db(args).await?;
    let ids = seed_users(&db, users).await?;
    let mut groups = Vec::new();
    for chunk in ids.chunks(group_size.max(2) as usize) {
        groups.push((seed_group(&db, chunk[0], chunk).await?, chunk.to_vec()));
    }
    let servers = [
        ServerProc::start(args, args.port).await?,
        ServerProc::start(args, args.port + 1).await?,
    ];
    eprintln!("==> storm: connecting {users} users over 2 instances");
    let logs: Vec<Shared> = ids.iter().map(|_| Shared::default()).collect();
    let mut readers = Vec::new();
    let mut initial_retries = 0usize;
    for (i, user) in ids.iter().enumerate() {
        let q = format!("token={}", token(*user));
        // Address blocks 0..8 for the first connects, 10..18 for the storm.
        let (ws, failed) = reconnect(servers[i % 2].port, i as u32, users, 0, &q).await;
        initial_retries += failed.len();
        let ws = ws.with_context(|| format!("first connect of user {i}: {failed:?}"))?;
        readers.push(reader(ws, logs[i].clone()));
        if (i + 1) % 2000 == 0 {
            eprintln!("    {} connected", i + 1);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Messages flow for warm-up + window + settle, through both instances.
    let warmup = Duration::from_secs(3);
    // Flows until told to stop (2 s after the last reconnect), bounded.
    let flow_for = warmup + Duration::from_secs(window + 60);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let poster = Poster::new()?;
    let ports = [servers[0].port, servers[1].port];
    let groups2 = groups.clone();
    let producer = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut posts = Vec::new();
        let started = Instant::now();
        let mut i = 0usize;
        while started.elapsed() < flow_for && !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            ticker.tick().await;
            let (chat, members) = &groups2[i % groups2.len()];
            let sender = token(members[(i / groups2.len()) % members.len()]);
            let (poster, chat, g, port) = (poster.clone(), *chat, i % groups2.len(), ports[i % 2]);
            posts.push(tokio::spawn(async move {
                poster
                    .message(port, &sender, chat, "storm")
                    .await
                    .map(|(id, done)| (id, g, done))
            }));
            i += 1;
        }
        let mut sent = Vec::new();
        let mut failures = PostFailures::default();
        for p in posts {
            match p.await {
                Ok(Ok(s)) => sent.push(s),
                Ok(Err(e)) => failures.add(&e),
                Err(_) => failures.add(&super::net::PostError::Transport),
            }
        }
        (sent, failures)
    });
    tokio::time::sleep(warmup).await;
    // A client can only resume from a position it holds: hold the storm
    // until every user got at least one event (bounded wait).
    let until = Instant::now() + Duration::from_secs(20);
    let unplaced = loop {
        let n = logs.iter().filter(|l| lock(l).last_seq.is_none()).count();
        if n == 0 || Instant::now() >= until {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("    {unplaced} users hold no position at the storm's start");

    // The storm: drops spread over the first fifth of the window, every
    // reconnect (with `since`, from fresh source addresses) by its end.
    eprintln!("==> storm: {users} users drop and reconnect within {window} s");
    let cpu0: Vec<f64> = servers
        .iter()
        .map(|s| cpu_secs(s.child.id().unwrap_or(0)))
        .collect();
    let rpid = redis_pid().await;
    let rcpu0 = rpid.map(cpu_secs).unwrap_or(0.0);
    let t0 = Instant::now();
    let win = Duration::from_secs(window);
    let mut storms = Vec::new();
    for (i, old) in readers.into_iter().enumerate() {
        let frac = i as f64 / users as f64;
        let drop_at = t0 + win.mul_f64(0.2 * frac);
        let back_at = t0 + win.mul_f64(0.2 + 0.7 * frac);
        let (log, port, user) = (logs[i].clone(), ports[(i + 1) % 2], ids[i]);
        storms.push(tokio::spawn(async move {
            tokio::time::sleep_until(drop_at.into()).await;
            old.abort();
            let _ = old.await;
            let down = Instant::now();
            tokio::time::sleep_until(back_at.into()).await;
            let since = {
                let mut l = lock(&log);
                l.life = 1;
                l.last_seq.clone().unwrap_or_default()
            };
            let q = format!("token={}&since={since}", token(user));
            let start = Instant::now();
            let (ws, failures) = reconnect(port, i as u32, users, 10, &q).await;
            let since = seq_parts(&since);
            (down, start, since, ws.map(|ws| reader(ws, log)), failures)
        }));
    }
    let mut lives = Vec::new();
    for s in storms {
        lives.push(s.await?);
    }
    let storm_secs = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = servers
        .iter()
        .zip(&cpu0)
        .map(|(s, c0)| cpu_secs(s.child.id().unwrap_or(0)) - c0)
        .collect();
    let rcpu = rpid.map(cpu_secs).unwrap_or(0.0) - rcpu0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, post_failures) = producer.await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut refusals: BTreeMap<String, u32> = BTreeMap::new();
    let mut retried_users = 0u32;
    for (_, _, _, _, f) in &lives {
        retried_users += u32::from(!f.is_empty());
        for why in f {
            *refusals.entry(why.clone()).or_default() += 1;
        }
    }
    let retries: u32 = refusals.values().sum();

    // Verdicts per user: exactly their group's messages, once each.
    let posted: HashMap<&str, (usize, Instant)> = sent
        .iter()
        .map(|(id, g, t)| (id.as_str(), (*g, *t)))
        .collect();
    let mut per_group: Vec<HashSet<&str>> = vec![HashSet::new(); groups.len()];
    for (id, g, _) in &sent {
        per_group[*g].insert(id.as_str());
    }
    let group_of: HashMap<Uuid, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, (_, m))| m.iter().map(move |u| (*u, g)))
        .collect();
    let (mut recovered, mut failed_connects, mut resets) = (0u32, 0u32, 0u32);
    let (mut wrong_set, mut out_of_order, mut no_since) = (0u32, 0u32, 0u32);
    let mut replay_lat = Vec::new();
    for (i, (down, start, since, live, _)) in lives.iter().enumerate() {
        if live.is_none() {
            failed_connects += 1;
            continue;
        }
        let l = lock(&logs[i]);
        resets += l.resets;
        no_since += u32::from(since.is_none());
        let got: Vec<&str> = l.got.iter().map(|(id, _)| id.as_str()).collect();
        let unique: HashSet<&str> = got.iter().copied().collect();
        let want = &per_group[group_of[&ids[i]]];
        let exact_set = unique.len() == got.len() && &unique == want;
        let ordered = in_order(&l, *since);
        wrong_set += u32::from(!exact_set);
        out_of_order += u32::from(!ordered);
        if l.resets == 0 && exact_set && ordered {
            recovered += 1;
        }
        // Replay: the missed messages that were posted before the reconnect.
        let missed_done = l
            .got
            .iter()
            .filter(|(id, at)| {
                *at >= *start
                    && posted
                        .get(id.as_str())
                        .is_some_and(|(_, p)| p < start && p > down)
            })
            .map(|(_, at)| *at)
            .max();
        if let Some(done) = missed_done {
            replay_lat.push(done.saturating_duration_since(*start).as_micros() as u64);
        }
    }
    replay_lat.sort_unstable();
    let sample: Vec<Uuid> = ids
        .iter()
        .step_by((users as usize / 200).max(1))
        .copied()
        .collect();
    let (bytes, sampled) = bytes_per_event(&sample).await.unwrap_or((0.0, 0));
    for (_, _, _, live, _) in lives {
        if let Some(h) = live {
            h.abort();
        }
    }
    let cores = |c: f64| format!("{:.1} CPU-s ({:.0} % of a core)", c, 100.0 * c / storm_secs);
    Ok(vec![
        Row {
            name: format!("reconnect storm: {users} users (groups of {group_size}), {rate} msg/s, 2 instances"),
            value: format!("{recovered}/{users} recovered exactly"),
            goal: "every one".into(),
            note: format!(
                "{} messages ({post_failures}); {failed_connects} reconnects failed for good; \
                 {resets} sync.reset; {wrong_set} with missing/extra/duplicate messages; \
                 {out_of_order} with a gap or disorder in `meta.seq`; {no_since} reconnected without `since`"
            ,
                sent.len()
            ),
        },
        Row {
            name: "reconnect attempts refused and retried (backoff 250 ms doubling, jitter)".into(),
            value: format!(
                "{retries} retries by {retried_users} users ({initial_retries} more during the first connects)"
            ),
            goal: "—".into(),
            note: if refusals.is_empty() {
                "no refusal".into()
            } else {
                refusals
                    .iter()
                    .map(|(k, n)| format!("{n}× {k}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        },
        Row {
            name: "replay latency (reconnect start → last missed event)".into(),
            value: format!(
                "p50 {} / p99 {} / max {}",
                ms(percentile(&replay_lat, 0.5)),
                ms(percentile(&replay_lat, 0.99)),
                ms(*replay_lat.last().unwrap_or(&0))
            ),
            goal: "—".into(),
            note: format!("{} users had missed events", replay_lat.len()),
        },
        Row {
            name: format!("CPU during the storm ({storm_secs:.1} s)"),
            value: format!(
                "servers {} + {}, Redis {}",
                cores(cpu[0]),
                cores(cpu[1]),
                cores(rcpu)
            ),
            goal: "—".into(),
            note: "utime+stime from /proc".into(),
        },
        Row {
            name: "Redis memory per retained event".into(),
            value: format!("{bytes:.0} bytes"),
            goal: "—".into(),
            note: format!(
                "MEMORY USAGE of the streams of {} users, {sampled} events",
                sample.len()
            ),
        },
    ])
}
