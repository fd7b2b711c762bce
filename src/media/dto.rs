//! Wire types of the media endpoints (`model.UploadMediaRequest`,
//! `model.UploadMediaResponse`, `model.MediaDTO`, `model.MediaURLResponse`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/media/upload` body. Every field is optional at the decoding
/// level (`null` and absence are "empty"); the service validates.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::UploadMediaRequest)]
pub struct UploadMediaRequest {
    /// What the file is for: decides its bucket and size/type policy.
    #[serde(default)]
    #[schema(required = true, value_type = Option<super::docs::MediaUsage>, inline)]
    pub usage: Option<String>,
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 255)]
    pub original_name: Option<String>,
    /// Bytes: at most 20 MiB for attachments, 2 MiB for avatars.
    #[serde(default)]
    #[schema(required = true, minimum = 1)]
    pub file_size: Option<i64>,
    /// Avatars: `image/jpeg`, `image/png` or `image/webp`.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 100)]
    pub mime_type: Option<String>,
    #[serde(default)]
    #[schema(required = true, min_length = 1)]
    pub captcha_token: Option<String>,
}

/// One media item as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = model::MediaDTO)]
pub struct MediaDto {
    pub id: Uuid,
    pub file_name: String,
    pub original_name: String,
    pub file_size: i64,
    pub mime_type: String,
    pub category: String,
    pub upload_status: String,
    /// Public URL (avatars), presigned GET (completed attachments) or `""`.
    pub url: String,
}

/// Answer to an upload request: the pending media and how to upload it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::UploadMediaResponse)]
pub struct UploadMediaResponse {
    pub media: MediaDto,
    pub upload_url: String,
    pub upload_method: &'static str,
    /// Exactly `{"Content-Type": <mime_type>}`.
    #[schema(value_type = BTreeMap<String, String>)]
    pub upload_headers: BTreeMap<&'static str, String>,
    /// Same instant as the row's `upload_expires_at`, full precision.
    pub expires_at: String,
}

/// `POST /api/media/upload` answer: how to upload (JSON request), or the
/// stored, completed media (multipart request, the earlier generation).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UploadMediaResult {
    Presigned(UploadMediaResponse),
    Stored(MediaDto),
}

/// `GET /api/media/{id}/url` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::MediaURLResponse)]
pub struct MediaUrlResponse {
    pub url: String,
}
