//! HTTP routes of the auth feature.

use axum::Router;

use crate::app::AppState;

/// `/api/auth/*` and `/api/otp/send` with their middleware groups.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
