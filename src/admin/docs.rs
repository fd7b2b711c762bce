//! OpenAPI fragment of the admin console (users and groups; the report
//! review is in `reports::docs`).

use utoipa::{IntoParams, OpenApi, ToSchema};

/// Role filter of the admin user list.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum RoleFilter {
    User,
    Admin,
}

/// Query of `GET /api/admin/users`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminUserListQuery {
    /// Substring of the username, email or full name (at most 100 characters).
    pub query: Option<String>,
    /// Only users with this role.
    #[param(inline)]
    pub role: Option<RoleFilter>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
    /// `meta.next_cursor` of the previous page (an unreadable one starts over).
    pub cursor: Option<String>,
}

/// Tags of `/api/admin/dashboard`, `/api/admin/users*` and
/// `/api/admin/groups*`; the paths come from the route table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "admin", description = "Admin console (admins only)"))
)]
pub struct ApiDoc;
