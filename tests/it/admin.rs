//! Integration tests: admin console (dashboard, users, ban, unban, reset)
//! and the admin guard on every admin endpoint.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{json, TestApp, WsClient, WsRead};

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    json(
        app.http
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post(app: &TestApp, token: &str, path: &str, body: &str) -> (u16, Value) {
    json(
        app.http
            .post(app.url(path))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn ok() -> (u16, Value) {
    (200, json!({"data": ""}))
}

fn err(status: u16, msg: &str) -> (u16, Value) {
    (status, json!({"error": msg}))
}

async fn ban(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    post(app, token, "/api/admin/users/ban", &body.to_string()).await
}

/// Reads events until the socket closes; returns them and the close code.
async fn drain_until_closed(ws: &mut WsClient) -> (Vec<Value>, Option<u16>) {
    let mut seen = Vec::new();
    loop {
        match ws.read(Duration::from_secs(5)).await {
            WsRead::Event(e) => seen.push(e),
            WsRead::Closed(code) => return (seen, code),
            WsRead::Timeout => panic!("socket not closed; events so far: {seen:?}"),
        }
    }
}

/// Every admin endpoint refuses non-admins (403) and anonymous callers (401).
#[tokio::test]
async fn admin_guard_on_every_endpoint() {
    let app = TestApp::spawn().await;
    let (user, token) = app.make_user("Mallory").await;
    let id = Uuid::now_v7();
    let endpoints = [
        ("GET", "/api/admin/dashboard".to_string(), ""),
        ("GET", "/api/admin/users".to_string(), ""),
        ("GET", format!("/api/admin/users/{user}"), ""),
        (
            "POST",
            "/api/admin/users/ban".to_string(),
            r#"{"target_user_id":"x"}"#,
        ),
        ("POST", format!("/api/admin/users/{user}/unban"), ""),
        ("POST", format!("/api/admin/users/{user}/reset"), "{}"),
        ("GET", "/api/admin/reports".to_string(), ""),
        ("GET", format!("/api/admin/reports/{id}"), ""),
        (
            "PUT",
            format!("/api/admin/reports/{id}/resolve"),
            r#"{"status":"resolved"}"#,
        ),
        ("DELETE", format!("/api/admin/reports/{id}"), ""),
        ("GET", "/api/admin/groups".to_string(), ""),
        ("GET", format!("/api/admin/groups/{id}"), ""),
        ("GET", format!("/api/admin/groups/{id}/members"), ""),
        ("DELETE", format!("/api/admin/groups/{id}"), ""),
        (
            "POST",
            format!("/api/admin/groups/{id}/reset"),
            r#"{"reset_name":true}"#,
        ),
    ];
    for (method, path, body) in &endpoints {
        let req = |t: Option<&str>| {
            let mut r = app
                .http
                .request(method.parse().unwrap(), app.url(path))
                .body(body.to_string());
            if let Some(t) = t {
                r = r.bearer_auth(t);
            }
            r
        };
        let res = req(Some(&token)).send().await.unwrap();
        assert_eq!(
            json(res).await,
            err(403, "Admin access required"),
            "{method} {path}"
        );
        let res = req(None).send().await.unwrap();
        assert_eq!(json(res).await, err(401, "Unauthorized"), "{method} {path}");
    }
    // Refused requests did not count against the admin_action bucket.
    let key = app
        .state
        .redis
        .key(&format!("ratelimit:user:admin_action:{user}"));
    let mut conn = app.state.redis.conn();
    let exists: bool = redis::AsyncCommands::exists(&mut conn, &key).await.unwrap();
    assert!(!exists, "{key}");
    // Nothing happened to the user.
    let banned: bool = sqlx::query_scalar("SELECT is_banned FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(!banned);
}

#[tokio::test]
async fn dashboard_counts() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (a, _) = app.make_user("A").await;
    let (b, _) = app.make_user("B").await;
    let chat = app.make_private_chat(a, b).await;
    let m1 = app.insert_message(chat, a, "1").await;
    app.insert_message(chat, b, "2").await;
    let (gchat, _) = app.make_named_group("G", a, &[b]).await;
    app.insert_message(gchat, a, "3").await;
    sqlx::query("UPDATE messages SET deleted_at = now() WHERE id = $1")
        .bind(m1)
        .execute(&app.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE chats SET deleted_at = now() WHERE id = $1")
        .bind(gchat)
        .execute(&app.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET deleted_at = now() WHERE id = $1")
        .bind(b)
        .execute(&app.state.db)
        .await
        .unwrap();
    for status in ["pending", "pending", "resolved"] {
        sqlx::query(
            "INSERT INTO reports (id, target_type, reason, status, created_at, updated_at) \
             VALUES ($1, 'user', 'spam', $2, now(), now())",
        )
        .bind(Uuid::now_v7())
        .bind(status)
        .execute(&app.state.db)
        .await
        .unwrap();
    }
    let res = app
        .http
        .get(app.url("/api/admin/dashboard"))
        .bearer_auth(&admin_t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-limit"], "1000");
    assert_eq!(
        json(res).await,
        (
            200,
            json!({"data": {"total_users": 3, "total_groups": 1, "total_messages": 3, "active_reports": 2}})
        )
    );
}

#[tokio::test]
async fn user_list_and_detail() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (alice, _) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (carol, _) = app.make_user("Carol").await;
    let (gone, _) = app.make_user("Gone").await;
    sqlx::query("UPDATE users SET deleted_at = now(), email = NULL, username = NULL, full_name = NULL WHERE id = $1")
        .bind(gone)
        .execute(&app.state.db)
        .await
        .unwrap();
    // Carol: an expired temporary ban counts as not banned.
    sqlx::query("UPDATE users SET is_banned = true, banned_until = now() - interval '1 hour', ban_reason = 'old' WHERE id = $1")
        .bind(carol)
        .execute(&app.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET is_banned = true, ban_reason = 'spam' WHERE id = $1")
        .bind(bob)
        .execute(&app.state.db)
        .await
        .unwrap();

    let (status, page) = get(&app, &admin_t, "/api/admin/users").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            carol.to_string(),
            bob.to_string(),
            alice.to_string(),
            admin.to_string()
        ],
        "newest first, deleted excluded"
    );
    assert_eq!(page["meta"], json!({"has_next": false, "has_prev": false}));
    let b = &page["data"][1];
    assert_eq!(b["full_name"], "Bob");
    assert_eq!(b["role"], "user");
    assert_eq!(b["is_banned"], true);
    assert!(b["email"].as_str().unwrap().starts_with("bob"));
    assert!(b["username"].as_str().unwrap().starts_with("bob"));
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(page["data"][0]["is_banned"], false);

    let (_, p) = get(&app, &admin_t, "/api/admin/users?role=admin").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    assert_eq!(p["data"][0]["role"], "admin");
    let (_, p) = get(&app, &admin_t, "/api/admin/users?role=user").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 3);
    let (_, p) = get(&app, &admin_t, "/api/admin/users?query=LIC").await;
    assert_eq!(p["data"][0]["id"], alice.to_string());
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    let (_, p) = get(&app, &admin_t, "/api/admin/users?query=example.com&limit=2").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 2);
    assert_eq!(p["meta"]["has_next"], true);
    let cursor = p["meta"]["next_cursor"].as_str().unwrap();
    let (_, p2) = get(
        &app,
        &admin_t,
        &format!("/api/admin/users?query=example.com&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 2);
    assert_eq!(p2["meta"], json!({"has_next": false, "has_prev": false}));
    let (status, p) = get(&app, &admin_t, "/api/admin/users?cursor=%%%").await;
    assert_eq!((status, p["data"].as_array().unwrap().len()), (200, 4));
    let (_, p) = get(&app, &admin_t, "/api/admin/users?query=%25").await;
    assert_eq!(
        p["data"].as_array().unwrap().len(),
        0,
        "wildcards are literal"
    );

    assert_eq!(
        get(&app, &admin_t, "/api/admin/users?role=owner").await,
        err(400, "Bad Request")
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/users?limit=x").await,
        err(400, "Invalid limit")
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/users?limit=51").await,
        err(400, "Bad Request")
    );
    assert_eq!(
        get(
            &app,
            &admin_t,
            &format!("/api/admin/users?query={}", "a".repeat(101))
        )
        .await,
        err(400, "Bad Request")
    );

    // Detail.
    let chat = app.make_private_chat(alice, bob).await;
    app.insert_message(chat, bob, "x").await;
    app.insert_message(chat, bob, "y").await;
    app.make_named_group("G", alice, &[bob]).await;
    let avatar = app
        .upload_media(
            &app.make_user("Up").await.1,
            "user_avatar",
            "a.png",
            "image/png",
            b"png",
        )
        .await;
    sqlx::query("UPDATE users SET avatar_id = $1::uuid, bio = 'hi', banned_until = now() + interval '2 hours' WHERE id = $2")
        .bind(avatar["id"].as_str().unwrap())
        .bind(bob)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, d) = get(&app, &admin_t, &format!("/api/admin/users/{bob}")).await;
    assert_eq!(status, 200, "{d}");
    let d = &d["data"];
    assert_eq!(d["id"], bob.to_string());
    assert_eq!(d["full_name"], "Bob");
    assert_eq!(d["bio"], "hi");
    assert_eq!(d["avatar"], avatar["url"]);
    assert_eq!(d["role"], "user");
    assert_eq!(d["is_banned"], true);
    assert_eq!(d["ban_reason"], "spam");
    assert!(d["banned_until"].as_str().unwrap().ends_with('Z'));
    assert_eq!(d["last_seen_at"], Value::Null);
    assert_eq!(d["total_messages"], 2);
    assert_eq!(d["total_groups"], 1);
    // Expired ban: not banned, but the end time is still shown.
    let (_, d) = get(&app, &admin_t, &format!("/api/admin/users/{carol}")).await;
    assert_eq!(d["data"]["is_banned"], false);
    assert!(d["data"]["banned_until"].is_string());
    // Soft-deleted users are shown with empty strings; no ban fields.
    let (status, d) = get(&app, &admin_t, &format!("/api/admin/users/{gone}")).await;
    assert_eq!(status, 200);
    assert_eq!(d["data"]["email"], "");
    assert_eq!(d["data"]["username"], "");
    assert_eq!(d["data"]["bio"], "");
    assert!(d["data"].get("ban_reason").is_none() && d["data"].get("banned_until").is_none());
    assert_eq!(
        get(&app, &admin_t, "/api/admin/users/abc").await,
        err(400, "Invalid user ID")
    );
    assert_eq!(
        get(
            &app,
            &admin_t,
            &format!("/api/admin/users/{}", Uuid::now_v7())
        )
        .await,
        err(404, "User not found")
    );
    let _ = bob_t;
}

/// Ban: validation, permissions, effects, events in the right order.
#[tokio::test]
async fn ban_user() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (other_admin, _) = app.make_user("Admin2").await;
    app.make_admin(other_admin).await;
    let (target, target_t) = app.make_user("Target").await;
    let (friend, friend_t) = app.make_user("Friend").await;
    let (_, stranger_t) = app.make_user("Stranger").await;
    app.make_private_chat(target, friend).await;

    let bad = err(400, "Bad Request");
    for body in [
        json!({}),
        json!({"target_user_id": Uuid::nil(), "reason": "spam"}),
        json!({"target_user_id": target}),
        json!({"target_user_id": target, "reason": ""}),
        json!({"target_user_id": target, "reason": "   "}),
        json!({"target_user_id": target, "reason": "r".repeat(256)}),
        json!({"target_user_id": target, "reason": "spam", "duration_hours": -1}),
        json!({"target_user_id": target, "reason": "spam", "duration_hours": "24"}),
        json!({"target_user_id": target, "reason": "spam", "duration_hours": 1.5}),
        json!({"target_user_id": target, "reason": "spam", "duration_hours": i64::MAX}),
        json!({"target_user_id": "not-a-uuid", "reason": "spam"}),
    ] {
        assert_eq!(ban(&app, &admin_t, &body).await, bad, "{body}");
    }
    assert_eq!(post(&app, &admin_t, "/api/admin/users/ban", "{").await, bad);
    assert_eq!(post(&app, &admin_t, "/api/admin/users/ban", "").await, bad);
    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": Uuid::now_v7(), "reason": "spam"})
        )
        .await,
        err(404, "User not found")
    );
    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": other_admin, "reason": "spam"})
        )
        .await,
        err(403, "Cannot ban another admin")
    );
    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": admin, "reason": "spam"})
        )
        .await,
        err(403, "Cannot ban another admin")
    );

    let mut target_ws = app.ws(&target_t).await;
    let mut friend_ws = app.ws(&friend_t).await;
    let mut stranger_ws = app.ws(&stranger_t).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": target, "reason": " Spamming links ", "duration_hours": 24})
        )
        .await,
        ok()
    );
    // The banned user sees the event, with its reason, and then the close.
    let (events, code) = drain_until_closed(&mut target_ws).await;
    let banned = events
        .iter()
        .find(|e| e["type"] == "user.banned")
        .unwrap_or_else(|| panic!("no user.banned before close: {events:?}"));
    assert_eq!(
        banned["payload"],
        json!({"user_id": target, "reason": "Spamming links"})
    );
    assert_eq!(banned["meta"]["sender_id"], admin.to_string());
    assert_eq!(banned["meta"]["chat_id"], Uuid::nil().to_string());
    assert_eq!(code, Some(4003));
    let e = friend_ws.expect_event("user.banned").await;
    assert_eq!(e["payload"]["user_id"], target.to_string());
    stranger_ws
        .expect_no_event("user.banned", Duration::from_millis(300))
        .await;

    let (is_banned, reason, until): (bool, Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT is_banned, ban_reason, banned_until FROM users WHERE id = $1")
            .bind(target)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(is_banned);
    assert_eq!(reason.as_deref(), Some("Spamming links"));
    let left = until.unwrap() - chrono::Utc::now();
    assert!(left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24));

    // Existing tokens are revoked (401 comes before the ban check).
    assert_eq!(
        get(
            &app,
            &target_t,
            "/api/media/00000000-0000-0000-0000-000000000000/url"
        )
        .await,
        err(401, "Unauthorized")
    );
    // A fresh token meets the ban.
    let fresh = atoitalk::auth::tokens::issue(&app.state.cfg.jwt_secret, 3600, target).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fresh2 = atoitalk::auth::tokens::issue(&app.state.cfg.jwt_secret, 3600, target).unwrap();
    let r1 = get(
        &app,
        &fresh,
        "/api/media/00000000-0000-0000-0000-000000000000/url",
    )
    .await;
    let r2 = get(
        &app,
        &fresh2,
        "/api/media/00000000-0000-0000-0000-000000000000/url",
    )
    .await;
    assert!(
        [r1.clone(), r2.clone()].contains(&err(403, "Account is temporarily suspended")),
        "{r1:?} {r2:?}"
    );

    // Permanent ban with the same reason twice: the second is a no-op.
    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": target, "reason": "final", "duration_hours": 0})
        )
        .await,
        ok()
    );
    friend_ws.expect_event("user.banned").await;
    let until: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT banned_until FROM users WHERE id = $1")
            .bind(target)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(until.is_none());
    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": target, "reason": "final"})
        )
        .await,
        ok()
    );
    friend_ws
        .expect_no_event("user.banned", Duration::from_millis(300))
        .await;
}

/// The banned user connected to another instance also gets the event first.
#[tokio::test]
async fn ban_reaches_other_instances_before_the_close() {
    let app = TestApp::spawn().await;
    let other = app.second_instance().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (target, target_t) = app.make_user("Target").await;
    let mut ws = other.ws(&target_t).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": target, "reason": "abuse"})
        )
        .await,
        ok()
    );
    let (events, code) = drain_until_closed(&mut ws).await;
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("user.banned")),
        "{events:?}"
    );
    assert_eq!(code, Some(4003));
}

#[tokio::test]
async fn unban_user() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (target, _) = app.make_user("Target").await;
    let (friend, friend_t) = app.make_user("Friend").await;
    app.make_private_chat(target, friend).await;
    let mut friend_ws = app.ws(&friend_t).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(
        post(&app, &admin_t, "/api/admin/users/xyz/unban", "").await,
        err(400, "Invalid User ID")
    );
    assert_eq!(
        post(
            &app,
            &admin_t,
            &format!("/api/admin/users/{}/unban", Uuid::now_v7()),
            ""
        )
        .await,
        err(404, "User not found")
    );
    // Not banned: no-op, no event.
    assert_eq!(
        post(
            &app,
            &admin_t,
            &format!("/api/admin/users/{target}/unban"),
            ""
        )
        .await,
        ok()
    );
    friend_ws
        .expect_no_event("user.unbanned", Duration::from_millis(300))
        .await;

    assert_eq!(
        ban(
            &app,
            &admin_t,
            &json!({"target_user_id": target, "reason": "spam"})
        )
        .await,
        ok()
    );
    friend_ws.expect_event("user.banned").await;
    let res = app
        .http
        .post(app.url(&format!("/api/admin/users/{target}/unban")))
        .bearer_auth(&admin_t)
        .send()
        .await
        .unwrap();
    assert_eq!(json(res).await, ok());
    let e = friend_ws.expect_event("user.unbanned").await;
    assert_eq!(e["payload"], json!({"user_id": target}));
    assert_eq!(e["meta"]["sender_id"], admin.to_string());
    let (is_banned, reason, until): (bool, Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT is_banned, ban_reason, banned_until FROM users WHERE id = $1")
            .bind(target)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(!is_banned && reason.is_none() && until.is_none());
    // A new session works again (old ones stay revoked).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fresh = atoitalk::auth::tokens::issue(&app.state.cfg.jwt_secret, 3600, target).unwrap();
    assert_eq!(
        get(&app, &fresh, &format!("/api/media/{}/url", Uuid::now_v7())).await,
        err(404, "Media not found")
    );
}

#[tokio::test]
async fn reset_user_info() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (other_admin, _) = app.make_user("Admin2").await;
    app.make_admin(other_admin).await;
    let (target, target_t) = app.make_user("Rude Name").await;
    let (friend, friend_t) = app.make_user("Friend").await;
    let (_, stranger_t) = app.make_user("Stranger").await;
    app.make_private_chat(target, friend).await;
    let avatar = app
        .upload_media(&target_t, "user_avatar", "a.png", "image/png", b"png")
        .await;
    let avatar_id: Uuid = avatar["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("UPDATE users SET avatar_id = $1, bio = 'bad bio' WHERE id = $2")
        .bind(avatar_id)
        .bind(target)
        .execute(&app.state.db)
        .await
        .unwrap();
    let path = format!("/api/admin/users/{target}/reset");

    assert_eq!(
        post(&app, &admin_t, &path, "").await,
        err(400, "Invalid request body")
    );
    assert_eq!(
        post(&app, &admin_t, &path, "{").await,
        err(400, "Invalid request body")
    );
    assert_eq!(
        post(&app, &admin_t, &path, r#"{"reset_bio":"yes"}"#).await,
        err(400, "Invalid request body")
    );
    assert_eq!(
        post(&app, &admin_t, "/api/admin/users/bad/reset", "").await,
        err(400, "Invalid request body")
    );
    assert_eq!(
        post(&app, &admin_t, "/api/admin/users/bad/reset", "{}").await,
        err(400, "Invalid user ID URL")
    );
    assert_eq!(
        post(
            &app,
            &admin_t,
            &format!("/api/admin/users/{}/reset", Uuid::nil()),
            "{}"
        )
        .await,
        err(400, "Bad Request")
    );
    assert_eq!(
        post(
            &app,
            &admin_t,
            &format!("/api/admin/users/{}/reset", Uuid::now_v7()),
            r#"{"reset_bio":true}"#
        )
        .await,
        err(404, "User not found")
    );
    assert_eq!(
        post(
            &app,
            &admin_t,
            &format!("/api/admin/users/{other_admin}/reset"),
            r#"{"reset_bio":true}"#
        )
        .await,
        err(403, "Cannot reset info of another admin")
    );

    let mut target_ws = app.ws(&target_t).await;
    let mut friend_ws = app.ws(&friend_t).await;
    let mut stranger_ws = app.ws(&stranger_t).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Nothing to do: no-op, no event (a body target id is ignored).
    assert_eq!(
        post(
            &app,
            &admin_t,
            &path,
            &json!({"target_user_id": friend}).to_string()
        )
        .await,
        ok()
    );
    friend_ws
        .expect_no_event("user.update", Duration::from_millis(300))
        .await;

    assert_eq!(
        post(
            &app,
            &admin_t,
            &path,
            r#"{"reset_avatar":true,"reset_bio":true,"reset_name":true}"#
        )
        .await,
        ok()
    );
    let expected_name = format!("User {}", &target.to_string()[..8]);
    for ws in [&mut target_ws, &mut friend_ws] {
        let e = ws.expect_event("user.update").await;
        assert_eq!(e["payload"]["id"], target.to_string());
        assert_eq!(e["payload"]["full_name"], expected_name);
        assert_eq!(e["payload"]["bio"], "");
        assert_eq!(e["payload"]["avatar"], "");
        assert!(e["payload"]["username"]
            .as_str()
            .unwrap()
            .starts_with("rude"));
        assert!(e["payload"].get("last_seen_at").is_none());
        assert_eq!(e["meta"]["sender_id"], target.to_string());
    }
    stranger_ws
        .expect_no_event("user.update", Duration::from_millis(300))
        .await;
    let (name, bio, av): (Option<String>, Option<String>, Option<Uuid>) =
        sqlx::query_as("SELECT full_name, bio, avatar_id FROM users WHERE id = $1")
            .bind(target)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(
        (name.as_deref(), bio, av),
        (Some(expected_name.as_str()), None, None)
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM media WHERE id = $1")
        .bind(avatar_id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(kept, 1, "the avatar media row stays for the cleanup job");

    // Again: nothing left to change.
    assert_eq!(
        post(
            &app,
            &admin_t,
            &path,
            r#"{"RESET_AVATAR":true,"reset_bio":true,"reset_name":true}"#
        )
        .await,
        ok()
    );
    friend_ws
        .expect_no_event("user.update", Duration::from_millis(300))
        .await;
}

// ---------------------------------------------------------------------------
// Admin groups
// ---------------------------------------------------------------------------

#[tokio::test]
async fn group_list_and_detail() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (a, _) = app.make_user("Ann").await;
    let (b, _) = app.make_user("Ben").await;
    let (c, _) = app.make_user("Cid").await;
    let (g1chat, g1) = app.make_named_group("Alpha Team", a, &[b, c]).await;
    let (_, g2) = app.make_named_group("Beta_50%", b, &[]).await;
    let (g3chat, _) = app.make_named_group("Gamma", c, &[a]).await;
    sqlx::query("UPDATE chats SET deleted_at = now() WHERE id = $1")
        .bind(g3chat)
        .execute(&app.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET deleted_at = now(), full_name = NULL WHERE id = $1")
        .bind(c)
        .execute(&app.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE group_chats SET is_public = true WHERE id = $1")
        .bind(g2)
        .execute(&app.state.db)
        .await
        .unwrap();

    let (status, p) = get(&app, &admin_t, "/api/admin/groups").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["meta"], json!({"has_next": false, "has_prev": false}));
    let items = p["data"].as_array().unwrap();
    assert_eq!(items.len(), 2, "dissolved groups are not listed");
    assert_eq!(items[0]["id"], g1.to_string());
    assert_eq!(items[0]["chat_id"], g1chat.to_string());
    assert_eq!(items[0]["name"], "Alpha Team");
    assert_eq!(
        items[0]["member_count"], 2,
        "soft-deleted members are not counted"
    );
    assert_eq!(items[0]["is_public"], false);
    assert!(items[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(items[1]["is_public"], true);

    let (_, p) = get(&app, &admin_t, "/api/admin/groups?query=alpha").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    let (_, p) = get(&app, &admin_t, "/api/admin/groups?query=50%25").await;
    assert_eq!(p["data"][0]["id"], g2.to_string());
    let (_, p) = get(&app, &admin_t, "/api/admin/groups?query=_").await;
    assert_eq!(
        p["data"].as_array().unwrap().len(),
        1,
        "wildcards are literal"
    );
    let (_, p) = get(&app, &admin_t, "/api/admin/groups?limit=1").await;
    assert_eq!(p["meta"]["has_next"], true);
    let cursor = p["meta"]["next_cursor"].as_str().unwrap();
    let (_, p2) = get(
        &app,
        &admin_t,
        &format!("/api/admin/groups?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(p2["data"][0]["id"], g2.to_string());
    assert_eq!(p2["meta"]["has_next"], false);
    for q in ["limit=0", "limit=-5", "limit=1000", "cursor=garbage"] {
        let (status, p) = get(&app, &admin_t, &format!("/api/admin/groups?{q}")).await;
        assert_eq!(
            (status, p["data"].as_array().unwrap().len()),
            (200, 2),
            "{q}"
        );
    }
    assert_eq!(
        get(&app, &admin_t, "/api/admin/groups?limit=x").await,
        err(400, "Invalid limit")
    );

    // Detail: members, messages, creator; dissolved groups still shown.
    app.insert_message(g1chat, a, "one").await;
    app.insert_message(g1chat, b, "two").await;
    let (status, d) = get(&app, &admin_t, &format!("/api/admin/groups/{g1chat}")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["data"],
        json!({
            "id": g1, "chat_id": g1chat, "name": "Alpha Team", "description": "", "avatar": "",
            "is_public": false, "creator_id": a, "creator_name": "Ann", "member_count": 2,
            "total_messages": 2, "created_at": d["data"]["created_at"]
        })
    );
    let (status, d) = get(&app, &admin_t, &format!("/api/admin/groups/{g3chat}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        d["data"]["creator_name"],
        Value::Null,
        "soft-deleted creator has no name"
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/groups/99999").await,
        err(400, "Invalid Chat ID")
    );
    assert_eq!(
        get(&app, &admin_t, &format!("/api/admin/groups/{g1}")).await,
        err(404, "Group not found")
    );
}

#[tokio::test]
async fn group_members() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (a, _) = app.make_user("Alpha User").await;
    let (b, _) = app.make_user("Beta User").await;
    let (c, _) = app.make_user("Gamma User").await;
    let (d, _) = app.make_user("Delta User").await;
    let (chat, _) = app.make_named_group("G", a, &[b, c, d]).await;
    sqlx::query(
        "UPDATE users SET deleted_at = now(), full_name = NULL, username = NULL WHERE id = $1",
    )
    .bind(d)
    .execute(&app.state.db)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET is_banned = true WHERE id = $1")
        .bind(c)
        .execute(&app.state.db)
        .await
        .unwrap();
    let path = format!("/api/admin/groups/{chat}/members");

    let (status, p) = get(&app, &admin_t, &path).await;
    assert_eq!(status, 200, "{p}");
    let items = p["data"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["user_id"], a.to_string());
    assert_eq!(items[0]["role"], "owner");
    assert_eq!(items[1]["role"], "member");
    assert_eq!(items[2]["is_banned"], true);
    assert_eq!(items[0]["avatar"], "");
    let joined = items[0]["joined_at"].as_str().unwrap();
    assert!(
        joined.ends_with(" +0000 UTC") && joined.contains(' '),
        "{joined}"
    );
    let (_, p) = get(&app, &admin_t, &format!("{path}?query=beta")).await;
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    assert_eq!(p["data"][0]["full_name"], "Beta User");
    let (_, p) = get(&app, &admin_t, &format!("{path}?query=User")).await;
    assert_eq!(p["data"].as_array().unwrap().len(), 0, "prefix match only");
    let (_, p) = get(&app, &admin_t, &format!("{path}?limit=2")).await;
    assert_eq!(p["meta"]["has_next"], true);
    let cursor = p["meta"]["next_cursor"].as_str().unwrap();
    let (_, p2) = get(&app, &admin_t, &format!("{path}?limit=2&cursor={cursor}")).await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert_eq!(p2["data"][0]["user_id"], c.to_string());
    assert_eq!(p2["meta"]["has_next"], false);
    assert_eq!(
        get(&app, &admin_t, &format!("{path}?cursor=abc")).await,
        err(400, "Invalid cursor format")
    );
    assert_eq!(
        get(&app, &admin_t, &format!("{path}?limit=51")).await,
        err(400, "Bad Request")
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/groups/nope/members").await,
        err(400, "Invalid Chat ID")
    );
    sqlx::query("UPDATE chats SET deleted_at = now() WHERE id = $1")
        .bind(chat)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        get(&app, &admin_t, &path).await,
        err(404, "Group chat not found")
    );
    let _ = b;
}

#[tokio::test]
async fn group_dissolve() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (a, a_t) = app.make_user("Ann").await;
    let (b, b_t) = app.make_user("Ben").await;
    let (_, out_t) = app.make_user("Out").await;
    let (chat, _) = app.make_named_group("G", a, &[b]).await;
    let mut a_ws = app.ws(&a_t).await;
    let mut b_ws = app.ws(&b_t).await;
    let mut out_ws = app.ws(&out_t).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let del = |path: String| {
        let app = &app;
        let t = admin_t.clone();
        async move {
            json(
                app.http
                    .delete(app.url(&path))
                    .bearer_auth(&t)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(
        del("/api/admin/groups/xyz".into()).await,
        err(400, "Invalid Chat ID")
    );
    assert_eq!(
        del(format!("/api/admin/groups/{}", Uuid::now_v7())).await,
        err(404, "Group chat not found")
    );
    assert_eq!(del(format!("/api/admin/groups/{chat}")).await, ok());
    for ws in [&mut a_ws, &mut b_ws] {
        let e = ws.expect_event("chat.delete").await;
        assert_eq!(e["payload"], json!({"chat_id": chat}));
        assert_eq!(e["meta"]["sender_id"], admin.to_string());
    }
    out_ws
        .expect_no_event("chat.delete", Duration::from_millis(300))
        .await;
    let deleted: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT deleted_at FROM chats WHERE id = $1")
            .bind(chat)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(deleted.is_some());
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM group_members gm JOIN group_chats g ON g.id = gm.group_chat_id WHERE g.chat_id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(members, 2, "membership rows stay");
    assert_eq!(
        del(format!("/api/admin/groups/{chat}")).await,
        err(404, "Group chat not found")
    );
}

#[tokio::test]
async fn group_reset() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (owner, owner_t) = app.make_user("Owner").await;
    let (member, member_t) = app.make_user("Member").await;
    let (_, out_t) = app.make_user("Out").await;
    let (chat, group) = app
        .make_named_group("Offensive name", owner, &[member])
        .await;
    let avatar = app
        .upload_media(&owner_t, "group_avatar", "g.png", "image/png", b"png")
        .await;
    let avatar_id: Uuid = avatar["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("UPDATE group_chats SET avatar_id = $1, description = 'bad words', invite_expires_at = now() + interval '7 days' WHERE id = $2")
        .bind(avatar_id)
        .bind(group)
        .execute(&app.state.db)
        .await
        .unwrap();
    let path = format!("/api/admin/groups/{chat}/reset");

    assert_eq!(
        post(&app, &admin_t, "/api/admin/groups/bad/reset", "{").await,
        err(400, "Invalid Chat ID")
    );
    assert_eq!(
        post(&app, &admin_t, &path, "{").await,
        err(400, "Invalid request body")
    );
    assert_eq!(
        post(&app, &admin_t, &path, "").await,
        err(400, "Invalid request body")
    );
    assert_eq!(
        post(&app, &admin_t, &path, r#"{"reset_name":"yes"}"#).await,
        err(400, "Invalid request body")
    );
    let missing = format!("/api/admin/groups/{}/reset", Uuid::now_v7());
    assert_eq!(
        post(&app, &admin_t, &missing, "{}").await,
        ok(),
        "no flags: no-op even for unknown groups"
    );
    assert_eq!(
        post(&app, &admin_t, &missing, r#"{"reset_name":true}"#).await,
        err(404, "Group chat not found")
    );

    let mut owner_ws = app.ws(&owner_t).await;
    let mut member_ws = app.ws(&member_t).await;
    let mut out_ws = app.ws(&out_t).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        post(
            &app,
            &admin_t,
            &path,
            r#"{"reset_name":true,"reset_description":true,"reset_avatar":true}"#
        )
        .await,
        ok()
    );
    let new_name = format!("Group {}", &chat.to_string()[..8]);
    let (name, desc, av): (String, Option<String>, Option<Uuid>) =
        sqlx::query_as("SELECT name, description, avatar_id FROM group_chats WHERE id = $1")
            .bind(group)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), desc.as_deref(), av),
        (new_name.as_str(), Some(""), None)
    );
    let msgs: Vec<(String, Option<Uuid>, Value)> = sqlx::query_as(
        "SELECT type, sender_id, action_data FROM messages WHERE chat_id = $1 ORDER BY id",
    )
    .bind(chat)
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    assert_eq!(
        msgs,
        vec![
            (
                "system_rename".into(),
                Some(admin),
                json!({"old_name": "Offensive name", "new_name": new_name})
            ),
            (
                "system_description".into(),
                Some(admin),
                json!({"old_description": "bad words", "new_description": ""})
            ),
            (
                "system_avatar".into(),
                Some(admin),
                json!({"action": "removed"})
            ),
        ]
    );

    for (ws, role) in [(&mut owner_ws, "owner"), (&mut member_ws, "member")] {
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let e = ws.expect_event("message.new").await;
            assert_eq!(e["meta"]["chat_id"], chat.to_string());
            assert_eq!(e["payload"]["sender_id"], admin.to_string());
            assert_eq!(e["payload"]["sender_name"], "Admin");
            kinds.push(e["payload"]["type"].as_str().unwrap().to_string());
        }
        assert_eq!(
            kinds,
            ["system_rename", "system_description", "system_avatar"]
        );
        let u = ws.expect_event("chat.update").await;
        let p = &u["payload"];
        assert_eq!(p["id"], chat.to_string());
        assert_eq!(p["name"], new_name);
        assert_eq!(p["avatar"], "");
        assert_eq!(p["description"], "");
        assert_eq!(p["my_role"], role);
        assert_eq!(p["member_count"], 2);
        assert_eq!(p["last_message"]["type"], "system_avatar");
        assert_eq!(
            p["invite_code"].is_string(),
            role == "owner",
            "private group: invite code for owner/admin only"
        );
        assert_eq!(p["invite_expires_at"].is_string(), role == "owner");
    }
    out_ws
        .expect_no_event("message.new", Duration::from_millis(300))
        .await;
    let last: Option<Uuid> = sqlx::query_scalar("SELECT last_message_id FROM chats WHERE id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let last_avatar: Uuid =
        sqlx::query_scalar("SELECT id FROM messages WHERE chat_id = $1 AND type = 'system_avatar'")
            .bind(chat)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(last, Some(last_avatar));
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM media WHERE id = $1")
        .bind(avatar_id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(kept, 1);

    // Nothing left to reset: no messages, no events.
    assert_eq!(
        post(
            &app,
            &admin_t,
            &path,
            r#"{"reset_name":true,"reset_description":true,"reset_avatar":true}"#
        )
        .await,
        ok()
    );
    member_ws
        .expect_no_event("message.new", Duration::from_millis(300))
        .await;
    // Dissolved groups cannot be reset.
    sqlx::query("UPDATE chats SET deleted_at = now() WHERE id = $1")
        .bind(chat)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        post(&app, &admin_t, &path, r#"{"reset_name":true}"#).await,
        err(404, "Group chat not found")
    );
    let _ = member;
}

/// Odd input on every media, report and admin endpoint: always a 4xx with
/// the JSON envelope, never a 500.
#[tokio::test]
async fn no_500_on_malformed_input() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (user, user_t) = app.make_user("User").await;
    let (chat, _) = app.make_named_group("G", user, &[]).await;
    let odd_ids = [
        "%FF",
        "%00",
        "..%2F..%2Fetc",
        "1",
        "ffffffff-ffff-ffff-ffff-fffffffffffff",
        "%E2%80%AE",
    ];
    let odd_queries = [
        "query=%00",
        "query=%FF",
        "limit=99999999999999999999",
        "limit=1e3",
        "limit=%00",
        "cursor=%00",
        "cursor=====",
        "status=%00",
        "role=%00",
        "cursor=MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw",
    ];
    let odd_bodies = [
        "", "null", "[]", "\"x\"", "{\"target_user_id\":{}}", "{\"reason\":[1]}", "{\"status\":\"resolved\",\"notes\":\"\\u0000\"}",
        "{\"file_size\":1e400}", "{\"duration_hours\":99999999999999999999}", "{\"usage\":\"user_avatar\",\"original_name\":\"\\u0000\",\"file_size\":1,\"mime_type\":\"image/png\",\"captcha_token\":\"x\"}",
        "{\"target_type\":\"user\",\"reason\":\"\\u0000\",\"target_user_id\":\"00000000-0000-0000-0000-000000000000\"}",
        "{\"target_type\":\"message\",\"reason\":\"r\",\"message_id\":\"\"}",
        "{\"target_user_id\":\"00000000-0000-0000-0000-000000000001\",\"reason\":\"x\\u0000\"}",
    ];
    let mut cases: Vec<(&str, String, String)> = Vec::new();
    for id in odd_ids {
        for (m, p) in [
            ("POST", format!("/api/media/{id}/complete")),
            ("GET", format!("/api/media/{id}/url")),
            ("GET", format!("/api/admin/users/{id}")),
            ("POST", format!("/api/admin/users/{id}/unban")),
            ("POST", format!("/api/admin/users/{id}/reset")),
            ("GET", format!("/api/admin/reports/{id}")),
            ("DELETE", format!("/api/admin/reports/{id}")),
            ("PUT", format!("/api/admin/reports/{id}/resolve")),
            ("GET", format!("/api/admin/groups/{id}")),
            ("GET", format!("/api/admin/groups/{id}/members")),
            ("DELETE", format!("/api/admin/groups/{id}")),
            ("POST", format!("/api/admin/groups/{id}/reset")),
        ] {
            cases.push((m, p, "{}".into()));
        }
    }
    for q in odd_queries {
        for p in [
            "/api/admin/users",
            "/api/admin/reports",
            "/api/admin/groups",
        ] {
            cases.push(("GET", format!("{p}?{q}"), String::new()));
        }
        cases.push((
            "GET",
            format!("/api/admin/groups/{chat}/members?{q}"),
            String::new(),
        ));
    }
    for b in odd_bodies {
        for p in ["/api/media/upload", "/api/reports", "/api/admin/users/ban"] {
            cases.push(("POST", p.to_string(), b.to_string()));
        }
        cases.push((
            "POST",
            format!("/api/admin/users/{user}/reset"),
            b.to_string(),
        ));
        cases.push((
            "POST",
            format!("/api/admin/groups/{chat}/reset"),
            b.to_string(),
        ));
        cases.push((
            "PUT",
            format!("/api/admin/reports/{}/resolve", Uuid::now_v7()),
            b.to_string(),
        ));
    }
    assert!(cases.len() > 150, "{}", cases.len());
    for (i, (method, path, body)) in cases.iter().enumerate() {
        // Media uploads are limited to 20 per minute per user: spread them.
        let token = if path.starts_with("/api/media/upload") {
            app.make_user(&format!("U{i}")).await.1
        } else if path.starts_with("/api/admin") {
            admin_t.clone()
        } else {
            user_t.clone()
        };
        let res = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert!(status < 500, "{method} {path} {body:?} -> {status} {text}");
        if status >= 400 {
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
            assert!(v["error"].is_string(), "{method} {path}: {text}");
        }
    }
}
