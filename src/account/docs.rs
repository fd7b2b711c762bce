//! OpenAPI fragment of the account feature.

use utoipa::OpenApi;

/// `/api/account*`.
#[derive(OpenApi)]
#[openapi(
    paths(
        super::routes::change_password,
        super::routes::change_email,
        super::routes::delete_account
    ),
    tags((name = "account", description = "Password, email and account deletion"))
)]
pub struct ApiDoc;
