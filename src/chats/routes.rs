//! HTTP routes of the chats feature (thin: parse, authorise, call the
//! service).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::Router;

use super::dto::{ChatListResponse, ChatResponse, CreatePrivateChatRequest, QueryParams};
use super::service;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::messages::service::run_detached;

/// A UUID path parameter; any failure (including undecodable escapes, which
/// axum would answer in plain text) is a 400 with the endpoint's message.
pub fn path_uuid(
    path: Result<Path<String>, PathRejection>,
    message: &str,
) -> Result<uuid::Uuid, AppError> {
    match path {
        Ok(Path(raw)) => parse_uuid(&raw, message),
        Err(_) => Err(AppError::bad_request(message)),
    }
}

/// The chats routes with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    routing::authenticated(
        Router::new()
            .route("/api/chats", get(list))
            .route("/api/chats/private", post(create_private))
            .route("/api/chats/{id}", get(detail))
            .route("/api/chats/{id}/read", post(mark_read))
            .route("/api/chats/{id}/hide", post(hide)),
        state,
        rate_limit::GENERAL_READ,
    )
}

async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<ChatListResponse>> {
    service::list(&state, me.user_id, &QueryParams::parse(raw.as_deref())).await
}

async fn detail(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<ChatListResponse>> {
    let chat_id = path_uuid(raw_id, "Invalid Chat ID")?;
    Ok(Data(service::detail(&state, me.user_id, chat_id).await?))
}

async fn mark_read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let chat_id = path_uuid(raw_id, "Invalid Chat ID")?;
    let user = me.user_id;
    run_detached(async move { service::mark_read(&state, user, chat_id).await }).await?;
    Ok(Empty)
}

async fn hide(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let chat_id = path_uuid(raw_id, "Invalid Chat ID")?;
    let user = me.user_id;
    run_detached(async move { service::hide(&state, user, chat_id).await }).await?;
    Ok(Empty)
}

async fn create_private(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    LenientJson(req): LenientJson<CreatePrivateChatRequest>,
) -> AppResult<Data<ChatResponse>> {
    let target = req
        .target_user_id
        .as_deref()
        .and_then(|s| uuid::Uuid::try_parse(s.trim()).ok())
        .filter(|id| !id.is_nil())
        .ok_or_else(|| AppError::bad_request("Bad Request"))?;
    let user = me.user_id;
    let chat =
        run_detached(async move { service::create_private(&state, user, target).await }).await?;
    Ok(Data(chat))
}
