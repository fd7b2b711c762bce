//! HTTP routes of the media feature: `POST /api/media/upload`,
//! `POST /api/media/{mediaID}/complete` (bucket `media_upload`) and
//! `GET /api/media/{mediaID}/url` (bucket `general_read`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::dto::{MediaDto, MediaUrlResponse, UploadMediaRequest, UploadMediaResponse};
use super::service;
use crate::app::AppState;
use crate::error::AppError;
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::middleware::ClientIp;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::Data;
use crate::http::routing;

/// The media routes with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    let uploads = routing::authenticated(
        Router::new()
            .route("/api/media/upload", post(upload))
            .route("/api/media/{media_id}/complete", post(complete)),
        state,
        rate_limit::MEDIA_UPLOAD,
    );
    let reads = routing::authenticated(
        Router::new().route("/api/media/{media_id}/url", get(url)),
        state,
        rate_limit::GENERAL_READ,
    );
    uploads.merge(reads)
}

fn media_id(path: Result<Path<String>, PathRejection>) -> Result<uuid::Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_request("Invalid Media ID"))?;
    parse_uuid(&raw, "Invalid Media ID")
}

async fn upload(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    ip: Option<Extension<ClientIp>>,
    LenientJson(req): LenientJson<UploadMediaRequest>,
) -> Result<Data<UploadMediaResponse>, AppError> {
    let ip = ip.map(|Extension(ClientIp(ip))| ip);
    service::upload(&state, me.user_id, ip, req).await.map(Data)
}

async fn complete(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<MediaDto>, AppError> {
    let id = media_id(path)?;
    service::complete(&state, me.user_id, id).await.map(Data)
}

async fn url(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<MediaUrlResponse>, AppError> {
    let id = media_id(path)?;
    service::url(&state, me.user_id, me.is_admin(), id)
        .await
        .map(Data)
}
