//! Wire types of `/api/account*`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `PUT /api/account/password`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChangePasswordRequest {
    pub old_password: Option<String>,
    pub new_password: Option<String>,
    pub confirm_password: Option<String>,
}

/// `PUT /api/account/email`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChangeEmailRequest {
    pub email: Option<String>,
    pub code: Option<String>,
}

/// `DELETE /api/account` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteAccountRequest {
    pub password: Option<String>,
}

/// `user.deleted` payload.
#[derive(Debug, Serialize)]
pub struct UserDeletedPayload {
    pub user_id: Uuid,
}
