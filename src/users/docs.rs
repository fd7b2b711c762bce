//! OpenAPI fragment of the users feature, with the documentation-only
//! shapes the handlers build from several runtime types.

use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// A user as the contract describes it (`model.UserDTO`). Which keys appear
/// depends on the endpoint (spec §13), so only the keys every user endpoint
/// sends are required:
/// - `GET /api/user/current`, `PUT /api/user/profile`: `email`, `bio` (when
///   set), `has_password` (when true), `is_online`, and after a profile
///   update `last_seen_at` (when known);
/// - `GET /api/users/{id}`: `bio` (when set), `is_blocked_by_me`,
///   `is_blocked_by_other`, `is_online`, `last_seen_at` (when known and shown);
/// - search: `private_chat_id` (with `include_chat_id=true`, when a private
///   chat exists); blocked list: `is_blocked_by_me` (always true).
///
/// Documentation only: the handlers serialise `dto::OwnProfile`,
/// `dto::ProfileView` and `dto::UserListItem`, each a subset of this.
#[derive(ToSchema)]
#[schema(as = model::UserDTO)]
pub struct UserDto {
    pub id: Uuid,
    pub username: String,
    pub full_name: String,
    /// Public URL of the avatar, `""` when there is none.
    pub avatar: String,
    /// `user` or `admin` (`""` in search results, as the reference).
    pub role: String,
    pub email: Option<String>,
    pub bio: Option<String>,
    pub has_password: Option<bool>,
    pub is_online: Option<bool>,
    /// RFC 3339, UTC, second precision.
    pub last_seen_at: Option<String>,
    pub is_banned: Option<bool>,
    pub is_blocked_by_me: Option<bool>,
    pub is_blocked_by_other: Option<bool>,
    pub private_chat_id: Option<Uuid>,
}

/// Query of `GET /api/users`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserSearchQuery {
    /// Prefix of the full name or username, or the exact email (at most 100
    /// characters; blank matches everyone).
    pub query: Option<String>,
    /// `meta.next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–50 (default 10).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<i64>,
    /// Add `private_chat_id` where the caller has a private chat with the user.
    pub include_chat_id: Option<bool>,
    /// Leave out the members of the group with this chat id.
    pub exclude_chat_id: Option<Uuid>,
}

/// Query of `GET /api/users/blocked`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlockedListQuery {
    /// Prefix of the full name or username, or the exact email (at most 100
    /// characters).
    pub query: Option<String>,
    /// `meta.next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–50 (default 10).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<i64>,
}

/// Tags of `/api/user/*` and `/api/users*`; the paths come from the route table
/// in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    components(schemas(UserDto)),
    tags((name = "user", description = "Profiles, user search and blocking"))
)]
pub struct ApiDoc;
