//! Integration tests: media (presigned upload, complete, read URLs) against
//! the local-directory backend and the S3-compatible test server.

use std::collections::HashMap;

use atoitalk::infra::storage::{Bucket, Op, SignedRequest};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{self, json, TestApp};

fn body(usage: &str, name: &str, size: u64, mime: &str) -> Value {
    json!({"usage": usage, "original_name": name, "file_size": size,
           "mime_type": mime, "captcha_token": "dummy-token"})
}

async fn upload(app: &TestApp, token: &str, req: &Value) -> (u16, Value) {
    json(
        app.http
            .post(app.url("/api/media/upload"))
            .bearer_auth(token)
            .json(req)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn raw_upload(app: &TestApp, token: &str, raw: &str) -> (u16, Value) {
    json(
        app.http
            .post(app.url("/api/media/upload"))
            .bearer_auth(token)
            .body(raw.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn complete(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    json(
        app.http
            .post(app.url(&format!("/api/media/{id}/complete")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn media_url(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    json(
        app.http
            .get(app.url(&format!("/api/media/{id}/url")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn put(app: &TestApp, url: &str, mime: &str, bytes: &[u8]) -> u16 {
    app.http
        .put(url)
        .header("Content-Type", mime)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn key_ok(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

async fn status_of(app: &TestApp, id: &str) -> (String, Option<chrono::DateTime<chrono::Utc>>) {
    sqlx::query_as("SELECT upload_status, completed_at FROM media WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

/// The whole flow with the local backend: upload, PUT, complete, download.
#[tokio::test]
async fn local_attachment_flow() {
    let app = TestApp::spawn().await;
    let (me, token) = app.make_user("Alice").await;
    let bytes = b"%PDF-1.4 not really a pdf".to_vec();
    let res = app
        .http
        .post(app.url("/api/media/upload"))
        .bearer_auth(&token)
        .json(&body(
            "message_attachment",
            "  Report.PDF ",
            bytes.len() as u64,
            " Application/PDF ",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-limit"], "20");
    let (status, b) = json(res).await;
    assert_eq!(status, 200, "{b}");
    let d = &b["data"];
    let m = &d["media"];
    assert_eq!(m["original_name"], "Report.PDF");
    assert_eq!(m["mime_type"], "application/pdf");
    assert_eq!(m["category"], "message_attachment");
    assert_eq!(m["upload_status"], "pending");
    assert_eq!(m["file_size"], bytes.len());
    assert_eq!(m["url"], "", "attachments have no URL before completion");
    let file_name = m["file_name"].as_str().unwrap();
    assert!(
        file_name.ends_with(".pdf") && key_ok(file_name),
        "{file_name}"
    );
    let (nanos, rest) = file_name.split_once('-').unwrap();
    assert!(nanos.parse::<u64>().is_ok(), "{file_name}");
    assert!(Uuid::parse_str(&rest[..36]).is_ok(), "{file_name}");
    assert_eq!(d["upload_method"], "PUT");
    assert_eq!(
        d["upload_headers"],
        json!({"Content-Type": "application/pdf"})
    );
    // expires_at is the stored upload_expires_at, 15 minutes ahead.
    let expires = chrono::DateTime::parse_from_rfc3339(d["expires_at"].as_str().unwrap()).unwrap();
    let stored: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT upload_expires_at FROM media WHERE id = $1::uuid")
            .bind(m["id"].as_str().unwrap())
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(expires, stored);
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left > chrono::Duration::minutes(14) && left <= chrono::Duration::minutes(15));
    let upload_url = d["upload_url"].as_str().unwrap();
    assert!(
        upload_url.starts_with(&app.url("/storage/private/")),
        "{upload_url}"
    );
    let id = m["id"].as_str().unwrap();

    // Completing before the bytes are there fails and changes nothing.
    let (status, e) = complete(&app, &token, id).await;
    assert_eq!(
        (status, e),
        (400, json!({"error": "Uploaded object not found"}))
    );
    assert_eq!(status_of(&app, id).await.0, "pending");

    // Wrong type or wrong length are refused by the signature.
    assert_eq!(put(&app, upload_url, "text/html", &bytes).await, 403);
    assert_eq!(
        put(&app, upload_url, "application/pdf", &bytes[1..]).await,
        403
    );
    assert_eq!(put(&app, upload_url, "application/pdf", &bytes).await, 200);

    let (status, done) = complete(&app, &token, id).await;
    assert_eq!(status, 200, "{done}");
    let done = &done["data"];
    assert_eq!(done["upload_status"], "completed");
    assert_eq!(done["id"], id);
    let (st, completed_at) = status_of(&app, id).await;
    assert_eq!(st, "completed");
    assert!(completed_at.is_some());
    let get_url = done["url"].as_str().unwrap();
    let res = app.http.get(get_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // Only once.
    let (status, e) = complete(&app, &token, id).await;
    assert_eq!(
        (status, e),
        (400, json!({"error": "Media upload is not pending"}))
    );

    // Not attached to a message yet: no URL refresh, not even for the
    // uploader (as the reference; the URL came with `complete`).
    assert_eq!(
        media_url(&app, &token, id).await,
        (403, json!({"error": "Media is not associated with a chat"}))
    );
    let owner: Option<Uuid> =
        sqlx::query_scalar("SELECT uploaded_by_id FROM media WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(owner, Some(me));
}

/// Avatars go to the public bucket with stable URLs served by the API.
#[tokio::test]
async fn local_avatar_is_public() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("Alice").await;
    let png = b"\x89PNG\r\n\x1a\nfake".to_vec();
    let m = app
        .upload_media(&token, "user_avatar", "me.png", "image/png", &png)
        .await;
    assert_eq!(m["category"], "user_avatar");
    let url = m["url"].as_str().unwrap();
    assert_eq!(
        url,
        app.url(&format!(
            "/storage/public/{}",
            m["file_name"].as_str().unwrap()
        ))
    );
    let res = app.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.bytes().await.unwrap().as_ref(), png.as_slice());
}

/// Signatures and their expiry are enforced by the local backend, for the
/// URLs media hands out.
#[tokio::test]
async fn local_signatures_and_expiry_are_enforced() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("Alice").await;
    let bytes = b"hello".to_vec();
    let (status, b) = upload(
        &app,
        &token,
        &body("message_attachment", "a.txt", 5, "text/plain"),
    )
    .await;
    assert_eq!(status, 200);
    let upload_url = b["data"]["upload_url"].as_str().unwrap().to_string();
    let key = b["data"]["media"]["file_name"]
        .as_str()
        .unwrap()
        .to_string();
    let q = query(&upload_url);
    let local = app.state.storage.as_local().unwrap();

    // A tampered expiry breaks the signature.
    let later: u64 = q["expires"].parse::<u64>().unwrap() + 3600;
    let tampered = upload_url.replace(
        &format!("expires={}", q["expires"]),
        &format!("expires={later}"),
    );
    assert_ne!(tampered, upload_url);
    let res = app
        .http
        .put(&tampered)
        .header("Content-Type", "text/plain")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(res).await,
        (403, json!({"error": "Invalid signature"}))
    );

    // A correctly signed but expired upload URL for the same object.
    let past = chrono::Utc::now().timestamp() as u64 - 10;
    let req = SignedRequest {
        op: Op::Put,
        bucket: Bucket::Private,
        key: &key,
        expires: past,
        content_type: "text/plain",
        size: Some(5),
    };
    let expired = local.signed_url(&req).unwrap();
    let res = app
        .http
        .put(&expired)
        .header("Content-Type", "text/plain")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(res).await,
        (403, json!({"error": "Signature expired"}))
    );
    let (status, e) = complete(&app, &token, b["data"]["media"]["id"].as_str().unwrap()).await;
    assert_eq!(
        (status, e),
        (400, json!({"error": "Uploaded object not found"}))
    );

    assert_eq!(put(&app, &upload_url, "text/plain", &bytes).await, 200);
    let done = complete(&app, &token, b["data"]["media"]["id"].as_str().unwrap())
        .await
        .1;
    let get_url = done["data"]["url"].as_str().unwrap().to_string();
    // Private objects: no signature, a foreign signature, an expired one.
    let bare = get_url.split('?').next().unwrap();
    assert_eq!(app.http.get(bare).send().await.unwrap().status(), 403);
    let wrong = get_url.replace("op=get", "op=put");
    assert_eq!(app.http.get(&wrong).send().await.unwrap().status(), 403);
    let expired_get = local
        .signed_url(&SignedRequest {
            op: Op::Get,
            bucket: Bucket::Private,
            key: &key,
            expires: past,
            content_type: "",
            size: None,
        })
        .unwrap();
    let res = app.http.get(&expired_get).send().await.unwrap();
    assert_eq!(
        json(res).await,
        (403, json!({"error": "Signature expired"}))
    );
    assert_eq!(app.http.get(&get_url).send().await.unwrap().status(), 200);
}

/// Completing: unknown ids, other users' media, expired uploads, objects
/// that differ from what was declared.
#[tokio::test]
async fn complete_rejections() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.make_user("Alice").await;
    let (_, bob) = app.make_user("Bob").await;

    assert_eq!(
        complete(&app, &alice, "not-a-uuid").await,
        (400, json!({"error": "Invalid Media ID"}))
    );
    assert_eq!(
        complete(&app, &alice, &Uuid::now_v7().to_string()).await,
        (404, json!({"error": "Media not found"}))
    );
    let res = app
        .http
        .post(app.url(&format!("/api/media/{}/complete", Uuid::now_v7())))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let (_, b) = upload(
        &app,
        &alice,
        &body("message_attachment", "a.bin", 4, "application/octet-stream"),
    )
    .await;
    let id = b["data"]["media"]["id"].as_str().unwrap().to_string();
    let key = b["data"]["media"]["file_name"]
        .as_str()
        .unwrap()
        .to_string();
    // Another user's media.
    assert_eq!(
        complete(&app, &bob, &id).await,
        (403, json!({"error": "You do not own this media"}))
    );

    // Object of the wrong size (written server-side, bypassing the signature).
    let storage = &app.state.storage;
    storage
        .put(
            Bucket::Private,
            &key,
            bytes::Bytes::from_static(b"12345"),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(
        complete(&app, &alice, &id).await,
        (400, json!({"error": "Uploaded object size mismatch"}))
    );
    // Right size, wrong type.
    storage
        .put(
            Bucket::Private,
            &key,
            bytes::Bytes::from_static(b"1234"),
            "image/png",
        )
        .await
        .unwrap();
    assert_eq!(
        complete(&app, &alice, &id).await,
        (
            400,
            json!({"error": "Uploaded object content type mismatch"})
        )
    );
    // Right type with parameters and other case: accepted.
    storage
        .put(
            Bucket::Private,
            &key,
            bytes::Bytes::from_static(b"1234"),
            "Application/Octet-Stream; x=1",
        )
        .await
        .unwrap();
    assert_eq!(complete(&app, &alice, &id).await.0, 200);

    // A zip reported as octet-stream is accepted.
    let (_, b) = upload(
        &app,
        &alice,
        &body("message_attachment", "a.zip", 3, "application/zip"),
    )
    .await;
    let zip_key = b["data"]["media"]["file_name"].as_str().unwrap();
    storage
        .put(
            Bucket::Private,
            zip_key,
            bytes::Bytes::from_static(b"zip"),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(
        complete(&app, &alice, b["data"]["media"]["id"].as_str().unwrap())
            .await
            .0,
        200
    );

    // Expired pending upload.
    let (_, b) = upload(
        &app,
        &alice,
        &body("message_attachment", "late.txt", 1, "text/plain"),
    )
    .await;
    let late = b["data"]["media"]["id"].as_str().unwrap();
    assert_eq!(
        put(
            &app,
            b["data"]["upload_url"].as_str().unwrap(),
            "text/plain",
            b"x"
        )
        .await,
        200
    );
    sqlx::query(
        "UPDATE media SET upload_expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(late)
    .execute(&app.state.db)
    .await
    .unwrap();
    assert_eq!(
        complete(&app, &alice, late).await,
        (400, json!({"error": "Media upload has expired"}))
    );
    assert_eq!(status_of(&app, late).await.0, "pending");

    // Concurrent completions: exactly one wins.
    let (_, b) = upload(
        &app,
        &alice,
        &body("message_attachment", "race.txt", 2, "text/plain"),
    )
    .await;
    let race = b["data"]["media"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        put(
            &app,
            b["data"]["upload_url"].as_str().unwrap(),
            "text/plain",
            b"ok"
        )
        .await,
        200
    );
    let results = futures::future::join_all((0..4).map(|_| complete(&app, &alice, &race))).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|(s, e)| *s == 200 || e["error"] == "Media upload is not pending"));
}

/// Upload validation: field rules (400 Bad Request), policy (400
/// Unsupported file metadata), malformed bodies, authentication.
#[tokio::test]
async fn upload_validation() {
    let app = TestApp::spawn().await;
    let bad = json!({"error": "Bad Request"});
    let unsupported = json!({"error": "Unsupported file metadata"});
    let mb = 1024 * 1024;

    for (req, want) in [
        (body("sticker", "a.png", 10, "image/png"), &bad),
        (body("", "a.png", 10, "image/png"), &bad),
        (body("message_attachment", "", 10, "image/png"), &bad),
        (body("message_attachment", "   ", 10, "image/png"), &bad),
        (
            body("message_attachment", &"n".repeat(256), 10, "image/png"),
            &bad,
        ),
        (body("message_attachment", "a.png", 0, "image/png"), &bad),
        (body("message_attachment", "a.png", 10, ""), &bad),
        (
            body(
                "message_attachment",
                "a.png",
                10,
                &format!("image/{}", "x".repeat(95)),
            ),
            &bad,
        ),
        (
            json!({"usage": "message_attachment", "original_name": "a.png", "file_size": 10, "mime_type": "image/png", "captcha_token": ""}),
            &bad,
        ),
        (
            json!({"usage": "message_attachment", "original_name": "a.png", "file_size": 10, "mime_type": "image/png"}),
            &bad,
        ),
        (
            json!({"usage": "message_attachment", "original_name": "a.png", "file_size": -5, "mime_type": "image/png", "captcha_token": "x"}),
            &bad,
        ),
        (
            json!({"usage": "message_attachment", "original_name": "a.png", "file_size": 1.5, "mime_type": "image/png", "captcha_token": "x"}),
            &bad,
        ),
        (
            json!({"usage": "message_attachment", "original_name": "a.png", "file_size": "10", "mime_type": "image/png", "captcha_token": "x"}),
            &bad,
        ),
        (
            json!({"usage": "message_attachment", "original_name": "a\u{0}b", "file_size": 10, "mime_type": "image/png", "captcha_token": "x"}),
            &bad,
        ),
        (
            json!({"usage": null, "original_name": null, "file_size": null, "mime_type": null, "captcha_token": null}),
            &bad,
        ),
        (body("user_avatar", "a.gif", 10, "image/gif"), &unsupported),
        (
            body("group_avatar", "a.svg", 10, "image/svg+xml"),
            &unsupported,
        ),
        (
            body("user_avatar", "a.png", 2 * mb + 1, "image/png"),
            &unsupported,
        ),
        (
            body("group_avatar", "a.webp", 2 * mb + 1, "image/webp"),
            &unsupported,
        ),
        (
            body(
                "message_attachment",
                "big.bin",
                20 * mb + 1,
                "application/octet-stream",
            ),
            &unsupported,
        ),
        (
            body("message_attachment", "a.txt", 10, "not a mime"),
            &unsupported,
        ),
        (
            body("message_attachment", "a.txt", 10, "text/plain\r\nX-Evil: 1"),
            &unsupported,
        ),
    ] {
        // A fresh user per request: media_upload allows 20 per minute.
        let (_, token) = app.make_user("Alice").await;
        let (status, b) = upload(&app, &token, &req).await;
        assert_eq!((status, &b), (400, want), "{req}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM media")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0, "rejected uploads leave no rows");

    let (_, token) = app.make_user("Alice").await;
    for raw in ["", "{", "invalid-json", "[1,2]", "null"] {
        let (status, b) = raw_upload(&app, &token, raw).await;
        assert_eq!((status, b), (400, bad.clone()), "{raw:?}");
    }

    // Limits are inclusive; any attachment type is accepted; case-insensitive keys.
    for req in [
        body("user_avatar", "a.JPEG", 2 * mb, "IMAGE/JPEG"),
        body("group_avatar", "g.webp", 1, "image/webp"),
        body(
            "message_attachment",
            "setup.exe",
            20 * mb,
            "application/x-msdownload",
        ),
        json!({"USAGE": "message_attachment", "Original_Name": "a.txt", "FILE_SIZE": 3, "mime_type": "text/plain", "captcha_token": "x", "extra": 1}),
    ] {
        let (status, b) = upload(&app, &token, &req).await;
        assert_eq!(status, 200, "{req}: {b}");
    }
    let (_, token) = app.make_user("Alice").await;
    let (_, b) = upload(
        &app,
        &token,
        &body("user_avatar", "a.JPEG", 10, "IMAGE/JPEG"),
    )
    .await;
    assert_eq!(b["data"]["media"]["mime_type"], "image/jpeg");
    assert!(b["data"]["media"]["file_name"]
        .as_str()
        .unwrap()
        .ends_with(".jpeg"));
    assert!(b["data"]["upload_url"]
        .as_str()
        .unwrap()
        .starts_with(&app.url("/storage/public/")));
    assert_eq!(
        b["data"]["media"]["url"],
        app.url(&format!(
            "/storage/public/{}",
            b["data"]["media"]["file_name"].as_str().unwrap()
        ))
    );

    // Names that try to smuggle paths or odd extensions give safe keys.
    let (_, token) = app.make_user("Alice").await;
    for name in [
        "../../etc/passwd",
        "noext",
        "x.ф",
        "a.b c$d",
        "..",
        "photo.JPG",
    ] {
        let (status, b) = upload(
            &app,
            &token,
            &body("message_attachment", name, 1, "text/plain"),
        )
        .await;
        assert_eq!(status, 200, "{name}");
        let key = b["data"]["media"]["file_name"].as_str().unwrap();
        assert!(key_ok(key) && !key.contains(".."), "{name} -> {key}");
        assert_eq!(b["data"]["media"]["original_name"], name.trim());
    }
    let (_, b) = upload(
        &app,
        &token,
        &body("message_attachment", "noext", 1, "text/plain"),
    )
    .await;
    assert!(b["data"]["media"]["file_name"]
        .as_str()
        .unwrap()
        .ends_with(".jpg"));

    let res = app
        .http
        .post(app.url("/api/media/upload"))
        .json(&body("user_avatar", "a.png", 1, "image/png"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(res).await, (401, json!({"error": "Unauthorized"})));
}

/// With a captcha secret configured, the token is verified.
#[tokio::test]
async fn captcha_is_checked_when_enabled() {
    let app = TestApp::spawn_with(|e| {
        e.insert(
            "TURNSTILE_SECRET_KEY".into(),
            "2x0000000000000000000000000000000AA".into(),
        );
    })
    .await;
    let (_, token) = app.make_user("Alice").await;
    let (status, b) = upload(&app, &token, &body("user_avatar", "a.png", 1, "image/png")).await;
    assert_eq!((status, b), (400, json!({"error": "Bad Request"})));
}

/// Who may read a media item's URL.
#[tokio::test]
async fn url_permissions() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (carol, carol_t) = app.make_user("Carol").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let chat = app.make_private_chat(alice, bob).await;
    let bytes = b"secret attachment";

    let m = app
        .upload_media(&alice_t, "message_attachment", "s.txt", "text/plain", bytes)
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let media_id: Uuid = id.parse().unwrap();

    assert_eq!(
        media_url(&app, &bob_t, "zzz").await,
        (400, json!({"error": "Invalid Media ID"}))
    );
    assert_eq!(
        media_url(&app, &bob_t, &Uuid::now_v7().to_string()).await,
        (404, json!({"error": "Media not found"}))
    );
    // Not attached: nobody, the uploader included (spec §10.3).
    for token in [&alice_t, &bob_t, &admin_t] {
        assert_eq!(
            media_url(&app, token, &id).await,
            (403, json!({"error": "Media is not associated with a chat"}))
        );
    }
    // Avatars are never attached to a message either (their URLs are public).
    let avatar = app
        .upload_media(
            &alice_t,
            "user_avatar",
            "me.png",
            "image/png",
            b"\x89PNG avatar",
        )
        .await;
    let avatar_id = avatar["id"].as_str().unwrap();
    let (status, b) = json(
        app.http
            .put(app.url("/api/user/profile"))
            .bearer_auth(&alice_t)
            .json(&json!({"full_name": "Alice", "avatar_media_id": avatar_id}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert!(b["data"]["avatar"]
        .as_str()
        .unwrap()
        .contains(avatar["file_name"].as_str().unwrap()));
    for token in [&alice_t, &bob_t] {
        assert_eq!(
            media_url(&app, token, avatar_id).await,
            (403, json!({"error": "Media is not associated with a chat"}))
        );
    }

    // Attached in the private chat: both participants, nobody else.
    let msg = app.insert_message(chat, alice, "see file").await;
    app.attach_media(media_id, msg).await;
    let (status, u) = media_url(&app, &bob_t, &id).await;
    assert_eq!(status, 200, "{u}");
    let res = app
        .http
        .get(u["data"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes);
    assert_eq!(
        media_url(&app, &carol_t, &id).await,
        (
            403,
            json!({"error": "You do not have access to this media"})
        )
    );
    assert_eq!(
        media_url(&app, &admin_t, &id).await,
        (
            403,
            json!({"error": "You do not have access to this media"})
        )
    );

    // Group attachment: members yes, outsiders no.
    let (gchat, _) = app.make_named_group("Team", bob, &[carol]).await;
    let gm = app
        .upload_media(
            &bob_t,
            "message_attachment",
            "g.txt",
            "text/plain",
            b"group",
        )
        .await;
    let gmsg = app.insert_message(gchat, bob, "").await;
    app.attach_media(gm["id"].as_str().unwrap().parse().unwrap(), gmsg)
        .await;
    assert_eq!(
        media_url(&app, &carol_t, gm["id"].as_str().unwrap())
            .await
            .0,
        200
    );
    assert_eq!(
        media_url(&app, &alice_t, gm["id"].as_str().unwrap()).await,
        (
            403,
            json!({"error": "You do not have access to this media"})
        )
    );

    // The uploader has no rights of their own: once out of the group, their
    // attachment is out of reach too.
    let cm = app
        .upload_media(
            &carol_t,
            "message_attachment",
            "c.txt",
            "text/plain",
            b"mine",
        )
        .await;
    let cmsg = app.insert_message(gchat, carol, "").await;
    app.attach_media(cm["id"].as_str().unwrap().parse().unwrap(), cmsg)
        .await;
    let cm_id = cm["id"].as_str().unwrap();
    assert_eq!(media_url(&app, &carol_t, cm_id).await.0, 200);
    sqlx::query("DELETE FROM group_members WHERE user_id = $1")
        .bind(carol)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        media_url(&app, &carol_t, cm_id).await,
        (
            403,
            json!({"error": "You do not have access to this media"})
        )
    );
    assert_eq!(media_url(&app, &bob_t, cm_id).await.0, 200);

    // Message deleted (link kept): no longer available to members.
    sqlx::query("UPDATE messages SET deleted_at = now() WHERE id = $1")
        .bind(msg)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        media_url(&app, &bob_t, &id).await,
        (403, json!({"error": "Media is no longer available"}))
    );

    // Admins read report evidence.
    let report = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO reports (id, target_type, reason, status, created_at, updated_at) \
         VALUES ($1, 'message', 'spam', 'pending', now(), now())",
    )
    .bind(report)
    .execute(&app.state.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO report_evidence_media (report_id, media_id) VALUES ($1, $2)")
        .bind(report)
        .bind(media_id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, u) = media_url(&app, &admin_t, &id).await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(
        app.http
            .get(u["data"]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        media_url(&app, &carol_t, &id).await,
        (403, json!({"error": "Media is no longer available"}))
    );

    // A pending upload has no URL yet, even for its uploader.
    let (_, p) = upload(
        &app,
        &alice_t,
        &body("message_attachment", "p.txt", 1, "text/plain"),
    )
    .await;
    for token in [&alice_t, &bob_t] {
        assert_eq!(
            media_url(&app, token, p["data"]["media"]["id"].as_str().unwrap()).await,
            (403, json!({"error": "Media is not associated with a chat"}))
        );
    }
    // Attached but still pending (only reachable by direct writes): 400.
    let pid: Uuid = p["data"]["media"]["id"].as_str().unwrap().parse().unwrap();
    let pmsg = app.insert_message(chat, alice, "pending").await;
    app.attach_media(pid, pmsg).await;
    assert_eq!(
        media_url(&app, &bob_t, &pid.to_string()).await,
        (400, json!({"error": "Media upload is not completed"}))
    );
    let res = app
        .http
        .get(app.url(&format!("/api/media/{id}/url")))
        .bearer_auth(&bob_t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-limit"], "200");
}

/// The same flow against the S3-compatible test server.
#[tokio::test]
async fn s3_flow() {
    let s3 = harness::s3_env().await;
    let env: HashMap<_, _> = s3.iter().cloned().collect();
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    let (alice, alice_t) = app.make_user("Alice").await;
    let (bob, bob_t) = app.make_user("Bob").await;
    let (_, carol_t) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;

    // Attachment: private bucket, path-style URL signing length and type.
    let bytes = b"attachment bytes over s3".to_vec();
    let (status, b) = upload(
        &app,
        &alice_t,
        &body(
            "message_attachment",
            "doc.txt",
            bytes.len() as u64,
            "text/plain",
        ),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let upload_url = b["data"]["upload_url"].as_str().unwrap();
    let key = b["data"]["media"]["file_name"].as_str().unwrap();
    assert!(
        upload_url.starts_with(&format!(
            "{}/{}/{key}?",
            env["S3_ENDPOINT"], env["S3_BUCKET_PRIVATE"]
        )),
        "{upload_url}"
    );
    let q = query(upload_url);
    assert!(
        q["X-Amz-SignedHeaders"]
            .split(';')
            .any(|h| h == "content-length"),
        "{q:?}"
    );
    assert_eq!(q["X-Amz-Expires"], "900");
    assert_eq!(
        b["data"]["upload_headers"],
        json!({"Content-Type": "text/plain"})
    );
    assert_eq!(b["data"]["media"]["url"], "");
    let id = b["data"]["media"]["id"].as_str().unwrap().to_string();

    // Never uploaded → refused; another user's → refused.
    assert_eq!(
        complete(&app, &alice_t, &id).await,
        (400, json!({"error": "Uploaded object not found"}))
    );
    assert_eq!(
        complete(&app, &bob_t, &id).await,
        (403, json!({"error": "You do not own this media"}))
    );

    assert!(put(&app, upload_url, "text/plain", &bytes).await < 300);
    let (status, done) = complete(&app, &alice_t, &id).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["data"]["upload_status"], "completed");
    let get_url = done["data"]["url"].as_str().unwrap();
    assert!(get_url.contains("X-Amz-Signature="), "{get_url}");
    let res = app.http.get(get_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());
    assert_eq!(
        complete(&app, &alice_t, &id).await,
        (400, json!({"error": "Media upload is not pending"}))
    );

    // Size and type mismatches found by the HEAD.
    let (_, b) = upload(
        &app,
        &alice_t,
        &body("message_attachment", "x.bin", 4, "application/octet-stream"),
    )
    .await;
    let key2 = b["data"]["media"]["file_name"].as_str().unwrap();
    let id2 = b["data"]["media"]["id"].as_str().unwrap();
    app.state
        .storage
        .put(
            Bucket::Private,
            key2,
            bytes::Bytes::from_static(b"12"),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(
        complete(&app, &alice_t, id2).await,
        (400, json!({"error": "Uploaded object size mismatch"}))
    );
    app.state
        .storage
        .put(
            Bucket::Private,
            key2,
            bytes::Bytes::from_static(b"1234"),
            "image/png",
        )
        .await
        .unwrap();
    assert_eq!(
        complete(&app, &alice_t, id2).await,
        (
            400,
            json!({"error": "Uploaded object content type mismatch"})
        )
    );

    // Attached: the other participant gets a working URL, an outsider none.
    let msg = app.insert_message(chat, alice, "file").await;
    app.attach_media(id.parse().unwrap(), msg).await;
    let (status, u) = media_url(&app, &bob_t, &id).await;
    assert_eq!(status, 200);
    let res = app
        .http
        .get(u["data"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());
    assert_eq!(media_url(&app, &carol_t, &id).await.0, 403);

    // Avatar: public bucket, URL under S3_PUBLIC_DOMAIN.
    let png = b"\x89PNG fake avatar".to_vec();
    let (status, b) = upload(
        &app,
        &bob_t,
        &body("group_avatar", "g.png", png.len() as u64, "image/png"),
    )
    .await;
    assert_eq!(status, 200);
    let upload_url = b["data"]["upload_url"].as_str().unwrap();
    assert!(
        upload_url.starts_with(&format!(
            "{}/{}/",
            env["S3_ENDPOINT"], env["S3_BUCKET_PUBLIC"]
        )),
        "{upload_url}"
    );
    let public = b["data"]["media"]["url"].as_str().unwrap();
    assert!(public.starts_with(&env["S3_PUBLIC_DOMAIN"]), "{public}");
    assert!(put(&app, upload_url, "image/png", &png).await < 300);
    let (status, done) = complete(&app, &bob_t, b["data"]["media"]["id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    // Completion moved the bytes to a key no upload URL exists for (S3 has
    // no write-once PUT), so the public URL is the new key's.
    let sealed = done["data"]["file_name"].as_str().unwrap();
    assert_ne!(sealed, b["data"]["media"]["file_name"].as_str().unwrap());
    assert_eq!(
        done["data"]["url"],
        format!("{}/{sealed}", env["S3_PUBLIC_DOMAIN"])
    );
    assert_eq!(done["data"]["category"], "group_avatar");
    for key in [sealed, b["data"]["media"]["file_name"].as_str().unwrap()] {
        // The upload key stays readable (the uploader's preview) until
        // its URL has expired and the sweep deletes it.
        let info = app
            .state
            .storage
            .head(Bucket::Public, key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.size, png.len() as u64);
    }
}
