//! Invites and joining: the invite preview, resetting the code, joining a
//! public group or by invite code.

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{
    internal, member_role, new_invite_code, publish_chat_items, render_one, NOT_FOUND, NOT_MEMBER,
};
use crate::chats::dto::ChatListResponse;
use crate::chats::service::chat_list_items_for;
use crate::error::{AppError, AppResult};
use crate::groups::dto::{GroupInviteResponse, GroupPreviewDto};
use crate::groups::repo::{self, LockedGroup};
use crate::messages::dto::format_ts;
use crate::messages::service::{insert_system_message, publish_to_chat};
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

/// The `invite_code` column's width; longer input cannot be a code.
const INVITE_CODE_MAX: usize = 50;
const INVALID_INVITE: &str = "Invalid invite code";
const INVITE_EXPIRED: &str = "Invite code has expired";
const ALREADY_MEMBER: &str = "You are already a member of this group";
/// Joining is refused when the joiner and the owner are in a block
/// relation (the reference ignores blocks on join). The message does not
/// say who blocked whom.
const JOIN_BLOCKED: &str = "You cannot join this group";

/// Whether `code` can be an invite code at all (checked before any query).
fn plausible_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= INVITE_CODE_MAX && !code.contains('\0')
}

/// `GET /api/chats/group/invite/{inviteCode}` (no authentication).
pub async fn preview(state: &AppState, code: &str) -> AppResult<GroupPreviewDto> {
    if !plausible_code(code) {
        return Err(AppError::not_found(INVALID_INVITE));
    }
    let g = repo::by_invite_code(&state.db, code)
        .await?
        .ok_or_else(|| AppError::not_found(INVALID_INVITE))?;
    if g.expired {
        return Err(AppError::bad_request(INVITE_EXPIRED));
    }
    Ok(GroupPreviewDto {
        id: g.chat_id,
        name: g.name,
        description: g.description,
        avatar: g
            .avatar
            .map(|f| state.storage.public_url(&f))
            .unwrap_or_default(),
        member_count: g.member_count,
        is_public: g.is_public,
    })
}

/// `PUT /api/chats/group/{chatID}/invite`: a new code (the old one stops
/// working with the commit), `chat.update` to whoever may see the code.
pub async fn reset_invite(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
) -> AppResult<GroupInviteResponse> {
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .ok_or_else(|| AppError::not_found("Group not found"))?;
        if member_role(&g, AppError::forbidden(NOT_MEMBER))? == "member" {
            return Err(AppError::forbidden("Only admins can reset invite code"));
        }
        let code = new_invite_code();
        let expires = repo::set_invite(&mut tx, g.group_id, &code, g.is_public).await?;
        tx.commit().await?;
        let recipients: Vec<Uuid> = repo::members_with_roles(conn, g.group_id)
            .await?
            .into_iter()
            .filter(|(_, role)| g.is_public || role != "member")
            .map(|(u, _)| u)
            .collect();
        publish_chat_items(state, conn, kinds::CHAT_UPDATE, chat_id, me, &recipients).await;
        Ok(GroupInviteResponse {
            invite_code: code,
            expires_at: expires.map(format_ts),
        })
    })
}

/// `POST /api/chats/group/{chatID}/join` (public groups).
pub async fn join_public(state: &AppState, me: Uuid, chat_id: Uuid) -> AppResult<ChatListResponse> {
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        if !g.is_public {
            return Err(AppError::forbidden(
                "This group is private. You must be added by an admin.",
            ));
        }
        let (id, count) = join_tx(&mut tx, me, &g).await?;
        tx.commit().await?;
        announce_join(state, conn, me, chat_id, id, count).await
    })
}

/// `POST /api/chats/group/join/invite` (any group with a valid code).
pub async fn join_by_invite(state: &AppState, me: Uuid, code: &str) -> AppResult<ChatListResponse> {
    if !plausible_code(code) {
        return Err(AppError::not_found(INVALID_INVITE));
    }
    let target = repo::by_invite_code(&state.db, code)
        .await?
        .ok_or_else(|| AppError::not_found(INVALID_INVITE))?;
    let chat_id = target.chat_id;
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        // Re-read under the lock: the code may have been reset meanwhile.
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .filter(|g| g.invite_code == code)
            .ok_or_else(|| AppError::not_found(INVALID_INVITE))?;
        if repo::invite_expired(&mut tx, g.group_id).await? {
            return Err(AppError::bad_request(INVITE_EXPIRED));
        }
        let (id, count) = join_tx(&mut tx, me, &g).await?;
        tx.commit().await?;
        announce_join(state, conn, me, chat_id, id, count).await
    })
}

/// The writes of both joins, inside the locked transaction: the membership
/// and `system_join`. Returns the message id and the new member count.
async fn join_tx(tx: &mut PgConnection, me: Uuid, g: &LockedGroup) -> AppResult<(Uuid, i64)> {
    if g.my_role.is_some() {
        return Err(AppError::conflict(ALREADY_MEMBER));
    }
    if let Some(owner) = repo::owner(tx, g.group_id).await? {
        if repo::blocked_either_way(tx, me, owner).await? {
            return Err(AppError::forbidden(JOIN_BLOCKED));
        }
    }
    let added = repo::insert_members(tx, g.group_id, &[(me, "member")]).await?;
    if added.is_empty() {
        return Err(AppError::conflict(ALREADY_MEMBER));
    }
    let id = insert_system_message(tx, g.chat_id, Some(me), "system_join", None).await?;
    let count = repo::member_count(tx, g.group_id).await?;
    Ok((id, count))
}

/// After a join commits: `chat.new` to the joiner, then `message.new` to
/// the chat (joiner included). Returns the joiner's view of the chat.
async fn announce_join(
    state: &AppState,
    conn: &mut PgConnection,
    me: Uuid,
    chat_id: Uuid,
    message_id: Uuid,
    count: i64,
) -> AppResult<ChatListResponse> {
    let mut msg = render_one(state, conn, message_id).await?;
    msg.member_count = Some(count);
    let mut item = chat_list_items_for(state, conn, chat_id, &[me])
        .await?
        .pop()
        .map(|(_, item)| item)
        .ok_or_else(|| internal("joined group not visible to the joiner"))?;
    item.last_message = Some(msg.clone());
    let event = Event::new(kinds::CHAT_NEW, &item, Some(chat_id), Some(me));
    state.bus.to_user(me, &event).await;
    publish_to_chat(state, conn, chat_id, Some(me), kinds::MESSAGE_NEW, &msg).await;
    Ok(item)
}
