//! The send reads the caller's account in its chat-context statement
//! instead of the authentication's own statement (issue 21). What a refused
//! account sees must not change: its 401/403 comes before any answer about
//! the chat, the body or the rate limit, and nothing is stored.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{register_user, TestApp};

fn err(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

async fn messages_in(app: &TestApp, chat: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

async fn raw_send(app: &TestApp, token: &str, body: &'static str) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/api/messages"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Every way a send can otherwise be refused, for a refused account: a
/// good send, a chat that does not exist, a body that is not JSON, an
/// invalid body, and a retried send with an idempotency key.
async fn every_send_refused(app: &TestApp, token: &str, chat: Uuid, want: (u16, &str)) {
    let cases = [
        json!({"chat_id": chat, "content": "hello"}),
        json!({"chat_id": Uuid::now_v7(), "content": "hello"}),
        json!({"chat_id": chat, "content": ""}),
    ];
    for body in cases {
        let (s, b) = post(app, token, "/api/messages", body.clone()).await;
        assert_eq!((s, err(&b)), want, "{body}");
    }
    let (s, b) = raw_send(app, token, "{not json").await;
    assert_eq!((s, err(&b)), want, "malformed body");
    let res = app
        .http
        .post(app.url("/api/messages"))
        .bearer_auth(token)
        .header("Idempotency-Key", "retry-1")
        .json(&json!({"chat_id": chat, "content": "hello"}))
        .send()
        .await
        .unwrap();
    let s = res.status().as_u16();
    let b: Value = res.json().await.unwrap();
    assert_eq!((s, err(&b)), want, "with an idempotency key");
}

#[tokio::test]
async fn banned_deleted_and_signed_out_senders_are_refused_before_anything_else() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let ban = |until: Option<chrono::DateTime<chrono::Utc>>| {
        sqlx::query("UPDATE users SET is_banned = true, banned_until = $2 WHERE id = $1")
            .bind(alice)
            .bind(until)
            .execute(&app.state.db)
    };

    ban(None).await.unwrap();
    every_send_refused(&app, &at, chat, (403, "Account is permanently banned")).await;
    ban(Some(chrono::Utc::now() + chrono::Duration::hours(1)))
        .await
        .unwrap();
    every_send_refused(&app, &at, chat, (403, "Account is temporarily suspended")).await;
    assert_eq!(messages_in(&app, chat).await, 0, "nothing stored");

    // A temporary ban that ran out is lifted by the send itself.
    ban(Some(chrono::Utc::now() - chrono::Duration::minutes(1)))
        .await
        .unwrap();
    let (s, b) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "back"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let banned: bool = sqlx::query_scalar("SELECT is_banned FROM users WHERE id = $1")
        .bind(alice)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(!banned, "the expired ban is lifted");
    assert_eq!(messages_in(&app, chat).await, 1);

    sqlx::query("UPDATE users SET deleted_at = now() WHERE id = $1")
        .bind(alice)
        .execute(&app.state.db)
        .await
        .unwrap();
    every_send_refused(&app, &at, chat, (401, "Unauthorized")).await;
    assert_eq!(messages_in(&app, chat).await, 1, "nothing more stored");
}

#[tokio::test]
async fn a_session_token_sends_until_its_session_is_revoked() {
    let app = TestApp::spawn().await;
    let (alice, token, _) = register_user(&app, "Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let (s, b) = post(
        &app,
        &token,
        "/api/messages",
        json!({"chat_id": chat, "content": "hi"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["sender_id"], alice.to_string());

    // Revoked in the database only (as another instance's remote sign-out
    // leaves it before the token is blacklisted): the send's own read sees it.
    sqlx::query("UPDATE sessions SET revoked_at = now() WHERE user_id = $1")
        .bind(alice)
        .execute(&app.state.db)
        .await
        .unwrap();
    every_send_refused(&app, &token, chat, (401, "Token has been revoked")).await;
    assert_eq!(messages_in(&app, chat).await, 1);
}

#[tokio::test]
async fn over_the_rate_limit_a_banned_sender_still_hears_about_the_ban() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    app.exhaust_user_bucket(alice, "general_read", 200).await;
    let send = json!({"chat_id": chat, "content": "hello"});
    let (s, _) = post(&app, &at, "/api/messages", send.clone()).await;
    assert_eq!(s, 429, "the limit holds");
    sqlx::query("UPDATE users SET is_banned = true WHERE id = $1")
        .bind(alice)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (s, b) = post(&app, &at, "/api/messages", send).await;
    assert_eq!((s, err(&b)), (403, "Account is permanently banned"));
    assert_eq!(messages_in(&app, chat).await, 0);
}
