//! HTTP routes of the auth feature: thin handlers over [`super::service`]
//! and [`super::oauth`].

use std::net::IpAddr;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::dto::{
    AuthResponse, GoogleInitResponse, GoogleLoginRequest, LoginRequest, RegisterRequest,
    ResetPasswordRequest, SendOtpRequest,
};
use super::{oauth, service};
use crate::app::AppState;
use crate::error::AppResult;
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::middleware::ClientIp;
use crate::http::rate_limit;
use crate::http::response::{Data, Empty};
use crate::http::routing;

/// `/api/auth/*` and `/api/otp/send` with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    let public = Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/register", post(register))
        .route("/api/auth/reset-password", post(reset_password))
        .route("/api/auth/google/init", get(google_init))
        .route("/api/auth/google", post(google_exchange))
        .route("/api/otp/send", post(send_otp));
    let logout = Router::new().route("/api/auth/logout", post(logout));
    Router::new()
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

async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<LoginRequest>,
) -> AppResult<Data<AuthResponse>> {
    Ok(Data(service::login(&state, req, ip(client)).await?))
}

async fn register(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<RegisterRequest>,
) -> AppResult<Data<AuthResponse>> {
    Ok(Data(service::register(&state, req, ip(client)).await?))
}

async fn reset_password(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<ResetPasswordRequest>,
) -> AppResult<Empty> {
    service::reset_password(&state, req, ip(client)).await?;
    Ok(Empty)
}

async fn send_otp(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<SendOtpRequest>,
) -> AppResult<Empty> {
    service::send_otp(&state, req, ip(client)).await?;
    Ok(Empty)
}

async fn google_init(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
) -> AppResult<Data<GoogleInitResponse>> {
    Ok(Data(oauth::init(&state, ip(client)).await?))
}

async fn google_exchange(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<GoogleLoginRequest>,
) -> AppResult<Data<AuthResponse>> {
    Ok(Data(oauth::exchange(&state, req, ip(client)).await?))
}

async fn logout(State(state): State<AppState>, AuthUser(p): AuthUser) -> AppResult<Empty> {
    service::logout(&state, &p).await?;
    Ok(Empty)
}
