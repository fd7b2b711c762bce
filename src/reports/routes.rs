//! HTTP routes of the reports feature: `POST /api/reports` (any user,
//! bucket `general_read`) and the admin review under `/api/admin/reports`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::docs::ReportListQuery;
use super::dto::{CreateReportRequest, ReportDetail, ReportListItem, ResolveReportRequest};
use super::service;
use crate::error::AppError;
use crate::http::auth::{AdminUser, AuthUser};
use crate::http::json::{decode_lenient, LenientJson};
use crate::http::openapi::{AdminErrors, AuthenticatedErrors};
use crate::http::pagination::QueryParams;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody, PageBody};
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::state::AppState;

/// The reports routes with their middleware groups.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let user = routing::authenticated(
        OpenApiRouter::new().routes(routes!(create)),
        state,
        rate_limit::GENERAL_READ,
    );
    let admin = routing::admin(
        OpenApiRouter::new()
            .routes(routes!(list))
            .routes(routes!(detail, delete))
            .routes(routes!(resolve)),
        state,
    );
    OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
        .merge(user)
        .merge(admin)
}

fn report_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_request("Invalid Report ID"))?;
    parse_uuid(&raw, "Invalid Report ID")
}

#[utoipa::path(post, path = "/api/reports", tag = "report", operation_id = "report_create",
    summary = "Create Report", description = "Report a message, a group or a user; evidence is snapshotted.",
    security(("BearerAuth" = [])),
    request_body = CreateReportRequest,
    responses(
        (status = 200, description = "Report filed", body = EmptyBody),
        (status = 400, description = "Invalid fields, missing target id, or the caller's own message/self", body = ErrorBody),
        (status = 403, description = "The caller cannot see the reported message or group", body = ErrorBody),
        (status = 404, description = "Message, group or user not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    LenientJson(req): LenientJson<CreateReportRequest>,
) -> Result<Empty, AppError> {
    service::create(&state, me.user_id, req).await?;
    Ok(Empty)
}

#[utoipa::path(get, path = "/api/admin/reports", tag = "admin", operation_id = "admin_report_list",
    summary = "Get Reports", description = "Reports, newest first.",
    security(("BearerAuth" = [])),
    params(ReportListQuery),
    responses(
        (status = 200, description = "A page of reports", body = PageBody<ReportListItem>),
        (status = 400, description = "Invalid query, status or limit", body = ErrorBody),
        AdminErrors
    ))]
async fn list(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RawQuery(query): RawQuery,
) -> Result<Page<ReportListItem>, AppError> {
    service::list(&state, admin.user_id, &QueryParams::parse(query.as_deref())).await
}

#[utoipa::path(get, path = "/api/admin/reports/{reportID}", tag = "admin", operation_id = "admin_report_detail",
    summary = "Get Report Detail", description = "A report with its evidence (attachment URLs freshly signed).",
    security(("BearerAuth" = [])),
    params(("reportID" = uuid::Uuid, Path, description = "Report id")),
    responses(
        (status = 200, description = "The report", body = DataBody<ReportDetail>),
        (status = 400, description = "Invalid Report ID", body = ErrorBody),
        (status = 404, description = "Report not found", body = ErrorBody),
        AdminErrors
    ))]
async fn detail(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<ReportDetail>, AppError> {
    let id = report_id(path)?;
    service::detail(&state, id).await.map(Data)
}

/// The path is checked before the body, as the reference does.
#[utoipa::path(put, path = "/api/admin/reports/{reportID}/resolve", tag = "admin", operation_id = "admin_report_resolve",
    summary = "Resolve Report", description = "Resolve or reject a report; resolving a message report deletes the message.",
    security(("BearerAuth" = [])),
    params(("reportID" = uuid::Uuid, Path, description = "Report id")),
    request_body = ResolveReportRequest,
    responses(
        (status = 200, description = "Report updated", body = EmptyBody),
        (status = 400, description = "Invalid Report ID, body or status", body = ErrorBody),
        (status = 404, description = "Report not found", body = ErrorBody),
        AdminErrors
    ))]
async fn resolve(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Empty, AppError> {
    let id = report_id(path)?;
    let req: ResolveReportRequest = body
        .ok()
        .and_then(|b| decode_lenient(&b))
        .ok_or_else(|| AppError::bad_request("Bad Request"))?;
    service::resolve(&state, admin.user_id, id, req).await?;
    Ok(Empty)
}

#[utoipa::path(delete, path = "/api/admin/reports/{reportID}", tag = "admin", operation_id = "admin_report_delete",
    summary = "Delete Report", description = "Delete a closed report and release its evidence.",
    security(("BearerAuth" = [])),
    params(("reportID" = uuid::Uuid, Path, description = "Report id")),
    responses(
        (status = 200, description = "Report deleted", body = EmptyBody),
        (status = 400, description = "Invalid Report ID, or the report is still pending", body = ErrorBody),
        (status = 404, description = "Report not found", body = ErrorBody),
        AdminErrors
    ))]
async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Empty, AppError> {
    let id = report_id(path)?;
    service::delete(&state, admin.user_id, id).await?;
    Ok(Empty)
}
