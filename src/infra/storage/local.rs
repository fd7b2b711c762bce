//! Local-directory backend for installs without S3: objects live under
//! `<MEDIA_LOCAL_DIR>/<public|private>/<key>` and the "presigned" URLs point
//! at the API itself (`/storage/{bucket}/{key}`), signed with an HMAC key
//! derived from `JWT_SECRET`.
//!
//! Layout: `public/` and `private/` hold the bytes, `meta/<bucket>/<key>.json`
//! the content type (kept outside the object directories so no key can
//! collide with a sidecar), `tmp/` the uploads in flight (renamed into place,
//! so readers never see half-written objects).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use super::{BodyError, Bucket, ByteStream, ObjectInfo, Storage, StorageError};

/// Largest object the local backend accepts (attachments are ≤ 20 MiB).
pub const MAX_OBJECT_SIZE: usize = 25 * 1024 * 1024;

/// Longest key accepted (the regex' 1 + 254 characters).
const MAX_KEY_LEN: usize = 255;

/// Domain separation: the JWT secret never signs URLs directly.
const KEY_DERIVATION_LABEL: &[u8] = b"atoitalk-local-storage";

type HmacSha256 = Hmac<Sha256>;

/// Checks a key against `^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$` and refuses
/// `..` anywhere: a key is always one plain file name, so it can never leave
/// its bucket directory.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bytes = key.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_KEY_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !key.contains("..");
    if valid {
        Ok(())
    } else {
        Err(StorageError::InvalidKey)
    }
}

impl Bucket {
    /// The bucket's name in local paths and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Public => "public",
            Bucket::Private => "private",
        }
    }

    /// Parses a URL segment (`public` / `private`).
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "public" => Some(Bucket::Public),
            "private" => Some(Bucket::Private),
            _ => None,
        }
    }
}

/// What a signed URL authorises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
        }
    }
}

/// Why a signed request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Invalid signature")]
    Invalid,
    #[error("Signature expired")]
    Expired,
}

/// The parts of a signature that travel in (or are implied by) a request.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub op: Op,
    pub bucket: Bucket,
    pub key: &'a str,
    /// Unix seconds after which the URL is refused.
    pub expires: u64,
    /// PUT only: the Content-Type the uploader must send (empty for GET).
    pub content_type: &'a str,
    /// PUT only: the exact body length, when the URL binds one.
    pub size: Option<u64>,
}

/// Sidecar with the object's stored content type.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    content_type: String,
}

/// A stored object read back for serving.
#[derive(Debug)]
pub struct LocalObject {
    pub body: Bytes,
    pub content_type: Option<String>,
}

/// Outcome of streaming an upload into place.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("Request body too large")]
    TooLarge,
    #[error("Body length does not match the signed size")]
    SizeMismatch,
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Temporary files of one upload, removed when dropped unless kept: an
/// upload abandoned mid-way (client gone, request timed out) leaves no
/// file in `tmp/`.
struct TempFiles([PathBuf; 2], bool);

impl Drop for TempFiles {
    fn drop(&mut self) {
        if !self.1 {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Objects on the local disk, served by [`super::local_routes`].
pub struct LocalStorage {
    root: PathBuf,
    base_url: String,
    signing_key: Vec<u8>,
}

impl std::fmt::Debug for LocalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStorage")
            .field("root", &self.root)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io_err(e: std::io::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

impl LocalStorage {
    /// Creates the directory layout under `root` (synchronously: this runs
    /// once at start-up). `app_url` is the API's external base URL.
    pub fn new(root: &Path, app_url: &str, jwt_secret: &str) -> anyhow::Result<Self> {
        for dir in ["public", "private", "meta/public", "meta/private", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path)
                .map_err(|e| anyhow::anyhow!("MEDIA_LOCAL_DIR: cannot create {path:?}: {e}"))?;
        }
        let mut m = mac(jwt_secret.as_bytes());
        m.update(KEY_DERIVATION_LABEL);
        Ok(Self {
            root: root.to_path_buf(),
            base_url: app_url.trim_end_matches('/').to_string(),
            signing_key: m.finalize().into_bytes().to_vec(),
        })
    }

    fn object_path(&self, bucket: Bucket, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(bucket.as_str()).join(key))
    }

    fn meta_path(&self, bucket: Bucket, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self
            .root
            .join("meta")
            .join(bucket.as_str())
            .join(format!("{key}.json")))
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The MAC over a request: `op\nbucket\nkey\nexpires\nsize\ncontent_type`.
    /// The content type comes last, so no field can spill into another.
    fn mac_for(&self, req: &SignedRequest<'_>) -> HmacSha256 {
        let mut m = mac(&self.signing_key);
        let size = req.size.map(|s| s.to_string()).unwrap_or_default();
        m.update(
            format!(
                "{}\n{}\n{}\n{}\n{}\n{}",
                req.op.as_str(),
                req.bucket.as_str(),
                req.key,
                req.expires,
                size,
                req.content_type
            )
            .as_bytes(),
        );
        m
    }

    /// Hex signature of a request.
    pub fn sign(&self, req: &SignedRequest<'_>) -> String {
        hex::encode(self.mac_for(req).finalize().into_bytes())
    }

    /// Checks a hex signature (constant-time) and then the expiry.
    pub fn verify(&self, req: &SignedRequest<'_>, sig_hex: &str) -> Result<(), SignatureError> {
        let sig = hex::decode(sig_hex).map_err(|_| SignatureError::Invalid)?;
        self.mac_for(req)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        if now_unix() > req.expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    /// The URL a signed request is served at.
    pub fn signed_url(&self, req: &SignedRequest<'_>) -> Result<String, StorageError> {
        validate_key(req.key)?;
        let size = req.size.map(|s| format!("&size={s}")).unwrap_or_default();
        Ok(format!(
            "{}/storage/{}/{}?op={}&expires={}{size}&sig={}",
            self.base_url,
            req.bucket.as_str(),
            req.key,
            req.op.as_str(),
            req.expires,
            self.sign(req)
        ))
    }

    fn expiry(expires: Duration) -> u64 {
        now_unix().saturating_add(expires.as_secs())
    }

    /// Streams `body` into a temporary file and renames it into place with
    /// its content type. At most `max` bytes, exactly `size` when given;
    /// returns the length written; nothing is left behind on failure.
    pub async fn write_stream<S, E>(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        size: Option<u64>,
        max: u64,
        body: S,
    ) -> Result<u64, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<BodyError>,
    {
        let target = self.object_path(bucket, key)?;
        let meta_target = self.meta_path(bucket, key)?;
        let mut temp = TempFiles([self.temp_path(), self.temp_path()], false);
        let [tmp, meta_tmp] = &temp.0;
        let written = self
            .write_files(tmp, meta_tmp, content_type, size, max, body)
            .await?;
        // Sidecar first: a reader that sees the new bytes also sees their
        // type; a new object without bytes yet is simply absent.
        tokio::fs::rename(meta_tmp, &meta_target)
            .await
            .map_err(io_err)?;
        tokio::fs::rename(tmp, &target).await.map_err(io_err)?;
        temp.1 = true;
        Ok(written)
    }

    async fn write_files<S, E>(
        &self,
        tmp: &Path,
        meta_tmp: &Path,
        content_type: &str,
        size: Option<u64>,
        max: u64,
        body: S,
    ) -> Result<u64, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<BodyError>,
    {
        let mut file = tokio::fs::File::create(tmp).await.map_err(io_err)?;
        let mut written: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UploadError::Body(e.into()))?;
            written += chunk.len() as u64;
            if written > max {
                return Err(UploadError::TooLarge);
            }
            if size.is_some_and(|s| written > s) {
                return Err(UploadError::SizeMismatch);
            }
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        if size.is_some_and(|s| written != s) {
            return Err(UploadError::SizeMismatch);
        }
        file.flush().await.map_err(io_err)?;
        file.sync_all().await.map_err(io_err)?;
        drop(file);
        let meta = serde_json::to_vec(&Meta {
            content_type: content_type.to_string(),
        })
        .map_err(|e| StorageError::Backend(e.to_string()))?;
        tokio::fs::write(meta_tmp, meta).await.map_err(io_err)?;
        Ok(written)
    }

    async fn read_content_type(&self, bucket: Bucket, key: &str) -> Option<String> {
        let path = self.meta_path(bucket, key).ok()?;
        let raw = tokio::fs::read(path).await.ok()?;
        let meta: Meta = serde_json::from_slice(&raw).ok()?;
        Some(meta.content_type).filter(|c| !c.is_empty())
    }

    /// Reads a whole object (≤ [`MAX_OBJECT_SIZE`]), `None` when missing.
    pub async fn read(
        &self,
        bucket: Bucket,
        key: &str,
    ) -> Result<Option<LocalObject>, StorageError> {
        let path = self.object_path(bucket, key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(LocalObject {
                body: Bytes::from(bytes),
                content_type: self.read_content_type(bucket, key).await,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }
}

#[async_trait::async_trait]
impl Storage for LocalStorage {
    async fn presign_put(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        expires: Duration,
    ) -> Result<String, StorageError> {
        self.signed_url(&SignedRequest {
            op: Op::Put,
            bucket,
            key,
            expires: Self::expiry(expires),
            content_type,
            size: None,
        })
    }

    async fn presign_put_sized(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires: Duration,
    ) -> Result<String, StorageError> {
        self.signed_url(&SignedRequest {
            op: Op::Put,
            bucket,
            key,
            expires: Self::expiry(expires),
            content_type,
            size: Some(content_length),
        })
    }

    async fn presign_get(
        &self,
        bucket: Bucket,
        key: &str,
        expires: Duration,
    ) -> Result<String, StorageError> {
        self.signed_url(&SignedRequest {
            op: Op::Get,
            bucket,
            key,
            expires: Self::expiry(expires),
            content_type: "",
            size: None,
        })
    }

    async fn head(&self, bucket: Bucket, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.object_path(bucket, key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo {
                size: m.len(),
                content_type: self.read_content_type(bucket, key).await,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Bytes>, StorageError> {
        Ok(self.read(bucket, key).await?.map(|o| o.body))
    }

    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let len = body.len() as u64;
        let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
        match self
            .write_stream(bucket, key, content_type, Some(len), len, stream)
            .await
        {
            Ok(_) => Ok(()),
            Err(UploadError::Storage(e)) => Err(e),
            Err(e) => Err(StorageError::Backend(e.to_string())),
        }
    }

    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        body: ByteStream,
        max: u64,
    ) -> Result<u64, UploadError> {
        self.write_stream(bucket, key, content_type, None, max, body)
            .await
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<(), StorageError> {
        let path = self.object_path(bucket, key)?;
        let meta = self.meta_path(bucket, key)?;
        // Bytes first: once they are gone the object is gone for readers.
        for p in [path, meta] {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(())
    }

    fn public_url(&self, key: &str) -> String {
        format!("{}/storage/public/{key}", self.base_url)
    }

    fn as_local(&self) -> Option<&LocalStorage> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (LocalStorage, PathBuf) {
        let dir = std::env::temp_dir().join(format!("atoitalk-unit-{}", uuid::Uuid::new_v4()));
        let s = LocalStorage::new(&dir, "http://api.test/", "secret").unwrap();
        (s, dir)
    }

    #[test]
    fn key_validation() {
        for ok in [
            "a",
            "1712345678901234567-0b5f1e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b.png",
            "A_b-c.d",
            &"a".repeat(255),
        ] {
            assert!(validate_key(ok).is_ok(), "{ok:?} should be valid");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/../b",
            "a..b",
            "a/b",
            "a\\b",
            ".hidden",
            "-dash",
            "_x",
            "a b",
            "a%2Fb",
            "é.png",
            "a\0b",
            &"a".repeat(256),
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    fn req<'a>(op: Op, key: &'a str, expires: u64) -> SignedRequest<'a> {
        SignedRequest {
            op,
            bucket: Bucket::Private,
            key,
            expires,
            content_type: if op == Op::Put { "image/png" } else { "" },
            size: if op == Op::Put { Some(10) } else { None },
        }
    }

    #[test]
    fn signatures_bind_every_field() {
        let (s, dir) = storage();
        let future = now_unix() + 60;
        let base = req(Op::Put, "a.png", future);
        let sig = s.sign(&base);
        assert!(s.verify(&base, &sig).is_ok());
        let variants = [
            SignedRequest {
                op: Op::Get,
                ..base
            },
            SignedRequest {
                bucket: Bucket::Public,
                ..base
            },
            SignedRequest {
                key: "b.png",
                ..base
            },
            SignedRequest {
                expires: future + 1,
                ..base
            },
            SignedRequest {
                content_type: "text/html",
                ..base
            },
            SignedRequest {
                size: Some(11),
                ..base
            },
            SignedRequest { size: None, ..base },
        ];
        for v in variants {
            assert_eq!(s.verify(&v, &sig), Err(SignatureError::Invalid), "{v:?}");
        }
        assert_eq!(s.verify(&base, "zz"), Err(SignatureError::Invalid));
        assert_eq!(s.verify(&base, ""), Err(SignatureError::Invalid));
        // Another secret, another key.
        let other = LocalStorage::new(&dir, "http://api.test", "other").unwrap();
        assert_eq!(other.verify(&base, &sig), Err(SignatureError::Invalid));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn expiry_is_checked_after_the_signature() {
        let (s, dir) = storage();
        let past = req(Op::Get, "a.png", now_unix() - 1);
        let sig = s.sign(&past);
        assert_eq!(s.verify(&past, &sig), Err(SignatureError::Expired));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn urls_and_round_trip() {
        let (s, dir) = storage();
        assert_eq!(
            s.public_url("a.png"),
            "http://api.test/storage/public/a.png"
        );
        let url = s
            .presign_put_sized(
                Bucket::Public,
                "a.png",
                "image/png",
                3,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(url.starts_with("http://api.test/storage/public/a.png?op=put&expires="));
        assert!(url.contains("&size=3&sig="));
        assert!(matches!(
            s.presign_get(Bucket::Private, "../x", Duration::from_secs(60))
                .await,
            Err(StorageError::InvalidKey)
        ));

        s.put(
            Bucket::Private,
            "b.txt",
            Bytes::from_static(b"abc"),
            "text/plain",
        )
        .await
        .unwrap();
        let info = s.head(Bucket::Private, "b.txt").await.unwrap().unwrap();
        assert_eq!(info.size, 3);
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        assert!(s.head(Bucket::Public, "b.txt").await.unwrap().is_none());
        assert_eq!(
            s.get(Bucket::Private, "b.txt").await.unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        s.delete(Bucket::Private, "b.txt").await.unwrap();
        s.delete(Bucket::Private, "b.txt").await.unwrap();
        assert!(s.head(Bucket::Private, "b.txt").await.unwrap().is_none());
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn failed_uploads_leave_nothing() {
        let (s, dir) = storage();
        let body = futures::stream::iter(vec![Ok::<_, std::convert::Infallible>(
            Bytes::from_static(b"abcd"),
        )]);
        let res = s
            .write_stream(
                Bucket::Public,
                "c.bin",
                "application/octet-stream",
                Some(3),
                MAX_OBJECT_SIZE as u64,
                body,
            )
            .await;
        assert!(matches!(res, Err(UploadError::SizeMismatch)));
        assert!(s.head(Bucket::Public, "c.bin").await.unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
