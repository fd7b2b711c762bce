//! Scheduler jobs: what each deletes and what it keeps, locking, the CLI.

use std::sync::Arc;

use atoitalk::infra::storage::{Bucket, Storage};
use atoitalk::jobs::{run_job, Job, JobContext};
use bytes::Bytes;
use uuid::Uuid;

use serde_json::json;

use crate::harness::{self, json, TestApp};

fn ctx(app: &TestApp, retention_days: i64, media_days: f64) -> JobContext {
    JobContext {
        db: app.state.db.clone(),
        storage: app.state.storage.clone(),
        soft_delete_retention_days: retention_days,
        media_retention_days: media_days,
        audit_retention_days: 365,
    }
}

async fn exists(app: &TestApp, table: &str, id: Uuid) -> bool {
    sqlx::query_scalar::<_, bool>(&format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"
    ))
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap()
}

/// Deletes the account through the API, then moves the deletion `days_ago`
/// into the past (retention needs time to pass).
async fn delete_account(app: &TestApp, user: Uuid, token: &str, days_ago: i64) {
    let (status, body) = json(
        app.http
            .delete(app.url("/api/account"))
            .bearer_auth(token)
            .json(&json!({"password": harness::PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "delete account: {body}");
    age_user_deletion(app, user, days_ago).await;
}

async fn age_user_deletion(app: &TestApp, user: Uuid, days_ago: i64) {
    let n = sqlx::query(
        "UPDATE users SET deleted_at = now() - make_interval(days => $2::int) \
         WHERE id = $1 AND deleted_at IS NOT NULL",
    )
    .bind(user)
    .bind(days_ago as i32)
    .execute(&app.state.db)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1, "user was soft-deleted by the API");
}

/// Opens (or finds) the private chat with `other` through the API.
async fn open_chat(app: &TestApp, token: &str, other: Uuid) -> Uuid {
    let (status, body) = json(
        app.http
            .post(app.url("/api/chats/private"))
            .bearer_auth(token)
            .json(&json!({"target_user_id": other}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "create private chat: {body}");
    body["data"]["id"].as_str().unwrap().parse().unwrap()
}

/// Sends a message through the API.
async fn send(app: &TestApp, token: &str, chat: Uuid, attachments: &[Uuid]) -> Uuid {
    let (status, body) = json(
        app.http
            .post(app.url("/api/messages"))
            .bearer_auth(token)
            .json(&json!({"chat_id": chat, "content": "hi", "attachment_ids": attachments}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "send: {body}");
    body["data"]["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn entity_cleanup_respects_retention() {
    let app = TestApp::spawn().await;
    let (old, old_token) = app.make_user("Old").await;
    let (recent, recent_token) = app.make_user("Recent").await;
    let (alive, _) = app.make_user("Alive").await;
    let chat = open_chat(&app, &old_token, alive).await;
    let msg = send(&app, &old_token, chat, &[]).await;
    delete_account(&app, old, &old_token, 40).await;
    delete_account(&app, recent, &recent_token, 3).await;

    let report = run_job(&ctx(&app, 30, 7.0), Job::EntityCleanup)
        .await
        .unwrap();
    assert!(report.ran);
    assert_eq!(report.deleted, 1);
    assert!(!exists(&app, "users", old).await);
    assert!(
        exists(&app, "users", recent).await,
        "recent soft-delete kept"
    );
    assert!(exists(&app, "users", alive).await);
    // The private chat survives with the deleted slot emptied; the message stays, anonymous.
    let (u1, u2): (Option<Uuid>, Option<Uuid>) =
        sqlx::query_as("SELECT user1_id, user2_id FROM private_chats WHERE chat_id = $1")
            .bind(chat)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!((u1, u2), (None, Some(alive)));
    let sender: Option<Uuid> = sqlx::query_scalar("SELECT sender_id FROM messages WHERE id = $1")
        .bind(msg)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(sender, None);

    // Retention 0 takes the recent one too.
    let report = run_job(&ctx(&app, 0, 7.0), Job::EntityCleanup)
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert!(!exists(&app, "users", recent).await);
}

#[tokio::test]
async fn entity_cleanup_removes_old_deleted_groups_and_memberless_groups() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.make_user("Owner").await;
    let mk_group = |deleted_days: Option<i32>, with_member: bool| {
        let db = app.state.db.clone();
        async move {
            let chat = Uuid::now_v7();
            let group = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO chats (id, type, deleted_at) VALUES ($1, 'group', CASE WHEN $2::int IS NULL THEN NULL ELSE now() - make_interval(days => $2::int) END)",
            )
            .bind(chat)
            .bind(deleted_days)
            .execute(&db)
            .await
            .unwrap();
            sqlx::query("INSERT INTO group_chats (id, chat_id, name, invite_code, created_by) VALUES ($1, $2, 'G', $3, $4)")
                .bind(group)
                .bind(chat)
                .bind(Uuid::new_v4().simple().to_string())
                .bind(owner)
                .execute(&db)
                .await
                .unwrap();
            if with_member {
                sqlx::query("INSERT INTO group_members (id, group_chat_id, user_id, role, joined_at) VALUES ($1, $2, $3, 'owner', now())")
                    .bind(Uuid::now_v7())
                    .bind(group)
                    .bind(owner)
                    .execute(&db)
                    .await
                    .unwrap();
            }
            chat
        }
    };
    let old_deleted = mk_group(Some(40), true).await;
    let recent_deleted = mk_group(Some(2), true).await;
    let live = mk_group(None, true).await;
    let empty = mk_group(None, false).await;
    let msg = app.insert_message(old_deleted, owner, "hi").await;

    let report = run_job(&ctx(&app, 30, 7.0), Job::EntityCleanup)
        .await
        .unwrap();
    assert_eq!(report.deleted, 2);
    assert!(!exists(&app, "chats", old_deleted).await);
    assert!(
        !exists(&app, "messages", msg).await,
        "messages go with their chat"
    );
    assert!(
        !exists(&app, "chats", empty).await,
        "memberless group collected"
    );
    assert!(exists(&app, "chats", recent_deleted).await);
    assert!(exists(&app, "chats", live).await);
}

#[tokio::test]
async fn private_chat_gc_needs_both_users_gone() {
    let app = TestApp::spawn().await;
    let (a, a_token) = app.make_user("A").await;
    let (b, b_token) = app.make_user("B").await;
    let (_c, c_token) = app.make_user("C").await;
    let both_gone = open_chat(&app, &a_token, b).await;
    let one_left = open_chat(&app, &c_token, a).await;
    let msg = send(&app, &a_token, both_gone, &[]).await;
    delete_account(&app, a, &a_token, 40).await;
    delete_account(&app, b, &b_token, 40).await;
    run_job(&ctx(&app, 30, 7.0), Job::EntityCleanup)
        .await
        .unwrap();
    let report = run_job(&ctx(&app, 30, 7.0), Job::PrivateChatGc)
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert!(!exists(&app, "chats", both_gone).await);
    assert!(!exists(&app, "messages", msg).await);
    assert!(
        exists(&app, "chats", one_left).await,
        "chat with one participant kept"
    );
}

async fn insert_media(
    app: &TestApp,
    storage: &Arc<dyn Storage>,
    owner: Uuid,
    category: &str,
    status: &str,
    age_hours: i32,
    upload: bool,
) -> (Uuid, String) {
    let id = Uuid::now_v7();
    let key = format!(
        "{}-{}.png",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        Uuid::new_v4()
    );
    sqlx::query(
        "INSERT INTO media (id, file_name, original_name, file_size, mime_type, category, upload_status, \
           upload_expires_at, created_at, completed_at, uploaded_by_id) \
         VALUES ($1, $2, 'a.png', 3, 'image/png', $3, $4, \
           CASE WHEN $4 = 'pending' THEN now() - make_interval(hours => $5) + interval '15 minutes' END, \
           now() - make_interval(hours => $5), \
           CASE WHEN $4 = 'completed' THEN now() - make_interval(hours => $5) END, $6)",
    )
    .bind(id)
    .bind(&key)
    .bind(category)
    .bind(status)
    .bind(age_hours)
    .bind(owner)
    .execute(&app.state.db)
    .await
    .unwrap();
    if upload {
        let bucket = if category == "message_attachment" {
            Bucket::Private
        } else {
            Bucket::Public
        };
        storage
            .put(bucket, &key, Bytes::from_static(b"png"), "image/png")
            .await
            .expect("upload to the test S3 server");
    }
    (id, key)
}

/// Moves a media row's creation (and completion) `hours` into the past.
async fn age_media(app: &TestApp, id: Uuid, hours: i32) {
    sqlx::query(
        "UPDATE media SET created_at = now() - make_interval(hours => $2), \
           completed_at = CASE WHEN completed_at IS NULL THEN NULL ELSE now() - make_interval(hours => $2) END, \
           upload_expires_at = CASE WHEN upload_expires_at IS NULL THEN NULL \
                                    ELSE now() - make_interval(hours => $2) + interval '15 minutes' END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(hours)
    .execute(&app.state.db)
    .await
    .unwrap();
}

fn media_id(dto: &serde_json::Value) -> Uuid {
    dto["id"].as_str().unwrap().parse().unwrap()
}

async fn key_of(app: &TestApp, id: Uuid) -> String {
    sqlx::query_scalar("SELECT file_name FROM media WHERE id = $1")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn media_cleanup_deletes_orphans_from_s3_then_the_database() {
    let s3 = harness::s3_env().await;
    let app = TestApp::spawn_with(|env| env.extend(s3)).await;
    let storage = app.state.storage.clone();
    let (owner, token) = app.make_user("Owner").await;
    let (other, _) = app.make_user("Other").await;
    let chat = open_chat(&app, &token, other).await;
    let png = b"\x89PNG\r\n\x1a\nfake image bytes";

    // Everything below goes through the real upload flow (S3 presigned PUT).
    let upload = |usage: &'static str, name: &'static str| {
        app.upload_media(&token, usage, name, "image/png", png)
    };
    let orphan = media_id(&upload("message_attachment", "orphan.png").await);
    let attached = media_id(&upload("message_attachment", "attached.png").await);
    send(&app, &token, chat, &[attached]).await;
    let avatar = media_id(&upload("user_avatar", "me.png").await);
    let (status, body) = json(
        app.http
            .put(app.url("/api/user/profile"))
            .bearer_auth(&token)
            .json(&json!({"full_name": "Owner", "avatar_media_id": avatar}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fresh = media_id(&upload("message_attachment", "fresh.png").await);
    // An upload that was started and never finished.
    let (status, body) = json(
        app.http
            .post(app.url("/api/media/upload"))
            .bearer_auth(&token)
            .json(
                &json!({"usage": "message_attachment", "original_name": "never.png",
                          "file_size": 3, "mime_type": "image/png", "captcha_token": "t"}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let abandoned = media_id(&body["data"]["media"]);
    for id in [orphan, attached, avatar, abandoned] {
        age_media(&app, id, 48).await;
    }
    age_media(&app, fresh, 1).await;
    let (orphan_key, attached_key, avatar_key) = (
        key_of(&app, orphan).await,
        key_of(&app, attached).await,
        key_of(&app, avatar).await,
    );
    assert!(storage
        .head(Bucket::Private, &orphan_key)
        .await
        .unwrap()
        .is_some());

    let report = run_job(&ctx(&app, 30, 1.0), Job::MediaCleanup)
        .await
        .unwrap();
    assert_eq!((report.deleted, report.failed), (2, 0), "{report}");
    assert!(!exists(&app, "media", orphan).await);
    assert!(
        storage
            .head(Bucket::Private, &orphan_key)
            .await
            .unwrap()
            .is_none(),
        "object removed from S3"
    );
    assert!(
        !exists(&app, "media", abandoned).await,
        "expired pending upload"
    );
    assert!(exists(&app, "media", attached).await);
    assert!(storage
        .head(Bucket::Private, &attached_key)
        .await
        .unwrap()
        .is_some());
    assert!(exists(&app, "media", avatar).await);
    assert!(storage
        .head(Bucket::Public, &avatar_key)
        .await
        .unwrap()
        .is_some());
    assert!(
        exists(&app, "media", fresh).await,
        "younger than the retention"
    );

    // Fractional retention: 0.02 days (~29 min) now covers the 1 h old one.
    let report = run_job(&ctx(&app, 30, 0.02), Job::MediaCleanup)
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert!(!exists(&app, "media", fresh).await);

    // A row whose object never existed is removed too (deleting nothing succeeds).
    let (ghost, _) = insert_media(
        &app,
        &storage,
        owner,
        "group_avatar",
        "completed",
        48,
        false,
    )
    .await;
    let report = run_job(&ctx(&app, 30, 1.0), Job::MediaCleanup)
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert!(!exists(&app, "media", ghost).await);
}

#[tokio::test]
async fn media_cleanup_keeps_the_row_when_storage_fails() {
    let mut s3 = harness::s3_env().await;
    // Storage that cannot be reached: every delete fails.
    for (k, v) in s3.iter_mut() {
        if k == "S3_ENDPOINT" {
            *v = "http://127.0.0.1:9".into();
        }
    }
    let app = TestApp::spawn_with(|env| env.extend(s3)).await;
    let storage = app.state.storage.clone();
    let (owner, _) = app.make_user("Owner").await;
    let (orphan, _) = insert_media(
        &app,
        &storage,
        owner,
        "message_attachment",
        "completed",
        48,
        false,
    )
    .await;
    let report = run_job(&ctx(&app, 30, 1.0), Job::MediaCleanup)
        .await
        .unwrap();
    assert_eq!((report.deleted, report.failed), (0, 1));
    assert!(
        exists(&app, "media", orphan).await,
        "row kept for the next run"
    );
}

#[tokio::test]
async fn a_job_never_runs_twice_at_once() {
    let app = TestApp::spawn().await;
    let (u, token) = app.make_user("Gone").await;
    delete_account(&app, u, &token, 40).await;
    // Another scheduler holds the entity-cleanup lock.
    let mut holder = app.state.db.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(Job::EntityCleanup.lock_key())
        .execute(&mut *holder)
        .await
        .unwrap();
    let report = run_job(&ctx(&app, 30, 7.0), Job::EntityCleanup)
        .await
        .unwrap();
    assert!(!report.ran);
    assert!(exists(&app, "users", u).await);
    // Other jobs are not blocked by it.
    assert!(
        run_job(&ctx(&app, 30, 7.0), Job::PrivateChatGc)
            .await
            .unwrap()
            .ran
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(Job::EntityCleanup.lock_key())
        .execute(&mut *holder)
        .await
        .unwrap();

    // Two concurrent runs: together they delete each row exactly once.
    let mut ids = Vec::new();
    for i in 0..20 {
        let (id, token) = app.make_user(&format!("U{i}")).await;
        delete_account(&app, id, &token, 40).await;
        ids.push(id);
    }
    let c = ctx(&app, 30, 7.0);
    let (r1, r2) = tokio::join!(
        run_job(&c, Job::EntityCleanup),
        run_job(&c, Job::EntityCleanup)
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.deleted + r2.deleted, 21);
    for id in ids {
        assert!(!exists(&app, "users", id).await);
    }
}

#[tokio::test]
async fn jobs_run_cli_reports_counts() {
    let app = TestApp::spawn().await;
    let (u, token) = app.make_user("Gone").await;
    delete_account(&app, u, &token, 40).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .args(["jobs", "run", "entity-cleanup"])
        .envs(app.env.iter())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("entity-cleanup: deleted 1"), "{stdout}");
    assert!(!exists(&app, "users", u).await);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .args(["jobs", "run", "nope"])
        .envs(app.env.iter())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("entity-cleanup, private-chat-gc, media-cleanup"));
}

#[tokio::test]
async fn scheduler_process_never_migrates_and_stops_on_sigterm() {
    // An empty database: if the scheduler migrated, tables would appear.
    let db = harness::create_database().await;
    let mut env = harness::base_env();
    env.insert("DB_NAME".into(), db.name.clone());
    env.insert("DB_MIGRATE".into(), "true".into());
    env.insert("ENTITY_CLEANUP_CRON".into(), "0 2 * * *".into());
    // The guard kills the child if an assertion below fails.
    let child = harness::ChildGuard::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
            .arg("scheduler")
            .envs(env.iter())
            .env("RUST_LOG", "info"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    child.signal(libc::SIGTERM);
    let out = child.finish(std::time::Duration::from_secs(15)).await;
    let log = out.output;
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("scheduler started") && log.contains("scheduler stopped"),
        "{log}"
    );
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host(&env["DB_HOST"])
        .port(env["DB_PORT"].parse().unwrap())
        .username(&env["DB_USER"])
        .password(&env["DB_PASSWORD"])
        .database(&db.name);
    let mut conn = sqlx::ConnectOptions::connect(&opts).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 0, "the scheduler must never migrate");
}
