//! HTTP routes of two-factor authentication (extension): enrolment under
//! `/api/account/2fa/*` and the second sign-in step `/api/auth/login/2fa`.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{DisableRequest, EnableRequest, EnableResponse, LoginRequest, SetupResponse};
use super::{login, service};
use crate::auth::device::ClientMeta;
use crate::auth::dto::AuthResponse;
use crate::error::AppResult;
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::openapi::{AuthenticatedErrors, PublicErrors};
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody};
use crate::http::response::{Data, Empty};
use crate::http::routing;
use crate::state::AppState;

/// Enrolment (per user, like profile changes) and the public login step
/// (per IP, like the other sign-in endpoints).
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let account = OpenApiRouter::new()
        .routes(routes!(setup))
        .routes(routes!(enable))
        .routes(routes!(disable));
    let public = OpenApiRouter::new().routes(routes!(login_2fa));
    OpenApiRouter::new()
        .merge(routing::authenticated(
            account,
            state,
            rate_limit::USER_MANAGEMENT,
        ))
        .merge(routing::public(public, state, rate_limit::AUTH_PUBLIC))
}

#[utoipa::path(post, path = "/api/account/2fa/setup", tags = ["account", "extension"],
    operation_id = "account_2fa_setup", summary = "Set Up Two-Factor Authentication",
    description = "Extension. A new TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s) for an authenticator app. \
        Nothing is active until `enable`; calling again replaces the pending secret.",
    security(("BearerAuth" = [])),
    responses(
        (status = 200, description = "The pending secret", body = DataBody<SetupResponse>),
        (status = 403, description = "Two-factor authentication is disabled on this server", body = ErrorBody),
        (status = 409, description = "Two-factor authentication is already enabled", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn setup(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
) -> AppResult<Data<SetupResponse>> {
    Ok(Data(service::setup(&state, p.user_id).await?))
}

#[utoipa::path(post, path = "/api/account/2fa/enable", tags = ["account", "extension"],
    operation_id = "account_2fa_enable", summary = "Enable Two-Factor Authentication",
    description = "Extension. Activates the pending secret with a current code (which counts as used) and returns \
        ten one-time recovery codes, shown only now. Sign-in then asks for a code. More than 5 invalid codes \
        in 15 minutes answer 429.",
    security(("BearerAuth" = [])),
    request_body = EnableRequest,
    responses(
        (status = 200, description = "Enabled", body = DataBody<EnableResponse>),
        (status = 400, description = "Malformed code, `Invalid code`, or no setup started", body = ErrorBody),
        (status = 403, description = "Two-factor authentication is disabled on this server", body = ErrorBody),
        (status = 409, description = "Already enabled, or the setup changed meanwhile", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn enable(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    LenientJson(req): LenientJson<EnableRequest>,
) -> AppResult<Data<EnableResponse>> {
    Ok(Data(service::enable(&state, p.user_id, req).await?))
}

#[utoipa::path(post, path = "/api/account/2fa/disable", tags = ["account", "extension"],
    operation_id = "account_2fa_disable", summary = "Disable Two-Factor Authentication",
    description = "Extension. Turns 2FA off with the password (when the account has one) and a TOTP or an unused \
        recovery code; the remaining recovery codes are deleted. More than 5 invalid codes in 15 minutes answer 429.",
    security(("BearerAuth" = [])),
    request_body = DisableRequest,
    responses(
        (status = 200, description = "Disabled", body = EmptyBody),
        (status = 400, description = "Missing fields, `Invalid password`, `Invalid code`, or 2FA is not enabled", body = ErrorBody),
        (status = 403, description = "Two-factor authentication is disabled on this server", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn disable(
    State(state): State<AppState>,
    AuthUser(p): AuthUser,
    LenientJson(req): LenientJson<DisableRequest>,
) -> AppResult<Empty> {
    service::disable(&state, p.user_id, req).await?;
    Ok(Empty)
}

#[utoipa::path(post, path = "/api/auth/login/2fa", tags = ["auth", "extension"],
    operation_id = "auth_login_2fa", summary = "Login Second Step",
    description = "Extension. Completes a sign-in that answered `two_factor_required` with its `challenge` and a \
        TOTP or an unused recovery code. The response is the one of a login. Codes are single-use (±1 step of \
        skew); more than 5 invalid codes in 15 minutes per account answer 429.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = DataBody<AuthResponse>),
        (status = 400, description = "Missing or oversized fields", body = ErrorBody),
        (status = 401, description = "`Invalid code` (wrong, replayed or used recovery code), or `Invalid or expired challenge`", body = ErrorBody),
        (status = 403, description = "The account is banned, or 2FA is disabled on this server", body = ErrorBody),
        PublicErrors
    ))]
async fn login_2fa(
    State(state): State<AppState>,
    meta: ClientMeta,
    LenientJson(req): LenientJson<LoginRequest>,
) -> AppResult<Data<AuthResponse>> {
    Ok(Data(login::complete(&state, req, &meta).await?))
}
