//! Admin console rules (users part): dashboard, user list/detail, ban,
//! unban and profile reset. Every change is written to the log as an audit
//! line (`admin action`, with admin id, action and target) and to the
//! audit table, in the change's own transaction.

use chrono::{Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit;
use super::dto::{
    AdminUserDetail, AdminUserListItem, BanUserRequest, DashboardStats, ResetUserInfoRequest,
    UserBannedPayload, UserUnbannedPayload, UserUpdatePayload,
};
use super::repo::{self, ProfileReset, UserFilter};
use crate::auth::sessions;
use crate::error::AppError;
use crate::http::pagination::{self, QueryParams};
use crate::http::response::Page;
use crate::http::text;
use crate::http::timestamps::rfc3339;
use crate::realtime::event::kinds;
use crate::realtime::{recipients, CloseReason, Event};
use crate::state::AppState;

/// Longest search text of the user list.
const MAX_QUERY: usize = 100;
/// Longest ban reason (the column is `varchar(255)`).
const MAX_BAN_REASON: usize = 255;
/// Longest temporary ban: 100 years. The reference has no bound and
/// overflows on huge values; anything longer is a 400 here.
pub const MAX_BAN_HOURS: i64 = 100 * 8766;

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

/// `GET /api/admin/dashboard`.
pub async fn dashboard(state: &AppState, admin: Uuid) -> Result<DashboardStats, AppError> {
    Ok(repo::dashboard(&mut *state.read_conn(admin).await?).await?)
}

/// `GET /api/admin/users`.
pub async fn list_users(
    state: &AppState,
    admin: Uuid,
    q: &QueryParams,
) -> Result<Page<AdminUserListItem>, AppError> {
    let query = pagination::search_text(q.get_or_empty("query"), MAX_QUERY)?;
    let role = q.get_or_empty("role");
    if !matches!(role, "" | "user" | "admin") {
        return Err(bad_request());
    }
    let limit = pagination::parse_limit(q.get("limit"))?;
    let before = pagination::decode_uuid_cursor(q.get("cursor"));
    let escaped = pagination::escape_like(query);
    let rows = repo::list_users(
        &mut *state.read_conn(admin).await?,
        &UserFilter {
            role: (!role.is_empty()).then_some(role),
            query: (!query.is_empty()).then_some(escaped.as_str()),
            before,
            limit,
        },
    )
    .await?;
    let (rows, meta) = pagination::forward_page(rows, limit, |r| r.id.to_string());
    let data = rows
        .into_iter()
        .map(|r| AdminUserListItem {
            id: r.id,
            username: r.username.unwrap_or_default(),
            email: r.email.unwrap_or_default(),
            full_name: r.full_name.unwrap_or_default(),
            role: r.role,
            is_banned: r.is_banned,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(Page { data, meta })
}

/// `GET /api/admin/users/{id}`.
pub async fn user_detail(state: &AppState, id: Uuid) -> Result<AdminUserDetail, AppError> {
    let r = repo::user_detail(&state.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    Ok(AdminUserDetail {
        id: r.id,
        username: r.username.unwrap_or_default(),
        email: r.email.unwrap_or_default(),
        full_name: r.full_name.unwrap_or_default(),
        bio: r.bio.unwrap_or_default(),
        avatar: r
            .avatar_file
            .map(|f| state.storage.public_url(&f))
            .unwrap_or_default(),
        role: r.role,
        is_banned: r.is_banned,
        ban_reason: r.ban_reason,
        banned_until: r.banned_until.map(rfc3339),
        created_at: rfc3339(r.created_at),
        last_seen_at: r.last_seen_at.map(rfc3339),
        total_messages: r.total_messages,
        total_groups: r.total_groups,
        sessions: crate::account::sessions::service::for_admin(state, id).await?,
    })
}

/// The target plus its contacts: who hears about a user's moderation.
async fn user_and_contacts(state: &AppState, user: Uuid) -> Vec<Uuid> {
    let mut to = vec![user];
    match recipients::contacts(&state.db, user).await {
        Ok(c) => to.extend(c),
        Err(e) => tracing::error!(error = %e, %user, "contact lookup failed"),
    }
    to
}

/// An audit entry about a user.
fn user_entry(
    admin: Uuid,
    action: &'static str,
    target: Uuid,
    detail: serde_json::Value,
) -> audit::Entry<'static> {
    audit::Entry {
        admin_id: admin,
        action,
        target_type: "user",
        target_id: Some(target),
        detail,
    }
}

/// `POST /api/admin/users/ban`. Sessions are revoked before the commit
/// (and restored if it fails); after it, `user.banned` goes to the target
/// and their contacts and only then are the target's sockets closed, so the
/// banned user's clients see the event (with its reason) before the close.
pub async fn ban(state: &AppState, admin: Uuid, req: BanUserRequest) -> Result<(), AppError> {
    let target = req
        .target_user_id
        .filter(|t| !t.is_nil())
        .ok_or_else(bad_request)?;
    // A blank reason is refused (the reference stores it as ""), as are
    // texts the column cannot hold.
    let reason = text::free_text(req.reason.as_deref().unwrap_or_default(), MAX_BAN_REASON)
        .filter(|r| !r.is_empty())
        .ok_or_else(bad_request)?;
    let reason = reason.as_str();
    let hours = req.duration_hours.unwrap_or(0);
    if !(0..=MAX_BAN_HOURS).contains(&hours) {
        return Err(bad_request());
    }
    let until = (hours > 0).then(|| Utc::now() + Duration::hours(hours));

    let mut tx = crate::infra::db::begin(&state.db).await?;
    let user = repo::lock_user(&mut tx, target)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    if user.role == "admin" {
        return Err(AppError::forbidden("Cannot ban another admin"));
    }
    if user.is_banned
        && user.banned_until.is_none()
        && until.is_none()
        && user.ban_reason.as_deref() == Some(reason)
    {
        tracing::info!(admin_id = %admin, action = "user.ban", target = %target, "admin action (no change)");
        drop(tx);
        audit::record_after(
            state,
            user_entry(admin, "user.ban", target, json!({"changed": false})),
        )
        .await;
        return Ok(());
    }
    repo::ban(&mut tx, target, reason, until).await?;
    crate::account::sessions::repo::revoke_all(&mut *tx, target).await?;
    let detail = json!({"reason": reason, "duration_hours": hours});
    audit::record(&mut *tx, user_entry(admin, "user.ban", target, detail)).await?;
    let guard = sessions::revoke_all(&state.redis, target, state.cfg.jwt_exp_secs)
        .await
        .map_err(|e| {
            tracing::error!(error = %e.0, "session revocation failed; ban not applied");
            AppError::unavailable("Session service unavailable")
        })?;
    if let Err(e) = tx.commit().await {
        guard.rollback(&state.redis).await;
        return Err(e.into());
    }
    tracing::info!(
        admin_id = %admin,
        action = "user.ban",
        target = %target,
        duration_hours = hours,
        %reason,
        "admin action"
    );
    let event = Event::new(
        kinds::USER_BANNED,
        UserBannedPayload {
            user_id: target,
            reason: reason.to_string(),
        },
        None,
        Some(admin),
    );
    let to = user_and_contacts(state, target).await;
    // Both publishes go through Redis in this order and every instance reads
    // them from one subscription in the same order; a socket asked to close
    // first flushes what is already queued for it (realtime::ws).
    state.bus.to_users(&to, &event).await;
    state.bus.disconnect_user(target, CloseReason::Banned).await;
    Ok(())
}

/// `POST /api/admin/users/{id}/unban`.
pub async fn unban(state: &AppState, admin: Uuid, target: Uuid) -> Result<(), AppError> {
    let mut tx = crate::infra::db::begin(&state.db).await?;
    let user = repo::lock_user(&mut tx, target)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    if !user.is_banned {
        tracing::info!(admin_id = %admin, action = "user.unban", target = %target, "admin action (no change)");
        drop(tx);
        audit::record_after(
            state,
            user_entry(admin, "user.unban", target, json!({"changed": false})),
        )
        .await;
        return Ok(());
    }
    repo::unban(&mut tx, target).await?;
    audit::record(&mut *tx, user_entry(admin, "user.unban", target, json!({}))).await?;
    tx.commit().await?;
    tracing::info!(admin_id = %admin, action = "user.unban", target = %target, "admin action");
    let event = Event::new(
        kinds::USER_UNBANNED,
        UserUnbannedPayload { user_id: target },
        None,
        Some(admin),
    );
    let to = user_and_contacts(state, target).await;
    state.bus.to_users(&to, &event).await;
    Ok(())
}

/// The name a reset gives: `User ` + the first 8 characters of the id.
pub fn reset_name(id: Uuid) -> String {
    format!("User {}", &id.to_string()[..8])
}

/// `POST /api/admin/users/{id}/reset`.
pub async fn reset(
    state: &AppState,
    admin: Uuid,
    target: Uuid,
    req: ResetUserInfoRequest,
) -> Result<(), AppError> {
    if target.is_nil() {
        return Err(bad_request());
    }
    let mut tx = crate::infra::db::begin(&state.db).await?;
    let user = repo::lock_user(&mut tx, target)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    if user.role == "admin" {
        return Err(AppError::forbidden("Cannot reset info of another admin"));
    }
    let new_name = reset_name(user.id);
    let change = ProfileReset {
        clear_bio: req.reset_bio.unwrap_or(false) && user.bio.is_some(),
        full_name: (req.reset_name.unwrap_or(false)
            && user.full_name.as_deref() != Some(new_name.as_str()))
        .then_some(new_name),
        clear_avatar: req.reset_avatar.unwrap_or(false) && user.avatar_id.is_some(),
    };
    if !change.clear_bio && change.full_name.is_none() && !change.clear_avatar {
        tracing::info!(admin_id = %admin, action = "user.reset", target = %target, "admin action (no change)");
        drop(tx);
        audit::record_after(
            state,
            user_entry(admin, "user.reset", target, json!({"changed": false})),
        )
        .await;
        return Ok(());
    }
    repo::reset_profile(&mut tx, target, &change).await?;
    let detail = json!({
        "bio": change.clear_bio,
        "name": change.full_name.is_some(),
        "avatar": change.clear_avatar,
    });
    audit::record(&mut *tx, user_entry(admin, "user.reset", target, detail)).await?;
    tx.commit().await?;
    tracing::info!(
        admin_id = %admin,
        action = "user.reset",
        target = %target,
        bio = change.clear_bio,
        name = change.full_name.is_some(),
        avatar = change.clear_avatar,
        "admin action"
    );
    match repo::public_profile(&state.db, target).await {
        Ok(Some(p)) => {
            let payload = UserUpdatePayload {
                id: p.id,
                username: p.username.unwrap_or_default(),
                full_name: p.full_name.unwrap_or_default(),
                avatar: p
                    .avatar_file
                    .map(|f| state.storage.public_url(&f))
                    .unwrap_or_default(),
                bio: p.bio.unwrap_or_default(),
                last_seen_at: p.last_seen_at.map(rfc3339),
            };
            let event = Event::new(kinds::USER_UPDATE, payload, None, Some(target));
            let to = user_and_contacts(state, target).await;
            state.bus.to_users(&to, &event).await;
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, %target, "user.update payload lookup failed"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_name_uses_the_id_prefix() {
        let id = Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(reset_name(id), "User 0190a1b2");
    }
}
