//! Documentation-only query shapes of the admin group endpoints (their
//! paths come from the route table in `routes.rs`).

use utoipa::IntoParams;

/// Query of `GET /api/admin/groups`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminGroupListQuery {
    /// Substring of the group name (at most 100 characters).
    pub query: Option<String>,
    /// Page size; 0, negative or absent means 20, above 100 means 100.
    pub limit: Option<i64>,
    /// `meta.next_cursor` of the previous page (an unreadable one starts over).
    pub cursor: Option<String>,
}

/// Query of `GET /api/admin/groups/{chatID}/members`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupMembersQuery {
    /// Prefix of the username or full name (at most 100 characters).
    pub query: Option<String>,
    /// `meta.next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
}
