//! HTTP routes of the messages feature (thin: parse, authorise, call the
//! service).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post, put};
use axum::Router;

use super::dto::{decode_edit, SendMessageRequest};
use super::service::{self, run_detached, HistoryQuery};
use crate::app::AppState;
use crate::chats::dto::QueryParams;
use crate::chats::routes::path_uuid;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::rate_limit;
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::messages::dto::MessageResponse;

/// The messages routes with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    routing::authenticated(
        Router::new()
            .route("/api/messages", post(send))
            .route("/api/messages/{id}", put(edit).delete(delete))
            .route("/api/chats/{id}/messages", get(history)),
        state,
        rate_limit::GENERAL_READ,
    )
}

async fn send(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    LenientJson(req): LenientJson<SendMessageRequest>,
) -> AppResult<Data<MessageResponse>> {
    let input = service::validate_send(req)?;
    let user = me.user_id;
    let msg = run_detached(async move { service::send(&state, user, input).await }).await?;
    Ok(Data(msg))
}

async fn edit(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> AppResult<Data<MessageResponse>> {
    let message_id = path_uuid(raw_id, "Invalid Message ID")?;
    let (req, has_key) = decode_edit(&body).ok_or_else(|| AppError::bad_request("Bad Request"))?;
    let input = service::validate_edit(req, has_key)?;
    let user = me.user_id;
    let msg =
        run_detached(async move { service::edit(&state, user, message_id, input).await }).await?;
    Ok(Data(msg))
}

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
