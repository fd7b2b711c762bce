//! Abuse limits of media storage (issue 15 B): streamed downloads with
//! `Range`, a cap on concurrent `/storage` transfers, write-once uploads,
//! per-user pending-upload quotas and the pending-upload sweep.

use std::time::Duration;

use atoitalk::infra::storage::Bucket;
use atoitalk::jobs::{run_job, Job};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{json, TestApp};

const MIB: usize = 1024 * 1024;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn request_upload(app: &TestApp, token: &str, size: usize) -> (u16, Value) {
    json(
        app.http
            .post(app.url("/api/media/upload"))
            .bearer_auth(token)
            .json(&json!({
                "usage": "message_attachment", "original_name": "f.bin", "file_size": size,
                "mime_type": "application/octet-stream", "captcha_token": "dummy-token"
            }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn put(app: &TestApp, url: &str, bytes: &[u8]) -> reqwest::Response {
    app.http
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

/// A completed private attachment of `len` bytes and its download URL.
async fn stored(app: &TestApp, token: &str, len: usize) -> (Vec<u8>, String) {
    let bytes = pattern(len);
    let dto = app
        .upload_media(
            token,
            "message_attachment",
            "f.bin",
            "application/octet-stream",
            &bytes,
        )
        .await;
    let url = dto["url"].as_str().unwrap().to_string();
    assert!(url.contains("/storage/private/"), "{url}");
    (bytes, url)
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

/// What a reader of the completed media `done` downloads.
async fn assert_reads(app: &TestApp, done: &Value, expected: &[u8]) {
    let read = app
        .http
        .get(done["data"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap().as_ref(), expected);
}

#[tokio::test]
async fn downloads_are_streamed_with_ranges() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("ranger").await;
    let (bytes, url) = stored(&app, &token, MIB + 17).await;
    let len = bytes.len();

    let full = app.http.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.headers()["content-length"], len.to_string().as_str());
    assert_eq!(full.headers()["content-type"], "application/octet-stream");
    assert_eq!(full.bytes().await.unwrap().as_ref(), &bytes[..]);

    let part = app
        .http
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{len}").as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[10..20]);

    let tail = app
        .http
        .get(&url)
        .header("Range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &bytes[len - 5..]);

    let res = app
        .http
        .get(&url)
        .header("Range", format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    let (_, body) = json(res).await;
    assert_eq!(body["error"], "Range not satisfiable");
}

#[tokio::test]
async fn concurrent_transfers_are_capped() {
    let app = TestApp::spawn_with(|e| {
        e.insert("STORAGE_MAX_CONCURRENT_TRANSFERS".into(), "2".into());
    })
    .await;
    let (_, token) = app.make_user("hoarder").await;
    // Larger than the socket buffers, so an unread download stays open.
    let (bytes, url) = stored(&app, &token, 18 * MIB).await;

    let first = app.http.get(&url).send().await.unwrap();
    let second = app.http.get(&url).send().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let res = app.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let (_, body) = json(res).await;
    assert_eq!(
        body["error"],
        "Too many concurrent storage transfers, retry shortly"
    );
    // Uploads share the cap.
    let (status, up) = request_upload(&app, &token, 3).await;
    assert_eq!(status, 200, "{up}");
    let refused = put(&app, up["data"]["upload_url"].as_str().unwrap(), b"abc").await;
    assert_eq!(refused.status(), 503);

    // A finished download frees its slot; a dropped one too.
    assert_eq!(first.bytes().await.unwrap().as_ref(), &bytes[..]);
    drop(second);
    let mut ok = 0;
    for _ in 0..50 {
        let res = app
            .http
            .get(&url)
            .header("Range", "bytes=0-0")
            .send()
            .await
            .unwrap();
        if res.status() == 206 {
            ok += 1;
            if ok == 2 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(ok, 2, "slots were not released");
}

#[tokio::test]
async fn a_completed_upload_cannot_be_overwritten() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("writer").await;
    let (status, up) = request_upload(&app, &token, 4).await;
    assert_eq!(status, 200, "{up}");
    let upload_url = up["data"]["upload_url"].as_str().unwrap().to_string();
    let id = up["data"]["media"]["id"].as_str().unwrap().to_string();
    assert_eq!(put(&app, &upload_url, b"good").await.status(), 200);

    // Even before completion the object is write-once.
    let (status, body) = json(put(&app, &upload_url, b"evil").await).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "Object already exists");

    let (status, done) = complete(&app, &token, &id).await;
    assert_eq!(status, 200, "{done}");
    let (status, body) = json(put(&app, &upload_url, b"evil").await).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "Object already exists");

    assert_reads(&app, &done, b"good").await;
}

/// S3 cannot refuse a second PUT to a presigned URL the contract allows,
/// so completion moves the bytes to a fresh key: what a re-upload writes is
/// never what readers get, and the sweep deletes it once the URL expired.
#[tokio::test]
async fn s3_completed_upload_cannot_be_overwritten() {
    let s3 = crate::harness::s3_env().await;
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    let (_, token) = app.make_user("s3writer").await;
    let (status, up) = request_upload(&app, &token, 4).await;
    assert_eq!(status, 200, "{up}");
    let upload_url = up["data"]["upload_url"].as_str().unwrap().to_string();
    let upload_key = up["data"]["media"]["file_name"]
        .as_str()
        .unwrap()
        .to_string();
    let id = up["data"]["media"]["id"].as_str().unwrap().to_string();
    assert!(put(&app, &upload_url, b"good").await.status().is_success());

    let (status, done) = complete(&app, &token, &id).await;
    assert_eq!(status, 200, "{done}");
    let sealed_key = done["data"]["file_name"].as_str().unwrap().to_string();
    assert_ne!(sealed_key, upload_key, "completion keeps the URL's key");
    assert_eq!(done["data"]["upload_status"], "completed");
    // Completing twice is still refused, and nothing moves again.
    let (status, again) = complete(&app, &token, &id).await;
    assert_eq!(status, 400, "{again}");

    let storage = &app.state.storage;
    assert!(storage
        .head(Bucket::Private, &upload_key)
        .await
        .unwrap()
        .is_none());
    // The still-valid upload URL writes again (S3 cannot refuse it)...
    assert!(put(&app, &upload_url, b"evil").await.status().is_success());
    // ...but readers get the completed bytes.
    assert_reads(&app, &done, b"good").await;
    assert_eq!(
        storage
            .get(Bucket::Private, &sealed_key)
            .await
            .unwrap()
            .unwrap()
            .as_ref(),
        b"good"
    );

    // Once the URL has expired the sweep deletes the re-uploaded object and
    // keeps the one the media row references.
    let ctx = app.job_context();
    let early = run_job(&ctx, Job::PendingUploadSweep).await.unwrap();
    assert_eq!((early.deleted, early.failed), (0, 0), "nothing is due yet");
    assert!(storage
        .head(Bucket::Private, &upload_key)
        .await
        .unwrap()
        .is_some());
    sqlx::query("UPDATE storage_stale_objects SET delete_after = now() - interval '1 second'")
        .execute(&app.state.db)
        .await
        .unwrap();
    let report = run_job(&ctx, Job::PendingUploadSweep).await.unwrap();
    assert_eq!((report.deleted, report.failed), (1, 0));
    assert!(storage
        .head(Bucket::Private, &upload_key)
        .await
        .unwrap()
        .is_none());
    assert!(storage
        .head(Bucket::Private, &sealed_key)
        .await
        .unwrap()
        .is_some());
    let left: (i64,) = sqlx::query_as("SELECT count(*) FROM storage_stale_objects")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left.0, 0);
}

#[tokio::test]
async fn pending_uploads_are_capped_per_user() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.make_user("pending").await;
    for i in 0..10 {
        let (status, body) = request_upload(&app, &token, 1000).await;
        assert_eq!(status, 200, "upload {i}: {body}");
    }
    let (status, body) = request_upload(&app, &token, 1000).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Too many pending uploads"),
        "{body}"
    );
    // Other users are not affected.
    let (_, other) = app.make_user("bystander").await;
    assert_eq!(request_upload(&app, &other, 1000).await.0, 200);
    // An expired pending upload no longer counts.
    sqlx::query(
        "UPDATE media SET upload_expires_at = now() - interval '1 minute' WHERE id = \
         (SELECT id FROM media WHERE uploaded_by_id = $1 ORDER BY id LIMIT 1)",
    )
    .bind(alice)
    .execute(&app.state.db)
    .await
    .unwrap();
    assert_eq!(request_upload(&app, &token, 1000).await.0, 200);

    // Bytes: five 20 MiB uploads fill the default 100 MiB, the sixth is refused.
    let (_, big) = app.make_user("bigfiles").await;
    for _ in 0..5 {
        assert_eq!(request_upload(&app, &big, 20 * MIB).await.0, 200);
    }
    let (status, body) = request_upload(&app, &big, 20 * MIB).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(request_upload(&app, &big, 1).await.0, 429);
}

#[tokio::test]
async fn expired_pending_uploads_are_swept_soon() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("abandoner").await;
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let (status, up) = request_upload(&app, &token, 4).await;
        assert_eq!(status, 200, "{up}");
        let url = up["data"]["upload_url"].as_str().unwrap();
        assert_eq!(put(&app, url, b"junk").await.status(), 200);
        let id: Uuid = up["data"]["media"]["id"].as_str().unwrap().parse().unwrap();
        let key = up["data"]["media"]["file_name"]
            .as_str()
            .unwrap()
            .to_string();
        uploads.push((id, key));
    }
    // The first one's URL expired a minute ago; the second is still live.
    sqlx::query("UPDATE media SET upload_expires_at = now() - interval '1 minute' WHERE id = $1")
        .bind(uploads[0].0)
        .execute(&app.state.db)
        .await
        .unwrap();
    let ctx = app.job_context();
    assert_eq!(
        Job::from_name("pending-upload-sweep").unwrap(),
        Job::PendingUploadSweep
    );
    let report = run_job(&ctx, Job::PendingUploadSweep).await.unwrap();
    assert!(report.ran);
    assert_eq!((report.deleted, report.failed), (1, 0));

    let storage = &app.state.storage;
    assert!(storage
        .head(Bucket::Private, &uploads[0].1)
        .await
        .unwrap()
        .is_none());
    assert!(storage
        .head(Bucket::Private, &uploads[1].1)
        .await
        .unwrap()
        .is_some());
    let rows: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM media ORDER BY id")
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows, vec![(uploads[1].0,)]);
}
