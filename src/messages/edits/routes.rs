//! HTTP route of the edit history (extension).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{self, MessageVersion};
use crate::chats::routes::path_uuid;
use crate::error::AppResult;
use crate::http::auth::AuthUser;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, ErrorBody};
use crate::http::response::Data;
use crate::http::routing;
use crate::state::AppState;

/// The route with its middleware group (limited like history).
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::new().routes(routes!(history)),
        state,
        rate_limit::GENERAL_READ,
    )
}

#[utoipa::path(get, path = "/api/messages/{messageID}/history",
    tags = ["message", "extension"], operation_id = "message_edit_history",
    summary = "Edit History", description = "Extension. The earlier versions of a message, newest first \
        (the current version is not included; an unedited or deleted message gives `[]`). Visible to whoever \
        may read the message.",
    security(("BearerAuth" = [])),
    params(("messageID" = uuid::Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Earlier versions", body = DataBody<Vec<MessageVersion>>),
        (status = 400, description = "Invalid Message ID", body = ErrorBody),
        (status = 403, description = "Not a member of the message's chat", body = ErrorBody),
        (status = 404, description = "Message not found, hidden, or its chat deleted", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn history(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<Vec<MessageVersion>>> {
    let id = path_uuid(raw_id, "Invalid Message ID")?;
    Ok(Data(service::history(&state, me.user_id, id).await?))
}
