//! Integration tests: chats (list, detail, read state, hide, private chats).

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{make_group, TestApp};
use support::*;

/// Helpers shared with `messages.rs`.
pub mod support {
    use std::time::Duration;

    use serde_json::{json, Value};
    use uuid::Uuid;

    use crate::harness::{json as body, TestApp, WsClient, WsRead};

    pub async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
        body(
            app.http
                .get(app.url(path))
                .bearer_auth(token)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn post(app: &TestApp, token: &str, path: &str, payload: Value) -> (u16, Value) {
        body(
            app.http
                .post(app.url(path))
                .bearer_auth(token)
                .json(&payload)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn post_raw(app: &TestApp, token: &str, path: &str, raw: &str) -> (u16, Value) {
        body(
            app.http
                .post(app.url(path))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(raw.to_string())
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn put(app: &TestApp, token: &str, path: &str, payload: Value) -> (u16, Value) {
        body(
            app.http
                .put(app.url(path))
                .bearer_auth(token)
                .json(&payload)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn delete(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
        body(
            app.http
                .delete(app.url(path))
                .bearer_auth(token)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// Sends a text message and returns the MessageResponse.
    pub async fn send(app: &TestApp, token: &str, chat: Uuid, content: &str) -> Value {
        let (status, body) = post(
            app,
            token,
            "/api/messages",
            json!({"chat_id": chat, "content": content}),
        )
        .await;
        assert_eq!(status, 200, "send failed: {body}");
        body["data"].clone()
    }

    /// The next event on the socket, whatever its type.
    pub async fn next_event(ws: &mut WsClient) -> Value {
        match ws.read(Duration::from_secs(5)).await {
            WsRead::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Asserts that nothing at all arrives within `within`.
    pub async fn expect_silence(ws: &mut WsClient, within: Duration) {
        match ws.read(within).await {
            WsRead::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// A WebSocket that is registered with the hub when this returns.
    pub async fn connect(app: &TestApp, user: Uuid, token: &str) -> WsClient {
        let ws = app.ws(token).await;
        for _ in 0..100 {
            if app.state.hub.is_connected_locally(user) {
                return ws;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("socket of {user} never registered");
    }

    /// `SELECT count(*) ... WHERE ... = $1` with `id` bound.
    pub async fn count(app: &TestApp, sql: &str, id: Uuid) -> i64 {
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .expect("count")
    }

    pub async fn exec(app: &TestApp, sql: &str, id: Uuid) {
        sqlx::query(sql)
            .bind(id)
            .execute(&app.state.db)
            .await
            .expect("sql");
    }

    /// Deletes `chat` as long ago as the retention allows, then runs the
    /// scheduler's `entity-cleanup` job, which hard-deletes it.
    pub async fn purge_chat_by_cleanup_job(app: &TestApp, chat: Uuid) {
        exec(
            app,
            "UPDATE chats SET deleted_at = now() - interval '40 days' WHERE id = $1",
            chat,
        )
        .await;
        atoitalk::jobs::run_job(&app.job_context(), atoitalk::jobs::Job::EntityCleanup)
            .await
            .expect("entity-cleanup");
    }

    pub async fn soft_delete_user(app: &TestApp, id: Uuid) {
        exec(
            app,
            "UPDATE users SET deleted_at = now(), full_name = NULL, username = NULL, email = NULL \
             WHERE id = $1",
            id,
        )
        .await;
    }

    /// Bans a user directly (their requests are refused by the middleware).
    pub async fn ban_user(app: &TestApp, id: Uuid) {
        exec(app, "UPDATE users SET is_banned = true WHERE id = $1", id).await;
    }

    pub async fn block(app: &TestApp, blocker: Uuid, blocked: Uuid) {
        sqlx::query("INSERT INTO user_blocks (id, blocker_id, blocked_id) VALUES ($1, $2, $3)")
            .bind(Uuid::now_v7())
            .bind(blocker)
            .bind(blocked)
            .execute(&app.state.db)
            .await
            .expect("block");
    }

    /// Inserts a media row owned by `owner` and returns its id.
    pub async fn media(app: &TestApp, owner: Uuid, category: &str, status: &str) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO media (id, file_name, original_name, file_size, mime_type, category, \
                                upload_status, uploaded_by_id) \
             VALUES ($1, $2, 'photo.png', 1234, 'image/png', $3, $4, $5)",
        )
        .bind(id)
        .bind(format!("{}-{}.png", id.simple(), status))
        .bind(category)
        .bind(status)
        .bind(owner)
        .execute(&app.state.db)
        .await
        .expect("insert media");
        id
    }

    /// The chat as `token`'s user sees it in the list (None: not listed).
    pub async fn listed(app: &TestApp, token: &str, chat: Uuid) -> Option<Value> {
        let (status, body) = get(app, token, "/api/chats?limit=50").await;
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .expect("data array")
            .iter()
            .find(|c| c["id"] == chat.to_string())
            .cloned()
    }

    pub fn ids(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_string())
            .collect()
    }
}

fn is_rfc3339_seconds(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 20 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[tokio::test]
async fn private_chat_is_created_once_and_announced_to_both() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;

    let (status, body) = post(
        &app,
        &at,
        "/api/chats/private",
        json!({"target_user_id": bob}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let chat = &body["data"];
    assert_eq!(chat["type"], "private");
    assert!(is_rfc3339_seconds(&chat["created_at"]), "{chat}");
    let chat_id = chat["id"].as_str().unwrap().to_string();

    // The target sees the creator, the creator sees the target.
    let e = bob_ws.expect_event("chat.new").await;
    assert_eq!(e["payload"]["id"], chat_id);
    assert_eq!(e["payload"]["name"], "Alice");
    assert_eq!(e["payload"]["other_user_id"], alice.to_string());
    assert_eq!(e["payload"]["last_message"], Value::Null);
    assert_eq!(e["payload"]["unread_count"], 0);
    assert_eq!(e["payload"]["member_count"], 0);
    assert_eq!(e["payload"]["is_online"], true);
    assert_eq!(e["meta"]["sender_id"], alice.to_string());
    assert_eq!(e["meta"]["chat_id"], chat_id);
    let e = alice_ws.expect_event("chat.new").await;
    assert_eq!(e["payload"]["name"], "Bob");
    assert_eq!(e["payload"]["other_user_id"], bob.to_string());

    // Idempotent from either side, without a second event.
    let (status, again) = post(
        &app,
        &bt,
        "/api/chats/private",
        json!({"target_user_id": alice}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["data"]["id"], chat_id);
    alice_ws
        .expect_no_event("chat.new", Duration::from_millis(300))
        .await;
    bob_ws
        .expect_no_event("chat.new", Duration::from_millis(50))
        .await;
    carol_ws
        .expect_no_event("chat.new", Duration::from_millis(50))
        .await;

    // Stored ordered, exactly once; an empty chat is not listed.
    let (u1, u2): (Uuid, Uuid) =
        sqlx::query_as("SELECT user1_id, user2_id FROM private_chats WHERE chat_id = $1")
            .bind(Uuid::parse_str(&chat_id).unwrap())
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(u1 < u2);
    assert!(listed(&app, &at, Uuid::parse_str(&chat_id).unwrap())
        .await
        .is_none());
}

#[tokio::test]
async fn concurrent_private_chat_creation_yields_one_chat() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (http, url) = (app.http.clone(), app.url("/api/chats/private"));
        let (token, target) = if i % 2 == 0 {
            (at.clone(), bob)
        } else {
            (bt.clone(), alice)
        };
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"target_user_id": target}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap();
            (status, v["data"]["id"].as_str().map(String::from))
        }));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert_eq!(status, 200);
        seen.insert(id.unwrap());
    }
    assert_eq!(seen.len(), 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM private_chats")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM chats")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1, "losing attempts leave no chat rows behind");
}

/// A pair that already has a chat gets it back from every later create,
/// sequential or concurrent, from either side, and `chat.new` is announced
/// exactly once per participant (issue 13: the other user saw a second
/// one). A third user hears nothing.
#[tokio::test]
async fn private_chat_is_announced_once_however_often_it_is_opened() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let open = |token: String, target: Uuid| {
        let (http, url) = (app.http.clone(), app.url("/api/chats/private"));
        tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"target_user_id": target}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap();
            (status, v["data"]["id"].as_str().map(String::from))
        })
    };
    // A burst from both sides (a double click, a re-rendering client).
    let burst: Vec<_> = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                open(at.clone(), bob)
            } else {
                open(bt.clone(), alice)
            }
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in burst {
        let (status, id) = t.await.unwrap();
        assert_eq!(status, 200);
        ids.insert(id.unwrap());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap();
    // Then each side opens it again, one after the other.
    for (token, target) in [(&at, bob), (&bt, alice), (&at, bob)] {
        let (status, again) = post(
            &app,
            token,
            "/api/chats/private",
            json!({"target_user_id": target}),
        )
        .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["data"]["id"], id.as_str());
    }
    for (ws, other) in [(&mut alice_ws, bob), (&mut bob_ws, alice)] {
        let e = ws.expect_event("chat.new").await;
        assert_eq!(e["payload"]["id"], id.as_str());
        assert_eq!(e["payload"]["other_user_id"], other.to_string());
    }
    alice_ws
        .expect_no_event("chat.new", Duration::from_millis(500))
        .await;
    bob_ws
        .expect_no_event("chat.new", Duration::from_millis(50))
        .await;
    carol_ws
        .expect_no_event("chat.new", Duration::from_millis(50))
        .await;
}

#[tokio::test]
async fn private_chat_creation_rules() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (deleted, _) = app.make_user("Gone").await;
    let (banned, _) = app.make_user("Banned").await;
    let (blocker, _) = app.make_user("Blocker").await;
    let (blocked, _) = app.make_user("Blocked").await;
    soft_delete_user(&app, deleted).await;
    ban_user(&app, banned).await;
    block(&app, blocker, alice).await;
    block(&app, alice, blocked).await;

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"target_user_id": alice}),
            400,
            "Cannot chat with yourself",
        ),
        (
            json!({"target_user_id": Uuid::now_v7()}),
            404,
            "One or both users not found",
        ),
        (
            json!({"target_user_id": deleted}),
            404,
            "One or both users not found",
        ),
        (
            json!({"target_user_id": banned}),
            403,
            "User is currently suspended/banned",
        ),
        (
            json!({"target_user_id": blocker}),
            403,
            "Cannot create chat with blocked user",
        ),
        (
            json!({"target_user_id": blocked}),
            403,
            "Cannot create chat with blocked user",
        ),
        (json!({}), 400, "Bad Request"),
        (json!({"target_user_id": null}), 400, "Bad Request"),
        (json!({"target_user_id": Uuid::nil()}), 400, "Bad Request"),
        (json!({"target_user_id": 42}), 400, "Bad Request"),
        (json!({"target_user_id": "not-a-uuid"}), 400, "Bad Request"),
    ];
    for (payload, status, message) in cases {
        let (s, body) = post(&app, &at, "/api/chats/private", payload.clone()).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (status, Some(message)),
            "{payload}"
        );
    }
    let (s, body) = post_raw(&app, &at, "/api/chats/private", "invalid-json").await;
    assert_eq!((s, body["error"].as_str()), (400, Some("Bad Request")));
    let res = app
        .http
        .post(app.url("/api/chats/private"))
        .json(&json!({"target_user_id": bob}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A pair that blocks later still gets its existing chat back.
    let (s, first) = post(
        &app,
        &at,
        "/api/chats/private",
        json!({"target_user_id": bob}),
    )
    .await;
    assert_eq!(s, 200);
    block(&app, bob, alice).await;
    let (s, again) = post(
        &app,
        &bt,
        "/api/chats/private",
        json!({"target_user_id": alice}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(again["data"]["id"], first["data"]["id"]);
}

#[tokio::test]
async fn chat_list_orders_pages_and_renders_both_kinds() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let chat1 = app.make_private_chat(alice, bob).await;
    let chat2 = app.make_private_chat(carol, alice).await;
    send(&app, &bt, chat1, "hi from bob").await;
    send(&app, &ct, chat2, "hi from carol").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    send(&app, &bt, group, "group hello").await;

    let (status, body) = get(&app, &at, "/api/chats").await;
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(
        ids(&body["data"]),
        vec![group.to_string(), chat2.to_string(), chat1.to_string()]
    );
    assert_eq!(body["meta"], json!({"has_next": false, "has_prev": false}));

    let g = &data[0];
    assert_eq!(g["type"], "group");
    assert_eq!(g["my_role"], "owner");
    assert!(g["invite_code"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(is_rfc3339_seconds(&g["invite_expires_at"]));
    assert_eq!(g["member_count"], 3);
    assert_eq!(g["unread_count"], 1);
    assert_eq!(g["description"], "");
    assert_eq!(g["is_public"], false);
    assert!(g.get("other_user_id").is_none());
    assert_eq!(g["last_message"]["content"], "group hello");
    assert_eq!(g["last_message"]["sender_name"], "Bob");
    assert!(g["last_message"].get("sender_role").is_none());
    assert!(g["last_message"].get("reply_to").is_none());

    let p = &data[1];
    assert_eq!(p["type"], "private");
    assert_eq!(p["name"], "Carol");
    assert_eq!(p["avatar"], "");
    assert_eq!(p["other_user_id"], carol.to_string());
    assert_eq!(p["unread_count"], 1);
    assert_eq!(p["member_count"], 0);
    assert_eq!(p["is_blocked_by_me"], false);
    assert_eq!(p["is_blocked_by_other"], false);
    assert_eq!(p["other_user_is_deleted"], false);
    assert_eq!(p["other_user_is_banned"], false);
    assert!(p.get("invite_code").is_none());
    assert!(p.get("my_role").is_none());
    assert!(p.get("last_read_at").is_none());
    assert!(
        is_rfc3339_seconds(&p["other_last_read_at"]),
        "sender read their own message"
    );
    assert_eq!(p["last_message"]["content"], "hi from carol");

    // Key order is the contract's.
    let raw = app
        .http
        .get(app.url("/api/chats?limit=1"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pos = |k: &str| raw.find(&format!("\"{k}\"")).unwrap_or(usize::MAX);
    assert!(pos("id") < pos("type") && pos("type") < pos("name") && pos("name") < pos("avatar"));
    assert!(pos("avatar") < pos("last_message") && pos("is_online") < pos("member_count"));

    // Pages of two: cursor, then the rest.
    let (_, page1) = get(&app, &at, "/api/chats?limit=2").await;
    assert_eq!(
        ids(&page1["data"]),
        vec![group.to_string(), chat2.to_string()]
    );
    assert_eq!(page1["meta"]["has_next"], true);
    assert_eq!(page1["meta"]["has_prev"], false);
    assert!(page1["meta"].get("prev_cursor").is_none());
    let cursor = page1["meta"]["next_cursor"].as_str().unwrap();
    let (_, page2) = get(&app, &at, &format!("/api/chats?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&page2["data"]), vec![chat1.to_string()]);
    assert_eq!(page2["meta"], json!({"has_next": false, "has_prev": false}));

    // Search: other user's name / username, group name; wildcards are literal.
    let (_, found) = get(&app, &at, "/api/chats?query=carol").await;
    assert_eq!(ids(&found["data"]), vec![chat2.to_string()]);
    let (_, found) = get(&app, &at, "/api/chats?query=GROUP").await;
    assert_eq!(ids(&found["data"]), vec![group.to_string()]);
    let (_, found) = get(&app, &at, "/api/chats?query=%25").await;
    assert_eq!(found["data"], json!([]));
    let (_, found) = get(&app, &at, "/api/chats?query=nobody-here").await;
    assert_eq!(found["data"], json!([]));

    // Bad input: never a 500.
    let (s, b) = get(&app, &at, "/api/chats?cursor=bukan-base64-valid").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().unwrap().len(), 3);
    let (s, b) = get(&app, &at, "/api/chats?limit=abc").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid limit")));
    let (s, _) = get(&app, &at, "/api/chats?limit=51").await;
    assert_eq!(s, 400);
    let (s, _) = get(&app, &at, "/api/chats?limit=-1").await;
    assert_eq!(s, 400);
    let (s, _) = get(&app, &at, "/api/chats?query=%00").await;
    assert_eq!(s, 400);
    let (s, _) = get(&app, &at, &format!("/api/chats?query={}", "x".repeat(101))).await;
    assert_eq!(s, 400);
    let (s, _) = get(&app, &at, &format!("/api/chats?query={}", "é".repeat(100))).await;
    assert_eq!(s, 200, "100 code points are fine");

    // Bob is in chat1 and the group only.
    let (_, bob_list) = get(&app, &bt, "/api/chats").await;
    assert_eq!(
        ids(&bob_list["data"]),
        vec![group.to_string(), chat1.to_string()]
    );
    assert_eq!(bob_list["data"][0]["my_role"], "member");
    assert!(bob_list["data"][0].get("invite_code").is_none());
    assert!(bob_list["data"][0].get("invite_expires_at").is_none());
}

#[tokio::test]
async fn chat_list_states_deleted_blocked_online_and_system_previews() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let with_bob = app.make_private_chat(alice, bob).await;
    let with_carol = app.make_private_chat(alice, carol).await;
    let with_dave = app.make_private_chat(alice, dave).await;
    send(&app, &bt, with_bob, "b").await;
    send(&app, &ct, with_carol, "c").await;
    send(&app, &dt, with_dave, "d").await;
    let _bob_ws = connect(&app, bob, &bt).await;
    let _carol_ws = connect(&app, carol, &ct).await;

    soft_delete_user(&app, dave).await;
    block(&app, alice, carol).await;

    let b = listed(&app, &at, with_bob).await.unwrap();
    assert_eq!(b["is_online"], true);
    let c = listed(&app, &at, with_carol).await.unwrap();
    assert_eq!(c["is_blocked_by_me"], true);
    assert_eq!(c["is_online"], false, "no presence across a block");
    assert_eq!(c["name"], "Carol");
    let c_side = listed(&app, &ct, with_carol).await.unwrap();
    assert_eq!(c_side["is_blocked_by_other"], true);
    assert_eq!(c_side["is_blocked_by_me"], false);
    let d = listed(&app, &at, with_dave).await.unwrap();
    assert_eq!(d["other_user_is_deleted"], true);
    assert_eq!(d["name"], "Deleted User");
    assert_eq!(d["is_online"], false);
    assert_eq!(d["last_message"]["sender_name"], "Deleted User");
    assert!(d["last_message"].get("sender_id").is_none());

    ban_user(&app, bob).await;
    let b = listed(&app, &at, with_bob).await.unwrap();
    assert_eq!(b["other_user_is_banned"], true);
    assert_eq!(b["is_online"], false);

    // A group whose last message is a system message names its users; a
    // deleted last message is a tombstone; a deleted group disappears.
    let group = make_group(&app, alice, &[carol]).await;
    sqlx::query("UPDATE messages SET type = 'system_add', action_data = $2 WHERE chat_id = $1")
        .bind(group)
        .bind(json!({"target_id": carol, "actor_id": alice}))
        .execute(&app.state.db)
        .await
        .unwrap();
    let g = listed(&app, &at, group).await.unwrap();
    assert_eq!(g["last_message"]["type"], "system_add");
    assert_eq!(g["last_message"]["action_data"]["target_name"], "Carol");
    assert_eq!(g["last_message"]["action_data"]["actor_name"], "Alice");

    let (s, _) = delete(
        &app,
        &bt,
        &format!("/api/messages/{}", {
            let (_, h) = get(&app, &at, &format!("/api/chats/{with_bob}/messages")).await;
            h["data"][0]["id"].as_str().unwrap().to_string()
        }),
    )
    .await;
    assert_eq!(s, 403, "banned users cannot act");
    let last: Uuid = sqlx::query_scalar("SELECT last_message_id FROM chats WHERE id = $1")
        .bind(with_dave)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    exec(
        &app,
        "UPDATE messages SET deleted_at = now(), content = NULL WHERE id = $1",
        last,
    )
    .await;
    let d = listed(&app, &at, with_dave).await.unwrap();
    assert!(d["last_message"].get("content").is_none());
    assert!(is_rfc3339_seconds(&d["last_message"]["deleted_at"]));

    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        group,
    )
    .await;
    assert!(listed(&app, &at, group).await.is_none());
    let (s, _) = get(&app, &at, &format!("/api/chats/{group}")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn hidden_chat_leaves_the_list_until_new_activity() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    send(&app, &bt, chat, "before hide").await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;

    let (s, body) = post(&app, &at, &format!("/api/chats/{chat}/hide"), json!({})).await;
    assert_eq!((s, &body), (200, &json!({"data": ""})));
    let e = alice_ws.expect_event("chat.hide").await;
    assert_eq!(e["payload"], json!({"chat_id": chat}));
    assert_eq!(e["meta"]["chat_id"], chat.to_string());
    bob_ws
        .expect_no_event("chat.hide", Duration::from_millis(300))
        .await;

    assert!(listed(&app, &at, chat).await.is_none());
    assert!(
        listed(&app, &bt, chat).await.is_some(),
        "hiding is per user"
    );
    // The detail still answers, with hidden_at and a zeroed counter.
    let (s, d) = get(&app, &at, &format!("/api/chats/{chat}")).await;
    assert_eq!(s, 200);
    assert!(is_rfc3339_seconds(&d["data"]["hidden_at"]));
    assert_eq!(d["data"]["unread_count"], 0);
    // History before the hide is gone for the hider only.
    let (_, h) = get(&app, &at, &format!("/api/chats/{chat}/messages")).await;
    assert_eq!(h["data"], json!([]));
    assert_eq!(h["meta"], json!({"has_next": false, "has_prev": false}));

    tokio::time::sleep(Duration::from_millis(5)).await;
    send(&app, &bt, chat, "after hide").await;
    let back = listed(&app, &at, chat)
        .await
        .expect("reappears after a new message");
    assert_eq!(back["unread_count"], 1);
    assert!(back.get("hidden_at").is_some(), "hidden_at is kept");
    let (_, h) = get(&app, &at, &format!("/api/chats/{chat}/messages")).await;
    assert_eq!(h["data"].as_array().unwrap().len(), 1);
    assert_eq!(h["data"][0]["content"], "after hide");

    // Errors.
    let group = make_group(&app, alice, &[bob]).await;
    let (s, b) = post(&app, &at, &format!("/api/chats/{group}/hide"), json!({})).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Bad Request")));
    let (s, b) = post(&app, &ct, &format!("/api/chats/{chat}/hide"), json!({})).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let (s, b) = post(
        &app,
        &at,
        &format!("/api/chats/{}/hide", Uuid::now_v7()),
        json!({}),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (404, Some("Not Found")));
    let (s, b) = post(&app, &at, "/api/chats/99999/hide", json!({})).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Chat ID")));
    let _ = carol;
}

#[tokio::test]
async fn chat_detail_visibility_and_roles() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    send(&app, &at, chat, "hello").await;

    let (s, d) = get(&app, &bt, &format!("/api/chats/{chat}")).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["data"]["name"], "Alice");
    assert_eq!(d["data"]["unread_count"], 1);
    assert_eq!(d["data"]["last_message"]["content"], "hello");
    let (s, d) = get(&app, &ct, &format!("/api/chats/{chat}")).await;
    assert_eq!((s, d["error"].as_str()), (404, Some("Not Found")));
    let (s, d) = get(&app, &ct, "/api/chats/99999").await;
    assert_eq!((s, d["error"].as_str()), (400, Some("Invalid Chat ID")));
    let (s, _) = get(&app, &ct, &format!("/api/chats/{}", Uuid::now_v7())).await;
    assert_eq!(s, 404);
    let (s, d) = get(&app, &ct, "/api/chats/%FF%FE").await;
    assert_eq!((s, d["error"].is_string()), (400, true), "{d}");

    // Avatars are public URLs of the user's avatar object.
    let avatar = media(&app, alice, "user_avatar", "completed").await;
    sqlx::query("UPDATE users SET avatar_id = $2 WHERE id = $1")
        .bind(alice)
        .bind(avatar)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (_, d) = get(&app, &bt, &format!("/api/chats/{chat}")).await;
    assert!(d["data"]["avatar"]
        .as_str()
        .unwrap()
        .contains(&avatar.simple().to_string()));
    assert!(d["data"]["last_message"]["sender_avatar"]
        .as_str()
        .unwrap()
        .contains(&avatar.simple().to_string()));

    let group = make_group(&app, alice, &[bob]).await;
    let (_, owner) = get(&app, &at, &format!("/api/chats/{group}")).await;
    assert!(owner["data"]["invite_code"].is_string());
    assert!(owner["data"]["invite_expires_at"].is_string());
    assert_eq!(owner["data"]["member_count"], 2);
    assert_eq!(owner["data"]["last_message"]["type"], "system_create");
    let (_, member) = get(&app, &bt, &format!("/api/chats/{group}")).await;
    assert!(member["data"].get("invite_code").is_none());
    assert!(member["data"].get("invite_expires_at").is_none());
    assert_eq!(member["data"]["my_role"], "member");
    let (s, _) = get(&app, &ct, &format!("/api/chats/{group}")).await;
    assert_eq!(s, 404, "private group, not a member");

    // A public group is visible to outsiders, without member data.
    exec(
        &app,
        "UPDATE group_chats SET is_public = true, invite_expires_at = NULL WHERE chat_id = $1",
        group,
    )
    .await;
    let (s, outsider) = get(&app, &ct, &format!("/api/chats/{group}")).await;
    assert_eq!(s, 200);
    let o = &outsider["data"];
    assert_eq!(o["last_message"], Value::Null);
    assert!(o.get("my_role").is_none());
    assert_eq!(o["unread_count"], 0);
    assert!(o["invite_code"].is_string());
    assert_eq!(o["member_count"], 2);
    // ...but not in their list.
    assert!(listed(&app, &ct, group).await.is_none());
    let _ = carol;
}

#[tokio::test]
async fn mark_read_updates_both_sides_and_notifies_members() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    send(&app, &bt, chat, "one").await;
    send(&app, &bt, chat, "two").await;
    assert_eq!(listed(&app, &at, chat).await.unwrap()["unread_count"], 2);
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;

    let (s, b) = post(&app, &at, &format!("/api/chats/{chat}/read"), json!(null)).await;
    assert_eq!((s, &b), (200, &json!({"data": ""})));
    for ws in [&mut alice_ws, &mut bob_ws] {
        let e = ws.expect_event("chat.read").await;
        assert_eq!(e["payload"], json!({"chat_id": chat, "user_id": alice}));
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
        assert_eq!(e["meta"]["unread_count"], 0);
    }
    carol_ws
        .expect_no_event("chat.read", Duration::from_millis(300))
        .await;
    let mine = listed(&app, &at, chat).await.unwrap();
    assert_eq!(mine["unread_count"], 0);
    assert!(is_rfc3339_seconds(&mine["last_read_at"]));
    let theirs = listed(&app, &bt, chat).await.unwrap();
    assert_eq!(
        theirs["other_last_read_at"], mine["last_read_at"],
        "read receipt"
    );

    // Nothing new to read: no event.
    let (s, _) = post(&app, &at, &format!("/api/chats/{chat}/read"), json!({})).await;
    assert_eq!(s, 200);
    bob_ws
        .expect_no_event("chat.read", Duration::from_millis(300))
        .await;

    // After a hide zeroed the counter, reading still refreshes the receipt.
    send(&app, &bt, chat, "three").await;
    post(&app, &at, &format!("/api/chats/{chat}/hide"), json!({})).await;
    let before = listed(&app, &bt, chat).await.unwrap()["other_last_read_at"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _) = post(&app, &at, &format!("/api/chats/{chat}/read"), json!({})).await;
    assert_eq!(s, 200);
    bob_ws.expect_event("chat.read").await;
    let after = listed(&app, &bt, chat).await.unwrap()["other_last_read_at"].clone();
    assert_ne!(before, after);

    // Errors.
    let (s, b) = post(&app, &ct, &format!("/api/chats/{chat}/read"), json!({})).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let group = make_group(&app, bob, &[alice]).await;
    let (s, b) = post(&app, &ct, &format!("/api/chats/{group}/read"), json!({})).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (403, Some("Not a member of this group"))
    );
    let (s, b) = post(
        &app,
        &ct,
        &format!("/api/chats/{}/read", Uuid::now_v7()),
        json!({}),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (404, Some("Not Found")));
    let (s, b) = post(&app, &ct, "/api/chats/nope/read", json!({})).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Chat ID")));
}

#[tokio::test]
async fn group_read_counts_and_events() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    send(&app, &at, group, "hey all").await;
    assert_eq!(listed(&app, &at, group).await.unwrap()["unread_count"], 0);
    assert_eq!(listed(&app, &bt, group).await.unwrap()["unread_count"], 1);
    assert_eq!(listed(&app, &ct, group).await.unwrap()["unread_count"], 1);

    let mut alice_ws = connect(&app, alice, &at).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;
    let (s, _) = post(&app, &bt, &format!("/api/chats/{group}/read"), json!({})).await;
    assert_eq!(s, 200);
    for ws in [&mut alice_ws, &mut carol_ws] {
        let e = ws.expect_event("chat.read").await;
        assert_eq!(e["payload"]["user_id"], bob.to_string());
    }
    dave_ws
        .expect_no_event("chat.read", Duration::from_millis(300))
        .await;
    let b = listed(&app, &bt, group).await.unwrap();
    assert_eq!(b["unread_count"], 0);
    assert!(is_rfc3339_seconds(&b["last_read_at"]));
    assert_eq!(listed(&app, &ct, group).await.unwrap()["unread_count"], 1);
}

#[tokio::test]
async fn read_under_a_block_is_silent() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    send(&app, &bt, chat, "hi").await;
    block(&app, alice, bob).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let (s, _) = post(&app, &at, &format!("/api/chats/{chat}/read"), json!({})).await;
    assert_eq!(s, 200);
    bob_ws
        .expect_no_event("chat.read", Duration::from_millis(300))
        .await;
    let mine = listed(&app, &at, chat).await.unwrap();
    assert_eq!(mine["unread_count"], 0);
    assert!(
        mine.get("last_read_at").is_none(),
        "ninja mode keeps last_read_at"
    );
    assert!(listed(&app, &bt, chat)
        .await
        .unwrap()
        .get("other_last_read_at")
        .is_none());
}
