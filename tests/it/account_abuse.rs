//! Integration tests of the account hardening (issue 15, C9–C12): a
//! stranger cannot lock an address owner out of OTP mail, per-account login
//! throttling, tokens issued by a clock that runs ahead, and email
//! addresses that only look different.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{json, TestApp};

const CAPTCHA: &str = "DUMMY_TOKEN_XXXX";

fn err(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

/// A `POST` from the client `ip` (the test server trusts loopback proxies).
async fn post_from(app: &TestApp, ip: &str, path: &str, body: Value) -> (u16, Value) {
    json(
        app.http
            .post(app.url(path))
            .header("X-Forwarded-For", ip)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn behind_proxy(env: &mut std::collections::HashMap<String, String>) {
    env.insert("TRUSTED_PROXY_CIDRS".into(), "127.0.0.0/8".into());
}

// ---------------------------------------------------------------------------------------------
// C9: OTP lock-out
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stranger_cannot_lock_the_owner_out_of_otp_mail() {
    let app = TestApp::spawn_with(|env| {
        behind_proxy(env);
        env.insert("OTP_RATE_LIMIT_SECONDS".into(), "1".into());
    })
    .await;
    let victim = "owner@example.com";
    let body = json!({"email": victim, "mode": "register", "captcha_token": CAPTCHA});
    // The stranger asks for one code per window, as often as the address cap
    // allows from all clients together.
    let mut accepted = 0;
    for i in 0..atoitalk::auth::otp::SENDS_PER_HOUR {
        let (status, res) = post_from(&app, "203.0.113.66", "/api/otp/send", body.clone()).await;
        match status {
            200 => accepted += 1,
            429 => assert!(err(&res).starts_with("Please try again in"), "{res}"),
            other => panic!("send {i}: {other} {res}"),
        }
        tokio::time::sleep(Duration::from_millis(1050)).await;
    }
    assert_eq!(accepted, atoitalk::auth::otp::CLIENT_SENDS_PER_HOUR);
    // The owner, from elsewhere, still gets a code.
    let (status, res) = post_from(&app, "198.51.100.7", "/api/otp/send", body.clone()).await;
    assert_eq!((status, res), (200, json!({"data": ""})));
    let mails = app
        .mail
        .all()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == victim))
        .count() as u64;
    assert_eq!(mails, atoitalk::auth::otp::CLIENT_SENDS_PER_HOUR + 1);
}

// ---------------------------------------------------------------------------------------------
// C10: per-account login throttling
// ---------------------------------------------------------------------------------------------

fn login_body(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password, "captcha_token": CAPTCHA})
}

#[tokio::test]
async fn many_wrong_passwords_from_many_ips_delay_the_account_not_forever() {
    let app = TestApp::spawn_with(|env| {
        behind_proxy(env);
        env.insert("LOGIN_THROTTLE_BASE_SECONDS".into(), "2".into());
        env.insert("LOGIN_THROTTLE_MAX_SECONDS".into(), "4".into());
    })
    .await;
    let (id, _) = app.make_user("Target").await;
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let (mut refused, mut throttled) = (0, 0);
    for i in 1..=40 {
        let ip = format!("198.51.100.{i}");
        let (status, res) = post_from(
            &app,
            &ip,
            "/api/auth/login",
            login_body(&email, "Wrong-pass-1"),
        )
        .await;
        match status {
            401 => refused += 1,
            429 => {
                throttled += 1;
                assert!(
                    err(&res).starts_with("Too many failed login attempts. Please try again in"),
                    "{res}"
                );
            }
            other => panic!("attempt {i}: {other} {res}"),
        }
    }
    assert!(
        refused >= 5 && throttled > 0,
        "{refused} refused, {throttled} throttled"
    );
    let login = |ip: &'static str, password: &'static str| {
        post_from(&app, ip, "/api/auth/login", login_body(&email, password))
    };
    // The right password does not simply succeed right after...
    let (status, res) = login("203.0.113.1", crate::harness::PASSWORD).await;
    assert_eq!(status, 429, "{res}");
    // ...but works once the (capped) delay has run out, and clears the count.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let (status, res) = login("203.0.113.1", crate::harness::PASSWORD).await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = login("203.0.113.2", "Wrong-pass-1").await;
    assert_eq!(status, 401, "{res}");
}

// ---------------------------------------------------------------------------------------------
// C11: tokens from a clock that runs ahead
// ---------------------------------------------------------------------------------------------

/// A validly signed token as an instance whose clock is `ahead_ms` ahead
/// would mint it; `rev` as this service's sign-in sets it (`None`: the
/// reference's shape).
fn token_from_the_future(
    app: &TestApp,
    user: uuid::Uuid,
    ahead_ms: i64,
    rev: Option<&str>,
) -> String {
    let iat_ms = chrono::Utc::now().timestamp_millis() + ahead_ms;
    let mut claims = json!({
        "user_id": user, "iat_ms": iat_ms, "iat": iat_ms / 1000,
        "exp": iat_ms / 1000 + 3600, "iss": "AtoiTalkAPI"
    });
    if let Some(rev) = rev {
        claims["rev"] = json!(rev);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(app.state.cfg.jwt_secret.as_bytes()),
    )
    .unwrap()
}

async fn current(app: &TestApp, token: &str) -> u16 {
    app.authed(reqwest::Method::GET, "/api/user/current", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_token_issued_ahead_of_time_does_not_survive_revoke_all() {
    let app = TestApp::spawn().await;
    let (id, token, email) = crate::harness::register_user(&app, "Ahead").await;
    // Signed in on an instance whose clock runs 5 s ahead.
    let ahead = token_from_the_future(&app, id, 5000, Some(""));
    assert_eq!(current(&app, &ahead).await, 200);
    // The reference's token shape is refused when issued that far ahead,
    // and accepted within the small skew.
    assert_eq!(
        current(&app, &token_from_the_future(&app, id, 5000, None)).await,
        401
    );
    assert_eq!(
        current(&app, &token_from_the_future(&app, id, 1000, None)).await,
        200
    );

    let (status, res) = json(
        app.authed(reqwest::Method::PUT, "/api/account/password", &token)
            .json(&json!({
                "old_password": crate::harness::PASSWORD,
                "new_password": "Brand-New-9", "confirm_password": "Brand-New-9"
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(current(&app, &ahead).await, 401);
    // Still revoked once the wall clock has passed its issue time.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(current(&app, &ahead).await, 401);
    assert_eq!(current(&app, &token).await, 401);
    // A sign-in after the change works at once.
    let fresh = app.login(&email, "Brand-New-9").await;
    assert_eq!(current(&app, &fresh).await, 200);
}

// ---------------------------------------------------------------------------------------------
// C12: email addresses that only look different
// ---------------------------------------------------------------------------------------------

async fn redis_get(app: &TestApp, key: &str) -> Option<String> {
    let mut c = app.state.redis.conn();
    redis::cmd("GET")
        .arg(app.state.redis.key(key))
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    post_from(app, "127.0.0.1", path, body).await
}

#[tokio::test]
async fn look_alike_domains_are_the_same_address() {
    let app = TestApp::spawn_with(behind_proxy).await;
    let otp = |email: &str| json!({"email": email, "mode": "register", "captcha_token": CAPTCHA});
    let register = |email: &str, username: &str, code: &str| {
        json!({
            "email": email, "username": username, "code": code, "full_name": "Same Person",
            "password": crate::harness::PASSWORD, "captcha_token": CAPTCHA
        })
    };
    assert_eq!(post(&app, "/api/otp/send", otp("x@gmail.com")).await.0, 200);
    let code = app.mail.otp_for("x@gmail.com").await;
    let (status, res) = post(
        &app,
        "/api/auth/register",
        register("x@gmail.com", "xoriginal", &code),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    let id = res["data"]["user"]["id"].clone();

    for (i, variant) in ["x@gmail.com.", "x@ｇmail.com", "X@ＧＭＡＩＬ．ＣＯＭ."]
        .iter()
        .enumerate()
    {
        app.reset_public_rate_limit().await;
        // The address exists: no code is stored or sent, under either form.
        // (From another client: the address's per-client window applies.)
        let ip = format!("198.51.100.{}", i + 10);
        assert_eq!(
            post_from(&app, &ip, "/api/otp/send", otp(variant)).await,
            (200, json!({"data": ""}))
        );
        assert!(
            redis_get(&app, &format!("otp:register:{variant}"))
                .await
                .is_none(),
            "{variant}"
        );
        assert!(
            redis_get(&app, "otp:register:x@gmail.com").await.is_none(),
            "{variant}"
        );
        // Even with a valid code for the address, no second account.
        let hash = atoitalk::auth::otp::hmac_hex(&app.state.cfg.otp_secret, "123456");
        let mut c = app.state.redis.conn();
        let _: () = redis::cmd("SET")
            .arg(app.state.redis.key("otp:register:x@gmail.com"))
            .arg(hash)
            .query_async(&mut c)
            .await
            .unwrap();
        let (status, res) = post(
            &app,
            "/api/auth/register",
            register(variant, &format!("xvariant{i}"), "123456"),
        )
        .await;
        assert_eq!(
            (status, err(&res)),
            (409, "Email already registered"),
            "{variant}"
        );
        let _: () = redis::cmd("DEL")
            .arg(app.state.redis.key("otp:register:x@gmail.com"))
            .query_async(&mut c)
            .await
            .unwrap();
        // And every form signs in to the one account.
        let (status, res) = post(
            &app,
            "/api/auth/login",
            json!({"email": variant, "password": crate::harness::PASSWORD, "captcha_token": CAPTCHA}),
        )
        .await;
        assert_eq!(
            (status, &res["data"]["user"]["id"]),
            (200, &id),
            "{variant}: {res}"
        );
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(users, 1);
    // Addresses that do not survive normalisation are refused.
    for refused in ["x@gmail.com..", "x@gma_il.com", "ｘ@corp.com"] {
        app.reset_public_rate_limit().await;
        let (status, res) = post(&app, "/api/otp/send", otp(refused)).await;
        assert_eq!((status, err(&res)), (400, "Bad Request"), "{refused}");
    }
}
