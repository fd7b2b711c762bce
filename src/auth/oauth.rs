//! Google sign-in (spec §11): a one-time state with a PKCE verifier in Redis,
//! the code exchange, and account lookup, linking or first-time sign-up.
//!
//! Improvements over the reference: accounts are found by the Google subject
//! id first (so an email change does not orphan the Google login), generated
//! usernames use only characters users can type back into their profile and a
//! cryptographic suffix with more attempts, and the avatar is stored before
//! the account row points at it.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::device::ClientMeta;
use super::dto::{GoogleInitResponse, GoogleLoginRequest, LoginOutcome};
use super::repo::{self, Account};
use super::{fields, otp, service};
use crate::error::AppError;
use crate::infra::google::GoogleError;
use crate::infra::storage::Bucket;
use crate::state::AppState;

/// Lifetime of a sign-in state.
const STATE_TTL_SECS: u64 = 600;
/// Largest Google avatar we copy.
const MAX_AVATAR_BYTES: usize = 5 * 1024 * 1024;
/// Username candidates tried before giving up.
const USERNAME_ATTEMPTS: usize = 8;

#[derive(Serialize, Deserialize)]
struct StatePayload {
    #[serde(default)]
    code_verifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint_hash: Option<String>,
}

fn state_key(state: &AppState, s: &str) -> String {
    state.redis.key(&format!("oauth:google:state:{s}"))
}

fn session_unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "oauth state store unavailable");
    crate::infra::metrics::redis_error("request");
    AppError::unavailable("Session service unavailable")
}

fn fingerprint(state: &AppState, ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| otp::hmac_hex(&state.cfg.otp_secret, &ip.to_string()))
}

/// `GET /api/auth/google/init`.
pub async fn init(state: &AppState, ip: Option<IpAddr>) -> Result<GoogleInitResponse, AppError> {
    if !state.google.enabled() {
        return Err(AppError::unavailable("Google sign-in is not configured"));
    }
    let (s, verifier) = {
        let mut rng = rand::rngs::OsRng;
        (
            Alphanumeric.sample_string(&mut rng, 48),
            Alphanumeric.sample_string(&mut rng, 64),
        )
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let payload = serde_json::to_string(&StatePayload {
        code_verifier: verifier,
        fingerprint_hash: fingerprint(state, ip),
    })
    .map_err(|e| AppError::Internal(e.into()))?;
    let mut c = state.redis.conn();
    let _: () = redis::cmd("SET")
        .arg(state_key(state, &s))
        .arg(payload)
        .arg("EX")
        .arg(STATE_TTL_SECS)
        .query_async(&mut c)
        .await
        .map_err(session_unavailable)?;
    Ok(GoogleInitResponse {
        auth_url: state.google.auth_url(&s, &challenge),
        state: s,
        expires_in_seconds: STATE_TTL_SECS,
    })
}

/// `POST /api/auth/google`. An account with two-factor authentication
/// gets a challenge instead of a token, as with a password login.
pub async fn exchange(
    state: &AppState,
    req: GoogleLoginRequest,
    meta: &ClientMeta,
) -> Result<LoginOutcome, AppError> {
    let ip = meta.ip;
    let code = req.code.unwrap_or_default();
    let s = req.state.unwrap_or_default();
    let state_len = s.chars().count();
    if code.is_empty() || code.len() > 4096 || !(16..=128).contains(&state_len) {
        return Err(AppError::bad_request("Bad Request"));
    }
    // Single use: the state is gone even if a later step fails.
    let mut c = state.redis.conn();
    let raw: Option<String> = redis::cmd("GETDEL")
        .arg(state_key(state, &s))
        .query_async(&mut c)
        .await
        .map_err(session_unavailable)?;
    let expired = || AppError::Unauthorized("Invalid or expired Google auth state".into());
    let payload: StatePayload = raw
        .and_then(|r| serde_json::from_str(&r).ok())
        .ok_or_else(expired)?;
    if payload.code_verifier.is_empty() {
        return Err(expired());
    }
    if let Some(expected) = payload.fingerprint_hash.as_deref() {
        if fingerprint(state, ip).as_deref() != Some(expected) {
            return Err(AppError::Unauthorized("Invalid Google auth state".into()));
        }
    }
    let access_token = match state
        .google
        .exchange_code(&code, &payload.code_verifier)
        .await
    {
        Ok(t) => t,
        Err(GoogleError::Disabled) => {
            return Err(AppError::unavailable("Google sign-in is not configured"))
        }
        Err(e) => {
            tracing::info!(error = %e, "google code exchange refused");
            return Err(AppError::Unauthorized("Invalid authorization code".into()));
        }
    };
    let info = state.google.user_info(&access_token).await.map_err(|e| {
        tracing::error!(error = %e, "google userinfo failed");
        AppError::unavailable("Google service unavailable")
    })?;
    if info.email.trim().is_empty() {
        return Err(AppError::bad_request("Email not found"));
    }
    if !info.verified_email {
        return Err(AppError::bad_request("Email from Google is not verified."));
    }
    if info.id.is_empty() || info.id.chars().count() > 255 {
        return Err(AppError::bad_request("Invalid Google ID"));
    }
    let email = fields::normalize_email(&info.email);
    if !fields::is_valid_email(&email) {
        return Err(AppError::bad_request("Email not found"));
    }
    let name = {
        let n = info.name.trim();
        let n = if n.is_empty() {
            email.split('@').next().unwrap_or_default()
        } else {
            n
        };
        let n: String = n.chars().filter(|c| !c.is_control()).take(100).collect();
        n.trim().to_string()
    };

    // Two rounds: a concurrent first sign-in of the same person may create
    // the account between our lookup and insert; the second round finds it.
    for _ in 0..2 {
        if let Some(account) = find_account(state, &info.id, &email).await? {
            service::check_sign_in_ban(state, &account).await?;
            if let Err(e) = repo::link_google(&state.db, account.id, &info.id, &email).await {
                tracing::warn!(error = %e, user = %account.id, "failed to link Google identity");
            }
            return service::finish_sign_in(state, &account, meta).await;
        }
        match create_account(state, &email, &name, &info.id, &info.picture).await? {
            Some(account) => return service::finish_sign_in(state, &account, meta).await,
            None => continue,
        }
    }
    Err(AppError::conflict("Email already registered"))
}

/// The active account of this Google subject, else of this email.
async fn find_account(
    state: &AppState,
    google_id: &str,
    email: &str,
) -> Result<Option<Account>, AppError> {
    if let Some(a) = repo::find_by_google_id(&state.db, google_id).await? {
        return Ok(Some(a));
    }
    Ok(repo::find_by_email(&state.db, email).await?)
}

/// A copied Google avatar, already in the public bucket.
struct StoredAvatar {
    file_name: String,
    original_name: String,
    size: i64,
    mime: &'static str,
}

/// First-time sign-up. `Ok(None)` when the email or Google id was taken
/// concurrently (the caller looks the account up again).
async fn create_account(
    state: &AppState,
    email: &str,
    name: &str,
    google_id: &str,
    picture: &str,
) -> Result<Option<Account>, AppError> {
    let avatar = if picture.is_empty() {
        None
    } else {
        copy_avatar(state, picture).await
    };
    let result = insert_account(state, email, name, google_id, avatar.as_ref()).await;
    if !matches!(result, Ok(Some(_))) {
        if let Some(a) = &avatar {
            if let Err(e) = state.storage.delete(Bucket::Public, &a.file_name).await {
                tracing::warn!(error = %e, "failed to delete unused avatar object");
            }
        }
    }
    result
}

async fn insert_account(
    state: &AppState,
    email: &str,
    name: &str,
    google_id: &str,
    avatar: Option<&StoredAvatar>,
) -> Result<Option<Account>, AppError> {
    let base = username_base(email);
    for attempt in 0..USERNAME_ATTEMPTS {
        let username = username_candidate(&base, attempt);
        if repo::username_taken(&state.db, &username).await? {
            continue;
        }
        let id = Uuid::now_v7();
        let mut tx = crate::infra::db::begin(&state.db).await?;
        let inserted = repo::insert_user(
            &mut *tx,
            &repo::NewUser {
                id,
                email,
                username: &username,
                full_name: name,
                password_hash: None,
            },
        )
        .await;
        match inserted {
            Ok(()) => {}
            Err(e) => match repo::unique_violation(&e).as_deref() {
                Some("users_username_key") => continue,
                Some(_) => return Ok(None),
                None => return Err(e.into()),
            },
        }
        if let Some(a) = avatar {
            let media_id = Uuid::now_v7();
            repo::insert_avatar_media(
                &mut *tx,
                &repo::NewAvatar {
                    id: media_id,
                    file_name: &a.file_name,
                    original_name: &a.original_name,
                    size: a.size,
                    mime_type: a.mime,
                    uploaded_by: id,
                },
            )
            .await?;
            repo::set_avatar(&mut *tx, id, media_id).await?;
        }
        if let Err(e) = repo::link_google(&mut *tx, id, google_id, email).await {
            return match repo::unique_violation(&e) {
                Some(_) => Ok(None),
                None => Err(e.into()),
            };
        }
        tx.commit().await?;
        return Ok(Some(Account {
            id,
            email: Some(email.to_string()),
            username: Some(username),
            full_name: Some(name.to_string()),
            password_hash: None,
            role: "user".into(),
            is_banned: false,
            banned_until: None,
            avatar_file: avatar.map(|a| a.file_name.clone()),
        }));
    }
    Err(AppError::conflict("Failed to generate unique username"))
}

/// The email's local part reduced to `[a-z0-9]`, at most 40 characters and
/// at least 3 (prefixed with `user`).
fn username_base(email: &str) -> String {
    let local = email.split('@').next().unwrap_or_default();
    let mut base: String = local
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(40)
        .collect();
    if base.len() < 3 {
        base = format!("user{base}");
    }
    base
}

/// `base` plus a random suffix: four digits first, six after a few clashes.
fn username_candidate(base: &str, attempt: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    if attempt < USERNAME_ATTEMPTS / 2 {
        format!("{base}{:04}", rng.gen_range(0..10_000u32))
    } else {
        format!("{base}{:06}", rng.gen_range(0..1_000_000u32))
    }
}

/// Downloads the Google picture and stores it in the public bucket. Any
/// failure just means "no avatar".
async fn copy_avatar(state: &AppState, url: &str) -> Option<StoredAvatar> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let bytes = download(state, url).await?;
    let (mime, ext) = sniff_image(&bytes)?;
    let original_name: String = parsed
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .unwrap_or("avatar")
        .chars()
        .take(255)
        .collect();
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let file_name = format!("{nanos}-{}{ext}", Uuid::new_v4());
    let size = bytes.len() as i64;
    if let Err(e) = state
        .storage
        .put(Bucket::Public, &file_name, bytes, mime)
        .await
    {
        tracing::warn!(error = %e, "google avatar upload failed; continuing without avatar");
        return None;
    }
    Some(StoredAvatar {
        file_name,
        original_name,
        size,
        mime,
    })
}

/// GET with up to four attempts on network errors and 5xx/429 answers.
async fn download(state: &AppState, url: &str) -> Option<Bytes> {
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=4 {
        match state
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(res) if res.status().is_success() => {
                if res
                    .content_length()
                    .is_some_and(|n| n > MAX_AVATAR_BYTES as u64)
                {
                    return None;
                }
                let body = res.bytes().await.ok()?;
                return (body.len() <= MAX_AVATAR_BYTES && !body.is_empty()).then_some(body);
            }
            Ok(res) if res.status().is_server_error() || res.status().as_u16() == 429 => {
                tracing::info!(status = %res.status(), attempt, "google avatar download failed");
            }
            Ok(res) => {
                tracing::info!(status = %res.status(), "google avatar not available");
                return None;
            }
            Err(e) => tracing::info!(error = %e, attempt, "google avatar download failed"),
        }
        if attempt < 4 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    None
}

/// The image type of `bytes` from its magic number (only web image formats
/// are accepted into the public bucket).
fn sniff_image(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", ".jpg"))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", ".png"))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(("image/gif", ".gif"))
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(("image/webp", ".webp"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_typeable() {
        assert_eq!(username_base("john_doe.x@gmail.com"), "johndoex");
        assert_eq!(username_base("ab@x.com"), "userab");
        assert_eq!(
            username_base(&format!("{}@x.com", "a".repeat(60))).len(),
            40
        );
        let c = username_candidate("johndoe", 0);
        assert!(crate::auth::fields::is_valid_username(&c), "{c}");
        assert_eq!(c.len(), 11);
        let c = username_candidate(&"a".repeat(40), USERNAME_ATTEMPTS - 1);
        assert!(crate::auth::fields::is_valid_username(&c), "{c}");
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff_image(b"\x89PNG\r\n\x1a\n....").unwrap().0,
            "image/png"
        );
        assert_eq!(
            sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap().0,
            "image/jpeg"
        );
        assert!(sniff_image(b"<html>").is_none());
    }
}
