//! AWS Signature V4 query-string presigning with extra signed headers.
//!
//! `object_store`'s `Signer` signs only `host`; the contract requires the
//! upload URL to bind `Content-Type` and `Content-Length` too (the URL's
//! `X-Amz-SignedHeaders` lists `content-length`), so uploads are presigned
//! here. Follows <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use url::Url;

/// The longest validity S3 accepts for a presigned URL (7 days).
const MAX_EXPIRES_SECS: u64 = 604_800;

/// Static credentials plus the signing region.
#[derive(Clone)]
pub(crate) struct Presigner {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Presigner")
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Presigner {
    /// Presigns `method url` valid for `expires` from `now`, binding the
    /// given headers (names are lower-cased; `host` is always added).
    pub fn presign(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, String)],
        expires: Duration,
        now: DateTime<Utc>,
    ) -> Url {
        let mut url = url.clone();
        let date = now.format("%Y%m%d").to_string();
        let timestamp = now.format("%Y%m%dT%H%M%SZ").to_string();
        let scope = format!("{date}/{}/s3/aws4_request", self.region);

        let mut canonical: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), normalize_header_value(v)))
            .collect();
        canonical.push(("host".into(), host_of(&url)));
        canonical.sort();
        canonical.dedup_by(|a, b| a.0 == b.0);
        let signed_headers = canonical
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers = canonical.iter().fold(String::new(), |mut s, (k, v)| {
            let _ = writeln!(s, "{k}:{v}");
            s
        });

        let expires_secs = expires.as_secs().clamp(1, MAX_EXPIRES_SECS);
        url.query_pairs_mut()
            .append_pair("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
            .append_pair("X-Amz-Credential", &format!("{}/{scope}", self.access_key))
            .append_pair("X-Amz-Date", &timestamp)
            .append_pair("X-Amz-Expires", &expires_secs.to_string())
            .append_pair("X-Amz-SignedHeaders", &signed_headers);

        let canonical_request = format!(
            "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD",
            url.path(),
            canonical_query(&url),
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let k_date = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, b"s3");
        let k_signing = hmac(&k_service, b"aws4_request");
        let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
        url.query_pairs_mut()
            .append_pair("X-Amz-Signature", &signature);
        url
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `host[:port]` as the client will send it (default ports are omitted by
/// `Url`, as by HTTP clients).
fn host_of(url: &Url) -> String {
    url[url::Position::BeforeHost..url::Position::AfterPort].to_string()
}

/// Trims and collapses inner runs of spaces, as SigV4 requires.
fn normalize_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Query parameters sorted by name, both sides strictly percent-encoded.
fn canonical_query(url: &Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k, true), uri_encode(&v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4 URI encoding: everything but `A-Za-z0-9-._~` is `%XX` encoded;
/// `/` is kept when `encode_slash` is false (object key paths).
pub(crate) fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn example() -> Presigner {
        Presigner {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn matches_the_aws_documentation_example() {
        // The presigned GET of the S3 "query string authentication" docs.
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let signed = example().presign("GET", &url, &[], Duration::from_secs(86400), now);
        let sig = signed
            .query_pairs()
            .find(|(k, _)| k == "X-Amz-Signature")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert_eq!(
            sig,
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn signs_content_headers_in_order() {
        let url = Url::parse("http://127.0.0.1:9090/bucket/a.png").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let signed = example().presign(
            "PUT",
            &url,
            &[
                ("Content-Type", "image/png".into()),
                ("Content-Length", "42".into()),
            ],
            Duration::from_secs(900),
            now,
        );
        let q: std::collections::HashMap<_, _> = signed.query_pairs().into_owned().collect();
        assert_eq!(q["X-Amz-SignedHeaders"], "content-length;content-type;host");
        assert_eq!(q["X-Amz-Expires"], "900");
        assert_eq!(q["X-Amz-Date"], "20260101T000000Z");
        assert_eq!(
            q["X-Amz-Credential"],
            "AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/aws4_request"
        );
        // Another length gives another signature.
        let other = example().presign(
            "PUT",
            &url,
            &[
                ("Content-Type", "image/png".into()),
                ("Content-Length", "43".into()),
            ],
            Duration::from_secs(900),
            now,
        );
        assert_ne!(signed, other);
    }

    #[test]
    fn uri_encoding_is_strict() {
        assert_eq!(uri_encode("a b/c~d*e", false), "a%20b/c~d%2Ae");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
    }
}
