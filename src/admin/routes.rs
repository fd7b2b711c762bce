//! HTTP routes of the admin feature.

use axum::Router;

use crate::app::AppState;

/// The admin routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
