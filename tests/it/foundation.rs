//! Foundation: process surface, config errors, health, migrations, email,
//! WebSocket auth and cross-instance delivery.

use std::process::Stdio;
use std::time::Duration;

use atoitalk::realtime::event::{kinds, Event};
use serde_json::json;

use crate::harness::{self, free_port, json, TestApp, WsRead};

#[tokio::test]
async fn root_health_and_fallbacks() {
    let app = TestApp::spawn().await;
    let res = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "Welcome to AtoiTalkAPI");

    let (status, body) = json(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "ok");

    let (status, body) = json(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "ready");

    let (status, body) = json(app.http.get(app.url("/api/nope")).send().await.unwrap()).await;
    assert_eq!((status, body), (404, json!({"error": "Not Found"})));

    let (status, body) = json(app.http.delete(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (status, body),
        (405, json!({"error": "Method Not Allowed"}))
    );

    // Every response carries a request id.
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(res.headers().get("x-request-id").is_some());
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "APP_CORS_ALLOWED_ORIGINS".into(),
            "https://app.example.com".into(),
        );
    })
    .await;
    let res = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/auth/login"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let app = TestApp::spawn().await;
    // The server already migrated; running again changes nothing.
    atoitalk::infra::db::migrate(&app.state.db)
        .await
        .expect("second run");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        atoitalk::infra::db::MIGRATOR.iter().count()
    );
    // The CLI against the same database also succeeds.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .arg("migrate")
        .envs(app.env.iter())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in [
        "users",
        "user_identities",
        "user_blocks",
        "chats",
        "private_chats",
        "group_chats",
        "group_members",
        "messages",
        "media",
        "reports",
        "report_evidence_media",
    ] {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
        )
        .bind(table)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
        assert_eq!(n, 1, "table {table} exists");
    }
}

#[test]
fn bad_config_stops_startup_with_one_clear_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .arg("serve")
        .env("APP_PORT", "abc")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("APP_PORT") && err.contains("abc"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .arg("serve")
        .env("APP_ENV", "production")
        .env_remove("JWT_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("JWT_SECRET") && err.contains("production"),
        "{err}"
    );
}

#[tokio::test]
async fn email_reaches_the_smtp_sink() {
    let app = TestApp::spawn().await;
    app.state
        .mailer
        .send(&atoitalk::infra::email::Email {
            to: "someone@example.com".into(),
            subject: "Hello".into(),
            html: "<p>code 123456</p>".into(),
        })
        .await
        .expect("sent");
    let mail = app.mail.wait_for("someone@example.com").await;
    assert_eq!(mail.from, "test@atoitalk.com");
    assert!(mail.data.contains("Subject: Hello"), "{}", mail.data);
    assert_eq!(app.mail.otp_for("someone@example.com").await, "123456");
}

#[tokio::test]
async fn websocket_refuses_bad_tokens_before_upgrading() {
    let app = TestApp::spawn().await;
    for url in [
        app.url("/ws"),
        app.url("/ws?token="),
        app.url("/ws?token=garbage"),
    ] {
        let (status, body) = json(app.http.get(url).send().await.unwrap()).await;
        assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));
    }
    let (_, token) = app.make_user("Alice").await;
    // A token signed with another secret.
    let (id, _) = app.make_user("Bob").await;
    let forged = atoitalk::auth::tokens::issue("other-secret", 3600, id).unwrap();
    let (status, _) = json(
        app.http
            .get(app.url(&format!("/ws?token={forged}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // A valid token without the upgrade headers is a plain 400.
    let res = app
        .http
        .get(app.url(&format!("/ws?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // POST is not routed.
    let (status, _) = json(app.http.post(app.url("/ws")).send().await.unwrap()).await;
    assert_eq!(status, 405);
    // And a good token upgrades.
    let mut ws = app.ws(&token).await;
    assert!(matches!(
        ws.read(Duration::from_millis(200)).await,
        WsRead::Timeout
    ));
}

#[tokio::test]
async fn events_cross_instances_exactly_once() {
    cross_instance_delivery("batched").await;
}

#[tokio::test]
async fn reference_bus_format_also_delivers_exactly_once() {
    cross_instance_delivery("reference").await;
}

#[tokio::test]
async fn per_recipient_unread_counts_survive_batching() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let (alice, alice_token) = a.make_user("Alice").await;
    let (bob, bob_token) = a.make_user("Bob").await;
    let mut alice_ws = a.ws(&alice_token).await;
    let mut bob_ws = b.ws(&bob_token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = Event::new(kinds::MESSAGE_NEW, json!({"id": "m1"}), None, Some(alice));
    a.state
        .bus
        .to_each(vec![(alice, e.with_unread(0)), (bob, e.with_unread(5))])
        .await;
    let got = alice_ws.expect_event("message.new").await;
    assert_eq!(got["meta"]["unread_count"], 0);
    let got = bob_ws.expect_event("message.new").await;
    assert_eq!(got["meta"]["unread_count"], 5);
    assert_eq!(got["payload"]["id"], "m1");
    bob_ws
        .expect_no_event("message.new", Duration::from_millis(300))
        .await;
}

async fn cross_instance_delivery(format: &str) {
    let a = TestApp::spawn_with(|env| {
        env.insert("EVENT_BUS_FORMAT".into(), format.into());
    })
    .await;
    let b = a.second_instance().await;
    let (alice, alice_token) = a.make_user("Alice").await;
    let (bob, bob_token) = a.make_user("Bob").await;
    let mut alice_on_b = b.ws(&alice_token).await;
    let mut alice_on_a = a.ws(&alice_token).await;
    let mut bob_on_a = a.ws(&bob_token).await;
    // Give both sockets a moment to register.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let event = Event::new(kinds::CHAT_HIDE, json!({"chat_id": "c"}), None, Some(alice));
    a.state.bus.to_user(alice, &event).await;

    for ws in [&mut alice_on_b, &mut alice_on_a] {
        let e = ws.expect_event("chat.hide").await;
        assert_eq!(e["payload"]["chat_id"], "c");
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
        assert_eq!(e["meta"]["chat_id"], "00000000-0000-0000-0000-000000000000");
        // Exactly once: no duplicate follows.
        ws.expect_no_event("chat.hide", Duration::from_millis(300))
            .await;
    }
    // Not delivered to someone else.
    bob_on_a
        .expect_no_event("chat.hide", Duration::from_millis(200))
        .await;
    let _ = bob;
}

#[tokio::test]
async fn disconnects_reach_every_instance() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let (alice, token) = a.make_user("Alice").await;
    let mut on_a = a.ws(&token).await;
    let mut on_b = b.ws(&token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.state
        .bus
        .disconnect_user(alice, atoitalk::realtime::CloseReason::SessionRevoked)
        .await;
    assert_eq!(on_a.expect_closed().await, Some(4001));
    assert_eq!(on_b.expect_closed().await, Some(4001));
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_with_a_close_frame() {
    let mut app = TestApp::spawn().await;
    let (_, token) = app.make_user("Alice").await;
    let mut ws = app.ws(&token).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.stop().await;
    assert_eq!(ws.expect_closed().await, Some(1001));
}

/// A private Redis on a free port that the test can stop and restart; a
/// child of the test, so the guard stops it on every exit path.
struct OwnRedis {
    port: u16,
    child: Option<harness::ChildGuard>,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = harness::ChildGuard::spawn(std::process::Command::new("redis-server").args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]));
        let r = OwnRedis {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("own redis did not start (is redis-server installed? scripts/test.sh installs it)");
    }

    fn stop(&mut self) {
        // Dropping the guard kills and reaps it: the port is closed after.
        self.child = None;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test]
async fn readiness_follows_redis_and_recovers() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let app = TestApp::spawn_with(|env| {
        env.insert("REDIS_PORT".into(), port.to_string());
        // All of this app's Redis is the one stopped below, in the
        // cluster pass too (whose filter can include this test).
        env.remove("REDIS_CLUSTER_NODES");
    })
    .await;
    let (status, _) = json(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200);

    let (alice, token) = app.make_user("Alice").await;
    let mut ws = app.ws(&token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    redis.stop();
    // Without Redis the instance still serves its own sockets.
    app.state
        .bus
        .to_user(
            alice,
            &Event::new(kinds::CHAT_HIDE, json!({"chat_id": "local"}), None, None),
        )
        .await;
    let e = ws.expect_event("chat.hide").await;
    assert_eq!(e["payload"]["chat_id"], "local");

    let (status, body) = json(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("redis"), "{body}");
    // The process itself is still alive.
    let (status, _) = json(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200);

    let _redis = OwnRedis::start(port);
    let mut ready = false;
    for _ in 0..100 {
        let (status, _) = json(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
        if status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again after Redis came back");
    // The restarted Redis is empty: the resume store is gone. The socket
    // either keeps receiving through the re-subscribed bus or, once its
    // instance notices it may have missed events, is told to resume (4010,
    // issue 16), never left silently stale. Either way events flow again.
    let hide =
        |chat: &'static str| Event::new(kinds::CHAT_HIDE, json!({"chat_id": chat}), None, None);
    app.state.bus.to_user(alice, &hide("back")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.read(left).await {
            WsRead::Event(e) if e["payload"]["chat_id"] == "back" => break,
            WsRead::Event(_) => continue,
            WsRead::Closed(Some(4010)) => {
                let mut ws = app.ws(&token).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                app.state.bus.to_user(alice, &hide("again")).await;
                let e = ws.expect_event("chat.hide").await;
                assert_eq!(e["payload"]["chat_id"], "again");
                break;
            }
            other => panic!("expected chat.hide or a 4010 close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn harness_creates_isolated_databases_and_drops_them() {
    let a = harness::create_database().await;
    let b = harness::TestDb::migrated().await;
    let (a_name, b_name) = (a.name.clone(), b.name.clone());
    assert_ne!(a_name, b_name);
    assert!(harness::database_exists(&a_name).await);
    assert!(harness::database_exists(&b_name).await);
    drop((a, b));
    assert!(!harness::database_exists(&a_name).await);
    assert!(!harness::database_exists(&b_name).await);
}

#[tokio::test]
async fn serve_migrates_an_empty_database_on_start() {
    // Other tests start from a migrated copy; this one checks DB_MIGRATE.
    let empty = harness::create_database().await;
    let name = empty.name.clone();
    let app = TestApp::spawn_with(|env| {
        env.insert("DB_NAME".into(), name);
    })
    .await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        atoitalk::infra::db::MIGRATOR.iter().count()
    );
    let (_, token) = app.make_user("Alice").await;
    let (status, body) = json(
        app.authed(reqwest::Method::GET, "/api/user/current", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["full_name"], "Alice");
}

#[tokio::test]
async fn a_failing_test_leaves_no_database_and_no_child_process() {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing = tokio::spawn(async move {
        let app = TestApp::spawn().await;
        let child = harness::ChildGuard::spawn(
            std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
                .arg("scheduler")
                .envs(app.env.iter()),
        );
        tx.send((app.env["DB_NAME"].clone(), child.id())).unwrap();
        panic!("a failing assertion (expected by this test)");
    });
    assert!(failing.await.unwrap_err().is_panic());
    let (db, pid) = rx.recv().unwrap();
    assert!(!harness::database_exists(&db).await, "{db} was left behind");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "scheduler {pid} still runs"
    );
}
