//! Integration tests of the operations features (issue 19): `/metrics`
//! after a scripted workload, label cardinality, the metrics token, the
//! scheduler's own `/metrics` and run records, and `atoitalk status`.
//!
//! The metrics recorder is global per process and this test binary runs
//! many servers at once, so every metrics test scrapes a dedicated
//! `atoitalk serve` child process: whatever it counts is this test's doing.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::harness::{base_env, free_port, json, ChildGuard, TcpProxy, TestApp, WsClient, WsRead};

/// An `atoitalk serve` child on the test app's database and Redis prefix.
struct Child {
    _guard: ChildGuard,
    base: String,
    http: reqwest::Client,
}

async fn spawn_server(app: &TestApp, extra: &[(&str, &str)]) -> Child {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let guard = ChildGuard::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
            .arg("serve")
            .envs(app.env.iter())
            .env("APP_PORT", port.to_string())
            .env("APP_URL", &base)
            .env("DB_MIGRATE", "false")
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
    );
    let http = reqwest::Client::new();
    // Up to 90 s: a debug binary starting beside a busy parallel suite.
    for _ in 0..900 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return Child {
                    _guard: guard,
                    base,
                    http,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = guard.finish(Duration::from_secs(5)).await;
    panic!(
        "the child server did not become ready on port {port} ({}):\n{}",
        left.status, left.output
    );
}

impl Child {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A socket on the child; `since` resumes from that position.
    async fn ws(&self, token: &str, since: Option<&str>) -> WsClient {
        let mut url = format!("{}/ws?token={token}", self.base.replace("http://", "ws://"));
        if let Some(s) = since {
            url.push_str("&since=");
            url.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
        }
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        WsClient { stream }
    }

    async fn scrape(&self) -> String {
        let res = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain"), "{ct}");
        res.text().await.unwrap()
    }

    /// Scrapes until `done` holds (5 s at most), returning the last scrape:
    /// a socket's counters move just after its frame reached the client.
    async fn scrape_until(&self, done: impl Fn(&str) -> bool) -> String {
        let mut text = self.scrape().await;
        for _ in 0..50 {
            if done(&text) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            text = self.scrape().await;
        }
        text
    }
}

/// The samples of `text`: (name, labels, value).
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = HashMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label pair");
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push((name.to_string(), map, value.parse().expect("value")));
    }
    out
}

/// The sum of `name`'s samples whose labels include `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn looks_like_uuid(s: &str) -> bool {
    s.split(|c: char| !c.is_ascii_hexdigit() && c != '-')
        .any(|w| Uuid::try_parse(w).is_ok())
}

#[tokio::test]
async fn metrics_count_a_scripted_workload() {
    let app = TestApp::spawn().await;
    let server = spawn_server(&app, &[]).await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;

    for _ in 0..7 {
        let r = server
            .http
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // One sign-up code (an email), then 12 logins: the per-IP auth_public
    // bucket (10/min) refuses hits 11 to 13.
    let r = server
        .http
        .post(server.url("/api/otp/send"))
        .json(&json!({"email": "metrics@example.com", "mode": "register", "captcha_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut refused = 0;
    for _ in 0..12 {
        let r = server
            .http
            .post(server.url("/api/auth/login"))
            // Malformed: a 400 before the login throttle is involved.
            .header("Content-Type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused += 1;
        }
    }
    assert_eq!(refused, 3);

    // Bob listens on the child server; Alice sends three messages there.
    let mut ws = server.ws(&bob_t, None).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        let r = server
            .http
            .post(server.url("/api/messages"))
            .bearer_auth(&alice_t)
            .json(&json!({"chat_id": chat, "content": format!("hello {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let e = ws.expect_event("message.new").await;
        seqs.push(e["meta"]["seq"].as_str().expect("meta.seq").to_string());
    }
    let mid = server
        .scrape_until(|t| metric(t, "ws_events_delivered_total", &[]) >= 3.0)
        .await;
    assert_eq!(metric(&mid, "ws_open_sockets", &[]), 1.0);
    // Every live frame was offered to the socket once and delivered; a
    // delivery to so few sockets goes through the socket's task (only large
    // ones are written straight to the sockets: write-through, issue 21).
    let direct = |outcome: &str| metric(&mid, "ws_direct_writes_total", &[("outcome", outcome)]);
    let delivered = metric(&mid, "ws_events_delivered_total", &[]);
    assert!(delivered >= 3.0, "{mid}");
    assert_eq!(direct("queued"), delivered, "{mid}");
    assert_eq!(direct("written") + direct("unflushed"), 0.0, "{mid}");
    drop(ws);

    // A media upload asks the storage backend for one presigned PUT.
    let r = server
        .http
        .post(server.url("/api/media/upload"))
        .bearer_auth(&alice_t)
        .json(
            &json!({"usage": "message_attachment", "original_name": "a.txt", "file_size": 3,
                      "mime_type": "text/plain", "captcha_token": "x"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..4 {
        let r = server
            .http
            .get(server.url(&format!("/api/users/{}", Uuid::new_v4())))
            .bearer_auth(&alice_t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    // Resume: a reconnect after the first message gets the other two
    // replayed; a position the server cannot read gets `sync.reset`.
    let mut back = server.ws(&bob_t, Some(&seqs[0])).await;
    let mut replayed = Vec::new();
    while let WsRead::Event(e) = back.read(Duration::from_millis(700)).await {
        replayed.push(e);
    }
    let contents: Vec<_> = replayed
        .iter()
        .filter(|e| e["type"] == "message.new")
        .map(|e| e["payload"]["content"].clone())
        .collect();
    assert_eq!(
        contents,
        [json!("hello 1"), json!("hello 2")],
        "{replayed:?}"
    );
    drop(back);
    let mut reset = server.ws(&bob_t, Some("not-a-position")).await;
    let e = reset.expect_event("sync.reset").await;
    assert_eq!(e["payload"]["reason"], "invalid_position");
    drop(reset);

    // The sockets' ends are counted once the server noticed them.
    let text = server
        .scrape_until(|t| metric(t, "ws_open_sockets", &[]) == 0.0)
        .await;
    let http = |route: &str, method: &str, status: &str| {
        metric(
            &text,
            "http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(http("/healthz", "GET", "2xx"), 7.0);
    assert_eq!(http("/api/auth/login", "POST", "4xx"), 12.0);
    assert_eq!(http("/api/otp/send", "POST", "2xx"), 1.0);
    assert_eq!(http("/api/messages", "POST", "2xx"), 3.0);
    assert_eq!(http("/api/users/{id}", "GET", "4xx"), 4.0);
    assert_eq!(http("/ws", "GET", "1xx"), 3.0);
    assert_eq!(
        metric(
            &text,
            "http_request_duration_seconds_count",
            &[("route", "/healthz"), ("method", "GET")]
        ),
        7.0
    );
    assert_eq!(
        metric(
            &text,
            "rate_limit_rejections_total",
            &[("bucket", "auth_public")]
        ),
        3.0
    );
    assert_eq!(metric(&text, "emails_total", &[("result", "sent")]), 1.0);
    assert_eq!(metric(&text, "emails_total", &[("result", "failed")]), 0.0);
    assert_eq!(metric(&text, "ws_connects_total", &[]), 3.0);
    assert_eq!(
        metric(&text, "ws_disconnects_total", &[("code", "none")]),
        3.0
    );
    let resume = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    assert_eq!(resume("ws_resume_replays_total", &[("kind", "since")]), 1.0);
    assert_eq!(
        resume("ws_resume_events_replayed_total", &[("kind", "since")]),
        replayed.len() as f64
    );
    // No gap in the live stream needed a fill.
    assert_eq!(resume("ws_resume_replays_total", &[("kind", "fill")]), 0.0);
    assert_eq!(
        resume("ws_sync_resets_total", &[("reason", "invalid_position")]),
        1.0
    );
    assert_eq!(resume("ws_sync_resets_total", &[]), 1.0);
    assert_eq!(metric(&text, "ws_open_sockets", &[]), 0.0);
    assert_eq!(
        metric(
            &text,
            "ws_events_delivered_total",
            &[("type", "message.new")]
        ),
        3.0
    );
    assert_eq!(metric(&text, "ws_send_queue_drops_total", &[]), 0.0);
    // Every message reaches both members through one bus batch.
    let published = metric(&text, "bus_published_total", &[("result", "ok")]);
    assert!(published >= 3.0, "{published}");
    assert!(metric(&text, "bus_received_total", &[]) >= 3.0);
    assert!(metric(&text, "bus_delivery_lag_seconds_count", &[]) >= 3.0);
    assert_eq!(
        metric(
            &text,
            "storage_operations_total",
            &[
                ("backend", "local"),
                ("op", "presign_put"),
                ("result", "ok")
            ]
        ),
        1.0
    );
    assert!(metric(&text, "db_pool_connections", &[]) >= 1.0);
    // Every authenticated request (8 over HTTP, 3 sockets) takes its
    // connection where the wait is counted; nobody is waiting any more.
    assert!(metric(&text, "db_pool_acquire_seconds_count", &[]) >= 11.0);
    assert_eq!(metric(&text, "db_pool_waiters", &[]), 0.0);
    assert_eq!(
        metric(&text, "redis_command_errors_total", &[]),
        0.0,
        "{text}"
    );
}

/// Presence and typing handle their Redis failures themselves (log and
/// carry on): those failures are counted too, under their own path.
#[tokio::test]
async fn redis_errors_of_presence_and_typing_are_counted() {
    let env = base_env();
    let host = env["REDIS_HOST"].replace("localhost", "127.0.0.1");
    let redis = format!("{host}:{}", env["REDIS_PORT"]).parse().unwrap();
    let proxy = TcpProxy::start(redis).await;
    let app = TestApp::spawn().await;
    let (alice, _) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let port = proxy.port.to_string();
    let server = spawn_server(&app, &[("REDIS_PORT", port.as_str())]).await;
    let mut ws = server.ws(&bob_t, None).await;
    let errors =
        |text: &str, path: &str| metric(text, "redis_command_errors_total", &[("path", path)]);
    let before = server.scrape().await;
    assert_eq!(errors(&before, "typing"), 0.0);
    assert_eq!(errors(&before, "presence"), 0.0);

    proxy.cut();
    ws.send_json(&json!({"type": "chat.typing", "payload": null, "meta": {"chat_id": chat}}))
        .await;
    // The socket's end makes presence drop its lease: that fails too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(ws);
    let mut text = String::new();
    for _ in 0..150 {
        text = server.scrape().await;
        if errors(&text, "typing") >= 1.0 && errors(&text, "presence") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(errors(&text, "typing") >= 1.0, "{text}");
    assert!(errors(&text, "presence") >= 1.0, "{text}");
    // /metrics itself needs no Redis.
    proxy.restore();
}

/// With one pooled connection held by a request stuck on a row lock, the
/// requests behind it show in `db_pool_waiters`, and leave it once served.
#[tokio::test]
async fn pool_waiters_show_requests_queued_for_a_connection() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (_, bob_t) = app.make_user("Bob").await;
    let server = spawn_server(&app, &[("DB_MAX_CONNECTIONS", "1")]).await;
    let waiting = |text: &str| metric(text, "db_pool_waiters", &[]);
    let before = server.scrape().await;
    assert_eq!(waiting(&before), 0.0);
    let acquired_before = metric(&before, "db_pool_acquire_seconds_count", &[]);

    let mut lock = app.state.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(alice)
        .execute(&mut *lock)
        .await
        .unwrap();
    // Alice's profile update takes the child's only connection and waits
    // for the row.
    let put = {
        let (http, url) = (server.http.clone(), server.url("/api/user/profile"));
        tokio::spawn(async move {
            http.put(url)
                .bearer_auth(&alice_t)
                .json(&json!({"full_name": "Alice Waited"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let mut blocked = 0i64;
    for _ in 0..100 {
        blocked = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&app.state.db)
        .await
        .unwrap();
        if blocked == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(blocked, 1, "the profile update never reached the row lock");

    // Three of Bob's requests queue behind it (the pool waits up to 5 s).
    let gets: Vec<_> = (0..3)
        .map(|_| {
            let (http, url, t) = (
                server.http.clone(),
                server.url(&format!("/api/users/{alice}")),
                bob_t.clone(),
            );
            tokio::spawn(
                async move { http.get(url).bearer_auth(&t).send().await.unwrap().status() },
            )
        })
        .collect();
    let mut text = String::new();
    for _ in 0..60 {
        text = server.scrape().await;
        if waiting(&text) >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(waiting(&text), 3.0, "{text}");

    // Long enough that every wait lands past the 0.1 s bucket.
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.unwrap();
    assert_eq!(put.await.unwrap(), 200);
    for g in gets {
        assert_eq!(g.await.unwrap(), 200);
    }
    let after = server.scrape().await;
    assert_eq!(waiting(&after), 0.0);
    // The profile update's two acquires and Bob's three.
    assert!(metric(&after, "db_pool_acquire_seconds_count", &[]) - acquired_before >= 5.0);
    // Bob's waits were long: outside the 0.1 s bucket.
    let slow = metric(&after, "db_pool_acquire_seconds_count", &[])
        - metric(&after, "db_pool_acquire_seconds_bucket", &[("le", "0.1")]);
    assert!(slow >= 3.0, "{after}");
}

#[tokio::test]
async fn metric_labels_stay_bounded_whatever_the_paths() {
    let app = TestApp::spawn().await;
    let server = spawn_server(&app, &[]).await;
    let (_, token) = app.make_user("Carol").await;
    for i in 0..40 {
        let id = Uuid::new_v4();
        let paths = [
            format!("/api/users/{id}"),
            format!("/api/chats/{id}/messages"),
            format!("/no/such/{id}/path{i}"),
            format!("/api/users/{id}/nothing-here"),
        ];
        for path in paths {
            server
                .http
                .get(server.url(&path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
        }
        // Arbitrary methods collapse into `other`.
        server
            .http
            .request(
                reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap(),
                server.url("/healthz"),
            )
            .send()
            .await
            .unwrap();
    }
    // Resume positions from the client never become labels either.
    for _ in 0..5 {
        let since = Uuid::new_v4().to_string();
        let mut ws = server.ws(&token, Some(&since)).await;
        ws.expect_event("sync.reset").await;
    }
    let text = server.scrape().await;
    let all = samples(&text);
    // Every label is one of the fixed dimensions.
    const KEYS: &[&str] = &[
        "route", "method", "status", "code", "type", "format", "result", "bucket", "backend", "op",
        "job", "kind", "reason", "path", "le",
    ];
    for (name, labels, _) in &all {
        for (k, v) in labels {
            assert!(KEYS.contains(&k.as_str()), "{name} has label {k}");
            assert!(!looks_like_uuid(v), "{name}{{{k}={v}}} carries an id");
            assert!(!v.starts_with("/no/"), "{name}{{{k}={v}}} is a raw path");
        }
    }
    assert_eq!(
        metric(
            &text,
            "ws_sync_resets_total",
            &[("reason", "invalid_position")]
        ),
        5.0
    );
    let reset_series = all
        .iter()
        .filter(|(n, _, _)| n == "ws_sync_resets_total")
        .count();
    assert_eq!(reset_series, 1, "{text}");
    let series = all
        .iter()
        .filter(|(n, _, _)| n == "http_requests_total")
        .count();
    assert!(
        series <= 8,
        "{series} request series after 200 distinct paths:\n{text}"
    );
    let unmatched = metric(
        &text,
        "http_requests_total",
        &[("route", "unmatched"), ("method", "GET")],
    );
    assert_eq!(unmatched, 80.0);
    assert_eq!(
        metric(
            &text,
            "http_requests_total",
            &[("route", "/api/users/{id}")]
        ),
        40.0
    );
    assert_eq!(
        metric(&text, "http_requests_total", &[("method", "other")]),
        40.0
    );
}

#[tokio::test]
async fn metrics_token_guards_the_endpoint() {
    let app = TestApp::spawn().await;
    let server = spawn_server(&app, &[("METRICS_TOKEN", "scrape-me-0123")]).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("scrape-me-0123"),
        Some("Bearer scrape-me-01234"),
    ] {
        let mut req = server.http.get(server.url("/metrics"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let (status, body) = json(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body["error"], "Unauthorized");
    }
    let res = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth("scrape-me-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("http_requests_total"));
    // The in-process server of this test has no token: open.
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

async fn status_cmd(env: &HashMap<String, String>) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .arg("status")
        .envs(env.iter())
        .output()
        .await
        .unwrap()
}

/// The scheduler runs audit-cleanup (every minute here), deletes what is
/// past retention, counts it on its own `/metrics` and records the run,
/// which `atoitalk status` shows with the live instances and their sockets.
#[tokio::test]
async fn scheduler_metrics_and_status_report() {
    let app = TestApp::spawn().await;
    let server = spawn_server(&app, &[]).await;
    let admin = Uuid::now_v7();
    for age in [400, 366, 10] {
        sqlx::query(
            "INSERT INTO admin_audit (id, admin_id, action, target_type, created_at) \
             VALUES ($1, $2, 'user.ban', 'user', now() - make_interval(days => $3))",
        )
        .bind(Uuid::now_v7())
        .bind(admin)
        .bind(age)
        .execute(&app.state.db)
        .await
        .unwrap();
    }
    let port = free_port();
    let _scheduler = ChildGuard::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
            .arg("scheduler")
            .envs(app.env.iter())
            .env("SCHEDULER_METRICS_PORT", port.to_string())
            .env("AUDIT_CLEANUP_CRON", "* * * * *"),
    );
    let (_, bob_t) = app.make_user("Bob").await;
    let mut ws = server.ws(&bob_t, None).await;

    // The first run comes at the next minute boundary.
    let http = reqwest::Client::new();
    let mut text = String::new();
    // The next minute boundary, plus start-up on a busy machine.
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            text = r.text().await.unwrap_or_default();
            if metric(
                &text,
                "scheduler_job_runs_total",
                &[("job", "audit-cleanup")],
            ) >= 1.0
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        metric(
            &text,
            "scheduler_job_runs_total",
            &[("job", "audit-cleanup"), ("result", "ok")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "scheduler_job_deleted_total",
            &[("job", "audit-cleanup")]
        ),
        2.0
    );
    assert!(
        metric(
            &text,
            "scheduler_job_last_run_timestamp_seconds",
            &[("job", "audit-cleanup")]
        ) > 0.0
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_audit WHERE admin_id = $1")
        .bind(admin)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left, 1, "only the entry within 365 days stays");

    // Two API instances (this test's and the child) hold leases; the
    // child's socket shows once its lease is renewed (every 15 s).
    let mut report = String::new();
    for _ in 0..40 {
        let out = status_cmd(&app.env).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report = String::from_utf8_lossy(&out.stdout).into_owned();
        if report.contains("instances  2 alive, 1 sockets") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(report.contains("instances  2 alive, 1 sockets"), "{report}");
    assert!(report.contains("database   ok"), "{report}");
    assert!(report.contains("(up to date)"), "{report}");
    assert!(report.contains("redis      ok"), "{report}");
    assert!(report.contains("storage    ok    local"), "{report}");
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with("audit-cleanup"))
        .expect("audit-cleanup line");
    assert!(line.contains("ok, deleted 2, failed 0"), "{report}");
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with("entity-cleanup"))
        .expect("entity-cleanup line");
    assert!(line.contains("never ran"), "{report}");
    assert!(matches!(
        ws.read(Duration::from_millis(10)).await,
        WsRead::Timeout
    ));
    drop(ws);
}

#[tokio::test]
async fn status_fails_and_names_what_is_down() {
    let app = TestApp::spawn().await;
    let mut env = app.env.clone();
    env.insert("REDIS_PORT".into(), free_port().to_string());
    let out = status_cmd(&env).await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("database   ok"), "{stdout}");
    assert!(stdout.contains("redis      DOWN"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreachable: redis"), "{stderr}");
}

/// Write-through (issue 21) on a real multi-worker server: with the
/// threshold at one socket, a live frame is written straight to an idle
/// socket by a writer lane. Two devices of one member and another member
/// each get every message once and in order, and the frames that went
/// straight to the sockets are counted.
#[tokio::test]
async fn frames_written_through_arrive_once_and_in_order() {
    let app = TestApp::spawn().await;
    let server = spawn_server(&app, &[("WS_DIRECT_WRITE_MIN_SOCKETS", "1")]).await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (carol, carol_t) = app.make_user("Carol").await;
    let group = app.make_group(alice, &[bob, carol]).await;
    let mut sockets = vec![
        server.ws(&bob_t, None).await,
        server.ws(&bob_t, None).await,
        server.ws(&carol_t, None).await,
    ];
    // Registered and idle before the first message.
    tokio::time::sleep(Duration::from_millis(300)).await;
    const N: usize = 30;
    let sent: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    for content in &sent {
        let r = server
            .http
            .post(server.url("/api/messages"))
            .bearer_auth(&alice_t)
            .json(&json!({"chat_id": group, "content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for ws in &mut sockets {
        let mut got = Vec::new();
        while got.len() < N {
            let e = ws.expect_event("message.new").await;
            got.push(e["payload"]["content"].as_str().unwrap_or("").to_string());
        }
        assert_eq!(got, sent);
        loop {
            match ws.read(Duration::from_millis(300)).await {
                WsRead::Event(e) if e["type"] == "message.new" => panic!("a duplicate: {e}"),
                WsRead::Event(_) => continue,
                _ => break,
            }
        }
    }
    let text = server.scrape().await;
    let direct = |outcome: &str| metric(&text, "ws_direct_writes_total", &[("outcome", outcome)]);
    assert_eq!(
        metric(
            &text,
            "ws_events_delivered_total",
            &[("type", "message.new")]
        ),
        (3 * N) as f64
    );
    // Each socket's first event reads the store first (it started before
    // its stream existed), and a socket still busy with one frame queues
    // the next; the rest went straight to the sockets.
    assert!(direct("written") >= N as f64, "{text}");
}
