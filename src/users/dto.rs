//! Wire types of `/api/user/*` and `/api/users*` (subsets of the contract's
//! `UserDTO`; which keys appear follows spec §13) and the user event
//! payloads (§18).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::AppError;
use crate::http::multipart::TextFields;
use crate::infra::storage::Storage;

/// Public URL of an avatar object, `""` when there is none.
pub fn avatar_url(storage: &dyn Storage, file_name: Option<&str>) -> String {
    match file_name {
        Some(f) if !f.is_empty() => storage.public_url(f),
        _ => String::new(),
    }
}

/// RFC 3339 in UTC with second precision (`2026-03-01T10:00:00Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `GET /api/user/current` and `PUT /api/user/profile` responses.
#[derive(Debug, Serialize)]
pub struct OwnProfile {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub full_name: String,
    pub avatar: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_password: Option<bool>,
    pub is_online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
}

/// `GET /api/users/{id}`: never email, password or ban flags.
#[derive(Debug, Serialize)]
pub struct ProfileView {
    pub id: Uuid,
    pub username: String,
    pub full_name: String,
    pub avatar: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    pub role: String,
    pub is_blocked_by_me: bool,
    pub is_blocked_by_other: bool,
    pub is_online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
}

/// An item of the user search and of the blocked list.
#[derive(Debug, Serialize)]
pub struct UserListItem {
    pub id: Uuid,
    pub username: String,
    pub full_name: String,
    pub avatar: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_chat_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_blocked_by_me: Option<bool>,
}

/// `PUT /api/user/profile` body. `bio` absent or `null` keeps the current
/// bio (the reference cleared it); `""` removes it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
#[schema(as = model::UpdateProfileRequest)]
pub struct UpdateProfileRequest {
    /// 3–50 ASCII letters or digits (stored lower-cased); empty keeps it.
    #[schema(pattern = r"^([A-Za-z0-9]{3,50})?$")]
    pub username: Option<String>,
    /// 3–100 characters, no control characters.
    #[schema(required = true, min_length = 3, max_length = 100)]
    pub full_name: Option<String>,
    #[schema(max_length = 255)]
    pub bio: Option<String>,
    pub avatar_media_id: Option<Uuid>,
    pub delete_avatar: Option<bool>,
}

impl UpdateProfileRequest {
    /// The multipart form of the earlier generation (`username`,
    /// `full_name`, `bio`, `delete_avatar`), with its `avatar` file already
    /// stored as media `avatar`.
    pub fn from_form(fields: &TextFields, avatar: Option<Uuid>) -> Result<Self, AppError> {
        Ok(Self {
            username: fields.string("username"),
            full_name: fields.string("full_name"),
            bio: fields.string("bio"),
            avatar_media_id: avatar,
            delete_avatar: fields.bool("delete_avatar")?,
        })
    }
}

/// `PUT /api/user/profile` as `multipart/form-data` (the earlier client
/// generation). Fields as in the JSON body; the avatar is the file itself.
#[derive(ToSchema)]
pub struct UpdateProfileForm {
    #[schema(pattern = r"^([A-Za-z0-9]{3,50})?$")]
    pub username: Option<String>,
    #[schema(min_length = 3, max_length = 100)]
    pub full_name: String,
    #[schema(max_length = 255)]
    pub bio: Option<String>,
    /// New avatar: JPEG, PNG or WebP, at most 2 MiB (the whole body at
    /// most 5 MiB). The previous avatar is released.
    #[schema(value_type = Option<String>, format = Binary)]
    pub avatar: Option<Vec<u8>>,
    /// `true` removes the avatar.
    pub delete_avatar: Option<bool>,
}

/// `user.update` payload: public profile only; `bio` always present.
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

/// `user.block` / `user.unblock` payload.
#[derive(Debug, Serialize)]
pub struct BlockPayload {
    pub blocker_id: Uuid,
    pub blocked_id: Uuid,
}
