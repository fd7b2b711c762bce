//! The HTTP listener's protections: header-read and keep-alive idle
//! timeouts, the per-address connection cap, and a shutdown that ends.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use atoitalk::realtime::event::{kinds, Event};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{base_env, create_database, free_port, TestApp};

/// A server whose header timeout is 1 s and keep-alive idle timeout 3 s.
async fn short_timeouts() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("HTTP_HEADER_READ_TIMEOUT_SECONDS".into(), "1".into());
        env.insert("HTTP_IDLE_TIMEOUT_SECONDS".into(), "3".into());
    })
    .await
}

/// Reads until the server closes the connection (EOF or reset); returns
/// what arrived and when the close happened. Panics after `within`.
async fn until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Instant::now()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one complete `/healthz`-sized response (head + Content-Length body).
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

async fn connect_from(local: IpAddr, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(local, 0)).unwrap();
    sock.connect(to).await.expect("connect")
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let app = short_timeouts().await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let t0 = Instant::now();
    let (got, closed) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(got.is_empty());
    let took = closed - t0;
    assert!(took < Duration::from_millis(2500), "closed after {took:?}");
}

#[tokio::test]
async fn a_trickled_header_is_cut_at_the_header_timeout() {
    let app = short_timeouts().await;
    let s = TcpStream::connect(app.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let t0 = Instant::now();
    w.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header line every 200 ms: always sending, never finishing.
    let trickle = tokio::spawn(async move {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if w.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 5 s of trickling");
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(2500), "closed after {took:?}");
    assert!(
        buf.is_empty(),
        "no response to an unfinished head: {:?}",
        String::from_utf8_lossy(&buf)
    );
    trickle.abort();
}

#[tokio::test]
async fn keep_alive_outlasts_the_header_timeout_then_idles_out() {
    let app = short_timeouts().await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(req).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle longer than the header timeout: still open for the next request.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    s.write_all(req).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    let (got, closed) = until_closed(&mut s, Duration::from_secs(8)).await;
    assert!(got.is_empty());
    let idle = closed - t0;
    assert!(
        idle > Duration::from_millis(2500) && idle < Duration::from_millis(4500),
        "idle connection closed after {idle:?} (idle timeout 3 s)"
    );
}

#[tokio::test]
async fn a_slow_request_body_is_not_cut_by_the_header_timeout() {
    let app = short_timeouts().await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let body =
        json!({"email": "nobody@example.com", "password": "Secret123!", "captcha_token": "x"})
            .to_string();
    let head = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The body takes about 2.5 s, well past the 1 s header timeout.
    let step = Duration::from_millis(2500 / body.len() as u64);
    for b in body.as_bytes() {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(step).await;
    }
    let res = read_response(&mut s).await;
    assert!(res.starts_with("HTTP/1.1 4"), "{res}");
    assert!(res.contains("\"error\""), "{res}");
}

#[tokio::test]
async fn websockets_are_not_subject_to_the_http_timeouts() {
    let app = short_timeouts().await;
    let (alice, token) = app.make_user("Alice").await;
    let mut ws = app.ws(&token).await;
    tokio::time::sleep(Duration::from_millis(4000)).await;
    app.state
        .bus
        .to_user(
            alice,
            &Event::new(kinds::CHAT_HIDE, json!({"chat_id": "x"}), None, None),
        )
        .await;
    ws.expect_event("chat.hide").await;
}

#[tokio::test]
async fn connections_per_address_are_capped_except_for_trusted_proxies() {
    let app = TestApp::spawn_with(|env| {
        env.insert("HTTP_MAX_CONNECTIONS_PER_IP".into(), "5".into());
        env.insert("TRUSTED_PROXY_CIDRS".into(), "127.0.0.3/32".into());
    })
    .await;
    let me: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(me, app.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The sixth from the same address is answered 429 and closed.
    let mut sixth = connect_from(me, app.addr).await;
    let (got, _) = until_closed(&mut sixth, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    let body: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"], "Too many connections from this IP");

    // Another address is served meanwhile.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = other.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // A trusted proxy carries many clients: not capped.
    let proxy: IpAddr = "127.0.0.3".parse().unwrap();
    let mut via_proxy = Vec::new();
    for _ in 0..8 {
        via_proxy.push(connect_from(proxy, app.addr).await);
    }
    for s in &mut via_proxy {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(s).await.starts_with("HTTP/1.1 200"));
    }

    // Closing one frees its slot.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(me, app.addr).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut again).await.starts_with("HTTP/1.1 200"));
}

/// A real `atoitalk serve` process on a fresh database (dropped with the
/// returned guard, so hold it for as long as the process runs).
pub async fn spawn_binary(
    extra: &[(&str, &str)],
) -> (tokio::process::Child, u16, crate::harness::TestDb) {
    let port = free_port();
    let db = create_database().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"));
    cmd.arg("serve")
        .envs(base_env())
        .env("DB_NAME", &db.name)
        .env("APP_PORT", port.to_string())
        .env("APP_URL", format!("http://127.0.0.1:{port}"))
        .env(
            "REDIS_KEY_PREFIX",
            format!("t:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("JWT_SECRET", "a-long-random-test-secret")
        .env("OTP_SECRET", "another-long-random-test-secret")
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", "1")
        .env(
            "MEDIA_LOCAL_DIR",
            std::env::temp_dir().join(format!("atoitalk-bin-{port}")),
        )
        // Only warnings are read; the pipes are drained only at exit.
        .env("RUST_LOG", "warn")
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start the binary");
    let http = reqwest::Client::new();
    // Up to 90 s: a debug binary starting beside a busy parallel suite.
    for _ in 0..900 {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().await.expect("output");
            panic!(
                "the binary exited ({status}) before it was ready on port {port}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return (child, port, db);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the binary did not become ready on port {port}");
}

/// SIGTERM from Rust: the `kill` binary (procps) may be missing.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: plain syscall on the pid of our own, not yet reaped, child.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill({pid}, SIGTERM) failed");
}

#[tokio::test]
async fn sigterm_drops_unfinished_connections_after_the_grace_period_and_exits_0() {
    let (child, port, _db) = spawn_binary(&[
        ("SHUTDOWN_GRACE_SECONDS", "2"),
        // Long enough that only the shutdown can end these connections.
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "120"),
    ])
    .await;
    let mut held = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // Unfinished heads; half of them mid-line.
        let partial: &[u8] = if i % 2 == 0 {
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"GET /hea"
        };
        s.write_all(partial).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(8), child.wait_with_output())
        .await
        .expect("the process exits within the grace period plus margin")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t0.elapsed() < Duration::from_millis(4500),
        "exit took {:?}",
        t0.elapsed()
    );
    for s in &mut held {
        let (got, _) = until_closed(s, Duration::from_secs(2)).await;
        assert!(got.is_empty());
    }
}
