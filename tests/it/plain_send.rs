//! The one-statement send (issue 21): a plain text message is stored by one
//! autocommit statement; every other send, and every plain send that
//! statement declines, takes the general path. What users see must not
//! depend on which path answered: counters follow the events exactly, a
//! lagging id is bumped, and a chat deleted while a send waits is refused.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

/// How often each of the send's statements ran on the app's one connection.
async fn runs(app: &TestApp, like: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(generic_plans + custom_plans), 0)::bigint \
           FROM pg_prepared_statements WHERE statement LIKE $1",
    )
    .bind(like)
    .fetch_one(&app.state.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn plain_sends_take_one_statement_and_the_others_the_general_path() {
    let app = crate::send_plans::one_connection().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[bob]).await;
    let mut last = None;
    for n in 0..8 {
        for chat in [private, group] {
            let m = send(&app, &at, chat, &format!("plain {n}")).await;
            last = Some((chat, m["id"].as_str().unwrap().to_string()));
        }
    }
    let one_statement = "WITH ctx0 AS (%";
    let context = "SELECT c.type AS chat_type%sender_deleted%";
    assert_eq!(runs(&app, one_statement).await, 16);
    assert_eq!(runs(&app, context).await, 0, "plain sends read no context");
    // A reply, and a send with an Idempotency-Key, are general sends.
    let (chat, reply_to) = last.unwrap();
    let (s, body) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "a reply", "reply_to_id": reply_to}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["reply_to"]["id"], reply_to.as_str());
    let keyed = json!({"chat_id": private, "content": "keyed"});
    let key = Some(b"plain-send-key-1".as_slice());
    let (s, body) = crate::idempotency::send_keyed(&app, &at, key, &keyed).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(runs(&app, context).await, 2);
    assert_eq!(runs(&app, one_statement).await, 16);
}

#[tokio::test]
async fn a_chat_whose_last_id_is_ahead_of_the_clock_still_gets_growing_ids() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let group = make_group(&app, alice, &[bob]).await;
    // Another instance's clock ran a day ahead when it stored this one.
    let ahead_ms = (chrono::Utc::now().timestamp_millis() + 86_400_000) as u64;
    let ahead = uuid::Builder::from_unix_timestamp_millis(ahead_ms, &[9; 10]).into_uuid();
    sqlx::query(
        "INSERT INTO messages (id, chat_id, sender_id, type, content) \
         VALUES ($1, $2, $3, 'regular', 'from the future')",
    )
    .bind(ahead)
    .bind(group)
    .bind(alice)
    .execute(&app.state.db)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE chats SET last_message_id = $1, last_message_at = now(), \
                message_seq = message_seq + 1 WHERE id = $2",
    )
    .bind(ahead)
    .bind(group)
    .execute(&app.state.db)
    .await
    .unwrap();
    let mut bob_ws = connect(&app, bob, &bt).await;
    let m = send(&app, &at, group, "after it").await;
    let id: Uuid = m["id"].as_str().unwrap().parse().unwrap();
    assert!(id > ahead, "{id} is not after {ahead}");
    let e = bob_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["id"], id.to_string());
    assert_eq!(e["meta"]["unread_count"], 2);
    let (s, page) = get(&app, &bt, &format!("/api/chats/{group}/messages")).await;
    assert_eq!(s, 200, "{page}");
    let listed: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    let pos = |c: &str| listed.iter().position(|x| *x == c).unwrap();
    // A page lists its messages in id order.
    assert!(pos("from the future") < pos("after it"), "{listed:?}");
}

#[tokio::test]
async fn a_send_waiting_on_a_chat_deleted_meanwhile_is_refused() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let group = make_group(&app, alice, &[bob]).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    // Whoever deletes the chat holds its row until it commits.
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("SELECT id FROM chats WHERE id = $1 FOR UPDATE")
        .bind(group)
        .execute(&mut *tx)
        .await
        .unwrap();
    let sending = {
        let (http, url, at) = (app.http.clone(), app.url("/api/messages"), at.clone());
        tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(at)
                .json(&json!({"chat_id": group, "content": "too late"}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sending.is_finished(), "the send did not wait for the row");
    sqlx::query("UPDATE chats SET deleted_at = now() WHERE id = $1")
        .bind(group)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (status, body) = sending.await.unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "Chat not found or deleted");
    let stored = count(
        &app,
        "SELECT count(*) FROM messages WHERE chat_id = $1 AND content = 'too late'",
        group,
    )
    .await;
    assert_eq!(stored, 0);
    bob_ws
        .expect_no_event("message.new", Duration::from_millis(300))
        .await;
}

/// Zulip's check: a client that applies the events it receives ends where
/// a fresh fetch is. Bob reads while Alice and Carol send, all at once;
/// `message.new` carries Bob's counter and his own `chat.read` zeroes it.
#[tokio::test]
async fn a_readers_counter_from_events_matches_the_list_under_concurrent_sends() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut tasks = Vec::new();
    for (token, who) in [(at.clone(), "alice"), (ct.clone(), "carol")] {
        for n in 0..15 {
            let app_http = app.http.clone();
            let url = app.url("/api/messages");
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let res = app_http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"chat_id": group, "content": format!("{who} {n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }));
        }
    }
    for _ in 0..15 {
        let (http, url, bt) = (
            app.http.clone(),
            app.url(&format!("/api/chats/{group}/read")),
            bt.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(bt)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut unread = None;
    let mut news = 0;
    loop {
        match bob_ws.read(Duration::from_millis(500)).await {
            crate::harness::WsRead::Event(e) if e["type"] == "message.new" => {
                news += 1;
                unread = e["meta"]["unread_count"].as_i64();
            }
            crate::harness::WsRead::Event(e)
                if e["type"] == "chat.read" && e["payload"]["user_id"] == bob.to_string() =>
            {
                unread = Some(0);
            }
            crate::harness::WsRead::Event(_) => {}
            _ => break,
        }
    }
    assert_eq!(news, 30, "every message reached Bob once");
    let fetched = listed(&app, &bt, group).await.unwrap()["unread_count"].as_i64();
    assert_eq!(unread, fetched, "events applied vs the list");
}
