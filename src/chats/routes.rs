//! HTTP routes of the chats feature.

use axum::Router;

use crate::app::AppState;

/// The chats routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
