//! Wire types of `/api/account/sessions*`.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One live login session (a signed-in device).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::SessionResponse)]
pub struct SessionDto {
    pub id: Uuid,
    /// Derived from the user agent ("Firefox on Linux", "curl", "Unknown device").
    pub name: String,
    /// Client IP at sign-in (trusted-proxy rules apply); `null` when unknown.
    #[schema(required = true)]
    pub ip: Option<String>,
    /// `null` when the client sent none.
    #[schema(required = true)]
    pub user_agent: Option<String>,
    pub created_at: String,
    /// `null` until the first request after sign-in; written at most once a minute.
    #[schema(required = true)]
    pub last_seen_at: Option<String>,
    /// Whether the request's own token belongs to this session (always
    /// `false` in the admin view).
    pub current: bool,
}
