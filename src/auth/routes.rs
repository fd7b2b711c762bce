//! Routes of the auth feature.

use axum::Router;

use crate::app::AppState;

/// `/api/auth/*` and `/api/otp/send`.
pub fn routes() -> Router<AppState> {
    Router::new()
}
