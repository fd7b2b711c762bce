//! HTTP routes of the users feature (thin handlers over [`super::service`]).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::{BlockedListQuery, UserDto, UserSearchQuery};
use super::dto::{OwnProfile, ProfileView, UpdateProfileForm, UpdateProfileRequest, UserListItem};
use super::service;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::multipart::JsonOrForm;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody, PageBody};
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::media::form::{self, AVATAR_FORM_LIMIT};
use crate::media::service::Usage;
use crate::state::AppState;

/// The users routes with their middleware groups.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let general = OpenApiRouter::new()
        .routes(routes!(current))
        .routes(routes!(search))
        .routes(routes!(blocked))
        .routes(routes!(view))
        .routes(routes!(block))
        .routes(routes!(unblock));
    let management = OpenApiRouter::new().routes(routes!(update_profile));
    OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
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

#[utoipa::path(get, path = "/api/user/current", tag = "user", operation_id = "user_current",
    summary = "Get Current User", description = "The caller's own profile.",
    security(("BearerAuth" = [])),
    responses(
        (status = 200, description = "Own profile", body = DataBody<UserDto>),
        (status = 404, description = "The account no longer exists", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn current(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
) -> AppResult<Data<OwnProfile>> {
    Ok(Data(service::current(&state, p.user_id).await?))
}

#[utoipa::path(put, path = "/api/user/profile", tag = "user", operation_id = "user_update_profile",
    summary = "Update User Profile",
    description = "Change username, full name, bio or avatar; contacts get `user.update`. JSON names an uploaded avatar \
        (`avatar_media_id`); `multipart/form-data` (the earlier client generation) carries the avatar file itself.",
    security(("BearerAuth" = [])),
    request_body(content(
        (UpdateProfileRequest = "application/json"),
        (UpdateProfileForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "The updated profile", body = DataBody<UserDto>),
        (status = 400, description = "Invalid fields or avatar media; multipart: malformed form, avatar type or size", body = ErrorBody),
        (status = 404, description = "The account no longer exists", body = ErrorBody),
        (status = 409, description = "Username already taken", body = ErrorBody),
        (status = 413, description = "Multipart body over 5 MiB", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn update_profile(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    body: JsonOrForm<UpdateProfileRequest, AVATAR_FORM_LIMIT>,
) -> AppResult<Data<OwnProfile>> {
    let form = match body {
        JsonOrForm::Json(req) => {
            return Ok(Data(service::update_profile(&state, p.user_id, req).await?))
        }
        JsonOrForm::Form(form) => form::read(&state, form, "avatar", Usage::UserAvatar).await?,
    };
    let profile = form
        .run(p.user_id, |fields, avatar| async move {
            let req = UpdateProfileRequest::from_form(&fields, avatar.map(|m| m.id))?;
            service::update_profile(&state, p.user_id, req).await
        })
        .await?;
    Ok(Data(profile))
}

#[utoipa::path(get, path = "/api/users", tag = "user", operation_id = "user_search",
    summary = "Search Users", description = "Active users other than the caller, by name, ordered by full name.",
    security(("BearerAuth" = [])),
    params(UserSearchQuery),
    responses(
        (status = 200, description = "A page of users", body = PageBody<UserDto>),
        (status = 400, description = "Invalid query, cursor, limit or chat id", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn search(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    RawQuery(q): RawQuery,
) -> AppResult<Page<UserListItem>> {
    service::search(&state, p.user_id, q.as_deref()).await
}

#[utoipa::path(get, path = "/api/users/blocked", tag = "user", operation_id = "user_blocked",
    summary = "Get Blocked Users", description = "Users the caller has blocked.",
    security(("BearerAuth" = [])),
    params(BlockedListQuery),
    responses(
        (status = 200, description = "A page of blocked users", body = PageBody<UserDto>),
        (status = 400, description = "Invalid query, cursor or limit", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn blocked(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    RawQuery(q): RawQuery,
) -> AppResult<Page<UserListItem>> {
    service::blocked(&state, p.user_id, q.as_deref()).await
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "user", operation_id = "user_view",
    summary = "Get User Profile", description = "Another user's public profile.",
    security(("BearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The profile", body = DataBody<UserDto>),
        (status = 400, description = "Invalid User ID", body = ErrorBody),
        (status = 404, description = "User not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn view(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> AppResult<Data<ProfileView>> {
    let id = user_id(path)?;
    Ok(Data(service::view(&state, p.user_id, id).await?))
}

#[utoipa::path(post, path = "/api/users/{id}/block", tag = "user", operation_id = "user_block",
    summary = "Block a User", description = "Idempotent; a new block sends `user.block` to both users.",
    security(("BearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Blocked", body = EmptyBody),
        (status = 400, description = "Invalid User ID, or the caller", body = ErrorBody),
        (status = 404, description = "No such active user", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn block(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let id = user_id(path)?;
    service::block(&state, p.user_id, id).await?;
    Ok(Empty)
}

#[utoipa::path(post, path = "/api/users/{id}/unblock", tag = "user", operation_id = "user_unblock",
    summary = "Unblock a User", description = "Idempotent; a removed block sends `user.unblock` to both users.",
    security(("BearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Not blocked", body = EmptyBody),
        (status = 400, description = "Invalid User ID, or the caller", body = ErrorBody),
        AuthenticatedErrors
    ))]
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
