//! Streaming downloads for the local backend: the file is read in small
//! chunks while the client consumes it (constant memory per download), with
//! single `Range` requests answered 206 and unsatisfiable ones 416.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::error_response;

/// Bytes read from disk per chunk.
const CHUNK: usize = 64 * 1024;

/// What a `Range` header asks of an object of a given length.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeSpec {
    /// No header, another unit, several ranges or bad syntax: the whole
    /// object (RFC 9110 lets a server ignore what it does not support).
    Full,
    /// Inclusive `first..=last`, already clamped to the object.
    Partial(u64, u64),
    /// No byte of the range exists.
    Unsatisfiable,
}

/// Parses one `bytes=` range against an object of `len` bytes.
pub(super) fn parse_range(header: Option<&str>, len: u64) -> RangeSpec {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match num(suffix) {
            None => RangeSpec::Full,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Partial(len.saturating_sub(n), len - 1),
        },
        (a, "") => match num(a) {
            None => RangeSpec::Full,
            Some(a) if a >= len => RangeSpec::Unsatisfiable,
            Some(a) => RangeSpec::Partial(a, len - 1),
        },
        (a, b) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    RangeSpec::Unsatisfiable
                } else {
                    RangeSpec::Partial(a, b.min(len - 1))
                }
            }
            _ => RangeSpec::Full,
        },
    }
}

/// The response for `file` (of `len` bytes) under `range`. The transfer
/// `permit` lives as long as the body, so the slot is freed when the
/// download ends or the client goes away.
pub(super) async fn file_response(
    mut file: tokio::fs::File,
    len: u64,
    range: RangeSpec,
    permit: OwnedSemaphorePermit,
) -> std::io::Result<Response> {
    let (status, start, count) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, len),
        RangeSpec::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        RangeSpec::Unsatisfiable => {
            let mut res =
                error_response(StatusCode::RANGE_NOT_SATISFIABLE, "Range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await?;
    }
    let stream = futures::stream::try_unfold(
        (file, count, permit),
        |(mut file, left, permit)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = left.min(CHUNK as u64) as usize;
            let mut buf = BytesMut::zeroed(want);
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "object shorter than its length",
                ));
            }
            buf.truncate(n);
            let chunk: Bytes = buf.freeze();
            Ok::<_, std::io::Error>(Some((chunk, (file, left - n as u64, permit))))
        },
    );
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), RangeSpec::Full);
        assert_eq!(r("bytes=0-9"), RangeSpec::Partial(0, 9));
        assert_eq!(r("bytes=90-"), RangeSpec::Partial(90, 99));
        assert_eq!(r("bytes=-10"), RangeSpec::Partial(90, 99));
        assert_eq!(r("bytes=-1000"), RangeSpec::Partial(0, 99));
        assert_eq!(r("bytes=50-1000"), RangeSpec::Partial(50, 99));
        assert_eq!(r("bytes=100-"), RangeSpec::Unsatisfiable);
        assert_eq!(r("bytes=200-300"), RangeSpec::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeSpec::Unsatisfiable);
        for ignored in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=9-1",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes",
        ] {
            assert_eq!(r(ignored), RangeSpec::Full, "{ignored}");
        }
    }
}
