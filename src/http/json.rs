//! A JSON body extractor as lenient as the reference's decoder: any (or no)
//! Content-Type, unknown fields ignored, keys matched case-insensitively,
//! trailing bytes after the first value ignored. Anything it cannot decode is
//! a 400 with the contract's envelope, never a 415/422.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::AppError;

/// Largest accepted request body (the reference's 100 KiB).
pub const BODY_LIMIT: usize = 100 * 1024;

/// A decoded JSON body. Rejection is `400 Bad Request`; handlers that need
/// another message take `Result<LenientJson<T>, AppError>` and map it.
pub struct LenientJson<T>(pub T);

/// Decodes `bytes` the way the reference does. Returns `None` on any failure.
pub fn decode_lenient<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let value = stream.next()?.ok()?;
    serde_json::from_value(lowercase_keys(value)).ok()
}

/// Lower-cases the keys of the top-level object (our wire names are all
/// lower-case snake case, so this gives case-insensitive matching).
fn lowercase_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.to_lowercase(), v);
            }
            Value::Object(out)
        }
        other => other,
    }
}

impl<S, T> FromRequest<S> for LenientJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| AppError::bad_request("Bad Request"))?;
        decode_lenient(&bytes)
            .map(LenientJson)
            .ok_or_else(|| AppError::bad_request("Bad Request"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Login {
        email: String,
        #[serde(default)]
        password: Option<String>,
    }

    #[test]
    fn accepts_case_insensitive_keys_unknown_fields_and_trailing_bytes() {
        let v: Login = decode_lenient(br#"{"EMAIL":"a@b.co","x":1} trailing"#).unwrap();
        assert_eq!(v.email, "a@b.co");
        assert!(v.password.is_none());
    }

    #[test]
    fn rejects_wrong_types_and_empty_bodies() {
        assert!(decode_lenient::<Login>(br#"{"email":5}"#).is_none());
        assert!(decode_lenient::<Login>(b"").is_none());
        assert!(decode_lenient::<Login>(b"[1,2]").is_none());
    }
}
