//! Rules of message search: one chat (readable as its history) or every
//! chat the caller may read; live messages only, none from before the
//! caller hid a chat; newest first, keyset-paginated by message id.

use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::query::Terms;
use super::repo;
use crate::error::{AppError, AppResult};
use crate::http::pagination::{forward_page, parse_limit, QueryParams};
use crate::http::response::Page;
use crate::messages::dto::{decode_message_cursor, MessageResponse, RenderOpts};
use crate::messages::reactions::service as reactions;
use crate::messages::repo as messages_repo;
use crate::messages::service::load_message_responses;
use crate::state::AppState;

/// A search result: the message as in history plus a snippet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    #[serde(flatten)]
    pub message: MessageResponse,
    /// The text (cut around the first match when long), HTML-escaped, with
    /// the matching words in `<mark>`…`</mark>`.
    pub snippet: String,
}

/// A parsed search query string.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub terms: Terms,
    /// Only messages with a smaller id (the cursor), `Uuid::max()` at first.
    pub before: Uuid,
    pub limit: i64,
}

impl SearchQuery {
    /// `q` (required), `cursor` (`meta.next_cursor`), `limit`.
    pub fn parse(q: &QueryParams) -> AppResult<Self> {
        let terms = Terms::parse(q.get("q"))?;
        let limit = parse_limit(q.get("limit"))?;
        let before = match q.get("cursor").filter(|c| !c.is_empty()) {
            None => Uuid::max(),
            Some(raw) => decode_message_cursor(raw)
                .ok_or_else(|| AppError::bad_request("Invalid cursor format"))?,
        };
        Ok(Self {
            terms,
            before,
            limit,
        })
    }
}

/// `GET /api/chats/{chatID}/messages/search`.
pub async fn in_chat(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
    q: SearchQuery,
) -> AppResult<Page<SearchHit>> {
    let mut conn = state.read_conn(me).await?;
    let ctx = messages_repo::chat_context(&mut conn, chat_id, me, false)
        .await?
        .filter(|c| !c.deleted)
        .ok_or_else(|| AppError::not_found("Chat not found or deleted"))?;
    if !ctx.is_member {
        return Err(AppError::forbidden("Forbidden"));
    }
    let ids = repo::in_chat(
        &mut conn,
        chat_id,
        &q.terms.tsquery(),
        ctx.hidden_at,
        q.before,
        q.limit + 1,
    )
    .await?;
    page(state, &mut conn, me, &ids, &q).await
}

/// `GET /api/messages/search`.
pub async fn global(state: &AppState, me: Uuid, q: SearchQuery) -> AppResult<Page<SearchHit>> {
    let mut conn = state.read_conn(me).await?;
    let chats = repo::readable_chats(&mut conn, me).await?;
    let ids = repo::global(&mut conn, &chats, &q.terms.tsquery(), q.before, q.limit + 1).await?;
    page(state, &mut conn, me, &ids, &q).await
}

/// Renders the hits (one statement for the messages, one for their
/// reactions), newest first.
async fn page(
    state: &AppState,
    conn: &mut PgConnection,
    me: Uuid,
    ids: &[Uuid],
    q: &SearchQuery,
) -> AppResult<Page<SearchHit>> {
    let mut msgs =
        load_message_responses(conn, state.storage.as_ref(), ids, RenderOpts::FULL).await?;
    msgs.reverse();
    reactions::fill(conn, &mut msgs, me).await?;
    let hits: Vec<SearchHit> = msgs
        .into_iter()
        .map(|m| SearchHit {
            snippet: q.terms.snippet(m.content.as_deref().unwrap_or("")),
            message: m,
        })
        .collect();
    let (data, meta) = forward_page(hits, q.limit, |h| h.message.id.to_string());
    Ok(Page { data, meta })
}
