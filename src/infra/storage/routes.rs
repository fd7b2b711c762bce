//! HTTP side of the local backend: `PUT` / `GET /storage/{bucket}/{key}`
//! answering the URLs [`LocalStorage`] signs. With S3 configured these
//! routes answer 404 (nothing is served from the API then).

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::local::{LocalStorage, Op, SignatureError, SignedRequest, UploadError, MAX_OBJECT_SIZE};
use super::{BodyError, Bucket, StorageError};
use crate::error::{error_response, AppError};
use crate::state::AppState;

/// The routes; the body limit matches the largest accepted object.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/storage/{bucket}/{key}", get(get_object).put(put_object))
        .layer(DefaultBodyLimit::max(MAX_OBJECT_SIZE))
}

/// Query parameters of a signed URL (unknown ones are ignored).
#[derive(Debug, Default)]
struct SignedQuery {
    op: Option<String>,
    expires: Option<String>,
    size: Option<String>,
    sig: Option<String>,
}

impl SignedQuery {
    fn parse(raw: Option<&str>) -> Self {
        let mut q = SignedQuery::default();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "op" => &mut q.op,
                "expires" => &mut q.expires,
                "size" => &mut q.size,
                "sig" => &mut q.sig,
                _ => continue,
            };
            // A repeated parameter is ambiguous: refuse the URL.
            if slot.is_some() {
                return SignedQuery::default();
            }
            *slot = Some(v.into_owned());
        }
        q
    }
}

fn forbidden(e: SignatureError) -> AppError {
    AppError::forbidden(e.to_string())
}

/// Resolves the backend, bucket and key, or the error refusing them.
fn target(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(&LocalStorage, Bucket, String), AppError> {
    let local = state
        .storage
        .as_local()
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    let Path((bucket, key)) = path.map_err(|_| AppError::bad_request("Invalid object key"))?;
    let bucket = Bucket::parse(&bucket).ok_or_else(|| AppError::not_found("Not Found"))?;
    super::local::validate_key(&key).map_err(|_| AppError::bad_request("Invalid object key"))?;
    Ok((local, bucket, key))
}

/// Checks `q` against `op` and returns the verified size binding.
fn verify(
    local: &LocalStorage,
    q: &SignedQuery,
    op: Op,
    bucket: Bucket,
    key: &str,
    content_type: &str,
) -> Result<Option<u64>, AppError> {
    let invalid = || forbidden(SignatureError::Invalid);
    if q.op.as_deref() != Some(op.as_str()) {
        return Err(invalid());
    }
    let expires = q
        .expires
        .as_deref()
        .and_then(|e| e.parse::<u64>().ok())
        .ok_or_else(invalid)?;
    let size = match q.size.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| invalid())?),
    };
    let sig = q.sig.as_deref().ok_or_else(invalid)?;
    let req = SignedRequest {
        op,
        bucket,
        key,
        expires,
        content_type,
        size,
    };
    local.verify(&req, sig).map_err(forbidden)?;
    Ok(size)
}

fn too_large() -> Response {
    error_response(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
}

/// `PUT /storage/{bucket}/{key}?op=put&expires=..[&size=..]&sig=..`: the
/// Content-Type header must be the signed one; the body is streamed to disk.
async fn put_object(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let (local, bucket, key) = target(&state, path)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let q = SignedQuery::parse(query.as_deref());
    let size = verify(local, &q, Op::Put, bucket, &key, content_type)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > MAX_OBJECT_SIZE as u64 {
            return Ok(too_large());
        }
        // The signed length binds the request like S3's signed header.
        if size.is_some_and(|s| s != len) {
            return Err(forbidden(SignatureError::Invalid));
        }
    }
    match local
        .write_stream(
            bucket,
            &key,
            content_type,
            size,
            MAX_OBJECT_SIZE as u64,
            body.into_data_stream(),
        )
        .await
    {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        Err(UploadError::TooLarge | UploadError::Body(BodyError::TooLarge)) => Ok(too_large()),
        Err(e @ UploadError::SizeMismatch) => Err(AppError::bad_request(e.to_string())),
        Err(UploadError::Body(_)) => Err(AppError::bad_request("Upload aborted")),
        Err(UploadError::Storage(StorageError::InvalidKey)) => {
            Err(AppError::bad_request("Invalid object key"))
        }
        Err(UploadError::Storage(e)) => Err(AppError::Internal(e.into())),
    }
}

/// `GET /storage/{bucket}/{key}`: public objects are open (stable avatar
/// URLs); private ones need a valid, unexpired GET signature.
async fn get_object(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let (local, bucket, key) = target(&state, path)?;
    if bucket == Bucket::Private {
        let q = SignedQuery::parse(query.as_deref());
        verify(local, &q, Op::Get, bucket, &key, "")?;
    }
    let object = match local.read(bucket, &key).await {
        Ok(Some(o)) => o,
        Ok(None) => return Err(AppError::not_found("Object not found")),
        Err(StorageError::InvalidKey) => return Err(AppError::bad_request("Invalid object key")),
        Err(e) => return Err(AppError::Internal(e.into())),
    };
    let content_type = object
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let cache = match bucket {
        Bucket::Public => "public, max-age=86400",
        Bucket::Private => "private, no-store",
    };
    let mut res = (StatusCode::OK, object.body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // User uploads are served from the API's origin: never let a browser
    // sniff or run them as active content.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_refuses_repeats() {
        let q = SignedQuery::parse(Some("op=get&expires=1&sig=ab&x=1"));
        assert_eq!(q.op.as_deref(), Some("get"));
        assert_eq!(q.expires.as_deref(), Some("1"));
        assert_eq!(q.sig.as_deref(), Some("ab"));
        let q = SignedQuery::parse(Some("op=get&op=put&sig=ab"));
        assert!(q.op.is_none() && q.sig.is_none());
        assert!(SignedQuery::parse(None).op.is_none());
    }
}
