//! Extractors for authenticated routes: [`AuthUser`] (Bearer token) and
//! [`AdminUser`] (Bearer token + admin role).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::principal::{self, Caller, Principal, TokenChecked};
use crate::error::AppError;
use crate::state::AppState;

/// The authenticated caller. Rejects with the contract's 401/403/503.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Principal);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        // The auth middleware may already have resolved the principal.
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(AuthUser(p.clone()));
        }
        let token = bearer_token(parts).ok_or_else(AppError::unauthorized)?;
        let p =
            principal::authenticate(&state.db, &state.redis, &state.cfg.jwt_secret, token).await?;
        parts.extensions.insert(p.clone());
        Ok(AuthUser(p))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(t) = parts.extensions.get::<TokenChecked>() {
            return Ok(Caller::Deferred(t.clone()));
        }
        let AuthUser(p) = AuthUser::from_request_parts(parts, state).await?;
        Ok(Caller::Verified(p))
    }
}

/// An authenticated admin; others get 403 `Admin access required`.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Principal);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let AuthUser(p) = AuthUser::from_request_parts(parts, state).await?;
        if !p.is_admin() {
            return Err(AppError::forbidden("Admin access required"));
        }
        Ok(AdminUser(p))
    }
}

/// `Authorization: Bearer <token>`, split strictly on one space as the
/// reference does (`bearer x` or extra spaces are refused).
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get("authorization")?.to_str().ok()?;
    let mut it = value.split(' ');
    let (scheme, token, rest) = (it.next()?, it.next()?, it.next());
    if scheme != "Bearer" || rest.is_some() || token.is_empty() {
        return None;
    }
    Some(token)
}
