//! Rules of idempotent sends: the header's form, what makes two requests
//! "the same", and what a retry gets.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::repo;
use crate::error::{AppError, AppResult};
use crate::messages::service::SendInput;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest accepted key.
pub const MAX_LEN: usize = 128;

/// A well-formed `Idempotency-Key`: 1-128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Validates one header value.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let ok =
            (1..=MAX_LEN).contains(&raw.len()) && raw.iter().all(|b| (0x20..=0x7e).contains(b));
        ok.then(|| Self(String::from_utf8_lossy(raw).into_owned()))
    }

    /// The key of a request, if it sent one; 400 for a malformed or
    /// repeated header.
    pub fn from_headers(headers: &HeaderMap) -> AppResult<Option<Self>> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        let invalid = || {
            AppError::bad_request(
                "Invalid Idempotency-Key header: send one value of 1 to 128 printable ASCII characters",
            )
        };
        if values.next().is_some() {
            return Err(invalid());
        }
        Self::parse(first.as_bytes()).map(Some).ok_or_else(invalid)
    }
}

/// A key with the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: IdempotencyKey,
    pub request_hash: Vec<u8>,
}

impl Claim {
    /// Fingerprints the validated request, so bodies that mean the same
    /// message (e.g. differing only in surrounding whitespace) match.
    pub fn new(key: IdempotencyKey, input: &SendInput) -> Self {
        let canonical = serde_json::json!([
            input.chat_id,
            input.content,
            input.attachment_ids,
            input.reply_to_id,
        ]);
        Self {
            key,
            request_hash: Sha256::digest(canonical.to_string().as_bytes()).to_vec(),
        }
    }

    /// The message an earlier request with this key created, if one did in
    /// the last 24 h; 409 when that request was a different one.
    pub async fn prior(&self, conn: &mut PgConnection, user: Uuid) -> AppResult<Option<Uuid>> {
        match repo::find(conn, user, self.key.as_str()).await? {
            None => Ok(None),
            Some((message_id, hash)) if hash == self.request_hash => Ok(Some(message_id)),
            Some(_) => Err(AppError::conflict(
                "Idempotency-Key was already used with a different request",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_form() {
        assert!(IdempotencyKey::parse(b"a").is_some());
        assert!(IdempotencyKey::parse(b"retry 1 ~!").is_some());
        assert!(IdempotencyKey::parse(&[b'k'; MAX_LEN]).is_some());
        assert!(IdempotencyKey::parse(&[b'k'; MAX_LEN + 1]).is_none());
        assert!(IdempotencyKey::parse(b"").is_none());
        assert!(IdempotencyKey::parse(b"tab\there").is_none());
        assert!(IdempotencyKey::parse("caf\u{e9}".as_bytes()).is_none());
    }

    #[test]
    fn repeated_header_is_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(IdempotencyKey::from_headers(&h).unwrap(), None);
        h.append(HEADER, "one".parse().unwrap());
        assert!(IdempotencyKey::from_headers(&h).unwrap().is_some());
        h.append(HEADER, "two".parse().unwrap());
        assert!(IdempotencyKey::from_headers(&h).is_err());
    }
}
