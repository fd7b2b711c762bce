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

/// Tags of `/api/media/*`; the paths come from the route table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "media", description = "Presigned uploads and read URLs"))
)]
pub struct ApiDoc;
