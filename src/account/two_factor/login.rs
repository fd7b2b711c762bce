//! The second step of sign-in for accounts with 2FA: the password (or
//! Google) step stores a challenge in Redis instead of minting a token, and
//! `POST /api/auth/login/2fa` trades it plus a code for the usual sign-in
//! response. Only a hash of the challenge is stored.

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::dto::{LoginRequest, TwoFactorChallenge};
use super::service;
use crate::auth::device::ClientMeta;
use crate::auth::dto::AuthResponse;
use crate::auth::{repo as auth_repo, service as auth_service};
use crate::error::AppError;
use crate::state::AppState;

#[derive(Serialize, Deserialize)]
struct Pending {
    user_id: Uuid,
}

fn key(state: &AppState, challenge: &str) -> String {
    let digest = hex::encode(Sha256::digest(challenge.as_bytes()));
    state.redis.key(&format!("2fa_challenge:{digest}"))
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "2fa challenge store unavailable");
    crate::infra::metrics::redis_error("request");
    AppError::unavailable("Session service unavailable")
}

fn invalid_challenge() -> AppError {
    AppError::Unauthorized("Invalid or expired challenge".into())
}

/// Starts the second step for `user`: a fresh opaque challenge.
pub async fn challenge(state: &AppState, user: Uuid) -> Result<TwoFactorChallenge, AppError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let ttl = state.cfg.two_factor.challenge_ttl_secs;
    let body = serde_json::to_string(&Pending { user_id: user })
        .map_err(|e| AppError::Internal(e.into()))?;
    let mut c = state.redis.conn();
    let _: () = redis::cmd("SET")
        .arg(key(state, &challenge))
        .arg(body)
        .arg("EX")
        .arg(ttl)
        .query_async(&mut c)
        .await
        .map_err(unavailable)?;
    Ok(TwoFactorChallenge {
        two_factor_required: true,
        challenge,
        expires_in_seconds: ttl,
    })
}

async fn pending(state: &AppState, challenge: &str, take: bool) -> Result<Option<Uuid>, AppError> {
    let mut c = state.redis.conn();
    let raw: Option<String> = redis::cmd(if take { "GETDEL" } else { "GET" })
        .arg(key(state, challenge))
        .query_async(&mut c)
        .await
        .map_err(unavailable)?;
    Ok(raw
        .and_then(|r| serde_json::from_str::<Pending>(&r).ok())
        .map(|p| p.user_id))
}

/// `POST /api/auth/login/2fa`. A wrong, replayed or used-up code is 401
/// `Invalid code` (the challenge stays usable until it expires, within
/// the per-account failure budget); success spends the challenge.
pub async fn complete(
    state: &AppState,
    req: LoginRequest,
    meta: &ClientMeta,
) -> Result<AuthResponse, AppError> {
    service::ensure_available(state)?;
    let challenge = req.challenge.unwrap_or_default();
    let code = req.code.unwrap_or_default();
    if challenge.is_empty() || challenge.len() > 128 || code.trim().is_empty() || code.len() > 64 {
        return Err(AppError::bad_request("Bad Request"));
    }
    let user = pending(state, &challenge, false)
        .await?
        .ok_or_else(invalid_challenge)?;
    let Some(sealed) = service::active_secret(state, user).await? else {
        // 2FA was switched off since the password step: start again.
        pending(state, &challenge, true).await?;
        return Err(invalid_challenge());
    };
    if !service::check_code(state, user, &sealed, &code).await? {
        return Err(AppError::Unauthorized("Invalid code".into()));
    }
    // A parallel request may have completed the same challenge.
    if pending(state, &challenge, true).await? != Some(user) {
        return Err(invalid_challenge());
    }
    let account = auth_repo::find_by_id(&state.db, user)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    auth_service::check_sign_in_ban(state, &account).await?;
    auth_service::sign_in(state, &account, meta).await
}
