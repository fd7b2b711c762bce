//! Integration tests: messages (send, edit, delete, history paging, events,
//! ordering under concurrency).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

fn is_rfc3339_seconds(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 20 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

async fn history(app: &TestApp, token: &str, chat: Uuid, query: &str) -> Value {
    let (status, body) = get(app, token, &format!("/api/chats/{chat}/messages?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn b64(id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(id)
}

#[tokio::test]
async fn private_send_updates_counters_and_reaches_both_sides_only() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;

    let (s, body) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "  hello bob  "}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let m = &body["data"];
    assert_eq!(m["content"], "hello bob", "trimmed");
    assert_eq!(m["chat_id"], chat.to_string());
    assert_eq!(m["sender_id"], alice.to_string());
    assert_eq!(m["sender_name"], "Alice");
    assert_eq!(m["type"], "regular");
    assert_eq!(m["attachments"], json!([]));
    assert!(m.get("sender_role").is_none(), "no role in private chats");
    assert!(m.get("reply_to").is_none());
    assert!(m.get("edited_at").is_none());
    assert!(m.get("deleted_at").is_none());
    assert!(is_rfc3339_seconds(&m["created_at"]));
    let stored: String = sqlx::query_scalar("SELECT content FROM messages WHERE id = $1")
        .bind(Uuid::parse_str(m["id"].as_str().unwrap()).unwrap())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored, "hello bob");

    let e = bob_ws.expect_event("message.new").await;
    assert_eq!(&e["payload"], m, "WS payload equals the REST response");
    assert_eq!(e["meta"]["unread_count"], 1);
    assert_eq!(e["meta"]["sender_id"], alice.to_string());
    assert_eq!(e["meta"]["chat_id"], chat.to_string());
    let e = alice_ws.expect_event("message.new").await;
    assert_eq!(e["meta"]["unread_count"], 0);
    carol_ws
        .expect_no_event("message.new", Duration::from_millis(300))
        .await;

    assert_eq!(listed(&app, &at, chat).await.unwrap()["unread_count"], 0);
    assert_eq!(listed(&app, &bt, chat).await.unwrap()["unread_count"], 1);
}

#[tokio::test]
async fn send_validation_never_500s() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let cases = vec![
        json!({}),
        json!({"content": "x"}),
        json!({"chat_id": null, "content": "x"}),
        json!({"chat_id": Uuid::nil(), "content": "x"}),
        json!({"chat_id": "nope", "content": "x"}),
        json!({"chat_id": 12, "content": "x"}),
        json!({"chat_id": chat, "content": 12}),
        json!({"chat_id": chat}),
        json!({"chat_id": chat, "content": ""}),
        json!({"chat_id": chat, "content": "   \n\t "}),
        json!({"chat_id": chat, "content": "", "attachment_ids": []}),
        json!({"chat_id": chat, "content": "a".repeat(4001)}),
        json!({"chat_id": chat, "content": "nul \u{0} inside"}),
        json!({"chat_id": chat, "content": "x", "attachment_ids": ["nope"]}),
        json!({"chat_id": chat, "content": "x", "attachment_ids": "nope"}),
        json!({"chat_id": chat, "content": "x", "reply_to_id": "nope"}),
        json!({"chat_id": chat, "content": "x", "attachment_ids": [Uuid::now_v7()]}),
    ];
    for c in cases {
        let (s, b) = post(&app, &at, "/api/messages", c.clone()).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("Bad Request")), "{c}");
    }
    let (s, _) = post_raw(&app, &at, "/api/messages", "{not json").await;
    assert_eq!(s, 400);
    // 4000 code points (multi-byte) are fine.
    let (s, _) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "é".repeat(4000)}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": Uuid::now_v7(), "content": "x"}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("Chat not found or deleted"))
    );
    // Oversize bodies are refused, not crashed on.
    let (s, _) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "a".repeat(200_000)}),
    )
    .await;
    assert!(s == 400 || s == 413, "{s}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn private_send_permission_matrix() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, _) = app.make_user("Dave").await;
    let (erin, _) = app.make_user("Erin").await;
    let (frank, ft) = app.make_user("Frank").await;
    let (gina, gt) = app.make_user("Gina").await;
    let with_bob = app.make_private_chat(alice, bob).await;
    let with_carol = app.make_private_chat(alice, carol).await;
    let with_dave = app.make_private_chat(alice, dave).await;
    let with_erin = app.make_private_chat(alice, erin).await;
    let with_frank = app.make_private_chat(alice, frank).await;
    let with_gina = app.make_private_chat(gina, alice).await;

    let try_send = |token: String, chat: Uuid| {
        let app = &app;
        async move {
            post(
                app,
                &token,
                "/api/messages",
                json!({"chat_id": chat, "content": "x"}),
            )
            .await
        }
    };

    // Non-participant.
    let (s, b) = try_send(ct.clone(), with_bob).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    // Blocked in either direction.
    block(&app, alice, bob).await;
    let (s, b) = try_send(at.clone(), with_bob).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let (s, _) = try_send(bt.clone(), with_bob).await;
    assert_eq!(s, 403);
    block(&app, carol, alice).await;
    let (s, _) = try_send(at.clone(), with_carol).await;
    assert_eq!(s, 403);
    let (s, _) = try_send(ct.clone(), with_carol).await;
    assert_eq!(s, 403);
    // Receiver soft-deleted, banned, hard-deleted.
    soft_delete_user(&app, dave).await;
    let (s, b) = try_send(at.clone(), with_dave).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("User is deleted")));
    ban_user(&app, erin).await;
    let (s, b) = try_send(at.clone(), with_erin).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (403, Some("User is currently suspended/banned"))
    );
    exec(
        &app,
        "UPDATE users SET is_banned = true, banned_until = now() - interval '1 day' WHERE id = $1",
        erin,
    )
    .await;
    let (s, _) = try_send(at.clone(), with_erin).await;
    assert_eq!(s, 200, "an expired ban is no ban");
    exec(
        &app,
        "UPDATE private_chats SET user2_id = NULL WHERE chat_id = $1",
        with_frank,
    )
    .await;
    let (s, b) = try_send(at.clone(), with_frank).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("User does not exist")));
    // Sender banned or deleted: refused before the handler.
    ban_user(&app, frank).await;
    let (s, _) = try_send(ft.clone(), with_frank).await;
    assert_eq!(s, 403);
    soft_delete_user(&app, gina).await;
    let (s, _) = try_send(gt.clone(), with_gina).await;
    assert_eq!(s, 401);

    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1, "only the post-ban message was stored");
}

#[tokio::test]
async fn group_send_counters_roles_and_recipients() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    // Carol blocked Bob: his group messages reach her in the history and
    // the unread counter, never live (heavy delivery skips blocks, groups
    // included).
    block(&app, carol, bob).await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    let m = send(&app, &bt, group, "hi group").await;
    assert_eq!(m["sender_role"], "member");
    let e = alice_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["id"], m["id"]);
    assert_eq!(e["meta"]["unread_count"], 1);
    carol_ws
        .expect_no_event("message.new", Duration::from_millis(300))
        .await;
    dave_ws
        .expect_no_event("message.new", Duration::from_millis(50))
        .await;
    let (_, h) = get(&app, &ct, &format!("/api/chats/{group}/messages")).await;
    assert_eq!(
        h["data"].as_array().unwrap().len(),
        2,
        "system_create + message"
    );

    let owner_msg = send(&app, &at, group, "owner here").await;
    assert_eq!(owner_msg["sender_role"], "owner");
    assert_eq!(listed(&app, &at, group).await.unwrap()["unread_count"], 0);
    assert_eq!(listed(&app, &bt, group).await.unwrap()["unread_count"], 1);
    assert_eq!(listed(&app, &ct, group).await.unwrap()["unread_count"], 2);

    let (s, b) = post(
        &app,
        &dt,
        "/api/messages",
        json!({"chat_id": group, "content": "x"}),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let (s, b) = get(&app, &dt, &format!("/api/chats/{group}/messages")).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        group,
    )
    .await;
    let (s, b) = post(
        &app,
        &bt,
        "/api/messages",
        json!({"chat_id": group, "content": "x"}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("Chat not found or deleted"))
    );
    let (s, b) = get(&app, &bt, &format!("/api/chats/{group}/messages")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("Chat not found or deleted"))
    );
}

#[tokio::test]
async fn replies_and_their_rules() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    let other = app.make_private_chat(alice, carol).await;
    let original = send(&app, &bt, chat, "question?").await;
    let elsewhere = send(&app, &at, other, "elsewhere").await;
    let group = make_group(&app, alice, &[bob]).await;
    let (_, gh) = get(&app, &at, &format!("/api/chats/{group}/messages")).await;
    let system_id = gh["data"][0]["id"].clone();

    let (s, r) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "answer", "reply_to_id": original["id"]}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let preview = &r["data"]["reply_to"];
    assert_eq!(preview["id"], original["id"]);
    assert_eq!(preview["sender_id"], bob.to_string());
    assert_eq!(preview["sender_name"], "Bob");
    assert_eq!(preview["content"], "question?");
    assert_eq!(preview["type"], "regular");
    assert!(preview.get("attachments").is_none());

    let deleted = send(&app, &bt, chat, "to be deleted").await;
    let (s, _) = delete(
        &app,
        &bt,
        &format!("/api/messages/{}", deleted["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, 200);
    for (target, chat_id) in [
        (json!(Uuid::now_v7()), chat),
        (elsewhere["id"].clone(), chat),
        (deleted["id"].clone(), chat),
        (system_id, group),
    ] {
        let (s, b) = post(
            &app,
            &at,
            "/api/messages",
            json!({"chat_id": chat_id, "content": "re", "reply_to_id": target}),
        )
        .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("Cannot reply to this message"))
        );
    }

    // A reply whose target is deleted later shows a tombstone preview.
    let target = send(&app, &bt, chat, "soon gone").await;
    let reply = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "re", "reply_to_id": target["id"]}),
    )
    .await
    .1["data"]
        .clone();
    delete(
        &app,
        &bt,
        &format!("/api/messages/{}", target["id"].as_str().unwrap()),
    )
    .await;
    let h = history(&app, &at, chat, "limit=50").await;
    let listed = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == reply["id"])
        .unwrap();
    assert!(listed["reply_to"].get("content").is_none());
    assert!(is_rfc3339_seconds(&listed["reply_to"]["deleted_at"]));
    assert_eq!(listed["reply_to"]["sender_name"], "Bob");
}

#[tokio::test]
async fn attachments_are_owned_completed_and_attached_once() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let good = media(&app, alice, "message_attachment", "completed").await;

    let (s, r) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "attachment_ids": [good]}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let m = &r["data"];
    assert!(
        m.get("content").is_none(),
        "attachment-only message has no content"
    );
    let att = &m["attachments"][0];
    assert_eq!(att["id"], good.to_string());
    assert_eq!(att["original_name"], "photo.png");
    assert_eq!(att["file_size"], 1234);
    assert_eq!(att["mime_type"], "image/png");
    assert_eq!(att["category"], "");
    assert_eq!(att["upload_status"], "");
    assert!(att["url"].is_string());

    let foreign = media(&app, bob, "message_attachment", "completed").await;
    let pending = media(&app, alice, "message_attachment", "pending").await;
    let avatar = media(&app, alice, "user_avatar", "completed").await;
    let fresh = media(&app, alice, "message_attachment", "completed").await;
    for ids in [
        json!([good]),
        json!([foreign]),
        json!([pending]),
        json!([avatar]),
        json!([Uuid::now_v7()]),
        json!([fresh, fresh]),
        json!([fresh, foreign]),
    ] {
        let (s, b) = post(
            &app,
            &at,
            "/api/messages",
            json!({"chat_id": chat, "content": "x", "attachment_ids": ids}),
        )
        .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("Bad Request")),
            "{ids}"
        );
    }
    let linked: Option<Uuid> = sqlx::query_scalar("SELECT message_id FROM media WHERE id = $1")
        .bind(fresh)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(linked.is_none(), "a failed send leaves nothing attached");

    // Concurrent sends of one media id: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (http, url, token) = (app.http.clone(), app.url("/api/messages"), at.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"chat_id": chat, "content": "race", "attachment_ids": [fresh]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        5,
        "{statuses:?}"
    );
    let _ = bt;
}

#[tokio::test]
async fn edit_rules_attachments_and_events() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    let a1 = media(&app, alice, "message_attachment", "completed").await;
    let a2 = media(&app, alice, "message_attachment", "completed").await;
    let (_, r) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "first", "attachment_ids": [a1]}),
    )
    .await;
    let id = r["data"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/messages/{id}");
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;

    // Content only: attachments untouched.
    let (s, e) = put(&app, &at, &path, json!({"content": "  second  "})).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["data"]["content"], "second");
    assert!(is_rfc3339_seconds(&e["data"]["edited_at"]));
    assert_eq!(e["data"]["attachments"].as_array().unwrap().len(), 1);
    let ev = bob_ws.expect_event("message.update").await;
    assert_eq!(ev["payload"], e["data"]);
    assert_eq!(ev["meta"]["sender_id"], alice.to_string());
    carol_ws
        .expect_no_event("message.update", Duration::from_millis(300))
        .await;

    // Unchanged: no event.
    let (s, _) = put(&app, &at, &path, json!({"content": "second"})).await;
    assert_eq!(s, 200);
    bob_ws
        .expect_no_event("message.update", Duration::from_millis(300))
        .await;

    // Swap attachments; then remove all with [] and with null.
    let (s, e) = put(
        &app,
        &at,
        &path,
        json!({"content": "second", "attachment_ids": [a2]}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["data"]["attachments"][0]["id"], a2.to_string());
    let (s, e) = put(
        &app,
        &at,
        &path,
        json!({"content": "second", "attachment_ids": []}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(e["data"]["attachments"], json!([]));
    let (s, _) = put(
        &app,
        &at,
        &path,
        json!({"content": "second", "attachment_ids": [a1]}),
    )
    .await;
    assert_eq!(s, 200, "a removed attachment can be attached again");
    let (s, e) = put(
        &app,
        &at,
        &path,
        json!({"content": "third", "attachment_ids": null}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(e["data"]["attachments"], json!([]));

    // Validation and permissions.
    let foreign = media(&app, bob, "message_attachment", "completed").await;
    let pending = media(&app, alice, "message_attachment", "pending").await;
    for ids in [json!([foreign]), json!([pending]), json!([Uuid::now_v7()])] {
        let (s, b) = put(
            &app,
            &at,
            &path,
            json!({"content": "x", "attachment_ids": ids}),
        )
        .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("Invalid attachments")),
            "{ids}"
        );
    }
    for body in [
        json!({}),
        json!({"content": ""}),
        json!({"content": "   ", "attachment_ids": []}),
        json!({"content": "a".repeat(4001)}),
        json!({"content": "a\u{0}b"}),
        json!({"content": 5}),
    ] {
        let (s, _) = put(&app, &at, &path, body.clone()).await;
        assert_eq!(s, 400, "{body}");
    }
    let (s, b) = put(&app, &bt, &path, json!({"content": "hijack"})).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let (s, b) = put(&app, &at, "/api/messages/xyz", json!({"content": "x"})).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Message ID")));
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/messages/{}", Uuid::now_v7()),
        json!({"content": "x"}),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (404, Some("Not Found")));

    // Too old.
    exec(
        &app,
        "UPDATE messages SET created_at = now() - interval '16 minutes' WHERE id = $1",
        Uuid::parse_str(&id).unwrap(),
    )
    .await;
    let (s, b) = put(&app, &at, &path, json!({"content": "late"})).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("Message is too old to edit"))
    );

    // Deleted, system, deleted chat, left group.
    let fresh = send(&app, &at, chat, "gone").await;
    let fresh_path = format!("/api/messages/{}", fresh["id"].as_str().unwrap());
    delete(&app, &at, &fresh_path).await;
    let (s, b) = put(&app, &at, &fresh_path, json!({"content": "x"})).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("Cannot edit a deleted message"))
    );
    let group = make_group(&app, alice, &[bob]).await;
    let (_, gh) = get(&app, &at, &format!("/api/chats/{group}/messages")).await;
    let sys = format!("/api/messages/{}", gh["data"][0]["id"].as_str().unwrap());
    let (s, b) = put(&app, &at, &sys, json!({"content": "x"})).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("Cannot edit this type of message"))
    );
    let bobs = send(&app, &bt, group, "bob in group").await;
    let bobs_path = format!("/api/messages/{}", bobs["id"].as_str().unwrap());
    sqlx::query("DELETE FROM group_members WHERE user_id = $1")
        .bind(bob)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (s, _) = put(&app, &bt, &bobs_path, json!({"content": "after leaving"})).await;
    assert_eq!(s, 403, "former members cannot edit");
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        group,
    )
    .await;
    let owner_msg = sqlx::query_scalar::<_, Uuid>(
        "SELECT id FROM messages WHERE chat_id = $1 AND type = 'system_create'",
    )
    .bind(group)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/messages/{owner_msg}"),
        json!({"content": "x"}),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Chat is deleted")));

    // Blocked private chat: no edits.
    let (s, mine) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "pre-block"}),
    )
    .await;
    assert_eq!(s, 200);
    block(&app, bob, alice).await;
    let (s, _) = put(
        &app,
        &at,
        &format!("/api/messages/{}", mine["data"]["id"].as_str().unwrap()),
        json!({"content": "post-block"}),
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn delete_rules_tombstones_and_events() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    let att = media(&app, bob, "message_attachment", "completed").await;
    let (_, r) = post(
        &app,
        &bt,
        "/api/messages",
        json!({"chat_id": group, "content": "secret", "attachment_ids": [att]}),
    )
    .await;
    let bobs = r["data"]["id"].as_str().unwrap().to_string();
    let owners = send(&app, &at, group, "owner text").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    // A plain member cannot delete the owner's message (nor system ones).
    let (s, b) = delete(&app, &bt, &format!("/api/messages/{owners}")).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let sys: Uuid =
        sqlx::query_scalar("SELECT id FROM messages WHERE chat_id = $1 AND type = 'system_create'")
            .bind(group)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    let (s, _) = delete(&app, &ct, &format!("/api/messages/{sys}")).await;
    assert_eq!(s, 403);
    let (s, b) = delete(&app, &at, &format!("/api/messages/{sys}")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("Cannot delete this type of message"))
    );
    let (s, _) = delete(&app, &dt, &format!("/api/messages/{bobs}")).await;
    assert_eq!(s, 403, "outsiders cannot delete");

    // The owner deletes Bob's message.
    let (s, b) = delete(&app, &at, &format!("/api/messages/{bobs}")).await;
    assert_eq!((s, &b), (200, &json!({"data": ""})));
    for ws in [&mut bob_ws, &mut carol_ws] {
        let e = ws.expect_event("message.delete").await;
        assert_eq!(e["payload"], json!({"message_id": bobs}));
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
    }
    dave_ws
        .expect_no_event("message.delete", Duration::from_millis(300))
        .await;
    let (s, b) = delete(&app, &bt, &format!("/api/messages/{bobs}")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("Message already deleted"))
    );

    let h = history(&app, &ct, group, "").await;
    let tomb = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == bobs)
        .unwrap()
        .clone();
    assert!(tomb.get("content").is_none());
    assert_eq!(tomb["attachments"], json!([]));
    assert!(is_rfc3339_seconds(&tomb["deleted_at"]));
    assert_eq!(tomb["sender_name"], "Bob");
    // The deleted attachment cannot resurface.
    let (s, _) = post(
        &app,
        &bt,
        "/api/messages",
        json!({"chat_id": group, "content": "again", "attachment_ids": [att]}),
    )
    .await;
    assert_eq!(s, 400);

    let (s, b) = delete(&app, &at, "/api/messages/123").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Message ID")));
    let (s, b) = delete(&app, &at, &format!("/api/messages/{}", Uuid::now_v7())).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("Not Found")));
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        group,
    )
    .await;
    let (s, b) = delete(&app, &at, &format!("/api/messages/{owners}")).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Chat is deleted")));
}

#[tokio::test]
async fn history_pages_both_ways_and_around() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (_, ct) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    let empty = history(&app, &at, chat, "").await;
    assert_eq!(
        empty,
        json!({"data": [], "meta": {"has_next": false, "has_prev": false}})
    );
    let mut m = Vec::new();
    for i in 0..20 {
        let token = if i % 2 == 0 { &at } else { &bt };
        m.push(
            send(&app, token, chat, &format!("m{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    let p = history(&app, &at, chat, "limit=2").await;
    assert_eq!(ids(&p["data"]), vec![m[18].clone(), m[19].clone()]);
    assert_eq!(p["meta"]["has_next"], true);
    assert_eq!(p["meta"]["has_prev"], false);
    assert_eq!(p["meta"]["next_cursor"], b64(&m[18]));
    assert_eq!(p["meta"]["prev_cursor"], b64(&m[19]));
    let p = history(&app, &at, chat, &format!("limit=2&cursor={}", b64(&m[18]))).await;
    assert_eq!(ids(&p["data"]), vec![m[16].clone(), m[17].clone()]);
    assert_eq!(
        (p["meta"]["has_next"].clone(), p["meta"]["has_prev"].clone()),
        (json!(true), json!(true))
    );
    let p = history(
        &app,
        &at,
        chat,
        &format!("limit=2&cursor={}&direction=newer", b64(&m[1])),
    )
    .await;
    assert_eq!(ids(&p["data"]), vec![m[2].clone(), m[3].clone()]);
    assert_eq!(
        (p["meta"]["has_next"].clone(), p["meta"]["has_prev"].clone()),
        (json!(true), json!(true))
    );
    let p = history(&app, &at, chat, &format!("limit=2&cursor={}", b64(&m[2]))).await;
    assert_eq!(ids(&p["data"]), vec![m[0].clone(), m[1].clone()]);
    assert_eq!(p["meta"]["has_next"], false);
    let p = history(
        &app,
        &at,
        chat,
        &format!("limit=5&cursor={}&direction=newer", b64(&m[17])),
    )
    .await;
    assert_eq!(ids(&p["data"]), vec![m[18].clone(), m[19].clone()]);
    assert_eq!(
        (p["meta"]["has_next"].clone(), p["meta"]["has_prev"].clone()),
        (json!(true), json!(false))
    );
    let p = history(&app, &at, chat, "direction=newer&limit=3").await;
    assert_eq!(
        ids(&p["data"]),
        m[0..3].to_vec(),
        "newer without cursor starts at the oldest"
    );

    // Around.
    let p = history(
        &app,
        &at,
        chat,
        &format!("limit=5&around_message_id={}", m[9]),
    )
    .await;
    assert_eq!(ids(&p["data"]), m[7..12].to_vec());
    assert_eq!(
        (p["meta"]["has_next"].clone(), p["meta"]["has_prev"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(p["meta"]["next_cursor"], b64(&m[7]));
    assert_eq!(p["meta"]["prev_cursor"], b64(&m[11]));
    let p = history(
        &app,
        &at,
        chat,
        &format!("limit=20&around_message_id={}", m[10]),
    )
    .await;
    assert!(
        p["data"].as_array().unwrap().len() <= 20,
        "never more than limit"
    );
    assert!(ids(&p["data"]).contains(&m[10]));
    let p = history(
        &app,
        &at,
        chat,
        &format!("limit=1&around_message_id={}", m[4]),
    )
    .await;
    assert_eq!(ids(&p["data"]), vec![m[4].clone()]);
    let p = history(
        &app,
        &at,
        chat,
        &format!("limit=5&around_message_id={}", m[0]),
    )
    .await;
    assert_eq!(ids(&p["data"]), m[0..3].to_vec());
    assert_eq!(p["meta"]["has_next"], false);
    let p = history(
        &app,
        &at,
        chat,
        &format!(
            "around_message_id={}&cursor=garbage-is-ignored&direction=newer",
            m[5]
        ),
    )
    .await;
    assert!(ids(&p["data"]).contains(&m[5]));

    // Default limit and errors.
    let p = history(&app, &at, chat, "limit=0").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 20);
    let bad: Vec<(String, &str)> = vec![
        ("cursor=bukan-base64-valid".into(), "Invalid cursor format"),
        (
            format!("cursor={}", b64("not-a-uuid")),
            "Invalid cursor format",
        ),
        (
            "around_message_id=nope".into(),
            "Invalid around_message_id format",
        ),
        ("direction=sideways".into(), "Bad Request"),
        ("limit=abc".into(), "Invalid limit"),
        ("limit=51".into(), "Bad Request"),
    ];
    for (q, msg) in bad {
        let (s, b) = get(&app, &at, &format!("/api/chats/{chat}/messages?{q}")).await;
        assert_eq!((s, b["error"].as_str()), (400, Some(msg)), "{q}");
    }
    let (s, b) = get(&app, &at, "/api/chats/99999/messages").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("Invalid Chat ID")));
    let (s, b) = get(
        &app,
        &at,
        &format!(
            "/api/chats/{chat}/messages?around_message_id={}",
            Uuid::now_v7()
        ),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (404, Some("Message not found")));
    let (s, b) = get(&app, &ct, &format!("/api/chats/{chat}/messages")).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("Forbidden")));
    let (s, _) = get(
        &app,
        &at,
        &format!("/api/chats/{}/messages", Uuid::now_v7()),
    )
    .await;
    assert_eq!(s, 404);

    // Deleted sender keeps content, loses identity; blocked users still read.
    block(&app, bob, alice).await;
    soft_delete_user(&app, bob).await;
    let p = history(&app, &at, chat, "limit=1").await;
    let last = &p["data"][0];
    assert_eq!(last["content"], "m19");
    assert!(last.get("sender_id").is_none());
    assert_eq!(last["sender_name"], "Deleted User");
}

#[tokio::test]
async fn paging_has_no_gaps_or_duplicates_while_messages_arrive() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let mut initial = Vec::new();
    for i in 0..25 {
        initial.push(
            send(&app, &at, chat, &format!("seed {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // A writer keeps sending while we page.
    let writer = {
        let (http, url, token) = (app.http.clone(), app.url("/api/messages"), bt.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..30 {
                let v: Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"chat_id": chat, "content": format!("live {i}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                sent.push(v["data"]["id"].as_str().unwrap().to_string());
            }
            sent
        })
    };

    // Older pages from just above the newest seed: exactly the seeds.
    let above = Uuid::from_u128(Uuid::parse_str(&initial[24]).unwrap().as_u128() + 1);
    let mut cursor = b64(&above.to_string());
    let mut older: Vec<String> = Vec::new();
    loop {
        let p = history(&app, &at, chat, &format!("limit=4&cursor={cursor}")).await;
        let mut page = ids(&p["data"]);
        page.extend(older);
        older = page;
        if !p["meta"]["has_next"].as_bool().unwrap() {
            break;
        }
        cursor = p["meta"]["next_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(older, initial);

    // Newer pages from the oldest: everything, in order, once.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let finished = writer.is_finished();
        let q = match &cursor {
            None => "limit=7&direction=newer".to_string(),
            Some(c) => format!("limit=7&direction=newer&cursor={c}"),
        };
        let p = history(&app, &at, chat, &q).await;
        seen.extend(ids(&p["data"]));
        if let Some(c) = p["meta"]["prev_cursor"].as_str() {
            cursor = Some(c.to_string());
        }
        // Anything committed before `finished` was read is visible now.
        if finished && !p["meta"]["has_prev"].as_bool().unwrap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ascending order");
    let mut expected = initial.clone();
    expected.extend(sent);
    expected.sort();
    assert_eq!(seen, expected, "no gaps");
}

#[tokio::test]
async fn fifty_concurrent_sends_are_stored_once_and_delivered_in_list_order() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let group = make_group(&app, alice, &[bob, carol]).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut alice_ws = connect(&app, alice, &at).await;
    // A member connected to another instance gets the same order too.
    let other = app.second_instance().await;
    let mut bob_ws = connect(&other, bob, &bt).await;

    let mut tasks = Vec::new();
    for i in 0..50 {
        let (http, url) = (app.http.clone(), app.url("/api/messages"));
        let token = if i % 2 == 0 { at.clone() } else { bt.clone() };
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"chat_id": group, "content": format!("burst {i}")}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap();
            (status, v)
        }));
    }
    // Reads racing the sends must not fail or deadlock either.
    let mut reads = Vec::new();
    for i in 0..5 {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/api/chats/{group}/read")),
        );
        let token = if i % 2 == 0 { at.clone() } else { bt.clone() };
        reads.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for r in reads {
        assert_eq!(r.await.unwrap(), 200);
    }
    let mut returned = HashSet::new();
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert_eq!(status, 200, "{v}");
        returned.insert(v["data"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(returned.len(), 50);

    let listed_ids: Vec<String> = ids(&history(&app, &ct, group, "limit=50").await["data"]);
    assert_eq!(listed_ids.len(), 50);
    assert_eq!(listed_ids.iter().cloned().collect::<HashSet<_>>(), returned);
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE chat_id = $1 AND type = 'regular'")
            .bind(group)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(n, 50, "each stored exactly once");
    // created_at never goes backwards in id order.
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT created_at FROM messages WHERE chat_id = $1 ORDER BY id")
            .bind(group)
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let last: Uuid = sqlx::query_scalar("SELECT last_message_id FROM chats WHERE id = $1")
        .bind(group)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(last.to_string(), listed_ids[49]);

    for ws in [&mut carol_ws, &mut alice_ws, &mut bob_ws] {
        let mut got = Vec::new();
        while got.len() < 50 {
            let e = ws.expect_event("message.new").await;
            got.push(e["payload"]["id"].as_str().unwrap().to_string());
        }
        assert_eq!(got, listed_ids, "live order equals list order");
        ws.expect_no_event("message.new", Duration::from_millis(200))
            .await;
    }
    // Counters were not lost: Carol never sent, so she has 50 unread.
    assert_eq!(listed(&app, &ct, group).await.unwrap()["unread_count"], 50);
}

#[tokio::test]
async fn private_events_skip_a_party_in_a_block_relation() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let m = send(&app, &at, chat, "before the block").await;
    block(&app, bob, alice).await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    // Alice may still remove her own message; only her devices hear of it.
    let (s, _) = delete(
        &app,
        &at,
        &format!("/api/messages/{}", m["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, 200);
    alice_ws.expect_event("message.delete").await;
    bob_ws
        .expect_no_event("message.delete", Duration::from_millis(300))
        .await;
    // Bob can still read the history (with the tombstone).
    let h = history(&app, &bt, chat, "").await;
    assert!(h["data"][0].get("content").is_none());
}

/// In a group, `message.new`, `message.update` and `message.delete` skip
/// the members in a block relation (either direction) with the actor: the
/// sender, the editor, the deleter (spec: heavy delivery, also in groups).
/// Everyone else, the actor's own devices included, gets them.
#[tokio::test]
async fn group_message_events_skip_members_in_a_block_relation_with_the_actor() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let (erin, et) = app.make_user("Erin").await;
    let group = make_group(&app, alice, &[bob, carol, dave, erin]).await;
    exec(
        &app,
        "UPDATE group_members SET role = 'admin' WHERE user_id = $1",
        erin,
    )
    .await;
    block(&app, carol, bob).await; // Carol blocked the sender
    block(&app, bob, dave).await; // the sender blocked Dave
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;
    let mut erin_ws = connect(&app, erin, &et).await;
    let quiet = Duration::from_millis(300);

    let m = send(&app, &bt, group, "hello all").await;
    let id = m["id"].as_str().unwrap().to_string();
    for ws in [&mut alice_ws, &mut bob_ws, &mut erin_ws] {
        let e = ws.expect_event("message.new").await;
        assert_eq!(e["payload"]["id"], id.as_str());
        assert_eq!(e["meta"]["sender_id"], bob.to_string());
    }
    carol_ws.expect_no_event("message.new", quiet).await;
    dave_ws
        .expect_no_event("message.new", Duration::from_millis(50))
        .await;
    // Not live, but in the history and the counters.
    for token in [&ct, &dt] {
        let h = history(&app, token, group, "").await;
        assert!(h["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str()));
        assert_eq!(listed(&app, token, group).await.unwrap()["unread_count"], 1);
    }

    let (s, b) = put(
        &app,
        &bt,
        &format!("/api/messages/{id}"),
        json!({"content": "hello everyone"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    for ws in [&mut alice_ws, &mut bob_ws, &mut erin_ws] {
        let e = ws.expect_event("message.update").await;
        assert_eq!(e["payload"]["content"], "hello everyone");
    }
    carol_ws.expect_no_event("message.update", quiet).await;
    dave_ws
        .expect_no_event("message.update", Duration::from_millis(50))
        .await;

    let (s, _) = delete(&app, &bt, &format!("/api/messages/{id}")).await;
    assert_eq!(s, 200);
    for ws in [&mut alice_ws, &mut bob_ws, &mut erin_ws] {
        let e = ws.expect_event("message.delete").await;
        assert_eq!(e["payload"], json!({"message_id": id}));
    }
    carol_ws.expect_no_event("message.delete", quiet).await;
    dave_ws
        .expect_no_event("message.delete", Duration::from_millis(50))
        .await;

    // A moderator's delete is filtered relative to the moderator: Carol's
    // message deleted by Erin (admin) reaches Bob, whom Carol blocked, and
    // not Alice, who blocked Erin.
    block(&app, alice, erin).await;
    let c = send(&app, &ct, group, "carol speaks").await;
    for ws in [&mut erin_ws, &mut dave_ws, &mut carol_ws] {
        ws.expect_event("message.new").await;
    }
    let cid = c["id"].as_str().unwrap().to_string();
    let (s, _) = delete(&app, &et, &format!("/api/messages/{cid}")).await;
    assert_eq!(s, 200);
    for ws in [&mut bob_ws, &mut carol_ws, &mut dave_ws, &mut erin_ws] {
        let e = ws.expect_event("message.delete").await;
        assert_eq!(e["payload"]["message_id"], cid.as_str());
        assert_eq!(e["meta"]["sender_id"], erin.to_string());
    }
    alice_ws.expect_no_event("message.delete", quiet).await;
}

/// Regression (found while fuzzing the OpenAPI document): an edit body over
/// the 100 KiB limit was answered by axum in plain text (413); it is the
/// envelope's 400 like every other JSON body, and the message is unchanged.
#[tokio::test]
async fn oversize_edit_body_is_a_json_400() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let (s, body) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "before"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();

    let res = app
        .http
        .put(app.url(&format!("/api/messages/{id}")))
        .bearer_auth(&at)
        .json(&json!({"content": "a".repeat(200_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"error": "Bad Request"}));

    // The path is still checked first.
    let (s, body) = put(
        &app,
        &at,
        "/api/messages/nope",
        json!({"content": "a".repeat(200_000)}),
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("Invalid Message ID"))
    );

    let content: Option<String> =
        sqlx::query_scalar("SELECT content FROM messages WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(content.as_deref(), Some("before"));
}

/// A plain send answers from what it read and wrote instead of reading the
/// message back (issue 21): its response, and the `message.new` copy, must
/// be exactly the history's rendering of the stored row (avatar, role,
/// trimmed text, timestamp and all).
#[tokio::test]
async fn send_response_is_the_history_rendering_of_the_stored_message() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let avatar = media(&app, alice, "user_avatar", "completed").await;
    sqlx::query("UPDATE users SET avatar_id = $1 WHERE id = $2")
        .bind(avatar)
        .bind(alice)
        .execute(&app.state.db)
        .await
        .unwrap();
    let private = app.make_private_chat(alice, bob).await;
    let group = make_group(&app, alice, &[bob]).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    for (token, chat, text) in [
        (&at, private, "  with an avatar  "),
        (&bt, private, "no avatar"),
        (&at, group, "as the owner"),
        (&bt, group, "as a member"),
    ] {
        let m = send(&app, token, chat, text).await;
        let page = history(&app, token, chat, "").await;
        let stored = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == m["id"])
            .expect("the sent message is listed");
        assert_eq!(&m, stored, "response of {text:?} equals its history entry");
        let e = bob_ws.expect_event("message.new").await;
        assert_eq!(e["payload"], m, "event of {text:?}");
    }
    let first = &history(&app, &bt, private, "").await["data"][0];
    assert!(first["sender_avatar"].is_string(), "{first}");
}
