//! Server-side uploads of the earlier (multipart) client generation: the
//! file part of a form is streamed straight into storage under the same
//! policy and key rule as a presigned upload, then recorded as a completed
//! media item of the caller.
//!
//! Nothing outlives a failed request: the object (and its row, once
//! recorded) is removed when validation, storage or the feature's own rules
//! fail, and, should the request be dropped mid-way (client gone, timeout),
//! by a cleanup task spawned from [`Drop`].

use std::future::Future;

use chrono::Utc;
use futures::StreamExt;
use uuid::Uuid;

use super::repo::{self, MediaRow, NewMedia};
use super::service::{self, Usage, MAX_MIME_TYPE, MAX_ORIGINAL_NAME};
use crate::error::{AppError, AppResult};
use crate::http::multipart::{FilePart, Form, Part, TextFields};
use crate::infra::storage::{BodyError, Bucket, StorageError, UploadError};
use crate::state::AppState;

/// Body limit of the multipart `POST /api/media/upload` (the earlier
/// generation's 20 MiB).
pub const UPLOAD_FORM_LIMIT: usize = 20 * 1024 * 1024;
/// Body limit of the multipart profile and group forms (5 MiB).
pub const AVATAR_FORM_LIMIT: usize = 5 * 1024 * 1024;

/// An object stored for this request, removed again unless kept.
struct Stored {
    state: AppState,
    bucket: Bucket,
    key: String,
    original_name: String,
    mime_type: String,
    size: i64,
    usage: Usage,
    /// The media row, once recorded.
    media: Option<Uuid>,
    keep: bool,
}

impl Stored {
    /// Removes the row (only while nothing links it) and then the object.
    async fn discard(mut self) {
        self.keep = true;
        remove(&self.state, self.bucket, &self.key, self.media).await;
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let (state, bucket, key, media) = (
            self.state.clone(),
            self.bucket,
            self.key.clone(),
            self.media,
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { remove(&state, bucket, &key, media).await });
        }
    }
}

async fn remove(state: &AppState, bucket: Bucket, key: &str, media: Option<Uuid>) {
    if let Some(id) = media {
        match repo::delete_unlinked(&state.db, id).await {
            Ok(true) => {}
            // Linked after all (the feature committed): keep both.
            Ok(false) => return,
            Err(e) => {
                // The orphan cleanup job will find the row and its object.
                tracing::error!(error = %e, media = %id, "removing an unused upload failed");
                return;
            }
        }
    }
    if let Err(e) = state.storage.delete(bucket, key).await {
        tracing::error!(error = %e, key, "deleting an unused uploaded object failed");
    }
}

/// A multipart form read to its end: its text fields and its file, already
/// in storage.
pub struct UploadForm {
    pub fields: TextFields,
    file: Option<Stored>,
}

/// Reads `form`, streaming the part named `file_field` into storage as
/// `usage` (other file parts are skipped). A second file part of that name
/// is a 400; an empty one counts as absent.
pub async fn read(
    state: &AppState,
    mut form: Form,
    file_field: &str,
    usage: Usage,
) -> AppResult<UploadForm> {
    let mut fields = TextFields::default();
    let mut file: Option<Stored> = None;
    loop {
        let step = match form.next_part().await {
            Ok(None) => break,
            Ok(Some(Part::Text { name, value })) => fields.insert(name, value),
            Ok(Some(Part::File(part))) if part.name == file_field => {
                if file.is_some() {
                    Err(AppError::bad_request("Only one file may be sent"))
                } else {
                    store(state, part, usage).await.map(|s| file = s)
                }
            }
            Ok(Some(Part::File(_))) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = step {
            if let Some(f) = file {
                f.discard().await;
            }
            return Err(e);
        }
    }
    Ok(UploadForm { fields, file })
}

/// Checks a file part's name and type against `usage`, then streams it
/// into a fresh key. `None` when the part is empty.
async fn store(state: &AppState, part: Box<FilePart>, usage: Usage) -> AppResult<Option<Stored>> {
    let original_name = part.file_name.trim().to_string();
    if original_name.is_empty()
        || original_name.chars().count() > MAX_ORIGINAL_NAME
        || original_name.contains('\0')
    {
        return Err(AppError::bad_request("Invalid file name"));
    }
    let mime_type = part
        .content_type
        .as_deref()
        .map(|m| m.trim().to_lowercase())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "application/octet-stream".into());
    if mime_type.chars().count() > MAX_MIME_TYPE
        || !service::is_valid_mime(&mime_type)
        || !usage.allows(&mime_type, 1)
    {
        return Err(service::unsupported());
    }
    let mut body = part.into_stream();
    // Read up to the first bytes: an empty part stores nothing.
    let first = loop {
        match body.next().await {
            Some(Ok(chunk)) if chunk.is_empty() => continue,
            Some(Ok(chunk)) => break chunk,
            Some(Err(e)) => return Err(body_failed(e)),
            None => return Ok(None),
        }
    };
    let body = futures::stream::once(async move { Ok(first) })
        .chain(body)
        .boxed();
    let bucket = usage.bucket();
    let key = service::object_key(Utc::now(), &original_name);
    let mut stored = Stored {
        state: state.clone(),
        bucket,
        key,
        original_name,
        mime_type,
        size: 0,
        usage,
        media: None,
        keep: false,
    };
    let max = u64::try_from(usage.max_size()).unwrap_or(0);
    let result = state
        .storage
        .put_stream(bucket, &stored.key, &stored.mime_type, body, max)
        .await;
    match result {
        Ok(size) => {
            stored.size = i64::try_from(size).map_err(|_| service::unsupported())?;
            Ok(Some(stored))
        }
        Err(e) => {
            stored.discard().await;
            Err(match e {
                UploadError::TooLarge => service::unsupported(),
                UploadError::Body(e) => body_failed(e),
                UploadError::SizeMismatch | UploadError::Storage(StorageError::InvalidKey) => {
                    AppError::Internal(anyhow::anyhow!("server-side upload refused: {e}"))
                }
                UploadError::Storage(e) => {
                    tracing::error!(error = %e, "storing an uploaded file failed");
                    AppError::unavailable("Storage service unavailable")
                }
            })
        }
    }
}

fn body_failed(e: BodyError) -> AppError {
    match e {
        BodyError::TooLarge => AppError::payload_too_large(),
        BodyError::Aborted(_) => AppError::bad_request("Upload aborted"),
    }
}

impl UploadForm {
    /// Records the stored file as a completed media item of `caller` and
    /// runs `f` with the form's fields and that item. When recording or `f`
    /// fails, the item and its object are removed before the error is
    /// returned; when `f` succeeds they stay (linked by `f`, or left to the
    /// orphan cleanup).
    pub async fn run<T, F, Fut>(mut self, caller: Uuid, f: F) -> AppResult<T>
    where
        F: FnOnce(TextFields, Option<MediaRow>) -> Fut,
        Fut: Future<Output = AppResult<T>>,
    {
        let fields = std::mem::take(&mut self.fields);
        let media = match self.file.as_mut() {
            None => None,
            Some(stored) => match record(stored, caller).await {
                Ok(row) => Some(row),
                Err(e) => {
                    self.discard().await;
                    return Err(e);
                }
            },
        };
        match f(fields, media).await {
            Ok(v) => {
                if let Some(stored) = self.file.as_mut() {
                    stored.keep = true;
                }
                Ok(v)
            }
            Err(e) => {
                self.discard().await;
                Err(e)
            }
        }
    }

    async fn discard(mut self) {
        if let Some(stored) = self.file.take() {
            stored.discard().await;
        }
    }
}

async fn record(stored: &mut Stored, caller: Uuid) -> AppResult<MediaRow> {
    let id = Uuid::now_v7();
    let row = repo::insert(
        &stored.state.db,
        &NewMedia {
            id,
            file_name: &stored.key,
            original_name: &stored.original_name,
            file_size: stored.size,
            mime_type: &stored.mime_type,
            category: stored.usage.as_str(),
            expires_at: None,
            uploader: caller,
        },
    )
    .await?;
    stored.media = Some(id);
    Ok(row)
}
