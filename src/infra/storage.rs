//! Object storage: S3-compatible (through `object_store`) or a local
//! directory whose presigned URLs are HMAC-signed and served by the API.
//! PLACEHOLDER: the full implementation lands with the storage work.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;

/// Which bucket an object lives in: public (avatars, stable URLs) or private
/// (attachments, presigned GETs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Public,
    Private,
}

/// What a HEAD tells about a stored object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: u64,
    pub content_type: Option<String>,
}

/// Storage failures (network, credentials, bad keys).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object key")]
    InvalidKey,
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// The storage interface used by media, avatars and the cleanup job.
#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// A URL the client can PUT the object's bytes to until `expires`.
    async fn presign_put(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        expires: Duration,
    ) -> Result<String, StorageError>;
    /// A URL the client can GET the object from until `expires`.
    async fn presign_get(
        &self,
        bucket: Bucket,
        key: &str,
        expires: Duration,
    ) -> Result<String, StorageError>;
    /// Size and type of a stored object, `None` when it does not exist.
    async fn head(&self, bucket: Bucket, key: &str) -> Result<Option<ObjectInfo>, StorageError>;
    /// Stores bytes directly (server-side uploads such as Google avatars).
    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError>;
    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, bucket: Bucket, key: &str) -> Result<(), StorageError>;
    /// The stable public URL of an object in the public bucket.
    fn public_url(&self, key: &str) -> String;
}

/// Builds the configured backend.
pub fn build(_cfg: &Config, _http: reqwest::Client) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(Arc::new(Unimplemented))
}

/// Routes serving the local backend's signed URLs.
pub fn local_routes() -> axum::Router<crate::app::AppState> {
    axum::Router::new()
}

struct Unimplemented;

#[async_trait::async_trait]
impl Storage for Unimplemented {
    async fn presign_put(
        &self,
        _: Bucket,
        _: &str,
        _: &str,
        _: Duration,
    ) -> Result<String, StorageError> {
        Err(StorageError::Backend("unimplemented".into()))
    }
    async fn presign_get(&self, _: Bucket, _: &str, _: Duration) -> Result<String, StorageError> {
        Err(StorageError::Backend("unimplemented".into()))
    }
    async fn head(&self, _: Bucket, _: &str) -> Result<Option<ObjectInfo>, StorageError> {
        Err(StorageError::Backend("unimplemented".into()))
    }
    async fn put(&self, _: Bucket, _: &str, _: Bytes, _: &str) -> Result<(), StorageError> {
        Err(StorageError::Backend("unimplemented".into()))
    }
    async fn delete(&self, _: Bucket, _: &str) -> Result<(), StorageError> {
        Err(StorageError::Backend("unimplemented".into()))
    }
    fn public_url(&self, key: &str) -> String {
        key.to_string()
    }
}
