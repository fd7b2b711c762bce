//! `GET /api/admin/audit` (behind `routing::admin`).

use axum::extract::{RawQuery, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::AuditListQuery;
use super::dto::AuditEntryDto;
use super::service;
use crate::error::AppError;
use crate::http::auth::AdminUser;
use crate::http::openapi::AdminErrors;
use crate::http::pagination::QueryParams;
use crate::http::response::schema::{ErrorBody, PageBody};
use crate::http::response::Page;
use crate::http::routing;
use crate::state::AppState;

pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::admin(OpenApiRouter::new().routes(routes!(list)), state)
}

#[utoipa::path(get, path = "/api/admin/audit", tags = ["admin", "extension"], operation_id = "admin_audit_list",
    summary = "Get Admin Audit Log",
    description = "Extension (issue 19). Admin actions, newest first, keyset-paginated; entries are kept \
        for `AUDIT_RETENTION_DAYS` (default 365).",
    security(("BearerAuth" = [])),
    params(AuditListQuery),
    responses(
        (status = 200, description = "A page of audit entries", body = PageBody<AuditEntryDto>),
        (status = 400, description = "Invalid filter, limit or cursor", body = ErrorBody),
        AdminErrors
    ))]
async fn list(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    RawQuery(query): RawQuery,
) -> Result<Page<AuditEntryDto>, AppError> {
    service::list(&state, &QueryParams::parse(query.as_deref())).await
}
