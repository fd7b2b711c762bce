//! Integration tests: storage. The S3 backend against the test S3 server,
//! the local backend through the running server's `/storage` routes, and the
//! local backend's signature rules (the test S3 server checks no signatures,
//! so those rules are only testable locally).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atoitalk::infra::storage::{Bucket, LocalStorage, Op, SignedRequest, StorageError};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{self, json, TestApp};

const MIN15: Duration = Duration::from_secs(900);

/// A key shaped like the media feature's (`<nanos>-<uuid><ext>`).
fn key(ext: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos}-{}{ext}", Uuid::new_v4())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn local(app: &TestApp) -> &LocalStorage {
    app.state
        .storage
        .as_local()
        .expect("no S3 configured: local backend")
}

#[tokio::test]
async fn s3_round_trip() {
    let s3 = harness::s3_env().await;
    let env: HashMap<_, _> = s3.iter().cloned().collect();
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    let storage = &app.state.storage;
    assert!(storage.as_local().is_none());

    let k = key(".png");
    let bytes = b"\x89PNG\r\n\x1a\nnot really a png".to_vec();
    let put_url = storage
        .presign_put_sized(Bucket::Private, &k, "image/png", bytes.len() as u64, MIN15)
        .await
        .unwrap();
    // Path style on the configured endpoint, binding length and type.
    assert!(
        put_url.starts_with(&format!(
            "{}/{}/{k}?",
            env["S3_ENDPOINT"], env["S3_BUCKET_PRIVATE"]
        )),
        "{put_url}"
    );
    let q = query(&put_url);
    assert_eq!(q["X-Amz-SignedHeaders"], "content-length;content-type;host");
    assert_eq!(q["X-Amz-Expires"], "900");

    let res = app
        .http
        .put(&put_url)
        .header("Content-Type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());

    let info = storage.head(Bucket::Private, &k).await.unwrap().unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.content_type.as_deref(), Some("image/png"));
    // Buckets are separate.
    assert!(storage.head(Bucket::Public, &k).await.unwrap().is_none());

    let get_url = storage
        .presign_get(Bucket::Private, &k, MIN15)
        .await
        .unwrap();
    assert!(get_url.contains("X-Amz-Signature="), "{get_url}");
    let res = app.http.get(&get_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());
    assert_eq!(
        storage.get(Bucket::Private, &k).await.unwrap().unwrap(),
        bytes
    );

    // Server-side put into the public bucket, reachable at its public URL.
    let avatar = key(".jpg");
    storage
        .put(
            Bucket::Public,
            &avatar,
            bytes::Bytes::from_static(b"jpeg bytes"),
            "image/jpeg",
        )
        .await
        .unwrap();
    let public = storage.public_url(&avatar);
    assert_eq!(
        public,
        format!("{}/{avatar}", env["S3_PUBLIC_DOMAIN"]),
        "public URL is S3_PUBLIC_DOMAIN/<key>"
    );
    // (The test server keeps buckets private, so read it back signed.)
    let url = storage
        .presign_get(Bucket::Public, &avatar, MIN15)
        .await
        .unwrap();
    let res = app.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"jpeg bytes");
    let info = storage
        .head(Bucket::Public, &avatar)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.size, info.content_type.as_deref()),
        (10, Some("image/jpeg"))
    );

    // An unsized upload URL binds the type only.
    let k2 = key(".txt");
    let url = storage
        .presign_put(Bucket::Public, &k2, "text/plain", MIN15)
        .await
        .unwrap();
    assert_eq!(query(&url)["X-Amz-SignedHeaders"], "content-type;host");
    let res = app
        .http
        .put(&url)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(
        storage
            .head(Bucket::Public, &k2)
            .await
            .unwrap()
            .unwrap()
            .size,
        5
    );

    // Delete, then it is gone; deleting a missing object succeeds.
    storage.delete(Bucket::Private, &k).await.unwrap();
    assert!(storage.head(Bucket::Private, &k).await.unwrap().is_none());
    assert!(storage.get(Bucket::Private, &k).await.unwrap().is_none());
    storage.delete(Bucket::Private, &k).await.unwrap();
    storage
        .delete(Bucket::Public, &key(".never"))
        .await
        .unwrap();
    assert!(matches!(
        storage.head(Bucket::Private, "").await,
        Err(StorageError::InvalidKey)
    ));

    // With S3 the API serves no objects itself.
    let (status, body) = json(
        app.http
            .get(app.url(&format!("/storage/public/{avatar}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (404, json!({"error": "Not Found"})));
}

#[tokio::test]
async fn s3_unreachable_is_a_backend_error() {
    let app = TestApp::spawn_with(|e| {
        e.extend(
            [
                ("S3_BUCKET_PUBLIC", "p"),
                ("S3_BUCKET_PRIVATE", "q"),
                ("S3_REGION", "us-east-1"),
                ("S3_ACCESS_KEY", "test"),
                ("S3_SECRET_KEY", "test"),
                // Nothing listens on port 9 of localhost.
                ("S3_ENDPOINT", "http://127.0.0.1:9"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
    })
    .await;
    let res = app.state.storage.head(Bucket::Public, "a.png").await;
    assert!(matches!(res, Err(StorageError::Backend(_))), "{res:?}");
    // Presigning needs no network.
    assert!(app
        .state
        .storage
        .presign_get(Bucket::Public, "a.png", MIN15)
        .await
        .is_ok());
}

#[tokio::test]
async fn local_round_trip_over_http() {
    let app = TestApp::spawn().await;
    let storage = &app.state.storage;
    assert!(storage.as_local().is_some());

    let k = key(".pdf");
    let bytes = b"%PDF-1.4 tiny".to_vec();
    let put_url = storage
        .presign_put_sized(
            Bucket::Private,
            &k,
            "application/pdf",
            bytes.len() as u64,
            MIN15,
        )
        .await
        .unwrap();
    assert!(
        put_url.starts_with(&app.url(&format!("/storage/private/{k}?op=put&expires="))),
        "{put_url}"
    );
    let res = app
        .http
        .put(&put_url)
        .header("Content-Type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let info = storage.head(Bucket::Private, &k).await.unwrap().unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.content_type.as_deref(), Some("application/pdf"));
    assert!(storage.head(Bucket::Public, &k).await.unwrap().is_none());

    let get_url = storage
        .presign_get(Bucket::Private, &k, MIN15)
        .await
        .unwrap();
    let res = app.http.get(&get_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // Public bucket: stable unsigned URL on the API.
    let avatar = key(".webp");
    let url = storage
        .presign_put_sized(Bucket::Public, &avatar, "image/webp", 4, MIN15)
        .await
        .unwrap();
    let res = app
        .http
        .put(&url)
        .header("Content-Type", "image/webp")
        .body("RIFF")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let public = storage.public_url(&avatar);
    assert_eq!(public, app.url(&format!("/storage/public/{avatar}")));
    let res = app.http.get(&public).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/webp");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"RIFF");

    // Server-side put is visible over HTTP too.
    let direct = key(".png");
    storage
        .put(
            Bucket::Public,
            &direct,
            bytes::Bytes::from_static(b"png"),
            "image/png",
        )
        .await
        .unwrap();
    let res = app
        .http
        .get(storage.public_url(&direct))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");

    // Delete: gone over HTTP and for HEAD; deleting again succeeds.
    storage.delete(Bucket::Private, &k).await.unwrap();
    assert!(storage.head(Bucket::Private, &k).await.unwrap().is_none());
    let (status, body) = json(app.http.get(&get_url).send().await.unwrap()).await;
    assert_eq!((status, body), (404, json!({"error": "Object not found"})));
    storage.delete(Bucket::Private, &k).await.unwrap();
    storage
        .delete(Bucket::Public, &key(".never"))
        .await
        .unwrap();
}

#[tokio::test]
async fn local_signatures_are_enforced() {
    let app = TestApp::spawn().await;
    let storage = &app.state.storage;
    let local = local(&app);
    let k = key(".txt");
    storage
        .put(
            Bucket::Private,
            &k,
            bytes::Bytes::from_static(b"secret"),
            "text/plain",
        )
        .await
        .unwrap();
    let get = |url: String| {
        let http = app.http.clone();
        async move { json(http.get(url).send().await.unwrap()).await }
    };
    let invalid = json!({"error": "Invalid signature"});

    // Private GET without any signature.
    let (status, body) = get(app.url(&format!("/storage/private/{k}"))).await;
    assert_eq!((status, &body), (403, &invalid));

    // Expired (correctly signed, in the past).
    let expired = local
        .signed_url(&SignedRequest {
            op: Op::Get,
            bucket: Bucket::Private,
            key: &k,
            expires: now() - 5,
            content_type: "",
            size: None,
        })
        .unwrap();
    let (status, body) = get(expired).await;
    assert_eq!((status, body), (403, json!({"error": "Signature expired"})));

    // Tampered signature, tampered expiry, signature of another key/bucket.
    let good = storage
        .presign_get(Bucket::Private, &k, MIN15)
        .await
        .unwrap();
    assert_eq!(get(good.clone()).await.0, 200);
    let last = good.chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    let tampered = format!("{}{flipped}", &good[..good.len() - 1]);
    let (status, body) = get(tampered).await;
    assert_eq!((status, &body), (403, &invalid));
    let expires = query(&good)["expires"].clone();
    let later = good.replace(
        &format!("expires={expires}"),
        &format!("expires={}", now() + 86400),
    );
    assert_eq!(get(later).await, (403, invalid.clone()));
    let other = storage
        .presign_get(Bucket::Private, &key(".txt"), MIN15)
        .await
        .unwrap();
    let sig = query(&other)["sig"].clone();
    let swapped = good.replace(&query(&good)["sig"], &sig);
    assert_eq!(get(swapped).await, (403, invalid.clone()));
    let as_public = storage
        .presign_get(Bucket::Public, &k, MIN15)
        .await
        .unwrap()
        .replace("/storage/public/", "/storage/private/");
    assert_eq!(get(as_public).await, (403, invalid.clone()));

    // Public GET needs no signature; private objects are not public.
    let avatar = key(".png");
    storage
        .put(
            Bucket::Public,
            &avatar,
            bytes::Bytes::from_static(b"img"),
            "image/png",
        )
        .await
        .unwrap();
    assert_eq!(
        get(app.url(&format!("/storage/public/{avatar}"))).await.0,
        200
    );
    let (status, body) = get(app.url(&format!("/storage/public/{k}"))).await;
    assert_eq!((status, body), (404, json!({"error": "Object not found"})));

    // PUT with a GET signature (as is, or with op rewritten).
    let put = |url: String, ct: &'static str, body: Vec<u8>| {
        let http = app.http.clone();
        async move {
            json(
                http.put(url)
                    .header("Content-Type", ct)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let target = key(".txt");
    let get_sig = storage
        .presign_get(Bucket::Private, &target, MIN15)
        .await
        .unwrap();
    assert_eq!(
        put(get_sig.clone(), "text/plain", b"x".to_vec()).await,
        (403, invalid.clone())
    );
    assert_eq!(
        put(
            get_sig.replace("op=get", "op=put"),
            "text/plain",
            b"x".to_vec()
        )
        .await,
        (403, invalid.clone())
    );

    // A PUT URL binds the content type and the length, and expires.
    let url = storage
        .presign_put_sized(Bucket::Private, &target, "text/plain", 3, MIN15)
        .await
        .unwrap();
    assert_eq!(
        put(url.clone(), "text/html", b"abc".to_vec()).await,
        (403, invalid.clone())
    );
    assert_eq!(
        put(url.clone(), "text/plain", b"abcd".to_vec()).await,
        (403, invalid.clone())
    );
    assert_eq!(
        put(
            url.replace("size=3", "size=4"),
            "text/plain",
            b"abcd".to_vec()
        )
        .await,
        (403, invalid.clone())
    );
    let expired_put = local
        .signed_url(&SignedRequest {
            op: Op::Put,
            bucket: Bucket::Private,
            key: &target,
            expires: now() - 5,
            content_type: "text/plain",
            size: Some(3),
        })
        .unwrap();
    assert_eq!(
        put(expired_put, "text/plain", b"abc".to_vec()).await,
        (403, json!({"error": "Signature expired"}))
    );
    // Nothing was stored by the refused attempts; a GET URL cannot read
    // from PUT rights either.
    assert!(storage
        .head(Bucket::Private, &target)
        .await
        .unwrap()
        .is_none());
    let (status, _) = get(url.replace("op=put", "op=get")).await;
    assert_eq!(status, 403);
    // The genuine upload works.
    assert_eq!(put(url, "text/plain", b"abc".to_vec()).await.0, 200);
    assert_eq!(
        storage
            .head(Bucket::Private, &target)
            .await
            .unwrap()
            .unwrap()
            .size,
        3
    );

    // Unknown bucket.
    let (status, body) = get(app.url(&format!("/storage/secret/{k}"))).await;
    assert_eq!((status, body), (404, json!({"error": "Not Found"})));
}

#[tokio::test]
async fn local_keys_cannot_escape() {
    let app = TestApp::spawn().await;
    let storage = &app.state.storage;
    let media_dir = std::path::PathBuf::from(&app.env["MEDIA_LOCAL_DIR"]);

    for bad in ["../escape", "a/b", "..", ".hidden", "a..b", "a b"] {
        assert!(
            matches!(
                storage
                    .presign_put(Bucket::Public, bad, "text/plain", MIN15)
                    .await,
                Err(StorageError::InvalidKey)
            ),
            "{bad:?}"
        );
        assert!(matches!(
            storage.presign_get(Bucket::Private, bad, MIN15).await,
            Err(StorageError::InvalidKey)
        ));
        assert!(matches!(
            storage
                .put(
                    Bucket::Public,
                    bad,
                    bytes::Bytes::from_static(b"x"),
                    "text/plain"
                )
                .await,
            Err(StorageError::InvalidKey)
        ));
        assert!(matches!(
            storage.head(Bucket::Public, bad).await,
            Err(StorageError::InvalidKey)
        ));
        assert!(matches!(
            storage.delete(Bucket::Public, bad).await,
            Err(StorageError::InvalidKey)
        ));
    }

    // Over HTTP (raw request lines: HTTP clients would normalise dot
    // segments away), encoded separators and dot segments are refused with
    // 400 before any signature is looked at.
    for raw in [
        "..",
        "%2E%2E",
        "..%2Fescape",
        "%2E%2E%2F%2E%2E%2Fescape",
        "a%2Fb",
        "a%5Cb",
        ".env",
        "%00x",
        "%FF",
    ] {
        for bucket in ["public", "private"] {
            let target = format!("/storage/{bucket}/{raw}?op=put&expires=9999999999&sig=00");
            for method in ["PUT", "GET"] {
                let (status, body) = raw_request(&app, method, &target, "pwned").await;
                assert_eq!(status, 400, "{method} {target}: {body}");
                assert_eq!(
                    body, r#"{"error":"Invalid object key"}"#,
                    "{method} {target}"
                );
            }
        }
    }
    // An unencoded `..` segment never reaches the handler as a key.
    let (status, _) = raw_request(&app, "PUT", "/storage/public/../escape", "pwned").await;
    assert_eq!(status, 404);
    assert!(!media_dir.join("escape").exists());
    assert!(!media_dir.parent().unwrap().join("escape").exists());
}

/// Sends one request with a verbatim request target; returns the status and
/// the body text.
async fn raw_request(app: &TestApp, method: &str, target: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.addr,
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn local_upload_size_is_capped() {
    let app = TestApp::spawn().await;
    let storage = &app.state.storage;
    let k = key(".bin");
    let url = storage
        .presign_put(Bucket::Private, &k, "application/octet-stream", MIN15)
        .await
        .unwrap();
    let (status, body) = json(
        app.http
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .body(vec![0u8; 25 * 1024 * 1024 + 1])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (413, json!({"error": "Request body too large"}))
    );
    assert!(storage.head(Bucket::Private, &k).await.unwrap().is_none());
    // Exactly at the cap is fine.
    let res = app
        .http
        .put(&url)
        .header("Content-Type", "application/octet-stream")
        .body(vec![7u8; 25 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        storage
            .head(Bucket::Private, &k)
            .await
            .unwrap()
            .unwrap()
            .size,
        25 * 1024 * 1024
    );
}

/// Streaming, ranges, transfer caps, write-once objects, pending quotas.
mod limits;
