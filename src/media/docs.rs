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

/// `/api/media/*`.
#[derive(OpenApi)]
#[openapi(
    paths(super::routes::upload, super::routes::complete, super::routes::url),
    tags((name = "media", description = "Presigned uploads and read URLs"))
)]
pub struct ApiDoc;
