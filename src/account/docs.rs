//! OpenAPI fragment of the account feature.

use utoipa::OpenApi;

/// Tags of `/api/account*`; the paths come from the route table in `routes.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "account", description = "Password, email and account deletion"))
)]
pub struct ApiDoc;
