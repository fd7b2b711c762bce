//! Idempotent sends (issue 16 §2): `Idempotency-Key` on `POST /api/messages`.

use std::time::Duration;

use atoitalk::jobs::{run_job, Job};
use atoitalk::messages::idempotency::{Claim, IdempotencyKey};
use atoitalk::messages::service::SendInput;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{json as body_of, make_group, TestApp, WsClient, WsRead};

const QUIET: Duration = Duration::from_millis(600);

pub async fn send_keyed(
    app: &TestApp,
    token: &str,
    key: Option<&[u8]>,
    payload: &Value,
) -> (u16, Value) {
    let mut req = app.authed(reqwest::Method::POST, "/api/messages", token);
    if let Some(k) = key {
        let value = reqwest::header::HeaderValue::from_bytes(k).expect("header value");
        req = req.header("Idempotency-Key", value);
    }
    body_of(req.json(payload).send().await.expect("send")).await
}

async fn count(app: &TestApp, sql: &str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .expect("count")
}

async fn messages_in(app: &TestApp, chat: Uuid) -> i64 {
    count(
        app,
        "SELECT count(*) FROM messages WHERE chat_id = $1 AND type = 'regular'",
        chat,
    )
    .await
}

/// Every `message.new` arriving within `within`.
async fn drain_new(ws: &mut WsClient, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.read(left).await {
            WsRead::Event(e) if e["type"] == "message.new" => out.push(e),
            WsRead::Event(_) => {}
            WsRead::Timeout => return out,
            WsRead::Closed(c) => panic!("socket closed ({c:?})"),
        }
    }
}

#[tokio::test]
async fn a_retry_returns_the_original_and_publishes_nothing_new() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let body = json!({"chat_id": chat, "content": "hello once"});

    let (s, first) = send_keyed(&app, &at, Some(b"send-1"), &body).await;
    assert_eq!(s, 200, "{first}");
    let id = first["data"]["id"].clone();
    assert!(
        first["data"].get("idempotency_key").is_none(),
        "the response keeps its shape"
    );

    // The sender's socket gets the key back; the recipient's copy has none.
    let mine = alice_ws.expect_event("message.new").await;
    assert_eq!(mine["payload"]["id"], id);
    assert_eq!(mine["payload"]["idempotency_key"], "send-1");
    let theirs = bob_ws.expect_event("message.new").await;
    assert_eq!(theirs["payload"]["id"], id);
    assert!(
        theirs["payload"].get("idempotency_key").is_none(),
        "{theirs}"
    );
    assert_eq!(theirs["meta"]["unread_count"], 1);

    // The retry: same message, nothing published, nothing counted.
    let (s, again) = send_keyed(&app, &at, Some(b"send-1"), &body).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["data"]["id"], id);
    assert_eq!(again["data"]["content"], "hello once");
    assert!(drain_new(&mut alice_ws, QUIET).await.is_empty());
    assert!(drain_new(&mut bob_ws, Duration::from_millis(50))
        .await
        .is_empty());
    assert_eq!(messages_in(&app, chat).await, 1);
    let (_, detail) = get(&app, &bt, &format!("/api/chats/{chat}")).await;
    assert_eq!(detail["data"]["unread_count"], 1);

    // Surrounding whitespace does not make it another request.
    let (s, padded) = send_keyed(
        &app,
        &at,
        Some(b"send-1"),
        &json!({"chat_id": chat, "content": "  hello once "}),
    )
    .await;
    assert_eq!(s, 200, "{padded}");
    assert_eq!(padded["data"]["id"], id);

    // No key: an ordinary second message.
    let (s, plain) = send_keyed(&app, &at, None, &body).await;
    assert_eq!(s, 200);
    assert_ne!(plain["data"]["id"], id);
    let plain_event = alice_ws.expect_event("message.new").await;
    assert!(plain_event["payload"].get("idempotency_key").is_none());
    assert_eq!(messages_in(&app, chat).await, 2);
}

#[tokio::test]
async fn twenty_concurrent_retries_store_one_message() {
    let app = TestApp::spawn_with(|env| {
        env.insert("DB_MAX_CONNECTIONS".into(), "12".into());
    })
    .await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let body = json!({"chat_id": chat, "content": "exactly once"});

    let sends = (0..20).map(|_| send_keyed(&app, &at, Some(b"storm"), &body));
    let answers = futures::future::join_all(sends).await;
    let ids: Vec<Value> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 200, "{b}");
            b["data"]["id"].clone()
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(messages_in(&app, chat).await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM message_idempotency_keys WHERE user_id = $1",
            alice
        )
        .await,
        1
    );
    let events = drain_new(&mut bob_ws, Duration::from_secs(1)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["payload"]["id"], ids[0]);
    let (_, detail) = get(&app, &bt, &format!("/api/chats/{chat}")).await;
    assert_eq!(detail["data"]["unread_count"], 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    let other_chat = app.make_private_chat(alice, carol).await;
    let mut bob_ws = connect(&app, bob, &bt).await;

    let (s, first) = send_keyed(
        &app,
        &at,
        Some(b"k-409"),
        &json!({"chat_id": chat, "content": "original"}),
    )
    .await;
    assert_eq!(s, 200, "{first}");
    bob_ws.expect_event("message.new").await;

    for body in [
        json!({"chat_id": chat, "content": "changed"}),
        json!({"chat_id": other_chat, "content": "original"}),
        json!({"chat_id": chat, "content": "original", "reply_to_id": first["data"]["id"]}),
    ] {
        let (s, b) = send_keyed(&app, &at, Some(b"k-409"), &body).await;
        assert_eq!(s, 409, "{body} -> {b}");
        assert_eq!(
            b["error"],
            "Idempotency-Key was already used with a different request"
        );
    }
    assert!(drain_new(&mut bob_ws, QUIET).await.is_empty());
    assert_eq!(messages_in(&app, chat).await, 1);
    assert_eq!(messages_in(&app, other_chat).await, 0);
}

#[tokio::test]
async fn malformed_keys_are_refused_before_anything_is_stored() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let body = json!({"chat_id": chat, "content": "x"});
    let long = vec![b'k'; 129];
    for bad in [&b""[..], &long, b"caf\xc3\xa9", b"tab\there"] {
        let (s, b) = send_keyed(&app, &at, Some(bad), &body).await;
        assert_eq!(s, 400, "{bad:?} -> {b}");
        assert!(
            b["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("Invalid Idempotency-Key header")),
            "{b}"
        );
    }
    // Two values of the header are ambiguous.
    let res = app
        .authed(reqwest::Method::POST, "/api/messages", &at)
        .header("Idempotency-Key", "one")
        .header("Idempotency-Key", "two")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(messages_in(&app, chat).await, 0);

    // The longest allowed key, with spaces and punctuation, is fine.
    let mut edge = vec![b'k'; 126];
    edge.extend_from_slice(b" ~");
    let (s, b) = send_keyed(&app, &at, Some(&edge), &body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(messages_in(&app, chat).await, 1);
}

#[tokio::test]
async fn keys_are_per_user_and_expire_after_a_day() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let body = json!({"chat_id": group, "content": "same words"});

    let (s, a) = send_keyed(&app, &at, Some(b"shared"), &body).await;
    assert_eq!(s, 200, "{a}");
    // Another user's identical key and body: their own, independent message;
    // only their own socket hears the key.
    let (s, b) = send_keyed(&app, &bt, Some(b"shared"), &body).await;
    assert_eq!(s, 200, "{b}");
    assert_ne!(a["data"]["id"], b["data"]["id"]);
    let mut bob_events = drain_new(&mut bob_ws, QUIET).await;
    assert_eq!(bob_events.len(), 2, "{bob_events:?}");
    let bob_own = bob_events.pop().unwrap();
    assert_eq!(bob_own["payload"]["id"], b["data"]["id"]);
    assert_eq!(bob_own["payload"]["idempotency_key"], "shared");
    assert!(bob_events[0]["payload"].get("idempotency_key").is_none());
    for e in drain_new(&mut carol_ws, Duration::from_millis(100)).await {
        assert!(e["payload"].get("idempotency_key").is_none(), "{e}");
    }
    assert_eq!(messages_in(&app, group).await, 2);

    // A day later the key is free again; the cleanup job removes old rows.
    sqlx::query(
        "UPDATE message_idempotency_keys SET created_at = now() - interval '25 hours' \
          WHERE user_id = $1",
    )
    .bind(alice)
    .execute(&app.state.db)
    .await
    .unwrap();
    let (s, later) = send_keyed(&app, &at, Some(b"shared"), &body).await;
    assert_eq!(s, 200, "{later}");
    assert_ne!(later["data"]["id"], a["data"]["id"]);
    sqlx::query(
        "UPDATE message_idempotency_keys SET created_at = now() - interval '25 hours' \
          WHERE user_id = $1",
    )
    .bind(bob)
    .execute(&app.state.db)
    .await
    .unwrap();
    let ctx = app.job_context();
    assert_eq!(
        Job::from_name("idempotency-key-cleanup").unwrap(),
        Job::IdempotencyKeyCleanup
    );
    let report = run_job(&ctx, Job::IdempotencyKeyCleanup).await.unwrap();
    assert_eq!((report.ran, report.deleted), (true, 1));
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT user_id FROM message_idempotency_keys")
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left, vec![alice], "the fresh record stays");
}

/// A retry that reaches the database while the first request's transaction
/// is still open waits on the key, then answers with what that request
/// stored (or 409 when it was another request), storing nothing itself.
#[tokio::test]
async fn a_retry_racing_an_open_transaction_waits_for_its_outcome() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let (s, m) = send_keyed(
        &app,
        &at,
        None,
        &json!({"chat_id": chat, "content": "winner"}),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    let winner: Uuid = m["data"]["id"].as_str().unwrap().parse().unwrap();
    let input = SendInput {
        chat_id: chat,
        content: "winner".into(),
        attachment_ids: vec![],
        reply_to_id: None,
    };
    let hash = Claim::new(IdempotencyKey::parse(b"k").unwrap(), &input).request_hash;

    for (key, content, expected) in [("same", "winner", 200), ("other", "loser", 409)] {
        // The "first request": its key row is written but not committed.
        let mut tx = app.state.db.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO message_idempotency_keys (user_id, key, request_hash, message_id) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(alice)
        .bind(key)
        .bind(&hash)
        .bind(winner)
        .execute(&mut *tx)
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let body = json!({"chat_id": chat, "content": content});
        let commit_later = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            tx.commit().await.unwrap();
        };
        let ((s, b), ()) = tokio::join!(
            send_keyed(&app, &at, Some(key.as_bytes()), &body),
            commit_later
        );
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "did not wait"
        );
        assert_eq!(s, expected, "{key}: {b}");
        if expected == 200 {
            assert_eq!(b["data"]["id"], winner.to_string());
        }
        assert_eq!(
            messages_in(&app, chat).await,
            1,
            "{key}: nothing new stored"
        );
    }
}

/// Browsers send the header from another origin only after a preflight
/// that allows it.
#[tokio::test]
async fn browsers_may_send_the_header_cross_origin() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "APP_CORS_ALLOWED_ORIGINS".into(),
            "https://app.example.com".into(),
        );
    })
    .await;
    let res = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/messages"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
}
