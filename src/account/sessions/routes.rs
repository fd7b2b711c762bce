//! HTTP routes of sessions and devices (extension): thin handlers over
//! [`super::service`].

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::SessionDto;
use super::service;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody};
use crate::http::response::{Data, Empty};
use crate::http::routing;
use crate::state::AppState;

/// The session routes with their middleware group.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::new()
            .routes(routes!(list, revoke_others))
            .routes(routes!(revoke)),
        state,
        rate_limit::GENERAL_READ,
    )
}

#[utoipa::path(get, path = "/api/account/sessions", tags = ["account", "extension"],
    operation_id = "account_sessions_list", summary = "List Sessions",
    description = "Extension. The caller's live sign-in sessions (devices), newest first, at most 100. \
        Tokens issued before sessions existed are not listed.",
    security(("BearerAuth" = [])),
    responses(
        (status = 200, description = "The sessions", body = DataBody<Vec<SessionDto>>),
        AuthenticatedErrors
    ))]
async fn list(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
) -> AppResult<Data<Vec<SessionDto>>> {
    Ok(Data(service::list(&state, &p).await?))
}

#[utoipa::path(delete, path = "/api/account/sessions/{id}", tags = ["account", "extension"],
    operation_id = "account_session_revoke", summary = "Sign Out a Session",
    description = "Extension. Ends one session: its token is refused at once on every instance \
        (`Token has been revoked`) and its WebSockets close with 4001. Ending the current session is a logout.",
    security(("BearerAuth" = [])),
    params(("id" = uuid::Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "Signed out", body = EmptyBody),
        (status = 400, description = "Invalid session ID", body = ErrorBody),
        (status = 404, description = "Not a live session of the caller", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn revoke(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let Path(raw) = path.map_err(|_| AppError::bad_request("Invalid session ID"))?;
    let id = parse_uuid(&raw, "Invalid session ID")?;
    service::revoke(&state, &p, id).await?;
    Ok(Empty)
}

#[utoipa::path(delete, path = "/api/account/sessions", tags = ["account", "extension"],
    operation_id = "account_sessions_revoke_others", summary = "Sign Out Other Sessions",
    description = "Extension. Ends every session of the caller except the current one (their sockets close with 4001). \
        Tokens issued before sessions existed are not sessions: a password change ends those.",
    security(("BearerAuth" = [])),
    responses(
        (status = 200, description = "Signed out", body = EmptyBody),
        AuthenticatedErrors
    ))]
async fn revoke_others(State(state): State<AppState>, AuthUser(p): AuthUser) -> AppResult<Empty> {
    service::revoke_others(&state, &p).await?;
    Ok(Empty)
}
