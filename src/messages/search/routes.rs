//! HTTP routes of message search (extension): the route table is also the
//! OpenAPI of these paths.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{self, SearchHit, SearchQuery};
use crate::chats::routes::path_uuid;
use crate::error::AppResult;
use crate::http::auth::AuthUser;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::pagination::QueryParams;
use crate::http::rate_limit;
use crate::http::response::schema::{ErrorBody, PageBody};
use crate::http::response::Page;
use crate::http::routing;
use crate::state::AppState;

/// The routes with their middleware group (limited like history).
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    routing::authenticated(
        OpenApiRouter::new()
            .routes(routes!(in_chat))
            .routes(routes!(global)),
        state,
        rate_limit::GENERAL_READ,
    )
}

/// Query of the search endpoints.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The search text (required; at most 200 characters and 10 words).
    /// Every word must occur; the last one also matches as a prefix;
    /// case and accents are ignored.
    pub q: String,
    /// `meta.next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/chats/{chatID}/messages/search",
    tags = ["message", "extension"], operation_id = "message_search_chat",
    summary = "Search Chat", description = "Extension. Full-text search of one chat's messages, newest first \
        (keyset-paginated with `meta.next_cursor`), each rendered as in the history plus `snippet`. Deleted \
        messages and messages from before the caller hid the chat are never found.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id"), SearchParams),
    responses(
        (status = 200, description = "A page of matching messages", body = PageBody<SearchHit>),
        (status = 400, description = "Invalid Chat ID, cursor or limit; missing, blank or too long q", body = ErrorBody),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "Chat not found or deleted", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn in_chat(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<SearchHit>> {
    let chat_id = path_uuid(raw_id, "Invalid Chat ID")?;
    let q = SearchQuery::parse(&QueryParams::parse(raw.as_deref()))?;
    service::in_chat(&state, me.user_id, chat_id, q).await
}

#[utoipa::path(get, path = "/api/messages/search",
    tags = ["message", "extension"], operation_id = "message_search",
    summary = "Search Messages", description = "Extension. Full-text search over every chat the caller may \
        read (private chats they are in, groups they are a member of; not groups they left, not deleted \
        chats, nothing from before they hid a chat), newest first, keyset-paginated, items as in the \
        history plus `snippet`.",
    security(("BearerAuth" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of matching messages", body = PageBody<SearchHit>),
        (status = 400, description = "Invalid cursor or limit; missing, blank or too long q", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn global(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<SearchHit>> {
    let q = SearchQuery::parse(&QueryParams::parse(raw.as_deref()))?;
    service::global(&state, me.user_id, q).await
}
