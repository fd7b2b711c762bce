//! Wire types of `/api/auth/*` and `/api/otp/send`. Request fields are
//! optional so `null` and missing keys decode (the validation rules then
//! decide), as the reference's lenient decoder allows.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/auth/login`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::LoginRequest)]
pub struct LoginRequest {
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub password: Option<String>,
    #[schema(required = true)]
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/register`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::RegisterUserRequest)]
pub struct RegisterRequest {
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub username: Option<String>,
    #[schema(required = true)]
    pub code: Option<String>,
    #[schema(required = true)]
    pub full_name: Option<String>,
    #[schema(required = true)]
    pub password: Option<String>,
    #[schema(required = true)]
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/reset-password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::ResetPasswordRequest)]
pub struct ResetPasswordRequest {
    #[schema(required = true)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub code: Option<String>,
    #[schema(required = true)]
    pub password: Option<String>,
    #[schema(required = true)]
    pub confirm_password: Option<String>,
    #[schema(required = true)]
    pub captcha_token: Option<String>,
}

/// `POST /api/otp/send`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::SendOTPRequest)]
pub struct SendOtpRequest {
    #[schema(required = true)]
    pub email: Option<String>,
    /// `register`, `reset` or `change_email`.
    #[schema(required = true)]
    pub mode: Option<String>,
    #[schema(required = true)]
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/google`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::GoogleLoginRequest)]
pub struct GoogleLoginRequest {
    #[schema(required = true)]
    pub code: Option<String>,
    #[schema(required = true)]
    pub state: Option<String>,
}

/// `GET /api/auth/google/init` response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::GoogleAuthInitResponse)]
pub struct GoogleInitResponse {
    pub auth_url: String,
    pub state: String,
    pub expires_in_seconds: u64,
}

/// Login / register / Google response: a token and the signed-in user.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::AuthResponse)]
pub struct AuthResponse {
    pub token: String,
    pub user: AuthUser,
}

/// The user part of [`AuthResponse`]: `avatar` is always present (URL or
/// `""`); no bio, presence or password flags.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub full_name: String,
    pub avatar: String,
    pub role: String,
}
