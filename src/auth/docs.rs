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

/// `/api/auth/*` and `/api/otp/send`.
#[derive(OpenApi)]
#[openapi(
    paths(
        super::routes::login,
        super::routes::register,
        super::routes::reset_password,
        super::routes::send_otp,
        super::routes::google_init,
        super::routes::google_exchange,
        super::routes::logout
    ),
    tags((name = "auth", description = "Sign-in, registration, password reset, Google sign-in"),
         (name = "otp", description = "One-time codes by email"))
)]
pub struct ApiDoc;
