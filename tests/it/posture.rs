//! Unsafe defaults and forged input: request ids, CORS with `*`, and the
//! production start-up checks.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::TestApp;
use crate::listener::{sigterm, spawn_binary};

#[tokio::test]
async fn only_safe_client_request_ids_are_kept() {
    let app = TestApp::spawn().await;
    let long_ok = "a".repeat(64);
    let too_long = "a".repeat(65);
    for (sent, kept) in [
        ("abc-DEF_123.x", true),
        (long_ok.as_str(), true),
        (too_long.as_str(), false),
        ("two words", false),
        ("x\" level=ERROR msg=\"forged", false),
        ("id=1,user=admin", false),
        ("", false),
    ] {
        let res = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let got = res.headers()["x-request-id"].to_str().unwrap().to_string();
        if kept {
            assert_eq!(got, sent);
        } else {
            assert_ne!(got, sent);
            assert!(
                got.parse::<uuid::Uuid>().is_ok(),
                "fresh id {got:?} for {sent:?}"
            );
        }
    }
    // Bytes outside ASCII are replaced too.
    let res = app
        .http
        .get(app.url("/healthz"))
        .header(
            "x-request-id",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = res.headers()["x-request-id"].to_str().unwrap();
    assert!(got.parse::<uuid::Uuid>().is_ok(), "{got:?}");
}

#[tokio::test]
async fn cors_star_answers_a_literal_star_without_credentials() {
    let app = TestApp::spawn_with(|env| {
        env.insert("APP_CORS_ALLOWED_ORIGINS".into(), "*".into());
    })
    .await;
    for origin in ["https://evil.example", "null"] {
        let res = app
            .http
            .get(app.url("/healthz"))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "*",
            "{origin}"
        );
        assert!(res
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
        let pre = app
            .http
            .request(reqwest::Method::OPTIONS, app.url("/api/users/me"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
            .await
            .unwrap();
        assert!(pre.status().is_success());
        assert_eq!(
            pre.headers()["access-control-allow-origin"],
            "*",
            "{origin}"
        );
        assert!(pre
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
    }
}

#[tokio::test]
async fn an_explicit_origin_list_keeps_credentials() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "APP_CORS_ALLOWED_ORIGINS".into(),
            "https://app.example.com,https://admin.example.com".into(),
        );
    })
    .await;
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("Origin", "https://admin.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://admin.example.com"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    for origin in ["https://evil.example", "null"] {
        let res = app
            .http
            .get(app.url("/healthz"))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
    }
}

fn production() -> Vec<(&'static str, &'static str)> {
    vec![
        ("APP_ENV", "production"),
        ("JWT_SECRET", "a-long-random-test-secret"),
        ("OTP_SECRET", "another-long-random-test-secret"),
        (
            "TOTP_ENCRYPTION_KEY",
            "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
        ),
        ("SMTP_HOST", ""),
        ("TURNSTILE_SECRET_KEY", ""),
        ("TRUSTED_PROXY_CIDRS", ""),
        ("APP_CORS_ALLOWED_ORIGINS", "*"),
    ]
}

#[test]
fn production_without_smtp_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .arg("serve")
        .envs(production())
        .env_remove("EMAIL_LOG_ONLY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SMTP_HOST") && err.contains("EMAIL_LOG_ONLY") && err.contains("production"),
        "{err}"
    );
}

#[test]
fn production_without_a_totp_key_refuses_to_start_while_2fa_is_on() {
    // (`TWO_FACTOR_ENABLED=false` lifting the refusal is a unit test of config.)
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoitalk"))
        .arg("serve")
        .envs(production())
        .env("EMAIL_LOG_ONLY", "true")
        .env_remove("TOTP_ENCRYPTION_KEY")
        .env_remove("TWO_FACTOR_ENABLED")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TOTP_ENCRYPTION_KEY") && err.contains("production"),
        "{err}"
    );
}

#[tokio::test]
async fn email_log_only_starts_and_every_protection_that_is_off_is_warned_about() {
    let mut env = production();
    env.push(("EMAIL_LOG_ONLY", "true"));
    let (child, _port, _db) = spawn_binary(&env).await;
    sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\""))
        .collect();
    for name in [
        "EMAIL_LOG_ONLY",
        "TURNSTILE_SECRET_KEY",
        "TRUSTED_PROXY_CIDRS",
        "APP_CORS_ALLOWED_ORIGINS",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(name)),
            "no start-up warning about {name}:\n{log}"
        );
    }
}
