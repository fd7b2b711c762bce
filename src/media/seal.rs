//! Write-once uploads on backends whose presigned PUTs can replace an object
//! (S3: the contract fixes `upload_headers` to exactly `Content-Type`, so a
//! signed `If-None-Match: *` cannot be required of existing clients).
//!
//! Completion copies the bytes server-side to a fresh key that no URL was
//! ever issued for, and that key becomes the media's `file_name`: a second
//! PUT to the upload URL can then only write an object nobody reads. Both
//! keys are listed in `storage_stale_objects` until the URL has expired; the
//! pending-upload sweep then deletes the ones no media row references (the
//! upload key, and the copy of a completion that lost a race or failed).

use chrono::{Duration, Utc};

use super::repo::{self, MediaRow};
use super::service::object_key;
use crate::error::AppError;
use crate::infra::storage::{Bucket, StorageError};
use crate::state::AppState;

/// Margin after the URL's expiry for clocks that disagree.
const SKEW: Duration = Duration::minutes(1);

/// Copies a pending upload to a fresh key when the backend needs it and
/// returns that key; `None` for write-once backends (local).
pub(super) async fn seal(
    state: &AppState,
    media: &MediaRow,
    bucket: Bucket,
) -> Result<Option<String>, AppError> {
    if !state.storage.presigned_puts_overwrite() {
        return Ok(None);
    }
    let fresh = object_key(Utc::now(), &media.original_name);
    let after = media.upload_expires_at.unwrap_or_else(Utc::now) + SKEW;
    // Listed before the copy, so no failure between here and the row's
    // update leaves an object nothing will delete.
    repo::retire_keys(
        &state.db,
        bucket.as_str(),
        &[media.file_name.as_str(), fresh.as_str()],
        after,
    )
    .await?;
    match state.storage.copy(bucket, &media.file_name, &fresh).await {
        Ok(()) => Ok(Some(fresh)),
        Err(StorageError::InvalidKey) => Err(AppError::bad_request("Uploaded object not found")),
        Err(e) => {
            tracing::error!(error = %e, media = %media.id, "storage copy failed");
            Err(AppError::unavailable("Storage service unavailable"))
        }
    }
}

/// After a sealed completion of an attachment: the upload key goes now (best
/// effort; the sweep deletes it again once its URL has expired). An avatar's
/// upload key is left to the sweep: the upload response gave the uploader
/// its public URL as a preview, and nobody else ever sees that URL.
pub(super) async fn drop_upload_key(state: &AppState, bucket: Bucket, key: &str) {
    if let Err(e) = state.storage.delete(bucket, key).await {
        tracing::warn!(error = %e, "deleting an upload key failed; the sweep retries");
    }
}
