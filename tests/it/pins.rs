//! Extension (issue 17): pinned messages over real HTTP and WebSocket: who
//! may pin (group owner/admins, both private participants, not across a
//! block), idempotence, the `system_pin` timeline entry, `message.pin` and
//! who does NOT get it, the list (order, paging, deleted and hidden
//! messages), the cap, bad input and cascades.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

const QUIET: Duration = Duration::from_millis(300);

async fn pin(app: &TestApp, token: &str, message: &str) -> (u16, Value) {
    put(
        app,
        token,
        &format!("/api/messages/{message}/pin"),
        json!({}),
    )
    .await
}

async fn unpin(app: &TestApp, token: &str, message: &str) -> (u16, Value) {
    delete(app, token, &format!("/api/messages/{message}/pin")).await
}

async fn pins(app: &TestApp, token: &str, chat: Uuid, query: &str) -> (u16, Value) {
    get(app, token, &format!("/api/chats/{chat}/pins{query}")).await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn make_admin(app: &TestApp, chat: Uuid, user: Uuid) {
    sqlx::query(
        "UPDATE group_members SET role = 'admin' WHERE user_id = $1 \
           AND group_chat_id = (SELECT id FROM group_chats WHERE chat_id = $2)",
    )
    .bind(user)
    .bind(chat)
    .execute(&app.state.db)
    .await
    .expect("make admin");
}

#[tokio::test]
async fn group_admins_pin_members_see_the_list_and_events_reach_members_only() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob, carol]).await;
    make_admin(&app, chat, bob).await;
    let m1 = send(&app, &ct, chat, "first to pin").await;
    let m1 = m1["id"].as_str().unwrap().to_string();
    let m2 = send(&app, &ct, chat, "second to pin").await;
    let m2 = m2["id"].as_str().unwrap().to_string();
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    let (s, body) = pin(&app, &bt, &m1).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["message_id"], m1);
    assert_eq!(body["data"]["chat_id"], chat.to_string());
    assert_eq!(body["data"]["pinned"], true);
    assert_eq!(body["data"]["pinned_by"], bob.to_string());
    assert!(body["data"]["pinned_at"].as_str().unwrap().ends_with('Z'));
    let e = carol_ws.expect_event("message.pin").await;
    assert_eq!(
        e["payload"],
        json!({"message_id": m1, "chat_id": chat, "pinned": true, "by": bob})
    );
    let e = carol_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["type"], "system_pin");
    assert_eq!(e["payload"]["action_data"]["message_id"], m1);
    assert_eq!(e["payload"]["action_data"]["actor_id"], bob.to_string());
    assert_eq!(e["payload"]["action_data"]["actor_name"], "Bob");
    dave_ws.expect_no_event("message.pin", QUIET).await;

    // Idempotent: 200, same pin, no event, no second timeline entry.
    let (s, again) = pin(&app, &at, &m1).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["data"]["pinned_by"], bob.to_string());
    assert_eq!(again["data"]["pinned_at"], body["data"]["pinned_at"]);
    carol_ws.expect_no_event("message.pin", QUIET).await;
    let (_, hist) = get(&app, &ct, &format!("/api/chats/{chat}/messages")).await;
    let system: Vec<&Value> = hist["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "system_pin")
        .collect();
    assert_eq!(system.len(), 1, "one timeline entry: {hist}");

    // A plain member, an outsider: 403, no event.
    let (s, b) = pin(&app, &ct, &m2).await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = pin(&app, &dt, &m2).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let (s, _) = unpin(&app, &ct, &m1).await;
    assert_eq!(s, 403);
    carol_ws.expect_no_event("message.pin", QUIET).await;

    // The owner pins the second; the list is newest pin first, as history.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(pin(&app, &at, &m2).await.0, 200);
    let e = carol_ws.expect_event("message.pin").await;
    assert_eq!(e["payload"]["by"], alice.to_string());
    assert_eq!(
        put(
            &app,
            &bt,
            &format!("/api/messages/{m2}/reactions/👍"),
            json!({})
        )
        .await
        .0,
        200
    );
    let (s, page) = pins(&app, &ct, chat, "").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(ids(&page), vec![m2.clone(), m1.clone()]);
    let top = &page["data"][0];
    assert_eq!(top["content"], "second to pin");
    assert_eq!(top["sender_name"], "Carol");
    assert_eq!(top["pinned_by"], alice.to_string());
    assert_eq!(
        top["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": false}])
    );
    assert_eq!(page["meta"]["has_next"], false);

    // Keyset paging.
    let (s, p1) = pins(&app, &ct, chat, "?limit=1").await;
    assert_eq!(s, 200);
    assert_eq!(ids(&p1), vec![m2.clone()]);
    assert_eq!(p1["meta"]["has_next"], true);
    let cursor = p1["meta"]["next_cursor"].as_str().unwrap().to_string();
    let (s, p2) = pins(&app, &ct, chat, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(ids(&p2), vec![m1.clone()]);
    assert_eq!(p2["meta"]["has_next"], false);

    // Unpin: event with pinned false, no timeline entry; twice is a no-op.
    let (s, b) = unpin(&app, &bt, &m2).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["pinned"], false);
    assert!(b["data"].get("pinned_at").is_none());
    let e = carol_ws.expect_event("message.pin").await;
    assert_eq!(
        e["payload"],
        json!({"message_id": m2, "chat_id": chat, "pinned": false, "by": bob})
    );
    carol_ws.expect_no_event("message.new", QUIET).await;
    let (s, _) = unpin(&app, &bt, &m2).await;
    assert_eq!(s, 200);
    carol_ws.expect_no_event("message.pin", QUIET).await;
    assert_eq!(ids(&pins(&app, &ct, chat, "").await.1), vec![m1.clone()]);

    // Outsiders and bad input.
    let (s, b) = pins(&app, &dt, chat, "").await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let (s, b) = get(&app, &ct, "/api/chats/nope/pins").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Chat ID")));
    let (s, _) = pins(&app, &ct, Uuid::now_v7(), "").await;
    assert_eq!(s, 404);
    for q in ["?cursor=bm9wZQ==", "?cursor=!!", "?limit=51", "?limit=x"] {
        assert_eq!(pins(&app, &ct, chat, q).await.0, 400, "{q}");
    }
    let (s, b) = pin(&app, &at, "not-a-uuid").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Message ID")));
    let (s, b) = pin(&app, &at, &Uuid::now_v7().to_string()).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("Message not found")));
    let sys = system[0]["id"].as_str().unwrap();
    let (s, b) = pin(&app, &at, sys).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("Cannot pin this type of message"))
    );

    // Deleting a pinned message drops it from the list; it cannot be pinned.
    let (s, _) = delete(&app, &ct, &format!("/api/messages/{m1}")).await;
    assert_eq!(s, 200);
    assert_eq!(
        ids(&pins(&app, &ct, chat, "").await.1),
        Vec::<String>::new()
    );
    let (s, b) = pin(&app, &at, &m1).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("Cannot pin a deleted message"))
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM message_pins WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left, 0, "a soft delete removes the pin row");

    // A former admin may neither pin nor read the pins.
    let (s, _) = post(
        &app,
        &bt,
        &format!("/api/chats/group/{chat}/leave"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(pin(&app, &bt, &m2).await.0, 403);
    assert_eq!(pins(&app, &bt, chat, "").await.0, 403);

    // Deleted chat: 404 as its history.
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        chat,
    )
    .await;
    let (s, b) = pin(&app, &at, &m2).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("Chat not found or deleted"))
    );
    assert_eq!(pins(&app, &at, chat, "").await.0, 404);
}

#[tokio::test]
async fn private_chats_blocks_hidden_messages_and_the_cap() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let private = app.make_private_chat(alice, bob).await;
    let pm = send(&app, &at, private, "pin me").await;
    let pm = pm["id"].as_str().unwrap().to_string();
    let mut alice_ws = connect(&app, alice, &at).await;

    // Either participant may pin; the timeline entry appears in private chats too.
    let (s, b) = pin(&app, &bt, &pm).await;
    assert_eq!(s, 200, "{b}");
    let e = alice_ws.expect_event("message.pin").await;
    assert_eq!(e["payload"]["by"], bob.to_string());
    let e = alice_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["type"], "system_pin");
    assert_eq!(unpin(&app, &at, &pm).await.0, 200);
    let e = alice_ws.expect_event("message.pin").await;
    assert_eq!(
        e["payload"]["pinned"], false,
        "the actor's own sockets get it too"
    );

    // Across a block: 403 both ways; reading the pins stays allowed.
    block(&app, alice, bob).await;
    for token in [&at, &bt] {
        let (s, b) = pin(&app, token, &pm).await;
        assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
        assert_eq!(unpin(&app, token, &pm).await.0, 403);
    }
    alice_ws.expect_no_event("message.pin", QUIET).await;
    assert_eq!(pins(&app, &bt, private, "").await.0, 200);
    exec(&app, "DELETE FROM user_blocks WHERE blocker_id = $1", alice).await;
    assert_eq!(pin(&app, &at, &pm).await.0, 200);

    // Hidden: the hider no longer sees (or pins) messages from before.
    let (s, _) = post(&app, &bt, &format!("/api/chats/{private}/hide"), json!({})).await;
    assert_eq!(s, 200);
    let (s, page) = pins(&app, &bt, private, "").await;
    assert_eq!((s, ids(&page)), (200, vec![]));
    assert_eq!(ids(&pins(&app, &at, private, "").await.1), vec![pm.clone()]);
    let (s, b) = unpin(&app, &bt, &pm).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("Message not found")));

    // At most 50 pins per chat; the 51st is 400 without an event.
    let group = make_group(&app, alice, &[bob]).await;
    let mut msgs = Vec::new();
    for i in 0..51 {
        msgs.push(
            app.insert_message(group, bob, &format!("m{i}"))
                .await
                .to_string(),
        );
    }
    for m in &msgs[..50] {
        let (s, b) = pin(&app, &at, m).await;
        assert_eq!(s, 200, "{b}");
    }
    let mut bob_ws = connect(&app, bob, &bt).await;
    let (s, b) = pin(&app, &at, &msgs[50]).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("50"), "{b}");
    bob_ws.expect_no_event("message.pin", QUIET).await;
    let (_, page) = pins(&app, &bt, group, "?limit=50").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 50);
    assert_eq!(page["data"][0]["id"], msgs[49], "newest pin first");
    assert_eq!(unpin(&app, &at, &msgs[0]).await.0, 200);
    assert_eq!(
        pin(&app, &at, &msgs[50]).await.0,
        200,
        "room again after an unpin"
    );
}

#[tokio::test]
async fn pins_go_with_their_chat_in_the_cleanup_job() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = make_group(&app, alice, &[bob]).await;
    let m = send(&app, &at, chat, "soon gone").await;
    assert_eq!(pin(&app, &at, m["id"].as_str().unwrap()).await.0, 200);
    let rows = || {
        count(
            &app,
            "SELECT count(*) FROM message_pins WHERE chat_id = $1",
            chat,
        )
    };
    assert_eq!(rows().await, 1);
    purge_chat_by_cleanup_job(&app, chat).await;
    assert_eq!(
        rows().await,
        0,
        "pins cascade with the chat and its messages"
    );
    let chats: i64 = sqlx::query_scalar("SELECT count(*) FROM chats WHERE id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(chats, 0);
}
