//! Turning a bearer token into the authenticated user, with every check the
//! contract orders: blacklist, signature/expiry, revoke-all, existence, ban,
//! and for tokens of a login session (`sid`, issue 18) that the session is
//! still live (read in the same query as the account).

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

    /// What the hub groups this caller's sockets by: the login session, or
    /// for tokens issued before sessions existed the token itself. Logout
    /// and remote sign-out close exactly these sockets.
    pub fn socket_key(&self) -> String {
        match self.claims.sid {
            Some(sid) => socket_key_of(sid),
            None => self.token.clone(),
        }
    }
}

/// [`Principal::socket_key`] of a login session.
pub fn socket_key_of(sid: Uuid) -> String {
    format!("sid:{sid}")
}

/// The account columns the authentication reads; the send path reads the
/// same ones in its chat-context statement ([`ACCOUNT_COLUMNS`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountState {
    pub role: String,
    pub is_banned: bool,
    pub banned_until: Option<DateTime<Utc>>,
    /// Whether the token's session is live (true when it has none).
    pub session_live: bool,
}

/// A token whose signature and Redis checks passed; its account (exists,
/// not banned, session live) is still to be read, by [`TokenChecked::verify`]
/// or, on the send path, in the statement that reads the chat.
#[derive(Debug, Clone)]
pub struct TokenChecked {
    token: String,
    claims: tokens::Claims,
    /// Whether the session's `last_seen_at` is due for a write.
    touch: bool,
}

impl TokenChecked {
    pub fn user_id(&self) -> Uuid {
        self.claims.user_id
    }

    pub fn session_id(&self) -> Option<Uuid> {
        self.claims.sid
    }

    /// Reads the account and applies [`TokenChecked::accept`].
    pub async fn verify(self, db: &PgPool) -> Result<Principal, AppError> {
        // Two statements rather than `$2 IS NULL OR EXISTS …`: with that OR,
        // PostgreSQL's custom plans look cheaper than the generic one and it
        // re-plans the statement on every request.
        let sql = if self.claims.sid.is_some() {
            "SELECT u.role, u.is_banned, u.banned_until, \
                    EXISTS (SELECT 1 FROM sessions s WHERE s.id = $2 \
                       AND s.user_id = u.id AND s.revoked_at IS NULL) AS session_live \
             FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL"
        } else {
            "SELECT u.role, u.is_banned, u.banned_until, $2::uuid IS NULL AS session_live \
             FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL"
        };
        // The session check rides on the account query: a primary-key probe,
        // no extra round trip, and every instance sees a revocation at once.
        let state: Option<AccountState> = sqlx::query_as(sql)
            .bind(self.claims.user_id)
            .bind(self.claims.sid)
            // Every authenticated request waits here when the pool runs dry,
            // so its connection is taken where the wait is counted
            // (db_pool_waiters).
            .fetch_optional(&mut *crate::infra::db::acquire(db).await?)
            .await?;
        self.accept(db, state).await
    }

    /// The verdict on the account as read (`None`: no live account): 401 for
    /// a missing account or a dead session, 403 for a ban; lifts a temporary
    /// ban that has run out and records session activity.
    pub async fn accept(
        self,
        db: &PgPool,
        state: Option<AccountState>,
    ) -> Result<Principal, AppError> {
        let state = state.ok_or_else(AppError::unauthorized)?;
        if !state.session_live {
            return Err(AppError::Unauthorized("Token has been revoked".into()));
        }
        check_ban(db, self.claims.user_id, state.is_banned, state.banned_until).await?;
        if let (true, Some(sid)) = (self.touch, self.claims.sid) {
            touch_session(db, sid);
        }
        Ok(Principal {
            user_id: self.claims.user_id,
            role: state.role,
            token: self.token,
            claims: self.claims,
        })
    }
}

/// The caller of a route whose handler reads the account itself (see
/// `http::routing`): already verified, or a checked token whose account the
/// handler reads in its own statement.
#[derive(Debug, Clone)]
pub enum Caller {
    Verified(Principal),
    Deferred(TokenChecked),
}

impl From<Principal> for Caller {
    fn from(p: Principal) -> Self {
        Caller::Verified(p)
    }
}

impl Caller {
    pub fn user_id(&self) -> Uuid {
        match self {
            Caller::Verified(p) => p.user_id,
            Caller::Deferred(t) => t.user_id(),
        }
    }

    /// The session whose liveness the handler's statement must read: a
    /// deferred token's (a verified caller's was read already).
    pub fn unread_session(&self) -> Option<Uuid> {
        match self {
            Caller::Deferred(t) => t.session_id(),
            Caller::Verified(_) => None,
        }
    }

    /// The account's verdict now, for answers that come before the
    /// handler's own statement (a bad request, a retried send).
    pub async fn verify(self, db: &PgPool) -> Result<Principal, AppError> {
        match self {
            Caller::Verified(p) => Ok(p),
            Caller::Deferred(t) => t.verify(db).await,
        }
    }
}

/// Authenticates a raw token. Errors carry the contract's status and message.
pub async fn authenticate(
    db: &PgPool,
    redis: &Redis,
    jwt_secret: &str,
    token: &str,
) -> Result<Principal, AppError> {
    authenticate_and(db, redis, jwt_secret, token, None::<fn(Uuid) -> redis::Cmd>)
        .await
        .0
}

/// As [`authenticate`], with `extra(user)` sent in the token checks' Redis
/// round trip once the signature is valid (the rate limiter's count, so an
/// authenticated request costs one round trip). Returns its reply whatever
/// the verdict; `None` when it was not sent or the round trip failed.
pub async fn authenticate_and(
    db: &PgPool,
    redis: &Redis,
    jwt_secret: &str,
    token: &str,
    extra: Option<impl FnOnce(Uuid) -> redis::Cmd>,
) -> (Result<Principal, AppError>, Option<redis::Value>) {
    let (checked, reply) = check_token_and(redis, jwt_secret, token, extra).await;
    let res = match checked {
        Ok(checked) => checked.verify(db).await,
        Err(e) => Err(e),
    };
    (res, reply)
}

/// The token checks of [`authenticate_and`] without the account read.
pub async fn check_token_and(
    redis: &Redis,
    jwt_secret: &str,
    token: &str,
    extra: Option<impl FnOnce(Uuid) -> redis::Cmd>,
) -> (Result<TokenChecked, AppError>, Option<redis::Value>) {
    let mut reply = None;
    let res = check_token_inner(redis, jwt_secret, token, extra, &mut reply).await;
    (res, reply)
}

async fn check_token_inner(
    redis: &Redis,
    jwt_secret: &str,
    token: &str,
    extra: Option<impl FnOnce(Uuid) -> redis::Cmd>,
    reply: &mut Option<redis::Value>,
) -> Result<TokenChecked, AppError> {
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
    let extra = extra.map(|f| f(claims.user_id));
    let (state, extra_reply) = sessions::token_state_and(redis, token, &claims, extra).await;
    *reply = extra_reply;
    let touch = match state {
        Ok((sessions::TokenState::LoggedOut, _)) => {
            return Err(AppError::Unauthorized("Token has been revoked".into()))
        }
        Ok((sessions::TokenState::Revoked, _)) => return Err(AppError::unauthorized()),
        Ok((sessions::TokenState::Live, touch)) => touch,
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable");
            return Err(AppError::unavailable("Session service unavailable"));
        }
    };
    Ok(TokenChecked {
        token: token.to_string(),
        claims,
        touch,
    })
}

/// Writes `last_seen_at` in the background: the request does not wait for
/// it, and a failure only leaves the previous value.
fn touch_session(db: &PgPool, sid: Uuid) {
    let db = db.clone();
    tokio::spawn(async move {
        let res = sqlx::query(
            "UPDATE sessions SET last_seen_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(sid)
        .execute(&db)
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, %sid, "cannot record session activity");
        }
    });
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
