//! HTTP routes of the users feature (thin handlers over [`super::service`]).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post, put};
use axum::Router;

use super::dto::{OwnProfile, ProfileView, UpdateProfileRequest, UserListItem};
use super::service;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;

/// The users routes with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    let general = Router::new()
        .route("/api/user/current", get(current))
        .route("/api/users", get(search))
        .route("/api/users/blocked", get(blocked))
        .route("/api/users/{id}", get(view))
        .route("/api/users/{id}/block", post(block))
        .route("/api/users/{id}/unblock", post(unblock));
    let management = Router::new().route("/api/user/profile", put(update_profile));
    Router::new()
        .merge(routing::authenticated(
            general,
            state,
            rate_limit::GENERAL_READ,
        ))
        .merge(routing::authenticated(
            management,
            state,
            rate_limit::USER_MANAGEMENT,
        ))
}

async fn current(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
) -> AppResult<Data<OwnProfile>> {
    Ok(Data(service::current(&state, p.user_id).await?))
}

async fn update_profile(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    LenientJson(req): LenientJson<UpdateProfileRequest>,
) -> AppResult<Data<OwnProfile>> {
    Ok(Data(service::update_profile(&state, p.user_id, req).await?))
}

async fn search(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    RawQuery(q): RawQuery,
) -> AppResult<Page<UserListItem>> {
    service::search(&state, p.user_id, q.as_deref()).await
}

async fn blocked(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    RawQuery(q): RawQuery,
) -> AppResult<Page<UserListItem>> {
    service::blocked(&state, p.user_id, q.as_deref()).await
}

async fn view(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> AppResult<Data<ProfileView>> {
    let id = user_id(path)?;
    Ok(Data(service::view(&state, p.user_id, id).await?))
}

async fn block(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let id = user_id(path)?;
    service::block(&state, p.user_id, id).await?;
    Ok(Empty)
}

async fn unblock(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let id = user_id(path)?;
    service::unblock(&state, p.user_id, id).await?;
    Ok(Empty)
}

/// The `{id}` path segment, with the contract's 400 for anything unusable.
fn user_id(path: Result<Path<String>, PathRejection>) -> Result<uuid::Uuid, AppError> {
    let Ok(Path(raw)) = path else {
        return Err(AppError::bad_request("Invalid User ID"));
    };
    parse_uuid(&raw, "Invalid User ID")
}
