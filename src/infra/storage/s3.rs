//! S3-compatible backend (AWS, R2, MinIO, the test server) through
//! `object_store`: one client per bucket, every call bounded by a timeout.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, MultipartUpload, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutPayloadMut, RetryConfig,
};
use url::Url;

use super::sigv4::{uri_encode, Presigner};
use super::{Bucket, ByteStream, ObjectInfo, Storage, StorageError, UploadError};
use crate::config::S3Config;

/// Upper bound of one storage call, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Part size of streamed uploads: S3's smallest allowed part, so one
/// upload holds at most about this much in memory. A body that fits in one
/// part is sent with a single PUT.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Region used when `S3_REGION` is empty (the AWS default, and what most
/// S3-compatible servers accept).
const DEFAULT_REGION: &str = "us-east-1";

/// One bucket: its client and the URL objects are addressed under.
#[derive(Debug)]
struct BucketClient {
    store: AmazonS3,
    /// `<endpoint>/<bucket>` (path style) or `https://<bucket>.s3.<region>.amazonaws.com`.
    base_url: String,
}

/// Two buckets on one S3-compatible service.
#[derive(Debug)]
pub struct S3Storage {
    public: BucketClient,
    private: BucketClient,
    presigner: Presigner,
    public_base: String,
}

impl S3Storage {
    /// Builds both bucket clients; nothing is contacted yet.
    pub fn new(cfg: &S3Config) -> anyhow::Result<Self> {
        let region = if cfg.region.trim().is_empty() {
            DEFAULT_REGION.to_string()
        } else {
            cfg.region.trim().to_string()
        };
        let endpoint = cfg.endpoint.trim().trim_end_matches('/').to_string();
        let client = |bucket: &str| -> anyhow::Result<BucketClient> {
            let options = ClientOptions::new()
                .with_timeout(Duration::from_secs(10))
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_http(endpoint.starts_with("http://"));
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: CALL_TIMEOUT,
                ..RetryConfig::default()
            };
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&region)
                .with_access_key_id(&cfg.access_key)
                .with_secret_access_key(&cfg.secret_key)
                .with_client_options(options)
                .with_retry(retry);
            let base_url = if endpoint.is_empty() {
                // Real AWS: virtual-hosted style, the only one new buckets
                // are guaranteed to support.
                builder = builder.with_virtual_hosted_style_request(true);
                format!("https://{bucket}.s3.{region}.amazonaws.com")
            } else {
                // Custom endpoint: path style, as the contract requires.
                builder = builder
                    .with_endpoint(&endpoint)
                    .with_virtual_hosted_style_request(false);
                format!("{endpoint}/{bucket}")
            };
            let store = builder
                .build()
                .map_err(|e| anyhow::anyhow!("S3 bucket {bucket:?}: {e}"))?;
            Url::parse(&base_url)
                .map_err(|e| anyhow::anyhow!("invalid S3_ENDPOINT {endpoint:?}: {e}"))?;
            Ok(BucketClient { store, base_url })
        };
        let public_domain = cfg.public_domain.trim().trim_end_matches('/');
        let public_base = if public_domain.is_empty() {
            format!("https://{}.s3.{region}.amazonaws.com", cfg.bucket_public)
        } else {
            public_domain.to_string()
        };
        Ok(Self {
            public: client(&cfg.bucket_public)?,
            private: client(&cfg.bucket_private)?,
            presigner: Presigner {
                access_key: cfg.access_key.clone(),
                secret_key: cfg.secret_key.clone(),
                region,
            },
            public_base,
        })
    }

    fn bucket(&self, bucket: Bucket) -> &BucketClient {
        match bucket {
            Bucket::Public => &self.public,
            Bucket::Private => &self.private,
        }
    }

    /// Presigned PUT binding the content type and, when known, the length.
    fn presign_upload(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        content_length: Option<u64>,
        expires: Duration,
    ) -> Result<String, StorageError> {
        object_path(key)?;
        let raw = format!(
            "{}/{}",
            self.bucket(bucket).base_url,
            uri_encode(key, false)
        );
        let url = Url::parse(&raw).map_err(|e| StorageError::Backend(e.to_string()))?;
        let mut headers = vec![("content-type", content_type.to_string())];
        if let Some(len) = content_length {
            headers.push(("content-length", len.to_string()));
        }
        Ok(self
            .presigner
            .presign("PUT", &url, &headers, expires, chrono::Utc::now())
            .to_string())
    }
}

/// Object keys are flat names; `object_store` rejects empty and `.`/`..`
/// segments, which are never valid keys here either.
fn object_path(key: &str) -> Result<Path, StorageError> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey);
    }
    Path::parse(key).map_err(|_| StorageError::InvalidKey)
}

/// Runs one backend call under [`CALL_TIMEOUT`].
async fn timed<T>(
    fut: impl Future<Output = object_store::Result<T>>,
) -> Result<object_store::Result<T>, StorageError> {
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .map_err(|_| StorageError::Backend("storage call timed out".into()))
}

fn backend(e: object_store::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

fn content_type_attributes(content_type: &str) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type.to_string().into());
    attributes
}

/// A multipart upload in progress, aborted when dropped unfinished: S3
/// keeps (and bills) the parts of an upload nobody completes or aborts.
struct PendingUpload(Option<Box<dyn MultipartUpload>>);

impl PendingUpload {
    async fn put_part(&mut self, part: PutPayload) -> Result<(), StorageError> {
        let Some(upload) = self.0.as_mut() else {
            return Err(StorageError::Backend("upload already finished".into()));
        };
        timed(upload.put_part(part)).await?.map_err(backend)
    }

    async fn complete(mut self) -> Result<(), StorageError> {
        let Some(mut upload) = self.0.take() else {
            return Err(StorageError::Backend("upload already finished".into()));
        };
        match timed(upload.complete()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let _ = timed(upload.abort()).await;
                Err(backend(e))
            }
            Err(e) => {
                let _ = timed(upload.abort()).await;
                Err(e)
            }
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = timed(upload.abort()).await.and_then(|r| r.map_err(backend)) {
                        tracing::warn!(error = %e, "aborting an unfinished multipart upload failed");
                    }
                });
            }
        }
    }
}

/// Streams `body` into `path`: one PUT when it fits in [`PART_SIZE`],
/// otherwise a multipart upload fed one part at a time (the next part is
/// read only once the previous one is stored).
async fn stream_into(
    store: &AmazonS3,
    path: &Path,
    content_type: &str,
    mut body: ByteStream,
    max: u64,
) -> Result<u64, UploadError> {
    let mut buffer = PutPayloadMut::new();
    let mut upload: Option<PendingUpload> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        total += chunk.len() as u64;
        if total > max {
            return Err(UploadError::TooLarge);
        }
        buffer.push(chunk);
        if buffer.content_length() >= PART_SIZE {
            let part = std::mem::take(&mut buffer).freeze();
            let pending = match upload.as_mut() {
                Some(p) => p,
                None => {
                    let opts = PutMultipartOptions {
                        attributes: content_type_attributes(content_type),
                        ..PutMultipartOptions::default()
                    };
                    let started = timed(store.put_multipart_opts(path, opts))
                        .await?
                        .map_err(backend)?;
                    upload.insert(PendingUpload(Some(started)))
                }
            };
            pending.put_part(part).await?;
        }
    }
    match upload {
        Some(mut pending) => {
            if !buffer.is_empty() {
                pending.put_part(buffer.freeze()).await?;
            }
            pending.complete().await?;
        }
        None => {
            let opts = PutOptions {
                attributes: content_type_attributes(content_type),
                ..PutOptions::default()
            };
            timed(store.put_opts(path, buffer.freeze(), opts))
                .await?
                .map_err(backend)?;
        }
    }
    Ok(total)
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    async fn presign_put(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        expires: Duration,
    ) -> Result<String, StorageError> {
        self.presign_upload(bucket, key, content_type, None, expires)
    }

    async fn presign_put_sized(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires: Duration,
    ) -> Result<String, StorageError> {
        self.presign_upload(bucket, key, content_type, Some(content_length), expires)
    }

    async fn presign_get(
        &self,
        bucket: Bucket,
        key: &str,
        expires: Duration,
    ) -> Result<String, StorageError> {
        let path = object_path(key)?;
        let store = &self.bucket(bucket).store;
        timed(store.signed_url(reqwest::Method::GET, &path, expires))
            .await?
            .map(|u| u.to_string())
            .map_err(backend)
    }

    async fn head(&self, bucket: Bucket, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = object_path(key)?;
        let store = &self.bucket(bucket).store;
        // A HEAD through `get_opts` also returns the attributes (plain
        // `head` drops the Content-Type).
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match timed(store.get_opts(&path, opts)).await? {
            Ok(res) => Ok(Some(ObjectInfo {
                size: res.meta.size,
                content_type: res
                    .attributes
                    .get(&Attribute::ContentType)
                    .map(|v| v.to_string())
                    .filter(|v| !v.is_empty()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Bytes>, StorageError> {
        let path = object_path(key)?;
        let store = &self.bucket(bucket).store;
        let fetch = async {
            let res = store.get(&path).await?;
            res.bytes().await
        };
        match timed(fetch).await? {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let path = object_path(key)?;
        let store = &self.bucket(bucket).store;
        let opts = PutOptions {
            attributes: content_type_attributes(content_type),
            ..PutOptions::default()
        };
        timed(store.put_opts(&path, PutPayload::from(body), opts))
            .await?
            .map(|_| ())
            .map_err(backend)
    }

    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        body: ByteStream,
        max: u64,
    ) -> Result<u64, UploadError> {
        let path = object_path(key)?;
        stream_into(&self.bucket(bucket).store, &path, content_type, body, max).await
    }

    fn presigned_puts_overwrite(&self) -> bool {
        true
    }

    async fn copy(&self, bucket: Bucket, from: &str, to: &str) -> Result<(), StorageError> {
        let (from, to) = (object_path(from)?, object_path(to)?);
        let store = &self.bucket(bucket).store;
        // CopyObject keeps the source's metadata, Content-Type included.
        timed(store.copy(&from, &to)).await?.map_err(backend)
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<(), StorageError> {
        let path = object_path(key)?;
        let store = &self.bucket(bucket).store;
        match timed(store.delete(&path)).await? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    fn public_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn cfg(endpoint: &str, public_domain: &str, region: &str) -> S3Config {
        S3Config {
            bucket_public: "pub".into(),
            bucket_private: "priv".into(),
            region: region.into(),
            access_key: "AKID".into(),
            secret_key: "SECRET".into(),
            endpoint: endpoint.into(),
            public_domain: public_domain.into(),
        }
    }

    #[test]
    fn public_url_uses_the_public_domain_or_the_aws_host() {
        let s = S3Storage::new(&cfg(
            "http://127.0.0.1:9090",
            "https://cdn.example.com/",
            "eu-west-1",
        ))
        .unwrap();
        assert_eq!(s.public_url("a.png"), "https://cdn.example.com/a.png");
        let s = S3Storage::new(&cfg("", "", "eu-west-1")).unwrap();
        assert_eq!(
            s.public_url("a.png"),
            "https://pub.s3.eu-west-1.amazonaws.com/a.png"
        );
        let s = S3Storage::new(&cfg("", "", "")).unwrap();
        assert_eq!(
            s.public_url("a.png"),
            "https://pub.s3.us-east-1.amazonaws.com/a.png"
        );
    }

    #[tokio::test]
    async fn put_presign_is_path_style_and_signs_length_and_type() {
        let s = S3Storage::new(&cfg("http://127.0.0.1:9090/", "", "us-east-1")).unwrap();
        let url = s
            .presign_put_sized(
                Bucket::Private,
                "1-x.png",
                "image/png",
                10,
                Duration::from_secs(900),
            )
            .await
            .unwrap();
        let parsed = Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/priv/1-x.png");
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["X-Amz-SignedHeaders"], "content-length;content-type;host");
        assert!(s
            .presign_put(Bucket::Public, "", "image/png", Duration::from_secs(1))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn own_signer_agrees_with_object_store() {
        // Same request, same instant: our SigV4 must produce object_store's
        // signature, which proves the canonicalisation matches.
        let s = S3Storage::new(&cfg("http://127.0.0.1:9090", "", "eu-central-1")).unwrap();
        let theirs = s
            .presign_get(Bucket::Public, "123-abc.jpg", Duration::from_secs(600))
            .await
            .unwrap();
        let theirs = Url::parse(&theirs).unwrap();
        let q: std::collections::HashMap<_, _> = theirs.query_pairs().into_owned().collect();
        let at = NaiveDateTime::parse_from_str(&q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        let mut unsigned = theirs.clone();
        unsigned.set_query(None);
        let ours = s
            .presigner
            .presign("GET", &unsigned, &[], Duration::from_secs(600), at);
        assert_eq!(ours.as_str(), theirs.as_str());
    }
}
