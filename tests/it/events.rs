//! Integration tests: rows of the event table (realtime spec §7, chats spec
//! §4, accounts spec §18) that the feature modules leave open, each
//! asserting who receives the event AND who does not.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

const QUIET: Duration = Duration::from_millis(400);

/// Group update: the system messages are heavy (block filter relative to
/// the requester), the `chat.update`s go to every member row (no filter).
#[tokio::test]
async fn group_update_messages_skip_blocks_but_chat_update_reaches_every_member() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob, carol]).await;
    block(&app, carol, alice).await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}"),
        json!({"name": "Renamed Club"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    for ws in [&mut alice_ws, &mut bob_ws] {
        let e = next_event(ws).await;
        assert_eq!(e["type"], "message.new", "{e}");
        assert_eq!(e["payload"]["type"], "system_rename");
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
        let e = next_event(ws).await;
        assert_eq!(e["type"], "chat.update", "{e}");
        assert_eq!(e["payload"]["name"], "Renamed Club");
    }
    // Carol blocked the requester: the update, not its system message.
    let e = next_event(&mut carol_ws).await;
    assert_eq!(e["type"], "chat.update", "no message.new first: {e}");
    assert_eq!(e["payload"]["my_role"], "member");
    assert_eq!(e["payload"]["last_message"]["type"], "system_rename");
    expect_silence(&mut carol_ws, QUIET).await;
    expect_silence(&mut dave_ws, Duration::from_millis(50)).await;
}

/// Invite join: `chat.new` to the joiner, then `message.new` (heavy, joiner
/// included); members get only the `message.new`, outsiders nothing.
#[tokio::test]
async fn invite_join_announces_to_the_joiner_then_the_chat() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let (s, b) = post(
        &app,
        &at,
        "/api/chats/group",
        json!({"name": "Invite Only", "description": "shh", "member_ids": [bob]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let chat = b["data"]["id"].as_str().unwrap().to_string();
    let code = b["data"]["invite_code"].as_str().unwrap().to_string();
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    let (s, b) = post(
        &app,
        &ct,
        "/api/chats/group/join/invite",
        json!({"invite_code": code}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let e = next_event(&mut carol_ws).await;
    assert_eq!(e["type"], "chat.new", "chat.new comes first: {e}");
    let p = &e["payload"];
    assert_eq!(p["id"], chat.as_str());
    assert_eq!(p["my_role"], "member");
    assert_eq!(p["is_public"], false);
    assert!(p.get("invite_code").is_none(), "private code leaked: {p}");
    assert!(p.get("invite_expires_at").is_none());
    assert_eq!(p["unread_count"], 0);
    assert_eq!(p["member_count"], 3);
    assert_eq!(p["last_message"]["type"], "system_join");
    assert_eq!(e["meta"]["sender_id"], carol.to_string());
    assert_eq!(e["meta"]["chat_id"], chat.as_str());
    let joined = next_event(&mut carol_ws).await;
    assert_eq!(joined["type"], "message.new", "{joined}");
    assert_eq!(joined["payload"]["type"], "system_join");
    assert_eq!(joined["payload"]["member_count"], 3);
    for ws in [&mut alice_ws, &mut bob_ws] {
        let e = next_event(ws).await;
        assert_eq!(e["type"], "message.new", "members get no chat.new: {e}");
        assert_eq!(e["payload"]["id"], joined["payload"]["id"]);
        assert_eq!(e["meta"]["sender_id"], carol.to_string());
        expect_silence(ws, Duration::from_millis(100)).await;
    }
    expect_silence(&mut dave_ws, QUIET).await;
}

/// Role change, ownership transfer and leave: `message.new` (heavy) to the
/// members, the target and the actor included; not to outsiders, not to a
/// member in a block relation with the actor, not to the leaver.
#[tokio::test]
async fn role_transfer_and_leave_messages_reach_the_members_only() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (erin, et) = app.make_user("Erin").await;
    let (dave, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob, carol, erin]).await;
    block(&app, alice, erin).await;
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut erin_ws = connect(&app, erin, &et).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    let (s, b) = put(
        &app,
        &at,
        &format!("/api/chats/group/{chat}/members/{bob}/role"),
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, t) = post(
        &app,
        &at,
        &format!("/api/chats/group/{chat}/transfer"),
        json!({"new_owner_id": carol}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    for ws in [&mut alice_ws, &mut bob_ws, &mut carol_ws] {
        let e = next_event(ws).await;
        assert_eq!(e["type"], "message.new", "{e}");
        assert_eq!(e["payload"]["id"], b["data"]["id"]);
        assert_eq!(e["payload"]["action_data"]["target_name"], "Bob");
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
        let e = next_event(ws).await;
        assert_eq!(e["type"], "message.new", "{e}");
        assert_eq!(e["payload"]["id"], t["data"]["id"]);
        assert_eq!(
            e["payload"]["action_data"]["action"],
            "ownership_transferred"
        );
        assert_eq!(e["payload"]["action_data"]["target_name"], "Carol");
    }
    // Erin is blocked by the actor; Dave is not a member.
    expect_silence(&mut erin_ws, QUIET).await;
    expect_silence(&mut dave_ws, Duration::from_millis(50)).await;

    let (s, l) = post(
        &app,
        &bt,
        &format!("/api/chats/group/{chat}/leave"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{l}");
    for ws in [&mut alice_ws, &mut carol_ws, &mut erin_ws] {
        let e = next_event(ws).await;
        assert_eq!(e["type"], "message.new", "{e}");
        assert_eq!(e["payload"]["type"], "system_leave");
        assert_eq!(e["payload"]["member_count"], 3);
        assert_eq!(e["meta"]["sender_id"], bob.to_string());
    }
    expect_silence(&mut bob_ws, QUIET).await;
    expect_silence(&mut dave_ws, Duration::from_millis(50)).await;
}

/// An admin's takedown of a reported group message: `message.delete` with
/// the nil sender to every member, with no block filter (there is no
/// sender), and to nobody else.
#[tokio::test]
async fn report_takedown_reaches_every_member_whoever_they_block() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let chat = make_group(&app, alice, &[bob, carol]).await;
    let m = send(&app, &bt, chat, "offensive").await;
    block(&app, carol, bob).await;
    let (s, b) = post(
        &app,
        &at,
        "/api/reports",
        json!({"target_type": "message", "reason": "harassment", "message_id": m["id"]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let report: Uuid = sqlx::query_scalar("SELECT id FROM reports WHERE reporter_id = $1")
        .bind(alice)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let mut alice_ws = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;
    let mut admin_ws = connect(&app, admin, &admin_t).await;

    let (s, b) = put(
        &app,
        &admin_t,
        &format!("/api/admin/reports/{report}/resolve"),
        json!({"status": "resolved"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    for ws in [&mut alice_ws, &mut bob_ws, &mut carol_ws] {
        let e = next_event(ws).await;
        assert_eq!(e["type"], "message.delete", "{e}");
        assert_eq!(e["payload"], json!({"message_id": m["id"]}));
        assert_eq!(e["meta"]["sender_id"], Uuid::nil().to_string());
        assert_eq!(e["meta"]["chat_id"], chat.to_string());
    }
    expect_silence(&mut dave_ws, QUIET).await;
    expect_silence(&mut admin_ws, Duration::from_millis(50)).await;
}

/// User events go to contacts (private-chat partners) only, never to group
/// co-members, and blocks do not filter them; presence is the exception
/// (no block partners) and never reaches the user's own devices.
#[tokio::test]
async fn user_events_reach_contacts_only_and_only_presence_skips_blocks() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, ct) = app.make_user("Carol").await;
    let (dave, dt) = app.make_user("Dave").await;
    app.make_private_chat(alice, bob).await;
    app.make_private_chat(alice, carol).await;
    make_group(&app, dave, &[alice]).await;
    block(&app, carol, alice).await;
    let mut bob_ws = connect(&app, bob, &bt).await;
    let mut carol_ws = connect(&app, carol, &ct).await;
    let mut dave_ws = connect(&app, dave, &dt).await;

    // Presence: Bob is told, Carol (block) and Dave (co-member) are not;
    // Alice's own first device hears nothing about herself.
    let mut alice_ws = connect(&app, alice, &at).await;
    let e = bob_ws.expect_event("user.online").await;
    assert_eq!(e["payload"]["user_id"], alice.to_string());
    carol_ws.expect_no_event("user.online", QUIET).await;
    dave_ws
        .expect_no_event("user.online", Duration::from_millis(50))
        .await;
    alice_ws
        .expect_no_event("user.online", Duration::from_millis(50))
        .await;

    // Profile update: Alice's devices and both contacts, the blocking one
    // included; not the group co-member.
    let (s, b) = put(
        &app,
        &at,
        "/api/user/profile",
        json!({"full_name": "Alice Again"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    for ws in [&mut alice_ws, &mut bob_ws, &mut carol_ws] {
        let e = ws.expect_event("user.update").await;
        assert_eq!(e["payload"]["id"], alice.to_string());
        assert_eq!(e["payload"]["full_name"], "Alice Again");
        assert_eq!(e["meta"]["sender_id"], alice.to_string());
    }
    dave_ws.expect_no_event("user.update", QUIET).await;

    drop(alice_ws);
    let e = bob_ws.expect_event("user.offline").await;
    assert_eq!(e["payload"]["user_id"], alice.to_string());
    assert_eq!(e["payload"]["is_online"], false);
    carol_ws.expect_no_event("user.offline", QUIET).await;
    dave_ws
        .expect_no_event("user.offline", Duration::from_millis(50))
        .await;
}
