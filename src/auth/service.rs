//! Rules of sign-in, sign-up, password reset, OTP requests and logout
//! (spec §9, §10, §12, §14).

use std::net::IpAddr;

use chrono::{SecondsFormat, Utc};
use uuid::Uuid;

use super::device::ClientMeta;
use super::dto::{
    AuthResponse, AuthUser, LoginOutcome, LoginRequest, RegisterRequest, ResetPasswordRequest,
    SendOtpRequest,
};
use super::otp::{self, Mode};
use super::principal::Principal;
use super::repo::{self, Account};
use super::{fields, passwords, sessions, throttle, tokens};
use crate::account::{sessions as login_sessions, two_factor};
use crate::error::AppError;
use crate::realtime::CloseReason;
use crate::state::AppState;
use crate::users::dto::avatar_url;

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

/// Turnstile check (§14): a refused token is 400 `Bad Request`; an
/// unreachable or failing Cloudflare is 503, never a 500.
pub async fn check_captcha(
    state: &AppState,
    token: &str,
    ip: Option<IpAddr>,
) -> Result<(), AppError> {
    match state.captcha.verify(token, ip).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(bad_request()),
        Err(e) => {
            tracing::warn!(error = %e, "captcha verification unavailable");
            Err(AppError::unavailable("Captcha service unavailable"))
        }
    }
}

/// The OTP limiter scope of a public request (its client IP).
pub fn ip_scope(state: &AppState, ip: Option<IpAddr>) -> String {
    otp::scope(&state.cfg.otp_secret, ip.map(|i| i.to_string()).as_deref())
}

/// Signs `account` in: a new login session for this device, a fresh
/// token bound to it and to the current revoke-all marker, and the
/// response body.
pub async fn sign_in(
    state: &AppState,
    account: &Account,
    meta: &ClientMeta,
) -> Result<AuthResponse, AppError> {
    let marker = sessions::current_marker(&state.redis, account.id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "session store unavailable");
            AppError::unavailable("Session service unavailable")
        })?;
    let sid = login_sessions::service::create(state, account.id, meta).await?;
    let token = tokens::issue_session(
        &state.cfg.jwt_secret,
        state.cfg.jwt_exp_secs,
        account.id,
        marker.as_deref(),
        sid,
    )
    .map_err(|e| AppError::Internal(e.into()))?;
    Ok(AuthResponse {
        token,
        user: AuthUser {
            id: account.id,
            email: account.email.clone().unwrap_or_default(),
            username: account.username.clone().unwrap_or_default(),
            full_name: account.full_name.clone().unwrap_or_default(),
            avatar: avatar_url(state.storage.as_ref(), account.avatar_file.as_deref()),
            role: account.role.clone(),
        },
    })
}

/// The ban rule of login and Google sign-in (§12.1 step 6): an active ban is
/// 403, an expired one is lifted and sign-in proceeds.
pub async fn check_sign_in_ban(state: &AppState, account: &Account) -> Result<(), AppError> {
    if !account.is_banned {
        return Ok(());
    }
    match account.banned_until {
        None => Err(AppError::forbidden("Account is permanently banned")),
        Some(until) if until > Utc::now() => Err(AppError::forbidden(format!(
            "Account suspended until {}",
            until.to_rfc3339_opts(SecondsFormat::Secs, true)
        ))),
        Some(_) => {
            repo::lift_expired_ban(&state.db, account.id).await?;
            Ok(())
        }
    }
}

/// `POST /api/auth/login`. As in the reference, the password must pass the
/// password rule (§9.3) before any lookup: one that cannot be a valid
/// password is a 400 `Bad Request`; only a well-formed wrong one is a 401.
/// Attempts per account are throttled ([`throttle`]): 429 while a delay
/// runs. An account with two-factor authentication gets a challenge
/// instead of a token.
pub async fn login(
    state: &AppState,
    req: LoginRequest,
    meta: &ClientMeta,
) -> Result<LoginOutcome, AppError> {
    let ip = meta.ip;
    let email = fields::normalize_email(req.email.as_deref().unwrap_or_default());
    let password = req.password.unwrap_or_default();
    let captcha = req.captcha_token.unwrap_or_default();
    if !fields::is_valid_email(&email)
        || !fields::is_strong_password(&password)
        || captcha.is_empty()
    {
        return Err(bad_request());
    }
    check_captcha(state, &captcha, ip).await?;
    throttle::begin_attempt(state, &email).await?;
    let account = repo::find_by_email(&state.db, &email).await?;
    let Some(account) = account else {
        // Same cost as a real check, so response times do not reveal accounts.
        passwords::verify_dummy(&password).await;
        return Err(AppError::unauthorized());
    };
    let Some(hash) = account.password_hash.as_deref() else {
        passwords::verify_dummy(&password).await;
        return Err(AppError::unauthorized());
    };
    if !passwords::verify(&password, hash).await {
        return Err(AppError::unauthorized());
    }
    throttle::succeeded(state, &email).await;
    check_sign_in_ban(state, &account).await?;
    finish_sign_in(state, &account, meta).await
}

/// The end of a first sign-in step (password or Google): a token, or the
/// second-factor challenge when the account has 2FA.
pub async fn finish_sign_in(
    state: &AppState,
    account: &Account,
    meta: &ClientMeta,
) -> Result<LoginOutcome, AppError> {
    if two_factor::service::required(state, account.id).await? {
        let challenge = two_factor::login::challenge(state, account.id).await?;
        return Ok(LoginOutcome::TwoFactor(challenge));
    }
    Ok(LoginOutcome::SignedIn(sign_in(state, account, meta).await?))
}

/// `POST /api/auth/register`. The OTP is checked first but only spent when
/// the account is really created, so a taken username does not burn it.
pub async fn register(
    state: &AppState,
    req: RegisterRequest,
    meta: &ClientMeta,
) -> Result<AuthResponse, AppError> {
    let ip = meta.ip;
    let email = fields::normalize_email(req.email.as_deref().unwrap_or_default());
    let username = fields::normalize_username(req.username.as_deref().unwrap_or_default());
    let full_name = fields::full_name(req.full_name.as_deref().unwrap_or_default());
    let code = req.code.unwrap_or_default();
    let password = req.password.unwrap_or_default();
    let captcha = req.captcha_token.unwrap_or_default();
    let Some(full_name) = full_name else {
        return Err(bad_request());
    };
    if !fields::is_valid_email(&email)
        || !fields::is_valid_username(&username)
        || !fields::is_valid_otp_code(&code)
        || !fields::is_strong_password(&password)
        || captcha.is_empty()
    {
        return Err(bad_request());
    }
    check_captcha(state, &captcha, ip).await?;
    let verified = otp::verify(state, Mode::Register, &email, &ip_scope(state, ip), &code).await?;
    let (email_taken, username_taken) = repo::taken(&state.db, &email, &username).await?;
    if email_taken {
        return Err(AppError::conflict("Email already registered"));
    }
    if username_taken {
        return Err(AppError::conflict("Username already taken"));
    }
    let hash = passwords::hash(&password).await?;
    let id = Uuid::now_v7();
    let mut tx = crate::infra::db::begin(&state.db).await?;
    let inserted = repo::insert_user(
        &mut *tx,
        &repo::NewUser {
            id,
            email: &email,
            username: &username,
            full_name: &full_name,
            password_hash: Some(&hash),
        },
    )
    .await;
    if let Err(e) = inserted {
        return Err(match repo::unique_violation(&e).as_deref() {
            Some("users_email_key") => AppError::conflict("Email already registered"),
            Some("users_username_key") => AppError::conflict("Username already taken"),
            Some(_) => AppError::conflict("Email or Username already taken"),
            None => e.into(),
        });
    }
    otp::consume_or_invalid(state, &verified).await?;
    tx.commit().await?;
    let account = Account {
        id,
        email: Some(email),
        username: Some(username),
        full_name: Some(full_name),
        password_hash: None,
        role: "user".into(),
        is_banned: false,
        banned_until: None,
        avatar_file: None,
    };
    sign_in(state, &account, meta).await
}

/// `POST /api/auth/reset-password`: new password, every session revoked.
pub async fn reset_password(
    state: &AppState,
    req: ResetPasswordRequest,
    ip: Option<IpAddr>,
) -> Result<(), AppError> {
    let email = fields::normalize_email(req.email.as_deref().unwrap_or_default());
    let code = req.code.unwrap_or_default();
    let password = req.password.unwrap_or_default();
    let confirm = req.confirm_password.unwrap_or_default();
    let captcha = req.captcha_token.unwrap_or_default();
    if !fields::is_valid_email(&email)
        || !fields::is_valid_otp_code(&code)
        || !fields::is_strong_password(&password)
        || confirm != password
        || captcha.is_empty()
    {
        return Err(bad_request());
    }
    check_captcha(state, &captcha, ip).await?;
    let verified = otp::verify(state, Mode::Reset, &email, &ip_scope(state, ip), &code).await?;
    let Some(account) = repo::find_by_email(&state.db, &email).await? else {
        return Err(AppError::not_found("Not Found"));
    };
    let hash = passwords::hash(&password).await?;
    let mut tx = crate::infra::db::begin(&state.db).await?;
    if !repo::set_password(&mut *tx, account.id, &hash).await? {
        return Err(AppError::not_found("Not Found"));
    }
    otp::consume_or_invalid(state, &verified).await?;
    sessions::commit_revoking(tx, &state.redis, account.id, state.cfg.jwt_exp_secs).await?;
    state
        .bus
        .disconnect_user(account.id, CloseReason::SessionRevoked)
        .await;
    Ok(())
}

/// `POST /api/otp/send`. Always 200 on valid input: whether the address has
/// an account is never revealed (codes are silently not sent when the mode
/// does not fit the address).
pub async fn send_otp(
    state: &AppState,
    req: SendOtpRequest,
    ip: Option<IpAddr>,
) -> Result<(), AppError> {
    let email = fields::normalize_email(req.email.as_deref().unwrap_or_default());
    let mode = req.mode.as_deref().and_then(Mode::parse);
    let captcha = req.captcha_token.unwrap_or_default();
    let Some(mode) = mode else {
        return Err(bad_request());
    };
    if !fields::is_valid_email(&email) || captcha.is_empty() {
        return Err(bad_request());
    }
    check_captcha(state, &captcha, ip).await?;
    otp::check_send_limits(state, mode, &email, &ip_scope(state, ip)).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
        .bind(&email)
        .fetch_one(&state.db)
        .await?;
    let suppressed = match mode {
        Mode::Register | Mode::ChangeEmail => exists,
        Mode::Reset => !exists,
    };
    if suppressed {
        return Ok(());
    }
    otp::issue(state, mode, &email).await
}

/// `POST /api/auth/logout`: this token stops working at once, its login
/// session ends (it leaves the session list) and the sockets it opened are
/// closed on every instance. The user's other sessions (other devices)
/// keep their sockets, unlike the reference.
pub async fn logout(state: &AppState, principal: &Principal) -> Result<(), AppError> {
    login_sessions::service::end_current(state, principal).await?;
    let now = Utc::now().timestamp();
    let ttl = match principal.claims.exp {
        Some(exp) if exp > now => exp - now,
        _ => state.cfg.jwt_exp_secs,
    };
    if let Err(e) = sessions::blacklist(&state.redis, &principal.token, ttl).await {
        tracing::error!(error = %e, "cannot blacklist token");
        return Err(AppError::unavailable("Session service unavailable"));
    }
    state
        .bus
        .disconnect_session(
            principal.user_id,
            &principal.socket_key(),
            CloseReason::SessionRevoked,
        )
        .await;
    Ok(())
}
