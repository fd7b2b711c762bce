//! A [`Storage`] wrapper that counts every operation by backend and result
//! (`storage_operations_total`); [`super::build`] wraps each backend in it.

use std::time::Duration;

use bytes::Bytes;

use super::{Bucket, ByteStream, LocalStorage, ObjectInfo, Storage, StorageError, UploadError};
use crate::infra::metrics::storage_op;

pub struct Metered<S> {
    inner: S,
    backend: &'static str,
}

impl<S> Metered<S> {
    pub fn new(inner: S, backend: &'static str) -> Self {
        Self { inner, backend }
    }

    fn count<T, E>(&self, op: &'static str, res: Result<T, E>) -> Result<T, E> {
        storage_op(self.backend, op, res.is_ok());
        res
    }
}

#[async_trait::async_trait]
impl<S: Storage> Storage for Metered<S> {
    async fn presign_put(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        expires: Duration,
    ) -> Result<String, StorageError> {
        let res = self
            .inner
            .presign_put(bucket, key, content_type, expires)
            .await;
        self.count("presign_put", res)
    }

    async fn presign_put_sized(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires: Duration,
    ) -> Result<String, StorageError> {
        let res = self
            .inner
            .presign_put_sized(bucket, key, content_type, content_length, expires)
            .await;
        self.count("presign_put", res)
    }

    async fn presign_get(
        &self,
        bucket: Bucket,
        key: &str,
        expires: Duration,
    ) -> Result<String, StorageError> {
        let res = self.inner.presign_get(bucket, key, expires).await;
        self.count("presign_get", res)
    }

    async fn head(&self, bucket: Bucket, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let res = self.inner.head(bucket, key).await;
        self.count("head", res)
    }

    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Bytes>, StorageError> {
        let res = self.inner.get(bucket, key).await;
        self.count("get", res)
    }

    async fn put(
        &self,
        bucket: Bucket,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let res = self.inner.put(bucket, key, body, content_type).await;
        self.count("put", res)
    }

    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &str,
        content_type: &str,
        body: ByteStream,
        max: u64,
    ) -> Result<u64, UploadError> {
        let res = self
            .inner
            .put_stream(bucket, key, content_type, body, max)
            .await;
        self.count("put_stream", res)
    }

    fn presigned_puts_overwrite(&self) -> bool {
        self.inner.presigned_puts_overwrite()
    }

    async fn copy(&self, bucket: Bucket, from: &str, to: &str) -> Result<(), StorageError> {
        let res = self.inner.copy(bucket, from, to).await;
        self.count("copy", res)
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<(), StorageError> {
        let res = self.inner.delete(bucket, key).await;
        self.count("delete", res)
    }

    fn public_url(&self, key: &str) -> String {
        self.inner.public_url(key)
    }

    fn as_local(&self) -> Option<&LocalStorage> {
        self.inner.as_local()
    }
}
