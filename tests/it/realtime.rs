//! Real-time: presence across instances, typing relay and its filters,
//! connection lifecycle (bad input, oversize frames), slow consumers.

use std::time::Duration;

use atoitalk::realtime::event::{kinds, Event};
use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::harness::{TestApp, WsRead};

async fn online_ttl(app: &TestApp, user: uuid::Uuid) -> i64 {
    let mut c = app.state.redis.conn();
    redis::cmd("PTTL")
        .arg(atoitalk::realtime::presence::online_key(
            &app.state.redis,
            user,
        ))
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn presence_is_global_across_instances() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let (alice, alice_token) = a.make_user("Alice").await;
    let (bob, bob_token) = a.make_user("Bob").await;
    let (_carol, carol_token) = a.make_user("Carol").await;
    a.make_private_chat(alice, bob).await;

    let mut bob_ws = a.ws(&bob_token).await;
    let mut carol_ws = a.ws(&carol_token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Alice's first connection anywhere: her contact Bob is told, Carol is not.
    let alice_b = b.ws(&alice_token).await;
    let e = bob_ws.expect_event("user.online").await;
    assert_eq!(e["payload"]["user_id"], alice.to_string());
    assert_eq!(e["payload"]["is_online"], true);
    assert!(e["payload"]["last_seen_at"].is_i64());
    assert_eq!(e["meta"]["sender_id"], alice.to_string());
    let ttl = online_ttl(&a, alice).await;
    assert!(ttl > 0 && ttl <= 70_000, "online ttl {ttl}");

    // A second connection on the other instance: no second user.online.
    let alice_a = a.ws(&alice_token).await;
    bob_ws
        .expect_no_event("user.online", Duration::from_millis(400))
        .await;

    // Closing one of two connections: still online, no user.offline.
    drop(alice_b);
    bob_ws
        .expect_no_event("user.offline", Duration::from_millis(600))
        .await;
    assert!(online_ttl(&a, alice).await > 0);

    // Closing the last one: offline, last_seen_at written, key gone.
    drop(alice_a);
    let e = bob_ws.expect_event("user.offline").await;
    assert_eq!(e["payload"]["user_id"], alice.to_string());
    assert_eq!(e["payload"]["is_online"], false);
    assert_eq!(online_ttl(&a, alice).await, -2);
    let seen: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_seen_at FROM users WHERE id = $1")
            .bind(alice)
            .fetch_one(&a.state.db)
            .await
            .unwrap();
    assert!(seen.is_some());
    carol_ws
        .expect_no_event("user.online", Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn presence_skips_blocked_contacts() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.make_user("Alice").await;
    let (bob, bob_token) = app.make_user("Bob").await;
    app.make_private_chat(alice, bob).await;
    sqlx::query("INSERT INTO user_blocks (id, blocker_id, blocked_id) VALUES ($1, $2, $3)")
        .bind(uuid::Uuid::now_v7())
        .bind(bob)
        .bind(alice)
        .execute(&app.state.db)
        .await
        .unwrap();
    let mut bob_ws = app.ws(&bob_token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let alice_ws = app.ws(&alice_token).await;
    bob_ws
        .expect_no_event("user.online", Duration::from_millis(500))
        .await;
    drop(alice_ws);
    bob_ws
        .expect_no_event("user.offline", Duration::from_millis(500))
        .await;
}

fn typing(chat: uuid::Uuid) -> serde_json::Value {
    json!({"type": "chat.typing", "payload": null, "meta": {"chat_id": chat, "sender_id": uuid::Uuid::nil(), "timestamp": 1, "unread_count": 7}})
}

#[tokio::test]
async fn typing_reaches_other_members_only() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let (alice, alice_token) = a.make_user("Alice").await;
    let (bob, bob_token) = a.make_user("Bob").await;
    let (_carol, carol_token) = a.make_user("Carol").await;
    let chat = a.make_private_chat(alice, bob).await;

    let mut alice_ws = a.ws(&alice_token).await;
    let mut alice_other_device = b.ws(&alice_token).await;
    let mut bob_ws = b.ws(&bob_token).await;
    let mut carol_ws = a.ws(&carol_token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    alice_ws.send_json(&typing(chat)).await;
    let e = bob_ws.expect_event("chat.typing").await;
    assert_eq!(e["meta"]["chat_id"], chat.to_string());
    assert_eq!(
        e["meta"]["sender_id"],
        alice.to_string(),
        "server overwrites sender"
    );
    assert_eq!(
        e["meta"]["unread_count"], 0,
        "client counters are not relayed"
    );
    assert!(e["payload"].is_null());
    alice_other_device
        .expect_no_event("chat.typing", Duration::from_millis(300))
        .await;
    carol_ws
        .expect_no_event("chat.typing", Duration::from_millis(100))
        .await;

    // Throttled: a second typing within 2 s is not relayed.
    alice_ws.send_json(&typing(chat)).await;
    bob_ws
        .expect_no_event("chat.typing", Duration::from_millis(500))
        .await;

    // A non-member cannot type into the chat.
    carol_ws.send_json(&typing(chat)).await;
    bob_ws
        .expect_no_event("chat.typing", Duration::from_millis(400))
        .await;
    alice_ws
        .expect_no_event("chat.typing", Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn typing_is_not_relayed_across_a_block() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.make_user("Alice").await;
    let (bob, bob_token) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    sqlx::query("INSERT INTO user_blocks (id, blocker_id, blocked_id) VALUES ($1, $2, $3)")
        .bind(uuid::Uuid::now_v7())
        .bind(bob)
        .bind(alice)
        .execute(&app.state.db)
        .await
        .unwrap();
    let mut alice_ws = app.ws(&alice_token).await;
    let mut bob_ws = app.ws(&bob_token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    alice_ws.send_json(&typing(chat)).await;
    bob_ws
        .expect_no_event("chat.typing", Duration::from_millis(500))
        .await;
    bob_ws.send_json(&typing(chat)).await;
    alice_ws
        .expect_no_event("chat.typing", Duration::from_millis(500))
        .await;
}

#[tokio::test]
async fn bad_client_input_keeps_the_socket_open() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.make_user("Alice").await;
    let mut ws = app.ws(&token).await;
    for junk in [
        "not json",
        "{\"type\":\"chat.typing\"}",
        "{\"type\":\"chat.typing\",\"meta\":{\"chat_id\":\"nope\"}}",
        "{\"type\":\"other\",\"meta\":{\"chat_id\":\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\"}}",
        "[1,2,3]",
    ] {
        ws.stream.send(WsMessage::Text(junk.into())).await.unwrap();
    }
    ws.stream
        .send(WsMessage::Binary(vec![0xff, 0x00].into()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.state
        .bus
        .to_user(
            alice,
            &Event::new(kinds::CHAT_HIDE, json!({"chat_id": "x"}), None, None),
        )
        .await;
    ws.expect_event("chat.hide").await;
}

#[tokio::test]
async fn oversize_frames_close_with_1009() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("Alice").await;
    let mut ws = app.ws(&token).await;
    let big = "x".repeat(4096);
    let _ = ws.stream.send(WsMessage::Text(big.into())).await;
    assert_eq!(ws.expect_closed().await, Some(1009));
}

#[tokio::test]
async fn a_stalled_reader_is_disconnected_and_others_keep_receiving() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.make_user("Alice").await;
    let mut healthy = app.ws(&token).await;
    let mut stalled = app.ws(&token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.state.hub.connection_count(), 2);

    // Large events fill the stalled socket's kernel buffers, then its queue.
    let payload = json!({"blob": "y".repeat(64 * 1024)});
    let total = 600;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            match healthy.read(Duration::from_secs(10)).await {
                WsRead::Event(_) => got += 1,
                other => panic!("healthy reader lost its socket after {got}: {other:?}"),
            }
        }
        got
    });
    for i in 0..total {
        let e = Event::new(
            kinds::CHAT_UPDATE,
            json!({"i": i, "p": payload}),
            None,
            None,
        );
        app.state.bus.to_user(alice, &e).await;
        if i % 50 == 0 {
            // Let the healthy reader keep up (it reads as fast as it can).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        reader.await.unwrap(),
        total,
        "healthy reader received every event"
    );
    let mut dropped = false;
    for _ in 0..100 {
        if app.state.hub.connection_count() == 1 {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dropped, "stalled connection was unregistered");
    // The stalled client, reading at last, finds its socket closed.
    loop {
        match stalled.read(Duration::from_secs(5)).await {
            WsRead::Event(_) => continue,
            WsRead::Closed(code) => {
                assert!(code.is_none() || code == Some(1008), "{code:?}");
                break;
            }
            WsRead::Timeout => panic!("stalled socket neither closed nor delivered"),
        }
    }
}
