//! Turning a bearer token into the authenticated user, with every check the
//! contract orders: blacklist, signature/expiry, revoke-all, existence, ban.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{sessions, tokens};
use crate::error::AppError;
use crate::infra::redis::Redis;

/// The authenticated caller of a request or socket.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    /// `user` or `admin`, read from the database (not from the token).
    pub role: String,
    /// The raw token (needed by logout).
    pub token: String,
    pub claims: tokens::Claims,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

#[derive(sqlx::FromRow)]
struct UserState {
    role: String,
    is_banned: bool,
    banned_until: Option<DateTime<Utc>>,
}

/// Authenticates a raw token. Errors carry the contract's status and message.
pub async fn authenticate(
    db: &PgPool,
    redis: &Redis,
    jwt_secret: &str,
    token: &str,
) -> Result<Principal, AppError> {
    if token.is_empty() {
        return Err(AppError::unauthorized());
    }
    // Signature first (CPU only), then blacklist + revoke-all in one round
    // trip. A bad token is still checked against the blacklist so a
    // logged-out token keeps its precise message after it expires.
    let claims = match tokens::verify(jwt_secret, token) {
        Ok(c) => c,
        Err(_) => {
            return match sessions::is_blacklisted(redis, token).await {
                Ok(true) => Err(AppError::Unauthorized("Token has been revoked".into())),
                Ok(false) => Err(AppError::unauthorized()),
                Err(e) => {
                    tracing::error!(error = %e, "session store unavailable");
                    Err(AppError::unavailable("Session service unavailable"))
                }
            }
        }
    };
    match sessions::token_state(redis, token, &claims).await {
        Ok(sessions::TokenState::LoggedOut) => {
            return Err(AppError::Unauthorized("Token has been revoked".into()))
        }
        Ok(sessions::TokenState::Revoked) => return Err(AppError::unauthorized()),
        Ok(sessions::TokenState::Live) => {}
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable");
            return Err(AppError::unavailable("Session service unavailable"));
        }
    }
    let state: Option<UserState> = sqlx::query_as(
        "SELECT role, is_banned, banned_until FROM users WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(claims.user_id)
    .fetch_optional(db)
    .await?;
    let state = state.ok_or_else(AppError::unauthorized)?;
    check_ban(db, claims.user_id, state.is_banned, state.banned_until).await?;
    Ok(Principal {
        user_id: claims.user_id,
        role: state.role,
        token: token.to_string(),
        claims,
    })
}

/// Refuses banned users; lifts a temporary ban that has run out.
async fn check_ban(
    db: &PgPool,
    user_id: Uuid,
    is_banned: bool,
    banned_until: Option<DateTime<Utc>>,
) -> Result<(), AppError> {
    if !is_banned {
        return Ok(());
    }
    match banned_until {
        None => Err(AppError::forbidden("Account is permanently banned")),
        Some(until) if until > Utc::now() => {
            Err(AppError::forbidden("Account is temporarily suspended"))
        }
        Some(_) => {
            if let Err(e) = sqlx::query(
                "UPDATE users SET is_banned = false, banned_until = NULL, ban_reason = NULL, \
                 updated_at = now() WHERE id = $1",
            )
            .bind(user_id)
            .execute(db)
            .await
            {
                tracing::warn!(error = %e, %user_id, "failed to lift expired ban");
            }
            Ok(())
        }
    }
}
