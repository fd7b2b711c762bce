//! Rules of 2FA enrolment: setup (a pending secret), enable (first code,
//! recovery codes), disable (password and a code), and the code check
//! shared with sign-in.

use uuid::Uuid;

use super::codes;
use super::dto::{DisableRequest, EnableRequest, EnableResponse, SetupResponse};
use super::{repo, throttle};
use crate::auth::passwords;
use crate::error::AppError;
use crate::state::AppState;

/// Longest code accepted (a recovery code with some spaces).
const MAX_CODE: usize = 64;

fn invalid_code() -> AppError {
    AppError::bad_request("Invalid code")
}

fn internal(what: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("{what}"))
}

/// 403 when the operator switched 2FA off (`TWO_FACTOR_ENABLED=false`).
pub fn ensure_available(state: &AppState) -> Result<(), AppError> {
    if state.cfg.two_factor.enabled {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "Two-factor authentication is disabled on this server",
        ))
    }
}

fn key(state: &AppState) -> &[u8; 32] {
    &state.cfg.two_factor.key.0
}

/// The label authenticator apps show: the email, else the username.
async fn account_label(state: &AppState, me: Uuid) -> Result<String, AppError> {
    let label: Option<Option<String>> = sqlx::query_scalar(
        "SELECT COALESCE(email, username) FROM users WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(me)
    .fetch_optional(&state.db)
    .await?;
    label
        .ok_or_else(|| AppError::not_found("Not Found"))
        .map(Option::unwrap_or_default)
}

/// `POST /api/account/2fa/setup`: a new pending secret (nothing changes
/// for sign-in until `enable`). 409 when 2FA is already on.
pub async fn setup(state: &AppState, me: Uuid) -> Result<SetupResponse, AppError> {
    ensure_available(state)?;
    let label = account_label(state, me).await?;
    let secret = codes::new_secret();
    let totp = codes::totp(&secret, &label).ok_or_else(|| internal("totp build failed"))?;
    let otpauth_uri = totp
        .to_url()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("otpauth uri: {e}")))?;
    let sealed = codes::seal(key(state), me, &secret).ok_or_else(|| internal("seal failed"))?;
    if !repo::put_pending(&state.db, me, &sealed).await? {
        return Err(already_enabled());
    }
    Ok(SetupResponse {
        secret: codes::secret_text(&secret),
        otpauth_uri,
    })
}

fn already_enabled() -> AppError {
    AppError::conflict("Two-factor authentication is already enabled")
}

/// `POST /api/account/2fa/enable`: the first code proves the app has the
/// secret; it counts as used. Returns the recovery codes (shown once).
pub async fn enable(
    state: &AppState,
    me: Uuid,
    req: EnableRequest,
) -> Result<EnableResponse, AppError> {
    ensure_available(state)?;
    let code = req.code.unwrap_or_default();
    let code = code.trim();
    if !codes::is_totp_code(code) {
        return Err(AppError::bad_request("Bad Request"));
    }
    let row = repo::get(&state.db, me)
        .await?
        .ok_or_else(|| AppError::bad_request("Two-factor setup has not been started"))?;
    if row.enabled_at.is_some() {
        return Err(already_enabled());
    }
    throttle::begin_attempt(state, me).await?;
    let secret = codes::open(key(state), me, &row.secret_enc)
        .ok_or_else(|| internal("cannot open the pending TOTP secret"))?;
    let step = codes::matching_step(&secret, code).ok_or_else(invalid_code)?;
    let recovery = codes::new_recovery_codes();
    let hashes: Vec<String> = recovery
        .iter()
        .map(|c| codes::recovery_hash(key(state), me, &codes::normalize_recovery(c)))
        .collect();
    let mut tx = crate::infra::db::begin(&state.db).await?;
    if !repo::enable(&mut tx, me, &row.secret_enc, step).await? {
        // Enabled or set up again by a parallel request.
        return Err(AppError::conflict(
            "Two-factor setup changed; start it again",
        ));
    }
    repo::replace_recovery_codes(&mut tx, me, &hashes).await?;
    tx.commit().await?;
    throttle::succeeded(state, me).await;
    Ok(EnableResponse {
        recovery_codes: recovery,
    })
}

/// Checks a second-factor `code` of `user` (whose 2FA is on) and spends
/// it: a TOTP of a later step than any accepted before, or an unused
/// recovery code. Counts against the failure throttle.
pub async fn check_code(
    state: &AppState,
    user: Uuid,
    sealed: &[u8],
    code: &str,
) -> Result<bool, AppError> {
    throttle::begin_attempt(state, user).await?;
    let code = code.trim();
    let ok = if codes::is_totp_code(code) {
        let secret = codes::open(key(state), user, sealed)
            .ok_or_else(|| internal("cannot open the TOTP secret"))?;
        match codes::matching_step(&secret, code) {
            Some(step) => repo::accept_step(&state.db, user, step).await?,
            None => false,
        }
    } else {
        let normalized = codes::normalize_recovery(code);
        !normalized.is_empty()
            && repo::use_recovery_code(
                &state.db,
                user,
                &codes::recovery_hash(key(state), user, &normalized),
            )
            .await?
    };
    if ok {
        throttle::succeeded(state, user).await;
    }
    Ok(ok)
}

/// `POST /api/account/2fa/disable`: the password (when the account has
/// one) and a TOTP or recovery code.
pub async fn disable(state: &AppState, me: Uuid, req: DisableRequest) -> Result<(), AppError> {
    ensure_available(state)?;
    let code = req.code.unwrap_or_default();
    if code.trim().is_empty() || code.len() > MAX_CODE {
        return Err(AppError::bad_request("Bad Request"));
    }
    let creds = crate::account::repo::credentials(&state.db, me)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    let row = repo::get(&state.db, me)
        .await?
        .filter(|r| r.enabled_at.is_some())
        .ok_or_else(|| AppError::bad_request("Two-factor authentication is not enabled"))?;
    if let Some(hash) = creds.password_hash.as_deref() {
        let password = req.password.unwrap_or_default();
        if password.is_empty() {
            return Err(AppError::bad_request("Bad Request"));
        }
        if !passwords::verify(&password, hash).await {
            return Err(AppError::bad_request("Invalid password"));
        }
    }
    if !check_code(state, me, &row.secret_enc, &code).await? {
        return Err(invalid_code());
    }
    let mut tx = crate::infra::db::begin(&state.db).await?;
    repo::delete(&mut tx, me).await?;
    tx.commit().await?;
    Ok(())
}

/// The sealed secret when 2FA is on for `user` (and for this server).
pub async fn active_secret(state: &AppState, user: Uuid) -> Result<Option<Vec<u8>>, AppError> {
    if !state.cfg.two_factor.enabled {
        return Ok(None);
    }
    Ok(repo::get(&state.db, user)
        .await?
        .filter(|r| r.enabled_at.is_some())
        .map(|r| r.secret_enc))
}

/// Whether sign-in of `user` needs a second factor.
pub async fn required(state: &AppState, user: Uuid) -> Result<bool, AppError> {
    Ok(state.cfg.two_factor.enabled && repo::is_enabled(&state.db, user).await?)
}
