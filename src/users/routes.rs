//! HTTP routes of the users feature.

use axum::Router;

use crate::app::AppState;

/// The users routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
