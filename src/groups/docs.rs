//! Documentation-only shapes of the groups feature (`/api/chats/group...`);
//! the paths come from the route table in `routes.rs`.

use utoipa::{IntoParams, ToSchema};

/// Sort order of the public directory.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum PublicGroupSort {
    /// By name, A–Z (default).
    Name,
    /// Most members first.
    MemberCount,
}

/// Query of `GET /api/chats/group/public`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublicGroupsQuery {
    /// Prefix of the group name (at most 100 characters).
    #[param(max_length = 100)]
    pub query: Option<String>,
    /// `meta.next_cursor` of the previous page (one of another sort order,
    /// or unreadable, is a 400).
    pub cursor: Option<String>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
    /// `name` (default) or `member_count`.
    #[param(inline)]
    pub sort_by: Option<PublicGroupSort>,
}

/// Query of `GET /api/chats/group/{chatID}/members`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupMembersQuery {
    /// Prefix of the username or full name (at most 100 characters).
    #[param(max_length = 100)]
    pub query: Option<String>,
    /// `meta.next_cursor` of the previous page (an unreadable one is a 400).
    pub cursor: Option<String>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
}
