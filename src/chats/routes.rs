//! HTTP routes of the chats feature (thin: parse, authorise, call the
//! service).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::ChatListQuery;
use super::dto::{ChatListResponse, ChatResponse, CreatePrivateChatRequest, QueryParams};
use super::service;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody, PageBody};
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::messages::service::run_detached;
use crate::state::AppState;

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
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
            .routes(routes!(list))
            .routes(routes!(create_private))
            .routes(routes!(detail))
            .routes(routes!(mark_read))
            .routes(routes!(hide)),
        state,
        rate_limit::GENERAL_READ,
    )
}

#[utoipa::path(get, path = "/api/chats", tag = "chat", operation_id = "chat_list",
    summary = "Get Chat List", description = "The caller's chats, most recent activity first.",
    security(("BearerAuth" = [])),
    params(ChatListQuery),
    responses(
        (status = 200, description = "A page of chats", body = PageBody<ChatListResponse>),
        (status = 400, description = "Invalid query or limit", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<ChatListResponse>> {
    service::list(&state, me.user_id, &QueryParams::parse(raw.as_deref())).await
}

#[utoipa::path(get, path = "/api/chats/{id}", tag = "chat", operation_id = "chat_detail",
    summary = "Get Chat by ID", description = "A chat the caller belongs to, or a public group.",
    security(("BearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "Chat id")),
    responses(
        (status = 200, description = "The chat", body = DataBody<ChatListResponse>),
        (status = 400, description = "Invalid Chat ID", body = ErrorBody),
        (status = 404, description = "No such chat visible to the caller", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn detail(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<ChatListResponse>> {
    let chat_id = path_uuid(raw_id, "Invalid Chat ID")?;
    Ok(Data(service::detail(&state, me.user_id, chat_id).await?))
}

#[utoipa::path(post, path = "/api/chats/{id}/read", tag = "chat", operation_id = "chat_mark_read",
    summary = "Mark Chat as Read", description = "Reset the unread count; the chat's members get `chat.read`.",
    security(("BearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "Chat id")),
    responses(
        (status = 200, description = "Marked as read", body = EmptyBody),
        (status = 400, description = "Invalid Chat ID", body = ErrorBody),
        (status = 403, description = "The caller is not a member", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        AuthenticatedErrors
    ))]
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

#[utoipa::path(post, path = "/api/chats/{id}/hide", tag = "chat", operation_id = "chat_hide",
    summary = "Hide Chat", description = "Hide a private chat from the caller's list until the next message.",
    security(("BearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "Chat id")),
    responses(
        (status = 200, description = "Hidden", body = EmptyBody),
        (status = 400, description = "Invalid Chat ID, or not a private chat", body = ErrorBody),
        (status = 403, description = "The caller is not a participant", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        AuthenticatedErrors
    ))]
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

#[utoipa::path(post, path = "/api/chats/private", tag = "chat", operation_id = "chat_create_private",
    summary = "Create Private Chat", description = "Open a private chat with another user.",
    security(("BearerAuth" = [])),
    request_body = CreatePrivateChatRequest,
    responses(
        (status = 200, description = "The new chat", body = DataBody<ChatResponse>),
        (status = 400, description = "Invalid target, or the caller", body = ErrorBody),
        (status = 403, description = "The target is banned or blocked", body = ErrorBody),
        (status = 404, description = "One or both users not found", body = ErrorBody),
        (status = 409, description = "Private chat already exists", body = ErrorBody),
        AuthenticatedErrors
    ))]
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
