//! Integration tests: groups (create, update, delete, public directory,
//! invites, join/leave/add/kick, roles, ownership), their system messages
//! and the events each member does — and does not — receive.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{json as body, make_group, TestApp};

const QUIET: Duration = Duration::from_millis(400);

/// Creates a group through the API and returns the response's `data`.
async fn create_group(
    app: &TestApp,
    token: &str,
    name: &str,
    members: &[Uuid],
    public: bool,
) -> Value {
    let (s, b) = post(
        app,
        token,
        "/api/chats/group",
        json!({"name": name, "member_ids": members, "is_public": public}),
    )
    .await;
    assert_eq!(s, 200, "create group: {b}");
    b["data"].clone()
}

fn chat_id(v: &Value) -> Uuid {
    Uuid::parse_str(v["id"].as_str().expect("id")).expect("uuid")
}

async fn group_row_id(app: &TestApp, chat: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT id FROM group_chats WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .expect("group row")
}

async fn set_role(app: &TestApp, chat: Uuid, user: Uuid, role: &str) {
    sqlx::query(
        "UPDATE group_members SET role = $3 \
          WHERE group_chat_id = (SELECT id FROM group_chats WHERE chat_id = $1) AND user_id = $2",
    )
    .bind(chat)
    .bind(user)
    .bind(role)
    .execute(&app.state.db)
    .await
    .expect("set role");
}

async fn roles(app: &TestApp, chat: Uuid) -> Vec<(Uuid, String)> {
    sqlx::query_as(
        "SELECT gm.user_id, gm.role FROM group_members gm JOIN group_chats g ON g.id = gm.group_chat_id \
          WHERE g.chat_id = $1 ORDER BY gm.joined_at, gm.id",
    )
    .bind(chat)
    .fetch_all(&app.state.db)
    .await
    .expect("roles")
}

async fn invite_code(app: &TestApp, chat: Uuid) -> String {
    sqlx::query_scalar("SELECT invite_code FROM group_chats WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .expect("invite code")
}

async fn messages_of(app: &TestApp, token: &str, chat: Uuid) -> Vec<Value> {
    let (s, b) = get(app, token, &format!("/api/chats/{chat}/messages?limit=50")).await;
    assert_eq!(s, 200, "{b}");
    b["data"].as_array().expect("array").clone()
}

async fn system_message_count(app: &TestApp, chat: Uuid, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE chat_id = $1 AND type = $2")
        .bind(chat)
        .bind(kind)
        .fetch_one(&app.state.db)
        .await
        .expect("count")
}

async fn unauthenticated_get(app: &TestApp, path: &str) -> (u16, Value) {
    body(app.http.get(app.url(path)).send().await.expect("request")).await
}

fn err(b: &Value) -> Option<&str> {
    b["error"].as_str()
}

// ---------------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_returns_the_owner_view_and_announces_each_role_its_own() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    let (s, b) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "  Team Rocket  ", "description": "  blast off  ", "member_ids": [bob, carol]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let g = &b["data"];
    assert_eq!(g["type"], "group");
    assert_eq!(g["name"], "Team Rocket");
    assert_eq!(g["description"], "blast off");
    assert_eq!(g["my_role"], "owner");
    assert_eq!(g["member_count"], 3);
    assert_eq!(g["unread_count"], 0);
    assert_eq!(g["is_public"], false);
    assert_eq!(g["avatar"], "");
    let code = g["invite_code"].as_str().expect("owner sees the code");
    assert!(code.len() >= 22 && code.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(g["invite_expires_at"].is_string());
    let last = &g["last_message"];
    assert_eq!(last["type"], "system_create");
    assert_eq!(last["action_data"]["initial_name"], "Team Rocket");
    assert_eq!(last["sender_id"], alice.to_string());
    assert_eq!(last["sender_role"], "owner");
    let chat = chat_id(g);

    let e = alice_ws.expect_event("chat.new").await;
    assert_eq!(e["payload"]["my_role"], "owner");
    assert_eq!(e["payload"]["invite_code"], code);
    assert_eq!(e["meta"]["chat_id"], chat.to_string());
    assert_eq!(e["meta"]["sender_id"], alice.to_string());
    for ws in [&mut bob_ws, &mut carol_ws] {
        let e = ws.expect_event("chat.new").await;
        let p = &e["payload"];
        assert_eq!(p["id"], chat.to_string());
        assert_eq!(p["my_role"], "member", "each member sees their own role");
        assert!(p.get("invite_code").is_none(), "private code leaked: {p}");
        assert!(p.get("invite_expires_at").is_none());
        assert_eq!(p["member_count"], 3);
        assert_eq!(p["last_message"]["type"], "system_create");
        ws.expect_no_event("message.new", QUIET).await;
    }
    expect_silence(&mut dave_ws, QUIET).await;

    // Members list it; unread stays 0 (system messages are not unread).
    assert_eq!(listed(&app, &bt, chat).await.unwrap()["unread_count"], 0);
    assert!(listed(&app, &dt, chat).await.is_none());

    // Public group: the code is for everyone, with no expiry.
    let p = create_group(&app, &at, "Open House", &[bob], true).await;
    assert!(p["invite_code"].is_string());
    assert!(p.get("invite_expires_at").is_none());
    let e = bob_ws.expect_event("chat.new").await;
    assert_eq!(e["payload"]["invite_code"], p["invite_code"]);
    assert_eq!(e["payload"]["is_public"], true);
}

#[tokio::test]
async fn create_validation_and_member_rules() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (deleted, _) = app.make_user("Deleted").await;
    soft_delete_user(&app, deleted).await;
    let (banned, _) = app.make_user("Banned").await;
    ban_user(&app, banned).await;
    let (blocker, _) = app.make_user("Blocker").await;
    block(&app, blocker, alice).await;
    let (blocked, _) = app.make_user("Blocked").await;
    block(&app, alice, blocked).await;

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"name": "Team", "member_ids": []}),
            400,
            "Bad Request",
        ),
        (json!({"name": "Team"}), 400, "Bad Request"),
        (json!({"member_ids": [bob]}), 400, "Bad Request"),
        (
            json!({"name": "Hi", "member_ids": [bob]}),
            400,
            "Bad Request",
        ),
        // Validated after trimming, unlike the reference.
        (
            json!({"name": "  ab  ", "member_ids": [bob]}),
            400,
            "Bad Request",
        ),
        (
            json!({"name": "     ", "member_ids": [bob]}),
            400,
            "Bad Request",
        ),
        (
            json!({"name": "x".repeat(101), "member_ids": [bob]}),
            400,
            "Bad Request",
        ),
        (
            json!({"name": "Team\u{0}", "member_ids": [bob]}),
            400,
            "Bad Request",
        ),
        (
            json!({"name": "Team", "description": "d".repeat(256), "member_ids": [bob]}),
            400,
            "Bad Request",
        ),
        (
            json!({"name": "Team", "member_ids": ["not-a-uuid"]}),
            400,
            "Bad Request",
        ),
        (
            json!({"name": "Team", "member_ids": bob.to_string()}),
            400,
            "Bad Request",
        ),
        (json!({"name": 5, "member_ids": [bob]}), 400, "Bad Request"),
        (
            json!({"name": "Team", "member_ids": [alice]}),
            400,
            "Cannot add yourself to the member list.",
        ),
        (
            json!({"name": "Team", "member_ids": [Uuid::now_v7()]}),
            400,
            "One or more members not found or deleted.",
        ),
        (
            json!({"name": "Team", "member_ids": [bob, bob]}),
            400,
            "One or more members not found or deleted.",
        ),
        (
            json!({"name": "Team", "member_ids": [bob, deleted]}),
            400,
            "One or more members not found or deleted.",
        ),
        (
            json!({"name": "Team", "member_ids": [bob, banned]}),
            403,
            "Cannot add suspended/banned user to group",
        ),
        (
            json!({"name": "Team", "member_ids": [bob, blocker]}),
            403,
            "Cannot create a group with a blocked user.",
        ),
        (
            json!({"name": "Team", "member_ids": [blocked]}),
            403,
            "Cannot create a group with a blocked user.",
        ),
        (
            json!({"name": "Team", "member_ids": [bob], "avatar_media_id": "nope"}),
            400,
            "Invalid avatar media",
        ),
    ];
    for (payload, status, message) in cases {
        let (s, b) = post(&app, &at, "/api/chats/group", payload.clone()).await;
        assert_eq!((s, err(&b)), (status, Some(message)), "{payload}");
    }
    for raw in ["{", "", "null", "[]", "\"x\""] {
        let (s, b) = post_raw(&app, &at, "/api/chats/group", raw).await;
        assert_eq!((s, err(&b)), (400, Some("Bad Request")), "{raw:?}");
    }
    let groups: i64 = sqlx::query_scalar("SELECT count(*) FROM group_chats")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(groups, 0, "nothing half-written");

    let res = app
        .http
        .post(app.url("/api/chats/group"))
        .json(&json!({"name": "Team", "member_ids": [bob]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A banned caller is stopped by the auth middleware.
    let (banned_caller, banned_token) = app.make_user("BannedCaller").await;
    ban_user(&app, banned_caller).await;
    let (s, _) = post(
        &app,
        &banned_token,
        "/api/chats/group",
        json!({"name": "Team", "member_ids": [bob]}),
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn create_and_update_avatar_media_rules() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let good = media(&app, alice, "group_avatar", "completed").await;
    let pending = media(&app, alice, "group_avatar", "pending").await;
    let attachment = media(&app, alice, "message_attachment", "completed").await;
    let bobs = media(&app, bob, "group_avatar", "completed").await;

    for bad in [pending, attachment, bobs, Uuid::now_v7()] {
        let (s, b) = post(
            &app,
            &at,
            "/api/chats/group",
            json!({"name": "Team", "member_ids": [bob], "avatar_media_id": bad}),
        )
        .await;
        assert_eq!((s, err(&b)), (400, Some("Invalid avatar media")), "{bad}");
    }
    let (s, b) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "Team", "member_ids": [bob], "avatar_media_id": good}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let avatar = b["data"]["avatar"].as_str().unwrap();
    assert!(avatar.contains(&good.simple().to_string()), "{avatar}");
    let chat = chat_id(&b["data"]);

    // The same media cannot become a second group's avatar, nor be re-set.
    let (s, b) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "Other", "member_ids": [bob], "avatar_media_id": good}),
    )
    .await;
    assert_eq!((s, err(&b)), (400, Some("Invalid avatar media")));
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"avatar_media_id": good}),
    )
    .await;
    assert_eq!((s, err(&b)), (400, Some("Invalid avatar media")));

    // Two creates racing for one media: exactly one gets it, no 500.
    let contested = media(&app, alice, "group_avatar", "completed").await;
    let results = join_all((0..4).map(|i| {
        post(
            &app,
            &at,
            "/api/chats/group",
            json!({"name": format!("Race {i}"), "member_ids": [bob], "avatar_media_id": contested}),
        )
    }))
    .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|(s, b)| *s == 200 || (*s == 400 && err(b) == Some("Invalid avatar media"))));

    // Update to a new avatar, then remove it.
    let fresh = media(&app, alice, "group_avatar", "completed").await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"avatar_media_id": fresh}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["data"]["avatar"]
        .as_str()
        .unwrap()
        .contains(&fresh.simple().to_string()));
    assert_eq!(b["data"]["last_message"]["type"], "system_avatar");
    assert_eq!(
        b["data"]["last_message"]["action_data"]["action"],
        "updated"
    );
    let e = bob_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["action_data"]["action"], "updated");
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"delete_avatar": true}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["avatar"], "");
    assert_eq!(
        b["data"]["last_message"]["action_data"]["action"],
        "removed"
    );
    // Nothing to remove any more: a no-op.
    let before = system_message_count(&app, chat, "system_avatar").await;
    let (s, _) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"delete_avatar": true}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        system_message_count(&app, chat, "system_avatar").await,
        before
    );
}

// ---------------------------------------------------------------------------------------------
// Update / delete
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn update_writes_one_system_message_per_change_then_per_role_chat_updates() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let g = create_group(&app, &at, "Old Name", &[bob, carol], false).await;
    let chat = chat_id(&g);
    let old_code = g["invite_code"].as_str().unwrap().to_string();
    set_role(&app, chat, bob, "admin").await;
    let avatar = media(&app, alice, "group_avatar", "completed").await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"name": " New Name ", "description": "About us", "is_public": true,
               "avatar_media_id": avatar}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let d = &b["data"];
    assert_eq!(d["name"], "New Name");
    assert_eq!(d["description"], "About us");
    assert_eq!(d["is_public"], true);
    assert_eq!(d["my_role"], "owner");
    assert!(d.get("invite_expires_at").is_none(), "public: no expiry");
    let public_code = d["invite_code"].as_str().unwrap().to_string();
    assert_ne!(
        public_code, old_code,
        "a privately shared code is not published"
    );
    assert_eq!(d["last_message"]["type"], "system_avatar");

    // Carol (member): four message.new in order, then her own chat.update.
    let kinds = [
        "system_rename",
        "system_description",
        "system_visibility",
        "system_avatar",
    ];
    for kind in kinds {
        let e = next_event(&mut carol_ws).await;
        assert_eq!(e["type"], "message.new", "{e}");
        assert_eq!(e["payload"]["type"], kind);
        assert_eq!(e["payload"]["sender_role"], "owner");
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
    }
    let e = next_event(&mut carol_ws).await;
    assert_eq!(e["type"], "chat.update", "{e}");
    assert_eq!(e["payload"]["my_role"], "member");
    assert_eq!(e["payload"]["is_public"], true);
    assert_eq!(e["payload"]["invite_code"], public_code.as_str());
    assert_eq!(e["payload"]["last_message"]["type"], "system_avatar");
    let e = bob_ws.expect_event("chat.update").await;
    assert_eq!(e["payload"]["my_role"], "admin");
    expect_silence(&mut dave_ws, QUIET).await;

    let history = messages_of(&app, &ct, chat).await;
    let tail: Vec<&Value> = history.iter().rev().take(4).rev().collect();
    assert_eq!(tail[0]["action_data"]["old_name"], "Old Name");
    assert_eq!(tail[0]["action_data"]["new_name"], "New Name");
    assert_eq!(tail[1]["action_data"]["old_description"], "");
    assert_eq!(tail[1]["action_data"]["new_description"], "About us");
    assert_eq!(tail[2]["action_data"]["new_visibility"], "public");
    assert_eq!(tail[3]["action_data"]["action"], "updated");
    assert_eq!(listed(&app, &ct, chat).await.unwrap()["unread_count"], 0);

    // Back to private: a new code with an expiry, shown to owner/admin only.
    let (s, b) = put(
        &app,
        &bt,
        &format!("/api/chats/group/{chat}"),
        json!({"is_public": false}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["my_role"], "admin");
    let private_code = b["data"]["invite_code"].as_str().unwrap().to_string();
    assert_ne!(private_code, public_code);
    assert!(b["data"]["invite_expires_at"].is_string());
    let e = carol_ws.expect_event("chat.update").await;
    assert!(e["payload"].get("invite_code").is_none(), "{e}");
    assert!(e["payload"].get("invite_expires_at").is_none());
    let e = bob_ws.expect_event("chat.update").await;
    assert_eq!(e["payload"]["invite_code"], private_code.as_str());
    assert!(e["payload"]["invite_expires_at"].is_string());
    let (s, _) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{public_code}")).await;
    assert_eq!(s, 404, "the public code stopped working");

    // Clearing the description; no-op updates write and send nothing.
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"description": ""}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["description"], "");
    let e = carol_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["action_data"]["new_description"], "");
    carol_ws.expect_event("chat.update").await;
    let count = messages_of(&app, &at, chat).await.len();
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"name": "New Name", "description": "", "is_public": false}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["name"], "New Name");
    assert_eq!(messages_of(&app, &at, chat).await.len(), count);
    expect_silence(&mut carol_ws, QUIET).await;
}

#[tokio::test]
async fn update_permissions_and_validation() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (_, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob]).await;
    let path = format!("/api/chats/group/{chat}");

    let (s, b) = put(&app, &bt, &path, json!({"name": "Renamed"})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Only admins or owners can update group info"))
    );
    let (s, b) = put(&app, &dt, &path, json!({"name": "Renamed"})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("You are not a member of this group"))
    );
    for bad in [
        json!({"name": "Hi"}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"description": "d".repeat(256)}),
        json!({"is_public": "yes"}),
    ] {
        let (s, b) = put(&app, &at, &path, bad.clone()).await;
        assert_eq!((s, err(&b)), (400, Some("Bad Request")), "{bad}");
    }
    let res = app
        .http
        .put(app.url(&path))
        .bearer_auth(&at)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (s, b) = put(
        &app,
        &at,
        "/api/chats/group/99999",
        json!({"name": "Renamed"}),
    )
    .await;
    assert_eq!((s, err(&b)), (400, Some("Invalid Chat ID")));
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{}", Uuid::now_v7()),
        json!({"name": "Renamed"}),
    )
    .await;
    assert_eq!((s, err(&b)), (404, Some("Group chat not found")));
    // A private chat id is not a group.
    let (carol, _) = app.make_user("Carol").await;
    let private = app.make_private_chat(alice, carol).await;
    let (s, _) = put(
        &app,
        &at,
        &format!("/api/chats/group/{private}"),
        json!({"name": "Renamed"}),
    )
    .await;
    assert_eq!(s, 404);

    set_role(&app, chat, bob, "admin").await;
    let (s, b) = put(&app, &bt, &path, json!({"name": "By Admin"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["last_message"]["type"], "system_rename");
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        chat,
    )
    .await;
    let (s, b) = put(&app, &at, &path, json!({"name": "Too Late"})).await;
    assert_eq!((s, err(&b)), (404, Some("Group chat not found")));
}

#[tokio::test]
async fn delete_is_owner_only_and_reaches_every_member_first() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob, carol]).await;
    set_role(&app, chat, bob, "admin").await;
    let path = format!("/api/chats/group/{chat}");

    let (s, b) = delete(&app, &bt, &path).await;
    assert_eq!((s, err(&b)), (403, Some("Only owner can delete the group")));
    let (s, b) = delete(&app, &ct, &path).await;
    assert_eq!((s, err(&b)), (403, Some("Only owner can delete the group")));
    let (s, b) = delete(&app, &dt, &path).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("You are not a member of this group"))
    );
    let (s, b) = delete(&app, &at, "/api/chats/group/nope").await;
    assert_eq!((s, err(&b)), (400, Some("Invalid Chat ID")));

    let mut alice_ws = connect(&app, alice, &at).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;
    let (s, b) = delete(&app, &at, &path).await;
    assert_eq!((s, b), (200, json!({"data": ""})));
    for ws in [&mut carol_ws, &mut alice_ws] {
        let e = next_event(ws).await;
        assert_eq!(e["type"], "chat.delete", "first frame: {e}");
        assert_eq!(e["payload"]["chat_id"], chat.to_string());
        assert_eq!(e["meta"]["chat_id"], chat.to_string());
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
    }
    expect_silence(&mut dave_ws, QUIET).await;

    let (s, _) = get(&app, &ct, &format!("/api/chats/{chat}")).await;
    assert_eq!(s, 404);
    assert!(listed(&app, &ct, chat).await.is_none());
    let (s, b) = delete(&app, &at, &path).await;
    assert_eq!((s, err(&b)), (404, Some("Group chat not found")));
    let (s, _) = get(&app, &at, &format!("{path}/members")).await;
    assert_eq!(s, 404);
    let (s, _) = post(&app, &ct, &format!("{path}/leave"), json!({})).await;
    assert_eq!(s, 404);
    let (s, _) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "anyone?"}),
    )
    .await;
    assert_eq!(s, 404);
    let deleted: bool =
        sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM chats WHERE id = $1")
            .bind(chat)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(deleted, "soft delete");
    assert_eq!(roles(&app, chat).await.len(), 3, "members stay");
}

// ---------------------------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn member_list_searches_by_prefix_and_pages() {
    let app = TestApp::spawn().await;
    let (alpha, at) = app.make_user("Alpha User").await;
    let (beta, _) = app.make_user("Beta User").await;
    let (gamma, _) = app.make_user("Gamma User").await;
    let (gone, _) = app.make_user("Gone User").await;
    let (_, ot) = app.make_user("Outsider").await;
    let chat = make_group(&app, alpha, &[beta, gamma, gone]).await;
    soft_delete_user(&app, gone).await;
    ban_user(&app, gamma).await;
    let path = format!("/api/chats/group/{chat}/members");

    let (s, b) = get(&app, &at, &path).await;
    assert_eq!(s, 200, "{b}");
    let data = b["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "soft-deleted member excluded: {b}");
    assert_eq!(b["meta"]["has_next"], false);
    assert!(b["meta"].get("next_cursor").is_none());
    assert_eq!(data[0]["user_id"], alpha.to_string());
    assert_eq!(data[0]["role"], "owner");
    assert_eq!(data[0]["full_name"], "Alpha User");
    assert_eq!(data[0]["avatar"], "");
    assert_eq!(data[0]["is_banned"], false);
    assert!(data[0]["username"]
        .as_str()
        .unwrap()
        .starts_with("alpha user"));
    assert_eq!(data[2]["is_banned"], true);
    let joined = data[0]["joined_at"].as_str().unwrap();
    assert!(
        joined.ends_with(" +0000 UTC") && joined.len() >= 29 && joined.as_bytes()[10] == b' ',
        "Go time text: {joined}"
    );

    let one = |b: &Value| -> Vec<String> {
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["full_name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, b) = get(&app, &at, &format!("{path}?query=beta")).await;
    assert_eq!(one(&b), ["Beta User"]);
    let (_, b) = get(&app, &at, &format!("{path}?query=GAMMA")).await;
    assert_eq!(one(&b), ["Gamma User"]);
    let (_, b) = get(&app, &at, &format!("{path}?query=%25")).await;
    assert!(one(&b).is_empty(), "wildcards are literal");
    let (_, b) = get(&app, &at, &format!("{path}?query=User")).await;
    assert!(one(&b).is_empty(), "prefix, not substring");
    let (_, b) = get(&app, &at, &format!("{path}?query=Gone")).await;
    assert!(one(&b).is_empty());

    let (_, b) = get(&app, &at, &format!("{path}?limit=2")).await;
    assert_eq!(one(&b), ["Alpha User", "Beta User"]);
    assert_eq!(b["meta"]["has_next"], true);
    assert_eq!(b["meta"]["has_prev"], false);
    let cursor = b["meta"]["next_cursor"].as_str().unwrap().to_string();
    let (_, b) = get(&app, &at, &format!("{path}?limit=2&cursor={cursor}")).await;
    assert_eq!(one(&b), ["Gamma User"]);
    assert_eq!(b["meta"]["has_next"], false);

    for (query, status, message) in [
        ("?cursor=bm90LWEtY3Vyc29y", 400, "Invalid cursor format"),
        ("?cursor=%25%25", 400, "Invalid cursor format"),
        ("?limit=51", 400, "Bad Request"),
        ("?limit=-1", 400, "Bad Request"),
        ("?limit=abc", 400, "Invalid limit"),
    ] {
        let (s, b) = get(&app, &at, &format!("{path}{query}")).await;
        assert_eq!((s, err(&b)), (status, Some(message)), "{query}");
    }
    let long = "q".repeat(101);
    let (s, _) = get(&app, &at, &format!("{path}?query={long}")).await;
    assert_eq!(s, 400);
    let (s, b) = get(&app, &ot, &path).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("You are not a member of this group"))
    );
    let (s, b) = get(&app, &at, "/api/chats/group/99999/members").await;
    assert_eq!((s, err(&b)), (400, Some("Invalid Chat ID")));
    let (s, b) = get(
        &app,
        &at,
        &format!("/api/chats/group/{}/members", Uuid::now_v7()),
    )
    .await;
    assert_eq!((s, err(&b)), (404, Some("Group chat not found")));
}

#[tokio::test]
async fn add_members_rules_messages_and_events() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, _) = app.make_user("Dave").await;
    let (erin, et) = app.make_user("Erin").await;
    let chat = make_group(&app, alice, &[bob]).await;
    let path = format!("/api/chats/group/{chat}/members");
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut erin_ws = connect(&app, erin, &et).await;

    let (s, b) = post(&app, &at, &path, json!({"user_ids": [carol, dave]})).await;
    assert_eq!(s, 200, "{b}");
    let msgs = b["data"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    for (m, target, name) in [(&msgs[0], carol, "Carol"), (&msgs[1], dave, "Dave")] {
        assert_eq!(m["type"], "system_add");
        assert_eq!(m["sender_id"], alice.to_string());
        assert_eq!(m["sender_role"], "owner");
        assert_eq!(m["member_count"], 4);
        assert_eq!(m["action_data"]["actor_id"], alice.to_string());
        assert_eq!(m["action_data"]["target_id"], target.to_string());
        assert_eq!(m["action_data"]["target_name"], name);
        assert!(m.get("sender_avatar").is_none());
    }
    for ws in [&mut bob_ws, &mut carol_ws] {
        for m in msgs {
            let e = ws.expect_event("message.new").await;
            assert_eq!(e["payload"]["id"], m["id"]);
            assert_eq!(e["payload"]["member_count"], 4);
        }
    }
    let e = carol_ws.expect_event("chat.new").await;
    let p = &e["payload"];
    assert_eq!(p["id"], chat.to_string());
    assert_eq!(p["my_role"], "member");
    assert_eq!(p["unread_count"], 0, "system messages are never unread");
    assert_eq!(p["member_count"], 4);
    assert!(p.get("invite_code").is_none(), "private group: {p}");
    assert_eq!(p["last_message"]["type"], "system_add");
    bob_ws.expect_no_event("chat.new", QUIET).await;
    expect_silence(&mut erin_ws, QUIET).await;

    // Permission matrix.
    let (s, b) = post(&app, &bt, &path, json!({"user_ids": [erin]})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Only admins or owners can add members"))
    );
    let (s, b) = post(&app, &et, &path, json!({"user_ids": [erin]})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("You are not a member of this group"))
    );
    let (s, b) = post(&app, &at, &path, json!({"user_ids": [carol]})).await;
    assert_eq!((s, err(&b)), (409, Some("All users are already members")));
    let (s, b) = post(&app, &at, &path, json!({"user_ids": [Uuid::now_v7()]})).await;
    assert_eq!(
        (s, err(&b)),
        (404, Some("One or more users not found or deleted"))
    );
    let (s, b) = post(&app, &at, &path, json!({"user_ids": [erin, erin]})).await;
    assert_eq!(s, 404, "duplicates count as a mismatch: {b}");
    let (gone, _) = app.make_user("Gone").await;
    soft_delete_user(&app, gone).await;
    let (s, _) = post(&app, &at, &path, json!({"user_ids": [gone]})).await;
    assert_eq!(s, 404);
    let (banned, _) = app.make_user("Banned").await;
    ban_user(&app, banned).await;
    let (s, b) = post(&app, &at, &path, json!({"user_ids": [erin, banned]})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Cannot add suspended/banned user to group"))
    );
    let (blocker, _) = app.make_user("Blocker").await;
    block(&app, blocker, alice).await;
    let (s, b) = post(&app, &at, &path, json!({"user_ids": [blocker]})).await;
    assert_eq!((s, err(&b)), (403, Some("Cannot add a blocked user")));
    // An admin cannot bring in someone in a block relation with the owner.
    set_role(&app, chat, bob, "admin").await;
    let (s, b) = post(&app, &bt, &path, json!({"user_ids": [blocker]})).await;
    assert_eq!((s, err(&b)), (403, Some("Cannot add a blocked user")));
    for bad in [
        json!({"user_ids": []}),
        json!({}),
        json!({"user_ids": ["nope"]}),
    ] {
        let (s, b) = post(&app, &at, &path, bad.clone()).await;
        assert_eq!((s, err(&b)), (400, Some("Bad Request")), "{bad}");
    }
    // Existing members in the list are skipped.
    let (s, b) = post(&app, &bt, &path, json!({"user_ids": [carol, erin]})).await;
    assert_eq!(s, 200, "{b}");
    let msgs = b["data"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["action_data"]["target_id"], erin.to_string());
    assert_eq!(msgs[0]["sender_role"], "admin");
    assert_eq!(msgs[0]["member_count"], 5);
    erin_ws.expect_event("message.new").await;
    erin_ws.expect_event("chat.new").await;

    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        chat,
    )
    .await;
    let (s, b) = post(&app, &at, &path, json!({"user_ids": [dave]})).await;
    assert_eq!((s, err(&b)), (404, Some("Group chat not found")));
}

#[tokio::test]
async fn leave_rules_and_recipients() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (_, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob, carol]).await;
    set_role(&app, chat, bob, "admin").await;
    let path = format!("/api/chats/group/{chat}/leave");

    let (s, b) = post(&app, &at, &path, json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (
            400,
            Some("Owner cannot leave the group. Please transfer ownership first.")
        )
    );
    let (s, b) = post(&app, &dt, &path, json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (400, Some("You are not a member of this group"))
    );

    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let (s, b) = post(&app, &bt, &path, json!({})).await;
    assert_eq!(s, 200, "{b}");
    let m = &b["data"];
    assert_eq!(m["type"], "system_leave");
    assert_eq!(m["sender_id"], bob.to_string());
    assert_eq!(m["sender_role"], "admin", "the leaver's real role");
    assert_eq!(m["member_count"], 2);
    assert!(m.get("action_data").is_none());
    let e = alice_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["id"], m["id"]);
    assert_eq!(e["meta"]["sender_id"], bob.to_string());
    expect_silence(&mut bob_ws, QUIET).await;
    assert!(listed(&app, &bt, chat).await.is_none());
    let (s, _) = get(&app, &bt, &format!("/api/chats/{chat}/messages")).await;
    assert_eq!(s, 403);
    let (s, _) = post(&app, &bt, &path, json!({})).await;
    assert_eq!(s, 400, "already gone");

    let (s, b) = post(&app, &ct, &path, json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["sender_role"], "member");
    assert_eq!(b["data"]["member_count"], 1);
    let (s, _) = post(&app, &at, &path, json!({})).await;
    assert_eq!(s, 400, "the owner stays even when alone");
}

#[tokio::test]
async fn kick_permission_matrix_and_recipients() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let (dave, dtk) = app.make_user("Dave").await;
    let (erin, _) = app.make_user("Erin").await;
    let (frank, ft) = app.make_user("Frank").await;
    let (gone, _) = app.make_user("Gone").await;
    let chat = make_group(&app, alice, &[bob, carol, dave, erin, gone]).await;
    set_role(&app, chat, bob, "admin").await;
    set_role(&app, chat, carol, "admin").await;
    let kick = |target: Uuid| format!("/api/chats/group/{chat}/members/{target}/kick");

    let (s, b) = post(&app, &dtk, &kick(erin), json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Only admins or owners can kick members"))
    );
    let (s, b) = post(&app, &bt, &kick(carol), json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Admins cannot kick other admins or the owner"))
    );
    let (s, b) = post(&app, &bt, &kick(alice), json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Admins cannot kick other admins or the owner"))
    );
    let (s, b) = post(&app, &bt, &kick(bob), json!({})).await;
    assert_eq!((s, err(&b)), (400, Some("Cannot kick yourself")));
    let (s, b) = post(&app, &bt, &kick(frank), json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (404, Some("Target user is not a member of this group"))
    );
    let (s, b) = post(&app, &ft, &kick(dave), json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("You are not a member of this group"))
    );
    let (s, b) = post(
        &app,
        &bt,
        &format!("/api/chats/group/{chat}/members/nope/kick"),
        json!({}),
    )
    .await;
    assert_eq!((s, err(&b)), (400, Some("Invalid User ID")));
    let (s, b) = post(
        &app,
        &bt,
        &format!("/api/chats/group/nope/members/{dave}/kick"),
        json!({}),
    )
    .await;
    assert_eq!((s, err(&b)), (400, Some("Invalid Chat ID")));

    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut dave_ws = connect(&app, dave, &dtk).await;
    let mut frank_ws = connect(&app, frank, &ft).await;
    let (s, b) = post(&app, &bt, &kick(dave), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let m = &b["data"];
    assert_eq!(m["type"], "system_kick");
    assert_eq!(m["sender_role"], "admin");
    assert_eq!(m["member_count"], 5, "alice, bob, carol, erin, gone");
    assert_eq!(m["action_data"]["target_id"], dave.to_string());
    assert_eq!(m["action_data"]["actor_id"], bob.to_string());
    assert_eq!(m["action_data"]["target_name"], "Dave");
    for ws in [&mut alice_ws, &mut bob_ws] {
        let e = ws.expect_event("message.new").await;
        assert_eq!(e["payload"]["id"], m["id"]);
        assert_eq!(e["meta"]["sender_id"], bob.to_string());
    }
    let e = next_event(&mut dave_ws).await;
    assert_eq!(
        e["type"], "chat.delete",
        "the kicked user gets only chat.delete: {e}"
    );
    assert_eq!(e["payload"]["chat_id"], chat.to_string());
    expect_silence(&mut dave_ws, QUIET).await;
    expect_silence(&mut frank_ws, QUIET).await;
    let (s, _) = get(&app, &dtk, &format!("/api/chats/{chat}/messages")).await;
    assert_eq!(s, 403);

    // The owner kicks an admin; a soft-deleted member can be cleaned up.
    soft_delete_user(&app, gone).await;
    let (s, b) = post(&app, &at, &kick(carol), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["sender_role"], "owner");
    let (s, b) = post(&app, &at, &kick(gone), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["member_count"], 3);
    let members: Vec<Uuid> = roles(&app, chat).await.into_iter().map(|r| r.0).collect();
    assert_eq!(members, vec![alice, bob, erin]);
}

#[tokio::test]
async fn role_changes_follow_the_owner_admin_member_matrix() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (gone, _) = app.make_user("Gone").await;
    let (banned, _) = app.make_user("Banned").await;
    let (frank, _) = app.make_user("Frank").await;
    let chat = make_group(&app, alice, &[bob, carol, gone, banned]).await;
    let role = |target: Uuid| format!("/api/chats/group/{chat}/members/{target}/role");
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;

    let (s, b) = put(&app, &at, &role(bob), json!({"role": "admin"})).await;
    assert_eq!(s, 200, "{b}");
    let m = &b["data"];
    assert_eq!(m["type"], "system_promote");
    assert_eq!(m["sender_role"], "owner");
    assert_eq!(m["action_data"]["new_role"], "admin");
    assert_eq!(m["action_data"]["target_name"], "Bob");
    assert_eq!(m["action_data"]["actor_id"], alice.to_string());
    for ws in [&mut alice_ws, &mut bob_ws] {
        let e = ws.expect_event("message.new").await;
        assert_eq!(e["payload"]["id"], m["id"]);
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
        ws.expect_no_event("chat.update", QUIET).await;
    }

    let cases: Vec<(&str, Uuid, Value, u16, &str)> = vec![
        (
            at.as_str(),
            bob,
            json!({"role": "admin"}),
            400,
            "Target user already has that role",
        ),
        (
            at.as_str(),
            bob,
            json!({"role": "owner"}),
            400,
            "Bad Request",
        ),
        (at.as_str(), bob, json!({}), 400, "Bad Request"),
        (at.as_str(), bob, json!({"role": 1}), 400, "Bad Request"),
        (
            bt.as_str(),
            carol,
            json!({"role": "admin"}),
            403,
            "Only owner can change member roles",
        ),
        (
            ct.as_str(),
            bob,
            json!({"role": "member"}),
            403,
            "Only owner can change member roles",
        ),
        (
            at.as_str(),
            alice,
            json!({"role": "member"}),
            400,
            "Cannot change your own role",
        ),
        (
            at.as_str(),
            frank,
            json!({"role": "admin"}),
            404,
            "Target user is not a member of this group",
        ),
    ];
    for (token, target, payload, status, message) in cases {
        let (s, b) = put(&app, token, &role(target), payload.clone()).await;
        assert_eq!((s, err(&b)), (status, Some(message)), "{target} {payload}");
    }
    soft_delete_user(&app, gone).await;
    let (s, b) = put(&app, &at, &role(gone), json!({"role": "admin"})).await;
    assert_eq!(
        (s, err(&b)),
        (400, Some("Cannot change role of a deleted user"))
    );
    set_role(&app, chat, banned, "admin").await;
    ban_user(&app, banned).await;
    // Demoting a banned admin works (the reference refuses it).
    let (s, b) = put(&app, &at, &role(banned), json!({"role": "member"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["type"], "system_demote");
    assert_eq!(b["data"]["action_data"]["new_role"], "member");
    let (s, b) = put(&app, &at, &role(banned), json!({"role": "admin"})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Cannot promote a suspended/banned user"))
    );

    // Admin powers follow the role immediately.
    let (s, _) = put(
        &app,
        &bt,
        &format!("/api/chats/group/{chat}"),
        json!({"name": "Bob Was Here"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = put(&app, &at, &role(bob), json!({"role": "member"})).await;
    assert_eq!(s, 200);
    let (s, _) = put(
        &app,
        &bt,
        &format!("/api/chats/group/{chat}"),
        json!({"name": "Not Any More"}),
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn ownership_transfer_rules() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (gone, _) = app.make_user("Gone").await;
    let (banned, _) = app.make_user("Banned").await;
    let (frank, _) = app.make_user("Frank").await;
    let chat = make_group(&app, alice, &[bob, carol, gone, banned]).await;
    soft_delete_user(&app, gone).await;
    ban_user(&app, banned).await;
    let path = format!("/api/chats/group/{chat}/transfer");

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            at.as_str(),
            json!({"new_owner_id": alice}),
            400,
            "Cannot transfer ownership to yourself",
        ),
        (at.as_str(), json!({}), 400, "Bad Request"),
        (
            at.as_str(),
            json!({"new_owner_id": "nope"}),
            400,
            "Bad Request",
        ),
        (
            bt.as_str(),
            json!({"new_owner_id": carol}),
            403,
            "Only owner can transfer ownership",
        ),
        (
            at.as_str(),
            json!({"new_owner_id": frank}),
            404,
            "Target user is not a member of this group",
        ),
        (
            at.as_str(),
            json!({"new_owner_id": gone}),
            400,
            "Cannot transfer ownership to a deleted user",
        ),
        (
            at.as_str(),
            json!({"new_owner_id": banned}),
            403,
            "Cannot transfer ownership to a suspended/banned user",
        ),
    ];
    for (token, payload, status, message) in cases {
        let (s, b) = post(&app, token, &path, payload.clone()).await;
        assert_eq!((s, err(&b)), (status, Some(message)), "{payload}");
    }
    let (_, outsider) = app.make_user("Outsider").await;
    let (s, b) = post(&app, &outsider, &path, json!({"new_owner_id": bob})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("You are not a member of this group"))
    );

    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let (s, b) = post(&app, &at, &path, json!({"new_owner_id": bob})).await;
    assert_eq!(s, 200, "{b}");
    let m = &b["data"];
    assert_eq!(m["type"], "system_promote");
    assert_eq!(m["action_data"]["new_role"], "owner");
    assert_eq!(m["action_data"]["action"], "ownership_transferred");
    assert_eq!(m["action_data"]["target_name"], "Bob");
    assert_eq!(
        m["sender_role"], "admin",
        "the actor's role after the transfer"
    );
    for ws in [&mut bob_ws, &mut carol_ws] {
        let e = ws.expect_event("message.new").await;
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
        assert_eq!(
            e["payload"]["action_data"]["action"],
            "ownership_transferred"
        );
    }
    let r = roles(&app, chat).await;
    assert!(r.contains(&(alice, "admin".to_string())));
    assert!(r.contains(&(bob, "owner".to_string())));
    assert_eq!(r.iter().filter(|(_, role)| role == "owner").count(), 1);
    let (s, b) = post(&app, &at, &path, json!({"new_owner_id": carol})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Only owner can transfer ownership"))
    );
    let (s, b) = post(&app, &bt, &path, json!({"new_owner_id": alice})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(&app, &at, &path, json!({"new_owner_id": alice})).await;
    assert_eq!(
        (s, err(&b)),
        (400, Some("Cannot transfer ownership to yourself"))
    );
    // Back with Alice: Bob (admin again) may not delete, but may leave.
    let (s, _) = delete(&app, &bt, &format!("/api/chats/group/{chat}")).await;
    assert_eq!(s, 403);
    let (s, _) = post(
        &app,
        &bt,
        &format!("/api/chats/group/{chat}/leave"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
}

/// A member who deletes their account (through the API) stays a member row
/// but cannot be targeted: role change and transfer answer 400, not 404
/// (spec §2.10, §8.8, §8.9); they are out of the list and the count, and
/// the owner can still kick them.
#[tokio::test]
async fn a_member_who_deleted_their_account_cannot_be_given_a_role_or_the_group() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (gone, gt) = app.make_user("Gone").await;
    let (never, nt) = app.make_user("Never").await;
    let chat = make_group(&app, alice, &[bob, gone]).await;
    for token in [&gt, &nt] {
        let res = app
            .http
            .delete(app.url("/api/account"))
            .bearer_auth(token)
            .json(&json!({"password": crate::harness::PASSWORD}))
            .send()
            .await
            .expect("delete account");
        assert_eq!(res.status(), 200);
    }
    let role = |target: Uuid| format!("/api/chats/group/{chat}/members/{target}/role");
    let transfer = format!("/api/chats/group/{chat}/transfer");
    let mut alice_ws = connect(&app, alice, &at).await;

    for new_role in ["admin", "member"] {
        let (s, b) = put(&app, &at, &role(gone), json!({"role": new_role})).await;
        assert_eq!(
            (s, err(&b)),
            (400, Some("Cannot change role of a deleted user")),
            "{new_role}"
        );
    }
    let (s, b) = post(&app, &at, &transfer, json!({"new_owner_id": gone})).await;
    assert_eq!(
        (s, err(&b)),
        (400, Some("Cannot transfer ownership to a deleted user"))
    );
    // Someone who was never a member is still "not a member".
    let (s, b) = put(&app, &at, &role(never), json!({"role": "admin"})).await;
    assert_eq!(
        (s, err(&b)),
        (404, Some("Target user is not a member of this group"))
    );
    let (s, b) = post(&app, &at, &transfer, json!({"new_owner_id": never})).await;
    assert_eq!(
        (s, err(&b)),
        (404, Some("Target user is not a member of this group"))
    );
    expect_silence(&mut alice_ws, QUIET).await;
    assert!(roles(&app, chat)
        .await
        .iter()
        .all(|(u, r)| (*u == alice) == (r == "owner")));

    // Invisible in the list and the count; the owner can clean up.
    let (s, b) = get(&app, &at, &format!("/api/chats/group/{chat}/members")).await;
    assert_eq!(s, 200, "{b}");
    let listed: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![alice.to_string(), bob.to_string()]);
    let (_, b) = get(&app, &at, &format!("/api/chats/{chat}")).await;
    assert_eq!(b["data"]["member_count"], 2);
    let (s, b) = post(
        &app,
        &at,
        &format!("/api/chats/group/{chat}/members/{gone}/kick"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["member_count"], 2);
    // The name is gone with the account (spec §8.7: only when not NULL).
    assert!(b["data"]["action_data"].get("target_name").is_none(), "{b}");
    let e = alice_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["type"], "system_kick");
}

// ---------------------------------------------------------------------------------------------
// Public directory
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn public_directory_searches_sorts_and_pages() {
    let app = TestApp::spawn().await;
    let (_, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let (dave, _) = app.make_user("Dave").await;
    let g1 = create_group(&app, &at, "Public Group 1", &[bob, carol], true).await;
    let g2 = create_group(&app, &bt, "Public Group 2", &[carol], true).await;
    let (s, b) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "Zebra Club", "description": "Public Group 3 lives here",
               "member_ids": [dave], "is_public": true}),
    )
    .await;
    assert_eq!(s, 200);
    let g3 = b["data"].clone();
    // Kick Dave so Zebra Club has one member.
    let (s, _) = post(
        &app,
        &at,
        &format!("/api/chats/group/{}/members/{dave}/kick", chat_id(&g3)),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    create_group(&app, &at, "Public Group 4 private", &[bob], false).await;
    let dead = create_group(&app, &at, "Public Group 5 dead", &[bob], true).await;
    let (s, _) = delete(&app, &at, &format!("/api/chats/group/{}", chat_id(&dead))).await;
    assert_eq!(s, 200);
    let (_, dt) = app.make_user("Dora").await;

    let names = |b: &Value| -> Vec<String> {
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, b) = get(&app, &bt, "/api/chats/group/public").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        names(&b),
        ["Public Group 1", "Public Group 2", "Zebra Club"]
    );
    let first = &b["data"][0];
    assert_eq!(first["chat_id"], g1["id"]);
    assert_eq!(
        first["id"],
        group_row_id(&app, chat_id(&g1)).await.to_string()
    );
    assert_eq!(first["member_count"], 3);
    assert_eq!(first["is_member"], true);
    assert_eq!(first["avatar"], "");
    assert!(
        first.get("description").is_none(),
        "empty description omitted"
    );
    assert_eq!(b["data"][2]["is_member"], false);
    assert_eq!(b["data"][2]["description"], "Public Group 3 lives here");
    assert_eq!(b["meta"]["has_next"], false);
    let (_, b) = get(&app, &dt, "/api/chats/group/public").await;
    assert!(b["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["is_member"] == false));

    let (_, b) = get(
        &app,
        &bt,
        "/api/chats/group/public?query=Public%20Group%201",
    )
    .await;
    assert_eq!(names(&b), ["Public Group 1"]);
    let (_, b) = get(
        &app,
        &bt,
        "/api/chats/group/public?query=public%20group%203",
    )
    .await;
    assert_eq!(names(&b), ["Zebra Club"], "description prefix matches");
    let (_, b) = get(&app, &bt, "/api/chats/group/public?query=Group").await;
    assert!(names(&b).is_empty(), "prefix only");
    let (_, b) = get(&app, &bt, "/api/chats/group/public?query=%25").await;
    assert!(names(&b).is_empty(), "wildcards are literal");

    let (_, b) = get(&app, &bt, "/api/chats/group/public?sort_by=member_count").await;
    let counts: Vec<i64> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["member_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [3, 2, 1]);
    assert_eq!(b["data"][1]["chat_id"], g2["id"]);

    for sort in ["name", "member_count"] {
        let (_, b) = get(
            &app,
            &bt,
            &format!("/api/chats/group/public?limit=2&sort_by={sort}"),
        )
        .await;
        assert_eq!(b["data"].as_array().unwrap().len(), 2);
        assert_eq!(b["meta"]["has_next"], true);
        let cursor = b["meta"]["next_cursor"].as_str().unwrap().to_string();
        let (s, b) = get(
            &app,
            &bt,
            &format!("/api/chats/group/public?limit=2&sort_by={sort}&cursor={cursor}"),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(names(&b), ["Zebra Club"], "{sort}");
        assert_eq!(b["meta"]["has_next"], false);
    }

    for query in [
        "sort_by=invalid",
        "cursor=%25%25%25",
        "cursor=bm9kZWxpbWl0ZXI=",
        "limit=51",
        "limit=0.5",
    ] {
        let (s, b) = get(&app, &bt, &format!("/api/chats/group/public?{query}")).await;
        assert_eq!(s, 400, "{query}: {b}");
    }
    // A name cursor is not a member-count cursor.
    let (_, b) = get(&app, &bt, "/api/chats/group/public?limit=1").await;
    let cursor = b["meta"]["next_cursor"].as_str().unwrap().to_string();
    let (s, _) = get(
        &app,
        &bt,
        &format!("/api/chats/group/public?sort_by=member_count&cursor={cursor}"),
    )
    .await;
    assert_eq!(s, 400);
    let long = "q".repeat(101);
    let (s, _) = get(&app, &bt, &format!("/api/chats/group/public?query={long}")).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn public_directory_pages_names_containing_the_cursor_delimiter() {
    let app = TestApp::spawn().await;
    let (_, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    for name in ["a|||b", "a|||c", "a|||d", "a||| d"] {
        create_group(&app, &at, name, &[bob], true).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/chats/group/public?limit=1&cursor={c}"),
            None => "/api/chats/group/public?limit=1".to_string(),
        };
        let (s, b) = get(&app, &at, &path).await;
        assert_eq!(s, 200, "{b}");
        for g in b["data"].as_array().unwrap() {
            seen.push(g["name"].as_str().unwrap().to_string());
        }
        match b["meta"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() <= 4, "no loops: {seen:?}");
    }
    let mut expected: Vec<String> = ["a|||b", "a|||c", "a|||d", "a||| d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    // The database's collation decides the order; each group comes once.
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "every group exactly once: {seen:?}");
}

// ---------------------------------------------------------------------------------------------
// Invites and joining
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn public_join_answers_and_announces_in_order() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let g = create_group(&app, &at, "Open Door", &[bob], true).await;
    let chat = chat_id(&g);
    let path = format!("/api/chats/group/{chat}/join");
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut carol_ws = connect(&app, carol, &ct).await;

    let (s, b) = post(&app, &ct, &path, json!({})).await;
    assert_eq!(s, 200, "{b}");
    let d = &b["data"];
    assert_eq!(d["id"], chat.to_string());
    assert_eq!(d["type"], "group");
    assert_eq!(d["my_role"], "member");
    assert_eq!(d["is_public"], true);
    assert_eq!(d["invite_code"], g["invite_code"]);
    assert_eq!(d["member_count"], 3);
    assert_eq!(d["unread_count"], 0);
    assert_eq!(d["description"], "");
    assert_eq!(d["last_message"]["type"], "system_join");
    assert_eq!(d["last_message"]["sender_role"], "member");
    assert_eq!(d["last_message"]["member_count"], 3);
    assert!(d["last_message"].get("action_data").is_none());

    let e = next_event(&mut carol_ws).await;
    assert_eq!(e["type"], "chat.new", "chat.new comes first: {e}");
    assert_eq!(e["meta"]["sender_id"], carol.to_string());
    assert_eq!(e["payload"]["last_message"]["type"], "system_join");
    let e = next_event(&mut carol_ws).await;
    assert_eq!(e["type"], "message.new", "{e}");
    assert_eq!(e["meta"]["sender_id"], carol.to_string());
    assert_eq!(e["payload"]["member_count"], 3);
    let e = alice_ws.expect_event("message.new").await;
    assert_eq!(e["payload"]["type"], "system_join");
    alice_ws.expect_no_event("chat.new", QUIET).await;

    let (s, b) = post(&app, &ct, &path, json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (409, Some("You are already a member of this group"))
    );
    let private = make_group(&app, alice, &[bob]).await;
    let (s, b) = post(
        &app,
        &ct,
        &format!("/api/chats/group/{private}/join"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, err(&b)),
        (
            403,
            Some("This group is private. You must be added by an admin.")
        )
    );
    let (s, b) = post(
        &app,
        &ct,
        &format!("/api/chats/group/{}/join", Uuid::now_v7()),
        json!({}),
    )
    .await;
    assert_eq!((s, err(&b)), (404, Some("Group chat not found")));

    // Someone in a block relation with the owner cannot walk in.
    let (dave, dt) = app.make_user("Dave").await;
    block(&app, alice, dave).await;
    let (s, b) = post(&app, &dt, &path, json!({})).await;
    assert_eq!((s, err(&b)), (403, Some("You cannot join this group")));
    let (erin, et) = app.make_user("Erin").await;
    block(&app, erin, alice).await;
    let (s, _) = post(&app, &et, &path, json!({})).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn invite_preview_join_and_expiry() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (_, dt) = app.make_user("Dave").await;
    let avatar = media(&app, alice, "group_avatar", "completed").await;
    let (s, b) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "Secret Club", "description": "shh", "member_ids": [bob],
               "avatar_media_id": avatar}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let chat = chat_id(&b["data"]);
    let code = b["data"]["invite_code"].as_str().unwrap().to_string();

    let (s, b) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{code}")).await;
    assert_eq!(s, 200, "{b}");
    let p = &b["data"];
    assert_eq!(p["id"], chat.to_string(), "the CHAT id");
    assert_eq!(p["name"], "Secret Club");
    assert_eq!(p["description"], "shh");
    assert!(p["avatar"]
        .as_str()
        .unwrap()
        .contains(&avatar.simple().to_string()));
    assert_eq!(p["member_count"], 2);
    assert_eq!(p["is_public"], false);
    for bad in [
        "nope".to_string(),
        code.to_lowercase(),
        "x".repeat(300),
        "%00".to_string(),
    ] {
        let (s, b) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{bad}")).await;
        assert_eq!((s, err(&b)), (404, Some("Invalid invite code")), "{bad}");
    }

    let mut alice_ws = connect(&app, alice, &at).await;
    let (s, b) = post(
        &app,
        &ct,
        "/api/chats/group/join/invite",
        json!({"invite_code": code}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let d = &b["data"];
    assert_eq!(d["id"], chat.to_string());
    assert_eq!(d["my_role"], "member");
    assert_eq!(d["is_public"], false);
    assert!(
        d.get("invite_code").is_none(),
        "private code not shown to members"
    );
    assert_eq!(d["member_count"], 3);
    assert_eq!(d["last_message"]["type"], "system_join");
    let e = alice_ws.expect_event("message.new").await;
    assert_eq!(e["meta"]["sender_id"], carol.to_string());

    let (s, b) = post(
        &app,
        &ct,
        "/api/chats/group/join/invite",
        json!({"invite_code": code}),
    )
    .await;
    assert_eq!(
        (s, err(&b)),
        (409, Some("You are already a member of this group"))
    );
    for payload in [
        json!({}),
        json!({"invite_code": ""}),
        json!({"invite_code": "zzz"}),
    ] {
        let (s, b) = post(&app, &dt, "/api/chats/group/join/invite", payload.clone()).await;
        assert_eq!(
            (s, err(&b)),
            (404, Some("Invalid invite code")),
            "{payload}"
        );
    }
    let (s, _) = post_raw(&app, &dt, "/api/chats/group/join/invite", "{").await;
    assert_eq!(s, 400);
    let (s, _) = post(
        &app,
        &dt,
        "/api/chats/group/join/invite",
        json!({"invite_code": 5}),
    )
    .await;
    assert_eq!(s, 400);

    exec(
        &app,
        "UPDATE group_chats SET invite_expires_at = now() - interval '1 minute' WHERE chat_id = $1",
        chat,
    )
    .await;
    let (s, b) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{code}")).await;
    assert_eq!((s, err(&b)), (400, Some("Invite code has expired")));
    let (s, b) = post(
        &app,
        &dt,
        "/api/chats/group/join/invite",
        json!({"invite_code": code}),
    )
    .await;
    assert_eq!((s, err(&b)), (400, Some("Invite code has expired")));

    // Deleted groups have no valid codes.
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        chat,
    )
    .await;
    exec(
        &app,
        "UPDATE group_chats SET invite_expires_at = NULL WHERE chat_id = $1",
        chat,
    )
    .await;
    let (s, _) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{code}")).await;
    assert_eq!(s, 404);
    let (s, _) = post(
        &app,
        &dt,
        "/api/chats/group/join/invite",
        json!({"invite_code": code}),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn invite_reset_kills_the_old_code_and_tells_who_may_see_it() {
    let app = TestApp::spawn().await;
    let (_, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (_, dt) = app.make_user("Dave").await;
    let g = create_group(&app, &at, "Private Club", &[bob, carol], false).await;
    let chat = chat_id(&g);
    set_role(&app, chat, bob, "admin").await;
    let old = g["invite_code"].as_str().unwrap().to_string();
    let path = format!("/api/chats/group/{chat}/invite");
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;

    let (s, b) = put(&app, &ct, &path, json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("Only admins can reset invite code"))
    );
    let (s, b) = put(&app, &dt, &path, json!({})).await;
    assert_eq!(
        (s, err(&b)),
        (403, Some("You are not a member of this group"))
    );
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{}/invite", Uuid::now_v7()),
        json!({}),
    )
    .await;
    assert_eq!((s, err(&b)), (404, Some("Group not found")));

    let res = app
        .http
        .put(app.url(&path))
        .bearer_auth(&bt)
        .send()
        .await
        .unwrap();
    let (s, b) = body(res).await;
    assert_eq!(s, 200, "no body needed: {b}");
    let new = b["data"]["invite_code"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(b["data"]["expires_at"].is_string());
    let e = bob_ws.expect_event("chat.update").await;
    assert_eq!(e["payload"]["invite_code"], new.as_str());
    assert!(e["payload"]["invite_expires_at"].is_string());
    expect_silence(&mut carol_ws, Duration::from_secs(1)).await;
    let (s, _) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{old}")).await;
    assert_eq!(s, 404, "the old code stops working at once");
    let (s, _) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{new}")).await;
    assert_eq!(s, 200);
    assert_eq!(invite_code(&app, chat).await, new);

    // Public group: no expiry, every member is told.
    let p = create_group(&app, &at, "Public Club", &[carol], true).await;
    carol_ws.expect_event("chat.new").await;
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{}/invite", chat_id(&p)),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    assert!(b["data"].get("expires_at").is_none());
    let e = carol_ws.expect_event("chat.update").await;
    assert_eq!(e["payload"]["invite_code"], b["data"]["invite_code"]);
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_joins_all_land_once_and_in_order() {
    let app = TestApp::spawn().await;
    let (_, at) = app.make_user("Owner").await;
    let (bob, _) = app.make_user("Bob").await;
    let g = create_group(&app, &at, "Busy Place", &[bob], true).await;
    let chat = chat_id(&g);
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(app.make_user(&format!("Joiner{i}")).await.1);
    }
    let path = format!("/api/chats/group/{chat}/join");
    let results = join_all(tokens.iter().map(|t| post(&app, t, &path, json!({})))).await;
    let mut counts: Vec<i64> = results
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 200, "{b}");
            b["data"]["last_message"]["member_count"].as_i64().unwrap()
        })
        .collect();
    counts.sort();
    assert_eq!(counts, (3..=14).collect::<Vec<i64>>(), "serialised joins");
    assert_eq!(system_message_count(&app, chat, "system_join").await, 12);
    let (_, b) = get(&app, &at, &format!("/api/chats/{chat}")).await;
    assert_eq!(b["data"]["member_count"], 14);

    // The same user twice at once: one joins, the other is told so.
    let (_, zt) = app.make_user("Zed").await;
    let results = join_all((0..3).map(|_| post(&app, &zt, &path, json!({})))).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        2,
        "{results:?}"
    );
}

#[tokio::test]
async fn concurrent_adds_of_the_same_user_add_once() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let chat = make_group(&app, alice, &[bob]).await;
    set_role(&app, chat, bob, "admin").await;
    let path = format!("/api/chats/group/{chat}/members");
    let payload = json!({"user_ids": [carol]});
    let results = join_all(
        [&at, &bt, &at, &bt]
            .into_iter()
            .map(|t| post(&app, t, &path, payload.clone())),
    )
    .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|(s, b)| *s == 200 || (*s == 409 && err(b) == Some("All users are already members"))));
    assert_eq!(system_message_count(&app, chat, "system_add").await, 1);
    assert_eq!(roles(&app, chat).await.len(), 3);
}

#[tokio::test]
async fn admins_kicking_each_other_and_racing_the_owner_stay_consistent() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, _) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob, carol, dave]).await;
    set_role(&app, chat, bob, "admin").await;
    set_role(&app, chat, carol, "admin").await;
    let kick = |target: Uuid| format!("/api/chats/group/{chat}/members/{target}/kick");

    // Two admins kicking each other: admins cannot kick admins, both refused.
    let (kick_carol, kick_bob, kick_dave) = (kick(carol), kick(bob), kick(dave));
    let (a, b) = tokio::join!(
        post(&app, &bt, &kick_carol, json!({})),
        post(&app, &ct, &kick_bob, json!({}))
    );
    assert_eq!(a.0, 403, "{a:?}");
    assert_eq!(b.0, 403, "{b:?}");
    assert_eq!(roles(&app, chat).await.len(), 4);

    // The owner demotes Carol while Bob tries to kick her: either the kick
    // ran first (refused, Carol stays, now a member) or after (Carol gone).
    let role_path = format!("/api/chats/group/{chat}/members/{carol}/role");
    let (demote, kicked) = tokio::join!(
        put(&app, &at, &role_path, json!({"role": "member"})),
        post(&app, &bt, &kick_carol, json!({}))
    );
    assert_eq!(demote.0, 200, "{demote:?}");
    let carol_in = roles(&app, chat).await.iter().any(|(u, _)| *u == carol);
    match kicked.0 {
        200 => assert!(!carol_in),
        403 => assert!(carol_in),
        other => panic!("unexpected {other}: {kicked:?}"),
    }

    // The owner kicks Bob while Bob kicks Dave: Bob's kick either happened
    // before he was removed, or he was no longer a member.
    let (owner_kick, bob_kick) = tokio::join!(
        post(&app, &at, &kick_bob, json!({})),
        post(&app, &bt, &kick_dave, json!({}))
    );
    assert_eq!(owner_kick.0, 200, "{owner_kick:?}");
    let dave_in = roles(&app, chat).await.iter().any(|(u, _)| *u == dave);
    match bob_kick.0 {
        200 => assert!(!dave_in),
        403 => {
            assert!(dave_in);
            assert_eq!(err(&bob_kick.1), Some("You are not a member of this group"));
        }
        other => panic!("unexpected {other}: {bob_kick:?}"),
    }
    assert!(!roles(&app, chat).await.iter().any(|(u, _)| *u == bob));
    // Member counts in the stored system messages tell one serial story.
    let counted: Vec<i64> =
        sqlx::query_scalar("SELECT g.member_count FROM group_chats g WHERE g.chat_id = $1")
            .bind(chat)
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert_eq!(counted[0], roles(&app, chat).await.len() as i64);
}

#[tokio::test]
async fn concurrent_transfers_and_a_leave_racing_a_transfer_leave_one_owner() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let chat = make_group(&app, alice, &[bob, carol]).await;
    let path = format!("/api/chats/group/{chat}/transfer");

    let (a, b) = tokio::join!(
        post(&app, &at, &path, json!({"new_owner_id": bob})),
        post(&app, &at, &path, json!({"new_owner_id": carol}))
    );
    let statuses = [a.0, b.0];
    assert!(
        statuses.contains(&200) && statuses.contains(&403),
        "{a:?} {b:?}"
    );
    let owners: Vec<Uuid> = roles(&app, chat)
        .await
        .into_iter()
        .filter(|(_, r)| r == "owner")
        .map(|(u, _)| u)
        .collect();
    assert_eq!(owners.len(), 1);
    assert_eq!(system_message_count(&app, chat, "system_promote").await, 1);

    // Whoever owns it now hands it to Alice while Alice leaves.
    let owner_token = if owners[0] == bob {
        bt.clone()
    } else {
        ct.clone()
    };
    let leave_path = format!("/api/chats/group/{chat}/leave");
    let (transfer, leave) = tokio::join!(
        post(&app, &owner_token, &path, json!({"new_owner_id": alice})),
        post(&app, &at, &leave_path, json!({}))
    );
    let r = roles(&app, chat).await;
    assert_eq!(
        r.iter().filter(|(_, role)| role == "owner").count(),
        1,
        "{r:?}"
    );
    match (transfer.0, leave.0) {
        // Transfer first: Alice owns the group and may not leave.
        (200, 400) => assert!(r.contains(&(alice, "owner".into()))),
        // Leave first: the transfer finds no such member.
        (404, 200) => assert!(!r.iter().any(|(u, _)| *u == alice)),
        other => panic!("inconsistent outcome {other:?}: {transfer:?} {leave:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-cutting
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn member_counts_follow_account_deletion_everywhere() {
    let app = TestApp::spawn().await;
    let (_, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let g = create_group(&app, &at, "Counting Club", &[bob, carol], true).await;
    let chat = chat_id(&g);
    soft_delete_user(&app, carol).await;
    let code = invite_code(&app, chat).await;
    let (_, b) = get(&app, &at, &format!("/api/chats/{chat}")).await;
    assert_eq!(b["data"]["member_count"], 2);
    let (_, b) = get(&app, &at, "/api/chats/group/public").await;
    assert_eq!(b["data"][0]["member_count"], 2);
    let (_, b) = unauthenticated_get(&app, &format!("/api/chats/group/invite/{code}")).await;
    assert_eq!(b["data"]["member_count"], 2);
    // A hard delete of the soft-deleted user changes nothing more; of a live
    // one, it drops the count.
    exec(&app, "DELETE FROM users WHERE id = $1", carol).await;
    exec(&app, "DELETE FROM users WHERE id = $1", bob).await;
    let (_, b) = get(&app, &at, "/api/chats/group/public").await;
    assert_eq!(b["data"][0]["member_count"], 1);
    let (_, b) = get(&app, &at, &format!("/api/chats/{chat}")).await;
    assert_eq!(b["data"]["member_count"], 1);
}

#[tokio::test]
async fn create_and_update_share_the_user_management_bucket() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = make_group(&app, alice, &[bob]).await;
    for _ in 0..30 {
        let (s, _) = put(&app, &at, &format!("/api/chats/group/{chat}"), json!({})).await;
        assert_eq!(s, 200);
    }
    let (s, _) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "One Too Many", "member_ids": [bob]}),
    )
    .await;
    assert_eq!(s, 429);
    let (s, _) = get(&app, &at, &format!("/api/chats/group/{chat}/members")).await;
    assert_eq!(s, 200, "other group routes count elsewhere");
}

#[tokio::test]
async fn malformed_input_never_yields_a_server_error() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let chat = make_group(&app, alice, &[bob]).await;
    let bodies = [
        "",
        "{",
        "null",
        "[]",
        "[1,2]",
        "\"str\"",
        "123",
        "{\"name\":null,\"member_ids\":null}",
        "{\"name\":[],\"member_ids\":{}}",
        "{\"user_ids\":[null]}",
        "{\"user_ids\":[1,2]}",
        "{\"role\":null}",
        "{\"role\":\"ADMIN\"}",
        "{\"new_owner_id\":\"00000000-0000-0000-0000-000000000000\"}",
        "{\"new_owner_id\":123}",
        "{\"invite_code\":\"\\u0000\"}",
        "{\"name\":\"\\u0000\\u0000\\u0000\"}",
        "{\"description\":\"\\u0000\"}",
        "{\"avatar_media_id\":\"\\u0000\"}",
        "{\"is_public\":\"maybe\",\"delete_avatar\":1}",
    ];
    let targets = [
        ("POST", "/api/chats/group".to_string()),
        ("PUT", format!("/api/chats/group/{chat}")),
        ("POST", format!("/api/chats/group/{chat}/members")),
        ("PUT", format!("/api/chats/group/{chat}/members/{bob}/role")),
        ("POST", format!("/api/chats/group/{chat}/transfer")),
        ("POST", "/api/chats/group/join/invite".to_string()),
        (
            "POST",
            format!("/api/chats/group/{chat}/members/{bob}/kick"),
        ),
        ("PUT", format!("/api/chats/group/{chat}/invite")),
    ];
    for (method, path) in &targets {
        for raw in bodies {
            let req = match *method {
                "POST" => app.http.post(app.url(path)),
                _ => app.http.put(app.url(path)),
            };
            let res = req
                .bearer_auth(&at)
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .unwrap();
            assert!(
                res.status().as_u16() < 500,
                "{method} {path} {raw:?} -> {}",
                res.status()
            );
        }
    }
    let paths = [
        "/api/chats/group/%ZZ/members".to_string(),
        "/api/chats/group/%00/members".to_string(),
        format!("/api/chats/group/{chat}/members/%ZZ/kick"),
        format!("/api/chats/group/{chat}/members?cursor=%00&query=%00"),
        format!("/api/chats/group/{chat}/members?query=%F0%9F%98%80"),
        "/api/chats/group/public?query=%00".to_string(),
        "/api/chats/group/public?cursor=fHx8".to_string(),
        "/api/chats/group/public?sort_by=member_count&cursor=YWJjfHx8MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw".to_string(),
        "/api/chats/group/public?query=%F0%9F%98%80%25_".to_string(),
        "/api/chats/group/invite/%ZZ".to_string(),
        "/api/chats/group/invite/%00".to_string(),
        "/api/chats/group/invite/%F0%9F%98%80".to_string(),
    ];
    for path in &paths {
        let res = app
            .http
            .get(app.url(path))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert!(status < 500, "GET {path} -> {status} {text}");
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "JSON body for {path}: {text}"
        );
    }
}

#[tokio::test]
async fn system_messages_and_concurrent_sends_arrive_in_history_order() {
    let app = TestApp::spawn().await;
    let (_, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let mut joiners = Vec::new();
    for i in 0..3 {
        joiners.push(app.make_user(&format!("Joiner{i}")).await);
    }
    let g = create_group(&app, &at, "Ordered", &[bob, carol], true).await;
    let chat = chat_id(&g);
    let mut carol_ws = connect(&app, carol, &ct).await;

    let sends = (0..10).map(|i| {
        let bt = bt.clone();
        let app = &app;
        async move {
            let (s, b) = post(
                app,
                &bt,
                "/api/messages",
                json!({"chat_id": chat, "content": format!("m{i}")}),
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
    });
    let renames = (0..3).map(|i| {
        let at = at.clone();
        let app = &app;
        async move {
            let (s, b) = put(
                app,
                &at,
                &format!("/api/chats/group/{chat}"),
                json!({"name": format!("Ordered {i}")}),
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
    });
    let joins = joiners.iter().map(|(_, t)| {
        let app = &app;
        async move {
            let (s, b) = post(app, t, &format!("/api/chats/group/{chat}/join"), json!({})).await;
            assert_eq!(s, 200, "{b}");
        }
    });
    tokio::join!(join_all(sends), join_all(renames), join_all(joins));

    let mut live = Vec::new();
    while live.len() < 16 {
        let e = next_event(&mut carol_ws).await;
        if e["type"] == "message.new" {
            live.push(e["payload"]["id"].as_str().unwrap().to_string());
        }
    }
    let history: Vec<String> = messages_of(&app, &ct, chat)
        .await
        .iter()
        .skip(1) // system_create
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(live, history, "live order = history order");
}

#[tokio::test]
async fn admin_console_entry_points_reset_dissolve_and_list() {
    use atoitalk::groups::service::{self, Actor, UpdateInput};

    let app = TestApp::spawn().await;
    let (admin, _) = app.make_user("Platform Admin").await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let avatar = media(&app, alice, "group_avatar", "completed").await;
    let (s, b) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "Bad Name", "description": "bad words", "member_ids": [bob],
               "avatar_media_id": avatar}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let chat = chat_id(&b["data"]);
    let mut bob_ws = connect(&app, bob, &bt).await;

    let reset = UpdateInput::admin_reset(chat, true, true, true);
    let out = service::update(&app.state, Actor::PlatformAdmin(admin), chat, reset)
        .await
        .expect("admin reset");
    assert!(
        out.is_none(),
        "the admin is not a member of this private group"
    );
    let expected = format!("Group {}", &chat.to_string()[..8]);
    for kind in ["system_rename", "system_description", "system_avatar"] {
        let e = bob_ws.expect_event("message.new").await;
        assert_eq!(e["payload"]["type"], kind);
        assert_eq!(e["meta"]["sender_id"], admin.to_string());
        assert!(e["payload"].get("sender_role").is_none());
    }
    let e = bob_ws.expect_event("chat.update").await;
    assert_eq!(e["payload"]["id"], chat.to_string());
    assert_eq!(e["payload"]["name"], expected.as_str());
    assert_eq!(e["payload"]["description"], "");
    assert_eq!(e["payload"]["avatar"], "");

    let page = service::list_members(&app.state, None, chat, &Default::default())
        .await
        .expect("admin member list");
    assert_eq!(page.data.len(), 2);
    let err = service::list_members(&app.state, Some(admin), chat, &Default::default())
        .await
        .err()
        .expect("a non-member user is refused");
    assert_eq!(err.status(), 403);

    service::delete(&app.state, Actor::PlatformAdmin(admin), chat)
        .await
        .expect("dissolve");
    let e = bob_ws.expect_event("chat.delete").await;
    assert_eq!(e["meta"]["sender_id"], admin.to_string());
    let (s, _) = get(&app, &at, &format!("/api/chats/{chat}")).await;
    assert_eq!(s, 404);
    let err = service::delete(&app.state, Actor::PlatformAdmin(admin), chat)
        .await
        .expect_err("already dissolved");
    assert_eq!(err.status(), 404);
}
