//! Integration tests: reports (filing them, and the admin review under
//! `/api/admin/reports`).

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{json, TestApp};

async fn report(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    json(
        app.http
            .post(app.url("/api/reports"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

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

async fn resolve(app: &TestApp, token: &str, id: &str, body: &str) -> (u16, Value) {
    json(
        app.http
            .put(app.url(&format!("/api/admin/reports/{id}/resolve")))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn delete(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    json(
        app.http
            .delete(app.url(&format!("/api/admin/reports/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The newest report of `reporter`.
async fn last_report(app: &TestApp, reporter: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT id FROM reports WHERE reporter_id = $1 ORDER BY id DESC LIMIT 1")
        .bind(reporter)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

fn ok() -> (u16, Value) {
    (200, json!({"data": ""}))
}

fn err(status: u16, msg: &str) -> (u16, Value) {
    (status, json!({"error": msg}))
}

/// A message report snapshots the message and pins its attachments, so the
/// evidence survives the message's deletion; the admin detail presigns the
/// attachment URLs afresh.
#[tokio::test]
async fn message_report_snapshot_survives_deletion() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let chat = app.make_private_chat(alice, bob).await;
    let msg = app.insert_message(chat, bob, "you are awful").await;
    let file = app
        .upload_media(
            &bob_t,
            "message_attachment",
            "proof.txt",
            "text/plain",
            b"evidence bytes",
        )
        .await;
    let media: Uuid = file["id"].as_str().unwrap().parse().unwrap();
    app.attach_media(media, msg).await;

    let res = report(
        &app,
        &alice_t,
        &json!({"target_type": "message", "reason": "  harassment ", "description": " rude ", "message_id": msg}),
    )
    .await;
    assert_eq!(res, ok());
    let id = last_report(&app, alice).await;
    let (status, reason, desc, mid, snap): (String, String, Option<String>, Option<Uuid>, Value) =
        sqlx::query_as("SELECT status, reason, description, message_id, evidence_snapshot FROM reports WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str(), desc.as_deref(), mid),
        ("pending", "harassment", Some("rude"), Some(msg))
    );
    assert_eq!(snap["content"], "you are awful");
    assert_eq!(snap["sender_id"], bob.to_string());
    assert_eq!(snap["sender_name"], "Bob");
    assert_eq!(snap["chat_id"], chat.to_string());
    assert_eq!(snap["chat_type"], "private");
    assert_eq!(snap["is_edited"], false);
    assert!(snap.get("group_id").is_none());
    assert!(chrono::DateTime::parse_from_rfc3339(snap["sent_at"].as_str().unwrap()).is_ok());
    assert_eq!(snap["attachments"][0]["id"], media.to_string());
    assert_eq!(snap["attachments"][0]["original_name"], "proof.txt");
    let pinned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM report_evidence_media WHERE report_id = $1 AND media_id = $2",
    )
    .bind(id)
    .bind(media)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(pinned, 1);

    // The sender deletes the message (tombstone, attachment unlinked).
    sqlx::query("UPDATE messages SET deleted_at = now(), content = NULL WHERE id = $1")
        .bind(msg)
        .execute(&app.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE media SET message_id = NULL WHERE message_id = $1")
        .bind(msg)
        .execute(&app.state.db)
        .await
        .unwrap();

    let (status, d) = get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await;
    assert_eq!(status, 200, "{d}");
    let d = &d["data"];
    assert_eq!(d["id"], id.to_string());
    assert_eq!(d["target_type"], "message");
    assert_eq!(d["target_id"], msg.to_string());
    assert_eq!(d["target_is_deleted"], true);
    assert_eq!(d["target_is_banned"], false);
    assert_eq!(d["reason"], "harassment");
    assert_eq!(d["description"], "rude");
    assert_eq!(d["status"], "pending");
    assert_eq!(d["reporter_id"], alice.to_string());
    assert_eq!(d["reporter_name"], "Alice");
    assert_eq!(d["reporter_avatar"], "");
    assert_eq!(d["reporter_is_deleted"], false);
    assert_eq!(d["reporter_is_banned"], false);
    assert!(d.get("admin_notes").is_none());
    assert_eq!(d["evidence_snapshot"]["content"], "you are awful");
    let url = d["evidence_snapshot"]["attachments"][0]["url"]
        .as_str()
        .unwrap();
    let res = app.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"evidence bytes");
    // ... and the admin may fetch the evidence through the media endpoint.
    assert_eq!(
        get(&app, &admin_t, &format!("/api/media/{media}/url"))
            .await
            .0,
        200
    );
    for key in ["created_at", "updated_at"] {
        let t = d[key].as_str().unwrap();
        assert!(t.ends_with('Z') && !t.contains('.'), "{key}: {t}");
    }

    // The sender's ban shows on message reports.
    sqlx::query("UPDATE users SET is_banned = true WHERE id = $1")
        .bind(bob)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (_, d) = get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await;
    assert_eq!(d["data"]["target_is_banned"], true);
}

/// Every rule of filing a message report.
#[tokio::test]
async fn message_report_rules() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (carol, carol_t) = app.make_user("Carol").await;
    let (_, dave_t) = app.make_user("Dave").await;
    let chat = app.make_private_chat(alice, bob).await;
    let msg = app.insert_message(chat, bob, "hi").await;
    let own = app.insert_message(chat, alice, "mine").await;
    let (gchat, group) = app.make_named_group("Club", bob, &[carol]).await;
    let gmsg = app.insert_message(gchat, bob, "group text").await;

    let bad = err(400, "Bad Request");
    for body in [
        json!({"target_type": "post", "reason": "spam", "message_id": msg}),
        json!({"target_type": "", "reason": "spam", "message_id": msg}),
        json!({"reason": "spam", "message_id": msg}),
        json!({"target_type": "message", "reason": "", "message_id": msg}),
        json!({"target_type": "message", "reason": "   ", "message_id": msg}),
        json!({"target_type": "message", "message_id": msg}),
        json!({"target_type": "message", "reason": "x".repeat(256), "message_id": msg}),
        json!({"target_type": "message", "reason": "spam", "message_id": "not-a-uuid"}),
        json!({"target_type": "message", "reason": "spam", "message_id": 12}),
        json!({"target_type": "message", "reason": "a\u{0}b", "message_id": msg}),
    ] {
        assert_eq!(report(&app, &alice_t, &body).await, bad, "{body}");
    }
    for raw in ["", "{", "invalid-json"] {
        let res = app
            .http
            .post(app.url("/api/reports"))
            .bearer_auth(&alice_t)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(json(res).await, bad, "{raw:?}");
    }
    let res = app
        .http
        .post(app.url("/api/reports"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "message", "reason": "spam"})
        )
        .await,
        err(400, "Message ID is required")
    );
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "message", "reason": "spam", "message_id": Uuid::now_v7()})
        )
        .await,
        err(404, "Message not found")
    );
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "message", "reason": "spam", "message_id": own})
        )
        .await,
        err(400, "You cannot report your own message")
    );
    assert_eq!(
        report(
            &app,
            &dave_t,
            &json!({"target_type": "message", "reason": "spam", "message_id": msg})
        )
        .await,
        err(
            403,
            "You cannot report a message from a chat you are not part of"
        )
    );
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "message", "reason": "spam", "message_id": gmsg})
        )
        .await,
        err(
            403,
            "You cannot report a message from a group you are not part of"
        )
    );
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM reports")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(none, 0);

    // Group member reports a group message; upper-case key, braces UUID form.
    assert_eq!(
        report(&app, &carol_t, &json!({"TARGET_TYPE": "message", "reason": "violence", "message_id": format!("{{{gmsg}}}")})).await,
        ok()
    );
    let snap: Value =
        sqlx::query_scalar("SELECT evidence_snapshot FROM reports WHERE reporter_id = $1")
            .bind(carol)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(snap["chat_type"], "group");
    assert_eq!(snap["group_id"], group.to_string());
    assert_eq!(snap["chat_id"], gchat.to_string());
    assert_eq!(snap["attachments"], json!([]));
    // Deleted messages can still be reported; every call files a new report.
    sqlx::query("UPDATE messages SET deleted_at = now(), content = NULL WHERE id = $1")
        .bind(msg)
        .execute(&app.state.db)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            report(
                &app,
                &alice_t,
                &json!({"target_type": "message", "reason": "spam", "message_id": msg})
            )
            .await,
            ok()
        );
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM reports WHERE reporter_id = $1")
        .bind(alice)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let snap: Value =
        sqlx::query_scalar("SELECT evidence_snapshot FROM reports WHERE reporter_id = $1 LIMIT 1")
            .bind(alice)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(snap["content"], Value::Null);
}

/// Group and user reports.
#[tokio::test]
async fn group_and_user_reports() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (_, dave_t) = app.make_user("Dave").await;
    let (gchat, group) = app.make_named_group("Bad Group", bob, &[alice]).await;
    let avatar = app
        .upload_media(&bob_t, "group_avatar", "g.png", "image/png", b"png")
        .await;
    let avatar_id: Uuid = avatar["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("UPDATE group_chats SET avatar_id = $1 WHERE id = $2")
        .bind(avatar_id)
        .bind(group)
        .execute(&app.state.db)
        .await
        .unwrap();

    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "group", "reason": "spam"})
        )
        .await,
        err(400, "Chat ID is required for group report")
    );
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "group", "reason": "spam", "chat_id": group})
        )
        .await,
        err(404, "Group not found"),
        "the internal group id is not a chat id"
    );
    assert_eq!(
        report(
            &app,
            &dave_t,
            &json!({"target_type": "group", "reason": "spam", "chat_id": gchat})
        )
        .await,
        err(403, "You must be a member of the group to report it")
    );
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "group", "reason": "spam", "chat_id": gchat})
        )
        .await,
        ok()
    );
    let id = last_report(&app, alice).await;
    let (gid, snap): (Option<Uuid>, Value) =
        sqlx::query_as("SELECT group_id, evidence_snapshot FROM reports WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(gid, Some(group));
    assert_eq!(snap["group_id"], group.to_string());
    assert_eq!(snap["chat_id"], gchat.to_string());
    assert_eq!(snap["name"], "Bad Group");
    assert_eq!(snap["description"], "");
    assert_eq!(snap["avatar"], avatar["url"]);
    assert_eq!(snap["created_by"], bob.to_string());
    let pinned: Vec<Uuid> =
        sqlx::query_scalar("SELECT media_id FROM report_evidence_media WHERE report_id = $1")
            .bind(id)
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert_eq!(pinned, vec![avatar_id]);

    // Users.
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "user", "reason": "impersonation"})
        )
        .await,
        err(400, "Target User ID is required")
    );
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "user", "reason": "impersonation", "target_user_id": alice})
        )
        .await,
        err(400, "You cannot report yourself")
    );
    assert_eq!(
        report(&app, &alice_t, &json!({"target_type": "user", "reason": "impersonation", "target_user_id": Uuid::now_v7()})).await,
        err(404, "User not found")
    );
    let uavatar = app
        .upload_media(&bob_t, "user_avatar", "me.png", "image/png", b"me")
        .await;
    let uavatar_id: Uuid = uavatar["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("UPDATE users SET avatar_id = $1, bio = 'hello' WHERE id = $2")
        .bind(uavatar_id)
        .bind(bob)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        report(
            &app,
            &dave_t,
            &json!({"target_type": "user", "reason": "impersonation", "target_user_id": bob})
        )
        .await,
        ok()
    );
    let snap: Value =
        sqlx::query_scalar("SELECT evidence_snapshot FROM reports WHERE target_user_id = $1")
            .bind(bob)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(snap["user_id"], bob.to_string());
    assert_eq!(snap["full_name"], "Bob");
    assert_eq!(snap["bio"], "hello");
    assert_eq!(snap["avatar"], uavatar["url"]);
    assert!(snap["username"].as_str().unwrap().starts_with("bob"));

    // Soft-deleted users can be reported (their fields are null).
    sqlx::query("UPDATE users SET deleted_at = now(), username = NULL, full_name = NULL, email = NULL, bio = NULL, avatar_id = NULL WHERE id = $1")
        .bind(bob)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "user", "reason": "spam", "target_user_id": bob})
        )
        .await,
        ok()
    );
    let snap: Value = sqlx::query_scalar(
        "SELECT evidence_snapshot FROM reports WHERE target_user_id = $1 AND reporter_id = $2",
    )
    .bind(bob)
    .bind(alice)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(snap["full_name"], Value::Null);
    assert_eq!(snap["avatar"], "");
}

/// Admin list: guard, filters, pagination.
#[tokio::test]
async fn admin_list() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (_, bob_t) = app.make_user("Bob").await;
    let (carol, carol_t) = app.make_user("Carol").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    for (token, reason) in [
        (&alice_t, "spam"),
        (&bob_t, "harassment"),
        (&carol_t, "Spam_bot"),
        (&alice_t, "violence"),
    ] {
        assert_eq!(
            report(
                &app,
                token,
                &json!({"target_type": "user", "reason": reason, "target_user_id": admin})
            )
            .await,
            ok()
        );
    }
    let res = app
        .http
        .get(app.url("/api/admin/reports"))
        .bearer_auth(&alice_t)
        .send()
        .await
        .unwrap();
    assert_eq!(json(res).await, err(403, "Admin access required"));
    let res = app
        .http
        .get(app.url("/api/admin/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let res = app
        .http
        .get(app.url("/api/admin/reports"))
        .bearer_auth(&admin_t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-limit"], "1000");
    let (status, page) = json(res).await;
    assert_eq!(status, 200);
    let reasons: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["violence", "Spam_bot", "harassment", "spam"],
        "newest first"
    );
    assert_eq!(page["meta"], json!({"has_next": false, "has_prev": false}));
    let first = &page["data"][0];
    assert_eq!(first["reporter_name"], "Alice");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["target_type"], "user");
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));

    // Substring of the reason (case-insensitive), LIKE wildcards literal.
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?query=SPAM").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 2);
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?query=m_b").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?query=%25").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 0);
    // Reporter name prefix.
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?query=car").await;
    assert_eq!(p["data"][0]["reason"], "Spam_bot");
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?query=arol").await;
    assert_eq!(
        p["data"].as_array().unwrap().len(),
        0,
        "reporter match is a prefix"
    );

    // Pagination.
    let (_, p1) = get(&app, &admin_t, "/api/admin/reports?limit=3").await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 3);
    assert_eq!(p1["meta"]["has_next"], true);
    let cursor = p1["meta"]["next_cursor"].as_str().unwrap();
    let (_, p2) = get(
        &app,
        &admin_t,
        &format!("/api/admin/reports?limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert_eq!(p2["data"][0]["reason"], "spam");
    assert_eq!(p2["meta"], json!({"has_next": false, "has_prev": false}));
    let (status, p) = get(
        &app,
        &admin_t,
        "/api/admin/reports?cursor=bukan-base64-valid",
    )
    .await;
    assert_eq!((status, p["data"].as_array().unwrap().len()), (200, 4));

    // Status filter.
    let last = last_report(&app, carol).await;
    sqlx::query("UPDATE reports SET status = 'rejected' WHERE id = $1")
        .bind(last)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?status=rejected").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?status=pending").await;
    assert_eq!(p["data"].as_array().unwrap().len(), 3);

    // Validation.
    assert_eq!(
        get(&app, &admin_t, "/api/admin/reports?status=open").await,
        err(400, "Bad Request")
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/reports?limit=abc").await,
        err(400, "Invalid limit")
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/reports?limit=51").await,
        err(400, "Bad Request")
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/reports?limit=-1").await,
        err(400, "Bad Request")
    );
    assert_eq!(
        get(
            &app,
            &admin_t,
            &format!("/api/admin/reports?query={}", "q".repeat(101))
        )
        .await,
        err(400, "Bad Request")
    );

    // A reporter who deleted their account shows as "Deleted User".
    sqlx::query("UPDATE users SET deleted_at = now(), full_name = NULL WHERE id = $1")
        .bind(alice)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (_, p) = get(&app, &admin_t, "/api/admin/reports?limit=1").await;
    assert_eq!(p["data"][0]["reporter_name"], "Deleted User");
    let id = p["data"][0]["id"].as_str().unwrap();
    let (_, d) = get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await;
    assert_eq!(d["data"]["reporter_name"], "Deleted User");
    assert_eq!(d["data"]["reporter_is_deleted"], true);
}

/// Admin detail guard and errors; group report detail.
#[tokio::test]
async fn admin_detail() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, _) = app.make_user("Bob").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let (gchat, group) = app.make_named_group("G", bob, &[alice]).await;
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "group", "reason": "spam", "chat_id": gchat})
        )
        .await,
        ok()
    );
    let id = last_report(&app, alice).await;

    assert_eq!(
        get(&app, &alice_t, &format!("/api/admin/reports/{id}")).await,
        err(403, "Admin access required")
    );
    assert_eq!(
        get(&app, &admin_t, "/api/admin/reports/xyz").await,
        err(400, "Invalid Report ID")
    );
    assert_eq!(
        get(
            &app,
            &admin_t,
            &format!("/api/admin/reports/{}", Uuid::now_v7())
        )
        .await,
        err(404, "Report not found")
    );
    let (status, d) = get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(d["data"]["target_id"], group.to_string());
    assert_eq!(d["data"]["target_is_deleted"], false);
    assert_eq!(d["data"]["target_is_banned"], false);
    assert!(d["data"].get("description").is_none());
    assert_eq!(d["data"]["evidence_snapshot"]["chat_id"], gchat.to_string());
    // Dissolved group → target deleted.
    sqlx::query("UPDATE chats SET deleted_at = now() WHERE id = $1")
        .bind(gchat)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (_, d) = get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await;
    assert_eq!(d["data"]["target_is_deleted"], true);
    // Hard-deleted reporter → nil id.
    sqlx::query("UPDATE reports SET reporter_id = NULL WHERE id = $1")
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (_, d) = get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await;
    assert_eq!(d["data"]["reporter_id"], Uuid::nil().to_string());
    assert_eq!(d["data"]["reporter_name"], "Deleted User");
    assert_eq!(d["data"]["reporter_is_deleted"], true);
}

/// Resolving a message report takes the message down and tells the chat;
/// rejecting does nothing to it; notes and resolver are stored.
#[tokio::test]
async fn resolve_reports() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (carol, carol_t) = app.make_user("Carol").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let chat = app.make_private_chat(alice, bob).await;
    let msg = app.insert_message(chat, bob, "bad words").await;
    let file = app
        .upload_media(&bob_t, "message_attachment", "x.txt", "text/plain", b"x")
        .await;
    let media: Uuid = file["id"].as_str().unwrap().parse().unwrap();
    app.attach_media(media, msg).await;
    sqlx::query("UPDATE private_chats SET user1_unread_count = 3, user2_unread_count = 3 WHERE chat_id = $1")
        .bind(chat)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "message", "reason": "harassment", "message_id": msg})
        )
        .await,
        ok()
    );
    let id = last_report(&app, alice).await.to_string();
    assert_eq!(
        report(
            &app,
            &carol_t,
            &json!({"target_type": "user", "reason": "spam", "target_user_id": bob})
        )
        .await,
        ok()
    );
    let user_report = last_report(&app, carol).await.to_string();

    // Guard, path, body, status, existence.
    assert_eq!(
        resolve(&app, &alice_t, &id, r#"{"status":"resolved"}"#).await,
        err(403, "Admin access required")
    );
    assert_eq!(
        resolve(&app, &admin_t, "nope", r#"{"status":"resolved"}"#).await,
        err(400, "Invalid Report ID")
    );
    assert_eq!(
        resolve(&app, &admin_t, "nope", "{").await,
        err(400, "Invalid Report ID")
    );
    for body in [
        "{",
        "",
        r#"{"status":"pending"}"#,
        r#"{"status":"reviewed"}"#,
        "{}",
        r#"{"status":5}"#,
    ] {
        assert_eq!(
            resolve(&app, &admin_t, &id, body).await,
            err(400, "Bad Request"),
            "{body}"
        );
    }
    assert_eq!(
        resolve(
            &app,
            &admin_t,
            &Uuid::now_v7().to_string(),
            r#"{"status":"resolved"}"#
        )
        .await,
        err(404, "Report not found")
    );

    let mut alice_ws = app.ws(&alice_t).await;
    let mut bob_ws = app.ws(&bob_t).await;
    let mut carol_ws = app.ws(&carol_t).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Rejecting a user report: stored, no side effects.
    assert_eq!(
        resolve(
            &app,
            &admin_t,
            &user_report,
            r#"{"status":"rejected","notes":"  not abuse "}"#
        )
        .await,
        ok()
    );
    let (status, notes, by): (String, Option<String>, Option<Uuid>) = sqlx::query_as(
        "SELECT status, resolution_notes, resolved_by_id FROM reports WHERE id = $1::uuid",
    )
    .bind(&user_report)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), notes.as_deref(), by),
        ("rejected", Some("not abuse"), Some(admin))
    );
    let banned: bool = sqlx::query_scalar("SELECT is_banned FROM users WHERE id = $1")
        .bind(bob)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(!banned);

    // Resolving the message report.
    assert_eq!(
        resolve(
            &app,
            &admin_t,
            &id,
            r#"{"status":"resolved","notes":"Done"}"#
        )
        .await,
        ok()
    );
    for ws in [&mut alice_ws, &mut bob_ws] {
        let e = ws.expect_event("message.delete").await;
        assert_eq!(e["payload"], json!({"message_id": msg}));
        assert_eq!(e["meta"]["chat_id"], chat.to_string());
        assert_eq!(e["meta"]["sender_id"], Uuid::nil().to_string());
        assert_eq!(e["meta"]["unread_count"], 3);
    }
    carol_ws
        .expect_no_event("message.delete", Duration::from_millis(300))
        .await;
    let (content, deleted): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT content, deleted_at FROM messages WHERE id = $1")
            .bind(msg)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(content.is_none() && deleted.is_some());
    let linked: Option<Uuid> = sqlx::query_scalar("SELECT message_id FROM media WHERE id = $1")
        .bind(media)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(linked.is_none());
    let (_, d) = get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await;
    assert_eq!(d["data"]["status"], "resolved");
    assert_eq!(d["data"]["admin_notes"], "Done");
    assert_eq!(d["data"]["target_is_deleted"], true);
    assert_eq!(d["data"]["evidence_snapshot"]["content"], "bad words");

    // Same status: no-op (notes ignored); flipping and back does not re-send.
    assert_eq!(
        resolve(
            &app,
            &admin_t,
            &id,
            r#"{"status":"resolved","notes":"again"}"#
        )
        .await,
        ok()
    );
    let notes: Option<String> =
        sqlx::query_scalar("SELECT resolution_notes FROM reports WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(notes.as_deref(), Some("Done"));
    assert_eq!(
        resolve(&app, &admin_t, &id, r#"{"status":"rejected"}"#).await,
        ok()
    );
    assert_eq!(
        resolve(&app, &admin_t, &id, r#"{"STATUS":"resolved"}"#).await,
        ok()
    );
    alice_ws
        .expect_no_event("message.delete", Duration::from_millis(300))
        .await;
}

/// Deleting reports: only decided ones; evidence links go, media rows stay.
#[tokio::test]
async fn delete_reports() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let chat = app.make_private_chat(alice, bob).await;
    let msg = app.insert_message(chat, bob, "x").await;
    let file = app
        .upload_media(&bob_t, "message_attachment", "x.txt", "text/plain", b"x")
        .await;
    let media: Uuid = file["id"].as_str().unwrap().parse().unwrap();
    app.attach_media(media, msg).await;
    assert_eq!(
        report(
            &app,
            &alice_t,
            &json!({"target_type": "message", "reason": "spam", "message_id": msg})
        )
        .await,
        ok()
    );
    let id = last_report(&app, alice).await.to_string();

    assert_eq!(
        delete(&app, &alice_t, &id).await,
        err(403, "Admin access required")
    );
    assert_eq!(
        delete(&app, &admin_t, "1234").await,
        err(400, "Invalid Report ID")
    );
    assert_eq!(
        delete(&app, &admin_t, &Uuid::now_v7().to_string()).await,
        err(404, "Report not found")
    );
    assert_eq!(
        delete(&app, &admin_t, &id).await,
        err(400, "Cannot delete report that is not resolved or rejected")
    );
    assert_eq!(
        resolve(&app, &admin_t, &id, r#"{"status":"rejected"}"#).await,
        ok()
    );
    assert_eq!(delete(&app, &admin_t, &id).await, ok());
    assert_eq!(
        get(&app, &admin_t, &format!("/api/admin/reports/{id}")).await,
        err(404, "Report not found")
    );
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM report_evidence_media")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(links, 0);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM media WHERE id = $1")
        .bind(media)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    assert_eq!(
        delete(&app, &admin_t, &id).await,
        err(404, "Report not found")
    );
}
