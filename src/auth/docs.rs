//! OpenAPI fragment of the auth feature.

use utoipa::{OpenApi, ToSchema};

/// What an OTP is for.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OtpMode {
    Register,
    Reset,
    ChangeEmail,
}

/// Tags of `/api/auth/*` and `/api/otp/send`; the paths come from the route
/// table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "auth", description = "Sign-in, registration, password reset, Google sign-in"),
         (name = "otp", description = "One-time codes by email"))
)]
pub struct ApiDoc;
