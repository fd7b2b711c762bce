//! HTTP routes of the auth feature: thin handlers over [`super::service`]
//! and [`super::oauth`].

use std::net::IpAddr;

use axum::extract::State;
use axum::Extension;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::device::ClientMeta;
use super::dto::{
    AuthResponse, GoogleInitResponse, GoogleLoginRequest, LoginOutcome, LoginRequest,
    RegisterRequest, ResetPasswordRequest, SendOtpRequest,
};
use super::{oauth, service};
use crate::error::AppResult;
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::middleware::ClientIp;
use crate::http::openapi::{AuthenticatedErrors, PublicErrors};
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody};
use crate::http::response::{Data, Empty};
use crate::http::routing;
use crate::state::AppState;

/// `/api/auth/*` and `/api/otp/send` with their middleware groups.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let public = OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(register))
        .routes(routes!(reset_password))
        .routes(routes!(google_init))
        .routes(routes!(google_exchange))
        .routes(routes!(send_otp));
    let logout = OpenApiRouter::new().routes(routes!(logout));
    OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
        .merge(routing::public(public, state, rate_limit::AUTH_PUBLIC))
        .merge(routing::authenticated(
            logout,
            state,
            rate_limit::AUTH_LOGOUT,
        ))
}

fn ip(ext: Option<Extension<ClientIp>>) -> Option<IpAddr> {
    ext.map(|Extension(ClientIp(ip))| ip)
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", operation_id = "auth_login",
    summary = "Login", description = "Sign in with email, password and a captcha token. \
        Extension: for an account with two-factor authentication `data` is `{two_factor_required: true, challenge, \
        expires_in_seconds}` (no token); complete it at `POST /api/auth/login/2fa`.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in, or (extension) a second factor is required", body = DataBody<LoginOutcome>),
        (status = 400, description = "Invalid fields or captcha", body = ErrorBody),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 403, description = "The account is banned", body = ErrorBody),
        PublicErrors
    ))]
async fn login(
    State(state): State<AppState>,
    meta: ClientMeta,
    LenientJson(req): LenientJson<LoginRequest>,
) -> AppResult<Data<LoginOutcome>> {
    Ok(Data(service::login(&state, req, &meta).await?))
}

#[utoipa::path(post, path = "/api/auth/register", tag = "auth", operation_id = "auth_register",
    summary = "Register User", description = "Create an account with an OTP sent to the address (`mode=register`).",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered and signed in", body = DataBody<AuthResponse>),
        (status = 400, description = "Invalid fields, captcha or OTP", body = ErrorBody),
        (status = 409, description = "Email or username already taken", body = ErrorBody),
        PublicErrors
    ))]
async fn register(
    State(state): State<AppState>,
    meta: ClientMeta,
    LenientJson(req): LenientJson<RegisterRequest>,
) -> AppResult<Data<AuthResponse>> {
    Ok(Data(service::register(&state, req, &meta).await?))
}

#[utoipa::path(post, path = "/api/auth/reset-password", tag = "auth", operation_id = "auth_reset_password",
    summary = "Reset Password", description = "Set a new password with an OTP (`mode=reset`); every session is revoked.",
    request_body = ResetPasswordRequest,
    responses(
        (status = 200, description = "Password changed", body = EmptyBody),
        (status = 400, description = "Invalid fields, captcha or OTP", body = ErrorBody),
        (status = 404, description = "No account with this email", body = ErrorBody),
        PublicErrors
    ))]
async fn reset_password(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<ResetPasswordRequest>,
) -> AppResult<Empty> {
    service::reset_password(&state, req, ip(client)).await?;
    Ok(Empty)
}

#[utoipa::path(post, path = "/api/otp/send", tag = "otp", operation_id = "otp_send",
    summary = "Send OTP", description = "Email a one-time code for registration, password reset or email change. \
        Whether the address has an account is never revealed.",
    request_body = SendOtpRequest,
    responses(
        (status = 200, description = "Accepted", body = EmptyBody),
        (status = 400, description = "Invalid fields or captcha", body = ErrorBody),
        PublicErrors
    ))]
async fn send_otp(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<SendOtpRequest>,
) -> AppResult<Empty> {
    service::send_otp(&state, req, ip(client)).await?;
    Ok(Empty)
}

#[utoipa::path(get, path = "/api/auth/google/init", tag = "auth", operation_id = "auth_google_init",
    summary = "Google OAuth Init", description = "Google authorization URL with a one-time state and PKCE challenge.",
    responses(
        (status = 200, description = "Authorization URL", body = DataBody<GoogleInitResponse>),
        PublicErrors
    ))]
async fn google_init(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
) -> AppResult<Data<GoogleInitResponse>> {
    Ok(Data(oauth::init(&state, ip(client)).await?))
}

#[utoipa::path(post, path = "/api/auth/google", tag = "auth", operation_id = "auth_google",
    summary = "Google Exchange", description = "Exchange a Google authorization code and state for a token and the user. \
        Extension: for an account with two-factor authentication `data` is a second-factor challenge, as for login.",
    request_body = GoogleLoginRequest,
    responses(
        (status = 200, description = "Signed in, or (extension) a second factor is required", body = DataBody<LoginOutcome>),
        (status = 400, description = "Invalid fields, or Google gave no usable verified email", body = ErrorBody),
        (status = 401, description = "Unknown, expired or foreign state, or invalid code", body = ErrorBody),
        (status = 403, description = "The account is banned", body = ErrorBody),
        (status = 409, description = "The email belongs to another account", body = ErrorBody),
        PublicErrors
    ))]
async fn google_exchange(
    State(state): State<AppState>,
    meta: ClientMeta,
    LenientJson(req): LenientJson<GoogleLoginRequest>,
) -> AppResult<Data<LoginOutcome>> {
    Ok(Data(oauth::exchange(&state, req, &meta).await?))
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", operation_id = "auth_logout",
    summary = "Logout", description = "Invalidate the current token and close the WebSockets it opened. \
        Extension: its sign-in session ends (it leaves `GET /api/account/sessions`).",
    security(("BearerAuth" = [])),
    responses(
        (status = 200, description = "Signed out", body = EmptyBody),
        AuthenticatedErrors
    ))]
async fn logout(State(state): State<AppState>, AuthUser(p): AuthUser) -> AppResult<Empty> {
    service::logout(&state, &p).await?;
    Ok(Empty)
}
