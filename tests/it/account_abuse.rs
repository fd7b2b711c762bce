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
