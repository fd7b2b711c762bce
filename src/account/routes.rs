//! HTTP routes of the account feature.

use axum::Router;

use crate::app::AppState;

/// The account routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
