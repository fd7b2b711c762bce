//! Integration tests: the multipart forms of `PUT /api/user/profile`,
//! `POST /api/chats/group` and `PUT /api/chats/group/{chatID}` (the earlier
//! client generation, avatar file inside the form) next to their JSON
//! forms, against the local backend and the S3-compatible test server.

use std::time::Duration;

use atoitalk::infra::storage::Bucket;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{self, json, TestApp};
use crate::multipart::{assert_storage_matches_rows, png, send_form, FormPart};

const QUIET: Duration = Duration::from_millis(300);

fn avatar(bytes: &[u8]) -> FormPart<'_> {
    FormPart::File {
        name: "avatar",
        file_name: "me.png",
        content_type: "image/png",
        bytes,
    }
}

/// The bytes behind a public avatar URL. The test S3 server keeps buckets
/// private (a real deployment serves them through `S3_PUBLIC_DOMAIN`), so
/// there the object is read with the server's own credentials.
async fn fetch(app: &TestApp, url: &str) -> Vec<u8> {
    if app.env.contains_key("S3_ENDPOINT") {
        let key = url.rsplit('/').next().unwrap();
        let public = format!("{}/{key}", app.env["S3_PUBLIC_DOMAIN"]);
        assert_eq!(url, public, "a public-domain URL");
        let got = app.state.storage.get(Bucket::Public, key).await.unwrap();
        return got.expect("object stored").to_vec();
    }
    let res = app.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET {url}");
    res.bytes().await.unwrap().to_vec()
}

async fn media_count(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM media")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    n
}

/// The avatar media of a user: (id, category, status).
async fn user_avatar(app: &TestApp, user: Uuid) -> Option<(Uuid, String, String)> {
    sqlx::query_as(
        "SELECT m.id, m.category, m.upload_status FROM users u JOIN media m ON m.id = u.avatar_id \
         WHERE u.id = $1",
    )
    .bind(user)
    .fetch_optional(&app.state.db)
    .await
    .unwrap()
}

async fn profile_form(app: &TestApp, token: &str, parts: &[FormPart<'_>]) -> (u16, Value) {
    send_form(app, Method::PUT, "/api/user/profile", token, parts).await
}

async fn profile_forms(app: &TestApp) {
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    app.make_private_chat(alice, bob).await;
    let mut bob_ws = app.ws(&bt).await;

    let first = png(40_000, 1);
    let (status, b) = profile_form(
        app,
        &at,
        &[
            FormPart::Text("username", "AliceW"),
            FormPart::Text("full_name", "Alice Wonder"),
            FormPart::Text("bio", "down the hole"),
            avatar(&first),
            FormPart::Text("delete_avatar", "false"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let p = &b["data"];
    assert_eq!(p["username"], "alicew");
    assert_eq!(p["full_name"], "Alice Wonder");
    assert_eq!(p["bio"], "down the hole");
    let url = p["avatar"].as_str().unwrap().to_string();
    assert_eq!(fetch(app, &url).await, first);
    let (first_id, category, status) = user_avatar(app, alice).await.expect("avatar set");
    assert_eq!(
        (category.as_str(), status.as_str()),
        ("user_avatar", "completed")
    );
    let e = bob_ws.expect_event("user.update").await;
    assert_eq!(e["payload"]["avatar"], url.as_str());
    assert_eq!(e["payload"]["full_name"], "Alice Wonder");

    // A new avatar replaces it; the old one is released (kept, unlinked,
    // left to the orphan cleanup as any avatar change does).
    let second = png(20_000, 2);
    let (status, b) = profile_form(
        app,
        &at,
        &[FormPart::Text("full_name", "Alice Wonder"), avatar(&second)],
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let url2 = b["data"]["avatar"].as_str().unwrap();
    assert_ne!(url2, url);
    assert_eq!(fetch(app, url2).await, second);
    assert_eq!(b["data"]["bio"], "down the hole", "an absent bio is kept");
    let e = bob_ws.expect_event("user.update").await;
    assert_eq!(e["payload"]["avatar"], url2);
    let (second_id, _, _) = user_avatar(app, alice).await.unwrap();
    assert_ne!(second_id, first_id);
    let (released,): (bool,) =
        sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM users WHERE avatar_id = $1)")
            .bind(first_id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(released);

    // Refusals leave nothing behind and change nothing.
    let before = media_count(app).await;
    let text = b"not an image".to_vec();
    let wrong_type = FormPart::File {
        name: "avatar",
        file_name: "me.txt",
        content_type: "text/plain",
        bytes: &text,
    };
    let too_big = png(2 * 1024 * 1024 + 1, 3);
    let over_body = png(5 * 1024 * 1024, 4);
    for (parts, expected) in [
        (
            vec![FormPart::Text("full_name", "Alice W"), wrong_type],
            (400, json!({"error": "Unsupported file metadata"})),
        ),
        (
            vec![FormPart::Text("full_name", "Alice W"), avatar(&too_big)],
            (400, json!({"error": "Unsupported file metadata"})),
        ),
        (
            vec![FormPart::Text("full_name", "Alice W"), avatar(&over_body)],
            (413, json!({"error": "Request body too large"})),
        ),
        (
            vec![
                FormPart::Text("full_name", "Alice W"),
                FormPart::Text("delete_avatar", "maybe"),
            ],
            (
                400,
                json!({"error": "Field delete_avatar must be true or false"}),
            ),
        ),
        (
            // Valid avatar, invalid name: the stored avatar is removed again.
            vec![avatar(&second), FormPart::Text("full_name", "A")],
            (400, json!({"error": "Bad Request"})),
        ),
        (
            vec![
                FormPart::Text("full_name", "Alice W"),
                FormPart::Text("delete_avatar", "true"),
                avatar(&second),
            ],
            (400, json!({"error": "Bad Request"})),
        ),
    ] {
        assert_eq!(profile_form(app, &at, &parts).await, expected);
    }
    let (_, carol_t) = app.make_user("Carol").await;
    let (status, _) = profile_form(
        app,
        &carol_t,
        &[
            FormPart::Text("username", "alicew"),
            FormPart::Text("full_name", "Carol"),
            avatar(&first),
        ],
    )
    .await;
    assert_eq!(status, 409, "username taken");
    assert_eq!(media_count(app).await, before);
    assert_storage_matches_rows(app).await;
    assert_eq!(user_avatar(app, alice).await.unwrap().0, second_id);
    bob_ws.expect_no_event("user.update", QUIET).await;

    // delete_avatar=true removes it.
    let (status, b) = profile_form(
        app,
        &at,
        &[
            FormPart::Text("full_name", "Alice Wonder"),
            FormPart::Text("delete_avatar", "true"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["avatar"], "");
    assert!(user_avatar(app, alice).await.is_none());
    assert_eq!(
        bob_ws.expect_event("user.update").await["payload"]["avatar"],
        ""
    );

    // The JSON form on the same endpoint.
    let (status, b) = json(
        app.http
            .put(app.url("/api/user/profile"))
            .bearer_auth(&at)
            .json(&json!({"full_name": "Alice JSON", "bio": ""}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["full_name"], "Alice JSON");
    assert!(b["data"].get("bio").is_none());
}

async fn group_form(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    parts: &[FormPart<'_>],
) -> (u16, Value) {
    send_form(app, method, path, token, parts).await
}

/// The avatar media id of a group chat.
async fn group_avatar(app: &TestApp, chat: &str) -> Option<Uuid> {
    sqlx::query_as::<_, (Option<Uuid>,)>(
        "SELECT avatar_id FROM group_chats WHERE chat_id = $1::uuid",
    )
    .bind(chat)
    .fetch_one(&app.state.db)
    .await
    .unwrap()
    .0
}

async fn group_forms(app: &TestApp) {
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let (_, dt) = app.make_user("Dave").await;
    let mut bob_ws = app.ws(&bt).await;
    let mut dave_ws = app.ws(&dt).await;

    let pic = png(30_000, 7);
    let members = json!([bob, carol]).to_string();
    let (status, b) = group_form(
        app,
        Method::POST,
        "/api/chats/group",
        &at,
        &[
            FormPart::Text("name", "Form Club"),
            FormPart::Text("description", "made with a form"),
            FormPart::Text("member_ids", &members),
            avatar(&pic),
            FormPart::Text("is_public", "true"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let g = &b["data"];
    assert_eq!(g["type"], "group");
    assert_eq!(g["name"], "Form Club");
    assert_eq!(g["description"], "made with a form");
    assert_eq!(g["is_public"], true);
    assert_eq!(g["member_count"], 3);
    let chat = g["id"].as_str().unwrap().to_string();
    assert_eq!(fetch(app, g["avatar"].as_str().unwrap()).await, pic);
    let e = bob_ws.expect_event("chat.new").await;
    assert_eq!(e["payload"]["id"], chat.as_str());
    assert_eq!(e["payload"]["avatar"], g["avatar"]);
    dave_ws.expect_no_event("chat.new", QUIET).await;
    let first_avatar = group_avatar(app, &chat).await.expect("avatar set");

    // Refused creations: nothing stored, no group, nobody told.
    let before = media_count(app).await;
    let big = png(5 * 1024 * 1024, 8);
    let text = b"plain".to_vec();
    for (parts, expected) in [
        (
            vec![
                FormPart::Text("name", "Bad Ids"),
                FormPart::Text("member_ids", "bob,carol"),
                avatar(&pic),
            ],
            (400, json!({"error": "Invalid member_ids format"})),
        ),
        (
            vec![
                FormPart::Text("name", "Bad Ids"),
                FormPart::Text("member_ids", "[1, 2]"),
                avatar(&pic),
            ],
            (400, json!({"error": "Invalid member_ids format"})),
        ),
        (
            vec![FormPart::Text("name", "No Members"), avatar(&pic)],
            (400, json!({"error": "Bad Request"})),
        ),
        (
            vec![
                FormPart::Text("name", "Typed"),
                FormPart::Text("member_ids", &members),
                FormPart::File {
                    name: "avatar",
                    file_name: "a.txt",
                    content_type: "text/plain",
                    bytes: &text,
                },
            ],
            (400, json!({"error": "Unsupported file metadata"})),
        ),
        (
            vec![
                FormPart::Text("name", "Huge"),
                FormPart::Text("member_ids", &members),
                avatar(&big),
            ],
            (413, json!({"error": "Request body too large"})),
        ),
        (
            vec![
                FormPart::Text("name", "Bad Flag"),
                FormPart::Text("member_ids", &members),
                FormPart::Text("is_public", "yes"),
            ],
            (
                400,
                json!({"error": "Field is_public must be true or false"}),
            ),
        ),
    ] {
        assert_eq!(
            group_form(app, Method::POST, "/api/chats/group", &at, &parts).await,
            expected
        );
    }
    assert_eq!(media_count(app).await, before);
    assert_storage_matches_rows(app).await;
    let (groups,): (i64,) = sqlx::query_as("SELECT count(*) FROM group_chats")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(groups, 1);
    bob_ws.expect_no_event("chat.new", QUIET).await;

    // Update with a new name and avatar; the old avatar is released.
    let path = format!("/api/chats/group/{chat}");
    let pic2 = png(25_000, 9);
    let (status, b) = group_form(
        app,
        Method::PUT,
        &path,
        &at,
        &[FormPart::Text("name", "Form Club 2"), avatar(&pic2)],
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["name"], "Form Club 2");
    assert_eq!(
        fetch(app, b["data"]["avatar"].as_str().unwrap()).await,
        pic2
    );
    let second_avatar = group_avatar(app, &chat).await.unwrap();
    assert_ne!(second_avatar, first_avatar);
    let e = bob_ws.expect_event("chat.update").await;
    assert_eq!(e["payload"]["name"], "Form Club 2");

    // A plain member may not, and the file they sent is removed again.
    let before = media_count(app).await;
    let (status, b) = group_form(app, Method::PUT, &path, &bt, &[avatar(&pic)]).await;
    assert_eq!(status, 403, "{b}");
    assert_eq!(media_count(app).await, before);
    assert_storage_matches_rows(app).await;
    assert_eq!(group_avatar(app, &chat).await, Some(second_avatar));

    // delete_avatar=true removes it.
    let (status, b) = group_form(
        app,
        Method::PUT,
        &path,
        &at,
        &[FormPart::Text("delete_avatar", "true")],
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["avatar"], "");
    assert_eq!(group_avatar(app, &chat).await, None);

    // The JSON forms on the same endpoints.
    let (status, b) = json(
        app.http
            .put(app.url(&path))
            .bearer_auth(&at)
            .json(&json!({"description": "now with JSON"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["description"], "now with JSON");
    let (status, b) = json(
        app.http
            .post(app.url("/api/chats/group"))
            .bearer_auth(&at)
            .json(&json!({"name": "JSON Club", "member_ids": [bob]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["name"], "JSON Club");
    let _ = alice;
}

#[tokio::test]
async fn local_profile_forms() {
    let app = TestApp::spawn().await;
    profile_forms(&app).await;
}

#[tokio::test]
async fn s3_profile_forms() {
    let s3 = harness::s3_env().await;
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    profile_forms(&app).await;
}

#[tokio::test]
async fn local_group_forms() {
    let app = TestApp::spawn().await;
    group_forms(&app).await;
}

#[tokio::test]
async fn s3_group_forms() {
    let s3 = harness::s3_env().await;
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    group_forms(&app).await;
}
