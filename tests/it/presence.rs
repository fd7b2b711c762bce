//! Presence without flapping (issue 16 §3): a reload never ends in
//! `user.offline`, a real disconnect does after the grace period, from any
//! instance, and presence events carry an increasing `version`.

use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use crate::chats::support::*;
use crate::harness::{TestApp, WsClient, WsRead};

/// `PRESENCE_OFFLINE_GRACE_SECONDS` default.
const GRACE: Duration = Duration::from_secs(3);

/// Every presence event arriving within `within`.
async fn presence_events(ws: &mut WsClient, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.read(left).await {
            WsRead::Event(e) if e["type"] == "user.online" || e["type"] == "user.offline" => {
                out.push(e)
            }
            WsRead::Event(_) => {}
            WsRead::Timeout => return out,
            WsRead::Closed(c) => panic!("socket closed ({c:?})"),
        }
    }
}

fn version(e: &Value) -> i64 {
    e["payload"]["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("no version in {e}"))
}

async fn online_over_rest(app: &TestApp, viewer_token: &str, user: Uuid) -> bool {
    let (s, b) = get(app, viewer_token, &format!("/api/users/{user}")).await;
    assert_eq!(s, 200, "{b}");
    b["data"]["is_online"].as_bool().expect("is_online")
}

#[tokio::test]
async fn a_hundred_reloads_never_leave_contacts_with_offline() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let (alice, at) = a.make_user("Alice").await;
    let (bob, bt) = a.make_user("Bob").await;
    a.make_private_chat(alice, bob).await;
    let mut bob_ws = connect(&a, bob, &bt).await;

    let mut alice_ws = a.ws(&at).await;
    let first = bob_ws.expect_event("user.online").await;
    let first_version = version(&first);

    // Reload: the old socket closes while the new one opens, on the same
    // instance or the other one.
    for i in 0..100 {
        let target = if i % 3 == 2 { &b } else { &a };
        let mut old = alice_ws;
        let close = async move {
            let _ = old.stream.close(None).await;
            drop(old);
        };
        let (_, new) = tokio::join!(close, target.ws(&at));
        alice_ws = new;
    }
    let seen = presence_events(&mut bob_ws, GRACE + Duration::from_millis(1500)).await;
    for e in &seen {
        assert_ne!(e["type"], "user.offline", "reload announced offline: {e}");
        assert!(version(e) > first_version, "{e}");
    }
    // Whatever arrived, the newest version says online.
    let newest = seen.iter().max_by_key(|e| version(e)).unwrap_or(&first);
    assert_eq!(newest["type"], "user.online");
    assert!(online_over_rest(&a, &bt, alice).await);
    drop(alice_ws);
}

#[tokio::test]
async fn a_real_disconnect_is_announced_after_the_grace_period() {
    let app = TestApp::spawn().await;
    let (alice, at) = app.make_user("Alice").await;
    let (bob, bt) = app.make_user("Bob").await;
    app.make_private_chat(alice, bob).await;
    let mut bob_ws = connect(&app, bob, &bt).await;

    let mut alice_ws = app.ws(&at).await;
    let online = bob_ws.expect_event("user.online").await;
    assert_eq!(online["payload"]["user_id"], alice.to_string());
    assert_eq!(online["payload"]["is_online"], true);

    let _ = alice_ws.stream.close(None).await;
    drop(alice_ws);
    let closed_at = Instant::now();
    let closed_ms = chrono::Utc::now().timestamp_millis();

    // Within the grace period: still online for contacts and over REST.
    bob_ws
        .expect_no_event("user.offline", GRACE - Duration::from_millis(700))
        .await;
    assert!(online_over_rest(&app, &bt, alice).await);

    let offline = bob_ws.expect_event("user.offline").await;
    let waited = closed_at.elapsed();
    assert!(
        waited >= GRACE - Duration::from_millis(100),
        "offline after {waited:?}"
    );
    assert!(waited < GRACE + Duration::from_secs(2), "{waited:?}");
    assert_eq!(offline["payload"]["user_id"], alice.to_string());
    assert_eq!(offline["payload"]["is_online"], false);
    assert!(version(&offline) > version(&online));
    let last_seen = offline["payload"]["last_seen_at"].as_i64().unwrap();
    assert!(
        (last_seen - closed_ms).abs() < 1000,
        "last seen {last_seen} vs closed {closed_ms}"
    );
    assert!(!online_over_rest(&app, &bt, alice).await);

    // Back again: online, with a newer version still.
    let _alice_ws = app.ws(&at).await;
    let back = bob_ws.expect_event("user.online").await;
    assert!(version(&back) > version(&offline));
}

/// The instance the user was connected to stops: another instance makes
/// the offline decision.
#[tokio::test]
async fn offline_is_announced_even_when_the_users_instance_is_gone() {
    let a = TestApp::spawn_with(|env| {
        env.insert("PRESENCE_OFFLINE_GRACE_SECONDS".into(), "1".into());
    })
    .await;
    let mut b = a.second_instance().await;
    let (alice, at) = a.make_user("Alice").await;
    let (bob, bt) = a.make_user("Bob").await;
    a.make_private_chat(alice, bob).await;
    let mut bob_ws = connect(&a, bob, &bt).await;
    let _alice_ws = b.ws(&at).await;
    bob_ws.expect_event("user.online").await;

    b.stop().await;
    let offline = bob_ws.expect_event("user.offline").await;
    assert_eq!(offline["payload"]["user_id"], alice.to_string());
    assert!(!online_over_rest(&a, &bt, alice).await);
}
