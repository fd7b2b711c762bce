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
    #[schema(required = true, format = Email, max_length = 255)]
    pub email: Option<String>,
    /// Must satisfy the password rule (else 400, not 401).
    #[schema(required = true, min_length = 8, max_length = 72)]
    pub password: Option<String>,
    #[schema(required = true, min_length = 1)]
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/register`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::RegisterUserRequest)]
pub struct RegisterRequest {
    #[schema(required = true, format = Email, max_length = 255)]
    pub email: Option<String>,
    /// 3–50 ASCII letters or digits (stored lower-cased).
    #[schema(required = true, pattern = r"^[A-Za-z0-9]{3,50}$")]
    pub username: Option<String>,
    /// The emailed OTP (`mode=register`).
    #[schema(required = true, min_length = 6, max_length = 6)]
    pub code: Option<String>,
    /// 3–100 characters after trimming, no control characters.
    #[schema(required = true, min_length = 3, max_length = 100)]
    pub full_name: Option<String>,
    /// 8–72 characters with an upper-case letter, a lower-case letter, a
    /// digit and a punctuation or symbol character.
    #[schema(required = true, min_length = 8, max_length = 72)]
    pub password: Option<String>,
    #[schema(required = true, min_length = 1)]
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/reset-password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::ResetPasswordRequest)]
pub struct ResetPasswordRequest {
    #[schema(required = true, format = Email, max_length = 255)]
    pub email: Option<String>,
    /// The emailed OTP (`mode=reset`).
    #[schema(required = true, min_length = 6, max_length = 6)]
    pub code: Option<String>,
    /// The password rule of registration.
    #[schema(required = true, min_length = 8, max_length = 72)]
    pub password: Option<String>,
    /// Equal to `password`.
    #[schema(required = true, min_length = 8, max_length = 72)]
    pub confirm_password: Option<String>,
    #[schema(required = true, min_length = 1)]
    pub captcha_token: Option<String>,
}

/// `POST /api/otp/send`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::SendOTPRequest)]
pub struct SendOtpRequest {
    #[schema(required = true, format = Email, max_length = 255)]
    pub email: Option<String>,
    #[schema(required = true, value_type = Option<super::docs::OtpMode>, inline)]
    pub mode: Option<String>,
    #[schema(required = true, min_length = 1)]
    pub captcha_token: Option<String>,
}

/// `POST /api/auth/google`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::GoogleLoginRequest)]
pub struct GoogleLoginRequest {
    /// Google's authorization code.
    #[schema(required = true, min_length = 1)]
    pub code: Option<String>,
    /// The `state` of `GET /api/auth/google/init` (single use).
    #[schema(required = true, min_length = 16, max_length = 128)]
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

/// What login and Google sign-in answer: the usual [`AuthResponse`], or
/// for an account with two-factor authentication (extension, issue 18) a
/// challenge to complete at `POST /api/auth/login/2fa`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginOutcome {
    SignedIn(AuthResponse),
    TwoFactor(crate::account::two_factor::dto::TwoFactorChallenge),
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
