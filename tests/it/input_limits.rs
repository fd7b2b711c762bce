//! Integration tests of input hardening (issue 15, D13–D14): crafted
//! cursors never reach the database as values it refuses, and display
//! names and free-text fields are checked before they are stored.

use base64::Engine;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::harness::{json, TestApp};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// Cursors built to hit every decoder's edges, then random ones.
fn crafted_cursors() -> Vec<String> {
    let id = Uuid::now_v7();
    let mut plain: Vec<Vec<u8>> = Vec::new();
    for number in [
        "-8000000000000000000",
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999999999999999",
        "-1",
        "0",
        "253402300800000000",
        "-62135596800000001",
    ] {
        plain.push(format!("{number},{id}").into_bytes());
        plain.push(format!("{number}|||{id}").into_bytes());
    }
    for time in [
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999-23:59",
        "0000-01-01T00:00:00+23:59",
        "2026-13-45T99:99:99Z",
    ] {
        plain.push(format!("{time}|{id}").into_bytes());
    }
    for text in [
        format!("a\0b|||{id}"),
        format!("\0|||{id}"),
        format!("{}|||{id}", "x".repeat(5000)),
        format!("name|||{}", &id.to_string()[..35]),
        format!("{id}\0"),
        "\0".into(),
        format!("2026-01-01T00:00:00Z|{id}|x"),
        format!("1,{id},x"),
        "|||".into(),
        String::new(),
    ] {
        plain.push(text.into_bytes());
    }
    plain.push(vec![0xff, 0xfe, b'|', b'|', b'|']);
    let mut out: Vec<String> = plain.iter().map(|p| b64(p)).collect();
    out.extend(
        ["bukan-base64-valid", "%%%", "====", "YQ", "\u{0}", "a b"]
            .iter()
            .map(|s| s.to_string()),
    );
    // Random bytes, and random text around the delimiters.
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    for _ in 0..30 {
        let len = rng.gen_range(0..80);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        out.push(b64(&bytes));
        let n: i64 = rng.gen();
        let sep = ["|||", "|", ","][rng.gen_range(0..3)];
        out.push(b64(format!("{n}{sep}{}", Uuid::new_v4()).as_bytes()));
    }
    out
}

async fn clear_limits(app: &TestApp, user: Uuid) {
    let mut c = app.state.redis.conn();
    for bucket in ["general_read", "auth_verify", "admin_action"] {
        let _: () = redis::cmd("DEL")
            .arg(
                app.state
                    .redis
                    .key(&format!("ratelimit:user:{bucket}:{user}")),
            )
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn crafted_cursors_never_cause_a_5xx() {
    let app = TestApp::spawn().await;
    let (admin, token) = app.make_user("Cursor Admin").await;
    app.make_admin(admin).await;
    let (other, _) = app.make_user("Cursor Other").await;
    let chat = app.make_group(admin, &[other]).await;
    app.insert_message(chat, admin, "hello").await;
    // Every list that takes a cursor (the contract's `cursor` parameters).
    let lists = [
        "/api/chats".to_string(),
        "/api/chats/group/public".into(),
        "/api/chats/group/public?sort_by=member_count".into(),
        format!("/api/chats/group/{chat}/members"),
        format!("/api/chats/{chat}/messages"),
        format!("/api/chats/{chat}/messages?direction=newer"),
        "/api/users".into(),
        "/api/users/blocked".into(),
        "/api/admin/users".into(),
        "/api/admin/groups".into(),
        format!("/api/admin/groups/{chat}/members"),
        "/api/admin/reports".into(),
    ];
    let cursors = crafted_cursors();
    for list in &lists {
        clear_limits(&app, admin).await;
        for cursor in &cursors {
            let (status, body) = list_page(&app, &token, list, cursor).await;
            assert!(status < 500, "{list} ({cursor:?}): {status} {body}");
            if status >= 400 {
                assert!(body["error"].is_string(), "{list}: {body}");
            }
        }
    }
    // The three examples answer a precise 400.
    let id = Uuid::now_v7();
    for (list, plain) in [
        ("/api/chats", format!("-8000000000000000000,{id}")),
        ("/api/chats/group/public", format!("a\0b|||{id}")),
        (
            "/api/chats/group/public?sort_by=member_count",
            format!("-9223372036854775808|||{id}"),
        ),
    ] {
        let (status, body) = list_page(&app, &token, list, &b64(plain.as_bytes())).await;
        assert_eq!(
            (status, &body),
            (400, &serde_json::json!({"error": "Invalid cursor format"})),
            "{list}"
        );
    }
}

/// `GET list` with `cursor` added to its query.
async fn list_page(
    app: &TestApp,
    token: &str,
    list: &str,
    cursor: &str,
) -> (u16, serde_json::Value) {
    let sep = if list.contains('?') { '&' } else { '?' };
    let cursor: String = url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
    let url = format!("{list}{sep}cursor={cursor}");
    json(
        app.authed(reqwest::Method::GET, &url, token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// D14: display names and free text
// ---------------------------------------------------------------------------------------------

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    json(
        app.authed(method, path, token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn control_characters_and_oversized_text_are_refused() {
    use reqwest::Method;
    use serde_json::json as j;
    let app = TestApp::spawn().await;
    let (me, token) = app.make_user("Texter").await;
    let (other, _) = app.make_user("Other Texter").await;
    let chat = app.make_group(me, &[other]).await;
    let bad_request = j!({"error": "Bad Request"});
    for name in ["Bell\u{7}Group", "Esc\u{1b}[31mGroup", "Two\nLines"] {
        let create = j!({"name": name, "member_ids": [other]});
        let res = send(&app, Method::POST, "/api/chats/group", &token, create).await;
        assert_eq!(res, (400, bad_request.clone()), "create {name:?}");
        let path = format!("/api/chats/group/{chat}");
        let res = send(&app, Method::PUT, &path, &token, j!({"name": name})).await;
        assert_eq!(res, (400, bad_request.clone()), "rename {name:?}");
        let profile = j!({"full_name": name});
        let res = send(&app, Method::PUT, "/api/user/profile", &token, profile).await;
        assert_eq!(res, (400, bad_request.clone()), "full name {name:?}");
    }
    let path = format!("/api/chats/group/{chat}");
    let res = send(
        &app,
        Method::PUT,
        &path,
        &token,
        j!({"description": "a\u{1b}b"}),
    )
    .await;
    assert_eq!(res, (400, bad_request.clone()), "description");
    let bio = j!({"full_name": "Texter", "bio": "bell\u{7}"});
    let res = send(&app, Method::PUT, "/api/user/profile", &token, bio).await;
    assert_eq!(res, (400, bad_request.clone()), "bio");
    // Line breaks stay fine in free text.
    let res = send(
        &app,
        Method::PUT,
        &path,
        &token,
        j!({"description": "line\nbreak"}),
    )
    .await;
    assert_eq!(res.0, 200, "{}", res.1);
    let stored: Vec<String> = sqlx::query_scalar("SELECT name FROM group_chats")
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|n| !n.chars().any(char::is_control)),
        "{stored:?}"
    );

    // Report descriptions are capped (documented as maxLength 1000).
    let report = |description: String| j!({"target_type": "user", "target_user_id": other, "reason": "spam", "description": description});
    for (len, status) in [(99_000, 400), (1001, 400), (1000, 200)] {
        let res = send(
            &app,
            Method::POST,
            "/api/reports",
            &token,
            report("x".repeat(len)),
        )
        .await;
        assert_eq!(res.0, status, "{len}: {}", res.1);
        if status == 400 {
            assert_eq!(res.1, bad_request);
        }
    }
    let reports: i64 = sqlx::query_scalar("SELECT count(*) FROM reports")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(reports, 1);
    let (status, doc) = json(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let schema = &doc["components"]["schemas"]["model.CreateReportRequest"]["properties"];
    assert_eq!(schema["description"]["maxLength"], 1000, "{schema}");
}
