//! Integration tests: the earlier, multipart generation of
//! `POST /api/media/upload` (the server stores the file itself), next to the
//! JSON (presigned) form on the same server, against the local backend and
//! the S3-compatible test server. Profile and group forms are in
//! `multipart_avatars`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::harness::{self, json, TestApp};

const BOUNDARY: &str = "----atoitalk-test-boundary-7d1e";

/// One part of a test form.
pub enum FormPart<'a> {
    Text(&'a str, &'a str),
    File {
        name: &'a str,
        file_name: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
    },
}

/// A `multipart/form-data` body and its Content-Type.
pub fn form_body(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            FormPart::Text(name, value) => {
                out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            FormPart::File {
                name,
                file_name,
                content_type,
                bytes,
            } => {
                out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                         Content-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), out)
}

/// Sends a form with `method` to `path` as `token`.
pub async fn send_form(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    parts: &[FormPart<'_>],
) -> (u16, Value) {
    let (ct, body) = form_body(parts);
    json(
        app.http
            .request(method, app.url(path))
            .bearer_auth(token)
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Deterministic bytes of a given length.
pub fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// A minimal PNG-looking payload (the server checks the declared type).
pub fn png(len: usize, seed: u8) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend(bytes_of(len.saturating_sub(8), seed));
    b
}

/// The raw HTTP exchange: `head` (request line and headers, no blank line),
/// then `body` as chunked transfer encoding in 64 KiB chunks. Returns the
/// status and the response body; the writer runs beside the reader so an
/// early answer is read while the body is still being sent.
pub async fn chunked_request(app: &TestApp, head: &str, body: Vec<u8>) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!("{head}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "no answer within 20 s");
    writer.abort();
    parse_response(&raw)
}

/// Status and body of a raw HTTP/1.1 response (chunked bodies decoded).
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

/// What is in storage: object keys of both buckets, and leftovers of
/// unfinished uploads (local temporary files, S3 multipart uploads).
pub struct Objects {
    pub keys: Vec<String>,
    pub unfinished: usize,
}

/// Lists the storage of `app` (local directory or test S3 buckets).
pub async fn objects(app: &TestApp) -> Objects {
    match app.env.get("S3_ENDPOINT") {
        None => {
            let root = PathBuf::from(&app.env["MEDIA_LOCAL_DIR"]);
            let names = |dir: &str| -> Vec<String> {
                std::fs::read_dir(root.join(dir))
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let mut keys = names("public");
            keys.extend(names("private"));
            keys.sort();
            let sidecars = names("meta/public").len() + names("meta/private").len();
            assert_eq!(sidecars, keys.len(), "a type sidecar per object");
            Objects {
                keys,
                unfinished: names("tmp").len(),
            }
        }
        Some(endpoint) => {
            let mut keys = Vec::new();
            let mut unfinished = 0;
            for bucket in [&app.env["S3_BUCKET_PUBLIC"], &app.env["S3_BUCKET_PRIVATE"]] {
                let list = app
                    .http
                    .get(format!("{endpoint}/{bucket}?list-type=2"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                keys.extend(xml_values(&list, "Key"));
                let uploads = app
                    .http
                    .get(format!("{endpoint}/{bucket}?uploads"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                unfinished += xml_values(&uploads, "UploadId").len();
            }
            keys.sort();
            Objects { keys, unfinished }
        }
    }
}

fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

/// Every completed media row's object key, sorted.
pub async fn media_keys(app: &TestApp) -> Vec<String> {
    let mut keys: Vec<(String,)> =
        sqlx::query_as("SELECT file_name FROM media WHERE upload_status = 'completed'")
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    keys.sort();
    keys.into_iter().map(|k| k.0).collect()
}

/// Storage holds exactly the objects of the completed media rows, and no unfinished
/// upload (cleanup of a dropped request runs in the background: retried
/// for a few seconds).
pub async fn assert_storage_matches_rows(app: &TestApp) {
    let mut last = (Vec::new(), Vec::new(), 0);
    for _ in 0..50 {
        let rows = media_keys(app).await;
        let o = objects(app).await;
        if o.keys == rows && o.unfinished == 0 {
            return;
        }
        last = (rows, o.keys, o.unfinished);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "storage differs from the media rows: rows {:?}, objects {:?}, unfinished {}",
        last.0, last.1, last.2
    );
}

async fn media_count(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM media")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    n
}

async fn upload_form(app: &TestApp, token: &str, parts: &[FormPart<'_>]) -> (u16, Value) {
    send_form(
        app,
        reqwest::Method::POST,
        "/api/media/upload",
        token,
        parts,
    )
    .await
}

/// Multipart upload, attached to a message, read by the other participant
/// (URL and bytes) and refused to an outsider; the JSON form on the same
/// server still answers with a presigned upload.
async fn upload_attach_read(app: &TestApp) {
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (_, ct) = app.make_user("Carol").await;
    let chat = app.make_private_chat(alice, bob).await;
    let mut bob_ws = app.ws(&bt).await;

    // A small file (one PUT on S3) and one over a part (multipart on S3).
    let small = bytes_of(300 * 1024, 1);
    let large = bytes_of(7 * 1024 * 1024 + 123, 2);
    let mut ids = Vec::new();
    for (name, bytes) in [("notes.txt", &small), ("Holiday Video.MP4", &large)] {
        let (status, b) = upload_form(
            app,
            &at,
            &[
                FormPart::File {
                    name: "file",
                    file_name: name,
                    content_type: "Video/MP4",
                    bytes,
                },
                FormPart::Text("captcha_token", "dummy-token"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{b}");
        let m = &b["data"];
        assert!(m.get("upload_url").is_none(), "no presigned flow: {m}");
        assert_eq!(m["original_name"], name);
        assert_eq!(m["file_size"], bytes.len());
        assert_eq!(m["mime_type"], "video/mp4");
        assert_eq!(m["category"], "message_attachment");
        assert_eq!(m["upload_status"], "completed");
        let key = m["file_name"].as_str().unwrap();
        assert!(key.ends_with(if name.ends_with("txt") {
            ".txt"
        } else {
            ".mp4"
        }));
        assert!(key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)));
        // The uploader can read it at once.
        let got = app
            .http
            .get(m["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    let (status, row): (String, bool) = sqlx::query_as(
        "SELECT upload_status, completed_at IS NOT NULL FROM media WHERE id = $1::uuid",
    )
    .bind(&ids[1])
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!((status.as_str(), row), ("completed", true));

    let (status, sent) = json(
        app.http
            .post(app.url("/api/messages"))
            .bearer_auth(&at)
            .json(&json!({"chat_id": chat, "content": "look", "attachment_ids": ids}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let e = bob_ws.expect_event("message.new").await;
    let attached: Vec<&str> = e["payload"]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(attached, ids.iter().map(String::as_str).collect::<Vec<_>>());

    let media_url = |id: String, token: String| async move {
        json(
            app.http
                .get(app.url(&format!("/api/media/{id}/url")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    for (id, bytes) in ids.iter().zip([&small, &large]) {
        let (status, u) = media_url(id.clone(), bt.clone()).await;
        assert_eq!(status, 200, "{u}");
        let got = app
            .http
            .get(u["data"]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
        let (status, _) = media_url(id.clone(), ct.clone()).await;
        assert_eq!(status, 403, "an outsider may not read it");
    }

    // The JSON form, same endpoint, same server: a presigned upload.
    let (status, b) = json(
        app.http
            .post(app.url("/api/media/upload"))
            .bearer_auth(&at)
            .json(
                &json!({"usage": "message_attachment", "original_name": "a.pdf",
                          "file_size": 10, "mime_type": "application/pdf",
                          "captcha_token": "dummy-token"}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["media"]["upload_status"], "pending");
    assert!(b["data"]["upload_url"]
        .as_str()
        .unwrap()
        .starts_with("http"));
    assert_eq!(b["data"]["upload_method"], "PUT");
}

/// Refusals: no file, empty file, no captcha, malformed body, a body over
/// 20 MiB (streamed, and declared), an upload abandoned mid-way. None of
/// them leaves a media row, an object or an unfinished upload.
async fn upload_refusals(app: &TestApp) {
    let (_, at) = app.make_user("Alice").await;
    let file = bytes_of(1000, 3);
    let part = file_part;
    assert_eq!(
        upload_form(app, &at, &[FormPart::Text("captcha_token", "dummy-token")]).await,
        (400, json!({"error": "File is required"}))
    );
    assert_eq!(
        upload_form(app, &at, &[part(b""), FormPart::Text("captcha_token", "x")]).await,
        (400, json!({"error": "File is required"}))
    );
    // A file under another name is not the upload.
    let other = FormPart::File {
        name: "document",
        file_name: "a.bin",
        content_type: "application/octet-stream",
        bytes: &file,
    };
    assert_eq!(
        upload_form(app, &at, &[other, FormPart::Text("captcha_token", "x")]).await,
        (400, json!({"error": "File is required"}))
    );
    assert_eq!(
        upload_form(app, &at, &[part(&file)]).await,
        (400, json!({"error": "Bad Request"})),
        "the captcha token is required"
    );
    assert_eq!(
        upload_form(app, &at, &[part(&file), part(&file), captcha_part()]).await,
        (400, json!({"error": "Only one file may be sent"}))
    );
    // Malformed: a boundary that never appears, or none at all.
    for ct in ["multipart/form-data; boundary=nope", "multipart/form-data"] {
        let (status, b) = json(
            app.http
                .post(app.url("/api/media/upload"))
                .bearer_auth(&at)
                .header("Content-Type", ct)
                .body(form_body(&[part(&file)]).1)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, b),
            (400, json!({"error": "Invalid multipart form"})),
            "{ct}"
        );
    }
    assert_eq!(media_count(app).await, 0);
    assert_storage_matches_rows(app).await;

    // 20 MiB of file: over the body limit once the form's framing counts.
    let big = bytes_of(20 * 1024 * 1024, 4);
    let (ct, body) = form_body(&[FormPart::Text("captcha_token", "dummy-token"), part(&big)]);
    let head = format!(
        "POST /api/media/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {at}\r\nContent-Type: {ct}"
    );
    let (status, text) = chunked_request(app, &head, body).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"error": "Request body too large"})
    );
    // Declared over the limit: refused before a byte of body is read.
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            21 * 1024 * 1024
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("answered without the body")
        .unwrap();
    assert_eq!(parse_response(&raw).0, 413);

    // Abandoned mid-way: 6 MiB of a 10 MiB file sent (more than a part),
    // then the connection closes.
    let (_, body) = form_body(&[captcha_part(), part(&big[..10 * 1024 * 1024])]);
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(format!("{head}\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    s.write_all(&body[..6 * 1024 * 1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(media_count(app).await, 0);
    assert_storage_matches_rows(app).await;
}

fn file_part(bytes: &[u8]) -> FormPart<'_> {
    FormPart::File {
        name: "file",
        file_name: "a.bin",
        content_type: "application/octet-stream",
        bytes,
    }
}

fn captcha_part() -> FormPart<'static> {
    FormPart::Text("captcha_token", "dummy-token")
}

#[tokio::test]
async fn local_upload_attach_and_read() {
    let app = TestApp::spawn().await;
    upload_attach_read(&app).await;
    assert_storage_matches_rows(&app).await;
}

#[tokio::test]
async fn s3_upload_attach_and_read() {
    let s3 = harness::s3_env().await;
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    upload_attach_read(&app).await;
    assert_storage_matches_rows(&app).await;
}

#[tokio::test]
async fn local_upload_refusals_leave_nothing() {
    let app = TestApp::spawn().await;
    upload_refusals(&app).await;
}

#[tokio::test]
async fn s3_upload_refusals_leave_nothing() {
    let s3 = harness::s3_env().await;
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    upload_refusals(&app).await;
}

/// Storage failing (the private bucket does not exist): 503, no media row.
#[tokio::test]
async fn s3_store_failure_leaves_no_row() {
    let mut s3 = harness::s3_env().await;
    for (k, v) in &mut s3 {
        if k == "S3_BUCKET_PRIVATE" {
            *v = format!("missing-{}", &Uuid::new_v4().simple().to_string()[..12]);
        }
    }
    let app = TestApp::spawn_with(|e| e.extend(s3)).await;
    let (_, at) = app.make_user("Alice").await;
    for size in [1000, 6 * 1024 * 1024] {
        let file = bytes_of(size, 5);
        let (status, b) = upload_form(
            &app,
            &at,
            &[
                FormPart::File {
                    name: "file",
                    file_name: "a.bin",
                    content_type: "application/octet-stream",
                    bytes: &file,
                },
                captcha_part(),
            ],
        )
        .await;
        assert_eq!(
            (status, b),
            (503, json!({"error": "Storage service unavailable"})),
            "{size} bytes"
        );
    }
    assert_eq!(media_count(&app).await, 0);
}
