//! A Redis Cluster master fails over while messages flow (issue 20): the
//! replica of the master that serves the fan-out channel's slot takes over
//! (`CLUSTER FAILOVER`), with two instances and all of Redis on the cluster
//! that scripts/test.sh starts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::chats::support::*;
use crate::harness::{cluster, TestApp, WsClient, WsRead};

/// Messages sent while the failover happens, and after it.
const DURING: usize = 40;
const AFTER: usize = 5;

async fn ws_since(app: &TestApp, token: &str, since: &str) -> WsClient {
    let url = format!(
        "ws://{}/ws?token={token}&since={}",
        app.addr,
        url::form_urlencoded::byte_serialize(since.as_bytes()).collect::<String>()
    );
    let (stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    WsClient { stream }
}

/// What Bob's device saw.
#[derive(Default)]
struct Seen {
    contents: Vec<String>,
    last_seq: Option<String>,
    /// Close codes of the sockets that were closed under it.
    closes: Vec<Option<u16>>,
    resets: Vec<String>,
}

impl Seen {
    fn take(&mut self, e: &Value) {
        if let Some(s) = e["meta"]["seq"].as_str() {
            self.last_seq = Some(s.to_string());
        }
        match e["type"].as_str() {
            Some("message.new") => self
                .contents
                .push(e["payload"]["content"].as_str().unwrap_or("").to_string()),
            Some("sync.reset") => self
                .resets
                .push(e["payload"]["reason"].as_str().unwrap_or("").to_string()),
            _ => {}
        }
    }
}

/// Reads Bob's socket until every one of `want` arrived (or 30 s pass),
/// reconnecting with `since` when the server closes it.
async fn follow(app: &TestApp, token: &str, ws: &mut WsClient, seen: &mut Seen, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let have: HashSet<&String> = seen.contents.iter().collect();
        if want.iter().all(|w| have.contains(w)) {
            return;
        }
        match ws.read(Duration::from_millis(500)).await {
            WsRead::Event(e) => seen.take(&e),
            WsRead::Timeout => {}
            WsRead::Closed(code) => {
                seen.closes.push(code);
                let since = seen.last_seq.clone().expect("a position before the close");
                *ws = ws_since(app, token, &since).await;
            }
        }
    }
}

#[tokio::test]
async fn a_master_failover_while_messages_flow_loses_no_acknowledged_message() {
    let name = "a_master_failover_while_messages_flow_loses_no_acknowledged_message";
    let Some(seeds) = cluster::require(name) else {
        return;
    };
    let a = TestApp::spawn_with(|env| {
        env.insert("REDIS_CLUSTER_NODES".into(), seeds.clone());
    })
    .await;
    let b = a.second_instance().await;
    let (alice, at) = a.make_user("Alice").await;
    let (bob, bt) = a.make_user("Bob").await;
    let chat = a.make_private_chat(alice, bob).await;
    let mut bob_ws = connect(&b, bob, &bt).await;
    let mut seen = Seen::default();
    send(&a, &at, chat, "before").await;
    follow(&b, &bt, &mut bob_ws, &mut seen, &["before".into()]).await;
    assert!(seen.last_seq.is_some(), "events carry meta.seq");

    // The shard of the fan-out channel: its failover drops every
    // instance's subscription, the store writes of some users and more.
    let port = cluster::ports(&seeds)[0];
    let channel = a.state.redis.key("events:batch");
    let (master, replica) = cluster::shard_of(port, cluster::slot(port, &channel));

    let url = a.url("/api/messages");
    let http = a.http.clone();
    let token = at.clone();
    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut refused = Vec::new();
        for i in 0..DURING {
            let content = format!("during {i}");
            let res = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"chat_id": chat, "content": content}))
                .send()
                .await;
            match res.map(|r| r.status().as_u16()) {
                Ok(200 | 201) => acked.push(content),
                other => refused.push(format!("{content}: {other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        (acked, refused)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = cluster::cli(replica.port, &["CLUSTER", "FAILOVER"]);
    assert!(answer.contains("OK"), "CLUSTER FAILOVER: {answer}");
    cluster::wait_master(&seeds, replica.port, Duration::from_secs(30)).await;
    let (acked, refused) = sender.await.unwrap();
    eprintln!(
        "failover {} -> {}: {} acknowledged, refused: {refused:?}",
        master.port,
        replica.port,
        acked.len()
    );
    assert!(
        acked.len() >= DURING / 2,
        "most sends during a failover succeed: {refused:?}"
    );

    // Sent once the new master serves the slot: delivered live.
    let mut after = Vec::new();
    for i in 0..AFTER {
        let content = format!("after {i}");
        send(&a, &at, chat, &content).await;
        after.push(content);
    }
    let mut want = acked.clone();
    want.extend(after.iter().cloned());
    follow(&b, &bt, &mut bob_ws, &mut seen, &want).await;

    // History has every acknowledged message (PostgreSQL is the record).
    let (s, body) = get(&a, &bt, &format!("/api/chats/{chat}/messages?limit=50")).await;
    assert_eq!(s, 200, "{body}");
    let stored: HashSet<String> = body["data"]
        .as_array()
        .expect("a page of messages")
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .collect();
    for m in &want {
        assert!(stored.contains(m), "{m} missing from history");
    }
    // Bob's device got every acknowledged message exactly once and in
    // order, on the same socket (the bus re-subscribed on the new master
    // and every socket read its gap from the store: a manual failover
    // loses no write, so there is nothing to reset).
    let got: Vec<&String> = seen.contents.iter().filter(|c| *c != "before").collect();
    let want_refs: Vec<&String> = want.iter().collect();
    assert_eq!(
        got, want_refs,
        "closes {:?} resets {:?}",
        seen.closes, seen.resets
    );
    assert!(seen.resets.is_empty(), "{:?}", seen.resets);
    assert!(seen.closes.is_empty(), "{:?}", seen.closes);
    // Both instances listen again (re-subscribed on the new master).
    assert!(a.state.bus.is_subscribed() && b.state.bus.is_subscribed());
}
