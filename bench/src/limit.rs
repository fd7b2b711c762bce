//! `limit`: pgbench's insert+update transaction on the real schema, the
//! machine's raw limit that the send is measured against. Besides the
//! rate it reads pgbench's per-transaction log (`-l`), so the send's
//! latency can be set beside the latency of the bare transaction at the
//! same client count: the floor of the send's p99 on this machine.

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use tokio::process::Command;
use uuid::Uuid;

use crate::{
    admin_url, cpu, env, ms, percentile, pgbench_db, seed_private_chats, seed_users, Row, SEND_TEXT,
};

/// What one pgbench run measured.
pub struct Limit {
    pub tps: f64,
    /// Per-transaction latencies in µs, sorted (empty if no log was found).
    pub latencies: Vec<u64>,
}

impl Limit {
    pub fn rows(&self, clients: u32) -> Vec<Row> {
        let mut rows = vec![Row {
            name: format!("pgbench insert+update ({clients} clients)"),
            value: format!("{:.0} tx/s", self.tps),
            goal: "machine limit".into(),
            note: "1.00 (reference)".into(),
        }];
        if !self.latencies.is_empty() {
            let l = &self.latencies;
            rows.push(Row {
                name: "pgbench latency p50 / p99 / p99.9".into(),
                value: format!(
                    "{} / {} / {}",
                    ms(percentile(l, 0.5)),
                    ms(percentile(l, 0.99)),
                    ms(percentile(l, 0.999))
                ),
                goal: "—".into(),
                note: "the bare transaction: the floor of the send's latency".into(),
            });
        }
        rows
    }
}

pub async fn pg_limit(clients: u32, secs: u64) -> anyhow::Result<Limit> {
    // A separate database so the figure is the raw insert+update cost.
    eprintln!("==> pgbench: {clients} clients for {secs} s");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url("postgres"))
        .await?;
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        pgbench_db()
    ))
    .execute(&admin)
    .await?;
    sqlx::query(&format!("CREATE DATABASE {}", pgbench_db()))
        .execute(&admin)
        .await?;
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&admin_url(&pgbench_db()))
        .await?;
    atoitalk::infra::db::MIGRATOR.run(&db).await?;
    let users = seed_users(&db, 2000).await?;
    let pairs: Vec<(Uuid, Uuid)> = users.chunks(2).map(|c| (c[0], c[1])).collect();
    let chats = seed_private_chats(&db, &pairs).await?;
    sqlx::query("CREATE TABLE bench_chats (n int PRIMARY KEY, chat_id uuid, sender_id uuid)")
        .execute(&db)
        .await?;
    sqlx::query(
        "INSERT INTO bench_chats SELECT row_number() OVER (), c, s FROM unnest($1::uuid[], $2::uuid[]) AS t(c, s)",
    )
    .bind(&chats)
    .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
    .execute(&db)
    .await?;
    let tmp = std::env::temp_dir();
    let script = tmp.join("atoitalk-pgbench.sql");
    std::fs::write(
        &script,
        format!(
            "\\set n random(1, {})\n\
             BEGIN;\n\
             WITH c AS (SELECT chat_id, sender_id FROM bench_chats WHERE n = :n), \
             m AS (INSERT INTO messages (id, chat_id, sender_id, content) SELECT gen_random_uuid(), chat_id, sender_id, '{SEND_TEXT}' FROM c RETURNING id, chat_id, created_at) \
             UPDATE chats SET last_message_id = m.id, last_message_at = m.created_at, updated_at = now() FROM m WHERE chats.id = m.chat_id;\n\
             END;\n",
            chats.len()
        ),
    )?;
    // pgbench writes one log per thread: `<prefix>.<pid>[.<thread>]`.
    // Named after the database, so two runs with different
    // `BENCH_DB_NAME`s keep their logs apart.
    let log_prefix = format!("{}-log", pgbench_db());
    remove_logs(&tmp, &log_prefix);
    let cpu0 = cpu::Snapshot::take();
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            "-l",
        ])
        .arg(format!("--log-prefix={}", tmp.join(&log_prefix).display()))
        .arg("-f")
        .arg(&script)
        .args([
            "-h",
            &env("BENCH_DB_HOST", "127.0.0.1"),
            "-p",
            &env("BENCH_DB_PORT", "5432"),
            "-U",
            &env("BENCH_DB_USER", "postgres"),
            &pgbench_db(),
        ])
        .env("PGPASSWORD", env("BENCH_DB_PASSWORD", "postgres"))
        .output()
        .await
        .context("running pgbench (install postgresql-contrib / postgresql-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench output: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let cpu1 = cpu::Snapshot::take();
    eprintln!(
        "    {tps:.0} tx/s; {}",
        cpu::per_op(&cpu1, &cpu0, tps * secs as f64)
    );
    let mut latencies = read_logs(&tmp, &log_prefix);
    remove_logs(&tmp, &log_prefix);
    latencies.sort_unstable();
    Ok(Limit { tps, latencies })
}

fn log_files(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&format!("{prefix}.")))
        })
        .map(|e| e.path())
        .collect()
}

fn remove_logs(dir: &std::path::Path, prefix: &str) {
    for f in log_files(dir, prefix) {
        let _ = std::fs::remove_file(f);
    }
}

/// Each line is `client_id transaction_no time script_no time_epoch
/// time_us`, `time` being the transaction's latency in µs.
fn read_logs(dir: &std::path::Path, prefix: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for f in log_files(dir, prefix) {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        out.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()),
        );
    }
    out
}
