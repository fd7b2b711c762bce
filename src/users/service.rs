//! Rules of the users feature: own profile, profile updates, profile view,
//! search, blocking (spec §13, events §18).

use uuid::Uuid;

use super::cursor::{self, ListParams, NameCursor};
use super::dto::{
    avatar_url, rfc3339, BlockPayload, OwnProfile, ProfileView, UpdateProfileRequest, UserListItem,
    UserUpdatePayload,
};
use super::repo::{self, ListRow, OwnRow};
use crate::auth::{fields, repo::unique_violation};
use crate::error::AppError;
use crate::http::response::{Page, PageMeta};
use crate::realtime::event::{kinds, Event};
use crate::realtime::recipients;
use crate::state::AppState;

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

fn own_profile(state: &AppState, row: &OwnRow, online: bool, with_last_seen: bool) -> OwnProfile {
    OwnProfile {
        id: row.id,
        email: row.email.clone().unwrap_or_default(),
        username: row.username.clone().unwrap_or_default(),
        full_name: row.full_name.clone().unwrap_or_default(),
        avatar: avatar_url(state.storage.as_ref(), row.avatar_file.as_deref()),
        bio: row.bio.clone().filter(|b| !b.is_empty()),
        role: row.role.clone(),
        has_password: row.has_password.then_some(true),
        is_online: online,
        last_seen_at: if with_last_seen {
            row.last_seen_at.map(rfc3339)
        } else {
            None
        },
    }
}

/// `GET /api/user/current`.
pub async fn current(state: &AppState, me: Uuid) -> Result<OwnProfile, AppError> {
    let row = repo::own(&state.db, me)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    let online = state.presence.is_online(me).await;
    Ok(own_profile(state, &row, online, false))
}

/// `PUT /api/user/profile`. Only fields that change are written; a change
/// sends `user.update` to the user's devices and contacts.
///
/// Differences from the reference (its weak spots): `full_name` is trimmed
/// before the length rule (a blank name is a 400, not silently ignored), and
/// an absent `bio` keeps the current bio instead of clearing it.
pub async fn update_profile(
    state: &AppState,
    me: Uuid,
    req: UpdateProfileRequest,
) -> Result<OwnProfile, AppError> {
    let delete_avatar = req.delete_avatar.unwrap_or(false);
    if delete_avatar && req.avatar_media_id.is_some() {
        return Err(bad_request());
    }
    let full_name =
        fields::full_name(req.full_name.as_deref().unwrap_or_default()).ok_or_else(bad_request)?;
    let username = match req.username.as_deref() {
        Some(u) if !u.is_empty() => {
            if !fields::is_valid_username(u) {
                return Err(bad_request());
            }
            Some(u.to_ascii_lowercase())
        }
        _ => None,
    };
    let bio = match req.bio.as_deref() {
        Some(b) => Some(fields::bio(b).ok_or_else(bad_request)?),
        None => None,
    };

    let mut tx = crate::infra::db::begin(&state.db).await?;
    let row = repo::own_for_update(&mut *tx, me)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    let mut changed = false;

    if row.full_name.as_deref() != Some(full_name.as_str()) {
        changed = true;
    }
    let new_username = match username {
        Some(u) if row.username.as_deref() != Some(u.as_str()) => {
            if repo::username_taken_by_other(&mut *tx, &u, me).await? {
                return Err(AppError::conflict("Username already taken"));
            }
            changed = true;
            Some(u)
        }
        _ => row.username.clone(),
    };
    let new_bio = match bio {
        Some(b) => {
            let b = (!b.is_empty()).then_some(b);
            if b != row.bio {
                changed = true;
            }
            b
        }
        None => row.bio.clone(),
    };
    let new_avatar = if delete_avatar {
        if row.avatar_id.is_some() {
            changed = true;
        }
        None
    } else if let Some(media) = req.avatar_media_id {
        if !repo::avatar_usable(&mut *tx, media, me).await? {
            return Err(AppError::bad_request("Invalid avatar media"));
        }
        changed = true;
        Some(media)
    } else {
        row.avatar_id
    };

    if !changed {
        drop(tx);
        let online = state.presence.is_online(me).await;
        return Ok(own_profile(state, &row, online, true));
    }
    let written = repo::update_profile(
        &mut *tx,
        me,
        &repo::ProfileUpdate {
            full_name: &full_name,
            username: new_username.as_deref(),
            bio: new_bio.as_deref(),
            avatar_id: new_avatar,
        },
    )
    .await;
    if let Err(e) = written {
        return Err(match unique_violation(&e).as_deref() {
            Some("users_username_key") => AppError::conflict("Username already taken"),
            Some("users_avatar_id_key") => AppError::bad_request("Invalid avatar media"),
            _ => e.into(),
        });
    }
    tx.commit().await?;

    let row = repo::own(&state.db, me)
        .await?
        .ok_or_else(|| AppError::not_found("Not Found"))?;
    let online = state.presence.is_online(me).await;
    let profile = own_profile(state, &row, online, true);
    publish_user_update(state, &row).await;
    Ok(profile)
}

/// Sends `user.update` for `row` to the user's own devices and contacts.
pub async fn publish_user_update(state: &AppState, row: &OwnRow) {
    let payload = UserUpdatePayload {
        id: row.id,
        username: row.username.clone().unwrap_or_default(),
        full_name: row.full_name.clone().unwrap_or_default(),
        avatar: avatar_url(state.storage.as_ref(), row.avatar_file.as_deref()),
        bio: row.bio.clone().unwrap_or_default(),
        last_seen_at: row.last_seen_at.map(rfc3339),
    };
    let event = Event::new(kinds::USER_UPDATE, payload, None, Some(row.id));
    let mut to = vec![row.id];
    match recipients::contacts(&state.db, row.id).await {
        Ok(c) => to.extend(c),
        Err(e) => tracing::error!(error = %e, user = %row.id, "contact lookup failed"),
    }
    state.bus.to_users(&to, &event).await;
}

/// `GET /api/users/{id}`. Presence is hidden when either side blocked the
/// other or the user is actively banned.
pub async fn view(state: &AppState, me: Uuid, id: Uuid) -> Result<ProfileView, AppError> {
    let row = repo::view(&state.db, me, id)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    let hidden = row.blocked_by_me || row.blocked_by_other || row.actively_banned;
    let online = !hidden && state.presence.is_online(id).await;
    Ok(ProfileView {
        id: row.id,
        username: row.username.unwrap_or_default(),
        full_name: row.full_name.unwrap_or_default(),
        avatar: avatar_url(state.storage.as_ref(), row.avatar_file.as_deref()),
        bio: row.bio.filter(|b| !b.is_empty()),
        role: row.role,
        is_blocked_by_me: row.blocked_by_me,
        is_blocked_by_other: row.blocked_by_other,
        is_online: online,
        last_seen_at: if hidden {
            None
        } else {
            row.last_seen_at.map(rfc3339)
        },
    })
}

fn page(
    state: &AppState,
    mut rows: Vec<ListRow>,
    p: &ListParams,
    blocked: bool,
) -> Page<UserListItem> {
    let has_next = rows.len() as i64 > p.limit;
    rows.truncate(p.limit.max(0) as usize);
    let next_cursor = if has_next {
        rows.last().map(|r| {
            NameCursor {
                name: r.full_name.clone(),
                id: r.id,
            }
            .encode()
        })
    } else {
        None
    };
    let data = rows
        .into_iter()
        .map(|r| UserListItem {
            id: r.id,
            username: r.username.unwrap_or_default(),
            full_name: r.full_name,
            avatar: avatar_url(state.storage.as_ref(), r.avatar_file.as_deref()),
            role: r.role,
            private_chat_id: r.private_chat_id,
            is_blocked_by_me: blocked.then_some(true),
        })
        .collect();
    Page {
        data,
        meta: PageMeta {
            next_cursor,
            has_next,
            prev_cursor: None,
            has_prev: false,
        },
    }
}

/// `GET /api/users`.
pub async fn search(
    state: &AppState,
    me: Uuid,
    raw_query: Option<&str>,
) -> Result<Page<UserListItem>, AppError> {
    let p = cursor::parse(raw_query)?;
    let rows = repo::search(&mut *state.read_conn(me).await?, me, &p).await?;
    Ok(page(state, rows, &p, false))
}

/// `GET /api/users/blocked`.
pub async fn blocked(
    state: &AppState,
    me: Uuid,
    raw_query: Option<&str>,
) -> Result<Page<UserListItem>, AppError> {
    let mut p = cursor::parse(raw_query)?;
    // Search-only parameters have no meaning here.
    p.include_chat_id = false;
    p.exclude_chat_id = None;
    let rows = repo::blocked(&state.db, me, &p).await?;
    Ok(page(state, rows, &p, true))
}

/// `POST /api/users/{id}/block`: idempotent; only a new block emits
/// `user.block` (to the blocked user, then the blocker's devices).
pub async fn block(state: &AppState, me: Uuid, target: Uuid) -> Result<(), AppError> {
    if me == target {
        return Err(AppError::bad_request("Cannot block yourself"));
    }
    if !repo::is_active(&state.db, target).await? {
        return Err(AppError::not_found("Not Found"));
    }
    if repo::insert_block(&state.db, me, target).await? {
        let event = Event::new(
            kinds::USER_BLOCK,
            BlockPayload {
                blocker_id: me,
                blocked_id: target,
            },
            None,
            Some(me),
        );
        state.bus.to_users(&[target, me], &event).await;
    }
    Ok(())
}

/// `POST /api/users/{id}/unblock`: idempotent. Unlike the reference, which
/// emitted `user.unblock` on every call, the event is sent only when a block
/// was actually removed, and unblocking oneself is refused like blocking.
pub async fn unblock(state: &AppState, me: Uuid, target: Uuid) -> Result<(), AppError> {
    if me == target {
        return Err(AppError::bad_request("Cannot unblock yourself"));
    }
    if repo::delete_block(&state.db, me, target).await? {
        let event = Event::new(
            kinds::USER_UNBLOCK,
            BlockPayload {
                blocker_id: me,
                blocked_id: target,
            },
            None,
            Some(me),
        );
        state.bus.to_users(&[target, me], &event).await;
    }
    Ok(())
}
