//! Media rules: the presigned direct-upload flow (upload → client PUT →
//! complete) and who may read a private object.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dto::{MediaDto, MediaUrlResponse, UploadMediaRequest, UploadMediaResponse};
use super::form::UploadForm;
use super::repo::{self, MediaRow, NewMedia};
use super::seal;
use crate::error::AppError;
use crate::http::timestamps::rfc3339_nano;
use crate::infra::storage::{Bucket, Storage, StorageError};
use crate::state::AppState;

/// Lifetime of upload and download URLs (and of a pending upload).
pub const URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Largest message attachment (20 MiB).
pub const MAX_ATTACHMENT_SIZE: i64 = 20 * 1024 * 1024;
/// Largest avatar (2 MiB).
pub const MAX_AVATAR_SIZE: i64 = 2 * 1024 * 1024;
/// Image types accepted as avatars.
pub const AVATAR_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];
/// Longest original name and MIME type, in characters.
pub(super) const MAX_ORIGINAL_NAME: usize = 255;
pub(super) const MAX_MIME_TYPE: usize = 100;
/// Longest extension kept in an object key.
const MAX_EXTENSION: usize = 16;

/// What a media item is for; decides its bucket and its size/type policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    MessageAttachment,
    UserAvatar,
    GroupAvatar,
}

impl Usage {
    /// Parses the wire / column value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message_attachment" => Some(Self::MessageAttachment),
            "user_avatar" => Some(Self::UserAvatar),
            "group_avatar" => Some(Self::GroupAvatar),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageAttachment => "message_attachment",
            Self::UserAvatar => "user_avatar",
            Self::GroupAvatar => "group_avatar",
        }
    }

    /// Avatars are public (stable URLs); attachments private.
    pub fn bucket(self) -> Bucket {
        match self {
            Self::MessageAttachment => Bucket::Private,
            Self::UserAvatar | Self::GroupAvatar => Bucket::Public,
        }
    }

    /// Largest accepted size, in bytes.
    pub fn max_size(self) -> i64 {
        match self {
            Self::MessageAttachment => MAX_ATTACHMENT_SIZE,
            Self::UserAvatar | Self::GroupAvatar => MAX_AVATAR_SIZE,
        }
    }

    /// Whether a (lower-cased) MIME type and size are accepted.
    pub(super) fn allows(self, mime: &str, size: i64) -> bool {
        match self {
            Self::MessageAttachment => size <= self.max_size(),
            Self::UserAvatar | Self::GroupAvatar => {
                size <= self.max_size() && AVATAR_TYPES.contains(&mime)
            }
        }
    }
}

/// The bucket a stored category lives in (unknown values: private, the
/// safe side).
pub fn bucket_of_category(category: &str) -> Bucket {
    Usage::parse(category).map_or(Bucket::Private, Usage::bucket)
}

/// The URL a client reads an object from: the stable public URL for the
/// public bucket, else a presigned GET valid [`URL_TTL`] (`""` when
/// presigning fails, as the contract allows).
pub async fn read_url(storage: &dyn Storage, category: &str, file_name: &str) -> String {
    match bucket_of_category(category) {
        Bucket::Public => storage.public_url(file_name),
        Bucket::Private => match storage
            .presign_get(Bucket::Private, file_name, URL_TTL)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "presigning a media download failed");
                String::new()
            }
        },
    }
}

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

pub(super) fn unsupported() -> AppError {
    AppError::bad_request("Unsupported file metadata")
}

/// A MIME type usable as a signed `Content-Type`: `type/subtype` made of
/// token characters, optionally followed by `;` parameters in printable
/// ASCII.
pub(super) fn is_valid_mime(mime: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let (essence, params) = match mime.split_once(';') {
        Some((e, p)) => (e.trim_end(), Some(p)),
        None => (mime, None),
    };
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    token(ty) && token(sub) && params.is_none_or(|p| p.bytes().all(|b| (0x20..0x7f).contains(&b)))
}

/// `.<ext>` of the original name, lower-cased, ASCII letters and digits
/// only (so every key matches the storage key rule); `.jpg` when there is
/// none, as the reference does.
pub fn object_extension(original_name: &str) -> String {
    let base = original_name.rsplit('/').next().unwrap_or(original_name);
    let ext: String = base
        .rsplit_once('.')
        .map(|(_, e)| e)
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(MAX_EXTENSION)
        .collect();
    if ext.is_empty() {
        ".jpg".into()
    } else {
        format!(".{ext}")
    }
}

/// A fresh object key: `<unix nanos>-<uuid v4><ext>`.
pub fn object_key(now: DateTime<Utc>, original_name: &str) -> String {
    let nanos = now
        .timestamp_nanos_opt()
        .unwrap_or_else(|| now.timestamp_micros().saturating_mul(1000));
    format!(
        "{nanos}-{}{}",
        Uuid::new_v4(),
        object_extension(original_name)
    )
}

/// Validated fields of an upload request.
struct UploadSpec {
    usage: Usage,
    original_name: String,
    file_size: i64,
    mime_type: String,
    captcha_token: String,
}

/// Field validation (400 `Bad Request`), before the captcha and the policy.
fn validate(req: UploadMediaRequest) -> Result<UploadSpec, AppError> {
    let usage = Usage::parse(req.usage.as_deref().unwrap_or("")).ok_or_else(bad_request)?;
    let original_name = req.original_name.unwrap_or_default();
    let mime_type = req.mime_type.unwrap_or_default();
    let file_size = req.file_size.unwrap_or(0);
    let captcha_token = req.captcha_token.unwrap_or_default();
    if original_name.is_empty()
        || original_name.chars().count() > MAX_ORIGINAL_NAME
        || original_name.contains('\0')
        || mime_type.is_empty()
        || mime_type.chars().count() > MAX_MIME_TYPE
        || file_size <= 0
        || captcha_token.is_empty()
    {
        return Err(bad_request());
    }
    let original_name = original_name.trim().to_string();
    if original_name.is_empty() {
        return Err(bad_request());
    }
    Ok(UploadSpec {
        usage,
        original_name,
        file_size,
        mime_type: mime_type.trim().to_lowercase(),
        captcha_token,
    })
}

async fn verify_captcha(
    state: &AppState,
    token: &str,
    client_ip: Option<IpAddr>,
) -> Result<(), AppError> {
    match state.captcha.verify(token, client_ip).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(bad_request()),
        Err(e) => {
            tracing::warn!(error = %e, "captcha verification unavailable");
            Err(AppError::unavailable("Captcha service unavailable"))
        }
    }
}

/// Caps what one user can hold in storage without completing: abandoned
/// uploads cost space until the sweep removes them. (Two concurrent
/// requests may both pass; the overshoot is bounded by their number.)
async fn check_pending_quota(state: &AppState, caller: Uuid, size: i64) -> Result<(), AppError> {
    let (count, bytes) = repo::pending_usage(&state.db, caller).await?;
    let (max_count, max_bytes) = (
        state.cfg.media_max_pending_uploads,
        state.cfg.media_max_pending_bytes,
    );
    if count >= max_count || bytes.saturating_add(size) > max_bytes {
        return Err(AppError::TooManyRequests {
            message: format!(
                "Too many pending uploads: complete or abandon earlier ones first \
                 (at most {max_count} uploads and {max_bytes} bytes pending)"
            ),
            retry_after: None,
        });
    }
    Ok(())
}

/// `POST /api/media/upload`: validates, checks the captcha and the policy,
/// presigns the PUT and records the pending upload.
pub async fn upload(
    state: &AppState,
    caller: Uuid,
    client_ip: Option<IpAddr>,
    req: UploadMediaRequest,
) -> Result<UploadMediaResponse, AppError> {
    let spec = validate(req)?;
    verify_captcha(state, &spec.captcha_token, client_ip).await?;
    if !is_valid_mime(&spec.mime_type) || !spec.usage.allows(&spec.mime_type, spec.file_size) {
        return Err(unsupported());
    }
    let size = u64::try_from(spec.file_size).map_err(|_| unsupported())?;
    check_pending_quota(state, caller, spec.file_size).await?;

    let now = Utc::now();
    let file_name = object_key(now, &spec.original_name);
    // Microseconds: the instant in the response is exactly the stored one.
    let expires_at = DateTime::<Utc>::from_timestamp_micros(
        (now + chrono::Duration::seconds(URL_TTL.as_secs() as i64)).timestamp_micros(),
    )
    .unwrap_or(now);
    let bucket = spec.usage.bucket();
    // Presign before inserting: a failure leaves no pending orphan behind.
    let upload_url = state
        .storage
        .presign_put_sized(bucket, &file_name, &spec.mime_type, size, URL_TTL)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let id = Uuid::now_v7();
    repo::insert(
        &state.db,
        &NewMedia {
            id,
            file_name: &file_name,
            original_name: &spec.original_name,
            file_size: spec.file_size,
            mime_type: &spec.mime_type,
            category: spec.usage.as_str(),
            expires_at: Some(expires_at),
            uploader: caller,
        },
    )
    .await?;
    let url = match bucket {
        Bucket::Public => state.storage.public_url(&file_name),
        Bucket::Private => String::new(),
    };
    let mut headers = BTreeMap::new();
    headers.insert("Content-Type", spec.mime_type.clone());
    Ok(UploadMediaResponse {
        media: MediaDto {
            id,
            file_name,
            original_name: spec.original_name,
            file_size: spec.file_size,
            mime_type: spec.mime_type,
            category: spec.usage.as_str().into(),
            upload_status: "pending".into(),
            url,
        },
        upload_url,
        upload_method: "PUT",
        upload_headers: headers,
        expires_at: rfc3339_nano(expires_at),
    })
}

/// Multipart `POST /api/media/upload` (the earlier generation): the form's
/// `file`, already streamed into the private bucket, becomes a completed
/// attachment of the caller once the form's `captcha_token` passes.
pub async fn upload_form(
    state: &AppState,
    caller: Uuid,
    client_ip: Option<IpAddr>,
    form: UploadForm,
) -> Result<MediaDto, AppError> {
    form.run(caller, |fields, media| async move {
        let token = fields.get("captcha_token").unwrap_or_default().trim();
        if token.is_empty() {
            return Err(bad_request());
        }
        verify_captcha(state, token, client_ip).await?;
        let media = media.ok_or_else(|| AppError::bad_request("File is required"))?;
        Ok(to_dto(state, media).await)
    })
    .await
}

/// The part of a Content-Type before its parameters, lower-cased.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a stored object's reported type matches the declared one.
fn content_type_matches(declared: &str, stored: &str) -> bool {
    let (declared, stored) = (essence(declared), essence(stored));
    declared == stored || (declared == "application/zip" && stored == "application/octet-stream")
}

/// `POST /api/media/{id}/complete`: only the uploader, only once, only when
/// the object really is in storage with the declared size and type.
pub async fn complete(state: &AppState, caller: Uuid, id: Uuid) -> Result<MediaDto, AppError> {
    let media = repo::find(&state.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("Media not found"))?;
    if media.uploaded_by_id != Some(caller) {
        return Err(AppError::forbidden("You do not own this media"));
    }
    if media.upload_status != "pending" {
        return Err(AppError::bad_request("Media upload is not pending"));
    }
    if media.upload_expires_at.is_some_and(|t| t < Utc::now()) {
        return Err(AppError::bad_request("Media upload has expired"));
    }
    let bucket = bucket_of_category(&media.category);
    let info = match state.storage.head(bucket, &media.file_name).await {
        Ok(Some(info)) => info,
        Ok(None) | Err(StorageError::InvalidKey) => {
            return Err(AppError::bad_request("Uploaded object not found"))
        }
        Err(e) => {
            // Storage being down is not the client's fault: let it retry.
            tracing::error!(error = %e, media = %id, "storage HEAD failed");
            return Err(AppError::unavailable("Storage service unavailable"));
        }
    };
    if i64::try_from(info.size).ok() != Some(media.file_size) {
        return Err(AppError::bad_request("Uploaded object size mismatch"));
    }
    if let Some(stored) = info.content_type.as_deref() {
        if !content_type_matches(&media.mime_type, stored) {
            return Err(AppError::bad_request(
                "Uploaded object content type mismatch",
            ));
        }
    }
    let sealed = seal::seal(state, &media, bucket).await?;
    let done = repo::mark_completed(&state.db, id, caller, sealed.as_deref())
        .await?
        .ok_or_else(|| AppError::bad_request("Media upload is not pending"))?;
    if sealed.is_some() && bucket == Bucket::Private {
        seal::drop_upload_key(state, bucket, &media.file_name).await;
    }
    Ok(to_dto(state, done).await)
}

async fn to_dto(state: &AppState, m: MediaRow) -> MediaDto {
    let url = read_url(state.storage.as_ref(), &m.category, &m.file_name).await;
    MediaDto {
        id: m.id,
        file_name: m.file_name,
        original_name: m.original_name,
        file_size: m.file_size,
        mime_type: m.mime_type,
        category: m.category,
        upload_status: m.upload_status,
        url,
    }
}

/// `GET /api/media/{id}/url`: a fresh read URL for the members of the chat
/// the media is attached to (spec §10.3). Media attached to no message
/// (unattached uploads, avatars) has none, not even for its uploader: an
/// upload's URL comes with `complete`, avatars are public. Admins may also
/// read the evidence of a report (an extension for the review).
pub async fn url(
    state: &AppState,
    caller: Uuid,
    caller_is_admin: bool,
    id: Uuid,
) -> Result<MediaUrlResponse, AppError> {
    let a = repo::access(&state.db, id, caller)
        .await?
        .ok_or_else(|| AppError::not_found("Media not found"))?;
    let completed = a.upload_status == "completed";
    if caller_is_admin && a.in_evidence {
        if !completed {
            return Err(AppError::bad_request("Media upload is not completed"));
        }
    } else {
        if a.message_id.is_none() {
            return Err(AppError::forbidden("Media is not associated with a chat"));
        }
        if !completed {
            return Err(AppError::bad_request("Media upload is not completed"));
        }
        if a.message_deleted {
            return Err(AppError::forbidden("Media is no longer available"));
        }
        if !a.caller_in_chat {
            return Err(AppError::forbidden("You do not have access to this media"));
        }
    }
    let url = read_url(state.storage.as_ref(), &a.category, &a.file_name).await;
    if url.is_empty() {
        return Err(AppError::unavailable("Storage service unavailable"));
    }
    Ok(MediaUrlResponse { url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_sanitised() {
        assert_eq!(object_extension("photo.JPG"), ".jpg");
        assert_eq!(object_extension("archive.tar.gz"), ".gz");
        assert_eq!(object_extension("noext"), ".jpg");
        assert_eq!(object_extension("weird.p/ng"), ".jpg");
        assert_eq!(object_extension("x.ф1"), ".1");
        assert_eq!(object_extension("../../etc/passwd"), ".jpg");
        assert_eq!(object_extension("a.b c$d"), ".bcd");
        assert_eq!(object_extension(&format!("a.{}", "x".repeat(40))).len(), 17);
    }

    #[test]
    fn keys_match_the_storage_rule() {
        for name in ["photo.JPG", "..", "a.", "x.ф", "evil/../../name.exe"] {
            let k = object_key(Utc::now(), name);
            assert!(crate::infra::storage::validate_key(&k).is_ok(), "{k}");
        }
    }

    #[test]
    fn mime_syntax() {
        for ok in [
            "image/png",
            "application/x-msdownload",
            "text/plain; charset=utf-8",
        ] {
            assert!(is_valid_mime(ok), "{ok}");
        }
        for bad in [
            "png",
            "image/",
            "/png",
            "image/png\r\nx: y",
            "ima ge/png",
            "a/b;\u{7f}",
        ] {
            assert!(!is_valid_mime(bad), "{bad:?}");
        }
    }

    #[test]
    fn policy() {
        assert!(Usage::MessageAttachment.allows("application/x-msdownload", MAX_ATTACHMENT_SIZE));
        assert!(!Usage::MessageAttachment.allows("text/plain", MAX_ATTACHMENT_SIZE + 1));
        assert!(Usage::UserAvatar.allows("image/webp", MAX_AVATAR_SIZE));
        assert!(!Usage::UserAvatar.allows("image/gif", 10));
        assert!(!Usage::GroupAvatar.allows("image/png", MAX_AVATAR_SIZE + 1));
    }

    #[test]
    fn content_types() {
        assert!(content_type_matches(
            "image/png",
            "IMAGE/PNG; charset=binary"
        ));
        assert!(content_type_matches(
            "application/zip",
            "application/octet-stream"
        ));
        assert!(!content_type_matches("image/png", "image/jpeg"));
        assert!(!content_type_matches(
            "image/png",
            "application/octet-stream"
        ));
    }
}
