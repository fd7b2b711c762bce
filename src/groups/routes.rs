//! HTTP routes of the groups feature.

use axum::Router;

use crate::app::AppState;

/// The groups routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
