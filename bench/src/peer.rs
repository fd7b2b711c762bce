//! Issue 21 §2: the same three workloads against AtoiTalk and a peer, Matrix
//! Synapse (set up by `bench/peer-synapse.sh`), with one driver. Sends at
//! several client counts, fan-out to a large room (AtoiTalk members on
//! WebSocket, Matrix members long-polling `/sync`), and newest/deep history
//! pages. The servers alternate (A, B, A, B); each run records the server
//! process's CPU and that of the PostgreSQL backends of its database.

use std::collections::HashMap;

use super::storm::cpu_secs;
use super::*;

mod matrix;

#[derive(clap::Args, Clone)]
pub(crate) struct PeerArgs {
    /// The directory `bench/peer-synapse.sh` prepared.
    #[arg(long, default_value = "/tmp/atoitalk-peer-synapse")]
    synapse_dir: String,
    /// Synapse's port (the script's SYNAPSE_PORT).
    #[arg(long, default_value_t = 18448)]
    synapse_port: u16,
    /// Client counts for the send workload.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<u32>,
    /// Seconds per send run.
    #[arg(long, default_value_t = 8)]
    secs: u64,
    /// Rounds of A, B per workload.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    #[arg(long, default_value_t = 200)]
    members: u32,
    #[arg(long, default_value_t = 20)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    fan_secs: u64,
    /// How long after the last send's response deliveries still count.
    #[arg(long, default_value_t = 5)]
    window: u64,
    /// Messages in the history room.
    #[arg(long, default_value_t = 20_000)]
    history: u32,
    /// Requests per history page kind and run.
    #[arg(long, default_value_t = 200)]
    requests: u32,
    /// Synapse presence settings to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    presence: Vec<String>,
}

/// One server under test, as the workloads see it.
pub(super) trait Side: Send + Sync {
    fn name(&self) -> &'static str;
    fn pid(&self) -> u32;
    fn db(&self) -> &str;
    /// The i-th send of the send workload.
    fn send(&self, http: &reqwest::Client, i: u64) -> reqwest::RequestBuilder;
    /// Parses a send response's message id.
    fn sent_id(&self, body: &serde_json::Value) -> Option<String>;
    /// A send into the fan-out room by member `i % members`.
    fn fan_send(&self, http: &reqwest::Client, i: u64) -> reqwest::RequestBuilder;
    /// Connects every fan-out member; each receipt goes to `tx`. Returns
    /// when all are listening.
    fn listen<'a>(
        &'a self,
        run: u32,
        tx: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>>;
    fn members(&self) -> u32;
    /// A history page: the newest 50, or 50 from 90 % back.
    fn page(&self, http: &reqwest::Client, deep: bool) -> reqwest::RequestBuilder;
    /// Called every so often during one-user request loops.
    fn between_requests(&self) -> futures::future::BoxFuture<'_, ()>;
}

/// What one run measured.
struct Sample {
    work: f64,
    secs: f64,
    lat: Vec<u64>,
    errors: u64,
    proc_cpu: f64,
    pg_cpu: f64,
    note: String,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.work / self.secs.max(1e-9)
    }
    fn cpu_ms(&self) -> (f64, f64) {
        let w = self.work.max(1.0);
        (
            self.proc_cpu * 1e3 / w,
            (self.proc_cpu + self.pg_cpu) * 1e3 / w,
        )
    }
}

/// CPU seconds of a process and of each backend of a database.
struct Cpu(f64, HashMap<i32, f64>);

async fn cpu(admin: &PgPool, side: &dyn Side) -> Cpu {
    let pids: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
        .bind(side.db())
        .fetch_all(admin)
        .await
        .unwrap_or_default();
    let pg = pids.into_iter().map(|p| (p, cpu_secs(p as u32))).collect();
    Cpu(cpu_secs(side.pid()), pg)
}

/// (process, backends) CPU seconds between two snapshots; backends that
/// started in between count from zero.
fn cpu_delta(a: &Cpu, b: &Cpu) -> (f64, f64) {
    let pg =
        b.1.iter()
            .map(|(pid, s)| s - a.1.get(pid).copied().unwrap_or(0.0))
            .filter(|d| *d > 0.0)
            .sum();
    (b.0 - a.0, pg)
}

pub(crate) async fn run(args: &Args, p: PeerArgs) -> anyhow::Result<Vec<Row>> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url("postgres"))
        .await?;
    let atoi = atoi_side(args, &p).await?;
    let mut mx = matrix::Setup::new(&p);
    let mut rows = Vec::new();
    let mut runs = 0u32;
    for presence in &p.presence {
        let on = presence == "on";
        let syn = mx.start(on).await?;
        let label = format!(
            "Synapse {} (presence {})",
            matrix::version(&p.synapse_dir),
            if on { "on" } else { "off" }
        );
        eprintln!("==> peer: AtoiTalk vs {label}");
        let sides: [&dyn Side; 2] = [&atoi, &syn];
        let mut results: Vec<(String, [Vec<Sample>; 2])> = Vec::new();
        for &c in &p.clients {
            let mut got: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..p.rounds {
                for (k, s) in sides.iter().enumerate() {
                    got[k].push(sends(&admin, *s, c, p.secs).await?);
                }
            }
            results.push((format!("sends, {c} client(s), {} s", p.secs), got));
        }
        let mut got: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..p.rounds {
            for (k, s) in sides.iter().enumerate() {
                runs += 1;
                got[k].push(fanout(&admin, *s, &p, runs).await?);
            }
        }
        results.push((
            format!(
                "fan-out, {}-member room, {} msg/s for {} s",
                p.members, p.rate, p.fan_secs
            ),
            got,
        ));
        for deep in [false, true] {
            let mut got: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..p.rounds {
                for (k, s) in sides.iter().enumerate() {
                    got[k].push(history(&admin, *s, deep, p.requests).await?);
                }
            }
            let which = if deep {
                "page 90 % back"
            } else {
                "newest page"
            };
            results.push((
                format!("history, {which} of 50, {}-message room", p.history),
                got,
            ));
        }
        syn.stop().await;
        print_runs(&label, &results);
        rows.extend(ratios(&label, &results));
    }
    Ok(rows)
}

async fn sends(admin: &PgPool, side: &dyn Side, clients: u32, secs: u64) -> anyhow::Result<Sample> {
    eprintln!("==> peer: {} sends, {clients} client(s)", side.name());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients as usize)
        .build()?;
    let next = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let start = cpu(admin, side).await;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let (next, errors, http) = (&next, &errors, &http);
    let worker = move || async move {
        let mut lat = Vec::new();
        while Instant::now() < deadline {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let t = Instant::now();
            match side.send(http, i).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    lat.push(t.elapsed().as_micros() as u64);
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        lat
    };
    let all = futures::future::join_all((0..clients).map(|_| worker())).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let (proc_cpu, pg_cpu) = cpu_delta(&start, &cpu(admin, side).await);
    let mut lat: Vec<u64> = all.into_iter().flatten().collect();
    lat.sort_unstable();
    Ok(Sample {
        work: lat.len() as f64,
        secs: elapsed,
        lat,
        errors: errors.load(Ordering::Relaxed),
        proc_cpu,
        pg_cpu,
        note: String::new(),
    })
}

async fn fanout(admin: &PgPool, side: &dyn Side, p: &PeerArgs, run: u32) -> anyhow::Result<Sample> {
    eprintln!(
        "==> peer: {} fan-out, connecting {} members",
        side.name(),
        side.members()
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let readers = side.listen(run, tx).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let total = p.rate as u64 * p.fan_secs;
    let start = cpu(admin, side).await;
    let t0 = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / p.rate as f64));
    let mut posts = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let req = side.fan_send(&http, i);
        posts.push(tokio::spawn(async move {
            let r = req.send().await.ok()?;
            let done = Instant::now();
            let v: serde_json::Value = r.json().await.ok()?;
            Some((v, done))
        }));
    }
    let mut sent: HashMap<String, Instant> = HashMap::new();
    for post in posts {
        if let Ok(Some((v, t))) = post.await {
            if let Some(id) = side.sent_id(&v) {
                sent.insert(id, t);
            }
        }
    }
    let until = Instant::now() + Duration::from_secs(p.window);
    let mut got: Vec<(String, Instant)> = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout_at(until.into(), rx.recv()).await {
        got.push(e);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (proc_cpu, pg_cpu) = cpu_delta(&start, &cpu(admin, side).await);
    for r in readers {
        r.abort();
    }
    let mut lat = Vec::new();
    for (id, at) in &got {
        if let Some(posted) = sent.get(id) {
            lat.push(at.saturating_duration_since(*posted).as_micros() as u64);
        }
    }
    lat.sort_unstable();
    let expected = sent.len() as f64 * side.members() as f64;
    Ok(Sample {
        work: sent.len() as f64,
        secs,
        errors: total - sent.len() as u64,
        note: format!(
            "{:.1} % of {} deliveries within {} s of the last send; max {}",
            lat.len() as f64 * 100.0 / expected.max(1.0),
            expected,
            p.window,
            ms(*lat.last().unwrap_or(&0))
        ),
        lat,
        proc_cpu,
        pg_cpu,
    })
}

async fn history(
    admin: &PgPool,
    side: &dyn Side,
    deep: bool,
    requests: u32,
) -> anyhow::Result<Sample> {
    eprintln!("==> peer: {} history (deep: {deep})", side.name());
    let http = reqwest::Client::new();
    let mut lat = Vec::new();
    let mut errors = 0;
    let (mut proc_cpu, mut pg_cpu, mut secs) = (0.0, 0.0, 0.0);
    for chunk in 0..requests.div_ceil(100) {
        // Outside the measurement: AtoiTalk's one viewer needs its per-user
        // counters cleared every so often.
        side.between_requests().await;
        let start = cpu(admin, side).await;
        let t0 = Instant::now();
        for _ in (chunk * 100)..((chunk + 1) * 100).min(requests) {
            let t = Instant::now();
            match side.page(&http, deep).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    lat.push(t.elapsed().as_micros() as u64);
                }
                _ => errors += 1,
            }
        }
        secs += t0.elapsed().as_secs_f64();
        let (a, b) = cpu_delta(&start, &cpu(admin, side).await);
        proc_cpu += a;
        pg_cpu += b;
    }
    lat.sort_unstable();
    Ok(Sample {
        work: lat.len() as f64,
        secs,
        lat,
        errors,
        proc_cpu,
        pg_cpu,
        note: String::new(),
    })
}

fn print_runs(label: &str, results: &[(String, [Vec<Sample>; 2])]) {
    println!("\n### AtoiTalk vs {label}: every run, in order A, B, A, B\n");
    println!("| workload | server | per s | p50 / p99 | CPU ms per item: server / +PostgreSQL | errors | note |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, sides) in results {
        // Interleaved: run r of both sides, in the order they ran.
        #[allow(clippy::needless_range_loop)]
        for r in 0..sides[0].len() {
            for (k, who) in ["AtoiTalk", "Synapse"].iter().enumerate() {
                let s = &sides[k][r];
                let (a, b) = s.cpu_ms();
                println!(
                    "| {name} | {who} | {:.0} | {} / {} | {a:.3} / {b:.3} | {} | {} |",
                    s.rate(),
                    ms(percentile(&s.lat, 0.5)),
                    ms(percentile(&s.lat, 0.99)),
                    s.errors,
                    s.note
                );
            }
        }
    }
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0), |(s, n), x| (s + x, n + 1));
    s / (n.max(1) as f64)
}

/// One row per workload: AtoiTalk ÷ Synapse over the mean of the rounds.
fn ratios(label: &str, results: &[(String, [Vec<Sample>; 2])]) -> Vec<Row> {
    results
        .iter()
        .map(|(name, [a, b])| {
            let rate = |s: &[Sample]| mean(s.iter().map(Sample::rate));
            let p99 = |s: &[Sample]| mean(s.iter().map(|x| percentile(&x.lat, 0.99) as f64));
            let cpu = |s: &[Sample], k: usize| {
                mean(s.iter().map(|x| if k == 0 { x.cpu_ms().0 } else { x.cpu_ms().1 }))
            };
            Row {
                name: format!("{name} — vs {label}"),
                value: format!(
                    "{:.0} vs {:.0} per s (×{:.1}); p99 {} vs {}",
                    rate(a),
                    rate(b),
                    rate(a) / rate(b).max(1e-9),
                    ms(p99(a) as u64),
                    ms(p99(b) as u64)
                ),
                goal: "AtoiTalk ahead".into(),
                note: format!(
                    "CPU per item: server {:.3} vs {:.3} ms (1/{:.0}); server+PostgreSQL {:.3} vs {:.3} ms (1/{:.0})",
                    cpu(a, 0),
                    cpu(b, 0),
                    cpu(b, 0) / cpu(a, 0).max(1e-9),
                    cpu(a, 1),
                    cpu(b, 1),
                    cpu(b, 1) / cpu(a, 1).max(1e-9)
                ),
            }
        })
        .collect()
}

// ------------------------------------------------------------ AtoiTalk

struct Atoi {
    server: ServerProc,
    db: String,
    base: String,
    jobs: Vec<(String, Uuid)>,
    members: Vec<Uuid>,
    fan_chat: Uuid,
    viewer: Uuid,
    hist_chat: Uuid,
    deep_cursor: String,
}

/// Users, chats and the history chat seeded straight into PostgreSQL, as
/// the other scenarios do; the server stays up for the whole comparison.
async fn atoi_side(args: &Args, p: &PeerArgs) -> anyhow::Result<Atoi> {
    let db = fresh_db(args).await?;
    let ids = seed_users(&db, 2000 + p.members).await?;
    let (members, senders) = ids.split_at(p.members as usize);
    let pairs: Vec<(Uuid, Uuid)> = senders.chunks(2).map(|c| (c[0], c[1])).collect();
    let chats = seed_private_chats(&db, &pairs).await?;
    let fan_chat = seed_group(&db, members[0], members).await?;
    let hist_chat = seed_private_chats(&db, &[(members[0], members[1])]).await?[0];
    eprintln!("==> peer: seeding {} AtoiTalk messages", p.history);
    sqlx::query(
        "INSERT INTO messages (id, chat_id, sender_id, content, created_at, updated_at) \
         SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' \
                 || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid, \
                $1, CASE WHEN g % 2 = 0 THEN $2 ELSE $3 END, 'hello from the bench ' || g, ts, ts \
         FROM generate_series(1, $4) g, LATERAL (SELECT now() - make_interval(secs => ($4 - g) * 0.01) AS ts) t",
    )
    .bind(hist_chat)
    .bind(members[0])
    .bind(members[1])
    .bind(p.history as i32)
    .execute(&db)
    .await?;
    sqlx::query("VACUUM ANALYZE messages").execute(&db).await?;
    let deep: Uuid = sqlx::query_scalar(
        "SELECT id FROM messages WHERE chat_id = $1 ORDER BY id OFFSET $2 LIMIT 1",
    )
    .bind(hist_chat)
    .bind((p.history / 10) as i64)
    .fetch_one(&db)
    .await?;
    let server = ServerProc::start(args, args.port).await?;
    Ok(Atoi {
        base: format!("http://127.0.0.1:{}", server.port),
        server,
        db: db_name(),
        jobs: pairs
            .iter()
            .zip(&chats)
            .map(|(p, c)| (token(p.0), *c))
            .collect(),
        members: members.to_vec(),
        fan_chat,
        viewer: members[0],
        hist_chat,
        deep_cursor: atoitalk::messages::dto::encode_message_cursor(deep),
    })
}

impl Side for Atoi {
    fn name(&self) -> &'static str {
        "AtoiTalk"
    }
    fn pid(&self) -> u32 {
        self.server.child.id().unwrap_or(0)
    }
    fn db(&self) -> &str {
        &self.db
    }
    fn send(&self, http: &reqwest::Client, i: u64) -> reqwest::RequestBuilder {
        let (tok, chat) = &self.jobs[i as usize % self.jobs.len()];
        http.post(format!("{}/api/messages", self.base))
            .bearer_auth(tok)
            .json(&serde_json::json!({"chat_id": chat, "content": "hello from the bench"}))
    }
    fn sent_id(&self, body: &serde_json::Value) -> Option<String> {
        Some(body["data"]["id"].as_str()?.to_string())
    }
    fn fan_send(&self, http: &reqwest::Client, i: u64) -> reqwest::RequestBuilder {
        // Senders rotate: one user alone would hit the 200/min limit.
        let who = self.members[i as usize % self.members.len()];
        http.post(format!("{}/api/messages", self.base))
            .bearer_auth(token(who))
            .json(&serde_json::json!({"chat_id": self.fan_chat, "content": "fan-out"}))
    }
    fn listen<'a>(
        &'a self,
        run: u32,
        tx: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>> {
        Box::pin(async move {
            let mut readers = Vec::new();
            for (i, user) in self.members.iter().enumerate() {
                // A fresh source address block per run: /ws allows 300
                // connects per minute per address.
                let ip = local_ip(run * 250 + i as u32);
                let mut ws = ws_connect(self.server.port, ip, &token(*user)).await?;
                let tx = tx.clone();
                readers.push(tokio::spawn(async move {
                    while let Some(Ok(msg)) = ws.next().await {
                        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                            let now = Instant::now();
                            let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                                continue;
                            };
                            if v["type"] == "message.new" {
                                if let Some(id) = v["payload"]["id"].as_str() {
                                    let _ = tx.send((id.to_string(), now));
                                }
                            }
                        }
                    }
                }));
            }
            Ok(readers)
        })
    }
    fn members(&self) -> u32 {
        self.members.len() as u32
    }
    fn page(&self, http: &reqwest::Client, deep: bool) -> reqwest::RequestBuilder {
        let url = format!(
            "{}/api/chats/{}/messages?limit=50",
            self.base, self.hist_chat
        );
        let req = http.get(url).bearer_auth(token(self.viewer));
        if deep {
            req.query(&[("direction", "older"), ("cursor", &self.deep_cursor)])
        } else {
            req
        }
    }
    fn between_requests(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(reset_user_limits(self.viewer))
    }
}
