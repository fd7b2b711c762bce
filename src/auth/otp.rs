//! One-time codes sent by email (spec §10): generation, hashed storage in
//! Redis, send and verify limiters, and the email itself.
//!
//! Key shapes are the reference's (tests and operators read them):
//! `otp:<mode>:<email>` holds hex HMAC-SHA256(OTP_SECRET, code) for `OTP_EXP`
//! seconds; `ratelimit:otp:<mode>:<email>:<scope>` (1 per window) and
//! `ratelimit:otp_verify:<mode>:<email>:<scope>` (5 per window) limit sends
//! and attempts per client; `ratelimit:otp_client:<mode>:<email>:<scope>` and
//! `ratelimit:otp_email:<mode>:<email>` are this service's hourly caps.
//!
//! Beyond the reference, two per-address guards close the gaps its limiters
//! leave open to attackers with many IPs: at most [`SENDS_PER_HOUR`] codes per
//! address and mode per hour (no mail-bombing), and a code is invalidated
//! after [`MAX_FAILED_ATTEMPTS`] wrong guesses from anywhere (no distributed
//! brute force). Codes are compared in constant time, and a code is only
//! consumed when the operation it authorises actually happens.
//!
//! One client may spend only [`CLIENT_SENDS_PER_HOUR`] of an address's hourly
//! sends, and its refused requests never reach the address counter, so a
//! stranger requesting codes for someone else's address cannot use up the
//! owner's budget (it takes several clients, each solving the captcha when
//! one is configured).

use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use redis::AsyncCommands;
use sha2::Sha256;

use crate::error::AppError;
use crate::http::rate_limit;
use crate::infra::email::Email;
use crate::state::AppState;

type HmacSha256 = Hmac<Sha256>;

/// Codes a single address may be sent per mode and hour, from all clients.
pub const SENDS_PER_HOUR: u64 = 10;
/// Codes one client may request per address and mode per hour: a small
/// share of [`SENDS_PER_HOUR`], so no single client locks the owner out.
pub const CLIENT_SENDS_PER_HOUR: u64 = 3;
/// Wrong guesses (from any client) after which the current code is void.
pub const MAX_FAILED_ATTEMPTS: i64 = 10;
/// Verification attempts per client, address and window.
const VERIFY_LIMIT: u64 = 5;

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Register,
    Reset,
    ChangeEmail,
}

impl Mode {
    /// Parses the wire value (case-sensitive, as the reference).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "register" => Some(Self::Register),
            "reset" => Some(Self::Reset),
            "change_email" => Some(Self::ChangeEmail),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Reset => "reset",
            Self::ChangeEmail => "change_email",
        }
    }
}

/// Lower-case hex HMAC-SHA256 keyed with the OTP secret.
pub fn hmac_hex(secret: &str, message: &str) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

fn mac(secret: &str, message: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(message.as_bytes());
    m
}

/// The limiter scope of a client: the HMAC of its fingerprint (client IP on
/// public routes, user id on authenticated ones), or `global` without one.
pub fn scope(secret: &str, fingerprint: Option<&str>) -> String {
    match fingerprint {
        Some(f) if !f.is_empty() => hmac_hex(secret, f),
        _ => "global".to_string(),
    }
}

fn code_key(state: &AppState, mode: Mode, email: &str) -> String {
    state.redis.key(&format!("otp:{}:{email}", mode.as_str()))
}

fn failures_key(state: &AppState, mode: Mode, email: &str) -> String {
    state
        .redis
        .key(&format!("otp_failures:{}:{email}", mode.as_str()))
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "otp store unavailable");
    crate::infra::metrics::redis_error("request");
    AppError::unavailable("OTP service unavailable")
}

fn try_again(reset_ms: u64) -> AppError {
    AppError::TooManyRequests {
        message: format!(
            "Please try again in {} seconds",
            reset_ms.div_ceil(1000).max(1)
        ),
        retry_after: None,
    }
}

fn window(state: &AppState) -> Duration {
    Duration::from_secs(state.cfg.otp_rate_limit_secs.max(1) as u64)
}

/// Counts one send for `email`: per client (1 per window and
/// [`CLIENT_SENDS_PER_HOUR`] per hour), then, only when the client is within
/// both, per address ([`SENDS_PER_HOUR`]). They are consumed before the
/// caller decides whether the address gets a code, so answers do not reveal
/// whether it exists.
pub async fn check_send_limits(
    state: &AppState,
    mode: Mode,
    email: &str,
    scope: &str,
) -> Result<(), AppError> {
    let hour = Duration::from_secs(3600);
    let key = |name: &str, tail: &str| {
        state
            .redis
            .key(&format!("ratelimit:{name}:{}:{email}{tail}", mode.as_str()))
    };
    let tail = format!(":{scope}");
    let client = [
        (key("otp", &tail), 1, window(state)),
        (key("otp_client", &tail), CLIENT_SENDS_PER_HOUR, hour),
    ];
    let verdicts = rate_limit::hit_many(&state.redis, &client)
        .await
        .map_err(unavailable)?;
    if let Some(v) = verdicts.iter().find(|v| !v.allowed) {
        return Err(try_again(v.reset_ms));
    }
    let v = rate_limit::hit(&state.redis, &key("otp_email", ""), SENDS_PER_HOUR, hour)
        .await
        .map_err(unavailable)?;
    if !v.allowed {
        return Err(try_again(v.reset_ms));
    }
    Ok(())
}

/// Generates a code for `email`, stores its hash (replacing any earlier code)
/// and emails it, in the background when `SMTP_ASYNC` is on. A delivery
/// failure is logged and voids the code, but is not reported to the client.
pub async fn issue(state: &AppState, mode: Mode, email: &str) -> Result<(), AppError> {
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let hash = hmac_hex(&state.cfg.otp_secret, &code);
    let key = code_key(state, mode, email);
    let mut c = state.redis.conn();
    let _: () = redis::pipe()
        .set_ex(&key, &hash, state.cfg.otp_exp_secs.max(1) as u64)
        .ignore()
        .del(failures_key(state, mode, email))
        .ignore()
        .query_async(&mut c)
        .await
        .map_err(unavailable)?;

    let email_msg = Email {
        to: email.to_string(),
        subject: "Your OTP Code".into(),
        html: render_email(&code, state.cfg.otp_exp_secs / 60),
    };
    let deliver = {
        let state = state.clone();
        async move {
            if let Err(e) = state.mailer.send(&email_msg).await {
                tracing::error!(error = %e, "OTP email could not be delivered; code voided");
                if let Err(e) = compare_and_delete(&state, &key, &hash).await {
                    tracing::warn!(error = %e, "failed to void undelivered OTP");
                }
            }
        }
    };
    if state.cfg.smtp.send_async {
        tokio::spawn(deliver);
    } else {
        deliver.await;
    }
    Ok(())
}

/// A code that matched; [`consume`] spends it.
#[derive(Debug)]
pub struct Verified {
    key: String,
    hash: String,
}

/// Checks `code` for `email` without spending it (§10 steps 1–3). Errors:
/// 429 `Please try again in N seconds` after five attempts per client and
/// window, 400 `Invalid or expired OTP`, 503 when Redis fails.
pub async fn verify(
    state: &AppState,
    mode: Mode,
    email: &str,
    scope: &str,
    code: &str,
) -> Result<Verified, AppError> {
    let limit_key = state.redis.key(&format!(
        "ratelimit:otp_verify:{}:{email}:{scope}",
        mode.as_str()
    ));
    let v = rate_limit::hit(&state.redis, &limit_key, VERIFY_LIMIT, window(state))
        .await
        .map_err(unavailable)?;
    if !v.allowed {
        return Err(try_again(v.reset_ms));
    }
    let key = code_key(state, mode, email);
    let mut c = state.redis.conn();
    let stored: Option<String> = c.get(&key).await.map_err(unavailable)?;
    let Some(stored) = stored else {
        return Err(invalid());
    };
    let matches = hex::decode(stored.trim())
        .map(|bytes| {
            mac(&state.cfg.otp_secret, code)
                .verify_slice(&bytes)
                .is_ok()
        })
        .unwrap_or(false);
    if matches {
        return Ok(Verified { key, hash: stored });
    }
    record_failure(state, mode, email, &key, &stored).await?;
    Err(invalid())
}

fn invalid() -> AppError {
    AppError::bad_request("Invalid or expired OTP")
}

/// Counts a wrong guess against the address; voids the code after too many.
async fn record_failure(
    state: &AppState,
    mode: Mode,
    email: &str,
    key: &str,
    stored: &str,
) -> Result<(), AppError> {
    let fkey = failures_key(state, mode, email);
    let mut c = state.redis.conn();
    let (count,): (i64,) = redis::pipe()
        .incr(&fkey, 1)
        .expire(&fkey, state.cfg.otp_exp_secs.max(1))
        .ignore()
        .query_async(&mut c)
        .await
        .map_err(unavailable)?;
    if count >= MAX_FAILED_ATTEMPTS {
        compare_and_delete(state, key, stored)
            .await
            .map_err(unavailable)?;
        tracing::warn!(
            mode = mode.as_str(),
            "OTP voided after repeated wrong guesses"
        );
    }
    Ok(())
}

/// Spends a verified code. `Ok(false)` when it was already used, replaced or
/// expired in the meantime (a concurrent request won): the caller answers
/// 400 `Invalid or expired OTP` and rolls back.
pub async fn consume(state: &AppState, v: &Verified) -> Result<bool, AppError> {
    compare_and_delete(state, &v.key, &v.hash)
        .await
        .map_err(unavailable)
}

/// Deletes `key` only if it still holds `value`.
async fn compare_and_delete(state: &AppState, key: &str, value: &str) -> redis::RedisResult<bool> {
    let script = redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
          end
          return 0",
    );
    let mut c = state.redis.conn();
    let n: i64 = script.key(key).arg(value).invoke_async(&mut c).await?;
    Ok(n == 1)
}

/// Consumes a verified code or fails with the contract's 400.
pub async fn consume_or_invalid(state: &AppState, v: &Verified) -> Result<(), AppError> {
    if consume(state, v).await? {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// The OTP email (ASCII only, so it travels as 7bit and stays readable).
fn render_email(code: &str, minutes: i64) -> String {
    use chrono::Datelike;
    const TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Verify Your Request - AtoiTalk</title>
</head>
<body style="margin:0;padding:0;background-color:#f4f5fb;font-family:Arial,Helvetica,sans-serif;color:#1f2a44;">
<table role="presentation" width="100%" cellspacing="0" cellpadding="0" style="padding:32px 0;">
<tr><td align="center">
<table role="presentation" width="480" cellspacing="0" cellpadding="0" style="background-color:#ffffff;border-radius:12px;padding:32px;">
<tr><td style="font-size:22px;font-weight:bold;text-align:center;">Verify Your Request</td></tr>
<tr><td style="padding-top:16px;font-size:15px;text-align:center;">Use the code below to continue with AtoiTalk:</td></tr>
<tr><td style="padding:24px 0;text-align:center;">
<span style="display:inline-block;font-size:32px;letter-spacing:8px;font-weight:bold;background-color:#eef1fb;border-radius:8px;padding:12px 24px;">{CODE}</span>
</td></tr>
<tr><td style="font-size:14px;text-align:center;">This code will expire in {MINUTES} minutes.</td></tr>
<tr><td style="padding-top:16px;font-size:13px;color:#6b7590;text-align:center;">If you did not request this code, you can ignore this email.</td></tr>
</table>
<p style="font-size:12px;color:#9aa1b5;">&copy; {YEAR} AtoiTalk. All rights reserved.</p>
</td></tr>
</table>
</body>
</html>
"#;
    TEMPLATE
        .replace("{CODE}", code)
        .replace("{MINUTES}", &minutes.to_string())
        .replace("{YEAR}", &chrono::Utc::now().year().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn scope_and_modes() {
        assert_eq!(scope("s", None), "global");
        assert_eq!(scope("s", Some("")), "global");
        assert_eq!(scope("s", Some("1.2.3.4")).len(), 64);
        assert_eq!(Mode::parse("reset"), Some(Mode::Reset));
        assert_eq!(Mode::parse("reset_password"), None);
        assert_eq!(Mode::parse("Register"), None);
    }

    #[test]
    fn email_shows_code_first_and_is_ascii() {
        let html = render_email("042917", 5);
        assert!(html.is_ascii());
        assert!(html.contains("This code will expire in 5 minutes."));
        assert!(html.contains("Verify Your Request - AtoiTalk"));
        // The code is the first six-digit run, so readers find it.
        let first = html
            .as_bytes()
            .windows(8)
            .position(|w| {
                !w[0].is_ascii_digit()
                    && w[1..7].iter().all(u8::is_ascii_digit)
                    && !w[7].is_ascii_digit()
            })
            .unwrap();
        assert_eq!(&html[first + 1..first + 7], "042917");
    }
}
