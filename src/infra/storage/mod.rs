//! Object storage: S3-compatible (through `object_store`) or a local
//! directory whose presigned URLs are HMAC-signed and served by the API.
//!
//! Media, avatars and the cleanup job only see the [`Storage`] trait; which
//! backend runs is decided once at start-up by [`build`].

mod local;
mod routes;
mod s3;
mod serve;
mod sigv4;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;

pub use local::{
    validate_key, LocalObject, LocalStorage, Op, SignatureError, SignedRequest, UploadError,
    WriteMode, MAX_OBJECT_SIZE,
};
pub use s3::S3Storage;

/// A request body streamed into storage, chunk by chunk.
pub type ByteStream = futures::stream::BoxStream<'static, Result<Bytes, BodyError>>;

/// Why a streamed body stopped before its end.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    /// The request's body limit was reached.
    #[error("request body too large")]
    TooLarge,
    /// The client's body failed (disconnect, malformed framing).
    #[error("request body aborted: {0}")]
    Aborted(String),
}

impl From<axum::Error> for BodyError {
    fn from(e: axum::Error) -> Self {
        BodyError::Aborted(e.to_string())
    }
}

impl From<std::convert::Infallible> for BodyError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

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
    /// Like [`Storage::presign_put`], also binding the exact body length
    /// (S3: `Content-Length` is a signed header; local: the length is part
    /// of the signature). Media uploads use this one.
    async fn presign_put_sized(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires: Duration,
    ) -> Result<String, StorageError> {
        let _ = content_length;
        self.presign_put(bucket, key, content_type, expires).await
    }
    /// A URL the client can GET the object from until `expires`.
    async fn presign_get(
        &self,
        bucket: Bucket,
        key: &str,
        expires: Duration,
    ) -> Result<String, StorageError>;
    /// Size and type of a stored object, `None` when it does not exist.
    async fn head(&self, bucket: Bucket, key: &str) -> Result<Option<ObjectInfo>, StorageError>;
    /// Reads a whole object, `None` when it does not exist (server-side use
    /// and tests; clients download through presigned URLs).
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Bytes>, StorageError> {
        let _ = (bucket, key);
        Err(StorageError::Backend(
            "get is not supported by this backend".into(),
        ))
    }
    /// Stores bytes directly (server-side uploads such as Google avatars).
    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError>;
    /// Streams `body` into a new object of at most `max` bytes and returns
    /// its size. Bytes are counted before they are stored; on any failure
    /// (too large, the body failed, storage failed, the call was dropped)
    /// nothing is left behind, not even a partial multipart upload.
    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        body: ByteStream,
        max: u64,
    ) -> Result<u64, UploadError>;
    /// Whether a presigned PUT can still replace an object once it exists
    /// (S3: the contract's `upload_headers` leave no room for a signed
    /// `If-None-Match: *`). Completion then moves the bytes to a fresh key
    /// no URL was ever issued for ([`Storage::copy`]).
    fn presigned_puts_overwrite(&self) -> bool {
        false
    }
    /// Server-side copy of `from` to `to` in one bucket, type included.
    async fn copy(&self, bucket: Bucket, from: &str, to: &str) -> Result<(), StorageError> {
        let _ = (bucket, from, to);
        Err(StorageError::Backend(
            "copy is not supported by this backend".into(),
        ))
    }
    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, bucket: Bucket, key: &str) -> Result<(), StorageError>;
    /// The stable public URL of an object in the public bucket.
    fn public_url(&self, key: &str) -> String;
    /// The local backend, whose signed URLs the API serves itself.
    fn as_local(&self) -> Option<&LocalStorage> {
        None
    }
}

/// Builds the configured backend: S3 when `S3_BUCKET_*` are set, else the
/// local directory `MEDIA_LOCAL_DIR` with URLs under `APP_URL`.
/// (`object_store` manages its own connection pool and timeouts, so the
/// shared HTTP client is not used.)
pub fn build(cfg: &Config, _http: reqwest::Client) -> anyhow::Result<Arc<dyn Storage>> {
    match &cfg.s3 {
        Some(s3) => {
            tracing::info!(endpoint = %s3.endpoint, "object storage: S3");
            Ok(Arc::new(S3Storage::new(s3)?))
        }
        None => {
            tracing::info!(dir = %cfg.media_local_dir.display(), "object storage: local directory");
            Ok(Arc::new(
                LocalStorage::new(&cfg.media_local_dir, &cfg.app_url, &cfg.jwt_secret)?
                    .with_max_transfers(cfg.storage_max_concurrent_transfers),
            ))
        }
    }
}

/// Routes serving the local backend's signed URLs (404 when S3 is used).
pub fn local_routes() -> axum::Router<crate::state::AppState> {
    routes::routes()
}
