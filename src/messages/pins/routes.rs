//! HTTP routes of pinned messages (extension): the route table is also the
//! OpenAPI of these paths.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{PinState, PinnedMessage};
use super::service;
use crate::chats::routes::path_uuid;
use crate::error::AppResult;
use crate::http::auth::AuthUser;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::pagination::{parse_limit, QueryParams};
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, ErrorBody, PageBody};
use crate::http::response::{Data, Page};
use crate::http::routing;
use crate::messages::service::run_detached;
use crate::state::AppState;

/// The routes with their middleware group (limited like the neighbouring
/// message endpoints).
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::new()
            .routes(routes!(pin, unpin))
            .routes(routes!(list)),
        state,
        rate_limit::GENERAL_READ,
    )
}

/// Query of `GET /api/chats/{chatID}/pins`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PinsParams {
    /// `meta.next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
}

#[utoipa::path(put, path = "/api/messages/{messageID}/pin",
    tags = ["message", "extension"], operation_id = "message_pin",
    summary = "Pin Message", description = "Extension. Pins a message (idempotent). Groups: the owner and \
        admins; private chats: both participants (not across a block). A new pin adds a `system_pin` \
        message to the timeline (`message.new`) and sends `message.pin` to the members; at most 50 pins \
        per chat.",
    security(("BearerAuth" = [])),
    params(("messageID" = uuid::Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message's pin state", body = DataBody<PinState>),
        (status = 400, description = "Invalid Message ID, deleted or system message, or a 51st pin", body = ErrorBody),
        (status = 403, description = "Not a member, not owner/admin of the group, blocked, or the other user is gone or banned", body = ErrorBody),
        (status = 404, description = "Message not found, hidden, or its chat deleted", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn pin(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<PinState>> {
    let id = path_uuid(raw_id, "Invalid Message ID")?;
    let user = me.user_id;
    let r = run_detached(async move { service::set(&state, user, id, true).await }).await?;
    Ok(Data(r))
}

#[utoipa::path(delete, path = "/api/messages/{messageID}/pin",
    tags = ["message", "extension"], operation_id = "message_unpin",
    summary = "Unpin Message", description = "Extension. Unpins a message (idempotent); members get \
        `message.pin` with `pinned: false` when it was pinned. Same permissions as pinning.",
    security(("BearerAuth" = [])),
    params(("messageID" = uuid::Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message's pin state", body = DataBody<PinState>),
        (status = 400, description = "Invalid Message ID, deleted or system message", body = ErrorBody),
        (status = 403, description = "Not a member, not owner/admin of the group, blocked, or the other user is gone or banned", body = ErrorBody),
        (status = 404, description = "Message not found, hidden, or its chat deleted", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn unpin(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<PinState>> {
    let id = path_uuid(raw_id, "Invalid Message ID")?;
    let user = me.user_id;
    let r = run_detached(async move { service::set(&state, user, id, false).await }).await?;
    Ok(Data(r))
}

#[utoipa::path(get, path = "/api/chats/{chatID}/pins",
    tags = ["message", "extension"], operation_id = "chat_pins",
    summary = "Pinned Messages", description = "Extension. A chat's pinned messages, newest pin first \
        (keyset-paginated with `meta.next_cursor`), each rendered as in the history plus `pinned_at` and \
        `pinned_by`. Deleted messages and messages the caller hid are not listed.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id"), PinsParams),
    responses(
        (status = 200, description = "A page of pinned messages", body = PageBody<PinnedMessage>),
        (status = 400, description = "Invalid Chat ID, cursor or limit", body = ErrorBody),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "Chat not found or deleted", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<PinnedMessage>> {
    let chat_id = path_uuid(raw_id, "Invalid Chat ID")?;
    let q = QueryParams::parse(raw.as_deref());
    let limit = parse_limit(q.get("limit"))?;
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(service::decode_cursor(raw)?),
    };
    service::list(&state, me.user_id, chat_id, after, limit).await
}
