//! HTTP routes of reactions (extension): the route table is also the
//! OpenAPI of these paths.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{parse_emoji, ReactionsResponse};
use super::service;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, ErrorBody};
use crate::http::response::Data;
use crate::http::routing;
use crate::messages::service::run_detached;
use crate::state::AppState;

/// The tag every extension path carries (beside its feature's tag).
#[derive(OpenApi)]
#[openapi(tags((name = "extension", description = "Beyond the reference contract: reactions, \
    pinned messages, edit history, search (issue 17); sessions and devices, two-factor \
    authentication (issue 18); `/metrics` and the admin audit log (issue 19). \
    Clients of the reference can ignore them.")))]
pub struct ExtensionTag;

/// The routes with their middleware group (limited like the neighbouring
/// message endpoints).
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::with_openapi(ExtensionTag::openapi()).routes(routes!(add, remove)),
        state,
        rate_limit::GENERAL_READ,
    )
}

fn parse_path(
    raw: Result<Path<(String, String)>, PathRejection>,
) -> AppResult<(uuid::Uuid, &'static str)> {
    let Path((id, emoji)) = raw.map_err(|_| AppError::bad_request("Invalid Message ID"))?;
    let id = parse_uuid(&id, "Invalid Message ID")?;
    let emoji = parse_emoji(&emoji).ok_or_else(|| AppError::bad_request("Invalid emoji"))?;
    Ok((id, emoji))
}

#[utoipa::path(put, path = "/api/messages/{messageID}/reactions/{emoji}",
    tags = ["message", "extension"], operation_id = "message_reaction_add",
    summary = "Add Reaction", description = "Extension. Adds the caller's reaction (idempotent); members get \
        `message.reaction` when it was not there yet. Allowed to whoever may send in the chat.",
    security(("BearerAuth" = [])),
    params(("messageID" = uuid::Uuid, Path, description = "Message id"),
        ("emoji" = String, Path, description = "One emoji, percent-encoded (👍 = `%F0%9F%91%8D`)")),
    responses(
        (status = 200, description = "The message's reactions", body = DataBody<ReactionsResponse>),
        (status = 400, description = "Invalid Message ID or emoji, deleted message, or a 21st distinct emoji", body = ErrorBody),
        (status = 403, description = "Not a member, blocked, or the other user is gone or banned", body = ErrorBody),
        (status = 404, description = "Message not found, hidden, or its chat deleted", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn add(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw: Result<Path<(String, String)>, PathRejection>,
) -> AppResult<Data<ReactionsResponse>> {
    let (id, emoji) = parse_path(raw)?;
    let user = me.user_id;
    let r = run_detached(async move { service::set(&state, user, id, emoji, true).await }).await?;
    Ok(Data(r))
}

#[utoipa::path(delete, path = "/api/messages/{messageID}/reactions/{emoji}",
    tags = ["message", "extension"], operation_id = "message_reaction_remove",
    summary = "Remove Reaction", description = "Extension. Removes the caller's reaction (idempotent); members get \
        `message.reaction` when it was there.",
    security(("BearerAuth" = [])),
    params(("messageID" = uuid::Uuid, Path, description = "Message id"),
        ("emoji" = String, Path, description = "One emoji, percent-encoded")),
    responses(
        (status = 200, description = "The message's reactions", body = DataBody<ReactionsResponse>),
        (status = 400, description = "Invalid Message ID or emoji, or deleted message", body = ErrorBody),
        (status = 403, description = "Not a member, blocked, or the other user is gone or banned", body = ErrorBody),
        (status = 404, description = "Message not found, hidden, or its chat deleted", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn remove(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw: Result<Path<(String, String)>, PathRejection>,
) -> AppResult<Data<ReactionsResponse>> {
    let (id, emoji) = parse_path(raw)?;
    let user = me.user_id;
    let r = run_detached(async move { service::set(&state, user, id, emoji, false).await }).await?;
    Ok(Data(r))
}
