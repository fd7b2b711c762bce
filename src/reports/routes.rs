//! HTTP routes of the reports feature: `POST /api/reports` (any user,
//! bucket `general_read`) and the admin review under `/api/admin/reports`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post, put};
use axum::Router;
use uuid::Uuid;

use super::dto::{CreateReportRequest, ReportDetail, ReportListItem, ResolveReportRequest};
use super::service;
use crate::app::AppState;
use crate::error::AppError;
use crate::http::auth::{AdminUser, AuthUser};
use crate::http::json::{decode_lenient, LenientJson};
use crate::http::pagination::QueryParams;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;

/// The reports routes with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    let user = routing::authenticated(
        Router::new().route("/api/reports", post(create)),
        state,
        rate_limit::GENERAL_READ,
    );
    let admin = routing::admin(
        Router::new()
            .route("/api/admin/reports", get(list))
            .route("/api/admin/reports/{report_id}", get(detail).delete(delete))
            .route("/api/admin/reports/{report_id}/resolve", put(resolve)),
        state,
    );
    user.merge(admin)
}

fn report_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_request("Invalid Report ID"))?;
    parse_uuid(&raw, "Invalid Report ID")
}

async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    LenientJson(req): LenientJson<CreateReportRequest>,
) -> Result<Empty, AppError> {
    service::create(&state, me.user_id, req).await?;
    Ok(Empty)
}

async fn list(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    RawQuery(query): RawQuery,
) -> Result<Page<ReportListItem>, AppError> {
    service::list(&state, &QueryParams::parse(query.as_deref())).await
}

async fn detail(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<ReportDetail>, AppError> {
    let id = report_id(path)?;
    service::detail(&state, id).await.map(Data)
}

/// The path is checked before the body, as the reference does.
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

async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Empty, AppError> {
    let id = report_id(path)?;
    service::delete(&state, admin.user_id, id).await?;
    Ok(Empty)
}
