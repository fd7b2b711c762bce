//! Wire types of `/api/account/2fa/*` and `POST /api/auth/login/2fa`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/account/2fa/setup` response: nothing is active until enabled.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::TwoFactorSetupResponse)]
pub struct SetupResponse {
    /// Base32 TOTP secret (for manual entry).
    pub secret: String,
    /// `otpauth://totp/...` URI (for a QR code).
    pub otpauth_uri: String,
}

/// `POST /api/account/2fa/enable`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::TwoFactorEnableRequest)]
pub struct EnableRequest {
    /// A current code of the secret from `setup`.
    #[schema(required = true, min_length = 6, max_length = 6)]
    pub code: Option<String>,
}

/// `POST /api/account/2fa/enable` response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::TwoFactorEnableResponse)]
pub struct EnableResponse {
    /// Ten one-time codes, shown only now; each can replace a TOTP once.
    pub recovery_codes: Vec<String>,
}

/// `POST /api/account/2fa/disable`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::TwoFactorDisableRequest)]
pub struct DisableRequest {
    /// Required when the account has a password.
    pub password: Option<String>,
    /// A current TOTP or an unused recovery code.
    #[schema(required = true, min_length = 1, max_length = 64)]
    pub code: Option<String>,
}

/// `POST /api/auth/login/2fa`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::TwoFactorLoginRequest)]
pub struct LoginRequest {
    /// The `challenge` of the password (or Google) step.
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub challenge: Option<String>,
    /// A current TOTP or an unused recovery code.
    #[schema(required = true, min_length = 1, max_length = 64)]
    pub code: Option<String>,
}

/// What the password or Google step answers for an account with 2FA
/// (instead of a token): complete it at `POST /api/auth/login/2fa`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::TwoFactorChallenge)]
pub struct TwoFactorChallenge {
    /// Always `true`.
    pub two_factor_required: bool,
    /// Opaque, valid for `expires_in_seconds` (5 minutes by default).
    pub challenge: String,
    pub expires_in_seconds: u64,
}
