//! Scheduler jobs: what each deletes and what it keeps, locking, the CLI.

use std::sync::Arc;

use atoitalk::infra::storage::{Bucket, Storage};
use atoitalk::jobs::{run_job, Job, JobContext};
use bytes::Bytes;
use uuid::Uuid;

use crate::harness::{self, TestApp};

fn ctx(app: &TestApp, retention_days: i64, media_days: f64) -> JobContext {
    JobContext {
        db: app.state.db.clone(),
        storage: app.state.storage.clone(),
        soft_delete_retention_days: retention_days,
        media_retention_days: media_days,
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

async fn soft_delete_user(app: &TestApp, user: Uuid, days_ago: i64) {
    sqlx::query(
        "UPDATE users SET deleted_at = now() - make_interval(days => $2::int), email = NULL, username = NULL WHERE id = $1",
    )
    .bind(user)
    .bind(days_ago as i32)
    .execute(&app.state.db)
    .await
    .unwrap();
}

async fn insert_message(app: &TestApp, chat: Uuid, sender: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO messages (id, chat_id, sender_id, content) VALUES ($1, $2, $3, 'hi')")
        .bind(id)
        .bind(chat)
        .bind(sender)
        .execute(&app.state.db)
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn entity_cleanup_respects_retention() {
    let app = TestApp::spawn().await;
    let (old, _) = app.make_user("Old").await;
    let (recent, _) = app.make_user("Recent").await;
    let (alive, _) = app.make_user("Alive").await;
    let chat = app.make_private_chat(old, alive).await;
    let msg = insert_message(&app, chat, old).await;
    soft_delete_user(&app, old, 40).await;
    soft_delete_user(&app, recent, 3).await;

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
    let msg = insert_message(&app, old_deleted, owner).await;

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
    let (a, _) = app.make_user("A").await;
    let (b, _) = app.make_user("B").await;
    let (c, _) = app.make_user("C").await;
    let both_gone = app.make_private_chat(a, b).await;
    let one_left = app.make_private_chat(c, a).await;
    let msg = insert_message(&app, both_gone, a).await;
    for u in [a, b] {
        soft_delete_user(&app, u, 40).await;
    }
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

#[tokio::test]
async fn media_cleanup_deletes_orphans_from_s3_then_the_database() {
    let s3 = harness::s3_env().await;
    let app = TestApp::spawn_with(|env| env.extend(s3)).await;
    let storage = app.state.storage.clone();
    let (owner, _) = app.make_user("Owner").await;
    let (other, _) = app.make_user("Other").await;
    let chat = app.make_private_chat(owner, other).await;
    let msg = insert_message(&app, chat, owner).await;

    let (orphan, orphan_key) = insert_media(
        &app,
        &storage,
        owner,
        "message_attachment",
        "completed",
        48,
        true,
    )
    .await;
    let (attached, attached_key) = insert_media(
        &app,
        &storage,
        owner,
        "message_attachment",
        "completed",
        48,
        true,
    )
    .await;
    sqlx::query("UPDATE media SET message_id = $1 WHERE id = $2")
        .bind(msg)
        .bind(attached)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (avatar, avatar_key) =
        insert_media(&app, &storage, owner, "user_avatar", "completed", 48, true).await;
    sqlx::query("UPDATE users SET avatar_id = $1 WHERE id = $2")
        .bind(avatar)
        .bind(owner)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (fresh, _) = insert_media(
        &app,
        &storage,
        owner,
        "message_attachment",
        "completed",
        1,
        true,
    )
    .await;
    let (expired_pending, _) = insert_media(
        &app,
        &storage,
        owner,
        "message_attachment",
        "pending",
        2,
        false,
    )
    .await;
    let (never_uploaded, _) = insert_media(
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
    assert_eq!((report.deleted, report.failed), (3, 0), "{report}");
    assert!(!exists(&app, "media", orphan).await);
    assert!(
        storage
            .head(Bucket::Private, &orphan_key)
            .await
            .unwrap()
            .is_none(),
        "object removed from S3"
    );
    assert!(!exists(&app, "media", expired_pending).await);
    assert!(
        !exists(&app, "media", never_uploaded).await,
        "missing object counts as deleted"
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
    let (u, _) = app.make_user("Gone").await;
    soft_delete_user(&app, u, 40).await;
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
        let (id, _) = app.make_user(&format!("U{i}")).await;
        soft_delete_user(&app, id, 40).await;
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
    let (u, _) = app.make_user("Gone").await;
    soft_delete_user(&app, u, 40).await;
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
