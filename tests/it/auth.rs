//! Integration tests: sign-up through the real OTP email, login, logout,
//! sessions and revocation, password reset, OTP rules, Turnstile, Google
//! sign-in against a local fake of Google, account changes (password, email,
//! deletion), public rate limits and the admin CLI.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoitalk::auth::otp::hmac_hex;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing;
use axum::{Json, Router};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{self, json, register_user, TestApp, PASSWORD};

const CAPTCHA: &str = "DUMMY_TOKEN_XXXX";
const PASS_SECRET: &str = "1x0000000000000000000000000000000AA";
const FAIL_SECRET: &str = "2x0000000000000000000000000000000AA";

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    json(
        app.http
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post_raw(app: &TestApp, path: &str, body: &'static str) -> (u16, Value) {
    json(
        app.http
            .post(app.url(path))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

async fn redis_get(app: &TestApp, key: &str) -> Option<String> {
    let mut c = app.state.redis.conn();
    redis::cmd("GET")
        .arg(app.state.redis.key(key))
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn redis_set(app: &TestApp, key: &str, value: &str) {
    let mut c = app.state.redis.conn();
    let _: () = redis::cmd("SET")
        .arg(app.state.redis.key(key))
        .arg(value)
        .arg("EX")
        .arg(300)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// Seeds an OTP the way the reference's tests do: the hash under `otp:<mode>:<email>`.
async fn seed_otp(app: &TestApp, mode: &str, email: &str, code: &str) {
    let hash = hmac_hex(&app.state.cfg.otp_secret, code);
    redis_set(app, &format!("otp:{mode}:{email}"), &hash).await;
}

fn err(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

async fn current_status(app: &TestApp, token: &str) -> (u16, Value) {
    call(app, Method::GET, "/api/user/current", token, None).await
}

/// Email of a directly inserted user.
async fn email_of(app: &TestApp, id: Uuid) -> String {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

fn register_body(email: &str, username: &str, code: &str) -> Value {
    json!({
        "email": email, "username": username, "code": code, "full_name": "New Person",
        "password": PASSWORD, "captcha_token": CAPTCHA
    })
}

// ---------------------------------------------------------------------------------------------
// Sign-up, OTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sign_up_through_the_otp_email_then_log_in() {
    let app = TestApp::spawn().await;
    let email = "newcomer@example.com";
    let (status, body) = post(
        &app,
        "/api/otp/send",
        json!({"email": email, "mode": "register", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"data": ""})));

    let mail = app.mail.wait_for(email).await;
    assert!(
        mail.data.contains("Subject: Your OTP Code"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("AtoiTalk Test"), "{}", mail.data);
    assert_eq!(mail.from, "test@atoitalk.com");
    let body_text = harness::decode_quoted_printable(&mail.data);
    assert!(body_text.contains("Verify Your Request - AtoiTalk"));
    assert!(body_text.contains("This code will expire in 5 minutes."));
    let code = app.mail.otp_for(email).await;
    // Stored hashed, never in clear.
    let stored = redis_get(&app, &format!("otp:register:{email}"))
        .await
        .unwrap();
    assert_eq!(stored, hmac_hex("test-otp-secret", &code));

    let (status, body) = post(
        &app,
        "/api/auth/register",
        json!({
            "email": email, "username": "  NewComer1  ", "code": code,
            "full_name": "  New Comer ", "password": PASSWORD, "captcha_token": CAPTCHA,
            "unknown_field": {"ignored": true}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user = &body["data"]["user"];
    assert_eq!(user["email"], email);
    assert_eq!(user["username"], "newcomer1");
    assert_eq!(user["full_name"], "New Comer");
    assert_eq!(user["avatar"], "");
    assert_eq!(user["role"], "user");
    assert!(user.get("bio").is_none() && user.get("has_password").is_none());
    let token = body["data"]["token"].as_str().unwrap().to_string();
    // The code is spent, the token works, the hash is bcrypt cost 10.
    assert!(redis_get(&app, &format!("otp:register:{email}"))
        .await
        .is_none());
    let (status, me) = current_status(&app, &token).await;
    assert_eq!(status, 200);
    assert_eq!(me["data"]["id"], user["id"]);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(hash.starts_with("$2b$10$"), "{hash}");

    // Login; the email is normalised (case, spaces) before lookup.
    let (status, body) = post(
        &app,
        "/api/auth/login",
        json!({"EMAIL": "  NewComer@Example.com ", "password": PASSWORD, "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["id"], user["id"]);
    assert_eq!(body["data"]["user"]["avatar"], "");
    let token2 = body["data"]["token"].as_str().unwrap();
    assert_eq!(current_status(&app, token2).await.0, 200);
    // Older tokens keep working: login never revokes.
    assert_eq!(current_status(&app, &token).await.0, 200);
}

#[tokio::test]
async fn registration_validation_errors_are_400() {
    let app = TestApp::spawn().await;
    let email = "valid@example.com";
    seed_otp(&app, "register", email, "123456").await;
    let base = register_body(email, "validuser", "123456");
    let cases: Vec<(&str, Value)> = vec![
        ("email", json!("not-an-email")),
        ("email", json!("user@localhost")),
        ("email", json!(null)),
        ("username", json!("ab")),
        ("username", json!("user_name")),
        ("username", json!("x".repeat(51))),
        ("code", json!("12345")),
        ("code", json!("1234567")),
        ("full_name", json!("   ")),
        ("full_name", json!("ab")),
        ("full_name", json!("é".repeat(101))),
        ("password", json!("weakpassword")),
        ("password", json!("Sh0rt!")),
        // 72 characters but 140 bytes: bcrypt's limit is bytes, so 400 (not 500).
        ("password", json!(format!("Aa1!{}", "é".repeat(68)))),
        ("password", json!(format!("Aa1!{}", "x".repeat(69)))),
        ("captcha_token", json!("")),
        ("email", json!(5)),
        ("full_name", json!(["a"])),
        ("full_name", json!("Bad\u{0}Name")),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let (status, res) = post(&app, "/api/auth/register", body).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{field}={value}");
        app.reset_public_rate_limit().await;
    }
    for raw in ["", "{", "[1,2]", "null", "\"text\""] {
        let (status, res) = post_raw(&app, "/api/auth/register", raw).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{raw:?}");
        app.reset_public_rate_limit().await;
    }
    // A body over 100 KiB is refused like a malformed one.
    let mut huge = base.clone();
    huge["full_name"] = json!("x".repeat(200 * 1024));
    let (status, res) = post(&app, "/api/auth/register", huge).await;
    assert_eq!((status, err(&res)), (400, "Bad Request"));
    app.reset_public_rate_limit().await;
    // None of this touched the seeded code: it still registers.
    let (status, res) = post(&app, "/api/auth/register", base).await;
    assert_eq!(status, 200, "{res}");
}

#[tokio::test]
async fn otp_codes_are_checked_limited_and_single_use() {
    let app = TestApp::spawn().await;
    let email = "otp@example.com";
    seed_otp(&app, "register", email, "654321").await;
    // No code for this address at all.
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body("none@example.com", "noneuser", "654321"),
    )
    .await;
    assert_eq!((status, err(&res)), (400, "Invalid or expired OTP"));
    // Wrong codes: 400 each, the code survives; the sixth attempt in the window is 429.
    for _ in 0..4 {
        let (status, res) = post(
            &app,
            "/api/auth/register",
            register_body(email, "otpuser", "000000"),
        )
        .await;
        assert_eq!((status, err(&res)), (400, "Invalid or expired OTP"));
    }
    app.reset_public_rate_limit().await;
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(email, "otpuser", "abcdef"),
    )
    .await;
    assert_eq!((status, err(&res)), (400, "Invalid or expired OTP"));
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(email, "otpuser", "654321"),
    )
    .await;
    assert_eq!(status, 429, "{res}");
    assert!(err(&res).starts_with("Please try again in "), "{res}");
    assert!(err(&res).ends_with(" seconds"), "{res}");
    // After the window (2 s in tests) the right code works, once.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(email, "otpuser", "654321"),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(email, "otpuser2", "654321"),
    )
    .await;
    assert_eq!((status, err(&res)), (400, "Invalid or expired OTP"));
}

#[tokio::test]
async fn repeated_wrong_guesses_void_the_code_for_every_client() {
    let app = TestApp::spawn().await;
    let email = "guess@example.com";
    seed_otp(&app, "register", email, "111111").await;
    // Ten wrong guesses over two limiter windows.
    for round in 0..2 {
        for _ in 0..5 {
            let (status, res) = post(
                &app,
                "/api/auth/register",
                register_body(email, "guesser", "999999"),
            )
            .await;
            assert_eq!(
                (status, err(&res)),
                (400, "Invalid or expired OTP"),
                "round {round}"
            );
        }
        app.reset_public_rate_limit().await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    // The real code no longer works: it was invalidated.
    assert!(redis_get(&app, &format!("otp:register:{email}"))
        .await
        .is_none());
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(email, "guesser", "111111"),
    )
    .await;
    assert_eq!((status, err(&res)), (400, "Invalid or expired OTP"));
}

#[tokio::test]
async fn registration_conflicts_do_not_burn_the_code() {
    let app = TestApp::spawn().await;
    let (_, _, taken_email) = register_user(&app, "Taken").await;
    let taken_username: String = sqlx::query_scalar("SELECT username FROM users WHERE email = $1")
        .bind(&taken_email)
        .fetch_one(&app.state.db)
        .await
        .unwrap();

    seed_otp(&app, "register", &taken_email, "222222").await;
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(&taken_email, "freshname", "222222"),
    )
    .await;
    assert_eq!((status, err(&res)), (409, "Email already registered"));

    let email = "fresh@example.com";
    seed_otp(&app, "register", email, "333333").await;
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(email, &taken_username.to_uppercase(), "333333"),
    )
    .await;
    assert_eq!((status, err(&res)), (409, "Username already taken"));
    // Same code, another username: works.
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(email, "freshname", "333333"),
    )
    .await;
    assert_eq!(status, 200, "{res}");
}

#[tokio::test]
async fn emails_are_normalised_and_mail_goes_to_the_stored_address() {
    let app = TestApp::spawn().await;
    let (status, _) = post(
        &app,
        "/api/otp/send",
        json!({"email": "  John.Doe+news@GoogleMail.com ", "mode": "register", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200);
    let code = app.mail.otp_for("johndoe@gmail.com").await;
    assert!(redis_get(&app, "otp:register:johndoe@gmail.com")
        .await
        .is_some());
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body("JOHN.DOE@gmail.com", "johndoe", &code),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["data"]["user"]["email"], "johndoe@gmail.com");

    // Elsewhere a +tag names a different mailbox, so it is kept.
    let (status, _) = post(
        &app,
        "/api/otp/send",
        json!({"email": "Ann+work@Corp.com", "mode": "register", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200);
    app.mail.wait_for("ann+work@corp.com").await;
    assert!(app
        .mail
        .all()
        .iter()
        .all(|m| !m.to.iter().any(|t| t == "ann@corp.com")));
}

#[tokio::test]
async fn otp_send_rules() {
    let app = TestApp::spawn().await;
    let (_, _, existing) = register_user(&app, "Existing").await;
    let before = app.mail.all().len();
    // Past the sign-up send's limiter window (2 s in tests).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Silent suppression: 200, no key, no mail.
    for (email, mode) in [
        (existing.as_str(), "register"),
        (existing.as_str(), "change_email"),
        ("nobody@example.com", "reset"),
    ] {
        let (status, body) = post(
            &app,
            "/api/otp/send",
            json!({"email": email, "mode": mode, "captcha_token": CAPTCHA}),
        )
        .await;
        assert_eq!((status, &body), (200, &json!({"data": ""})), "{mode}");
        assert!(
            redis_get(&app, &format!("otp:{mode}:{email}"))
                .await
                .is_none(),
            "{mode}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.mail.all().len(), before, "no mail for suppressed sends");

    // Validation.
    for body in [
        json!({"email": "a@example.com", "mode": "reset_password", "captcha_token": CAPTCHA}),
        json!({"email": "a@example.com", "mode": "Register", "captcha_token": CAPTCHA}),
        json!({"email": "bad", "mode": "register", "captcha_token": CAPTCHA}),
        json!({"email": "a@example.com", "mode": "register"}),
        json!({"email": "a@example.com", "mode": 1, "captcha_token": CAPTCHA}),
    ] {
        let (status, res) = post(&app, "/api/otp/send", body.clone()).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{body}");
    }
    app.reset_public_rate_limit().await;

    // One send per window and address; a new send replaces the code.
    let email = "limit@example.com";
    let send = || {
        post(
            &app,
            "/api/otp/send",
            json!({"email": email, "mode": "register", "captcha_token": CAPTCHA}),
        )
    };
    assert_eq!(send().await.0, 200);
    let first = redis_get(&app, &format!("otp:register:{email}"))
        .await
        .unwrap();
    let (status, res) = send().await;
    assert_eq!(status, 429);
    assert!(err(&res).contains("Please try again"), "{res}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(send().await.0, 200);
    let second = redis_get(&app, &format!("otp:register:{email}"))
        .await
        .unwrap();
    assert_ne!(first, second);
    // Reset codes go to existing accounts.
    let (status, _) = post(
        &app,
        "/api/otp/send",
        json!({"email": existing, "mode": "reset", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(redis_get(&app, &format!("otp:reset:{existing}"))
        .await
        .is_some());
}

// ---------------------------------------------------------------------------------------------
// Login and sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_errors_bans_and_legacy_hashes() {
    let app = TestApp::spawn().await;
    let (id, _) = app.make_user("Logan").await;
    let email = email_of(&app, id).await;
    let a = &app;
    let login = |email: String, password: &str| {
        let body = json!({"email": email, "password": password, "captcha_token": CAPTCHA});
        async move { post(a, "/api/auth/login", body).await }
    };

    let (status, res) = login(email.clone(), "Wrong123!").await;
    assert_eq!((status, err(&res)), (401, "Unauthorized"));
    let (status, res) = login("ghost@example.com".into(), PASSWORD).await;
    assert_eq!((status, err(&res)), (401, "Unauthorized"));
    // As in the reference, a password the password rule refuses is a 400
    // (for a known and an unknown address alike); only a well-formed wrong
    // password is a 401.
    for (address, password) in [
        (email.clone(), "weak"),
        (email.clone(), "secret123!"),
        (email.clone(), "Secret123"),
        ("ghost@example.com".to_string(), "weak"),
    ] {
        let (status, res) = login(address, password).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{password}");
    }
    let (status, res) = login(email.clone(), &format!("Aa1!{}", "x".repeat(69))).await;
    assert_eq!((status, err(&res)), (400, "Bad Request"), "73 characters");
    app.reset_public_rate_limit().await;
    let (status, res) = login(email.clone(), &format!("Aa1!{}", "x".repeat(68))).await;
    assert_eq!((status, err(&res)), (401, "Unauthorized"), "72 characters");
    for body in [
        json!({"email": "nope", "password": PASSWORD, "captcha_token": CAPTCHA}),
        json!({"email": email, "password": "", "captcha_token": CAPTCHA}),
        json!({"email": email, "password": PASSWORD}),
        json!({"email": email, "password": 12345678, "captcha_token": CAPTCHA}),
    ] {
        let (status, res) = post(&app, "/api/auth/login", body.clone()).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{body}");
    }
    app.reset_public_rate_limit().await;

    // Legacy accounts: $2a$ hashes from the reference still sign in.
    let strong = "Legacy123!";
    let legacy = bcrypt::hash(strong, 4).unwrap().replacen("$2b$", "$2a$", 1);
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(&legacy)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, res) = login(email.clone(), strong).await;
    assert_eq!(status, 200, "{res}");

    // Bans: checked only after the password.
    let set_ban = |until: Option<chrono::DateTime<chrono::Utc>>| {
        sqlx::query(
            "UPDATE users SET is_banned = true, banned_until = $2, ban_reason = 'x' WHERE id = $1",
        )
        .bind(id)
        .bind(until)
        .execute(&app.state.db)
    };
    set_ban(None).await.unwrap();
    let (status, res) = login(email.clone(), strong).await;
    assert_eq!((status, err(&res)), (403, "Account is permanently banned"));
    let (status, res) = login(email.clone(), "Wrong123!").await;
    assert_eq!(status, 401, "{res}");
    let until = chrono::Utc::now() + chrono::Duration::hours(2);
    set_ban(Some(until)).await.unwrap();
    let (status, res) = login(email.clone(), strong).await;
    assert_eq!(status, 403);
    assert_eq!(
        err(&res),
        format!(
            "Account suspended until {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    );
    app.reset_public_rate_limit().await;
    set_ban(Some(chrono::Utc::now() - chrono::Duration::hours(1)))
        .await
        .unwrap();
    let (status, res) = login(email.clone(), strong).await;
    assert_eq!(status, 200, "{res}");
    let (banned, until): (bool, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT is_banned, banned_until FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert!(!banned && until.is_none(), "expired ban lifted");

    // Google-only accounts (no password) cannot use password login.
    sqlx::query("UPDATE users SET password_hash = NULL WHERE id = $1")
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, _) = login(email.clone(), strong).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn logout_revokes_exactly_that_token_and_closes_sockets() {
    let app = TestApp::spawn().await;
    let (id, _, email) = register_user(&app, "Leaver").await;
    let token = app.login(&email, PASSWORD).await;
    let other = app.login(&email, PASSWORD).await;
    // Sockets of the logged-out session, on this and another instance...
    let mut ws = app.ws(&token).await;
    let second = app.second_instance().await;
    let mut ws2 = second.ws(&token).await;
    // ...and of another session (another device), which must stay open.
    let mut other_ws = second.ws(&other).await;

    let res = app
        .authed(Method::POST, "/api/auth/logout", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-limit"], "20");
    let (status, body) = json(res).await;
    assert_eq!((status, body), (200, json!({"data": ""})));
    assert_eq!(
        redis_get(&app, &format!("blacklist:{token}"))
            .await
            .as_deref(),
        Some("revoked")
    );
    let ttl: i64 = {
        let mut c = app.state.redis.conn();
        redis::cmd("TTL")
            .arg(app.state.redis.key(&format!("blacklist:{token}")))
            .query_async(&mut c)
            .await
            .unwrap()
    };
    assert!(ttl > 0 && ttl <= 86400, "{ttl}");
    let (status, body) = current_status(&app, &token).await;
    assert_eq!((status, err(&body)), (401, "Token has been revoked"));
    let (status, _) = call(&app, Method::POST, "/api/auth/logout", &token, None).await;
    assert_eq!(status, 401);
    // The logged-out session's sockets are closed everywhere; the other
    // session keeps working and keeps its socket.
    assert_eq!(current_status(&app, &other).await.0, 200);
    assert_eq!(ws.expect_closed().await, Some(4001));
    assert_eq!(ws2.expect_closed().await, Some(4001));
    app.state
        .bus
        .to_user(
            id,
            &atoitalk::realtime::Event::new(
                atoitalk::realtime::event::kinds::CHAT_HIDE,
                json!({"chat_id": "still-here"}),
                None,
                None,
            ),
        )
        .await;
    let e = other_ws.expect_event("chat.hide").await;
    assert_eq!(e["payload"]["chat_id"], "still-here");
}

#[tokio::test]
async fn the_auth_middleware_refuses_bad_tokens() {
    let app = TestApp::spawn().await;
    let (id, token) = app.make_user("Mid").await;
    let url = app.url("/api/user/current");
    for header in [
        None,
        Some("bearer x".to_string()),
        Some(format!("Bearer  {token}")),
        Some(format!("Bearer {token} x")),
        Some("Bearer garbage".into()),
    ] {
        let mut req = app.http.get(&url);
        if let Some(h) = &header {
            req = req.header("Authorization", h);
        }
        let (status, body) = json(req.send().await.unwrap()).await;
        assert_eq!((status, err(&body)), (401, "Unauthorized"), "{header:?}");
    }
    let expired = atoitalk::auth::tokens::issue("test-jwt-secret", -1, id).unwrap();
    assert_eq!(current_status(&app, &expired).await.0, 401);
    let foreign = atoitalk::auth::tokens::issue("another-secret", 3600, id).unwrap();
    assert_eq!(current_status(&app, &foreign).await.0, 401);

    // Revoke-all markers written by other tools (bare milliseconds) are honoured.
    let now_ms = chrono::Utc::now().timestamp_millis();
    redis_set(&app, &format!("revoked_user:{id}"), &now_ms.to_string()).await;
    assert_eq!(current_status(&app, &token).await.0, 401);
    // Precision: a token issued 1 ms after the marker is accepted even within the same second.
    let s = now_ms / 1000;
    let revoked_at = s * 1000 + 500;
    redis_set(
        &app,
        &format!("revoked_user:{id}"),
        &format!("{revoked_at}:{}", Uuid::new_v4()),
    )
    .await;
    let claims = json!({"user_id": id, "iat": s, "iat_ms": revoked_at + 1, "exp": s + 3600, "iss": "AtoiTalkAPI"});
    let fresh = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-jwt-secret"),
    )
    .unwrap();
    assert_eq!(current_status(&app, &fresh).await.0, 200);
    let claims = json!({"user_id": id, "iat": s, "iat_ms": revoked_at, "exp": s + 3600});
    let same_ms = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-jwt-secret"),
    )
    .unwrap();
    assert_eq!(current_status(&app, &same_ms).await.0, 401);

    // Banned and deleted users.
    let (b, btoken) = app.make_user("Banned").await;
    sqlx::query("UPDATE users SET is_banned = true WHERE id = $1")
        .bind(b)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, body) = current_status(&app, &btoken).await;
    assert_eq!((status, err(&body)), (403, "Account is permanently banned"));
    sqlx::query("UPDATE users SET banned_until = now() + interval '1 hour' WHERE id = $1")
        .bind(b)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, body) = current_status(&app, &btoken).await;
    assert_eq!(
        (status, err(&body)),
        (403, "Account is temporarily suspended")
    );
    let (d, dtoken) = app.make_user("Deleted").await;
    sqlx::query("UPDATE users SET deleted_at = now() WHERE id = $1")
        .bind(d)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, body) = current_status(&app, &dtoken).await;
    assert_eq!((status, err(&body)), (401, "Unauthorized"));
}

#[tokio::test]
async fn reset_password_revokes_sessions() {
    let app = TestApp::spawn().await;
    let (id, token, email) = register_user(&app, "Forgetful").await;
    let mut ws = app.ws(&token).await;
    let (status, _) = post(
        &app,
        "/api/otp/send",
        json!({"email": email, "mode": "reset", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200);
    let code = app.mail.otp_for(&email).await;
    let new_password = "Brand-New-9";
    let body = |code: &str, password: &str, confirm: &str| json!({"email": email, "code": code, "password": password, "confirm_password": confirm, "captcha_token": CAPTCHA});
    for b in [
        body(&code, new_password, "Brand-New-8"),
        body(&code, "weakweak", "weakweak"),
        body("12345", new_password, new_password),
    ] {
        let (status, res) = post(&app, "/api/auth/reset-password", b).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"));
    }
    let (status, res) = post(
        &app,
        "/api/auth/reset-password",
        body("000000", new_password, new_password),
    )
    .await;
    assert_eq!((status, err(&res)), (400, "Invalid or expired OTP"));
    let (status, res) = post(
        &app,
        "/api/auth/reset-password",
        body(&code, new_password, new_password),
    )
    .await;
    assert_eq!((status, &res), (200, &json!({"data": ""})));
    assert_eq!(ws.expect_closed().await, Some(4001));
    assert_eq!(current_status(&app, &token).await.0, 401);
    let marker = redis_get(&app, &format!("revoked_user:{id}"))
        .await
        .unwrap();
    assert!(marker.contains(':'), "{marker}");
    app.reset_public_rate_limit().await;
    let (status, _) = post(
        &app,
        "/api/auth/login",
        json!({"email": email, "password": PASSWORD, "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 401);
    let fresh = app.login(&email, new_password).await;
    assert_eq!(current_status(&app, &fresh).await.0, 200);
    // The code was single-use.
    let (status, _) = post(
        &app,
        "/api/auth/reset-password",
        body(&code, "Another-One-1", "Another-One-1"),
    )
    .await;
    assert_eq!(status, 400);
    // A valid code for an address without an account.
    seed_otp(&app, "reset", "ghost@example.com", "777777").await;
    let (status, res) = post(
        &app,
        "/api/auth/reset-password",
        json!({"email": "ghost@example.com", "code": "777777", "password": new_password, "confirm_password": new_password, "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!((status, err(&res)), (404, "Not Found"));
}

#[tokio::test]
async fn public_routes_are_rate_limited_per_ip() {
    let app = TestApp::spawn().await;
    for i in 0..10 {
        let res = app
            .http
            .get(app.url("/api/auth/google/init"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-ratelimit-limit"], "10", "request {i}");
        assert!(res.headers().get("x-ratelimit-remaining").is_none());
    }
    let res = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD, "captcha_token": CAPTCHA}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["x-ratelimit-limit"], "10");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    assert!(res.headers().get("retry-after").is_some());
    let (_, body) = json(res).await;
    assert_eq!(err(&body), "Rate limit exceeded. Please try again later.");
}

// ---------------------------------------------------------------------------------------------
// Turnstile
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn turnstile_test_secret_that_always_fails_blocks_the_listed_endpoints() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TURNSTILE_SECRET_KEY".into(), FAIL_SECRET.into());
    })
    .await;
    let (id, token) = app.make_user("Captcha").await;
    let email = email_of(&app, id).await;
    seed_otp(&app, "register", "cap@example.com", "123456").await;
    seed_otp(&app, "reset", &email, "123456").await;
    let cases = [
        (
            "/api/auth/login",
            json!({"email": email, "password": PASSWORD, "captcha_token": CAPTCHA}),
        ),
        (
            "/api/auth/register",
            register_body("cap@example.com", "capuser", "123456"),
        ),
        (
            "/api/auth/reset-password",
            json!({"email": email, "code": "123456", "password": "Brand-New-9", "confirm_password": "Brand-New-9", "captcha_token": CAPTCHA}),
        ),
        (
            "/api/otp/send",
            json!({"email": "cap2@example.com", "mode": "register", "captcha_token": CAPTCHA}),
        ),
    ];
    for (path, body) in cases {
        let (status, res) = post(&app, path, body).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{path}");
    }
    // Nothing happened behind the refusals.
    assert!(redis_get(&app, "otp:register:cap2@example.com")
        .await
        .is_none());
    assert!(redis_get(&app, &format!("otp:reset:{email}"))
        .await
        .is_some());
    // Endpoints without Turnstile are unaffected.
    let (status, _) = call(&app, Method::GET, "/api/user/current", &token, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn turnstile_test_secret_that_always_passes() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TURNSTILE_SECRET_KEY".into(), PASS_SECRET.into());
    })
    .await;
    let (_, token, email) = register_user(&app, "Passer").await;
    assert_eq!(current_status(&app, &token).await.0, 200);
    app.login(&email, PASSWORD).await;
}

/// A fake siteverify endpoint answering with `status` and `body`, recording forms.
async fn fake_siteverify(
    status: u16,
    body: Value,
) -> (SocketAddr, Arc<Mutex<Vec<HashMap<String, String>>>>) {
    let seen: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let seen2 = seen.clone();
    let app = Router::new().route(
        "/siteverify",
        routing::post(move |Form(f): Form<HashMap<String, String>>| {
            let seen = seen2.clone();
            let body = body.clone();
            async move {
                seen.lock().unwrap().push(f);
                (StatusCode::from_u16(status).unwrap(), Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test]
async fn turnstile_upstream_answers_and_failures() {
    for (status, body, expected) in [
        (200, json!({"success": true}), 200u16),
        (
            200,
            json!({"success": false, "error-codes": ["invalid-input-response"]}),
            400,
        ),
        (500, json!({}), 503),
        (200, json!("not an object"), 503),
    ] {
        let (addr, seen) = fake_siteverify(status, body).await;
        let app = TestApp::spawn_with(|env| {
            env.insert("TURNSTILE_SECRET_KEY".into(), "real-looking-secret".into());
            env.insert(
                "TURNSTILE_VERIFY_URL".into(),
                format!("http://{addr}/siteverify"),
            );
        })
        .await;
        let (id, _) = app.make_user("Upstream").await;
        let email = email_of(&app, id).await;
        let (got, res) = post(
            &app,
            "/api/auth/login",
            json!({"email": email, "password": PASSWORD, "captcha_token": "tok-1"}),
        )
        .await;
        assert_eq!(got, expected, "{res}");
        if expected == 503 {
            assert_eq!(err(&res), "Captcha service unavailable");
        }
        let forms = seen.lock().unwrap().clone();
        assert_eq!(forms.len(), 1);
        assert_eq!(forms[0]["secret"], "real-looking-secret");
        assert_eq!(forms[0]["response"], "tok-1");
        // Unlike the reference, the client IP is sent for token binding.
        assert_eq!(forms[0]["remoteip"], "127.0.0.1");
    }
    // Cloudflare unreachable.
    let app = TestApp::spawn_with(|env| {
        env.insert("TURNSTILE_SECRET_KEY".into(), "real-looking-secret".into());
        env.insert(
            "TURNSTILE_VERIFY_URL".into(),
            "http://127.0.0.1:9/siteverify".into(),
        );
    })
    .await;
    let (status, res) = post(
        &app,
        "/api/otp/send",
        json!({"email": "x@example.com", "mode": "register", "captcha_token": "t"}),
    )
    .await;
    assert_eq!((status, err(&res)), (503, "Captcha service unavailable"));
}

// ---------------------------------------------------------------------------------------------
// Google sign-in
// ---------------------------------------------------------------------------------------------

/// A local stand-in for Google's token and userinfo endpoints and for an
/// avatar host.
#[derive(Clone, Default)]
pub(crate) struct FakeGoogle {
    /// code → userinfo JSON answered for the token issued for that code.
    users: Arc<Mutex<HashMap<String, Value>>>,
    /// Form fields of every token request.
    token_requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
    addr: Arc<Mutex<Option<SocketAddr>>>,
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xff\xff?\0\x05\xfe\x02\xfe\xa7\x35\x81\x84\0\0\0\0IEND\xaeB`\x82";

impl FakeGoogle {
    async fn start() -> FakeGoogle {
        let fake = FakeGoogle::default();
        let app = Router::new()
            .route("/token", routing::post(fake_token))
            .route("/userinfo", routing::get(fake_userinfo))
            .route(
                "/avatar/photo.png",
                routing::get(|| async { ([("content-type", "image/png")], PNG) }),
            )
            .route(
                "/broken.png",
                routing::get(|| async { StatusCode::NOT_FOUND }),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *fake.addr.lock().unwrap() = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.lock().unwrap().unwrap())
    }

    pub(crate) fn add(&self, code: &str, userinfo: Value) {
        self.users
            .lock()
            .unwrap()
            .insert(code.to_string(), userinfo);
    }

    fn env(&self, env: &mut HashMap<String, String>) {
        env.insert("GOOGLE_CLIENT_ID".into(), "test-client-id".into());
        env.insert("GOOGLE_CLIENT_SECRET".into(), "test-client-secret".into());
        env.insert(
            "GOOGLE_REDIRECT_URL".into(),
            "http://localhost:3000/auth/callback".into(),
        );
        env.insert("GOOGLE_TOKEN_URL".into(), self.url("/token"));
        env.insert("GOOGLE_USERINFO_URL".into(), self.url("/userinfo"));
    }
}

async fn fake_token(
    State(f): State<FakeGoogle>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    f.token_requests.lock().unwrap().push(form.clone());
    let code = form.get("code").cloned().unwrap_or_default();
    if f.users.lock().unwrap().contains_key(&code) {
        Json(json!({"access_token": format!("at-{code}"), "token_type": "Bearer", "expires_in": 3599})).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response()
    }
}

async fn fake_userinfo(
    State(f): State<FakeGoogle>,
    headers: HeaderMap,
) -> axum::response::Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer at-"))
        .unwrap_or_default()
        .to_string();
    match f.users.lock().unwrap().get(&token) {
        Some(Value::String(s)) if s == "500" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Some(u) => Json(u.clone()).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

pub(crate) async fn google_app() -> (TestApp, FakeGoogle) {
    let fake = FakeGoogle::start().await;
    let f = fake.clone();
    let app = TestApp::spawn_with(move |env| f.env(env)).await;
    (app, fake)
}

async fn google_init(app: &TestApp) -> String {
    let (status, body) = json(
        app.http
            .get(app.url("/api/auth/google/init"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["state"].as_str().unwrap().to_string()
}

pub(crate) async fn google_sign_in(app: &TestApp, code: &str) -> (u16, Value) {
    let state = google_init(app).await;
    post(
        app,
        "/api/auth/google",
        json!({"code": code, "state": state}),
    )
    .await
}

#[tokio::test]
async fn google_init_returns_a_pkce_consent_url_and_stores_the_state() {
    let (app, _fake) = google_app().await;
    let (status, body) = json(
        app.http
            .get(app.url("/api/auth/google/init"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let data = &body["data"];
    let state = data["state"].as_str().unwrap();
    assert_eq!(state.len(), 48);
    assert!(state.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(data["expires_in_seconds"], 600);
    let url = url::Url::parse(data["auth_url"].as_str().unwrap()).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["state"], state);
    assert_eq!(q["client_id"], "test-client-id");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], "http://localhost:3000/auth/callback");
    assert!(q["scope"].contains("userinfo.email"));
    let stored: Value = serde_json::from_str(
        &redis_get(&app, &format!("oauth:google:state:{state}"))
            .await
            .unwrap(),
    )
    .unwrap();
    let verifier = stored["code_verifier"].as_str().unwrap();
    assert_eq!(verifier.len(), 64);
    use base64::Engine;
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    assert_eq!(q["code_challenge"], challenge);
    assert_eq!(
        stored["fingerprint_hash"],
        hmac_hex("test-otp-secret", "127.0.0.1")
    );
}

#[tokio::test]
async fn google_first_sign_in_creates_the_account() {
    let (app, fake) = google_app().await;
    fake.add(
        "code-new",
        json!({"id": "g-100", "email": "Jane.Roe@GoogleMail.com", "verified_email": true, "name": "  Jane Roe ", "picture": fake.url("/avatar/photo.png")}),
    );
    let (status, body) = google_sign_in(&app, "code-new").await;
    assert_eq!(status, 200, "{body}");
    let user = &body["data"]["user"];
    assert_eq!(user["email"], "janeroe@gmail.com");
    assert_eq!(user["full_name"], "Jane Roe");
    assert_eq!(user["role"], "user");
    let username = user["username"].as_str().unwrap();
    assert!(
        username.starts_with("janeroe") && username.len() == 11,
        "{username}"
    );
    assert!(atoitalk::auth::fields::is_valid_username(username));
    // The PKCE verifier went to the token endpoint.
    let reqs = fake.token_requests.lock().unwrap().clone();
    assert_eq!(reqs[0]["code_verifier"].len(), 64);
    assert_eq!(reqs[0]["grant_type"], "authorization_code");
    let id: Uuid = user["id"].as_str().unwrap().parse().unwrap();
    let (provider_id, provider_email): (String, Option<String>) = sqlx::query_as(
        "SELECT provider_id, provider_email FROM user_identities WHERE user_id = $1",
    )
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(
        (provider_id.as_str(), provider_email.as_deref()),
        ("g-100", Some("janeroe@gmail.com"))
    );
    let hash: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(hash.is_none());
    // The avatar is either stored (a media row and its public URL) or, when the
    // upload fails, simply absent: never a dangling reference.
    let avatar = user["avatar"].as_str().unwrap();
    let media: Option<(String, String, String)> = sqlx::query_as(
        "SELECT m.file_name, m.category, m.mime_type FROM users u JOIN media m ON m.id = u.avatar_id WHERE u.id = $1",
    )
    .bind(id)
    .fetch_optional(&app.state.db)
    .await
    .unwrap();
    match media {
        Some((file, category, mime)) => {
            assert_eq!(
                (category.as_str(), mime.as_str()),
                ("user_avatar", "image/png")
            );
            assert!(file.ends_with(".png"));
            assert_eq!(avatar, app.state.storage.public_url(&file));
        }
        None => assert_eq!(avatar, ""),
    }
    let token = body["data"]["token"].as_str().unwrap();
    let (status, me) = current_status(&app, token).await;
    assert_eq!(status, 200);
    assert!(me["data"].get("has_password").is_none());

    // Second sign-in: same account, nothing duplicated.
    let (status, body) = google_sign_in(&app, "code-new").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["user"]["id"], user["id"]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn google_links_an_existing_account_and_follows_it_after_an_email_change() {
    let (app, fake) = google_app().await;
    let (id, _, email) = register_user(&app, "Linked Person").await;
    fake.add(
        "code-link",
        json!({"id": "g-200", "email": email.to_uppercase(), "verified_email": true, "name": "Google Name", "picture": fake.url("/broken.png")}),
    );
    let (status, body) = google_sign_in(&app, "code-link").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["id"], id.to_string());
    // Name is not taken over from Google.
    assert_eq!(body["data"]["user"]["full_name"], "Linked Person");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_identities WHERE user_id = $1 AND provider_id = 'g-200'",
    )
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(n, 1);
    // The account's email changes (directly here); the Google subject still finds it.
    sqlx::query("UPDATE users SET email = 'moved@example.com' WHERE id = $1")
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, body) = google_sign_in(&app, "code-link").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["id"], id.to_string());

    // Banned accounts are refused like at login.
    sqlx::query("UPDATE users SET is_banned = true WHERE id = $1")
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, body) = google_sign_in(&app, "code-link").await;
    assert_eq!((status, err(&body)), (403, "Account is permanently banned"));
}

#[tokio::test]
async fn google_exchange_errors() {
    let (app, fake) = google_app().await;
    fake.add(
        "unverified",
        json!({"id": "g-1", "email": "u@example.com", "verified_email": false, "name": "U"}),
    );
    fake.add(
        "no-email",
        json!({"id": "g-2", "email": "", "verified_email": true}),
    );
    fake.add(
        "no-id",
        json!({"id": "", "email": "n@example.com", "verified_email": true}),
    );
    fake.add("broken", json!("500"));
    fake.add(
        "ok",
        json!({"id": "g-3", "email": "ok@example.com", "verified_email": true, "name": ""}),
    );

    for body in [
        json!({"code": "ok", "state": "short"}),
        json!({"code": "", "state": "a".repeat(20)}),
        json!({"code": "ok", "state": "a".repeat(129)}),
        json!({"code": 5, "state": "a".repeat(20)}),
    ] {
        let (status, res) = post(&app, "/api/auth/google", body.clone()).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{body}");
    }
    let (status, res) = post(
        &app,
        "/api/auth/google",
        json!({"code": "ok", "state": "x".repeat(48)}),
    )
    .await;
    assert_eq!(
        (status, err(&res)),
        (401, "Invalid or expired Google auth state")
    );
    app.reset_public_rate_limit().await;

    // States are single use, even when the exchange fails.
    let state = google_init(&app).await;
    let (status, res) = post(
        &app,
        "/api/auth/google",
        json!({"code": "bad-code", "state": state}),
    )
    .await;
    assert_eq!((status, err(&res)), (401, "Invalid authorization code"));
    let (status, res) = post(
        &app,
        "/api/auth/google",
        json!({"code": "ok", "state": state}),
    )
    .await;
    assert_eq!(
        (status, err(&res)),
        (401, "Invalid or expired Google auth state")
    );

    for (code, status_expected, message) in [
        ("unverified", 400, "Email from Google is not verified."),
        ("no-email", 400, "Email not found"),
        ("no-id", 400, "Invalid Google ID"),
        ("broken", 503, "Google service unavailable"),
    ] {
        app.reset_public_rate_limit().await;
        let (status, res) = google_sign_in(&app, code).await;
        assert_eq!((status, err(&res)), (status_expected, message), "{code}");
    }
    app.reset_public_rate_limit().await;
    // No name from Google: the email's local part.
    let (status, res) = google_sign_in(&app, "ok").await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["data"]["user"]["full_name"], "ok");
    assert_eq!(res["data"]["user"]["avatar"], "");
}

#[tokio::test]
async fn google_state_is_bound_to_the_client_that_asked_for_it() {
    let fake = FakeGoogle::start().await;
    let f = fake.clone();
    let app = TestApp::spawn_with(move |env| {
        f.env(env);
        env.insert("TRUSTED_PROXY_CIDRS".into(), "127.0.0.0/8".into());
    })
    .await;
    fake.add(
        "ok",
        json!({"id": "g-9", "email": "bound@example.com", "verified_email": true, "name": "Bound"}),
    );
    let init = |ip: &'static str| {
        let req = app
            .http
            .get(app.url("/api/auth/google/init"))
            .header("X-Forwarded-For", ip);
        async move {
            let (_, body) = json(req.send().await.unwrap()).await;
            body["data"]["state"].as_str().unwrap().to_string()
        }
    };
    let exchange = |ip: &'static str, state: String| {
        let req = app
            .http
            .post(app.url("/api/auth/google"))
            .header("X-Forwarded-For", ip)
            .json(&json!({"code": "ok", "state": state}));
        async move { json(req.send().await.unwrap()).await }
    };
    let state = init("203.0.113.7").await;
    let (status, res) = exchange("198.51.100.1", state).await;
    assert_eq!((status, err(&res)), (401, "Invalid Google auth state"));
    let state = init("203.0.113.7").await;
    let (status, res) = exchange("203.0.113.7", state).await;
    assert_eq!(status, 200, "{res}");
}

#[tokio::test]
async fn google_is_unavailable_until_configured() {
    let app = TestApp::spawn().await;
    let (status, res) = json(
        app.http
            .get(app.url("/api/auth/google/init"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{res}");
}

// ---------------------------------------------------------------------------------------------
// Account: password, email, deletion
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn change_password_revokes_every_session() {
    let app = TestApp::spawn().await;
    let (id, token, email) = register_user(&app, "Changer").await;
    let other = app.login(&email, PASSWORD).await;
    let mut ws = app.ws(&other).await;
    let put = |body: Value| {
        call(
            &app,
            Method::PUT,
            "/api/account/password",
            &token,
            Some(body),
        )
    };
    for body in [
        json!({"new_password": "Brand-New-9", "confirm_password": "Brand-New-9"}),
        json!({"old_password": null, "new_password": "Brand-New-9", "confirm_password": "Brand-New-9"}),
        json!({"old_password": PASSWORD, "new_password": "weakweak", "confirm_password": "weakweak"}),
        json!({"old_password": PASSWORD, "new_password": "Brand-New-9", "confirm_password": "Brand-New-8"}),
        json!({"old_password": PASSWORD, "new_password": format!("Aa1!{}", "é".repeat(68)), "confirm_password": format!("Aa1!{}", "é".repeat(68))}),
        json!({"old_password": PASSWORD, "new_password": 5, "confirm_password": 5}),
    ] {
        let (status, res) = put(body.clone()).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{body}");
    }
    let (status, res) = put(json!({"old_password": "Wrong123!", "new_password": "Brand-New-9", "confirm_password": "Brand-New-9"})).await;
    assert_eq!((status, err(&res)), (400, "Invalid old password"));
    assert_eq!(current_status(&app, &token).await.0, 200);

    let (status, res) = put(json!({"old_password": PASSWORD, "new_password": "Brand-New-9", "confirm_password": "Brand-New-9"})).await;
    assert_eq!((status, &res), (200, &json!({"data": ""})));
    assert_eq!(current_status(&app, &token).await.0, 401);
    assert_eq!(current_status(&app, &other).await.0, 401);
    assert_eq!(ws.expect_closed().await, Some(4001));
    assert!(redis_get(&app, &format!("revoked_user:{id}"))
        .await
        .is_some());
    let fresh = app.login(&email, "Brand-New-9").await;
    assert_eq!(current_status(&app, &fresh).await.0, 200);

    // Google-only accounts set a password without an old one.
    sqlx::query("UPDATE users SET password_hash = NULL WHERE id = $1")
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, _) = call(&app, Method::PUT, "/api/account/password", &fresh, Some(json!({"old_password": "whatever", "new_password": "Third-Pass-3", "confirm_password": "Third-Pass-3"}))).await;
    assert_eq!(status, 200);
    app.login(&email, "Third-Pass-3").await;
}

#[tokio::test]
async fn change_email_with_a_code_sent_to_the_new_address() {
    let app = TestApp::spawn().await;
    let (id, token, old_email) = register_user(&app, "Mover").await;
    let mut ws = app.ws(&token).await;
    sqlx::query("INSERT INTO user_identities (id, provider, provider_id, provider_email, user_id) VALUES ($1, 'google', 'g-mover', $2, $3)")
        .bind(Uuid::now_v7())
        .bind(&old_email)
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let new_email = "moved.here@example.com";
    let (status, _) = post(
        &app,
        "/api/otp/send",
        json!({"email": new_email, "mode": "change_email", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200);
    let code = app.mail.otp_for(new_email).await;
    let put = |body: Value| call(&app, Method::PUT, "/api/account/email", &token, Some(body));

    for body in [
        json!({"email": "bad", "code": code}),
        json!({"email": new_email, "code": "123"}),
        json!({"email": old_email, "code": code}),
        json!({"email": new_email}),
    ] {
        let (status, res) = put(body.clone()).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{body}");
    }
    let (status, res) = put(json!({"email": new_email, "code": "000000"})).await;
    assert_eq!((status, err(&res)), (400, "Invalid or expired OTP"));
    // Taken address: 409 after the code check, and the code survives.
    let (_, _, taken) = register_user(&app, "Occupant").await;
    seed_otp(&app, "change_email", &taken, "424242").await;
    let (status, res) = put(json!({"email": taken, "code": "424242"})).await;
    assert_eq!((status, err(&res)), (409, "Email already registered"));
    assert!(redis_get(&app, &format!("otp:change_email:{taken}"))
        .await
        .is_some());

    // Whitespace and case around the address are tolerated.
    let (status, res) =
        put(json!({"email": format!("  {}  ", new_email.to_uppercase()), "code": code})).await;
    assert_eq!((status, &res), (200, &json!({"data": ""})));
    assert_eq!(ws.expect_closed().await, Some(4001));
    assert_eq!(current_status(&app, &token).await.0, 401);
    let stored: String = email_of(&app, id).await;
    assert_eq!(stored, new_email);
    let identities: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_identities WHERE user_id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(identities, 0, "Google link removed");
    let fresh = app.login(new_email, PASSWORD).await;
    let (_, me) = current_status(&app, &fresh).await;
    assert_eq!(me["data"]["email"], new_email);
}

#[tokio::test]
async fn change_email_needs_a_password_and_is_attempt_limited() {
    let app = TestApp::spawn().await;
    let (id, token) = app.make_user("NoPass").await;
    sqlx::query("UPDATE users SET password_hash = NULL WHERE id = $1")
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, res) = call(
        &app,
        Method::PUT,
        "/api/account/email",
        &token,
        Some(json!({"email": "new@example.com", "code": "123456"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(err(&res).contains("set a password"), "{res}");

    let (_, token) = app.make_user("Guesser").await;
    seed_otp(&app, "change_email", "target@example.com", "123456").await;
    for _ in 0..5 {
        let (status, _) = call(
            &app,
            Method::PUT,
            "/api/account/email",
            &token,
            Some(json!({"email": "target@example.com", "code": "654321"})),
        )
        .await;
        assert_eq!(status, 400);
    }
    let (status, res) = call(
        &app,
        Method::PUT,
        "/api/account/email",
        &token,
        Some(json!({"email": "target@example.com", "code": "123456"})),
    )
    .await;
    assert_eq!(status, 429, "{res}");
    assert!(err(&res).starts_with("Please try again in"));
}

#[tokio::test]
async fn delete_account_anonymises_notifies_contacts_and_frees_the_email() {
    let app = TestApp::spawn().await;
    let (id, token, email) = register_user(&app, "Departing").await;
    let (contact, contact_token) = app.make_user("Contact").await;
    let (_stranger, stranger_token) = app.make_user("Stranger").await;
    app.make_private_chat(id, contact).await;
    let (other_owner, owner_token) = app.make_user("Owner").await;
    let group_chat = app.make_group(other_owner, &[id]).await;
    sqlx::query("INSERT INTO user_blocks (id, blocker_id, blocked_id) VALUES ($1, $2, $3)")
        .bind(Uuid::now_v7())
        .bind(contact)
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO user_identities (id, provider, provider_id, user_id) VALUES ($1, 'google', 'g-dep', $2)")
        .bind(Uuid::now_v7())
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let mut own_ws = app.ws(&token).await;
    let mut contact_ws = app.ws(&contact_token).await;
    let mut stranger_ws = app.ws(&stranger_token).await;
    let delete = |body: Option<String>| {
        let mut req = app.authed(Method::DELETE, "/api/account", &token);
        if let Some(b) = body {
            req = req.body(b);
        }
        async move { json(req.send().await.unwrap()).await }
    };
    let (status, res) = delete(None).await;
    assert_eq!(
        (status, err(&res)),
        (400, "Password is required to delete account")
    );
    let (status, res) = delete(Some(r#"{"password": ""}"#.into())).await;
    assert_eq!(
        (status, err(&res)),
        (400, "Password is required to delete account")
    );
    let (status, res) = delete(Some(r#"{"password": "Wrong123!"}"#.into())).await;
    assert_eq!((status, err(&res)), (400, "Invalid password"));
    let (status, res) = delete(Some("{not json".into())).await;
    assert_eq!((status, err(&res)), (400, "Bad Request"));
    let (status, res) = delete(Some(r#"{"password": 5}"#.into())).await;
    assert_eq!((status, err(&res)), (400, "Bad Request"));

    let (status, res) = delete(Some(format!(r#"{{"PASSWORD": "{PASSWORD}"}}"#))).await;
    assert_eq!((status, &res), (200, &json!({"data": ""})));

    let ev = contact_ws.expect_event("user.deleted").await;
    assert_eq!(ev["payload"], json!({"user_id": id}));
    assert_eq!(ev["meta"]["sender_id"], id.to_string());
    assert_eq!(ev["meta"]["chat_id"], Uuid::nil().to_string());
    assert_eq!(own_ws.expect_closed().await, Some(4004));
    stranger_ws
        .expect_no_event("user.deleted", Duration::from_millis(500))
        .await;
    assert_eq!(current_status(&app, &token).await.0, 401);

    type Anonymised = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        bool,
    );
    let row: Anonymised = sqlx::query_as(
        "SELECT email, username, full_name, bio, password_hash, deleted_at IS NOT NULL FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(row, (None, None, None, None, None, true));
    let leftovers: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM user_identities WHERE user_id = $1), \
                (SELECT count(*) FROM group_members WHERE user_id = $1), \
                (SELECT count(*) FROM user_blocks WHERE blocker_id = $1 OR blocked_id = $1), \
                (SELECT count(*) FROM private_chats WHERE user1_id = $1 OR user2_id = $1)",
    )
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(
        leftovers,
        (0, 1, 0, 1),
        "identities and blocks go; group memberships and chats stay"
    );
    // The kept membership is invisible: not listed, not counted.
    let (status, members) = json(
        app.authed(
            Method::GET,
            &format!("/api/chats/group/{group_chat}/members"),
            &owner_token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{members}");
    let listed: Vec<&str> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![other_owner.to_string().as_str()]);
    // The address is free again (after the sign-up send's 2 s window).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _) = post(
        &app,
        "/api/otp/send",
        json!({"email": email, "mode": "register", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200);
    let code = app.mail.otp_for(&email).await;
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body(&email, "reborn", &code),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_ne!(res["data"]["user"]["id"], id.to_string());
}

#[tokio::test]
async fn group_owners_must_hand_over_before_deleting() {
    let app = TestApp::spawn().await;
    let (id, token) = app.make_user("GroupOwner").await;
    let (member, _) = app.make_user("Member").await;
    let chat = app.make_group(id, &[member]).await;
    let body = json!({"password": PASSWORD});
    let (status, res) = call(
        &app,
        Method::DELETE,
        "/api/account",
        &token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (status, err(&res)),
        (403, "You must transfer ownership of your groups or delete them before deleting your account.")
    );
    // Owning only a deleted group is fine.
    sqlx::query("UPDATE chats SET deleted_at = now() WHERE id = $1")
        .bind(chat)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, res) = call(&app, Method::DELETE, "/api/account", &token, Some(body)).await;
    assert_eq!(status, 200, "{res}");
    // The dissolved group's history keeps its owner row.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM group_members WHERE user_id = $1")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn passwordless_accounts_delete_without_a_body() {
    let app = TestApp::spawn().await;
    let (id, token) = app.make_user("Googler").await;
    sqlx::query("UPDATE users SET password_hash = NULL WHERE id = $1")
        .bind(id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let (status, res) = json(
        app.authed(Method::DELETE, "/api/account", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &res), (200, &json!({"data": ""})));
    assert_eq!(current_status(&app, &token).await.0, 401);
}

// ---------------------------------------------------------------------------------------------
// Robustness and the admin CLI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_bodies_never_cause_a_500() {
    let app = TestApp::spawn().await;
    let (_, token) = app.make_user("Robust").await;
    let huge = format!("{{\"email\": \"{}\"}}", "a".repeat(150 * 1024));
    let nul = r#"{"email": "a\u0000@b.com", "full_name": "x\u0000y", "password": "Aa1!\u0000xxxx", "code": "\u0000\u0000\u0000\u0000\u0000\u0000"}"#;
    let bodies: Vec<String> = vec![
        String::new(),
        "{".into(),
        "[]".into(),
        "null".into(),
        "12".into(),
        r#"{"email": {"nested": true}, "password": [1], "code": 1.5}"#.into(),
        r#"{"EMAIL": "X@EXAMPLE.COM", "unknown": 1, "Mode": "register"}"#.into(),
        nul.into(),
        huge,
    ];
    let public = [
        "/api/auth/login",
        "/api/auth/register",
        "/api/auth/reset-password",
        "/api/otp/send",
        "/api/auth/google",
    ];
    let authed = [
        (Method::PUT, "/api/account/password"),
        (Method::PUT, "/api/account/email"),
        (Method::DELETE, "/api/account"),
        (Method::PUT, "/api/user/profile"),
        (Method::POST, "/api/auth/logout"),
    ];
    for body in &bodies {
        for path in public {
            app.reset_public_rate_limit().await;
            let res = app
                .http
                .post(app.url(path))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let (_, v) = json(res).await;
            assert!(status < 500, "{path} {status} {v} for {:.60}", body);
            assert!(status == 200 || v["error"].is_string(), "{path}: {v}");
        }
        for (method, path) in &authed {
            if *path == "/api/auth/logout" || *path == "/api/account" {
                continue;
            }
            let res = app
                .authed(method.clone(), path, &token)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let (_, v) = json(res).await;
            assert!(
                (400..500).contains(&status),
                "{path} {status} {v} for {:.60}",
                body
            );
        }
    }
    // Wrong methods and unknown sub-paths answer in the envelope.
    let (status, body) = json(
        app.http
            .get(app.url("/api/auth/login"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, err(&body)), (405, "Method Not Allowed"));
}

#[tokio::test]
async fn admin_cli_promotes_and_demotes() {
    let app = TestApp::spawn().await;
    let (id, _, email) = register_user(&app, "Future Admin").await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
            .args(args)
            .envs(app.env.iter())
            .output()
            .unwrap()
    };
    let role = || {
        sqlx::query_scalar::<_, String>("SELECT role FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
    };
    let out = run(&["admin", "promote", &format!("  {}  ", email.to_uppercase())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(role().await.unwrap(), "admin");
    // The role is read from the database on every request.
    let token = app.login(&email, PASSWORD).await;
    let (_, me) = current_status(&app, &token).await;
    assert_eq!(me["data"]["role"], "admin");
    let out = run(&["admin", "demote", &email]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(role().await.unwrap(), "user");
    let out = run(&["admin", "promote", "nobody@example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody@example.com"));
}

#[tokio::test]
async fn otp_mail_is_sent_in_the_background_when_smtp_async() {
    let app = TestApp::spawn_with(|env| {
        env.insert("SMTP_ASYNC".into(), "true".into());
    })
    .await;
    let (status, _) = post(
        &app,
        "/api/otp/send",
        json!({"email": "async@example.com", "mode": "register", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!(status, 200);
    let code = app.mail.otp_for("async@example.com").await;
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register_body("async@example.com", "asyncuser", &code),
    )
    .await;
    assert_eq!(status, 200, "{res}");
}

#[tokio::test]
async fn undeliverable_codes_are_voided_without_telling_the_client() {
    // Nothing listens on port 9 (discard): every SMTP attempt fails.
    let app = TestApp::spawn_with(|env| {
        env.insert("SMTP_PORT".into(), "9".into());
    })
    .await;
    let (status, body) = post(
        &app,
        "/api/otp/send",
        json!({"email": "lost@example.com", "mode": "register", "captcha_token": CAPTCHA}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"data": ""})));
    assert!(redis_get(&app, "otp:register:lost@example.com")
        .await
        .is_none());
}

#[tokio::test]
async fn one_address_cannot_be_mail_bombed_from_many_ips() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TRUSTED_PROXY_CIDRS".into(), "127.0.0.0/8".into());
    })
    .await;
    let send = |i: u32| {
        let req = app
            .http
            .post(app.url("/api/otp/send"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .json(&json!({"email": "victim@example.com", "mode": "register", "captcha_token": CAPTCHA}));
        async move { json(req.send().await.unwrap()).await }
    };
    // Each client may send once per window; the address itself caps them all.
    for i in 1..=atoitalk::auth::otp::SENDS_PER_HOUR as u32 {
        let (status, res) = send(i).await;
        assert_eq!(status, 200, "send {i}: {res}");
    }
    let (status, res) = send(200).await;
    assert_eq!(status, 429, "{res}");
    assert!(err(&res).starts_with("Please try again in"));
    let mails = app
        .mail
        .all()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == "victim@example.com"))
        .count();
    assert_eq!(mails as u64, atoitalk::auth::otp::SENDS_PER_HOUR);
}
