//! OpenAPI fragment of the reports feature.

use utoipa::{IntoParams, OpenApi, ToSchema};

/// Review state of a report.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReportStatus {
    Pending,
    Reviewed,
    Resolved,
    Rejected,
}

/// What a report is about.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReportTarget {
    Message,
    Group,
    User,
}

/// An admin's decision on a report.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReportDecision {
    Resolved,
    Rejected,
}

/// Query of `GET /api/admin/reports`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportListQuery {
    /// Substring of the reason, or prefix of the reporter's username or full
    /// name (at most 100 characters).
    pub query: Option<String>,
    /// Only reports in this state.
    #[param(inline)]
    pub status: Option<ReportStatus>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
    /// `meta.next_cursor` of the previous page (an unreadable one starts over).
    pub cursor: Option<String>,
}

/// Tags of `POST /api/reports` and `/api/admin/reports*`; the paths come from
/// the route table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "report", description = "Reporting messages, groups and users"))
)]
pub struct ApiDoc;
