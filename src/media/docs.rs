//! OpenAPI fragment of the media feature.

use utoipa::OpenApi;

/// `/api/media/*`.
#[derive(OpenApi)]
#[openapi(
    paths(super::routes::upload, super::routes::complete, super::routes::url),
    tags((name = "media", description = "Presigned uploads and read URLs"))
)]
pub struct ApiDoc;
