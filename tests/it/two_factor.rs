//! Two-factor authentication (issue 18) over real HTTP: enrolment, the
//! second sign-in step with TOTP and recovery codes, single use, replay,
//! expiry, throttling, Google sign-in, disabling, and the config switch.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::auth::{google_app, google_sign_in};
use crate::harness::{json, register_user, TestApp, PASSWORD};
use crate::sessions::{call, login_as, sid_of, FIREFOX_LINUX};

async fn post_authed(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    json(
        app.authed(Method::POST, path, token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let res = json(
        app.http
            .post(app.url(path))
            .header("User-Agent", FIREFOX_LINUX)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    app.reset_public_rate_limit().await;
    res
}

fn err(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

/// An authenticator app for a base32 secret.
fn authenticator(secret: &str) -> Totp {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(Secret::try_from_base32(secret).expect("base32 secret"))
        .build()
        .expect("totp")
}

/// The code of the current time step plus `offset` steps.
fn code(app: &Totp, offset: i64) -> String {
    let now = chrono::Utc::now().timestamp() + offset * 30;
    app.generate(now as u64).to_string()
}

/// A well-formed code outside the accepted window (±1 step).
fn wrong_code(app: &Totp) -> String {
    let window: Vec<String> = (-1..=1).map(|o| code(app, o)).collect();
    (5..20)
        .map(|o| code(app, o))
        .find(|c| !window.contains(c))
        .expect("a code outside the window")
}

struct Enrolled {
    app: Totp,
    recovery: Vec<String>,
}

/// Sets up and enables 2FA with the current code.
async fn enroll(app: &TestApp, token: &str) -> Enrolled {
    let (status, body) = post_authed(app, "/api/account/2fa/setup", token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let secret = body["data"]["secret"].as_str().unwrap();
    let uri = body["data"]["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/AtoiTalk:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let totp = authenticator(secret);
    let (status, body) = post_authed(
        app,
        "/api/account/2fa/enable",
        token,
        json!({"code": code(&totp, 0)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let recovery: Vec<String> = body["data"]["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    Enrolled {
        app: totp,
        recovery,
    }
}

/// The password step for a 2FA account: the challenge.
async fn challenge(app: &TestApp, email: &str) -> String {
    let (status, body) = login_as(app, email, FIREFOX_LINUX).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["two_factor_required"], true, "{body}");
    assert!(
        body["data"].get("token").is_none(),
        "no token before the second factor"
    );
    body["data"]["challenge"].as_str().unwrap().to_string()
}

async fn second_step(app: &TestApp, challenge: &str, code: &str) -> (u16, Value) {
    post(
        app,
        "/api/auth/login/2fa",
        json!({"challenge": challenge, "code": code}),
    )
    .await
}

#[tokio::test]
async fn enrolment_then_sign_in_needs_a_fresh_single_use_code() {
    let app = TestApp::spawn().await;
    let (id, token, email) = register_user(&app, "Lea").await;
    // Setup alone changes nothing for sign-in.
    let (status, body) = post_authed(&app, "/api/account/2fa/setup", &token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let pending = authenticator(body["data"]["secret"].as_str().unwrap());
    let (status, body) = login_as(&app, &email, FIREFOX_LINUX).await;
    assert_eq!(status, 200);
    assert!(body["data"]["token"].is_string(), "{body}");
    // Enable: a wrong code is refused; the current one activates it.
    let (status, body) = post_authed(
        &app,
        "/api/account/2fa/enable",
        &token,
        json!({"code": wrong_code(&pending)}),
    )
    .await;
    assert_eq!((status, err(&body)), (400, "Invalid code"));
    let enabled = enroll(&app, &token).await;
    assert_eq!(enabled.recovery.len(), 10);
    let (status, body) = post_authed(&app, "/api/account/2fa/setup", &token, json!({})).await;
    assert_eq!(
        (status, err(&body)),
        (409, "Two-factor authentication is already enabled")
    );

    // The secret is sealed and the recovery codes hashed at rest.
    let (sealed, codes): (Vec<u8>, Vec<String>) = (
        sqlx::query_scalar("SELECT secret_enc FROM user_two_factor WHERE user_id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap(),
        sqlx::query_scalar("SELECT code_hash FROM user_recovery_codes WHERE user_id = $1")
            .bind(id)
            .fetch_all(&app.state.db)
            .await
            .unwrap(),
    );
    let raw = enabled.app.secret().as_bytes().to_vec();
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert_eq!(codes.len(), 10);
    for c in &enabled.recovery {
        assert!(!codes.iter().any(|h| h.contains(&c.replace('-', ""))));
    }

    let ch = challenge(&app, &email).await;
    let (status, body) = second_step(&app, &ch, &wrong_code(&enabled.app)).await;
    assert_eq!((status, err(&body)), (401, "Invalid code"));
    // A code older than the skew has expired.
    let stale = code(&enabled.app, -3);
    if ![-1, 0, 1].iter().any(|o| code(&enabled.app, *o) == stale) {
        let (status, body) = second_step(&app, &ch, &stale).await;
        assert_eq!((status, err(&body)), (401, "Invalid code"));
    }
    // The code that enabled 2FA counts as used.
    let (status, body) = second_step(&app, &ch, &code(&enabled.app, 0)).await;
    assert_eq!((status, err(&body)), (401, "Invalid code"));
    // The next step's code is within the skew and completes the sign-in.
    let next = code(&enabled.app, 1);
    let (status, body) = second_step(&app, &ch, &next).await;
    assert_eq!(status, 200, "{body}");
    let signed = body["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["user"]["email"], email);
    assert_eq!(
        call(&app, Method::GET, "/api/user/current", &signed)
            .await
            .0,
        200
    );
    let (_, list) = call(&app, Method::GET, "/api/account/sessions", &signed).await;
    let mine = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .expect("the 2FA sign-in is a session")
        .clone();
    assert_eq!(mine["id"], sid_of(&signed).unwrap().to_string());
    assert_eq!(mine["name"], "Firefox on Linux");
    // The challenge is spent, and the code cannot be replayed on a new one.
    let (status, body) = second_step(&app, &ch, &code(&enabled.app, 1)).await;
    assert_eq!((status, err(&body)), (401, "Invalid or expired challenge"));
    let ch2 = challenge(&app, &email).await;
    let (status, body) = second_step(&app, &ch2, &next).await;
    assert_eq!((status, err(&body)), (401, "Invalid code"));
    // An unknown challenge is refused the same way as an expired one.
    let (status, body) = second_step(&app, "not-a-challenge", &next).await;
    assert_eq!((status, err(&body)), (401, "Invalid or expired challenge"));
    let (status, _) = post(&app, "/api/auth/login/2fa", json!({"challenge": ch2})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let app = TestApp::spawn().await;
    let (_id, token, email) = register_user(&app, "Max").await;
    let enrolled = enroll(&app, &token).await;
    let first = enrolled.recovery[0].clone();
    let ch = challenge(&app, &email).await;
    // Case and dashes do not matter.
    let typed = first.to_uppercase().replace('-', " ");
    let (status, body) = second_step(&app, &ch, &typed).await;
    assert_eq!(status, 200, "{body}");
    let ch = challenge(&app, &email).await;
    let (status, body) = second_step(&app, &ch, &first).await;
    assert_eq!((status, err(&body)), (401, "Invalid code"));
    let (status, body) = second_step(&app, &ch, &enrolled.recovery[1]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_expired_challenge_is_refused() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TWO_FACTOR_CHALLENGE_TTL_SECONDS".into(), "1".into());
    })
    .await;
    let (_id, token, email) = register_user(&app, "Ned").await;
    let enrolled = enroll(&app, &token).await;
    let (_, body) = login_as(&app, &email, FIREFOX_LINUX).await;
    assert_eq!(body["data"]["expires_in_seconds"], 1);
    let ch = body["data"]["challenge"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = second_step(&app, &ch, &code(&enrolled.app, 1)).await;
    assert_eq!((status, err(&body)), (401, "Invalid or expired challenge"));
    // The code was not spent by the refused attempt.
    let ch = challenge(&app, &email).await;
    let (status, body) = second_step(&app, &ch, &enrolled.recovery[0]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn more_than_five_wrong_codes_are_throttled_per_account() {
    let app = TestApp::spawn().await;
    let (_id, token, email) = register_user(&app, "Oli").await;
    let (_id2, token2, email2) = register_user(&app, "Pat").await;
    let enrolled = enroll(&app, &token).await;
    let other = enroll(&app, &token2).await;
    let ch = challenge(&app, &email).await;
    for i in 0..5 {
        let (status, body) = second_step(&app, &ch, &format!("wrong-{i}")).await;
        assert_eq!((status, err(&body)), (401, "Invalid code"), "attempt {i}");
    }
    // Even the right code is refused now, with Retry-After.
    let res = app
        .http
        .post(app.url("/api/auth/login/2fa"))
        .json(&json!({"challenge": ch, "code": enrolled.recovery[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    app.reset_public_rate_limit().await;
    // Another account is not affected.
    let ch2 = challenge(&app, &email2).await;
    let (status, body) = second_step(&app, &ch2, &other.recovery[0]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn disabling_needs_the_password_and_a_code() {
    let app = TestApp::spawn().await;
    let (_id, token, email) = register_user(&app, "Quin").await;
    let enrolled = enroll(&app, &token).await;
    let path = "/api/account/2fa/disable";
    let (status, body) = post_authed(
        &app,
        path,
        &token,
        json!({"password": "Wrong123!x", "code": enrolled.recovery[0]}),
    )
    .await;
    assert_eq!((status, err(&body)), (400, "Invalid password"));
    let (status, body) = post_authed(
        &app,
        path,
        &token,
        json!({"password": PASSWORD, "code": "nope-nope"}),
    )
    .await;
    assert_eq!((status, err(&body)), (400, "Invalid code"));
    let (status, body) = post_authed(
        &app,
        path,
        &token,
        json!({"password": PASSWORD, "code": enrolled.recovery[0]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = login_as(&app, &email, FIREFOX_LINUX).await;
    assert_eq!(status, 200);
    assert!(
        body["data"]["token"].is_string(),
        "plain login again: {body}"
    );
    let (status, body) = post_authed(
        &app,
        path,
        &token,
        json!({"password": PASSWORD, "code": enrolled.recovery[1]}),
    )
    .await;
    assert_eq!(
        (status, err(&body)),
        (400, "Two-factor authentication is not enabled")
    );
}

#[tokio::test]
async fn google_sign_in_of_a_2fa_account_asks_for_the_second_factor() {
    let (app, fake) = google_app().await;
    fake.add(
        "code-2fa",
        json!({"id": "g-2fa-1", "email": "twofa.google@example.com", "verified_email": true,
               "name": "Gina", "picture": ""}),
    );
    let (status, body) = google_sign_in(&app, "code-2fa").await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_string();
    app.reset_public_rate_limit().await;
    let enrolled = enroll(&app, &token).await;
    let (status, body) = google_sign_in(&app, "code-2fa").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["two_factor_required"], true, "{body}");
    assert!(body["data"].get("token").is_none());
    let ch = body["data"]["challenge"].as_str().unwrap();
    let (status, body) = second_step(&app, ch, &enrolled.recovery[0]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["email"], "twofa.google@example.com");
    // A Google-only account disables 2FA with a code alone.
    let (status, body) = post_authed(
        &app,
        "/api/account/2fa/disable",
        &token,
        json!({"code": enrolled.recovery[1]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_server_switch_turns_two_factor_off() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TWO_FACTOR_ENABLED".into(), "false".into());
    })
    .await;
    let (_id, token, _email) = register_user(&app, "Ray").await;
    let (status, body) = post_authed(&app, "/api/account/2fa/setup", &token, json!({})).await;
    assert_eq!(
        (status, err(&body)),
        (403, "Two-factor authentication is disabled on this server")
    );
}
