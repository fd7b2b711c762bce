//! HTTP routes of the media feature.

use axum::Router;

use crate::app::AppState;

/// The media routes with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
