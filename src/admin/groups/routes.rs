//! HTTP routes of the admin group endpoints (behind `routing::admin`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::Router;
use uuid::Uuid;

use super::dto::{AdminGroupDetail, AdminGroupListItem, GroupMemberDto, ResetGroupInfoRequest};
use super::service;
use crate::app::AppState;
use crate::error::AppError;
use crate::http::auth::AdminUser;
use crate::http::json::decode_lenient;
use crate::http::pagination::QueryParams;
use crate::http::path::parse_uuid;
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;

/// The admin group routes with their middleware group.
pub fn routes(state: &AppState) -> Router<AppState> {
    routing::admin(
        Router::new()
            .route("/api/admin/groups", get(list))
            .route("/api/admin/groups/{chat_id}", get(detail).delete(dissolve))
            .route("/api/admin/groups/{chat_id}/members", get(members))
            .route("/api/admin/groups/{chat_id}/reset", post(reset)),
        state,
    )
}

fn chat_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_request("Invalid Chat ID"))?;
    parse_uuid(&raw, "Invalid Chat ID")
}

async fn list(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    RawQuery(query): RawQuery,
) -> Result<Page<AdminGroupListItem>, AppError> {
    service::list(&state, &QueryParams::parse(query.as_deref())).await
}

async fn detail(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<AdminGroupDetail>, AppError> {
    let chat = chat_id(path)?;
    service::detail(&state, chat).await.map(Data)
}

async fn members(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Page<GroupMemberDto>, AppError> {
    let chat = chat_id(path)?;
    service::members(&state, chat, &QueryParams::parse(query.as_deref())).await
}

async fn dissolve(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Empty, AppError> {
    let chat = chat_id(path)?;
    service::dissolve(&state, admin.user_id, chat).await?;
    Ok(Empty)
}

/// The path is checked first, then the body.
async fn reset(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Empty, AppError> {
    let chat = chat_id(path)?;
    let req: ResetGroupInfoRequest = body
        .ok()
        .and_then(|b| decode_lenient(&b))
        .ok_or_else(|| AppError::bad_request("Invalid request body"))?;
    service::reset(&state, admin.user_id, chat, req).await?;
    Ok(Empty)
}
