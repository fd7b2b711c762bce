//! Test harness: a fresh database and Redis prefix per test, an SMTP sink,
//! and helpers to make users, tokens and WebSocket clients.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoitalk::app::Server;
use atoitalk::config::{Config, VarSource};
use atoitalk::state::AppState;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

pub const PASSWORD: &str = "Secret123!";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Connection settings of the test Postgres/Redis (overridable by env).
pub fn base_env() -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (k, d) in [
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", "5432"),
        ("DB_USER", "postgres"),
        ("DB_PASSWORD", "postgres"),
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", "6379"),
    ] {
        m.insert(k.to_string(), env_or(&format!("TEST_{k}"), d));
    }
    // The cluster pass of scripts/test.sh: all of Redis on the cluster.
    if cluster::every_app() {
        let nodes = cluster::nodes().expect("TEST_REDIS_CLUSTER=1 needs TEST_REDIS_CLUSTER_NODES");
        m.insert("REDIS_CLUSTER_NODES".into(), nodes);
    }
    // Scheduler processes of parallel tests would fight over one port.
    m.insert("SCHEDULER_METRICS_PORT".into(), "0".into());
    m
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub mod cluster;
mod db;
mod process;
pub use db::{database_exists, TestDb};
pub use process::ChildGuard;

/// An empty database of its own for one test, dropped with the guard.
pub async fn create_database() -> TestDb {
    TestDb::empty().await
}

/// S3 settings pointing at the test S3 server, with fresh buckets.
pub async fn s3_env() -> Vec<(String, String)> {
    let endpoint = env_or("TEST_S3_ENDPOINT", "http://127.0.0.1:9090");
    let id = Uuid::new_v4().simple().to_string();
    let public = format!("pub-{}", &id[..16]);
    let private = format!("priv-{}", &id[..16]);
    let http = reqwest::Client::new();
    for b in [&public, &private] {
        // Unsigned bucket creation works on the test server.
        let res = http
            .put(format!("{endpoint}/{b}"))
            .send()
            .await
            .expect("cannot reach the test S3 server; run scripts/test.sh, which starts it");
        assert!(
            res.status().is_success(),
            "create bucket {b}: {}",
            res.status()
        );
    }
    vec![
        ("S3_BUCKET_PUBLIC".into(), public.clone()),
        ("S3_BUCKET_PRIVATE".into(), private),
        ("S3_REGION".into(), "us-east-1".into()),
        ("S3_ACCESS_KEY".into(), "test".into()),
        ("S3_SECRET_KEY".into(), "test".into()),
        ("S3_ENDPOINT".into(), endpoint.clone()),
        ("S3_PUBLIC_DOMAIN".into(), format!("{endpoint}/{public}")),
    ]
}

/// A running server plus everything a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub http: reqwest::Client,
    pub mail: MailSink,
    pub env: HashMap<String, String>,
    shutdown: Option<oneshot::Sender<()>>,
    pub stopped: Arc<Notify>,
    /// The database this app (and its second instances) made; dropped with
    /// the last of them.
    db: Option<Arc<TestDb>>,
}

impl TestApp {
    /// A server with default test settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server whose environment `tweak` may change.
    pub async fn spawn_with(tweak: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        let mail = MailSink::start().await;
        let mut env = base_env();
        let db = Arc::new(TestDb::migrated().await);
        let media_dir =
            std::env::temp_dir().join(format!("atoitalk-media-{}", Uuid::new_v4().simple()));
        for (k, v) in [
            ("APP_ENV", "test".to_string()),
            ("APP_PORT", "0".to_string()),
            ("DB_NAME", db.name.clone()),
            ("DB_MIGRATE", "true".into()),
            ("DB_MAX_CONNECTIONS", "5".into()),
            (
                "REDIS_KEY_PREFIX",
                format!("t:{}:", Uuid::new_v4().simple()),
            ),
            ("JWT_SECRET", "test-jwt-secret".into()),
            ("OTP_SECRET", "test-otp-secret".into()),
            ("OTP_RATE_LIMIT_SECONDS", "2".into()),
            ("SMTP_HOST", "127.0.0.1".into()),
            ("SMTP_PORT", mail.port.to_string()),
            ("SMTP_FROM_EMAIL", "test@atoitalk.com".into()),
            ("SMTP_FROM_NAME", "AtoiTalk Test".into()),
            ("SMTP_ASYNC", "false".into()),
            ("MEDIA_LOCAL_DIR", media_dir.to_string_lossy().into_owned()),
            ("SHUTDOWN_GRACE_SECONDS", "3".into()),
        ] {
            env.insert(k.to_string(), v);
        }
        // TEST_DB_READ_ALL=1: every app reads through the standby too (the
        // suite's other tests then exercise the replica routing).
        if std::env::var("TEST_DB_READ_ALL").is_ok_and(|v| v == "1") {
            if let Ok(port) = std::env::var("TEST_DB_READ_PORT") {
                env.insert(
                    "DB_READ_HOST".into(),
                    env_or("TEST_DB_READ_HOST", "127.0.0.1"),
                );
                env.insert("DB_READ_PORT".into(), port);
            }
        }
        tweak(&mut env);
        let mut app = Self::start(env, mail).await;
        app.db = Some(db);
        app
    }

    /// Starts a server on an explicit environment (a second instance can
    /// reuse another's `env` to share its database and Redis prefix).
    pub async fn start(mut env: HashMap<String, String>, mail: MailSink) -> TestApp {
        let mut cfg = Config::from_source(&VarSource::from_map(&env)).expect("test config");
        if cfg.app_url == "http://localhost:8080" {
            // Filled in once the port is known (local storage URLs use it).
            cfg.app_url = String::new();
        }
        let server = Server::build(cfg).await.expect("server starts");
        let addr = server.local_addr();
        let addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        env.insert("APP_URL".into(), format!("http://{addr}"));
        let state = server.state();
        let (tx, rx) = oneshot::channel::<()>();
        let stopped = Arc::new(Notify::new());
        let stopped2 = stopped.clone();
        tokio::spawn(async move {
            let _ = server
                .run(async move {
                    let _ = rx.await;
                })
                .await;
            stopped2.notify_waiters();
        });
        TestApp {
            addr,
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
            mail,
            env,
            shutdown: Some(tx),
            stopped,
            db: None,
        }
    }

    /// A second API instance sharing this one's database and Redis prefix.
    pub async fn second_instance(&self) -> TestApp {
        let mut env = self.env.clone();
        env.insert("APP_PORT".into(), "0".into());
        env.remove("APP_URL");
        let mut app = Self::start(env, self.mail.clone()).await;
        app.db = self.db.clone();
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={}", self.addr, token)
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(&mut self) {
        let notified = self.stopped.notified();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), notified).await;
        }
    }

    /// Inserts an active user directly and returns (id, token).
    pub async fn make_user(&self, name: &str) -> (Uuid, String) {
        let id = Uuid::now_v7();
        let short = &id.simple().to_string()[20..];
        sqlx::query(
            "INSERT INTO users (id, email, username, full_name, password_hash) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(format!("{}{short}@example.com", name.to_lowercase()))
        .bind(format!("{}{short}", name.to_lowercase()))
        .bind(name)
        .bind(bcrypt::hash(PASSWORD, 4).expect("hash"))
        .execute(&self.state.db)
        .await
        .expect("insert user");
        let token =
            atoitalk::auth::tokens::issue(&self.state.cfg.jwt_secret, 3600, id).expect("token");
        (id, token)
    }

    /// Creates a private chat row between two users (for tests that need
    /// contacts before the chats feature is exercised).
    pub async fn make_private_chat(&self, a: Uuid, b: Uuid) -> Uuid {
        let chat = Uuid::now_v7();
        sqlx::query("INSERT INTO chats (id, type) VALUES ($1, 'private')")
            .bind(chat)
            .execute(&self.state.db)
            .await
            .expect("insert chat");
        sqlx::query(
            "INSERT INTO private_chats (id, chat_id, user1_id, user2_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(Uuid::now_v7())
        .bind(chat)
        .bind(a)
        .bind(b)
        .execute(&self.state.db)
        .await
        .expect("insert private chat");
        chat
    }

    /// Opens a WebSocket as the token's user.
    pub async fn ws(&self, token: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(self.ws_url(token))
            .await
            .expect("websocket connects");
        WsClient { stream }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that reads JSON events.
pub struct WsClient {
    pub stream: WsStream,
}

/// What a socket read produced.
#[derive(Debug)]
pub enum WsRead {
    Event(Value),
    Closed(Option<u16>),
    Timeout,
}

impl WsClient {
    /// The next frame (events as JSON; pings are skipped).
    pub async fn read(&mut self, within: Duration) -> WsRead {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return WsRead::Timeout,
                Ok(None) => return WsRead::Closed(None),
                Ok(Some(Err(_))) => return WsRead::Closed(None),
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    return WsRead::Event(serde_json::from_str(&t).expect("event is JSON"))
                }
                Ok(Some(Ok(WsMessage::Close(frame)))) => {
                    return WsRead::Closed(frame.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits for the first event of `kind`, skipping others.
    pub async fn expect_event(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                WsRead::Event(e) if e["type"] == kind => return e,
                WsRead::Event(_) => continue,
                other => panic!("expected {kind}, got {other:?}"),
            }
        }
    }

    /// Asserts no event of `kind` arrives within `within`.
    pub async fn expect_no_event(&mut self, kind: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                WsRead::Event(e) if e["type"] == kind => panic!("unexpected {kind}: {e}"),
                WsRead::Event(_) => continue,
                WsRead::Timeout => return,
                WsRead::Closed(c) => panic!("socket closed ({c:?}) while waiting"),
            }
        }
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.stream
            .send(WsMessage::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Waits until the server closes the socket; returns the close code.
    pub async fn expect_closed(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                WsRead::Closed(code) => return code,
                WsRead::Event(_) => continue,
                WsRead::Timeout => panic!("socket was not closed"),
            }
        }
    }
}

/// One captured email.
#[derive(Debug, Clone)]
pub struct CapturedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server that accepts everything and keeps the messages.
#[derive(Clone)]
pub struct MailSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<CapturedMail>>>,
    arrived: Arc<Notify>,
}

impl MailSink {
    pub async fn start() -> MailSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp sink");
        let port = listener.local_addr().expect("addr").port();
        let sink = MailSink {
            port,
            messages: Arc::default(),
            arrived: Arc::default(),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(sock).await;
                });
            }
        });
        sink
    }

    async fn session(&self, sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink ESMTP\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                from = line[10..].trim().trim_matches(['<', '>']).to_string();
                w.write_all(b"250 OK\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
                w.write_all(b"250 OK\r\n").await?;
            } else if upper.starts_with("DATA") {
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                self.messages.lock().expect("sink lock").push(CapturedMail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                });
                self.arrived.notify_waiters();
                w.write_all(b"250 queued\r\n").await?;
            } else if upper.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                w.write_all(b"250 OK\r\n").await?;
            }
        }
    }

    /// All captured messages so far.
    pub fn all(&self) -> Vec<CapturedMail> {
        self.messages.lock().expect("sink lock").clone()
    }

    /// Waits for a message to `to` (up to 5 s).
    pub async fn wait_for(&self, to: &str) -> CapturedMail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.arrived.notified();
            if let Some(m) = self
                .all()
                .into_iter()
                .rev()
                .find(|m| m.to.iter().any(|t| t == to))
            {
                return m;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no email to {to} arrived; captured: {:?}", self.all());
            }
        }
    }

    /// The 6-digit code in the latest message to `to`.
    pub async fn otp_for(&self, to: &str) -> String {
        let mail = self.wait_for(to).await;
        let body = decode_quoted_printable(&mail.data);
        let digits: Vec<char> = body.chars().collect();
        for w in digits.windows(8) {
            if !w[0].is_ascii_digit()
                && w[1..7].iter().all(|c| c.is_ascii_digit())
                && !w[7].is_ascii_digit()
            {
                return w[1..7].iter().collect();
            }
        }
        panic!("no OTP code in email: {body}");
    }
}

/// Enough quoted-printable decoding to read codes out of HTML emails.
pub fn decode_quoted_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// JSON body of a response, with its status.
pub async fn json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Creates a group chat directly in the database (the group endpoints are
/// another feature): `owner` as owner, `members` as members, a private
/// group with a `system_create` message as its last message. Returns the
/// CHAT id.
pub async fn make_group(app: &TestApp, owner: Uuid, members: &[Uuid]) -> Uuid {
    let chat = Uuid::now_v7();
    let group = Uuid::now_v7();
    let name = format!("Group {}", &chat.simple().to_string()[24..]);
    let db = &app.state.db;
    let mut tx = db.begin().await.expect("begin");
    sqlx::query("INSERT INTO chats (id, type) VALUES ($1, 'group')")
        .bind(chat)
        .execute(&mut *tx)
        .await
        .expect("insert group chat");
    sqlx::query(
        "INSERT INTO group_chats (id, name, description, is_public, invite_code, invite_expires_at, \
                                  chat_id, created_by) \
         VALUES ($1, $2, '', false, $3, now() + interval '7 days', $4, $5)",
    )
    .bind(group)
    .bind(&name)
    .bind(&group.simple().to_string()[20..])
    .bind(chat)
    .bind(owner)
    .execute(&mut *tx)
    .await
    .expect("insert group");
    for (user, role) in
        std::iter::once((owner, "owner")).chain(members.iter().map(|m| (*m, "member")))
    {
        sqlx::query(
            "INSERT INTO group_members (id, role, joined_at, group_chat_id, user_id) \
             VALUES ($1, $2, clock_timestamp(), $3, $4)",
        )
        .bind(Uuid::now_v7())
        .bind(role)
        .bind(group)
        .bind(user)
        .execute(&mut *tx)
        .await
        .expect("insert member");
    }
    atoitalk::messages::service::insert_system_message(
        &mut tx,
        chat,
        Some(owner),
        "system_create",
        Some(&serde_json::json!({ "initial_name": name })),
    )
    .await
    .expect("system_create message");
    tx.commit().await.expect("commit group");
    chat
}

/// Signs a user up exactly as a client does: `POST /api/otp/send`, the code
/// from the captured email, `POST /api/auth/register` (password
/// [`PASSWORD`], full name `name`, padded to 3 characters if shorter).
/// Returns (id, token, email). Afterwards the per-IP `auth_public` counter is
/// cleared, so a test may sign up more users than that bucket's 10/min.
pub async fn register_user(app: &TestApp, name: &str) -> (Uuid, String, String) {
    let slug: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(30)
        .collect();
    // Letters only: a digit run in the address (it is in the To header)
    // could be mistaken for the code by `otp_for`.
    let short: String = Uuid::new_v4().as_bytes()[..10]
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    let email = format!("{slug}{short}@example.com");
    let username = format!("{slug}{short}");
    let full_name = if name.chars().count() < 3 {
        format!("{name}___")
    } else {
        name.to_string()
    };
    let res = app
        .http
        .post(app.url("/api/otp/send"))
        .json(&serde_json::json!({
            "email": email, "mode": "register", "captcha_token": "dummy-token"
        }))
        .send()
        .await
        .expect("otp send");
    assert_eq!(
        res.status(),
        200,
        "otp send: {}",
        res.text().await.unwrap_or_default()
    );
    let code = app.mail.otp_for(&email).await;
    let (status, body) = json(
        app.http
            .post(app.url("/api/auth/register"))
            .json(&serde_json::json!({
                "email": email, "username": username, "code": code,
                "full_name": full_name, "password": PASSWORD, "captcha_token": "dummy-token"
            }))
            .send()
            .await
            .expect("register"),
    )
    .await;
    assert_eq!(status, 200, "register: {body}");
    app.reset_public_rate_limit().await;
    let id: Uuid = body["data"]["user"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("user id");
    let token = body["data"]["token"].as_str().expect("token").to_string();
    (id, token, email)
}

impl TestApp {
    /// Clears the loopback client's `auth_public` counter (10/min per IP).
    /// Fills `user`'s per-user `bucket` counter up to `limit` for a minute,
    /// so their next request on that bucket gets 429.
    pub async fn exhaust_user_bucket(&self, user: Uuid, bucket: &str, limit: u64) {
        let key = self
            .state
            .redis
            .key(&format!("ratelimit:user:{bucket}:{user}"));
        let mut c = self.state.redis.conn();
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(limit)
            .arg("EX")
            .arg(60)
            .query_async(&mut c)
            .await
            .expect("set the rate-limit counter");
    }

    pub async fn reset_public_rate_limit(&self) {
        let key = self.state.redis.key("ratelimit:ip:auth_public:127.0.0.1");
        let mut c = self.state.redis.conn();
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("redis del");
    }

    /// `Authorization: Bearer <token>` request builder.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("Authorization", format!("Bearer {token}"))
    }

    /// Signs in with email and password; returns the token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = json(
            self.http
                .post(self.url("/api/auth/login"))
                .json(&serde_json::json!({
                    "email": email, "password": password, "captcha_token": "dummy-token"
                }))
                .send()
                .await
                .expect("login"),
        )
        .await;
        assert_eq!(status, 200, "login: {body}");
        body["data"]["token"].as_str().expect("token").to_string()
    }
}

impl TestApp {
    /// What a scheduler job run needs, with this app's database, storage
    /// and retention settings.
    pub fn job_context(&self) -> atoitalk::jobs::JobContext {
        atoitalk::jobs::JobContext::from_config(
            &self.state.cfg,
            self.state.db.clone(),
            self.state.storage.clone(),
        )
    }

    /// Method form of [`make_group`].
    pub async fn make_group(&self, owner: Uuid, members: &[Uuid]) -> Uuid {
        make_group(self, owner, members).await
    }
}

// ---------------------------------------------------------------------------
// Media / reports / admin helpers (media branch). Direct SQL so these tests do
// not depend on the chats/groups endpoints.
// ---------------------------------------------------------------------------

impl TestApp {
    /// Makes `user` a platform admin.
    pub async fn make_admin(&self, user: Uuid) {
        sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
            .bind(user)
            .execute(&self.state.db)
            .await
            .expect("promote admin");
    }

    /// Inserts a regular message and makes it the chat's last message.
    pub async fn insert_message(&self, chat: Uuid, sender: Uuid, content: &str) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO messages (id, chat_id, sender_id, type, content) VALUES ($1, $2, $3, 'regular', $4)",
        )
        .bind(id)
        .bind(chat)
        .bind(sender)
        .bind(content)
        .execute(&self.state.db)
        .await
        .expect("insert message");
        sqlx::query("UPDATE chats SET last_message_id = $1, last_message_at = now() WHERE id = $2")
            .bind(id)
            .bind(chat)
            .execute(&self.state.db)
            .await
            .expect("update last message");
        id
    }

    /// Creates a group chat owned by `owner` with `members`; returns
    /// (chat id, group_chats id).
    pub async fn make_named_group(
        &self,
        name: &str,
        owner: Uuid,
        members: &[Uuid],
    ) -> (Uuid, Uuid) {
        let chat = Uuid::now_v7();
        let group = Uuid::now_v7();
        sqlx::query("INSERT INTO chats (id, type) VALUES ($1, 'group')")
            .bind(chat)
            .execute(&self.state.db)
            .await
            .expect("insert group chat");
        sqlx::query(
            "INSERT INTO group_chats (id, chat_id, name, description, invite_code, created_by) \
             VALUES ($1, $2, $3, '', $4, $5)",
        )
        .bind(group)
        .bind(chat)
        .bind(name)
        .bind(Uuid::new_v4().simple().to_string()[..12].to_string())
        .bind(owner)
        .execute(&self.state.db)
        .await
        .expect("insert group");
        for (i, u) in std::iter::once(&owner).chain(members).enumerate() {
            sqlx::query(
                "INSERT INTO group_members (id, group_chat_id, user_id, role, joined_at) \
                 VALUES ($1, $2, $3, $4, now())",
            )
            .bind(Uuid::now_v7())
            .bind(group)
            .bind(u)
            .bind(if i == 0 { "owner" } else { "member" })
            .execute(&self.state.db)
            .await
            .expect("insert member");
        }
        (chat, group)
    }

    /// Runs the whole upload flow over HTTP (upload, PUT to the presigned
    /// URL, complete) and returns the completed MediaDTO.
    pub async fn upload_media(
        &self,
        token: &str,
        usage: &str,
        name: &str,
        mime: &str,
        bytes: &[u8],
    ) -> Value {
        let (status, body) = json(
            self.http
                .post(self.url("/api/media/upload"))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "usage": usage, "original_name": name, "file_size": bytes.len(),
                    "mime_type": mime, "captcha_token": "dummy-token"
                }))
                .send()
                .await
                .expect("upload request"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let put = self
            .http
            .put(body["data"]["upload_url"].as_str().expect("upload_url"))
            .header("Content-Type", mime)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT object");
        assert!(put.status().is_success(), "PUT: {}", put.status());
        let id = body["data"]["media"]["id"].as_str().expect("media id");
        let (status, done) = json(
            self.http
                .post(self.url(&format!("/api/media/{id}/complete")))
                .bearer_auth(token)
                .send()
                .await
                .expect("complete request"),
        )
        .await;
        assert_eq!(status, 200, "{done}");
        done["data"].clone()
    }

    /// Links a media row to a message (what sending with attachments does).
    pub async fn attach_media(&self, media: Uuid, message: Uuid) {
        sqlx::query("UPDATE media SET message_id = $1 WHERE id = $2")
            .bind(message)
            .bind(media)
            .execute(&self.state.db)
            .await
            .expect("attach media");
    }
}
// --- end of media / reports / admin helpers ---------------------------------

// ---------------------------------------------------------------------------
// Resilience helpers: a TCP proxy the test can cut and restore, to take
// Postgres or Redis away from one server without touching the shared ones.
// ---------------------------------------------------------------------------

/// Forwards 127.0.0.1:`port` to `target` until cut.
pub struct TcpProxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().expect("proxy lock").push(task.abort_handle());
            }
        });
        TcpProxy { port, up, conns }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().expect("proxy lock").drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
