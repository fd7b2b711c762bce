//! Membership: adding members, leaving and kicking.

use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

use super::{
    member_role, parse_ids, publish_chat_items, publish_messages, render_one, render_system,
    BANNED_MEMBER, NOT_FOUND, NOT_MEMBER, TARGET_NOT_MEMBER,
};
use crate::chats::dto::ChatIdPayload;
use crate::error::{AppError, AppResult};
use crate::groups::repo;
use crate::messages::dto::MessageResponse;
use crate::messages::service::{insert_system_message, publish_to_chat};
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

/// Validates an add-members body: `user_ids` with at least one UUID.
pub fn validate_add(raw: Option<Vec<String>>) -> AppResult<Vec<Uuid>> {
    parse_ids(raw)
}

/// `POST /api/chats/group/{chatID}/members`: one `system_add` per new
/// member; `message.new` for each (new members included), then `chat.new`
/// to each new member.
pub async fn add_members(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
    user_ids: Vec<Uuid>,
) -> AppResult<Vec<MessageResponse>> {
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        if member_role(&g, AppError::forbidden(NOT_MEMBER))? == "member" {
            return Err(AppError::forbidden("Only admins or owners can add members"));
        }
        let owner = repo::owner(&mut tx, g.group_id).await?;
        let found = repo::candidates(&mut tx, &user_ids, me, owner, Some(g.group_id)).await?;
        if found.len() != user_ids.len() || found.iter().any(|c| c.deleted) {
            return Err(AppError::not_found(
                "One or more users not found or deleted",
            ));
        }
        if found.iter().any(|c| c.banned) {
            return Err(AppError::forbidden(BANNED_MEMBER));
        }
        // Unlike the reference, a user in a block relation with the OWNER
        // cannot be brought in by an admin either.
        if found
            .iter()
            .any(|c| c.blocked_with_actor || c.blocked_with_owner)
        {
            return Err(AppError::forbidden("Cannot add a blocked user"));
        }
        let fresh: Vec<(Uuid, &str)> = user_ids
            .iter()
            .filter(|u| found.iter().any(|c| c.id == **u && !c.is_member))
            .map(|u| (*u, "member"))
            .collect();
        if fresh.is_empty() {
            return Err(AppError::conflict("All users are already members"));
        }
        let added = repo::insert_members(&mut tx, g.group_id, &fresh).await?;
        if added.is_empty() {
            return Err(AppError::conflict("All users are already members"));
        }
        let mut ids = Vec::with_capacity(added.len());
        for user in &added {
            let data = json!({ "target_id": user, "actor_id": me });
            ids.push(
                insert_system_message(&mut tx, chat_id, Some(me), "system_add", Some(&data))
                    .await?,
            );
        }
        let count = repo::member_count(&mut tx, g.group_id).await?;
        tx.commit().await?;

        let mut msgs = render_system(state, conn, &ids).await?;
        for m in &mut msgs {
            m.member_count = Some(count);
        }
        publish_messages(state, conn, chat_id, me, &msgs).await;
        publish_chat_items(state, conn, kinds::CHAT_NEW, chat_id, me, &added).await;
        Ok(msgs)
    })
}

/// `POST /api/chats/group/{chatID}/leave`: `message.new` to the remaining
/// members.
pub async fn leave(state: &AppState, me: Uuid, chat_id: Uuid) -> AppResult<MessageResponse> {
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        let role = member_role(&g, AppError::bad_request(NOT_MEMBER))?.to_string();
        if role == "owner" {
            return Err(AppError::bad_request(
                "Owner cannot leave the group. Please transfer ownership first.",
            ));
        }
        repo::delete_member(&mut tx, g.group_id, me).await?;
        let id = insert_system_message(&mut tx, chat_id, Some(me), "system_leave", None).await?;
        let count = repo::member_count(&mut tx, g.group_id).await?;
        tx.commit().await?;

        let mut msg = render_one(state, conn, id).await?;
        // The leaver's role until now (the reference always says "member").
        msg.sender_role = Some(role);
        msg.member_count = Some(count);
        publish_to_chat(state, conn, chat_id, Some(me), kinds::MESSAGE_NEW, &msg).await;
        Ok(msg)
    })
}

/// `POST /api/chats/group/{chatID}/members/{userID}/kick`: `message.new` to
/// the remaining members, then `chat.delete` to the kicked user.
pub async fn kick(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
    target: Uuid,
) -> AppResult<MessageResponse> {
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        let role = member_role(&g, AppError::forbidden(NOT_MEMBER))?;
        if role == "member" {
            return Err(AppError::forbidden(
                "Only admins or owners can kick members",
            ));
        }
        let t = repo::target_member(&mut tx, g.group_id, target)
            .await?
            .ok_or_else(|| AppError::not_found(TARGET_NOT_MEMBER))?;
        if target == me {
            return Err(AppError::bad_request("Cannot kick yourself"));
        }
        if role == "admin" && t.role != "member" {
            return Err(AppError::forbidden(
                "Admins cannot kick other admins or the owner",
            ));
        }
        if t.role == "owner" {
            // Only reachable in a group with two owners; never remove one.
            return Err(AppError::forbidden("Cannot kick the owner"));
        }
        repo::delete_member(&mut tx, g.group_id, target).await?;
        let data = json!({ "target_id": target, "actor_id": me });
        let id =
            insert_system_message(&mut tx, chat_id, Some(me), "system_kick", Some(&data)).await?;
        let count = repo::member_count(&mut tx, g.group_id).await?;
        tx.commit().await?;

        let mut msg = render_one(state, conn, id).await?;
        msg.member_count = Some(count);
        publish_to_chat(state, conn, chat_id, Some(me), kinds::MESSAGE_NEW, &msg).await;
        let event = Event::new(
            kinds::CHAT_DELETE,
            ChatIdPayload { chat_id },
            Some(chat_id),
            Some(me),
        );
        state.bus.to_user(target, &event).await;
        Ok(msg)
    })
}
