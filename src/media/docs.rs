//! OpenAPI fragment of the media feature.

use utoipa::{OpenApi, ToSchema};

/// What an uploaded file is for.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum MediaUsage {
    MessageAttachment,
    UserAvatar,
    GroupAvatar,
}

/// `POST /api/media/upload` as `multipart/form-data`, the earlier client
/// generation: the server stores the file itself.
#[derive(ToSchema)]
pub struct UploadMediaForm {
    /// The file, with its name and Content-Type (any type; the whole body
    /// is at most 20 MiB). It becomes a completed message attachment.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub captcha_token: String,
}

/// Tags of `/api/media/*`; the paths come from the route table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "media", description = "Presigned uploads and read URLs"))
)]
pub struct ApiDoc;
