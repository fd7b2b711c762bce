//! Extension (issue 17): edit history over real HTTP: versions newest
//! first, who may read them, bad input, and deletion.

use serde_json::json;
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{make_group, TestApp};

#[tokio::test]
async fn edits_keep_earlier_versions_for_readers_only() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (_dave, dt) = app.make_user("Dave").await;
    let chat = make_group(&app, alice, &[bob]).await;
    let m = send(&app, &at, chat, "first").await;
    let mid = m["id"].as_str().unwrap().to_string();
    let hist = format!("/api/messages/{mid}/history");

    let (s, body) = get(&app, &bt, &hist).await;
    assert_eq!(
        (s, body["data"].clone()),
        (200, json!([])),
        "unedited: {body}"
    );

    for text in ["second", "third"] {
        let (s, b) = put(
            &app,
            &at,
            &format!("/api/messages/{mid}"),
            json!({"content": text}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, body) = get(&app, &bt, &hist).await;
    assert_eq!(s, 200, "{body}");
    let versions = body["data"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "current version not included: {body}");
    assert_eq!(versions[0]["content"], "second", "newest first");
    assert_eq!(versions[1]["content"], "first");
    assert_eq!(versions[0]["attachments"], json!([]));
    assert!(versions[0]["replaced_at"].as_str().unwrap().ends_with('Z'));

    // Outsiders, bad ids, unknown messages.
    let (s, body) = get(&app, &dt, &hist).await;
    assert_eq!((s, body["error"].as_str()), (403, Some("Forbidden")));
    let (s, body) = get(&app, &bt, "/api/messages/nope/history").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("Invalid Message ID"))
    );
    let (s, _) = get(
        &app,
        &bt,
        &format!("/api/messages/{}/history", Uuid::now_v7()),
    )
    .await;
    assert_eq!(s, 404);

    // Deleting the message deletes its history.
    let (s, _) = delete(&app, &at, &format!("/api/messages/{mid}")).await;
    assert_eq!(s, 200);
    let (s, body) = get(&app, &bt, &hist).await;
    assert_eq!((s, body["data"].clone()), (200, json!([])));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM message_edits WHERE message_id = $1")
        .bind(Uuid::parse_str(&mid).unwrap())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // Deleted chat: as its history.
    let m2 = send(&app, &at, chat, "again").await;
    exec(
        &app,
        "UPDATE chats SET deleted_at = now() WHERE id = $1",
        chat,
    )
    .await;
    let (s, _) = get(
        &app,
        &bt,
        &format!("/api/messages/{}/history", m2["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn edit_history_keeps_replaced_attachments_and_cascades_with_the_message() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let media_id = media(&app, alice, "message_attachment", "completed").await;
    let (s, body) = post(
        &app,
        &at,
        "/api/messages",
        json!({"chat_id": chat, "content": "with file", "attachment_ids": [media_id]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let mid = body["data"]["id"].as_str().unwrap().to_string();
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/messages/{mid}"),
        json!({"content": "without file", "attachment_ids": []}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["attachments"], json!([]));
    let (s, body) = get(&app, &bt, &format!("/api/messages/{mid}/history")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"][0]["content"], "with file");
    assert_eq!(
        body["data"][0]["attachments"][0]["id"],
        media_id.to_string()
    );

    exec(
        &app,
        "DELETE FROM messages WHERE id = $1",
        Uuid::parse_str(&mid).unwrap(),
    )
    .await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM message_edits")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left, 0, "history rows go with the message row");
}

/// The scheduler's cleanup job hard-deletes a chat deleted past retention;
/// its messages' edit history goes with them (FK cascade), as do its
/// reactions and pins (their own tests).
#[tokio::test]
async fn edit_history_goes_with_its_chat_in_the_cleanup_job() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let chat = make_group(&app, alice, &[]).await;
    let m = send(&app, &at, chat, "first").await;
    let mid = Uuid::parse_str(m["id"].as_str().unwrap()).unwrap();
    let (s, b) = put(
        &app,
        &at,
        &format!("/api/messages/{mid}"),
        json!({"content": "second"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let rows = || {
        count(
            &app,
            "SELECT count(*) FROM message_edits WHERE message_id = $1",
            mid,
        )
    };
    assert_eq!(rows().await, 1);
    purge_chat_by_cleanup_job(&app, chat).await;
    assert_eq!(
        rows().await,
        0,
        "edit history cascades with the message rows"
    );
}
