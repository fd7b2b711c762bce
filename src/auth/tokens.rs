//! JWTs with the reference's claim names (`user_id`, `iat_ms`, `iat`, `exp`,
//! `iss`), so tokens minted by either implementation verify in both.
//!
//! Sign-in tokens of this service also carry `rev`: the user's revoke-all
//! marker when the token was issued (`""` when there was none). Revoke-all
//! replaces the marker, so such a token is revoked exactly when the marker
//! changed, whatever the issuing instance's clock said (issue 15, C11).
//! Tokens without `rev` (the reference's, older ones) are revoked by issue
//! time, and refused when that time is more than [`MAX_FUTURE_SKEW_MS`]
//! ahead: a clock running ahead would otherwise mint tokens that outlive
//! a revoke-all.
//!
//! Since issue 18 sign-in tokens also carry `sid`, the login session
//! (`sessions` row) they belong to; tokens without it (issued before the
//! upgrade) keep today's rules.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub user_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The revoke-all marker the token was issued under (see the module doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// The login session (extension, issue 18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// How far in the future a token without `rev` may claim to be issued.
pub const MAX_FUTURE_SKEW_MS: i64 = 2000;

impl Claims {
    /// Issue time used for revocation: `iat_ms` when set, else `iat` seconds.
    pub fn issued_at_ms(&self) -> i64 {
        match self.iat_ms {
            Some(ms) if ms > 0 => ms,
            _ => self.iat.unwrap_or(0) * 1000,
        }
    }
}

/// Why a token was refused (all map to 401).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed or badly signed token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token has no issue time")]
    NoIssueTime,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token signing failed: {0}")]
    Signing(String),
}

/// Mints a token for `user_id`, valid for `exp_secs`, in the reference's
/// shape (no `rev`: revoked by issue time).
pub fn issue(secret: &str, exp_secs: i64, user_id: Uuid) -> Result<String, TokenError> {
    mint(secret, exp_secs, user_id, None, None)
}

/// Mints a sign-in token bound to the user's current revoke-all `marker`
/// (`None` when there is none) and to the login session `sid`.
pub fn issue_session(
    secret: &str,
    exp_secs: i64,
    user_id: Uuid,
    marker: Option<&str>,
    sid: Uuid,
) -> Result<String, TokenError> {
    mint(
        secret,
        exp_secs,
        user_id,
        Some(marker.unwrap_or_default()),
        Some(sid),
    )
}

fn mint(
    secret: &str,
    exp_secs: i64,
    user_id: Uuid,
    rev: Option<&str>,
    sid: Option<Uuid>,
) -> Result<String, TokenError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let iat = now_ms / 1000;
    let claims = Claims {
        user_id,
        iat_ms: Some(now_ms),
        iat: Some(iat),
        exp: Some(iat + exp_secs),
        iss: Some("AtoiTalkAPI".into()),
        rev: rev.map(str::to_string),
        sid,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| TokenError::Signing(e.to_string()))
}

/// Verifies signature (any HMAC algorithm), `exp` (when present, no leeway),
/// `nbf` (when present), the presence of `iat`, and for tokens without
/// `rev` an issue time at most [`MAX_FUTURE_SKEW_MS`] ahead.
pub fn verify(secret: &str, token: &str) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    validation.required_spec_claims = HashSet::new();
    // Checked below with the reference's rule (expired when now >= exp).
    validation.validate_exp = false;
    validation.validate_nbf = true;
    validation.leeway = 0;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|_| TokenError::Invalid)?;
    let claims = data.claims;
    if claims.iat.is_none() && claims.iat_ms.is_none() {
        return Err(TokenError::NoIssueTime);
    }
    let now = chrono::Utc::now();
    if let Some(exp) = claims.exp {
        if now.timestamp() >= exp {
            return Err(TokenError::Expired);
        }
    }
    if claims.rev.is_none() && claims.issued_at_ms() > now.timestamp_millis() + MAX_FUTURE_SKEW_MS {
        return Err(TokenError::IssuedInFuture);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_secret() {
        let id = Uuid::now_v7();
        let t = issue("s1", 60, id).unwrap();
        assert_eq!(verify("s1", &t).unwrap().user_id, id);
        assert!(verify("s2", &t).is_err());
        assert!(verify("s1", "not-a-token").is_err());
    }

    #[test]
    fn expired_token_is_refused() {
        let t = issue("s", -1, Uuid::now_v7()).unwrap();
        assert!(matches!(verify("s", &t), Err(TokenError::Expired)));
    }

    #[test]
    fn iat_ms_takes_precedence() {
        let c = Claims {
            user_id: Uuid::nil(),
            iat_ms: Some(1_700_000_000_501),
            iat: Some(1_700_000_000),
            exp: None,
            iss: None,
            rev: None,
            sid: None,
        };
        assert_eq!(c.issued_at_ms(), 1_700_000_000_501);
    }
}
