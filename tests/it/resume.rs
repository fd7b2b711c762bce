//! Resume after reconnect (issue 16 §1): `meta.seq` on every event but
//! typing, `GET /ws?since=` replaying exactly what was missed (across
//! instances, after a SIGKILL, after a bus loss), and `sync.reset` when
//! that cannot be done. A second, always-connected device of the same user
//! is the oracle: a resumed device must end up with exactly its events.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{base_env, free_port, ChildGuard, TcpProxy, TestApp, WsClient, WsRead};

const QUIET: Duration = Duration::from_millis(500);

async fn ws_at(base: &str, token: &str, since: Option<&str>) -> WsClient {
    let mut url = format!("{base}/ws?token={token}");
    if let Some(s) = since {
        url.push_str("&since=");
        url.push_str(&url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
    }
    let (stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    WsClient { stream }
}

fn ws_base(app: &TestApp) -> String {
    format!("ws://{}", app.addr)
}

fn seq(e: &Value) -> String {
    e["meta"]["seq"]
        .as_str()
        .unwrap_or_else(|| panic!("no meta.seq: {e}"))
        .to_string()
}

/// Every event until `quiet` passes with none.
async fn drain(ws: &mut WsClient, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        match ws.read(quiet).await {
            WsRead::Event(e) => out.push(e),
            WsRead::Timeout => return out,
            WsRead::Closed(c) => panic!("socket closed ({c:?}) after {} events", out.len()),
        }
    }
}

/// Exactly `n` events (each within 5 s).
async fn take(ws: &mut WsClient, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_event(ws).await);
    }
    out
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect()
}

async fn wait_gone(app: &TestApp, user: Uuid) {
    for _ in 0..200 {
        if !app.state.hub.is_connected_locally(user) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("socket of {user} never went away");
}

struct World {
    alice: (Uuid, String),
    bob: (Uuid, String),
    dave: (Uuid, String),
    private: Uuid,
    group: Uuid,
}

/// Alice and Bob share a private chat; the group has Bob (owner), Alice and
/// Dave. Dave is not Bob's contact, so he gets group events only.
async fn world(app: &TestApp) -> World {
    let alice = app.make_user("Alice").await;
    let bob = app.make_user("Bob").await;
    let dave = app.make_user("Dave").await;
    let private = app.make_private_chat(alice.0, bob.0).await;
    let group = app.make_group(bob.0, &[alice.0, dave.0]).await;
    World {
        alice,
        bob,
        dave,
        private,
        group,
    }
}

/// Bob's actions, alternating between the instances: per round a message,
/// an edit, a delete, a group rename (message.new + chat.update) and a
/// profile change: 6 events for Alice per round, 2 for Dave.
async fn produce(apps: [&TestApp; 2], w: &World, rounds: usize) {
    let bt = &w.bob.1;
    for r in 0..rounds {
        let app = apps[r % 2];
        let other = apps[(r + 1) % 2];
        let m = send(app, bt, w.private, &format!("hello {r}")).await;
        let mid = m["id"].as_str().unwrap().to_string();
        let (s, b) = put(
            other,
            bt,
            &format!("/api/messages/{mid}"),
            json!({"content": format!("edited {r}")}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = delete(app, bt, &format!("/api/messages/{mid}")).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = put(
            other,
            bt,
            &format!("/api/chats/group/{}", w.group),
            json!({"name": format!("Club {r}")}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = put(
            app,
            bt,
            "/api/user/profile",
            json!({"full_name": format!("Bob {r}")}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
}

/// `RESUME_REDIS_CLUSTER_NODES` for the cluster runs (`resume_cluster`).
async fn spawn(cluster: Option<&str>, extra: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(|env| {
        if let Some(nodes) = cluster {
            env.insert("RESUME_REDIS_CLUSTER_NODES".into(), nodes.into());
        }
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
    })
    .await
}

#[tokio::test]
async fn reconnecting_to_the_other_instance_replays_exactly_the_missed_events_then_live() {
    replay_across_instances(None).await;
}

pub async fn replay_across_instances(cluster: Option<&str>) {
    let a = spawn(cluster, &[]).await;
    let b = a.second_instance().await;
    let w = world(&a).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let (dave, dt) = (w.dave.0, w.dave.1.clone());
    let (carol, ct) = a.make_user("Carol").await;
    // The oracles stay connected on B; the devices under test start on A.
    let mut alice_live = connect(&b, alice, &at).await;
    let mut dave_live = connect(&b, dave, &dt).await;
    let mut alice_dev = connect(&a, alice, &at).await;
    let mut dave_dev = connect(&a, dave, &dt).await;
    let mut carol_dev = connect(&a, carol, &ct).await;

    send(&a, &w.bob.1, w.private, "before").await;
    send(&a, &w.bob.1, w.group, "group before").await;
    let first = take(&mut alice_dev, 2).await;
    assert_eq!(
        take(&mut alice_live, 2).await,
        first,
        "live copies are identical"
    );
    let alice_since = seq(&first[1]);
    let dave_since = seq(&take(&mut dave_dev, 1).await[0]);
    take(&mut dave_live, 1).await;
    // Carol has a position of her own (her profile change reaches herself).
    let (s, _) = put(
        &a,
        &ct,
        "/api/user/profile",
        json!({"full_name": "Carol Two"}),
    )
    .await;
    assert_eq!(s, 200);
    let carol_since = seq(&carol_dev.expect_event("user.update").await);
    for (ws, user) in [(alice_dev, alice), (dave_dev, dave), (carol_dev, carol)] {
        drop(ws);
        wait_gone(&a, user).await;
    }

    produce([&a, &b], &w, 8).await;
    send(&b, &w.bob.1, w.private, "the 49th").await;
    send(&a, &w.bob.1, w.private, "the 50th").await;
    let expected = drain(&mut alice_live, QUIET).await;
    assert_eq!(expected.len(), 50, "{:?}", kinds(&expected));
    for k in [
        "message.new",
        "message.update",
        "message.delete",
        "chat.update",
        "user.update",
    ] {
        assert!(
            kinds(&expected).contains(&k),
            "{k} in {:?}",
            kinds(&expected)
        );
    }

    // Back on the OTHER instance: exactly those 50, in order, then live.
    let mut alice_back = ws_at(&ws_base(&b), &at, Some(&alice_since)).await;
    let replayed = take(&mut alice_back, 50).await;
    assert_eq!(replayed, expected);
    expect_silence(&mut alice_back, QUIET).await;
    send(&a, &w.bob.1, w.private, "live again").await;
    let live = next_event(&mut alice_back).await;
    assert_eq!(live["payload"]["content"], "live again");
    assert_eq!(live, next_event(&mut alice_live).await);
    expect_silence(&mut alice_back, QUIET).await;

    // Dave gets his group events only, as his live device did.
    let dave_expected = drain(&mut dave_live, QUIET).await;
    assert_eq!(dave_expected.len(), 16, "{:?}", kinds(&dave_expected));
    let mut dave_back = ws_at(&ws_base(&b), &dt, Some(&dave_since)).await;
    assert_eq!(take(&mut dave_back, 16).await, dave_expected);
    expect_silence(&mut dave_back, QUIET).await;
    // Carol missed nothing: nothing of the others is replayed to her.
    let mut carol_back = ws_at(&ws_base(&a), &ct, Some(&carol_since)).await;
    expect_silence(&mut carol_back, QUIET).await;
    // Another user's position never replays that user's events.
    let mut carol_wrong = ws_at(&ws_base(&a), &ct, Some(&alice_since)).await;
    match carol_wrong.read(Duration::from_secs(5)).await {
        WsRead::Event(e) => {
            assert_eq!(e["type"], "sync.reset", "{e}");
        }
        other => panic!("expected sync.reset, got {other:?}"),
    }
    expect_silence(&mut carol_wrong, QUIET).await;
}

/// A real `atoitalk serve` process sharing `app`'s database and Redis prefix.
async fn spawn_instance(app: &TestApp) -> (ChildGuard, u16) {
    let port = free_port();
    let child = ChildGuard::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
            .arg("serve")
            .envs(app.env.iter())
            .env("APP_PORT", port.to_string())
            .env("APP_URL", format!("http://127.0.0.1:{port}"))
            .env("RUST_LOG", "warn"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = app
            .http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return (child, port);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the instance on port {port} never became ready");
}

#[tokio::test]
async fn after_sigkill_of_its_instance_a_device_resumes_elsewhere_while_events_flow() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let w = world(&a).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let (child, port) = spawn_instance(&a).await;
    let mut live = connect(&b, alice, &at).await;
    let mut dev = ws_at(&format!("ws://127.0.0.1:{port}"), &at, None).await;
    // The device is registered once an event reaches it.
    let mut got = Vec::new();
    for _ in 0..50 {
        send(&a, &w.bob.1, w.private, "warm-up").await;
        if let WsRead::Event(e) = dev.read(Duration::from_millis(200)).await {
            got.push(e);
            break;
        }
    }
    assert_eq!(
        got.len(),
        1,
        "the device on the child instance never got an event"
    );
    got.extend(drain(&mut dev, Duration::from_millis(300)).await);

    // Bob keeps sending through both in-process instances meanwhile.
    let urls = [a.url("/api/messages"), b.url("/api/messages")];
    let (http, bt, chat) = (a.http.clone(), w.bob.1.clone(), w.private);
    let producer = tokio::spawn(async move {
        for i in 0..40 {
            let res = http
                .post(&urls[i % 2])
                .bearer_auth(&bt)
                .json(&json!({"chat_id": chat, "content": format!("flow {i}")}))
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), 200);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    while got.len() < 10 {
        match dev.read(Duration::from_secs(5)).await {
            WsRead::Event(e) => got.push(e),
            other => panic!("expected events, got {other:?}"),
        }
    }
    child.signal(libc::SIGKILL);
    // Whatever made it out before the kill still counts.
    loop {
        match dev.read(Duration::from_secs(5)).await {
            WsRead::Event(e) => got.push(e),
            WsRead::Closed(_) => break,
            WsRead::Timeout => panic!("the killed instance's socket stayed open"),
        }
    }
    let since = seq(got.last().unwrap());
    let mut back = ws_at(&ws_base(&a), &at, Some(&since)).await;
    producer.await.unwrap();
    got.extend(drain(&mut back, Duration::from_secs(1)).await);
    let all = drain(&mut live, QUIET).await;
    // Warm-ups sent before the device registered never were its to get.
    let start = all
        .iter()
        .position(|e| e == &got[0])
        .expect("the device's first event is the live device's too");
    let expected = &all[start..];
    assert!(expected.len() >= 41, "{}", expected.len());
    assert_eq!(got.len(), expected.len(), "no gap, no duplicate");
    assert_eq!(got, expected);
    drop(child);
}

#[tokio::test]
async fn a_flushed_store_answers_sync_reset_then_stays_live_and_resumable() {
    flushed_store(None).await;
}

pub async fn flushed_store(cluster: Option<&str>) {
    let app = spawn(cluster, &[]).await;
    let w = world(&app).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&app, alice, &at).await;
    send(&app, &w.bob.1, w.private, "one").await;
    let since = seq(&next_event(&mut dev).await);
    drop(dev);
    wait_gone(&app, alice).await;
    if cluster.is_none() {
        let tag = app.state.redis.key(&format!("rt:{{u:{alice}}}"));
        let mut c = app.state.redis.conn();
        let found: i64 = redis::cmd("XLEN")
            .arg(format!("{tag}:e"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(found, 1, "the store is where docs/realtime.md says");
    }
    // Only this user's keys: the Redis is shared with other tests.
    app.state.bus.store().forget(alice).await.unwrap();
    send(&app, &w.bob.1, w.private, "after the flush").await;

    let mut back = ws_at(&ws_base(&app), &at, Some(&since)).await;
    let first = next_event(&mut back).await;
    assert_eq!(first["type"], "sync.reset", "{first}");
    assert_eq!(first["payload"]["reason"], "store_reset");
    let head = seq(&first);
    expect_silence(&mut back, QUIET).await;
    send(&app, &w.bob.1, w.private, "live").await;
    let e = next_event(&mut back).await;
    assert_eq!(e["payload"]["content"], "live");
    drop(back);
    wait_gone(&app, alice).await;
    // The reset's position is a real one: resuming from it replays "live".
    send(&app, &w.bob.1, w.private, "later").await;
    let mut again = ws_at(&ws_base(&app), &at, Some(&head)).await;
    let got = take(&mut again, 2).await;
    assert_eq!(got[0]["payload"]["content"], "live");
    assert_eq!(got[1]["payload"]["content"], "later");
    expect_silence(&mut again, QUIET).await;
}

#[tokio::test]
async fn a_position_older_than_retention_or_unparsable_gets_sync_reset() {
    retention_and_garbage(None).await;
}

pub async fn retention_and_garbage(cluster: Option<&str>) {
    let app = spawn(
        cluster,
        &[
            ("RESUME_RETENTION_EVENTS", "5"),
            ("RESUME_RETENTION_SECONDS", "0"),
        ],
    )
    .await;
    let w = world(&app).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&app, alice, &at).await;
    send(&app, &w.bob.1, w.private, "old").await;
    let old = seq(&next_event(&mut dev).await);
    for i in 0..9 {
        send(&app, &w.bob.1, w.private, &format!("m{i}")).await;
    }
    let recent = take(&mut dev, 9).await;
    drop(dev);
    wait_gone(&app, alice).await;

    let mut back = ws_at(&ws_base(&app), &at, Some(&old)).await;
    let first = next_event(&mut back).await;
    assert_eq!(first["type"], "sync.reset", "{first}");
    assert_eq!(first["payload"]["reason"], "expired");
    assert_eq!(
        seq(&first),
        seq(&recent[8]),
        "the reset names the newest position"
    );
    expect_silence(&mut back, QUIET).await;
    drop(back);
    // Within the last 5 it still resumes.
    let mut back = ws_at(&ws_base(&app), &at, Some(&seq(&recent[5]))).await;
    assert_eq!(take(&mut back, 3).await, recent[6..].to_vec());
    expect_silence(&mut back, QUIET).await;
    drop(back);

    for bad in ["garbage", "1.2", "123.0-5", &"9".repeat(80)] {
        let mut ws = ws_at(&ws_base(&app), &at, Some(bad)).await;
        let first = next_event(&mut ws).await;
        assert_eq!(first["type"], "sync.reset", "{bad}: {first}");
        assert_eq!(first["payload"]["reason"], "invalid_position", "{bad}");
        send(&app, &w.bob.1, w.private, "still live").await;
        assert_eq!(
            next_event(&mut ws).await["payload"]["content"],
            "still live"
        );
        drop(ws);
        wait_gone(&app, alice).await;
    }
    // An empty `since` is no position: a plain live socket, no reset.
    let mut ws = ws_at(&ws_base(&app), &at, Some("")).await;
    expect_silence(&mut ws, QUIET).await;
}

#[tokio::test]
async fn events_younger_than_the_retention_are_kept_beyond_the_count_and_dropped_exactly_after() {
    time_retention(None).await;
}

/// The time half of the retention rule, at the trim's real sizes: with 64
/// events kept (a trim every 8th event, at most 16 dropped per trim), 100
/// events sent within the window are all kept; once they are older than
/// it, the trims drop exactly them and keep every newer event, however
/// many trims it takes and wherever the boundary falls in a trim's range.
pub async fn time_retention(cluster: Option<&str>) {
    const WINDOW: Duration = Duration::from_secs(6);
    let app = spawn(
        cluster,
        &[
            ("RESUME_RETENTION_EVENTS", "64"),
            ("RESUME_RETENTION_SECONDS", "6"),
        ],
    )
    .await;
    let w = world(&app).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&app, alice, &at).await;
    // Two senders (a private chat and the group) keep each one well inside
    // the per-user request limit.
    let burst = |n: usize, tag: &'static str| {
        let (app, w) = (&app, &w);
        async move {
            for i in 0..n {
                let (token, chat) = if i % 2 == 0 {
                    (&w.bob.1, w.private)
                } else {
                    (&w.dave.1, w.group)
                };
                send(app, token, chat, &format!("{tag} {i}")).await;
            }
        }
    };
    let t0 = Instant::now();
    burst(100, "old").await;
    let old = take(&mut dev, 100).await;
    assert!(
        t0.elapsed() < WINDOW / 2,
        "the burst must fit the window to test it"
    );
    // All 100 are younger than the window: kept, though 64 is the count.
    let mut back = ws_at(&ws_base(&app), &at, Some(&seq(&old[0]))).await;
    assert_eq!(take(&mut back, 99).await, old[1..].to_vec());
    expect_silence(&mut back, QUIET).await;
    drop(back);

    tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
    burst(80, "new").await;
    let new = take(&mut dev, 80).await;
    // Wait for the trim after the last append (it runs after delivery).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for gone in [&old[0], &old[99]] {
        let mut back = ws_at(&ws_base(&app), &at, Some(&seq(gone))).await;
        let first = next_event(&mut back).await;
        assert_eq!(first["type"], "sync.reset", "{first}");
        assert_eq!(first["payload"]["reason"], "expired", "{first}");
        assert_eq!(seq(&first), seq(&new[79]));
        drop(back);
    }
    // The oldest young event is still there, and everything after it.
    let mut back = ws_at(&ws_base(&app), &at, Some(&seq(&new[0]))).await;
    assert_eq!(take(&mut back, 79).await, new[1..].to_vec());
    expect_silence(&mut back, QUIET).await;
}

/// The Redis the store is on: the app's own, or the cluster named.
async fn store_conn(app: &TestApp, cluster: Option<&str>) -> atoitalk::infra::redis::RedisConn {
    match cluster {
        None => app.state.redis.conn(),
        Some(seeds) => {
            let nodes: Vec<String> = seeds.split(',').map(|s| format!("redis://{s}")).collect();
            let client = redis::cluster::ClusterClient::new(nodes).expect("cluster client");
            atoitalk::infra::redis::RedisConn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .expect("cluster connection"),
            )
        }
    }
}

#[tokio::test]
async fn a_big_groups_event_is_stored_once_and_replays_like_an_inline_one() {
    shared_bodies(None).await;
}

/// An event for 8 or more users keeps its body in one key that every
/// recipient's entry names; a private chat's stays inline. Replays are
/// the same bytes as live, and a body that is gone stops a replay the way
/// a trimmed entry does.
pub async fn shared_bodies(cluster: Option<&str>) {
    let app = spawn(cluster, &[]).await;
    let w = world(&app).await;
    let mut members = vec![w.alice.0, w.dave.0];
    for i in 0..6 {
        members.push(app.make_user(&format!("Member {i}")).await.0);
    }
    let big = app.make_group(w.bob.0, &members).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&app, alice, &at).await;
    send(&app, &w.bob.1, w.private, "before").await;
    let before = next_event(&mut dev).await;
    send(&app, &w.bob.1, big, "to the nine").await;
    let many = next_event(&mut dev).await;
    send(&app, &w.bob.1, w.private, "after").await;
    let after = next_event(&mut dev).await;
    assert_eq!(many["payload"]["content"], "to the nine");

    let mut conn = store_conn(&app, cluster).await;
    let stream = app.state.redis.key(&format!("rt:{{u:{alice}}}:e"));
    let last: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(3)
        .query_async(&mut conn)
        .await
        .expect("read alice's stream");
    let field = |i: usize| last[i].1.first().cloned().unwrap_or_default();
    assert_eq!(
        [field(2), field(1), field(0)],
        ["d", "r", "d"],
        "only the group's event is shared: {last:?}"
    );
    let body = app.state.redis.key(&format!("rt:b:{}", last[1].1[1]));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&body)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(
        ttl > 86_000_000 && ttl <= 86_400_000,
        "kept the idle TTL: {ttl}"
    );
    let stored: String = redis::cmd("GET")
        .arg(&body)
        .query_async(&mut conn)
        .await
        .expect("GET the body");
    assert!(stored.contains("to the nine"), "{stored}");
    assert!(!stored.contains("\"seq\""), "no position in it: {stored}");

    // A replay gives exactly the live events.
    let mut back = ws_at(&ws_base(&app), &at, Some(&seq(&before))).await;
    assert_eq!(take(&mut back, 2).await, vec![many.clone(), after.clone()]);
    expect_silence(&mut back, QUIET).await;
    drop(back);

    // Without its body, a replay through the event cannot be made whole.
    let _: i64 = redis::cmd("DEL")
        .arg(&body)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let mut back = ws_at(&ws_base(&app), &at, Some(&seq(&before))).await;
    let first = next_event(&mut back).await;
    assert_eq!(first["type"], "sync.reset", "{first}");
    assert_eq!(first["payload"]["reason"], "expired", "{first}");
    assert_eq!(seq(&first), seq(&after), "the reset names the newest");
    expect_silence(&mut back, QUIET).await;
    drop(back);
    // From the event itself on, nothing is missing.
    let mut back = ws_at(&ws_base(&app), &at, Some(&seq(&many))).await;
    assert_eq!(take(&mut back, 1).await, vec![after]);
    expect_silence(&mut back, QUIET).await;
}

#[tokio::test]
async fn typing_is_neither_stamped_nor_replayed() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&app, alice, &at).await;
    let mut bob_ws = connect(&app, w.bob.0, &w.bob.1).await;
    send(&app, &w.bob.1, w.private, "one").await;
    // (Bob's user.online came first; it carries a position too.)
    let since = seq(&dev.expect_event("message.new").await);
    let typing = json!({"type": "chat.typing", "payload": {"is_typing": true}, "meta": {"chat_id": w.private}});
    bob_ws.send_json(&typing).await;
    let t = dev.expect_event("chat.typing").await;
    assert!(t["meta"].get("seq").is_none(), "{t}");
    tokio::time::sleep(Duration::from_millis(2100)).await; // past the typing throttles
    bob_ws.send_json(&typing).await;
    // Handled before the send below (the first device sees it live), so
    // the resuming socket cannot get it live either: only a replay could
    // bring it.
    let t = dev.expect_event("chat.typing").await;
    assert!(t["meta"].get("seq").is_none(), "{t}");
    send(&app, &w.bob.1, w.private, "two").await;
    let mut back = ws_at(&ws_base(&app), &at, Some(&since)).await;
    let got = drain(&mut back, QUIET).await;
    assert_eq!(kinds(&got), ["message.new"], "{got:?}");
    assert_eq!(got[0]["payload"]["content"], "two");
}

/// Instance A reaches Redis through a proxy the test can cut; B directly.
async fn cut_pair() -> (TcpProxy, TestApp, TestApp) {
    let redis = format!("127.0.0.1:{}", base_env()["REDIS_PORT"]);
    let proxy = TcpProxy::start(redis.parse().unwrap()).await;
    let a = TestApp::spawn_with(|env| {
        env.insert("REDIS_PORT".into(), proxy.port.to_string());
        // A proxy can cut one node only (cluster nodes announce their own
        // addresses), so this pair runs on the single node in every pass.
        env.remove("REDIS_CLUSTER_NODES");
    })
    .await;
    let mut env = a.env.clone();
    env.insert("REDIS_PORT".into(), base_env()["REDIS_PORT"].clone());
    env.insert("APP_PORT".into(), "0".into());
    env.remove("APP_URL");
    let b = TestApp::start(env, a.mail.clone()).await;
    (proxy, a, b)
}

#[tokio::test]
async fn a_socket_that_lived_through_a_bus_loss_gets_the_gap_from_the_store() {
    let (proxy, a, b) = cut_pair().await;
    let w = world(&a).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&a, alice, &at).await;
    let mut live = connect(&b, alice, &at).await;
    send(&b, &w.bob.1, w.private, "before").await;
    assert_eq!(next_event(&mut dev).await, next_event(&mut live).await);

    proxy.cut();
    for i in 0..5 {
        send(&b, &w.bob.1, w.private, &format!("while cut {i}")).await;
    }
    let missed = take(&mut live, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    // A re-subscribes by itself and the socket reads its gap from the store.
    let mut got = Vec::new();
    while got.len() < 5 {
        match dev.read(Duration::from_secs(15)).await {
            WsRead::Event(e) => got.push(e),
            other => panic!("expected the missed events, got {other:?} after {got:?}"),
        }
    }
    assert_eq!(got, missed);
    send(&b, &w.bob.1, w.private, "after").await;
    assert_eq!(next_event(&mut dev).await, next_event(&mut live).await);
    expect_silence(&mut dev, QUIET).await;
}

#[tokio::test]
async fn a_bus_gap_the_store_cannot_fill_closes_with_4010_resume_required() {
    let (proxy, a, b) = cut_pair().await;
    let w = world(&a).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&a, alice, &at).await;
    send(&b, &w.bob.1, w.private, "before").await;
    let since = seq(&next_event(&mut dev).await);
    proxy.cut();
    send(&b, &w.bob.1, w.private, "lost").await;
    // The store loses the user's keys while A is away.
    b.state.bus.store().forget(alice).await.unwrap();
    proxy.restore();
    // Resuming says what happened.
    closed_4010_then_store_reset(&mut dev, &ws_base(&b), &at, &since).await;
}

/// The socket is closed with 4010 (no event delivered as if nothing
/// happened), and a resume from `since` answers `store_reset`; returns the
/// reset's position (None when nothing is stored).
async fn closed_4010_then_store_reset(
    dev: &mut WsClient,
    base: &str,
    token: &str,
    since: &str,
) -> Option<String> {
    let code = match dev.read(Duration::from_secs(15)).await {
        WsRead::Closed(code) => code,
        WsRead::Event(e) => panic!("no silent partial delivery: {e}"),
        WsRead::Timeout => panic!("the socket stayed open as if nothing happened"),
    };
    assert_eq!(code, Some(4010));
    let mut back = ws_at(base, token, Some(since)).await;
    let first = next_event(&mut back).await;
    assert_eq!(first["type"], "sync.reset", "{first}");
    assert_eq!(first["payload"]["reason"], "store_reset");
    first["meta"]["seq"].as_str().map(String::from)
}

#[tokio::test]
async fn a_store_lost_under_a_connected_socket_asks_it_to_resume() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let (alice, at) = (w.alice.0, w.alice.1.clone());
    let mut dev = connect(&app, alice, &at).await;
    send(&app, &w.bob.1, w.private, "before").await;
    let since = seq(&next_event(&mut dev).await);
    // The stream goes (evicted, expired, flushed) while the socket is up;
    // the next event makes a new one, numbered above the old.
    app.state.bus.store().forget(alice).await.unwrap();
    send(&app, &w.bob.1, w.private, "after the loss").await;
    // It cannot know what the lost store held.
    let head = closed_4010_then_store_reset(&mut dev, &ws_base(&app), &at, &since)
        .await
        .expect("the new stream's head");
    // The reset names the new stream's head: resuming from it is exact.
    wait_gone(&app, alice).await;
    send(&app, &w.bob.1, w.private, "next").await;
    let mut again = ws_at(&ws_base(&app), &at, Some(&head)).await;
    let got = drain(&mut again, QUIET).await;
    assert_eq!(kinds(&got), ["message.new"], "{got:?}");
    assert_eq!(got[0]["payload"]["content"], "next");
}

/// One instance refreshes a stream's expiry at most once per 1 % of the
/// TTL (here 3 s of 300 s): an append inside that sends no `PEXPIRE`, the
/// first after it does, so the store never lapses more than 1 % early.
#[tokio::test]
async fn a_streams_expiry_is_refreshed_once_a_period_and_never_lapses_early() {
    let app = spawn(None, &[("RESUME_IDLE_TTL_SECONDS", "300")]).await;
    let w = world(&app).await;
    let alice = w.alice.0;
    let key = app.state.redis.key(&format!("rt:{{u:{alice}}}:e"));
    let pttl = || async {
        let mut c = app.state.redis.conn();
        redis::cmd("PTTL")
            .arg(&key)
            .query_async::<i64>(&mut c)
            .await
            .unwrap()
    };
    let mut dev = connect(&app, alice, &w.alice.1).await;
    // Whatever setting up the chat stored is a period behind.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    send(&app, &w.bob.1, w.private, "one").await;
    let first = pttl().await;
    assert!(first > 299_000, "the append set the full TTL: {first} ms");

    tokio::time::sleep(Duration::from_secs(1)).await;
    send(&app, &w.bob.1, w.private, "two").await;
    let second = pttl().await;
    assert!(
        second <= first - 800,
        "within the period the expiry is left alone: {first} → {second} ms"
    );
    assert!(
        second >= 297_000,
        "never less than TTL − period: {second} ms"
    );

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    send(&app, &w.bob.1, w.private, "three").await;
    let third = pttl().await;
    assert!(
        third > 299_000,
        "past the period it is refreshed: {third} ms"
    );

    // Delivered and stamped in order whether or not the append refreshed.
    let got = take(&mut dev, 3).await;
    let contents: Vec<&str> = got
        .iter()
        .filter_map(|e| e["payload"]["content"].as_str())
        .collect();
    assert_eq!(contents, ["one", "two", "three"]);
    let positions: Vec<String> = got.iter().map(seq).collect();
    let mut sorted = positions.clone();
    sorted.sort_by_key(|p| {
        let n = p.split('.').nth(1).and_then(|r| r.split('-').next());
        n.and_then(|n| n.parse::<u64>().ok())
    });
    assert_eq!(positions, sorted);
    assert!(positions.windows(2).all(|w| w[0] != w[1]), "{positions:?}");
}
