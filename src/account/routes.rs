//! HTTP routes of the account feature (thin handlers over [`super::service`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{ChangeEmailRequest, ChangePasswordRequest, DeleteAccountRequest};
use super::service;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::{decode_lenient, LenientJson};
use crate::http::openapi::AuthenticatedErrors;
use crate::http::rate_limit;
use crate::http::response::schema::{EmptyBody, ErrorBody};
use crate::http::response::Empty;
use crate::http::routing;
use crate::state::AppState;

/// The account routes with their middleware groups, and those of the
/// sessions and two-factor extensions.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
            .routes(routes!(change_password))
            .routes(routes!(change_email))
            .routes(routes!(delete_account)),
        state,
        rate_limit::GENERAL_READ,
    )
    .merge(super::sessions::routes::routes(state))
    .merge(super::two_factor::routes::routes(state))
}

#[utoipa::path(put, path = "/api/account/password", tag = "account", operation_id = "account_change_password",
    summary = "Change Password", description = "Set a new password (the old one is required when there is one); \
        every session is revoked.",
    security(("BearerAuth" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "Password changed", body = EmptyBody),
        (status = 400, description = "Invalid fields or wrong old password", body = ErrorBody),
        (status = 404, description = "The account no longer exists", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn change_password(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    LenientJson(req): LenientJson<ChangePasswordRequest>,
) -> AppResult<Empty> {
    service::change_password(&state, p.user_id, req).await?;
    Ok(Empty)
}

#[utoipa::path(put, path = "/api/account/email", tag = "account", operation_id = "account_change_email",
    summary = "Change Email", description = "Move the account to a new address verified by an OTP.",
    security(("BearerAuth" = [])),
    request_body = ChangeEmailRequest,
    responses(
        (status = 200, description = "Email changed", body = EmptyBody),
        (status = 400, description = "Invalid fields or OTP, or the same address", body = ErrorBody),
        (status = 404, description = "The account no longer exists", body = ErrorBody),
        (status = 409, description = "Email already registered", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn change_email(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    LenientJson(req): LenientJson<ChangeEmailRequest>,
) -> AppResult<Empty> {
    service::change_email(&state, p.user_id, req).await?;
    Ok(Empty)
}

/// The body is optional: an empty one means "no password given".
#[utoipa::path(delete, path = "/api/account", tag = "account", operation_id = "account_delete",
    summary = "Delete Account", description = "Soft-delete and anonymise the account; contacts get `user.deleted`. \
        The body may be empty for accounts without a password.",
    security(("BearerAuth" = [])),
    request_body = Option<DeleteAccountRequest>,
    responses(
        (status = 200, description = "Account deleted", body = EmptyBody),
        (status = 400, description = "Undecodable body, or missing or wrong password", body = ErrorBody),
        (status = 403, description = "The caller still owns a group", body = ErrorBody),
        (status = 404, description = "The account no longer exists", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn delete_account(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Empty> {
    let body = body.map_err(|_| AppError::bad_request("Bad Request"))?;
    let req = if body.is_empty() {
        DeleteAccountRequest::default()
    } else {
        decode_lenient(&body).ok_or_else(|| AppError::bad_request("Bad Request"))?
    };
    service::delete_account(&state, p.user_id, req).await?;
    Ok(Empty)
}
