//! HTTP routes of the messages feature.

use axum::Router;

use crate::app::AppState;

/// The messages routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
