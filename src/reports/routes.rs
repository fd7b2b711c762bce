//! HTTP routes of the reports feature.

use axum::Router;

use crate::app::AppState;

/// The reports routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
