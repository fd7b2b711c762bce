//! OpenAPI fragment of the groups feature (`/api/chats/group...`).

use utoipa::{IntoParams, OpenApi, ToSchema};

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

/// `/api/chats/group`, `/api/chats/group/public`, `/api/chats/group/join/invite`,
/// `/api/chats/group/invite/{inviteCode}` and `/api/chats/group/{chatID}*`.
#[derive(OpenApi)]
#[openapi(paths(
    super::routes::create,
    super::routes::update,
    super::routes::delete_group,
    super::routes::public_groups,
    super::routes::list_members,
    super::routes::add_members,
    super::routes::leave,
    super::routes::kick,
    super::routes::change_role,
    super::routes::transfer,
    super::routes::join_public,
    super::routes::join_by_invite,
    super::routes::reset_invite,
    super::routes::preview
))]
pub struct ApiDoc;
