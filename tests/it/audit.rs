//! Integration tests: the admin audit log (issue 19). Every admin action
//! leaves one entry, `GET /api/admin/audit` filters and pages them, and
//! only admins may read it.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{json, TestApp};

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

async fn audit(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    call(
        app,
        reqwest::Method::GET,
        token,
        &format!("/api/admin/audit?{query}"),
        None,
    )
    .await
}

fn actions(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_admin_action_is_audited_and_listed() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (other_admin, other_t) = app.make_user("Other").await;
    app.make_admin(other_admin).await;
    let (target, _) = app.make_user("Target").await;
    let (owner, _) = app.make_user("Owner").await;
    let (reporter, reporter_t) = app.make_user("Reporter").await;
    let group = app.make_group(owner, &[target, reporter]).await;
    let post = reqwest::Method::POST;

    let (s, b) = call(
        &app,
        post.clone(),
        &admin_t,
        "/api/admin/users/ban",
        Some(json!({"target_user_id": target, "reason": "spam", "duration_hours": 2})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = call(
        &app,
        post.clone(),
        &admin_t,
        &format!("/api/admin/users/{target}/unban"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Nothing to lift any more: still an action, marked as no change.
    let (s, _) = call(
        &app,
        post.clone(),
        &admin_t,
        &format!("/api/admin/users/{target}/unban"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &app,
        post.clone(),
        &other_t,
        &format!("/api/admin/users/{target}/reset"),
        Some(json!({"reset_name": true})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = call(
        &app,
        post.clone(),
        &reporter_t,
        "/api/reports",
        Some(json!({"target_type": "group", "reason": "spam", "chat_id": group})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let report: Uuid = sqlx::query_scalar("SELECT id FROM reports WHERE reporter_id = $1")
        .bind(reporter)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let (s, _) = call(
        &app,
        reqwest::Method::PUT,
        &admin_t,
        &format!("/api/admin/reports/{report}/resolve"),
        Some(json!({"status": "rejected"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &app,
        reqwest::Method::DELETE,
        &admin_t,
        &format!("/api/admin/reports/{report}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &app,
        reqwest::Method::DELETE,
        &other_t,
        &format!("/api/admin/groups/{group}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // A refused action (the target is an admin) changes nothing and is not an entry.
    let (s, _) = call(
        &app,
        post.clone(),
        &admin_t,
        "/api/admin/users/ban",
        Some(json!({"target_user_id": other_admin, "reason": "x"})),
    )
    .await;
    assert_eq!(s, 403);

    let (s, all) = audit(&app, &admin_t, "").await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(
        actions(&all),
        [
            "group.dissolve",
            "report.delete",
            "report.resolve",
            "user.reset",
            "user.unban",
            "user.unban",
            "user.ban"
        ],
        "newest first"
    );
    assert_eq!(all["meta"]["has_next"], false);
    let ban = &all["data"][6];
    assert_eq!(ban["admin_id"], admin.to_string());
    assert_eq!(ban["target_type"], "user");
    assert_eq!(ban["target_id"], target.to_string());
    assert_eq!(
        ban["detail"],
        json!({"reason": "spam", "duration_hours": 2})
    );
    assert!(ban["created_at"].as_str().unwrap().ends_with('Z'), "{ban}");
    assert!(Uuid::parse_str(ban["id"].as_str().unwrap()).is_ok());
    assert_eq!(all["data"][5]["detail"], json!({}));
    assert_eq!(all["data"][4]["detail"], json!({"changed": false}));
    assert_eq!(
        all["data"][3]["detail"],
        json!({"bio": false, "name": true, "avatar": false})
    );
    assert_eq!(all["data"][2]["detail"]["status"], "rejected");
    assert_eq!(all["data"][2]["target_type"], "report");
    assert_eq!(all["data"][0]["target_type"], "group");
    assert_eq!(all["data"][0]["target_id"], group.to_string());

    // Filters.
    let (_, b) = audit(&app, &admin_t, &format!("admin_id={other_admin}")).await;
    assert_eq!(actions(&b), ["group.dissolve", "user.reset"]);
    let (_, b) = audit(&app, &admin_t, "action=user.unban").await;
    assert_eq!(actions(&b), ["user.unban", "user.unban"]);
    let (_, b) = audit(&app, &admin_t, &format!("target_id={report}")).await;
    assert_eq!(actions(&b), ["report.delete", "report.resolve"]);
    let (_, b) = audit(
        &app,
        &admin_t,
        &format!("target_id={target}&action=user.ban"),
    )
    .await;
    assert_eq!(actions(&b), ["user.ban"]);
    let (_, b) = audit(&app, &admin_t, "since=2100-01-01T00:00:00Z").await;
    assert_eq!(actions(&b), Vec::<String>::new());
    let (_, b) = audit(&app, &admin_t, "until=2000-01-01T00:00:00%2B02:00").await;
    assert_eq!(actions(&b), Vec::<String>::new());
    let (_, b) = audit(
        &app,
        &admin_t,
        "since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(actions(&b).len(), 7);

    // Keyset pages of 3: every entry once, in order.
    let mut seen = Vec::new();
    let mut query = "limit=3".to_string();
    loop {
        let (s, page) = audit(&app, &admin_t, &query).await;
        assert_eq!(s, 200, "{page}");
        assert!(page["data"].as_array().unwrap().len() <= 3);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        if page["meta"]["has_next"] == false {
            assert!(page["meta"].get("next_cursor").is_none());
            break;
        }
        let cursor = page["meta"]["next_cursor"].as_str().unwrap();
        query = format!("limit=3&cursor={}", urlencode(cursor));
    }
    let ids: Vec<Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(seen, ids);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn audit_log_is_for_admins_and_checks_its_query() {
    let app = TestApp::spawn().await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (_, user_t) = app.make_user("User").await;

    assert_eq!(
        audit(&app, &user_t, "").await,
        (403, json!({"error": "Admin access required"}))
    );
    let anon = json(
        app.http
            .get(app.url("/api/admin/audit"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(anon.0, 401);

    for (query, message) in [
        ("cursor=bm90LWEtdXVpZA%3D%3D", "Invalid cursor format"),
        ("cursor=%25%25%25", "Invalid cursor format"),
        ("admin_id=nope", "Invalid admin_id"),
        ("target_id=123", "Invalid target_id"),
        ("since=yesterday", "Invalid since: expected RFC 3339"),
        (
            "until=2026-13-01T00:00:00Z",
            "Invalid until: expected RFC 3339",
        ),
        ("limit=abc", "Invalid limit"),
        ("limit=51", "Bad Request"),
    ] {
        assert_eq!(
            audit(&app, &admin_t, query).await,
            (400, json!({"error": message})),
            "{query}"
        );
    }
    let long = "a".repeat(65);
    assert_eq!(
        audit(&app, &admin_t, &format!("action={long}")).await.0,
        400
    );
    // An empty log is an empty page.
    let (s, b) = audit(&app, &admin_t, "").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"], json!([]));
    assert_eq!(b["meta"]["has_next"], false);
}
