//! AtoiTalk load generator. Starts release `atoitalk serve` processes against
//! a dedicated database (`atoitalk_bench`), seeds data straight into
//! PostgreSQL, drives the API over real HTTP and WebSocket, and prints a
//! Markdown table of the figures. See `bench/README.md`.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use uuid::Uuid;

mod cpu;
mod fanout;
mod limit;
mod net;
mod peer;
mod scale;
mod search;
mod storm;

use net::{local_ip, ws_connect};

const SECRET: &str = "bench-jwt-secret-not-for-production";
/// The bench database (`BENCH_DB_NAME`, default `atoitalk_bench`): dropped
/// and recreated by every scenario, so parallel runs need distinct names.
fn db_name() -> String {
    env("BENCH_DB_NAME", "atoitalk_bench")
}

/// The pgbench database: beside the bench database, so that runs with
/// distinct `BENCH_DB_NAME`s do not drop each other's.
fn pgbench_db() -> String {
    format!("{}_pgbench", db_name())
}

/// The servers' Redis key prefix, which each scenario clears: by default
/// derived from the database name, so two runs with different
/// `BENCH_DB_NAME`s neither see nor clear each other's keys (a shared
/// `bench:` let one run's clean-up delete another's resume streams and
/// sessions mid-run). `BENCH_REDIS_PREFIX` overrides it.
pub fn redis_prefix() -> String {
    std::env::var("BENCH_REDIS_PREFIX").unwrap_or_else(|_| format!("bench:{}:", db_name()))
}

#[derive(Parser)]
#[command(about = "AtoiTalk benchmarks")]
struct Args {
    /// The server binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/atoitalk")]
    bin: String,
    /// First port for server instances.
    #[arg(long, default_value_t = 18080)]
    port: u16,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// pgbench: insert a message row + update its chat row, per transaction.
    Limit {
        #[arg(long, default_value_t = 64)]
        clients: u32,
        #[arg(long, default_value_t = 15)]
        secs: u64,
    },
    /// Many users sending POST /api/messages into many chats.
    Send {
        #[arg(long, default_value_t = 64)]
        clients: u32,
        #[arg(long, default_value_t = 15)]
        secs: u64,
        #[arg(long, default_value_t = 2000)]
        users: u32,
        /// Server instances (clients spread round-robin over them).
        #[arg(long, default_value_t = 1)]
        instances: u16,
    },
    /// A group with every member connected; time from POST response to the
    /// last member's `message.new`.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        members: u32,
        #[arg(long, default_value_t = 100)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long, default_value_t = 2)]
        instances: u16,
        /// Rounds, each with freshly started servers and sockets.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
        /// Alternate the rounds between RESUME_ENABLED=false and true
        /// (off first) and report both p99s and their ratio.
        #[arg(long)]
        compare_resume: bool,
    },
    /// Idle authenticated WebSockets on one instance; RSS per connection.
    Connections {
        #[arg(long, default_value_t = 10_000)]
        count: u32,
    },
    /// Chat list first page and a deep message page over a large dataset.
    Paging {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u32,
        #[arg(long, default_value_t = 10_000)]
        chats: u32,
        #[arg(long, default_value_t = 1000)]
        requests: u32,
    },
    /// Issue 16: every user drops and reconnects with `since` within the
    /// window while messages flow; all must recover exactly.
    Storm {
        #[arg(long, default_value_t = 10_000)]
        users: u32,
        #[arg(long, default_value_t = 20)]
        group: u32,
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        window: u64,
    },
    /// Full-text search (global and per chat) over a large dataset.
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u32,
        #[arg(long, default_value_t = 10_000)]
        chats: u32,
        /// How many of the chats the searching user is in.
        #[arg(long, default_value_t = 500)]
        mine: u32,
        #[arg(long, default_value_t = 800)]
        requests: u32,
    },
    /// Issue 21 §3: 100,000 idle sockets, fan-out to a 10,000-member group.
    #[command(subcommand)]
    Scale(scale::Which),
    /// Issue 21: the same workloads against AtoiTalk and Matrix Synapse.
    Peer(peer::PeerArgs),
    /// Every scenario with its defaults.
    All,
}

/// One line of the results table.
struct Row {
    name: String,
    value: String,
    goal: String,
    note: String,
}

fn print_table(rows: &[Row]) {
    println!("\n| figure | measured | goal | note |\n| --- | --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.name, r.value, r.goal, r.note);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    net::raise_fd_limit(65_536);
    if !std::path::Path::new(&args.bin).exists() {
        bail!("{} not found; run `cargo build --release` first", args.bin);
    }
    let scenarios = match &args.scenario {
        Scenario::All => vec![
            Scenario::Limit {
                clients: 64,
                secs: 15,
            },
            Scenario::Send {
                clients: 64,
                secs: 15,
                users: 2000,
                instances: 1,
            },
            Scenario::Fanout {
                members: 1000,
                rate: 100,
                secs: 10,
                instances: 2,
                rounds: 1,
                compare_resume: false,
            },
            Scenario::Connections { count: 10_000 },
            Scenario::Paging {
                messages: 1_000_000,
                chats: 10_000,
                requests: 1000,
            },
            Scenario::Storm {
                users: 10_000,
                group: 20,
                rate: 200,
                window: 10,
            },
            Scenario::Search {
                messages: 1_000_000,
                chats: 10_000,
                mine: 500,
                requests: 800,
            },
        ],
        s => vec![s.clone()],
    };
    let mut rows = Vec::new();
    let mut limit_tps = None;
    for s in scenarios {
        let out = run(&args, s, &mut limit_tps).await?;
        rows.extend(out);
    }
    print_table(&rows);
    Ok(())
}

async fn run(args: &Args, s: Scenario, limit_tps: &mut Option<f64>) -> anyhow::Result<Vec<Row>> {
    match s {
        Scenario::Limit { clients, secs } => {
            let limit = limit::pg_limit(clients, secs).await?;
            *limit_tps = Some(limit.tps);
            Ok(limit.rows(clients))
        }
        Scenario::Send {
            clients,
            secs,
            users,
            instances,
        } => {
            let mut rows = Vec::new();
            if limit_tps.is_none() {
                let limit = limit::pg_limit(clients, secs).await?;
                *limit_tps = Some(limit.tps);
                rows = limit.rows(clients);
            }
            rows.extend(
                send_throughput(
                    args,
                    clients,
                    secs,
                    users,
                    instances,
                    limit_tps.unwrap_or(0.0),
                )
                .await?,
            );
            Ok(rows)
        }
        Scenario::Fanout {
            members,
            rate,
            secs,
            instances,
            rounds,
            compare_resume,
        } => fanout::fanout(args, members, rate, secs, instances, rounds, compare_resume).await,
        Scenario::Connections { count } => connections(args, count).await,
        Scenario::Paging {
            messages,
            chats,
            requests,
        } => paging(args, messages, chats, requests).await,
        Scenario::Storm {
            users,
            group,
            rate,
            window,
        } => storm::storm(args, users, group, rate, window).await,
        Scenario::Search {
            messages,
            chats,
            mine,
            requests,
        } => search::run(args, messages, chats, mine, requests).await,
        Scenario::Scale(which) => scale::run(args, which).await,
        Scenario::Peer(p) => peer::run(args, p).await,
        Scenario::All => unreachable!("expanded above"),
    }
}

// ---------------------------------------------------------------- setup

fn server_env(port: u16, migrate: bool) -> Vec<(String, String)> {
    [
        ("APP_ENV", "development".to_string()),
        ("APP_PORT", port.to_string()),
        ("DB_HOST", env("BENCH_DB_HOST", "127.0.0.1")),
        ("DB_PORT", env("BENCH_DB_PORT", "5432")),
        ("DB_USER", env("BENCH_DB_USER", "postgres")),
        ("DB_PASSWORD", env("BENCH_DB_PASSWORD", "postgres")),
        ("DB_NAME", db_name()),
        ("DB_MIGRATE", migrate.to_string()),
        ("DB_MAX_CONNECTIONS", env("BENCH_DB_POOL", "32")),
        ("REDIS_HOST", env("BENCH_REDIS_HOST", "127.0.0.1")),
        ("REDIS_PORT", env("BENCH_REDIS_PORT", "6379")),
        ("REDIS_KEY_PREFIX", redis_prefix()),
        ("JWT_SECRET", SECRET.to_string()),
        ("OTP_SECRET", SECRET.to_string()),
        ("RUST_LOG", "warn".to_string()),
        // `BENCH_RESUME_ENABLED=false` measures without the resume store.
        ("RESUME_ENABLED", env("BENCH_RESUME_ENABLED", "true")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn env(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.to_string())
}

fn admin_url(db: &str) -> String {
    format!(
        "postgres://{}:{}@{}:{}/{}",
        env("BENCH_DB_USER", "postgres"),
        env("BENCH_DB_PASSWORD", "postgres"),
        env("BENCH_DB_HOST", "127.0.0.1"),
        env("BENCH_DB_PORT", "5432"),
        db
    )
}

/// Drops and recreates the bench database, migrates it, returns a pool.
async fn fresh_db(args: &Args) -> anyhow::Result<PgPool> {
    let db = db_name();
    eprintln!("==> recreating database {db}");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url("postgres"))
        .await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await?;
    let status = Command::new(&args.bin)
        .arg("migrate")
        .envs(server_env(0, true))
        .stdout(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("migration failed");
    }
    let redis = redis_flush().await;
    if let Err(e) = redis {
        eprintln!("warning: could not clear bench: keys in Redis: {e}");
    }
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .connect(&admin_url(&db))
        .await?)
}

async fn redis_flush() -> anyhow::Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli --scan --pattern '{}*' | xargs -r -n 500 redis-cli del > /dev/null",
            redis_prefix()
        ))
        .status()
        .await?;
    if !out.success() {
        bail!("redis-cli failed");
    }
    Ok(())
}

struct ServerProc {
    child: Child,
    port: u16,
}

impl ServerProc {
    async fn start(args: &Args, port: u16) -> anyhow::Result<Self> {
        Self::start_with(args, port, &[]).await
    }

    /// [`Self::start`] with some variables set differently.
    async fn start_with(args: &Args, port: u16, vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        let child = Command::new(&args.bin)
            .arg("serve")
            .envs(server_env(port, false))
            .envs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server")?;
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(Self { child, port });
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server on port {port} did not become ready")
    }

    /// Kills the server and waits until it is gone (its port is free).
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("server exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
    }
}

async fn seed_users(db: &PgPool, n: u32) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(5000) {
        sqlx::query(
            "INSERT INTO users (id, email, username, full_name) \
             SELECT id, 'b' || replace(id::text, '-', '') || '@bench.test', 'b' || replace(id::text, '-', ''), \
                    'Bench ' || left(id::text, 8) \
             FROM unnest($1::uuid[]) AS t(id)",
        )
        .bind(chunk)
        .execute(db)
        .await?;
    }
    Ok(ids)
}

/// Private chats for the given pairs; returns chat ids.
async fn seed_private_chats(db: &PgPool, pairs: &[(Uuid, Uuid)]) -> anyhow::Result<Vec<Uuid>> {
    let chats: Vec<Uuid> = pairs.iter().map(|_| Uuid::now_v7()).collect();
    for (cs, ps) in chats.chunks(5000).zip(pairs.chunks(5000)) {
        let a: Vec<Uuid> = ps.iter().map(|p| p.0).collect();
        let b: Vec<Uuid> = ps.iter().map(|p| p.1).collect();
        sqlx::query("INSERT INTO chats (id, type) SELECT unnest($1::uuid[]), 'private'")
            .bind(cs)
            .execute(db)
            .await?;
        sqlx::query(
            "INSERT INTO private_chats (id, chat_id, user1_id, user2_id) \
             SELECT gen_random_uuid(), c, u1, u2 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS t(c, u1, u2)",
        )
        .bind(cs)
        .bind(&a)
        .bind(&b)
        .execute(db)
        .await?;
    }
    Ok(chats)
}

async fn seed_group(db: &PgPool, owner: Uuid, members: &[Uuid]) -> anyhow::Result<Uuid> {
    let chat = Uuid::now_v7();
    let group = Uuid::now_v7();
    sqlx::query("INSERT INTO chats (id, type) VALUES ($1, 'group')")
        .bind(chat)
        .execute(db)
        .await?;
    sqlx::query("INSERT INTO group_chats (id, chat_id, name, invite_code, created_by) VALUES ($1, $2, 'Bench group', $3, $4)")
        .bind(group)
        .bind(chat)
        .bind(Uuid::new_v4().simple().to_string())
        .bind(owner)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO group_members (id, group_chat_id, user_id, role, joined_at) \
         SELECT gen_random_uuid(), $1, u, CASE WHEN u = $2 THEN 'owner' ELSE 'member' END, now() \
         FROM unnest($3::uuid[]) AS t(u)",
    )
    .bind(group)
    .bind(owner)
    .bind(members)
    .execute(db)
    .await?;
    Ok(chat)
}

/// Deletes a user's rate-limit counters in the bench's Redis prefix.
async fn reset_user_limits(user: Uuid) {
    let _ = Command::new("redis-cli")
        .args([
            "-h",
            &env("BENCH_REDIS_HOST", "127.0.0.1"),
            "-p",
            &env("BENCH_REDIS_PORT", "6379"),
            "DEL",
            &format!("{}ratelimit:user:auth_verify:{user}", redis_prefix()),
            &format!("{}ratelimit:user:general_read:{user}", redis_prefix()),
        ])
        .stdout(Stdio::null())
        .status()
        .await;
}

fn token(user: Uuid) -> String {
    atoitalk::auth::tokens::issue(SECRET, 86_400, user).unwrap_or_default()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

// ------------------------------------------------------------ scenarios

/// The text of every message of `send` and of the pgbench baseline: the same
/// words, so both write the same search-index entries (a different text
/// was half the baseline's index work: 8 entries against 15).
const SEND_TEXT: &str = "hello from the bench";

async fn send_throughput(
    args: &Args,
    clients: u32,
    secs: u64,
    users: u32,
    instances: u16,
    limit_tps: f64,
) -> anyhow::Result<Vec<Row>> {
    let db = fresh_db(args).await?;
    eprintln!(
        "==> send: seeding {users} users in {} private chats",
        users / 2
    );
    let ids = seed_users(&db, users).await?;
    let pairs: Vec<(Uuid, Uuid)> = ids.chunks(2).map(|c| (c[0], c[1])).collect();
    let chats = seed_private_chats(&db, &pairs).await?;
    let mut servers = Vec::new();
    for i in 0..instances.max(1) {
        servers.push(ServerProc::start(args, args.port + i).await?);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients as usize)
        .build()?;
    let jobs: Arc<Vec<(String, Uuid)>> = Arc::new(
        pairs
            .iter()
            .zip(&chats)
            .map(|(p, c)| (token(p.0), *c))
            .collect(),
    );
    // Warm-up so connection pools are open.
    for server in &servers {
        let _ = http
            .get(format!("http://127.0.0.1:{}/readyz", server.port))
            .send()
            .await;
    }
    eprintln!(
        "==> send: {clients} clients for {secs} s over {} instance(s)",
        servers.len()
    );
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    let started = Instant::now();
    let cpu0 = cpu::Snapshot::take();
    for k in 0..clients {
        let (http, jobs, next, errors) = (http.clone(), jobs.clone(), next.clone(), errors.clone());
        let port = servers[k as usize % servers.len()].port;
        let url = format!("http://127.0.0.1:{port}/api/messages");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % jobs.len();
                let (tok, chat) = &jobs[i];
                let t0 = Instant::now();
                let res = http
                    .post(&url)
                    .bearer_auth(tok)
                    .json(&serde_json::json!({"chat_id": chat, "content": SEND_TEXT}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t0.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_note = cpu::per_op(&cpu::Snapshot::take(), &cpu0, all.len() as f64);
    all.sort_unstable();
    let rate = all.len() as f64 / elapsed;
    let ratio = if limit_tps > 0.0 {
        rate / limit_tps
    } else {
        0.0
    };
    let n = servers.len();
    drop(servers);
    let over = if n > 1 {
        format!(", {n} instances")
    } else {
        String::new()
    };
    Ok(vec![
        Row {
            name: format!("POST /api/messages ({clients} clients{over})"),
            value: format!("{rate:.0} msg/s"),
            goal: "≥ 60% of pgbench".into(),
            note: format!(
                "{ratio:.2} of the limit; {} errors",
                errors.load(Ordering::Relaxed)
            ),
        },
        Row {
            name: "send latency p50 / p99 / p99.9".into(),
            value: format!(
                "{} / {} / {}",
                ms(percentile(&all, 0.5)),
                ms(percentile(&all, 0.99)),
                ms(percentile(&all, 0.999))
            ),
            goal: "p99 < 25 ms".into(),
            note: String::new(),
        },
        Row {
            name: "CPU per message (by process)".into(),
            value: cpu_note,
            goal: "—".into(),
            note: "atoitalk-bench is the driver".into(),
        },
    ])
}

async fn connections(args: &Args, count: u32) -> anyhow::Result<Vec<Row>> {
    let db = fresh_db(args).await?;
    let ids = seed_users(&db, count).await?;
    let server = ServerProc::start(args, args.port).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib()?;
    eprintln!("==> connections: opening {count} idle sockets (server RSS before: {before} KiB)");
    let mut sockets = Vec::with_capacity(count as usize);
    for (i, user) in ids.iter().enumerate() {
        sockets.push(ws_connect(server.port, local_ip(i as u32), &token(*user)).await?);
        if (i + 1) % 2000 == 0 {
            eprintln!("    {} open", i + 1);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib()?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / count as f64;
    drop(sockets);
    Ok(vec![Row {
        name: format!("{count} idle WebSockets, one instance"),
        value: format!("{:.1} KiB per connection", per / 1024.0),
        goal: "< 16 KiB".into(),
        note: format!("RSS {before} KiB → {after} KiB"),
    }])
}

async fn paging(args: &Args, messages: u32, chats: u32, requests: u32) -> anyhow::Result<Vec<Row>> {
    let db = fresh_db(args).await?;
    eprintln!("==> paging: seeding {messages} messages across {chats} chats");
    // One viewer in every chat (the worst case for their chat list), one
    // partner per chat; one hot chat holds a tenth of all messages.
    let viewer = seed_users(&db, 1).await?[0];
    let partners = seed_users(&db, chats).await?;
    let pairs: Vec<(Uuid, Uuid)> = partners.iter().map(|p| (viewer, *p)).collect();
    let chat_ids = seed_private_chats(&db, &pairs).await?;
    let hot = chat_ids[0];
    let hot_count = (messages / 10).max(1);
    let per_chat = ((messages - hot_count) / chats.saturating_sub(1).max(1)).max(1);
    // UUIDv7-shaped ids from the timestamp, so id order is time order.
    let insert = "INSERT INTO messages (id, chat_id, sender_id, content, created_at, updated_at) \
         SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' \
                 || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid, \
                c.chat_id, CASE WHEN g % 2 = 0 THEN $1 ELSE c.partner END, 'message ' || g, ts, ts \
         FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY AS c(chat_id, partner, k), \
              generate_series(1, $4) g, \
              LATERAL (SELECT now() - make_interval(secs => ($4 - g) * 7.0 + c.k * 0.001) AS ts) t";
    sqlx::query(insert)
        .bind(viewer)
        .bind(&chat_ids[1..])
        .bind(&partners[1..])
        .bind(per_chat as i32)
        .execute(&db)
        .await
        .context("seeding messages")?;
    sqlx::query(insert)
        .bind(viewer)
        .bind(&chat_ids[..1])
        .bind(&partners[..1])
        .bind(hot_count as i32)
        .execute(&db)
        .await
        .context("seeding the hot chat")?;
    sqlx::query(
        "UPDATE chats c SET last_message_id = m.id, last_message_at = m.created_at \
         FROM (SELECT DISTINCT ON (chat_id) chat_id, id, created_at FROM messages \
               ORDER BY chat_id, id DESC) m \
         WHERE c.id = m.chat_id",
    )
    .execute(&db)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(&db).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&db)
        .await?;
    // A cursor 90% of the way back in the hot chat's history.
    let deep: Uuid = sqlx::query_scalar(
        "SELECT id FROM messages WHERE chat_id = $1 ORDER BY id OFFSET $2 LIMIT 1",
    )
    .bind(hot)
    .bind((hot_count / 10) as i64)
    .fetch_one(&db)
    .await?;
    let cursor = atoitalk::messages::dto::encode_message_cursor(deep);

    let server = ServerProc::start(args, args.port).await?;
    let http = reqwest::Client::new();
    let tok = token(viewer);
    let base = format!("http://127.0.0.1:{}", server.port);
    let measure = |url: String| {
        let (http, tok) = (http.clone(), tok.clone());
        async move {
            let mut lat = Vec::new();
            for i in 0..requests {
                if i % 150 == 0 {
                    // One viewer makes every request: clear their per-user
                    // rate-limit counters (200/min) so the run measures paging.
                    reset_user_limits(viewer).await;
                }
                let t0 = Instant::now();
                let r = http.get(&url).bearer_auth(&tok).send().await?;
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                if ok {
                    lat.push(t0.elapsed().as_micros() as u64);
                }
            }
            lat.sort_unstable();
            anyhow::Ok(lat)
        }
    };
    let list = measure(format!("{base}/api/chats?limit=20")).await?;
    let page = measure(format!(
        "{base}/api/chats/{hot}/messages?limit=20&direction=older&cursor={cursor}"
    ))
    .await?;

    // Plans: the chat list's real statement, and the keyset core of the
    // history query (its rendering joins hang off these 21 ids).
    let list_plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        atoitalk::chats::repo::list_page_sql(false, 21)
    ))
    .bind(viewer)
    .bind(None::<chrono::DateTime<chrono::Utc>>)
    .bind(Uuid::max())
    .fetch_all(&db)
    .await?;
    eprintln!(
        "--- EXPLAIN chat list (first page)\n{}",
        list_plan.join("\n")
    );
    let page_plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM messages WHERE chat_id = $1 AND id < $2 ORDER BY id DESC LIMIT 21",
    )
    .bind(hot)
    .bind(deep)
    .fetch_all(&db)
    .await?;
    eprintln!(
        "--- EXPLAIN message page (keyset core)\n{}",
        page_plan.join("\n")
    );
    let note = |lat: &Vec<u64>| format!("{} of {requests} ok; {total} messages", lat.len());
    Ok(vec![
        Row {
            name: format!("GET /api/chats first page (viewer in {chats} chats)"),
            value: format!(
                "p50 {} / p99 {}",
                ms(percentile(&list, 0.5)),
                ms(percentile(&list, 0.99))
            ),
            goal: "p99 < 10 ms".into(),
            note: note(&list),
        },
        Row {
            name: format!("GET messages deep page ({hot_count}-message chat, 90% back)"),
            value: format!(
                "p50 {} / p99 {}",
                ms(percentile(&page, 0.5)),
                ms(percentile(&page, 0.99))
            ),
            goal: "p99 < 10 ms".into(),
            note: note(&page),
        },
    ])
}
