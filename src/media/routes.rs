//! HTTP routes of the media feature: `POST /api/media/upload`,
//! `POST /api/media/{mediaID}/complete` (bucket `media_upload`) and
//! `GET /api/media/{mediaID}/url` (bucket `general_read`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Extension;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::UploadMediaForm;
use super::dto::{MediaDto, MediaUrlResponse, UploadMediaRequest, UploadMediaResult};
use super::form::{self, UPLOAD_FORM_LIMIT};
use super::service::{self, Usage};
use crate::error::AppError;
use crate::http::auth::AuthUser;
use crate::http::middleware::ClientIp;
use crate::http::multipart::JsonOrForm;
use crate::http::openapi::AuthenticatedErrors;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, ErrorBody};
use crate::http::response::Data;
use crate::http::routing;
use crate::state::AppState;

/// The media routes with their middleware groups.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let uploads = routing::authenticated(
        OpenApiRouter::new()
            .routes(routes!(upload))
            .routes(routes!(complete)),
        state,
        rate_limit::MEDIA_UPLOAD,
    );
    let reads = routing::authenticated(
        OpenApiRouter::new().routes(routes!(url)),
        state,
        rate_limit::GENERAL_READ,
    );
    OpenApiRouter::with_openapi(super::docs::ApiDoc::openapi())
        .merge(uploads)
        .merge(reads)
}

fn media_id(path: Result<Path<String>, PathRejection>) -> Result<uuid::Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_request("Invalid Media ID"))?;
    parse_uuid(&raw, "Invalid Media ID")
}

#[utoipa::path(post, path = "/api/media/upload", tag = "media", operation_id = "media_upload",
    summary = "Create Media Upload URL",
    description = "Two forms, chosen by Content-Type. JSON: register a pending upload and get a presigned PUT URL for it \
        (`data` is `model.UploadMediaResponse`). `multipart/form-data` (the earlier client generation): the `file` part is \
        streamed into storage and returned as a completed message attachment (`data` is `model.MediaDTO`).",
    security(("BearerAuth" = [])),
    request_body(content(
        (UploadMediaRequest = "application/json"),
        (UploadMediaForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "JSON: the pending media and how to upload it; multipart: the stored media", body = DataBody<UploadMediaResult>),
        (status = 400, description = "Invalid usage, name, size, type or captcha; multipart: malformed form or no file", body = ErrorBody),
        (status = 413, description = "Multipart body over 20 MiB", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn upload(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    ip: Option<Extension<ClientIp>>,
    body: JsonOrForm<UploadMediaRequest, UPLOAD_FORM_LIMIT>,
) -> Result<Data<UploadMediaResult>, AppError> {
    let ip = ip.map(|Extension(ClientIp(ip))| ip);
    match body {
        JsonOrForm::Json(req) => service::upload(&state, me.user_id, ip, req)
            .await
            .map(|r| Data(UploadMediaResult::Presigned(r))),
        JsonOrForm::Form(form) => {
            let form = form::read(&state, form, "file", Usage::MessageAttachment).await?;
            service::upload_form(&state, me.user_id, ip, form)
                .await
                .map(|m| Data(UploadMediaResult::Stored(m)))
        }
    }
}

#[utoipa::path(post, path = "/api/media/{mediaID}/complete", tag = "media", operation_id = "media_complete",
    summary = "Complete Media Upload", description = "Confirm an upload after the object was PUT; the stored object is checked.",
    security(("BearerAuth" = [])),
    params(("mediaID" = uuid::Uuid, Path, description = "Media id")),
    responses(
        (status = 200, description = "The completed media", body = DataBody<MediaDto>),
        (status = 400, description = "Invalid Media ID; not pending, expired, or the object is missing or differs", body = ErrorBody),
        (status = 403, description = "Not the uploader", body = ErrorBody),
        (status = 404, description = "Media not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn complete(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Data<MediaDto>, AppError> {
    let id = media_id(path)?;
    service::complete(&state, me.user_id, id).await.map(Data)
}

#[utoipa::path(get, path = "/api/media/{mediaID}/url", tag = "media", operation_id = "media_url",
    summary = "Refresh Media URL", description = "A fresh read URL for media the caller may see.",
    security(("BearerAuth" = [])),
    params(("mediaID" = uuid::Uuid, Path, description = "Media id")),
    responses(
        (status = 200, description = "The URL", body = DataBody<MediaUrlResponse>),
        (status = 400, description = "Invalid Media ID, or the upload is not completed", body = ErrorBody),
        (status = 403, description = "No access to this media", body = ErrorBody),
        (status = 404, description = "Media not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
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
