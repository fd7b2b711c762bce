//! Resilience: losing Redis or PostgreSQL makes the API report not-ready and
//! fail the requests that need them with 503 and the envelope (never a hang
//! or a 500), and it recovers by itself when they come back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use atoitalk::realtime::event::{kinds, Event};
use serde_json::json;

use crate::harness::{base_env, json, TcpProxy, TestApp};

fn target(host_key: &str, port_key: &str) -> SocketAddr {
    let env = base_env();
    let host = if env[host_key] == "localhost" {
        "127.0.0.1".to_string()
    } else {
        env[host_key].clone()
    };
    format!("{host}:{}", env[port_key])
        .parse()
        .expect("service address")
}

async fn wait_ready(app: &TestApp, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = json(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
        if status == want || Instant::now() > deadline {
            assert_eq!(status, want, "{body}");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_loss_is_503_and_recovers_by_itself() {
    let proxy = TcpProxy::start(target("REDIS_HOST", "REDIS_PORT")).await;
    let app = TestApp::spawn_with(|env| {
        env.insert("REDIS_PORT".into(), proxy.port.to_string());
    })
    .await;
    let (alice, token) = app.make_user("Alice").await;
    let current = || {
        app.http
            .get(app.url("/api/user/current"))
            .bearer_auth(&token)
            .send()
    };
    let (status, _) = json(current().await.unwrap()).await;
    assert_eq!(status, 200);
    let mut ws = app.ws(&token).await;
    // Live (its resume position known) before Redis goes: a socket that
    // could not read its position is asked to resume (4010) instead.
    app.state
        .bus
        .to_user(
            alice,
            &Event::new(kinds::CHAT_HIDE, json!({"chat_id": "first"}), None, None),
        )
        .await;
    assert_eq!(
        ws.expect_event("chat.hide").await["payload"]["chat_id"],
        "first"
    );

    proxy.cut();
    let body = wait_ready(&app, 503).await;
    assert!(body["error"].as_str().unwrap().contains("redis"), "{body}");
    let started = Instant::now();
    let (status, body) = json(current().await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "envelope: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast, no hang"
    );
    let (status, body) = json(
        app.http
            .post(app.url("/api/otp/send"))
            .json(&json!({"email": "x@example.com", "mode": "register", "captcha_token": "t"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    // Postgres-only probes keep answering.
    let (status, _) = json(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200);

    proxy.restore();
    wait_ready(&app, 200).await;
    let (status, body) = json(current().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    // The bus re-subscribed: events reach the socket that lived through it.
    app.state
        .bus
        .to_user(
            alice,
            &Event::new(kinds::CHAT_HIDE, json!({"chat_id": "back"}), None, None),
        )
        .await;
    let e = ws.expect_event("chat.hide").await;
    assert_eq!(e["payload"]["chat_id"], "back");
}

#[tokio::test]
async fn postgres_loss_is_503_and_recovers_by_itself() {
    let proxy = TcpProxy::start(target("DB_HOST", "DB_PORT")).await;
    let app = TestApp::spawn_with(|env| {
        env.insert("DB_PORT".into(), proxy.port.to_string());
    })
    .await;
    let (_, token) = app.make_user("Alice").await;
    let current = || {
        app.http
            .get(app.url("/api/user/current"))
            .bearer_auth(&token)
            .send()
    };
    let (status, _) = json(current().await.unwrap()).await;
    assert_eq!(status, 200);

    proxy.cut();
    let body = wait_ready(&app, 503).await;
    assert!(
        body["error"].as_str().unwrap().contains("postgres"),
        "{body}"
    );
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = json(current().await.unwrap()).await;
        assert_eq!(status, 503, "{body}");
        assert!(body["error"].is_string(), "envelope: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fails fast, no hang"
        );
    }

    proxy.restore();
    wait_ready(&app, 200).await;
    let (status, body) = json(current().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
}
