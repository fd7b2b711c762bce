//! HTTP routes of the admin console (users part): dashboard, user list and
//! detail, ban, unban, reset. All behind `routing::admin` (auth, admin
//! guard, `admin_action` bucket).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::docs::AdminUserListQuery;
use super::dto::{
    AdminUserDetail, AdminUserListItem, BanUserRequest, DashboardStats, ResetUserInfoRequest,
};
use super::service;
use crate::error::AppError;
use crate::http::auth::AdminUser;
use crate::http::json::{decode_lenient, LenientJson};
use crate::http::openapi::AdminErrors;
use crate::http::pagination::QueryParams;
use crate::http::path::parse_uuid;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody, PageBody};
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::state::AppState;

/// The admin routes with their middleware group.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::admin(
        OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
            .routes(routes!(dashboard))
            .routes(routes!(list_users))
            .routes(routes!(ban))
            .routes(routes!(user_detail))
            .routes(routes!(unban))
            .routes(routes!(reset)),
        state,
    )
    .merge(super::groups::routes::routes(state))
    .merge(super::audit::routes::routes(state))
}

fn user_id(path: Result<Path<String>, PathRejection>, message: &str) -> Result<Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_request(message))?;
    parse_uuid(&raw, message)
}

#[utoipa::path(get, path = "/api/admin/dashboard", tag = "admin", operation_id = "admin_dashboard",
    summary = "Get Dashboard Stats", description = "Totals of users, groups, messages and pending reports.",
    security(("BearerAuth" = [])),
    responses(
        (status = 200, description = "The totals", body = DataBody<DashboardStats>),
        AdminErrors
    ))]
async fn dashboard(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> Result<Data<DashboardStats>, AppError> {
    service::dashboard(&state, admin.user_id).await.map(Data)
}

#[utoipa::path(get, path = "/api/admin/users", tag = "admin", operation_id = "admin_user_list",
    summary = "Get Users List", description = "Users, newest first.",
    security(("BearerAuth" = [])),
    params(AdminUserListQuery),
    responses(
        (status = 200, description = "A page of users", body = PageBody<AdminUserListItem>),
        (status = 400, description = "Invalid query, role or limit", body = ErrorBody),
        AdminErrors
    ))]
async fn list_users(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RawQuery(query): RawQuery,
) -> Result<Page<AdminUserListItem>, AppError> {
    service::list_users(&state, admin.user_id, &QueryParams::parse(query.as_deref())).await
}

#[utoipa::path(get, path = "/api/admin/users/{userID}", tag = "admin", operation_id = "admin_user_detail",
    summary = "Get User Detail", description = "A user with ban state and activity totals.",
    security(("BearerAuth" = [])),
    params(("userID" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = DataBody<AdminUserDetail>),
        (status = 400, description = "Invalid user ID", body = ErrorBody),
        (status = 404, description = "User not found", body = ErrorBody),
        AdminErrors
    ))]
async fn user_detail(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<AdminUserDetail>, AppError> {
    let id = user_id(path, "Invalid user ID")?;
    service::user_detail(&state, id).await.map(Data)
}

#[utoipa::path(post, path = "/api/admin/users/ban", tag = "admin", operation_id = "admin_user_ban",
    summary = "Ban User", description = "Ban a user (for some hours or for good); their sessions end at once.",
    security(("BearerAuth" = [])),
    request_body = BanUserRequest,
    responses(
        (status = 200, description = "Banned", body = EmptyBody),
        (status = 400, description = "Invalid target, reason or duration", body = ErrorBody),
        (status = 404, description = "User not found", body = ErrorBody),
        AdminErrors
    ))]
async fn ban(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    LenientJson(req): LenientJson<BanUserRequest>,
) -> Result<Empty, AppError> {
    service::ban(&state, admin.user_id, req).await?;
    Ok(Empty)
}

#[utoipa::path(post, path = "/api/admin/users/{userID}/unban", tag = "admin", operation_id = "admin_user_unban",
    summary = "Unban User", description = "Lift a ban.",
    security(("BearerAuth" = [])),
    params(("userID" = uuid::Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Unbanned", body = EmptyBody),
        (status = 400, description = "Invalid User ID", body = ErrorBody),
        (status = 404, description = "User not found", body = ErrorBody),
        AdminErrors
    ))]
async fn unban(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Empty, AppError> {
    let id = user_id(path, "Invalid User ID")?;
    service::unban(&state, admin.user_id, id).await?;
    Ok(Empty)
}

/// The body is decoded before the path is checked, as the reference does.
#[utoipa::path(post, path = "/api/admin/users/{userID}/reset", tag = "admin", operation_id = "admin_user_reset",
    summary = "Reset User Info", description = "Reset a user's name, bio and/or avatar; contacts get `user.update`.",
    security(("BearerAuth" = [])),
    params(("userID" = uuid::Uuid, Path, description = "User id")),
    request_body = ResetUserInfoRequest,
    responses(
        (status = 200, description = "Reset", body = EmptyBody),
        (status = 400, description = "Invalid request body or user ID", body = ErrorBody),
        (status = 404, description = "User not found", body = ErrorBody),
        AdminErrors
    ))]
async fn reset(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Empty, AppError> {
    let req: ResetUserInfoRequest = body
        .ok()
        .and_then(|b| decode_lenient(&b))
        .ok_or_else(|| AppError::bad_request("Invalid request body"))?;
    let id = user_id(path, "Invalid user ID URL")?;
    service::reset(&state, admin.user_id, id, req).await?;
    Ok(Empty)
}
