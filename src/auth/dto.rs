//! Wire types of `/api/auth/*` and `/api/otp/send`. Request fields are
//! optional so `null` and missing keys decode (the validation rules then
//! decide), as the reference's lenient decoder allows.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /api/auth/login`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginRequest {
    pub email: Option<String>,
    pub password: Option<String>,
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/register`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegisterRequest {
    pub email: Option<String>,
    pub username: Option<String>,
    pub code: Option<String>,
    pub full_name: Option<String>,
    pub password: Option<String>,
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/reset-password`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResetPasswordRequest {
    pub email: Option<String>,
    pub code: Option<String>,
    pub password: Option<String>,
    pub confirm_password: Option<String>,
    pub captcha_token: Option<String>,
}

/// `POST /api/otp/send`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SendOtpRequest {
    pub email: Option<String>,
    pub mode: Option<String>,
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/google`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GoogleLoginRequest {
    pub code: Option<String>,
    pub state: Option<String>,
}

/// `GET /api/auth/google/init` response.
#[derive(Debug, Serialize)]
pub struct GoogleInitResponse {
    pub auth_url: String,
    pub state: String,
    pub expires_in_seconds: u64,
}

/// Login / register / Google response: a token and the signed-in user.
#[derive(Debug, Serialize)]
pub struct AuthResponse {
    pub token: String,
    pub user: AuthUser,
}

/// The user part of [`AuthResponse`]: `avatar` is always present (URL or
/// `""`); no bio, presence or password flags.
#[derive(Debug, Serialize)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub full_name: String,
    pub avatar: String,
    pub role: String,
}
