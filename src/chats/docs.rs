//! OpenAPI fragment of the chats feature.

use utoipa::{IntoParams, OpenApi};

/// Query of `GET /api/chats`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatListQuery {
    /// Substring of the chat name (at most 100 characters).
    pub query: Option<String>,
    /// `meta.next_cursor` of the previous page (an unreadable one starts over).
    pub cursor: Option<String>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
}

/// Tags of `/api/chats`, `/api/chats/private`, `/api/chats/{id}*`; the paths
/// come from the route table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "chat", description = "Chat list, private chats, read state"))
)]
pub struct ApiDoc;
