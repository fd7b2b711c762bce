//! Wire types of the admin console (`model.DashboardStatsResponse`,
//! `model.AdminUserListResponse`, `model.AdminUserDetailResponse`,
//! `model.BanUserRequest`, `model.ResetUserInfoRequest`, ...).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `GET /api/admin/dashboard`.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[schema(as = model::DashboardStatsResponse)]
pub struct DashboardStats {
    pub total_users: i64,
    pub total_groups: i64,
    pub total_messages: i64,
    pub active_reports: i64,
}

/// One row of `GET /api/admin/users`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::AdminUserListResponse)]
pub struct AdminUserListItem {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub role: String,
    pub is_banned: bool,
    pub created_at: String,
}

/// `GET /api/admin/users/{id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::AdminUserDetailResponse)]
pub struct AdminUserDetail {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub bio: String,
    pub avatar: String,
    pub role: String,
    pub is_banned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banned_until: Option<String>,
    pub created_at: String,
    /// Always present, `null` when the user never connected.
    #[schema(required = true)]
    pub last_seen_at: Option<String>,
    pub total_messages: i64,
    pub total_groups: i64,
    /// Extension (issue 18): the user's live sign-in sessions, newest
    /// first (at most 100; `current` is always false here).
    #[schema(required = false)]
    pub sessions: Vec<crate::account::sessions::dto::SessionDto>,
}

/// `POST /api/admin/users/ban` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::BanUserRequest)]
pub struct BanUserRequest {
    #[serde(default)]
    #[schema(required = true)]
    pub target_user_id: Option<Uuid>,
    /// 1–255 characters after trimming.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 255)]
    pub reason: Option<String>,
    /// 0 or absent: permanent; at most 876,600 (100 years).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 876600)]
    pub duration_hours: Option<i64>,
}

/// `POST /api/admin/users/{id}/reset` body. A `target_user_id` in the body
/// is ignored (the path decides), but must still decode.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::ResetUserInfoRequest)]
pub struct ResetUserInfoRequest {
    /// Ignored: the path names the user.
    #[serde(default)]
    pub target_user_id: Option<Uuid>,
    #[serde(default)]
    pub reset_avatar: Option<bool>,
    #[serde(default)]
    pub reset_bio: Option<bool>,
    #[serde(default)]
    pub reset_name: Option<bool>,
}

/// `user.banned` payload.
#[derive(Debug, Serialize)]
pub struct UserBannedPayload {
    pub user_id: Uuid,
    pub reason: String,
}

/// `user.unbanned` payload.
#[derive(Debug, Serialize)]
pub struct UserUnbannedPayload {
    pub user_id: Uuid,
}

/// `user.update` payload (public profile fields).
#[derive(Debug, Serialize)]
pub struct UserUpdatePayload {
    pub id: Uuid,
    pub username: String,
    pub full_name: String,
    pub avatar: String,
    pub bio: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
}
