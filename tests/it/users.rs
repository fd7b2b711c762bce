//! Integration tests: current user, profile update (with `user.update`),
//! profile view, user search, blocked list, block / unblock (with their
//! events to the right people and not to others).

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{json, register_user, TestApp, PASSWORD};

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    json(app.authed(Method::GET, path, token).send().await.unwrap()).await
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

async fn put_profile(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    send(app, Method::PUT, "/api/user/profile", token, Some(body)).await
}

fn err(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

/// Inserts an active user with explicit names; returns (id, token).
async fn insert_user(
    app: &TestApp,
    full_name: &str,
    username: &str,
    email: &str,
) -> (Uuid, String) {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, email, username, full_name, password_hash) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(email)
        .bind(username)
        .bind(full_name)
        .bind(bcrypt::hash(PASSWORD, 4).unwrap())
        .execute(&app.state.db)
        .await
        .unwrap();
    let token = atoitalk::auth::tokens::issue(&app.state.cfg.jwt_secret, 3600, id).unwrap();
    (id, token)
}

async fn exec(app: &TestApp, sql: &str, id: Uuid) {
    sqlx::query(sql)
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
}

async fn block_row(app: &TestApp, blocker: Uuid, blocked: Uuid) {
    sqlx::query("INSERT INTO user_blocks (id, blocker_id, blocked_id) VALUES ($1, $2, $3)")
        .bind(Uuid::now_v7())
        .bind(blocker)
        .bind(blocked)
        .execute(&app.state.db)
        .await
        .unwrap();
}

/// Inserts a media row; returns (id, file_name).
async fn make_media(app: &TestApp, owner: Uuid, category: &str, status: &str) -> (Uuid, String) {
    let id = Uuid::now_v7();
    let file = format!(
        "{}-{}.png",
        chrono::Utc::now().timestamp_nanos_opt().unwrap(),
        Uuid::new_v4()
    );
    sqlx::query(
        "INSERT INTO media (id, file_name, original_name, file_size, mime_type, category, upload_status, uploaded_by_id) \
         VALUES ($1, $2, 'a.png', 10, 'image/png', $3, $4, $5)",
    )
    .bind(id)
    .bind(&file)
    .bind(category)
    .bind(status)
    .bind(owner)
    .execute(&app.state.db)
    .await
    .unwrap();
    (id, file)
}

fn names(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["full_name"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Current user and profile update
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn current_user_shows_own_fields_and_presence() {
    let app = TestApp::spawn().await;
    let (id, token, email) = register_user(&app, "Curious Cat").await;
    let res = app
        .authed(Method::GET, "/api/user/current", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-limit"], "200");
    let (status, body) = json(res).await;
    assert_eq!(status, 200);
    let d = &body["data"];
    assert_eq!(d["id"], id.to_string());
    assert_eq!(d["email"], email);
    assert_eq!(d["full_name"], "Curious Cat");
    assert_eq!(d["avatar"], "");
    assert_eq!(d["role"], "user");
    assert_eq!(d["has_password"], true);
    assert_eq!(d["is_online"], false);
    for absent in ["bio", "last_seen_at", "is_banned", "private_chat_id"] {
        assert!(d.get(absent).is_none(), "{absent}: {d}");
    }
    let _ws = app.ws(&token).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, body) = get(&app, "/api/user/current", &token).await;
    assert_eq!(body["data"]["is_online"], true);

    exec(
        &app,
        "UPDATE users SET password_hash = NULL, bio = 'About me' WHERE id = $1",
        id,
    )
    .await;
    let (_, body) = get(&app, "/api/user/current", &token).await;
    assert!(body["data"].get("has_password").is_none());
    assert_eq!(body["data"]["bio"], "About me");
}

#[tokio::test]
async fn profile_update_changes_fields_and_notifies_devices_and_contacts_only() {
    let app = TestApp::spawn().await;
    let (me, token, email) = register_user(&app, "Profile Owner").await;
    let (contact, contact_token) = app.make_user("Contact").await;
    let (_stranger, stranger_token) = app.make_user("Stranger").await;
    app.make_private_chat(contact, me).await;
    let second_device = app.login(&email, PASSWORD).await;
    let mut my_ws = app.ws(&second_device).await;
    let mut contact_ws = app.ws(&contact_token).await;
    let mut stranger_ws = app.ws(&stranger_token).await;

    let res = app
        .authed(Method::PUT, "/api/user/profile", &token)
        .json(&json!({"full_name": "  New Name ", "username": "NewHandle7", "bio": "  Hello there  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-limit"], "30");
    let (status, body) = json(res).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["full_name"], "New Name");
    assert_eq!(d["username"], "newhandle7");
    assert_eq!(d["bio"], "Hello there");
    assert_eq!(d["email"], email);
    assert_eq!(d["has_password"], true);
    assert_eq!(d["is_online"], true);

    for ws in [&mut my_ws, &mut contact_ws] {
        let ev = ws.expect_event("user.update").await;
        assert_eq!(
            ev["payload"],
            json!({"id": me, "username": "newhandle7", "full_name": "New Name", "avatar": "", "bio": "Hello there"})
        );
        assert_eq!(ev["meta"]["sender_id"], me.to_string());
        assert_eq!(ev["meta"]["chat_id"], Uuid::nil().to_string());
        assert_eq!(ev["meta"]["unread_count"], 0);
    }
    stranger_ws
        .expect_no_event("user.update", Duration::from_millis(400))
        .await;

    // Same values again: no change, no event.
    let (status, body) = put_profile(
        &app,
        &token,
        json!({"full_name": "New Name", "username": "newhandle7", "bio": "Hello there"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["bio"], "Hello there");
    contact_ws
        .expect_no_event("user.update", Duration::from_millis(400))
        .await;

    // An absent bio is kept (the reference cleared it); "" clears it.
    let (_, body) = put_profile(&app, &token, json!({"full_name": "Newer Name"})).await;
    assert_eq!(body["data"]["bio"], "Hello there");
    assert_eq!(
        contact_ws.expect_event("user.update").await["payload"]["full_name"],
        "Newer Name"
    );
    let (_, body) = put_profile(&app, &token, json!({"full_name": "Newer Name", "bio": ""})).await;
    assert!(body["data"].get("bio").is_none(), "{body}");
    assert_eq!(
        contact_ws.expect_event("user.update").await["payload"]["bio"],
        ""
    );
    let bio: Option<String> = sqlx::query_scalar("SELECT bio FROM users WHERE id = $1")
        .bind(me)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(bio.is_none());

    // last_seen_at is reported when set.
    exec(
        &app,
        "UPDATE users SET last_seen_at = '2026-01-02T03:04:05.678Z' WHERE id = $1",
        me,
    )
    .await;
    let (_, body) = put_profile(&app, &token, json!({"full_name": "Final Name"})).await;
    assert_eq!(body["data"]["last_seen_at"], "2026-01-02T03:04:05Z");
    assert_eq!(
        contact_ws.expect_event("user.update").await["payload"]["last_seen_at"],
        "2026-01-02T03:04:05Z"
    );
}

#[tokio::test]
async fn profile_update_validation_and_conflicts() {
    let app = TestApp::spawn().await;
    let (me, token) = app.make_user("Validator").await;
    let (_, _) = insert_user(&app, "Other Person", "othername", "other@example.com").await;
    let cases = [
        json!({}),
        json!({"full_name": null}),
        json!({"full_name": "ab"}),
        json!({"full_name": "    "}),
        json!({"full_name": "x".repeat(101)}),
        json!({"full_name": 5}),
        json!({"full_name": "Fine Name", "username": "ab"}),
        json!({"full_name": "Fine Name", "username": "user_name"}),
        json!({"full_name": "Fine Name", "username": "user name"}),
        json!({"full_name": "Fine Name", "username": "x".repeat(51)}),
        json!({"full_name": "Fine Name", "bio": "b".repeat(256)}),
        json!({"full_name": "Fine Name", "bio": "bad\u{0}bio"}),
        json!({"full_name": "Fine Name", "avatar_media_id": "not-a-uuid"}),
        json!({"full_name": "Fine Name", "delete_avatar": "yes"}),
        json!({"full_name": "Fine Name", "delete_avatar": true, "avatar_media_id": Uuid::now_v7()}),
    ];
    for body in cases {
        let (status, res) = put_profile(&app, &token, body.clone()).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{body}");
    }
    let (status, res) = put_profile(
        &app,
        &token,
        json!({"full_name": "Fine Name", "username": "OTHERNAME"}),
    )
    .await;
    assert_eq!((status, err(&res)), (409, "Username already taken"));
    // Multi-byte text at the limits is accepted (no 500 from the column sizes).
    let (status, res) = put_profile(
        &app,
        &token,
        json!({"full_name": "é".repeat(100), "bio": "ü".repeat(255), "unknown": [1, 2]}),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(
        res["data"]["full_name"].as_str().unwrap().chars().count(),
        100
    );
    let _ = me;
}

#[tokio::test]
async fn profile_avatar_rules() {
    let app = TestApp::spawn().await;
    let (me, token) = app.make_user("Avatar Owner").await;
    let (other, _) = app.make_user("Avatar Other").await;
    let (contact, contact_token) = app.make_user("Avatar Contact").await;
    app.make_private_chat(me, contact).await;
    let mut contact_ws = app.ws(&contact_token).await;
    let invalid = |id: Uuid| json!({"full_name": "Avatar Owner", "avatar_media_id": id});

    let (foreign, _) = make_media(&app, other, "user_avatar", "completed").await;
    let (pending, _) = make_media(&app, me, "user_avatar", "pending").await;
    let (attachment, _) = make_media(&app, me, "message_attachment", "completed").await;
    let (group_cat, _) = make_media(&app, me, "group_avatar", "completed").await;
    for id in [foreign, pending, attachment, group_cat, Uuid::now_v7()] {
        let (status, res) = put_profile(&app, &token, invalid(id)).await;
        assert_eq!((status, err(&res)), (400, "Invalid avatar media"), "{id}");
    }

    let (good, file) = make_media(&app, me, "user_avatar", "completed").await;
    let (status, res) = put_profile(
        &app,
        &token,
        json!({"full_name": "Avatar Owner", "avatar_media_id": good.to_string().to_uppercase()}),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    let url = app.state.storage.public_url(&file);
    assert_eq!(res["data"]["avatar"], url);
    assert_eq!(
        contact_ws.expect_event("user.update").await["payload"]["avatar"],
        url
    );
    let (_, current) = get(&app, "/api/user/current", &token).await;
    assert_eq!(current["data"]["avatar"], url);
    // Already in use (even by the caller) → refused.
    let (status, res) = put_profile(&app, &token, invalid(good)).await;
    assert_eq!((status, err(&res)), (400, "Invalid avatar media"));
    let (_, other_token) = (
        other,
        atoitalk::auth::tokens::issue(&app.state.cfg.jwt_secret, 3600, other).unwrap(),
    );
    let (status, _) = put_profile(
        &app,
        &other_token,
        json!({"full_name": "Avatar Other", "avatar_media_id": good}),
    )
    .await;
    assert_eq!(status, 400);

    // Removing the avatar unlinks it; the media row stays for the cleanup job.
    let (status, res) = put_profile(
        &app,
        &token,
        json!({"full_name": "Avatar Owner", "delete_avatar": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(res["data"]["avatar"], "");
    assert_eq!(
        contact_ws.expect_event("user.update").await["payload"]["avatar"],
        ""
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM media WHERE id = $1")
        .bind(good)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    // Deleting when there is none changes nothing.
    let (status, _) = put_profile(
        &app,
        &token,
        json!({"full_name": "Avatar Owner", "delete_avatar": true}),
    )
    .await;
    assert_eq!(status, 200);
    contact_ws
        .expect_no_event("user.update", Duration::from_millis(300))
        .await;
}

// ---------------------------------------------------------------------------------------------
// Profile view
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn profile_view_hides_presence_across_blocks_and_bans() {
    let app = TestApp::spawn().await;
    let (me, token) = app.make_user("Viewer").await;
    let (bob, bob_token) = app.make_user("Bob").await;
    exec(
        &app,
        "UPDATE users SET bio = 'Bio of Bob', last_seen_at = '2026-02-03T04:05:06Z' WHERE id = $1",
        bob,
    )
    .await;
    let _bob_ws = app.ws(&bob_token).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let path = format!("/api/users/{bob}");
    let (status, body) = get(&app, &path, &token).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["id"], bob.to_string());
    assert_eq!(d["full_name"], "Bob");
    assert_eq!(d["bio"], "Bio of Bob");
    assert_eq!(d["avatar"], "");
    assert_eq!(d["role"], "user");
    assert_eq!(d["is_blocked_by_me"], false);
    assert_eq!(d["is_blocked_by_other"], false);
    assert_eq!(d["is_online"], true);
    assert!(d["last_seen_at"].is_string());
    for absent in ["email", "has_password", "is_banned"] {
        assert!(d.get(absent).is_none(), "{absent}");
    }
    // Lenient id forms.
    let (status, _) = get(
        &app,
        &format!("/api/users/{}", bob.simple().to_string().to_uppercase()),
        &token,
    )
    .await;
    assert_eq!(status, 200);

    // I blocked Bob: still visible, presence hidden.
    block_row(&app, me, bob).await;
    let (_, body) = get(&app, &path, &token).await;
    assert_eq!(body["data"]["is_blocked_by_me"], true);
    assert_eq!(body["data"]["is_online"], false);
    assert!(body["data"].get("last_seen_at").is_none());
    assert_eq!(body["data"]["bio"], "Bio of Bob");
    // Bob's view of me: blocked by the other side.
    let (_, body) = get(&app, &format!("/api/users/{me}"), &bob_token).await;
    assert_eq!(body["data"]["is_blocked_by_other"], true);
    assert_eq!(body["data"]["is_blocked_by_me"], false);

    // Banned users' presence is hidden; an expired ban is no ban.
    exec(&app, "DELETE FROM user_blocks WHERE blocked_id = $1", bob).await;
    exec(
        &app,
        "UPDATE users SET is_banned = true, banned_until = now() + interval '1 hour' WHERE id = $1",
        bob,
    )
    .await;
    let (_, body) = get(&app, &path, &token).await;
    assert_eq!(body["data"]["is_online"], false);
    assert!(body["data"].get("last_seen_at").is_none());
    exec(
        &app,
        "UPDATE users SET banned_until = now() - interval '1 hour' WHERE id = $1",
        bob,
    )
    .await;
    let (_, body) = get(&app, &path, &token).await;
    assert_eq!(body["data"]["is_online"], true);

    // Self view works like any other.
    let (status, body) = get(&app, &format!("/api/users/{me}"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["id"], me.to_string());

    let (status, body) = get(&app, "/api/users/not-a-uuid", &token).await;
    assert_eq!((status, err(&body)), (400, "Invalid User ID"));
    let (status, body) = get(&app, &format!("/api/users/{}", Uuid::now_v7()), &token).await;
    assert_eq!((status, err(&body)), (404, "User not found"));
    exec(
        &app,
        "UPDATE users SET deleted_at = now() WHERE id = $1",
        bob,
    )
    .await;
    let (status, body) = get(&app, &path, &token).await;
    assert_eq!((status, err(&body)), (404, "User not found"));
}

// ---------------------------------------------------------------------------------------------
// Search and the blocked list
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn user_search_pages_filters_and_matches() {
    let app = TestApp::spawn().await;
    let (me, token) = insert_user(&app, "Searcher", "searcher", "searcher@test.com").await;
    let (alice, _) = insert_user(&app, "User Alice", "useralice", "useralice@test.com").await;
    let (bob, _) = insert_user(&app, "User Bob", "userbob", "userbob@test.com").await;
    let (charlie, _) =
        insert_user(&app, "User Charlie", "usercharlie", "usercharlie@test.com").await;
    let (_david, _) = insert_user(&app, "User David", "userdavid", "userdavid@test.com").await;
    let (xena, _) = insert_user(&app, "User Xena", "userxena", "userxena@test.com").await;
    let (yuri, _) = insert_user(&app, "User Yuri", "useryuri", "useryuri@test.com").await;
    let (yves, _) = insert_user(&app, "User Yves", "useryves", "useryves@test.com").await;
    let (zara, _) = insert_user(&app, "User Zara", "userzara", "userzara@test.com").await;
    let (zed, _) = insert_user(&app, "User Zed", "userzed", "userzed@test.com").await;
    let (zoe, _) = insert_user(&app, "User Zoe", "userzoe", "userzoe@test.com").await;
    exec(
        &app,
        "UPDATE users SET is_banned = true, banned_until = now() - interval '1 day' WHERE id = $1",
        xena,
    )
    .await;
    exec(
        &app,
        "UPDATE users SET is_banned = true WHERE id = $1",
        yuri,
    )
    .await;
    exec(
        &app,
        "UPDATE users SET is_banned = true, banned_until = now() + interval '1 day' WHERE id = $1",
        yves,
    )
    .await;
    exec(
        &app,
        "UPDATE users SET deleted_at = now() WHERE id = $1",
        zara,
    )
    .await;
    block_row(&app, me, zed).await;
    block_row(&app, zoe, me).await;

    let (status, body) = get(&app, "/api/users?query=User&limit=2", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["User Alice", "User Bob"]);
    assert_eq!(body["meta"]["has_next"], true);
    assert_eq!(body["meta"]["has_prev"], false);
    let cursor = body["meta"]["next_cursor"].as_str().unwrap().to_string();
    let decoded = base64::engine::general_purpose::URL_SAFE
        .decode(&cursor)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("User Bob|||{bob}")
    );
    let item = &body["data"][0];
    assert_eq!(item["id"], alice.to_string());
    assert_eq!(item["username"], "useralice");
    assert_eq!(item["avatar"], "");
    assert_eq!(item["role"], "user");
    for absent in [
        "email",
        "bio",
        "is_online",
        "private_chat_id",
        "has_password",
    ] {
        assert!(item.get(absent).is_none(), "{absent}");
    }
    let (_, body) = get(
        &app,
        &format!("/api/users?query=User&limit=2&cursor={cursor}"),
        &token,
    )
    .await;
    assert_eq!(names(&body), ["User Charlie", "User David"]);
    assert_eq!(body["meta"]["has_next"], true);
    let cursor = body["meta"]["next_cursor"].as_str().unwrap().to_string();
    let (_, body) = get(
        &app,
        &format!("/api/users?query=User&limit=2&cursor={cursor}"),
        &token,
    )
    .await;
    // Expired bans are included; banned, deleted and blocked (either way) users are not.
    assert_eq!(names(&body), ["User Xena"]);
    assert_eq!(body["meta"], json!({"has_next": false, "has_prev": false}));

    for (q, expected) in [
        ("useralice", vec!["User Alice"]),
        ("useralice%40test.com", vec!["User Alice"]),
        ("USERALICE%40TEST.COM", vec!["User Alice"]),
        ("useralice%40test", vec![]),
        ("user%20a", vec!["User Alice"]),
        ("%25", vec![]),
        ("_ser", vec![]),
        ("Searcher", vec![]),
    ] {
        let (status, body) = get(&app, &format!("/api/users?query={q}"), &token).await;
        assert_eq!(status, 200);
        assert_eq!(names(&body), expected, "query {q}");
    }
    // A blank query lists everyone visible; the default page size is 10.
    let (_, body) = get(&app, "/api/users?query=%20%20", &token).await;
    assert_eq!(names(&body).len(), 5);
    let (_, body) = get(&app, "/api/users", &token).await;
    assert_eq!(names(&body).len(), 5);
    assert_eq!(body["meta"], json!({"has_next": false, "has_prev": false}));

    // include_chat_id / exclude_chat_id.
    let private_chat = app.make_private_chat(bob, me).await;
    let (group_owner, _) = insert_user(&app, "Owner Person", "ownerperson", "owner@test.com").await;
    let group = app.make_group(group_owner, &[charlie]).await;
    let (_, body) = get(
        &app,
        &format!("/api/users?query=user&include_chat_id=true&exclude_chat_id={group}"),
        &token,
    )
    .await;
    assert_eq!(
        names(&body),
        ["User Alice", "User Bob", "User David", "User Xena"]
    );
    assert_eq!(body["data"][1]["private_chat_id"], private_chat.to_string());
    assert!(body["data"][0].get("private_chat_id").is_none());
    let (_, body) = get(
        &app,
        "/api/users?query=user%20bob&include_chat_id=0",
        &token,
    )
    .await;
    assert!(body["data"][0].get("private_chat_id").is_none());
}

#[tokio::test]
async fn user_list_parameter_errors_are_400() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("Params").await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
    let cases = vec![
        ("limit=abc".to_string(), "Invalid limit"),
        ("limit=1.5".into(), "Invalid limit"),
        ("limit=0".into(), "Bad Request"),
        ("limit=-1".into(), "Bad Request"),
        ("limit=51".into(), "Bad Request"),
        ("include_chat_id=maybe".into(), "Invalid include_chat_id"),
        ("exclude_chat_id=nope".into(), "Invalid exclude_chat_id"),
        ("cursor=%25%25%25".into(), "Bad Request"),
        (format!("cursor={}", b64("no separator")), "Bad Request"),
        (
            format!("cursor={}", b64("Name|||not-a-uuid")),
            "Bad Request",
        ),
        (format!("query={}", "q".repeat(101)), "Bad Request"),
        ("query=a%00b".into(), "Bad Request"),
    ];
    for (q, message) in &cases {
        let (status, body) = get(&app, &format!("/api/users?{q}"), &token).await;
        assert_eq!((status, err(&body)), (400, *message), "/api/users?{q}");
    }
    for (q, message) in cases.iter().filter(|(q, _)| !q.contains("chat_id")) {
        let (status, body) = get(&app, &format!("/api/users/blocked?{q}"), &token).await;
        assert_eq!(
            (status, err(&body)),
            (400, *message),
            "/api/users/blocked?{q}"
        );
    }
    // Names containing the separator still page correctly.
    let (me, token) = insert_user(&app, "Pager", "pager", "pager@test.com").await;
    for n in ["A|||1", "A|||2", "A|||3"] {
        let (id, _) = insert_user(
            &app,
            n,
            &format!("u{}", &Uuid::new_v4().simple().to_string()[..8]),
            &format!("{}@t.com", Uuid::new_v4().simple()),
        )
        .await;
        let _ = (id, me);
    }
    let (_, body) = get(&app, "/api/users?query=a&limit=2", &token).await;
    assert_eq!(names(&body), ["A|||1", "A|||2"]);
    let cursor = body["meta"]["next_cursor"].as_str().unwrap().to_string();
    let (status, body) = get(
        &app,
        &format!("/api/users?query=a&limit=2&cursor={cursor}"),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["A|||3"]);
}

#[tokio::test]
async fn blocked_list_shows_whom_i_blocked() {
    let app = TestApp::spawn().await;
    let (me, token) = insert_user(&app, "Blocker", "blocker", "blocker@test.com").await;
    let (alice, _) = insert_user(&app, "Alice Blocked", "aliceb", "aliceb@test.com").await;
    let (bob, _) = insert_user(&app, "Bob Banned", "bobb", "bobb@test.com").await;
    let (carl, _) = insert_user(&app, "Carl Deleted", "carld", "carld@test.com").await;
    let (dora, _) = insert_user(&app, "Dora Blocks Me", "dorab", "dorab@test.com").await;
    let (_eve, _) = insert_user(&app, "Eve Unrelated", "eveu", "eveu@test.com").await;

    let (status, body) = get(&app, "/api/users/blocked", &token).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": [], "meta": {"has_next": false, "has_prev": false}})
    );

    for target in [alice, bob, carl] {
        block_row(&app, me, target).await;
    }
    block_row(&app, dora, me).await;
    exec(&app, "UPDATE users SET is_banned = true WHERE id = $1", bob).await;
    exec(
        &app,
        "UPDATE users SET deleted_at = now() WHERE id = $1",
        carl,
    )
    .await;

    let (_, body) = get(&app, "/api/users/blocked?limit=1", &token).await;
    assert_eq!(names(&body), ["Alice Blocked"]);
    assert_eq!(body["data"][0]["is_blocked_by_me"], true);
    assert_eq!(body["data"][0]["username"], "aliceb");
    assert_eq!(body["meta"]["has_next"], true);
    let cursor = body["meta"]["next_cursor"].as_str().unwrap().to_string();
    let (_, body) = get(
        &app,
        &format!("/api/users/blocked?limit=1&cursor={cursor}"),
        &token,
    )
    .await;
    assert_eq!(names(&body), ["Bob Banned"]);
    assert_eq!(body["meta"], json!({"has_next": false, "has_prev": false}));
    let (_, body) = get(&app, "/api/users/blocked?query=BO", &token).await;
    assert_eq!(names(&body), ["Bob Banned"]);
    let (_, body) = get(&app, "/api/users/blocked?query=aliceb", &token).await;
    assert_eq!(names(&body), ["Alice Blocked"]);
    // No email match on this list.
    let (_, body) = get(&app, "/api/users/blocked?query=aliceb%40test.com", &token).await;
    assert_eq!(names(&body), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Block / unblock
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn block_and_unblock_with_events_to_both_sides_only() {
    let app = TestApp::spawn().await;
    let (a, a_token, a_email) = register_user(&app, "Annoyed").await;
    let (b, b_token) = app.make_user("Bothersome").await;
    let (c, c_token) = app.make_user("Bystander").await;
    app.make_private_chat(a, c).await;
    app.make_private_chat(b, c).await;
    let a_device2 = app.login(&a_email, PASSWORD).await;
    let mut a_ws = app.ws(&a_device2).await;
    let mut b_ws = app.ws(&b_token).await;
    let mut c_ws = app.ws(&c_token).await;
    let block_path = format!("/api/users/{b}/block");
    let unblock_path = format!("/api/users/{b}/unblock");

    // Bodiless POST without a content type, as the frontend sends it.
    let (status, body) = json(
        app.authed(Method::POST, &block_path, &a_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"data": ""})));
    let expected = json!({"blocker_id": a, "blocked_id": b});
    for ws in [&mut b_ws, &mut a_ws] {
        let ev = ws.expect_event("user.block").await;
        assert_eq!(ev["payload"], expected);
        assert_eq!(ev["meta"]["sender_id"], a.to_string());
    }
    c_ws.expect_no_event("user.block", Duration::from_millis(300))
        .await;
    // Idempotent: a second block changes nothing and says nothing.
    let (status, _) = send(
        &app,
        Method::POST,
        &block_path,
        &a_token,
        Some(json!({"junk": true})),
    )
    .await;
    assert_eq!(status, 200);
    b_ws.expect_no_event("user.block", Duration::from_millis(300))
        .await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM user_blocks WHERE blocker_id = $1")
        .bind(a)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // The block shows in search (hidden) and in the profile view.
    let (_, body) = get(&app, &format!("/api/users/{a}"), &b_token).await;
    assert_eq!(body["data"]["is_blocked_by_other"], true);

    let (status, body) = send(&app, Method::POST, &unblock_path, &a_token, None).await;
    assert_eq!((status, &body), (200, &json!({"data": ""})));
    for ws in [&mut b_ws, &mut a_ws] {
        let ev = ws.expect_event("user.unblock").await;
        assert_eq!(ev["payload"], expected);
        assert_eq!(ev["meta"]["sender_id"], a.to_string());
    }
    c_ws.expect_no_event("user.unblock", Duration::from_millis(300))
        .await;
    // Unblocking again is a no-op: 200 and, unlike the reference, no event.
    let (status, _) = send(&app, Method::POST, &unblock_path, &a_token, None).await;
    assert_eq!(status, 200);
    b_ws.expect_no_event("user.unblock", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn block_and_unblock_errors() {
    let app = TestApp::spawn().await;
    let (me, token) = app.make_user("Careful").await;
    let (banned, _) = app.make_user("Banned One").await;
    let (gone, _) = app.make_user("Gone One").await;
    exec(
        &app,
        "UPDATE users SET is_banned = true WHERE id = $1",
        banned,
    )
    .await;
    exec(
        &app,
        "UPDATE users SET deleted_at = now() WHERE id = $1",
        gone,
    )
    .await;
    let (a, t) = (&app, &token);
    let post = |path: String| async move { send(a, Method::POST, &path, t, None).await };

    let (status, body) = post(format!("/api/users/{me}/block")).await;
    assert_eq!((status, err(&body)), (400, "Cannot block yourself"));
    let (status, body) = post(format!("/api/users/{me}/unblock")).await;
    assert_eq!((status, err(&body)), (400, "Cannot unblock yourself"));
    let (status, body) = get(&app, "/api/users/%FF%FE", &token).await;
    assert_eq!((status, err(&body)), (400, "Invalid User ID"));
    for action in ["block", "unblock"] {
        let (status, body) = post(format!("/api/users/xyz/{action}")).await;
        assert_eq!((status, err(&body)), (400, "Invalid User ID"), "{action}");
    }
    let (status, body) = post(format!("/api/users/{}/block", Uuid::now_v7())).await;
    assert_eq!((status, err(&body)), (404, "Not Found"));
    let (status, body) = post(format!("/api/users/{gone}/block")).await;
    assert_eq!((status, err(&body)), (404, "Not Found"));
    // Banned users can be blocked.
    let (status, _) = post(format!("/api/users/{banned}/block")).await;
    assert_eq!(status, 200);
    // Unblocking someone never blocked (or unknown) is a quiet 200.
    let (status, _) = post(format!("/api/users/{}/unblock", Uuid::now_v7())).await;
    assert_eq!(status, 200);
    // Wrong method on a known path.
    let (status, body) = get(&app, &format!("/api/users/{banned}/block"), &token).await;
    assert_eq!((status, err(&body)), (405, "Method Not Allowed"));
}

#[tokio::test]
async fn user_routes_refuse_unauthenticated_banned_and_deleted_callers() {
    let app = TestApp::spawn().await;
    let (target, _) = app.make_user("Target").await;
    let (banned, banned_token) = app.make_user("Banned Caller").await;
    let (deleted, deleted_token) = app.make_user("Deleted Caller").await;
    exec(
        &app,
        "UPDATE users SET is_banned = true WHERE id = $1",
        banned,
    )
    .await;
    exec(
        &app,
        "UPDATE users SET deleted_at = now() WHERE id = $1",
        deleted,
    )
    .await;
    let routes = [
        (Method::GET, "/api/user/current".to_string()),
        (Method::PUT, "/api/user/profile".to_string()),
        (Method::GET, "/api/users".to_string()),
        (Method::GET, "/api/users/blocked".to_string()),
        (Method::GET, format!("/api/users/{target}")),
        (Method::POST, format!("/api/users/{target}/block")),
        (Method::POST, format!("/api/users/{target}/unblock")),
        (Method::PUT, "/api/account/password".to_string()),
        (Method::PUT, "/api/account/email".to_string()),
        (Method::DELETE, "/api/account".to_string()),
        (Method::POST, "/api/auth/logout".to_string()),
    ];
    for (method, path) in &routes {
        let (status, body) = json(
            app.http
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, err(&body)),
            (401, "Unauthorized"),
            "{method} {path}"
        );
        let (status, body) = send(&app, method.clone(), path, &banned_token, None).await;
        assert_eq!(
            (status, err(&body)),
            (403, "Account is permanently banned"),
            "{method} {path}"
        );
        let (status, body) = send(&app, method.clone(), path, &deleted_token, None).await;
        assert_eq!(
            (status, err(&body)),
            (401, "Unauthorized"),
            "{method} {path}"
        );
    }
    // Nothing happened on the target's side.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM user_blocks")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
}
