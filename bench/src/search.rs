//! The `search` scenario: full-text search over a bulk-loaded dataset
//! (`search_seed.sql`: generate_series straight into PostgreSQL, not the
//! API), a viewer in `mine` of the chats; p50/p99 of the global and the
//! per-chat search over HTTP, the index size, and the plans.

use std::time::{Duration, Instant};

use anyhow::Context;
use atoitalk::messages::search::query::Terms;
use atoitalk::messages::search::repo;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{fresh_db, ms, percentile, reset_user_limits, token, Args, Row, ServerProc};

/// Searches of every kind: the most common word, mid-frequency words, a
/// rare word, a word in no message, prefixes, two words, an accent.
const QUERIES: [&str; 8] = [
    "yang",
    "kopi",
    "kata4321",
    "tidakada",
    "mak",
    "nasi%20gor",
    "cafe",
    "deadline%20rep",
];

pub(super) async fn run(
    args: &Args,
    messages: u32,
    chats: u32,
    mine: u32,
    requests: u32,
) -> anyhow::Result<Vec<Row>> {
    let db = fresh_db(args).await?;
    eprintln!("==> search: seeding {messages} messages across {chats} chats (viewer in {mine})");
    let seed = include_str!("search_seed.sql")
        .replace("{messages}", &messages.to_string())
        .replace("{chats}", &chats.to_string())
        .replace("{mine}", &mine.to_string());
    // Temp tables: one connection for the whole seed.
    let mut conn: PgConnection = db.acquire().await?.detach();
    let started = Instant::now();
    let mut index_build = Duration::ZERO;
    for stmt in seed.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        let t0 = Instant::now();
        sqlx::raw_sql(stmt)
            .execute(&mut conn)
            .await
            .with_context(|| format!("seed statement: {}", &stmt[..stmt.len().min(120)]))?;
        if stmt.contains("EXECUTE (SELECT def FROM bench_index)") {
            index_build = t0.elapsed();
        }
    }
    eprintln!("    seeded in {:.0} s", started.elapsed().as_secs_f64());
    let viewer: Uuid = sqlx::query_scalar("SELECT id FROM bench_users WHERE n = 0")
        .fetch_one(&mut conn)
        .await?;
    let chat: Uuid = sqlx::query_scalar("SELECT chat_id FROM bench_chats WHERE k = 1")
        .fetch_one(&mut conn)
        .await?;
    // The viewer's readable chats as the server computes them.
    let rows: Vec<(Uuid, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "SELECT c.chat_id, p.hidden_at FROM bench_chats c \
           LEFT JOIN (SELECT chat_id, COALESCE(user1_hidden_at, user2_hidden_at) AS hidden_at \
                        FROM private_chats) p ON p.chat_id = c.chat_id \
          WHERE c.k <= $1",
    )
    .bind(mine as i32)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let mine_chats: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let hidden: Vec<Uuid> = rows.iter().filter(|r| r.1.is_some()).map(|r| r.0).collect();
    let hidden_at: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().filter_map(|r| r.1).collect();
    sqlx::query("VACUUM ANALYZE").execute(&db).await?;
    let (live, index_bytes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM messages WHERE deleted_at IS NULL AND content IS NOT NULL), \
                pg_relation_size('messages_search_idx')",
    )
    .fetch_one(&db)
    .await?;
    let per_million = index_bytes as f64 / (1 << 20) as f64 / (live as f64 / 1e6);

    let server = ServerProc::start(args, args.port).await?;
    let http = reqwest::Client::new();
    let tok = token(viewer);
    let base = format!("http://127.0.0.1:{}", server.port);
    let measure = |path: String| {
        let (http, tok, base) = (http.clone(), tok.clone(), base.clone());
        async move {
            let mut lat = Vec::new();
            let mut by_query = vec![Vec::new(); QUERIES.len()];
            let mut hits = 0u64;
            for i in 0..requests {
                if i % 150 == 0 {
                    reset_user_limits(viewer).await;
                }
                let q = QUERIES[i as usize % QUERIES.len()];
                let url = format!("{base}{path}?q={q}&limit=20");
                let t0 = Instant::now();
                let r = http.get(&url).bearer_auth(&tok).send().await?;
                let ok = r.status().is_success();
                let body = r.bytes().await?;
                if ok {
                    let us = t0.elapsed().as_micros() as u64;
                    lat.push(us);
                    by_query[i as usize % QUERIES.len()].push(us);
                    let v: serde_json::Value = serde_json::from_slice(&body)?;
                    hits += v["data"].as_array().map_or(0, |a| a.len() as u64);
                }
            }
            lat.sort_unstable();
            by_query.iter_mut().for_each(|l| l.sort_unstable());
            anyhow::Ok((lat, by_query, hits))
        }
    };
    // Warm-up: one round of every query on both endpoints.
    for q in QUERIES {
        for path in [
            "/api/messages/search".to_string(),
            format!("/api/chats/{chat}/messages/search"),
        ] {
            let _ = http
                .get(format!("{base}{path}?q={q}"))
                .bearer_auth(&tok)
                .send()
                .await;
        }
    }
    let (global, global_by_query, global_hits) = measure("/api/messages/search".into()).await?;
    let (per_chat, chat_by_query, chat_hits) =
        measure(format!("/api/chats/{chat}/messages/search")).await?;
    drop(server);

    for (label, text) in [
        ("common word", "yang"),
        ("mid-frequency word", "kopi"),
        ("rare word", "kata4321"),
        ("short prefix", "mak"),
        ("two words", "nasi gor"),
    ] {
        // The query exactly as the server builds it.
        let q = Terms::parse(Some(text))?.tsquery();
        let plan = explain(&db, &repo::global_sql(), Some(repo::GLOBAL_SETTINGS), |e| {
            e.bind(mine_chats.clone())
                .bind(q.words.clone())
                .bind(Uuid::max())
                .bind(21i64)
                .bind(hidden.clone())
                .bind(hidden_at.clone())
                .bind(q.token.clone())
        })
        .await?;
        eprintln!("--- EXPLAIN (ANALYZE, BUFFERS) global search, {label} ({q:?})\n{plan}");
        let plan = explain(
            &db,
            &repo::in_chat_sql(),
            Some(repo::IN_CHAT_SETTINGS),
            |e| {
                e.bind(chat)
                    .bind(q.words.clone())
                    .bind(None::<chrono::DateTime<chrono::Utc>>)
                    .bind(Uuid::max())
                    .bind(21i64)
                    .bind(q.token.clone())
            },
        )
        .await?;
        eprintln!("--- EXPLAIN (ANALYZE, BUFFERS) per-chat search, {label} ({q:?})\n{plan}");
    }
    let note = |lat: &Vec<u64>, hits: u64| {
        format!(
            "{} of {requests} ok, {hits} hits; {live} messages",
            lat.len()
        )
    };
    let mut rows = vec![
        Row {
            name: format!("GET /api/messages/search (viewer in {mine} of {chats} chats)"),
            value: format!(
                "p50 {} / p99 {}",
                ms(percentile(&global, 0.5)),
                ms(percentile(&global, 0.99))
            ),
            goal: "p99 < 20 ms".into(),
            note: note(&global, global_hits),
        },
        Row {
            name: "GET /api/chats/{id}/messages/search".into(),
            value: format!(
                "p50 {} / p99 {}",
                ms(percentile(&per_chat, 0.5)),
                ms(percentile(&per_chat, 0.99))
            ),
            goal: "p99 < 20 ms".into(),
            note: note(&per_chat, chat_hits),
        },
        Row {
            name: "messages_search_idx size".into(),
            value: format!("{per_million:.0} MiB per million messages"),
            goal: "reported".into(),
            note: format!(
                "{:.0} MiB for {live} messages; built in {:.0} s",
                index_bytes as f64 / (1 << 20) as f64,
                index_build.as_secs_f64()
            ),
        },
    ];
    // Per search, both endpoints: common, rare and prefix searches apart.
    for (i, q) in QUERIES.iter().enumerate() {
        for (label, lat) in [
            ("global", &global_by_query[i]),
            ("one chat", &chat_by_query[i]),
        ] {
            rows.push(Row {
                name: format!("  q={} ({label})", q.replace("%20", " ")),
                value: format!(
                    "p50 {} / p99 {}",
                    ms(percentile(lat, 0.5)),
                    ms(percentile(lat, 0.99))
                ),
                goal: "-".into(),
                note: format!("{} requests", lat.len()),
            });
        }
    }
    Ok(rows)
}

type Scalar<'a> = sqlx::query::QueryScalar<'a, sqlx::Postgres, String, sqlx::postgres::PgArguments>;

/// `EXPLAIN (ANALYZE, BUFFERS)` of a statement with its parameters bound
/// by `bind` (an unnamed statement, planned with its values as the server's),
/// after the server's `SET LOCAL` for it, if any.
async fn explain(
    db: &sqlx::PgPool,
    sql: &str,
    settings: Option<&str>,
    bind: impl for<'a> FnOnce(Scalar<'a>) -> Scalar<'a>,
) -> anyhow::Result<String> {
    let mut tx = db.begin().await?;
    if let Some(set) = settings {
        sqlx::query(set).execute(&mut *tx).await?;
    }
    let text = format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
    let lines: Vec<String> = bind(sqlx::query_scalar(&text).persistent(false))
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(lines.join("\n"))
}
