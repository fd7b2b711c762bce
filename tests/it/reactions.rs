//! Extension (issue 17): emoji reactions over real HTTP and WebSocket:
//! idempotence, rendering with `me` per viewer, events and who does NOT get
//! them, permissions as for sending, bad input, the cap, and cascades.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

const QUIET: Duration = Duration::from_millis(300);

fn path(message: &str, emoji: &str) -> String {
    format!("/api/messages/{message}/reactions/{emoji}")
}

async fn react(app: &TestApp, token: &str, message: &str, emoji: &str) -> (u16, Value) {
    put(app, token, &path(message, emoji), json!({})).await
}

async fn unreact(app: &TestApp, token: &str, message: &str, emoji: &str) -> (u16, Value) {
    delete(app, token, &path(message, emoji)).await
}

async fn history_item(app: &TestApp, token: &str, chat: Uuid, message: &str) -> Value {
    let (s, body) = get(app, token, &format!("/api/chats/{chat}/messages")).await;
    assert_eq!(s, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message)
        .cloned()
        .expect("message in history")
}

#[tokio::test]
async fn reactions_are_idempotent_rendered_per_viewer_and_reach_members_only() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob, carol]).await;
    let m = send(&app, &at, chat, "hello").await;
    let mid = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["reactions"], json!([]), "a new message has none");
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    // Percent-encoded by hand and by the client: the same reaction.
    let (s, body) = react(&app, &bt, &mid, "%F0%9F%91%8D").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["message_id"], mid);
    assert_eq!(body["data"]["chat_id"], chat.to_string());
    assert_eq!(
        body["data"]["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": true}])
    );
    let e = carol_ws.expect_event("message.reaction").await;
    assert_eq!(
        e["payload"],
        json!({"message_id": mid, "chat_id": chat, "emoji": "👍", "user_id": bob,
               "added": true, "reactions": [{"emoji": "👍", "count": 1}]})
    );
    assert_eq!(e["meta"]["sender_id"], bob.to_string());
    dave_ws.expect_no_event("message.reaction", QUIET).await;

    let (s, body) = react(&app, &bt, &mid, "👍").await;
    assert_eq!(s, 200, "idempotent: {body}");
    assert_eq!(
        body["data"]["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": true}])
    );
    carol_ws.expect_no_event("message.reaction", QUIET).await;

    assert_eq!(react(&app, &ct, &mid, "👍🏽").await.0, 200);
    assert_eq!(react(&app, &ct, &mid, "👍").await.0, 200);
    // Unqualified and fully qualified heart are one emoji.
    assert_eq!(react(&app, &at, &mid, "❤").await.0, 200);
    let (s, body) = react(&app, &bt, &mid, "❤️").await;
    assert_eq!(s, 200);
    assert_eq!(
        body["data"]["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true},
               {"emoji": "👍🏽", "count": 1, "me": false},
               {"emoji": "❤️", "count": 2, "me": true}]),
        "order of first use"
    );
    let seen_by_carol = history_item(&app, &ct, chat, &mid).await;
    assert_eq!(
        seen_by_carol["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true},
               {"emoji": "👍🏽", "count": 1, "me": true},
               {"emoji": "❤️", "count": 2, "me": false}])
    );
    let other = send(&app, &at, chat, "no reactions here").await;
    let other = history_item(&app, &ct, chat, other["id"].as_str().unwrap()).await;
    assert_eq!(other["reactions"], json!([]));

    // An edit's `message.update` carries each recipient's own `me`.
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let (s, body) = put(
        &app,
        &at,
        &format!("/api/messages/{mid}"),
        json!({"content": "hello, edited"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["reactions"][0]["me"], false);
    assert_eq!(body["data"]["reactions"][2]["me"], true);
    let e = bob_ws.expect_event("message.update").await;
    assert_eq!(
        e["payload"]["reactions"][0],
        json!({"emoji": "👍", "count": 2, "me": true})
    );
    assert_eq!(e["payload"]["reactions"][1]["me"], false);
    let e = carol_ws.expect_event("message.update").await;
    assert_eq!(e["payload"]["reactions"][1]["me"], true);
    assert_eq!(e["payload"]["reactions"][2]["me"], false);

    let (s, body) = unreact(&app, &bt, &mid, "👍").await;
    assert_eq!(s, 200, "{body}");
    // Order of first use among the remaining rows: Carol's 👍 is later than her 👍🏽.
    assert_eq!(
        body["data"]["reactions"],
        json!([{"emoji": "👍🏽", "count": 1, "me": false},
               {"emoji": "👍", "count": 1, "me": false},
               {"emoji": "❤️", "count": 2, "me": true}])
    );
    let e = carol_ws.expect_event("message.reaction").await;
    assert_eq!(e["payload"]["added"], false);
    assert_eq!(e["payload"]["user_id"], bob.to_string());
    assert_eq!(
        e["payload"]["reactions"],
        json!([{"emoji": "👍🏽", "count": 1}, {"emoji": "👍", "count": 1}, {"emoji": "❤️", "count": 2}])
    );
    let (s, _) = unreact(&app, &bt, &mid, "👍").await;
    assert_eq!(s, 200, "removing twice is a no-op");
    carol_ws.expect_no_event("message.reaction", QUIET).await;

    // Outsiders: neither writes nor reads.
    let (s, body) = react(&app, &dt, &mid, "👍").await;
    assert_eq!((s, body["error"].as_str()), (403, Some("Forbidden")));
    let (s, _) = unreact(&app, &dt, &mid, "👍").await;
    assert_eq!(s, 403);
    dave_ws.expect_no_event("message.reaction", QUIET).await;
}

#[tokio::test]
async fn bad_input_and_the_distinct_emoji_cap() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = make_group(&app, alice, &[bob]).await;
    let m = send(&app, &at, chat, "x").await;
    let mid = m["id"].as_str().unwrap().to_string();
    for bad in [
        "a",
        "%F0%9F%91%8D%F0%9F%91%8D",
        "ok",
        "%3Athumbsup%3A",
        "1",
        "%20",
    ] {
        let (s, body) = react(&app, &bt, &mid, bad).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (400, Some("Invalid emoji")),
            "{bad}"
        );
    }
    let (s, body) = react(&app, &bt, "not-a-uuid", "👍").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("Invalid Message ID"))
    );
    let (s, body) = react(&app, &bt, &Uuid::now_v7().to_string(), "👍").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("Message not found"))
    );
    let (s, _) = unreact(&app, &bt, &Uuid::now_v7().to_string(), "👍").await;
    assert_eq!(s, 404);

    let emoji: Vec<&str> = "😀 😃 😄 😁 😆 😅 🤣 😂 🙂 🙃 😉 😊 😇 🥰 😍 🤩 😘 😗 😚 😙"
        .split(' ')
        .collect();
    assert_eq!(emoji.len(), 20);
    for e in &emoji {
        let (s, body) = react(&app, &bt, &mid, e).await;
        assert_eq!(s, 200, "{e}: {body}");
    }
    let mut alice_ws = connect(&app, alice, &at).await;
    let (s, body) = react(&app, &at, &mid, "🚀").await;
    assert_eq!(s, 400, "21st distinct emoji: {body}");
    assert!(body["error"].as_str().unwrap().contains("20"));
    alice_ws.expect_no_event("message.reaction", QUIET).await;
    let (s, body) = react(&app, &at, &mid, emoji[3]).await;
    assert_eq!(s, 200, "an emoji already used still counts up: {body}");
    assert_eq!(body["data"]["reactions"].as_array().unwrap().len(), 20);
    assert_eq!(body["data"]["reactions"][3]["count"], 2);

    // Deleted message: no reactions shown, none accepted.
    let (s, _) = delete(&app, &at, &format!("/api/messages/{mid}")).await;
    assert_eq!(s, 200);
    let (s, body) = react(&app, &bt, &mid, "👍").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("Cannot react to a deleted message"))
    );
    let item = history_item(&app, &bt, chat, &mid).await;
    assert_eq!(item["reactions"], json!([]));
}

#[tokio::test]
async fn blocked_pairs_former_members_hidden_and_deleted_chats() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let private = app.make_private_chat(alice, bob).await;
    let pm = send(&app, &at, private, "hi bob").await;
    let pmid = pm["id"].as_str().unwrap().to_string();
    let mut bob_ws = connect(&app, bob, &bt).await;
    block(&app, bob, alice).await;
    for token in [&at, &bt] {
        let (s, body) = react(&app, token, &pmid, "👍").await;
        assert_eq!((s, body["error"].as_str()), (403, Some("Forbidden")));
    }
    bob_ws.expect_no_event("message.reaction", QUIET).await;
    exec(&app, "DELETE FROM user_blocks WHERE blocker_id = $1", bob).await;
    assert_eq!(react(&app, &at, &pmid, "👍").await.0, 200);
    bob_ws.expect_event("message.reaction").await;

    // Hiding the chat hides older messages from the hider: 404 as history.
    let (s, _) = post(&app, &bt, &format!("/api/chats/{private}/hide"), json!({})).await;
    assert_eq!(s, 200);
    let (s, body) = react(&app, &bt, &pmid, "🎉").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("Message not found"))
    );

    // A former member may not react any more.
    let group = make_group(&app, alice, &[carol]).await;
    let gm = send(&app, &at, group, "group hi").await;
    let gmid = gm["id"].as_str().unwrap().to_string();
    let (s, _) = post(
        &app,
        &ct,
        &format!("/api/chats/group/{group}/leave"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = react(&app, &ct, &gmid, "👍").await;
    assert_eq!(s, 403);

    // Deleted chat: 404 as its history.
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        group,
    )
    .await;
    let (s, body) = react(&app, &at, &gmid, "👍").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("Chat not found or deleted"))
    );
}

#[tokio::test]
async fn reactions_go_with_their_chat_in_the_cleanup_job() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = make_group(&app, alice, &[bob]).await;
    let m = send(&app, &at, chat, "soon gone").await;
    let mid = m["id"].as_str().unwrap().to_string();
    assert_eq!(react(&app, &bt, &mid, "👍").await.0, 200);
    let rows = || {
        count(
            &app,
            "SELECT count(*) FROM message_reactions WHERE message_id = $1",
            Uuid::parse_str(&mid).unwrap(),
        )
    };
    assert_eq!(rows().await, 1);
    purge_chat_by_cleanup_job(&app, chat).await;
    assert_eq!(rows().await, 0, "reactions cascade with the message rows");
}
