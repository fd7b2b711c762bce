//! OpenAPI fragment of the messages feature.

use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// Paging direction of the history.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum HistoryDirection {
    /// Towards older messages (the default).
    Older,
    /// Towards newer messages.
    Newer,
}

/// Query of `GET /api/chats/{chatID}/messages`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// `meta.next_cursor` / `meta.prev_cursor` of a previous page (ignored
    /// with `around_message_id`).
    pub cursor: Option<String>,
    /// Centre the page on this message.
    pub around_message_id: Option<Uuid>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
    #[param(inline)]
    pub direction: Option<HistoryDirection>,
}

/// Tags of `/api/messages*` and `/api/chats/{chatID}/messages`; the paths come
/// from the route table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "message", description = "Sending, editing, deleting and reading messages"))
)]
pub struct ApiDoc;
