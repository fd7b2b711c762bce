//! HTTP routes of the account feature (thin handlers over [`super::service`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::routing::{delete, put};
use axum::Router;

use super::dto::{ChangeEmailRequest, ChangePasswordRequest, DeleteAccountRequest};
use super::service;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::{decode_lenient, LenientJson};
use crate::http::rate_limit;
use crate::http::response::Empty;
use crate::http::routing;

/// The account routes with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    routing::authenticated(
        Router::new()
            .route("/api/account/password", put(change_password))
            .route("/api/account/email", put(change_email))
            .route("/api/account", delete(delete_account)),
        state,
        rate_limit::GENERAL_READ,
    )
}

async fn change_password(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    LenientJson(req): LenientJson<ChangePasswordRequest>,
) -> AppResult<Empty> {
    service::change_password(&state, p.user_id, req).await?;
    Ok(Empty)
}

async fn change_email(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    LenientJson(req): LenientJson<ChangeEmailRequest>,
) -> AppResult<Empty> {
    service::change_email(&state, p.user_id, req).await?;
    Ok(Empty)
}

/// The body is optional: an empty one means "no password given".
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
