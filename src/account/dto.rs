//! Wire types of `/api/account*`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `PUT /api/account/password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::ChangePasswordRequest)]
pub struct ChangePasswordRequest {
    /// Required when the account has a password.
    pub old_password: Option<String>,
    /// The password rule of registration.
    #[schema(required = true, min_length = 8, max_length = 72)]
    pub new_password: Option<String>,
    /// Equal to `new_password`.
    #[schema(required = true, min_length = 8, max_length = 72)]
    pub confirm_password: Option<String>,
}

/// `PUT /api/account/email`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::ChangeEmailRequest)]
pub struct ChangeEmailRequest {
    #[schema(required = true, format = Email, max_length = 255)]
    pub email: Option<String>,
    /// OTP sent to the new address (`mode=change_email`).
    #[schema(required = true, min_length = 6, max_length = 6)]
    pub code: Option<String>,
}

/// `DELETE /api/account` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::DeleteAccountRequest)]
pub struct DeleteAccountRequest {
    /// Required when the account has a password.
    pub password: Option<String>,
}

/// `user.deleted` payload.
#[derive(Debug, Serialize)]
pub struct UserDeletedPayload {
    pub user_id: Uuid,
}
