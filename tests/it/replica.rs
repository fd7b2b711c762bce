//! Integration tests: the PostgreSQL read replica. Read-heavy endpoints read
//! from a streaming standby, except for a user whose own last write the
//! standby has not replayed yet, and for everyone while it is unreachable or
//! lags too far. Tests that need a standby are skipped (saying so) unless
//! `TEST_DB_READ_PORT` names one of `TEST_DB_PORT`'s (`scripts/test.sh` with
//! `TEST_PG_REPLICA=1` makes such a pair); the unreachable case always runs.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::chats::support::{get, post};
use crate::harness::{base_env, free_port, TestApp};
use atoitalk::infra::replica::parse_lsn;

/// Tests that pause the standby's replay (or need it keeping up) take turns.
static STANDBY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Host and port of the standby, when the run has one.
fn standby() -> Option<(String, u16)> {
    let port = std::env::var("TEST_DB_READ_PORT").ok()?.parse().ok()?;
    let host = std::env::var("TEST_DB_READ_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    Some((host, port))
}

fn skipped(test: &str) {
    eprintln!(
        "replica::{test} skipped: no read replica configured (run scripts/test.sh with \
         TEST_PG_REPLICA=1, or set TEST_DB_READ_PORT to a streaming standby of TEST_DB_PORT)"
    );
}

async fn spawn_with_replica(host: &str, port: u16, max_lag_secs: u64) -> TestApp {
    let (host, port) = (host.to_string(), port.to_string());
    TestApp::spawn_with(move |env| {
        env.insert("DB_READ_HOST".into(), host);
        env.insert("DB_READ_PORT".into(), port);
        env.insert("DB_READ_MAX_LAG_SECONDS".into(), max_lag_secs.to_string());
    })
    .await
}

/// Polls `check` every 50 ms until it holds, failing with `what` after 60 s
/// (the standby replays the whole suite's writes, on a busy machine).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until the app's monitor has seen the standby replay everything the
/// primary had written when this was called (and so serves reads again).
async fn caught_up(app: &TestApp) {
    let head: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let head = parse_lsn(&head).unwrap();
    let replica = app.state.replica.clone().expect("replica configured");
    let deadline = Instant::now() + Duration::from_secs(60);
    while replica.usable_position().is_none_or(|p| p < head) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until the standby replays {head:X}: {} {:?}",
            replica.health(),
            replica.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replay on the standby stays paused while this lives (resumed on drop,
/// also when the test fails, so the next test finds it streaming).
struct PausedReplay {
    opts: PgConnectOptions,
}

impl PausedReplay {
    async fn start(host: &str, port: u16) -> PausedReplay {
        let env = base_env();
        let opts = PgConnectOptions::new()
            .host(host)
            .port(port)
            .username(&env["DB_USER"])
            .password(&env["DB_PASSWORD"])
            .database("postgres");
        let mut c = opts.connect().await.expect("connect to the standby");
        sqlx::query("SELECT pg_wal_replay_pause()")
            .execute(&mut c)
            .await
            .expect("pause replay (is TEST_DB_READ_PORT a standby?)");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
                .fetch_one(&mut c)
                .await
                .unwrap();
            if state == "paused" {
                break;
            }
            assert!(Instant::now() < deadline, "replay did not pause");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        PausedReplay { opts }
    }
}

impl Drop for PausedReplay {
    fn drop(&mut self) {
        let opts = self.opts.clone();
        let resumed = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = opts.connect().await?;
                sqlx::query("SELECT pg_wal_replay_resume()")
                    .execute(&mut c)
                    .await?;
                c.close().await
            })
        })
        .join();
        if !matches!(resumed, Ok(Ok(()))) {
            eprintln!("could not resume replay on the standby");
        }
    }
}

async fn send(app: &TestApp, token: &str, chat: Uuid, text: &str) -> String {
    let (s, body) = post(
        app,
        token,
        "/api/messages",
        json!({"chat_id": chat, "content": text}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    body["data"]["id"].as_str().unwrap().to_string()
}

async fn history_ids(app: &TestApp, token: &str, chat: Uuid) -> Vec<String> {
    let (s, body) = get(app, token, &format!("/api/chats/{chat}/messages")).await;
    assert_eq!(s, 200, "{body}");
    ids(&body["data"])
}

/// Ids of the last messages in a chat list (empty when none).
async fn chat_list_last_ids(app: &TestApp, token: &str) -> Vec<String> {
    let (s, body) = get(app, token, "/api/chats").await;
    assert_eq!(s, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["last_message"]["id"].as_str().map(str::to_string))
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn paused_standby_still_shows_the_writer_their_message_and_others_the_replica() {
    let Some((host, port)) = standby() else {
        return skipped(
            "paused_standby_still_shows_the_writer_their_message_and_others_the_replica",
        );
    };
    let _turn = STANDBY.lock().await;
    let app = spawn_with_replica(&host, port, 600).await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let first = send(&app, &at, chat, "before the pause").await;
    caught_up(&app).await;
    assert_eq!(history_ids(&app, &bt, chat).await, vec![first.clone()]);

    let paused = PausedReplay::start(&host, port).await;
    let second = send(&app, &at, chat, "while replay is paused").await;
    // The writer reads their own write (from the primary)...
    assert_eq!(
        history_ids(&app, &at, chat).await,
        vec![first.clone(), second.clone()]
    );
    assert_eq!(chat_list_last_ids(&app, &at).await, vec![second.clone()]);
    // ...while the other side reads the standby, which has not replayed it:
    // proof that these reads really go to the replica.
    assert!(app
        .state
        .replica
        .as_ref()
        .unwrap()
        .usable_position()
        .is_some());
    assert_eq!(history_ids(&app, &bt, chat).await, vec![first.clone()]);
    assert_eq!(chat_list_last_ids(&app, &bt).await, vec![first.clone()]);
    // The standby really is behind: the primary has the message.
    let on_primary: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(on_primary, 2);

    drop(paused);
    // Waiting on the monitor, not by polling the API (the read rate limit).
    caught_up(&app).await;
    assert_eq!(
        history_ids(&app, &bt, chat).await,
        vec![first.clone(), second.clone()]
    );
    assert_eq!(chat_list_last_ids(&app, &bt).await, vec![second.clone()]);
    assert_eq!(history_ids(&app, &at, chat).await, vec![first, second]);
}

#[tokio::test]
async fn standby_lagging_beyond_the_limit_sends_every_read_to_the_primary() {
    let Some((host, port)) = standby() else {
        return skipped("standby_lagging_beyond_the_limit_sends_every_read_to_the_primary");
    };
    let _turn = STANDBY.lock().await;
    // Not waiting for the standby to catch up: under the full suite's write
    // load it may already lag more than a tight limit. Only until the
    // monitor holds its connection (this test's database exists there).
    // Paused before the send, the standby lacks the message (and maybe the
    // chat): a read of Bob's that reached it could not show the message.
    let app = spawn_with_replica(&host, port, 1).await;
    let replica = app.state.replica.clone().unwrap();
    eventually("the monitor reaches the standby", || {
        let r = replica.clone();
        async move { r.status().up }
    })
    .await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;

    let _paused = PausedReplay::start(&host, port).await;
    let sent = send(&app, &at, chat, "while the standby falls behind").await;
    eventually("the monitor sees the standby lagging", || {
        let r = replica.clone();
        async move { r.health() == "lagging" }
    })
    .await;
    assert!(replica.usable_position().is_none());
    // Bob never wrote, yet reads the primary now.
    assert_eq!(history_ids(&app, &bt, chat).await, vec![sent.clone()]);
    assert_eq!(chat_list_last_ids(&app, &bt).await, vec![sent]);
    let (s, body) = get(&app, &bt, "/readyz").await;
    assert_eq!(
        s, 200,
        "a lagging replica does not make the instance unready"
    );
    assert_eq!(body["data"]["checks"]["postgres_replica"], "lagging");
}

/// Reads every replica-routed endpoint once; all must answer 200.
async fn read_everything(app: &TestApp, token: &str, admin_token: &str, chat: Uuid) {
    for (t, path) in [
        (token, format!("/api/chats/{chat}/messages")),
        (token, "/api/chats".into()),
        (token, "/api/users?query=a".into()),
        (token, "/api/chats/group/public".into()),
        (admin_token, "/api/admin/dashboard".into()),
        (admin_token, "/api/admin/users".into()),
        (admin_token, "/api/admin/groups".into()),
        (admin_token, "/api/admin/reports".into()),
    ] {
        let (s, body) = get(app, t, &path).await;
        assert_eq!(s, 200, "{path}: {body}");
    }
}

#[tokio::test]
async fn unreachable_replica_leaves_every_read_on_the_primary() {
    // Nothing listens on this port: a replica that is down from the start.
    let app = spawn_with_replica("127.0.0.1", free_port(), 30).await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let chat = app.make_private_chat(alice, bob).await;
    let sent = send(&app, &at, chat, "hello").await;
    assert_eq!(history_ids(&app, &bt, chat).await, vec![sent.clone()]);
    assert_eq!(chat_list_last_ids(&app, &bt).await, vec![sent]);
    read_everything(&app, &bt, &admin_t, chat).await;
    let (s, body) = get(&app, &bt, "/readyz").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["checks"]["postgres_replica"], "unreachable");
    assert_eq!(body["data"]["checks"]["postgres"], true);
}

/// A TCP relay to the standby that the test can cut: the replica "dies"
/// (every open connection and the port) without touching the server.
struct Relay {
    port: u16,
    stop: watch::Sender<bool>,
}

impl Relay {
    async fn start(host: String, port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let (stop, rx) = watch::channel(false);
        let mut accept_rx = rx.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => break },
                    _ = accept_rx.changed() => break,
                };
                let (host, mut rx) = (host.clone(), rx.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect((host.as_str(), port)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Relay {
            port: relay_port,
            stop,
        }
    }

    fn cut(&self) {
        let _ = self.stop.send(true);
    }
}

#[tokio::test]
async fn replica_dying_under_reads_falls_back_to_the_primary_without_errors() {
    let Some((host, port)) = standby() else {
        return skipped("replica_dying_under_reads_falls_back_to_the_primary_without_errors");
    };
    let _turn = STANDBY.lock().await;
    let relay = Relay::start(host, port).await;
    let app = spawn_with_replica("127.0.0.1", relay.port, 600).await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    let (admin, admin_t) = app.make_user("Admin").await;
    app.make_admin(admin).await;
    let chat = app.make_private_chat(alice, bob).await;
    caught_up(&app).await;
    // Warm the replica pool so it holds connections that are about to die.
    read_everything(&app, &bt, &admin_t, chat).await;
    assert_eq!(app.state.replica.as_ref().unwrap().health(), "ok");

    relay.cut();
    let sent = send(&app, &at, chat, "after the replica died").await;
    // Right after the cut and on past the monitor noticing it; a few rounds
    // only, to stay inside the per-user read rate limit.
    for _ in 0..6 {
        read_everything(&app, &bt, &admin_t, chat).await;
        assert!(history_ids(&app, &bt, chat).await.contains(&sent));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(app.state.replica.as_ref().unwrap().health(), "unreachable");
    let (_, body) = get(&app, &bt, "/readyz").await;
    assert_eq!(body["data"]["checks"]["postgres_replica"], "unreachable");
}
