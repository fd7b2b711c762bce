//! WebSocket abuse limits: the per-user socket cap (across instances),
//! sockets closing when their token expires, and inbound floods (throttled
//! before the database, flooding sockets closed, other users unaffected).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use atoitalk::realtime::event::{kinds, Event};
use futures::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::harness::{base_env, TestApp};

fn typing(chat: uuid::Uuid) -> serde_json::Value {
    json!({"type": "chat.typing", "payload": null, "meta": {"chat_id": chat}})
}

/// The status and JSON body of a refused upgrade.
async fn refused_upgrade(app: &TestApp, token: &str) -> (u16, serde_json::Value) {
    match tokio_tungstenite::connect_async(app.ws_url(token)).await {
        Ok(_) => panic!("upgrade was accepted"),
        Err(WsError::Http(res)) => {
            let body = res.body().clone().unwrap_or_default();
            (
                res.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or_default(),
            )
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn a_user_holds_at_most_the_configured_sockets_across_instances() {
    let a = TestApp::spawn_with(|env| {
        env.insert("WS_MAX_CONNECTIONS_PER_USER".into(), "3".into());
    })
    .await;
    let b = a.second_instance().await;
    let (_alice, token) = a.make_user("Alice").await;
    let (_bob, bob_token) = a.make_user("Bob").await;
    let _w1 = a.ws(&token).await;
    let _w2 = a.ws(&token).await;
    let w3 = b.ws(&token).await;

    for app in [&a, &b] {
        let (status, body) = refused_upgrade(app, &token).await;
        assert_eq!(status, 429, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .contains("Too many open connections"),
            "{body}"
        );
    }
    // Another user is not affected.
    let _bob_ws = a.ws(&bob_token).await;

    // Closing one frees its slot (on every instance).
    drop(w3);
    let mut reopened = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(a.ws_url(&token)).await {
            reopened = true;
            drop(ws);
            break;
        }
    }
    assert!(reopened, "a closed socket's slot was released");
}

#[tokio::test]
async fn a_socket_is_closed_with_4001_when_its_token_expires() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.make_user("Alice").await;
    let (bob, bob_token) = app.make_user("Bob").await;
    let short = atoitalk::auth::tokens::issue(&app.state.cfg.jwt_secret, 2, alice).unwrap();
    let mut ws = app.ws(&short).await;
    let mut bob_ws = app.ws(&bob_token).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hide = Event::new(kinds::CHAT_HIDE, json!({"chat_id": "x"}), None, None);
    app.state.bus.to_user(alice, &hide).await;
    ws.expect_event("chat.hide").await;

    assert_eq!(ws.expect_closed().await, Some(4001));
    // HTTP refuses the same token now.
    let res = app
        .authed(reqwest::Method::GET, "/api/users/me", &short)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A socket with a valid token stays.
    app.state.bus.to_user(bob, &hide).await;
    bob_ws.expect_event("chat.hide").await;
}

/// A TCP proxy that counts the bytes its clients send (here: what the
/// server sends PostgreSQL).
async fn counting_proxy(target: SocketAddr) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match ri.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = wo.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut ro, &mut wi).await;
                    let _ = wi.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, sent)
}

#[tokio::test]
async fn typing_floods_are_throttled_before_the_database() {
    let env = base_env();
    let pg: SocketAddr = format!("{}:{}", env["DB_HOST"], env["DB_PORT"])
        .parse()
        .unwrap();
    let (port, to_pg) = counting_proxy(pg).await;
    let app = TestApp::spawn_with(|env| {
        env.insert("DB_PORT".into(), port.to_string());
    })
    .await;
    let (alice, token) = app.make_user("Alice").await;
    let (bob, bob_token) = app.make_user("Bob").await;
    let chat = app.make_private_chat(alice, bob).await;
    let mut bob_ws = app.ws(&bob_token).await;
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(app.ws(&token).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 150 typing frames, 15 per socket: within each socket's allowance, so
    // only the typing throttle stands between them and the database.
    let before = to_pg.load(Ordering::Relaxed);
    for ws in &mut sockets {
        for _ in 0..15 {
            ws.stream
                .feed(WsMessage::Text(typing(chat).to_string().into()))
                .await
                .unwrap();
        }
        ws.stream.flush().await.unwrap();
    }
    let e = bob_ws.expect_event("chat.typing").await;
    assert_eq!(e["meta"]["sender_id"], alice.to_string());
    bob_ws
        .expect_no_event("chat.typing", Duration::from_millis(1500))
        .await;
    let bytes = to_pg.load(Ordering::Relaxed) - before;
    // One relayed frame costs one membership lookup (about 1 KiB with its
    // first-use statement text); 150 lookups would be well over 10 KiB.
    assert!(
        bytes < 4096,
        "{bytes} bytes sent to PostgreSQL for 150 typing frames"
    );
    for ws in &mut sockets {
        ws.expect_no_event("chat.typing", Duration::from_millis(10))
            .await;
    }
}

#[tokio::test]
async fn a_flooding_socket_is_closed_and_other_users_are_unaffected() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.make_user("Alice").await;
    let (bob, bob_token) = app.make_user("Bob").await;
    let (carol, carol_token) = app.make_user("Carol").await;
    let (dave, dave_token) = app.make_user("Dave").await;
    let flooded = app.make_private_chat(alice, bob).await;
    let quiet = app.make_private_chat(carol, dave).await;
    let mut alice_ws = app.ws(&token).await;
    let mut alice_calm = app.ws(&token).await;
    let mut bob_ws = app.ws(&bob_token).await;
    let mut carol_ws = app.ws(&carol_token).await;
    let mut dave_ws = app.ws(&dave_token).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let frame = typing(flooded).to_string();
    for _ in 0..2000 {
        if alice_ws
            .stream
            .feed(WsMessage::Text(frame.clone().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = alice_ws.stream.flush().await;
    assert_eq!(alice_ws.expect_closed().await, Some(4029));
    // The flood relayed one typing event, as a single frame would.
    bob_ws.expect_event("chat.typing").await;
    bob_ws
        .expect_no_event("chat.typing", Duration::from_millis(300))
        .await;

    // Other users (and the flooder's other socket) carry on.
    carol_ws.send_json(&typing(quiet)).await;
    let e = dave_ws.expect_event("chat.typing").await;
    assert_eq!(e["meta"]["sender_id"], carol.to_string());
    let hide = Event::new(kinds::CHAT_HIDE, json!({"chat_id": "x"}), None, None);
    app.state.bus.to_user(alice, &hide).await;
    alice_calm.expect_event("chat.hide").await;
    app.state.bus.to_user(dave, &hide).await;
    dave_ws.expect_event("chat.hide").await;
}
