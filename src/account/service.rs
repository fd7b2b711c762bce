//! Rules of the account feature (spec §15): password change, email change
//! and account deletion. Each ends every login session of the user and
//! writes the revoke-all marker before its transaction commits, and closes
//! the user's sockets after. Deletion also removes two-factor enrolment.

use uuid::Uuid;

use super::dto::{
    ChangeEmailRequest, ChangePasswordRequest, DeleteAccountRequest, UserDeletedPayload,
};
use super::repo;
use crate::auth::otp::{self, Mode};
use crate::auth::{fields, passwords, sessions};
use crate::error::AppError;
use crate::realtime::event::{kinds, Event};
use crate::realtime::{recipients, CloseReason};
use crate::state::AppState;

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

fn not_found() -> AppError {
    AppError::not_found("Not Found")
}

/// `PUT /api/account/password`. Accounts without a password (Google-only)
/// set one without an old password.
pub async fn change_password(
    state: &AppState,
    me: Uuid,
    req: ChangePasswordRequest,
) -> Result<(), AppError> {
    let new = req.new_password.unwrap_or_default();
    let confirm = req.confirm_password.unwrap_or_default();
    if !fields::is_strong_password(&new) || confirm != new {
        return Err(bad_request());
    }
    let creds = repo::credentials(&state.db, me)
        .await?
        .ok_or_else(not_found)?;
    if let Some(hash) = creds.password_hash.as_deref() {
        let old = req.old_password.unwrap_or_default();
        if old.is_empty() {
            return Err(bad_request());
        }
        if !passwords::verify(&old, hash).await {
            return Err(AppError::bad_request("Invalid old password"));
        }
    }
    let new_hash = passwords::hash(&new).await?;
    let mut tx = crate::infra::db::begin(&state.db).await?;
    // The hash must still be the one just verified: if another request
    // changed it meanwhile, the old password given here is no longer valid.
    let current = repo::credentials_for_update(&mut *tx, me)
        .await?
        .ok_or_else(not_found)?;
    if current.password_hash != creds.password_hash {
        return Err(AppError::bad_request("Invalid old password"));
    }
    if !crate::auth::repo::set_password(&mut *tx, me, &new_hash).await? {
        return Err(not_found());
    }
    sessions::commit_revoking(tx, &state.redis, me, state.cfg.jwt_exp_secs).await?;
    state
        .bus
        .disconnect_user(me, CloseReason::SessionRevoked)
        .await;
    Ok(())
}

/// `PUT /api/account/email`: the code was sent to the NEW address (mode
/// `change_email`). The Google link is removed, since it vouched for the
/// old address. The code is only spent when the change happens, so a taken
/// address (409) does not burn it.
pub async fn change_email(
    state: &AppState,
    me: Uuid,
    req: ChangeEmailRequest,
) -> Result<(), AppError> {
    let email = fields::normalize_email(req.email.as_deref().unwrap_or_default());
    let code = req.code.unwrap_or_default();
    if !fields::is_valid_email(&email) || !fields::is_valid_otp_code(&code) {
        return Err(bad_request());
    }
    let creds = repo::credentials(&state.db, me)
        .await?
        .ok_or_else(not_found)?;
    if creds.password_hash.is_none() {
        return Err(AppError::bad_request(
            "You must set a password before changing your email address",
        ));
    }
    if creds.email.as_deref() == Some(email.as_str()) {
        return Err(bad_request());
    }
    let scope = otp::scope(&state.cfg.otp_secret, Some(&me.to_string()));
    let verified = otp::verify(state, Mode::ChangeEmail, &email, &scope, &code).await?;
    if repo::email_taken(&state.db, &email).await? {
        return Err(AppError::conflict("Email already registered"));
    }
    let mut tx = crate::infra::db::begin(&state.db).await?;
    match repo::set_email(&mut *tx, me, &email).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found()),
        Err(e) if crate::auth::repo::unique_violation(&e).is_some() => {
            return Err(AppError::conflict("Email already registered"))
        }
        Err(e) => return Err(e.into()),
    }
    repo::delete_identities(&mut *tx, me).await?;
    otp::consume_or_invalid(state, &verified).await?;
    sessions::commit_revoking(tx, &state.redis, me, state.cfg.jwt_exp_secs).await?;
    state
        .bus
        .disconnect_user(me, CloseReason::SessionRevoked)
        .await;
    Ok(())
}

/// `DELETE /api/account`: soft delete with anonymisation (§15.3). Owners of
/// live groups must hand them over or delete them first. Contacts get
/// `user.deleted`, then the user's sockets are closed.
pub async fn delete_account(
    state: &AppState,
    me: Uuid,
    req: DeleteAccountRequest,
) -> Result<(), AppError> {
    let creds = repo::credentials(&state.db, me)
        .await?
        .ok_or_else(not_found)?;
    if let Some(hash) = creds.password_hash.as_deref() {
        let password = req.password.unwrap_or_default();
        if password.is_empty() {
            return Err(AppError::bad_request(
                "Password is required to delete account",
            ));
        }
        if !passwords::verify(&password, hash).await {
            return Err(AppError::bad_request("Invalid password"));
        }
    }
    let owner_error = || {
        AppError::forbidden(
            "You must transfer ownership of your groups or delete them before deleting your account.",
        )
    };
    if repo::owns_live_group(&state.db, me).await? {
        return Err(owner_error());
    }
    let mut tx = crate::infra::db::begin(&state.db).await?;
    repo::credentials_for_update(&mut *tx, me)
        .await?
        .ok_or_else(not_found)?;
    // Checked again under the row lock: an ownership transfer may have landed.
    if repo::owns_live_group(&mut *tx, me).await? {
        return Err(owner_error());
    }
    repo::delete_identities(&mut *tx, me).await?;
    repo::drop_blocks(&mut *tx, me).await?;
    super::two_factor::repo::delete(&mut tx, me).await?;
    repo::anonymise(&mut *tx, me).await?;
    sessions::commit_revoking(tx, &state.redis, me, state.cfg.jwt_exp_secs).await?;

    match recipients::contacts(&state.db, me).await {
        Ok(contacts) => {
            let event = Event::new(
                kinds::USER_DELETED,
                UserDeletedPayload { user_id: me },
                None,
                Some(me),
            );
            state.bus.to_users(&contacts, &event).await;
        }
        Err(e) => tracing::error!(error = %e, user = %me, "contact lookup failed"),
    }
    state
        .bus
        .disconnect_user(me, CloseReason::AccountDeleted)
        .await;
    Ok(())
}
