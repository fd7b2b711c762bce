//! HTTP routes of the messages feature (thin: parse, authorise, call the
//! service).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::HistoryParams;
use super::dto::{decode_edit, EditMessageRequest, SendMessageRequest};
use super::idempotency::{Claim, IdempotencyKey};
use super::service::{self, run_detached, HistoryQuery};
use crate::auth::principal::Caller;
use crate::chats::dto::QueryParams;
use crate::chats::routes::path_uuid;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody, PageBody};
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::messages::dto::MessageResponse;
use crate::state::AppState;

/// The messages routes with their middleware groups.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
            .routes(routes!(send))
            .routes(routes!(edit, delete))
            .routes(routes!(history)),
        state,
        rate_limit::GENERAL_READ,
    )
}

#[utoipa::path(post, path = "/api/messages", tag = "message", operation_id = "message_send",
    summary = "Send Message", description = "Post a message (text and/or attachments, optionally a reply); \
        members get `message.new`. Extension (issue 16): with an `Idempotency-Key` header, a retry by the \
        same user within 24 h returns the original message (same id, 200) and publishes nothing; \
        concurrent retries store exactly one message.",
    security(("BearerAuth" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Extension (issue 16): 1-128 printable \
        ASCII characters chosen by the client, unique per message it means to send. Echoed as \
        `idempotency_key` in the `message.new` sent to the sender's own sockets (not to other members).",
        nullable = false, min_length = 1, max_length = 128, pattern = "^[ -~]{1,128}$")),
    request_body = SendMessageRequest,
    responses(
        (status = 200, description = "The message (for a retry: the message the key first created)", body = DataBody<MessageResponse>),
        (status = 400, description = "Invalid fields, attachments or reply target; malformed or repeated `Idempotency-Key` (extension)", body = ErrorBody),
        (status = 403, description = "Not a member, blocked, or the other user is gone or banned", body = ErrorBody),
        (status = 404, description = "Chat not found or deleted", body = ErrorBody),
        (status = 409, description = "Extension (issue 16): the `Idempotency-Key` was already used with a different request; nothing was stored", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<LenientJson<SendMessageRequest>, AppError>,
) -> AppResult<Data<MessageResponse>> {
    let parsed = body.and_then(|LenientJson(req)| {
        let key = IdempotencyKey::from_headers(&headers)?;
        Ok((key, service::validate_send(req)?))
    });
    let (key, input) = match parsed {
        Ok(v) => v,
        // The account's verdict comes first, as on every other route (the
        // send reads the account in its own statement: `http::routing`).
        Err(e) => {
            caller.verify(&state.db).await?;
            return Err(e);
        }
    };
    let claim = key.map(|k| Claim::new(k, &input));
    let msg =
        run_detached(async move { service::send(&state, caller, input, claim).await }).await?;
    Ok(Data(msg))
}

#[utoipa::path(put, path = "/api/messages/{messageID}", tag = "message", operation_id = "message_edit",
    summary = "Edit Message", description = "Change the text (and attachments) of the caller's own recent message; \
        members get `message.update`.",
    security(("BearerAuth" = [])),
    params(("messageID" = uuid::Uuid, Path, description = "Message id")),
    request_body = EditMessageRequest,
    responses(
        (status = 200, description = "The edited message", body = DataBody<MessageResponse>),
        (status = 400, description = "Invalid Message ID or fields, deleted or too old to edit", body = ErrorBody),
        (status = 403, description = "Not the sender, or no longer a member", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn edit(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Data<MessageResponse>> {
    let message_id = path_uuid(raw_id, "Invalid Message ID")?;
    // An unreadable or oversize body is the envelope's 400 like every other
    // JSON body (a bare `Bytes` extractor answered a plain-text 413).
    let body = body.map_err(|_| AppError::bad_request("Bad Request"))?;
    let (req, has_key) = decode_edit(&body).ok_or_else(|| AppError::bad_request("Bad Request"))?;
    let input = service::validate_edit(req, has_key)?;
    let user = me.user_id;
    let msg =
        run_detached(async move { service::edit(&state, user, message_id, input).await }).await?;
    Ok(Data(msg))
}

#[utoipa::path(delete, path = "/api/messages/{messageID}", tag = "message", operation_id = "message_delete",
    summary = "Delete Message", description = "Soft-delete a message (own, or any as group owner/admin); \
        members get `message.delete`.",
    security(("BearerAuth" = [])),
    params(("messageID" = uuid::Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Deleted", body = EmptyBody),
        (status = 400, description = "Invalid Message ID, already deleted or a system message", body = ErrorBody),
        (status = 403, description = "Not allowed to delete it", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn delete(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let message_id = path_uuid(raw_id, "Invalid Message ID")?;
    let user = me.user_id;
    run_detached(async move { service::delete(&state, user, message_id).await }).await?;
    Ok(Empty)
}

#[utoipa::path(get, path = "/api/chats/{chatID}/messages", tag = "message", operation_id = "message_history",
    summary = "Get Messages", description = "A page of a chat's messages in ascending order: older or newer than \
        the cursor, or around a message.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id"), HistoryParams),
    responses(
        (status = 200, description = "A page of messages", body = PageBody<MessageResponse>),
        (status = 400, description = "Invalid Chat ID, cursor, limit, direction or around_message_id", body = ErrorBody),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "Chat or around message not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn history(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<MessageResponse>> {
    let chat_id = path_uuid(raw_id, "Invalid Chat ID")?;
    let q = HistoryQuery::parse(&QueryParams::parse(raw.as_deref()))?;
    service::history(&state, me.user_id, chat_id, q).await
}
