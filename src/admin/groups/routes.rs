//! HTTP routes of the admin group endpoints (behind `routing::admin`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::docs::{AdminGroupListQuery, GroupMembersQuery};
use super::dto::{AdminGroupDetail, AdminGroupListItem, GroupMemberDto, ResetGroupInfoRequest};
use super::service;
use crate::error::AppError;
use crate::http::auth::AdminUser;
use crate::http::json::decode_lenient;
use crate::http::openapi::AdminErrors;
use crate::http::pagination::QueryParams;
use crate::http::path::parse_uuid;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody, PageBody};
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::state::AppState;

/// The admin group routes with their middleware group.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::admin(
        OpenApiRouter::new()
            .routes(routes!(list))
            .routes(routes!(detail, dissolve))
            .routes(routes!(members))
            .routes(routes!(reset)),
        state,
    )
}

fn chat_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_request("Invalid Chat ID"))?;
    parse_uuid(&raw, "Invalid Chat ID")
}

#[utoipa::path(get, path = "/api/admin/groups", tag = "admin", operation_id = "admin_group_list",
    summary = "List Groups", description = "Live groups.",
    security(("BearerAuth" = [])),
    params(AdminGroupListQuery),
    responses(
        (status = 200, description = "A page of groups", body = PageBody<AdminGroupListItem>),
        (status = 400, description = "Invalid limit or query", body = ErrorBody),
        AdminErrors
    ))]
async fn list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RawQuery(query): RawQuery,
) -> Result<Page<AdminGroupListItem>, AppError> {
    service::list(&state, admin.user_id, &QueryParams::parse(query.as_deref())).await
}

#[utoipa::path(get, path = "/api/admin/groups/{chatID}", tag = "admin", operation_id = "admin_group_detail",
    summary = "Get Group Detail", description = "A group (dissolved ones included) with its creator and totals.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "The group's chat id")),
    responses(
        (status = 200, description = "The group", body = DataBody<AdminGroupDetail>),
        (status = 400, description = "Invalid Chat ID", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
        AdminErrors
    ))]
async fn detail(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<AdminGroupDetail>, AppError> {
    let chat = chat_id(path)?;
    service::detail(&state, chat).await.map(Data)
}

#[utoipa::path(get, path = "/api/admin/groups/{chatID}/members", tag = "admin", operation_id = "admin_group_members",
    summary = "Get Group Members", description = "Members of a live group, in joining order.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "The group's chat id"), GroupMembersQuery),
    responses(
        (status = 200, description = "A page of members", body = PageBody<GroupMemberDto>),
        (status = 400, description = "Invalid Chat ID, query, limit or cursor", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        AdminErrors
    ))]
async fn members(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Page<GroupMemberDto>, AppError> {
    let chat = chat_id(path)?;
    service::members(
        &state,
        admin.user_id,
        chat,
        &QueryParams::parse(query.as_deref()),
    )
    .await
}

#[utoipa::path(delete, path = "/api/admin/groups/{chatID}", tag = "admin", operation_id = "admin_group_dissolve",
    summary = "Dissolve Group", description = "Delete a group for every member (`chat.delete`).",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "The group's chat id")),
    responses(
        (status = 200, description = "Dissolved", body = EmptyBody),
        (status = 400, description = "Invalid Chat ID", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        AdminErrors
    ))]
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
#[utoipa::path(post, path = "/api/admin/groups/{chatID}/reset", tag = "admin", operation_id = "admin_group_reset",
    summary = "Reset Group Info", description = "Reset a group's name, description and/or avatar; members get \
        system messages and `chat.update`.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "The group's chat id")),
    request_body = ResetGroupInfoRequest,
    responses(
        (status = 200, description = "Reset", body = EmptyBody),
        (status = 400, description = "Invalid Chat ID or request body", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        AdminErrors
    ))]
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
