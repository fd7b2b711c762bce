//! Rules of login sessions: creation at sign-in, the caller's list, ending
//! one or all others, and the admin view.

use chrono::{Duration, Utc};
use uuid::Uuid;

use super::dto::SessionDto;
use super::repo::{self, NewSession};
use crate::auth::device::{self, ClientMeta};
use crate::auth::principal::{socket_key_of, Principal};
use crate::error::AppError;
use crate::http::timestamps::rfc3339;
use crate::realtime::CloseReason;
use crate::state::AppState;

/// Records a new session for a sign-in of `user`; returns its id (the
/// token's `sid`). It lives as long as the token.
pub async fn create(state: &AppState, user: Uuid, meta: &ClientMeta) -> Result<Uuid, AppError> {
    let id = Uuid::now_v7();
    let name = device::device_name(meta.user_agent.as_deref());
    repo::insert(
        &state.db,
        &NewSession {
            id,
            user_id: user,
            expires_at: Utc::now() + Duration::seconds(state.cfg.jwt_exp_secs),
            ip: meta.ip.map(|ip| ip.to_string()),
            user_agent: meta.user_agent.as_deref(),
            name: &name,
        },
    )
    .await?;
    Ok(id)
}

fn dto(row: repo::SessionRow, current: Option<Uuid>) -> SessionDto {
    SessionDto {
        current: Some(row.id) == current,
        id: row.id,
        name: row.name,
        ip: row.ip,
        user_agent: row.user_agent,
        created_at: rfc3339(row.created_at),
        last_seen_at: row.last_seen_at.map(rfc3339),
    }
}

/// `GET /api/account/sessions`.
pub async fn list(state: &AppState, me: &Principal) -> Result<Vec<SessionDto>, AppError> {
    let rows = repo::list_live(&state.db, me.user_id).await?;
    Ok(rows.into_iter().map(|r| dto(r, me.claims.sid)).collect())
}

/// The sessions shown in the admin user detail.
pub async fn for_admin(state: &AppState, user: Uuid) -> Result<Vec<SessionDto>, AppError> {
    let rows = repo::list_live(&state.db, user).await?;
    Ok(rows.into_iter().map(|r| dto(r, None)).collect())
}

/// Closes, on every instance, the sockets opened by session `sid`.
async fn close_sockets(state: &AppState, user: Uuid, sid: Uuid) {
    state
        .bus
        .disconnect_session(user, &socket_key_of(sid), CloseReason::SessionRevoked)
        .await;
}

/// `DELETE /api/account/sessions/{id}`: 404 unless it is a live session of
/// the caller (the current one included: that is a logout).
pub async fn revoke(state: &AppState, me: &Principal, id: Uuid) -> Result<(), AppError> {
    if !repo::revoke_one(&state.db, me.user_id, id).await? {
        return Err(AppError::not_found("Session not found"));
    }
    close_sockets(state, me.user_id, id).await;
    Ok(())
}

/// `DELETE /api/account/sessions`: every session but the caller's own.
pub async fn revoke_others(state: &AppState, me: &Principal) -> Result<(), AppError> {
    let ended = repo::revoke_others(&state.db, me.user_id, me.claims.sid).await?;
    for sid in ended {
        close_sockets(state, me.user_id, sid).await;
    }
    Ok(())
}

/// Ends the caller's own session (logout); tokens without one have none.
pub async fn end_current(state: &AppState, me: &Principal) -> Result<(), AppError> {
    if let Some(sid) = me.claims.sid {
        repo::revoke_one(&state.db, me.user_id, sid).await?;
    }
    Ok(())
}
