//! Roles and ownership: promoting/demoting members and transferring
//! ownership (owner only).

use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

use super::{bad_request, member_role, render_one, NOT_FOUND, NOT_MEMBER, TARGET_NOT_MEMBER};
use crate::error::{AppError, AppResult};
use crate::groups::repo;
use crate::messages::dto::MessageResponse;
use crate::messages::service::{insert_system_message, publish_to_chat};
use crate::realtime::event::kinds;
use crate::state::AppState;

/// Validates a role body: `admin` or `member`.
pub fn validate_role(raw: Option<String>) -> AppResult<&'static str> {
    match raw.as_deref() {
        Some("admin") => Ok("admin"),
        Some("member") => Ok("member"),
        _ => Err(bad_request()),
    }
}

/// `PUT /api/chats/group/{chatID}/members/{userID}/role` (owner only):
/// `system_promote` / `system_demote`, `message.new`.
pub async fn change_role(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
    target: Uuid,
    new_role: &'static str,
) -> AppResult<MessageResponse> {
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        if member_role(&g, AppError::forbidden(NOT_MEMBER))? != "owner" {
            return Err(AppError::forbidden("Only owner can change member roles"));
        }
        let t = repo::target_member(&mut tx, g.group_id, target)
            .await?
            .ok_or_else(|| AppError::not_found(TARGET_NOT_MEMBER))?;
        if target == me {
            return Err(AppError::bad_request("Cannot change your own role"));
        }
        if t.deleted {
            return Err(AppError::bad_request(
                "Cannot change role of a deleted user",
            ));
        }
        if t.role == "owner" {
            return Err(AppError::bad_request(
                "Use ownership transfer to change the owner",
            ));
        }
        // Unlike the reference, a banned admin CAN be demoted.
        if t.banned && new_role == "admin" {
            return Err(AppError::forbidden(
                "Cannot promote a suspended/banned user",
            ));
        }
        if t.role == new_role {
            return Err(AppError::bad_request("Target user already has that role"));
        }
        repo::set_role(&mut tx, g.group_id, target, new_role).await?;
        let kind = if new_role == "admin" {
            "system_promote"
        } else {
            "system_demote"
        };
        let data = json!({ "target_id": target, "actor_id": me, "new_role": new_role });
        let id = insert_system_message(&mut tx, chat_id, Some(me), kind, Some(&data)).await?;
        tx.commit().await?;

        let msg = render_one(state, conn, id).await?;
        publish_to_chat(state, conn, chat_id, Some(me), kinds::MESSAGE_NEW, &msg).await;
        Ok(msg)
    })
}

/// Validates a transfer body: `new_owner_id` a UUID.
pub fn validate_transfer(raw: Option<String>) -> AppResult<Uuid> {
    raw.as_deref()
        .and_then(|s| Uuid::try_parse(s.trim()).ok())
        .filter(|id| !id.is_nil())
        .ok_or_else(bad_request)
}

/// `POST /api/chats/group/{chatID}/transfer`: the owner becomes admin, the
/// target owner, in one transaction; `system_promote` with
/// `action: ownership_transferred`; `message.new`. The response's
/// `sender_role` is the actor's role after the transfer (`admin`).
pub async fn transfer(
    state: &AppState,
    me: Uuid,
    chat_id: Uuid,
    target: Uuid,
) -> AppResult<MessageResponse> {
    if target == me {
        return Err(AppError::bad_request(
            "Cannot transfer ownership to yourself",
        ));
    }
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, me)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        if member_role(&g, AppError::forbidden(NOT_MEMBER))? != "owner" {
            return Err(AppError::forbidden("Only owner can transfer ownership"));
        }
        let t = repo::target_member(&mut tx, g.group_id, target)
            .await?
            .ok_or_else(|| AppError::not_found(TARGET_NOT_MEMBER))?;
        if t.role == "owner" {
            return Err(AppError::bad_request("Target user is already the owner"));
        }
        if t.deleted {
            return Err(AppError::bad_request(
                "Cannot transfer ownership to a deleted user",
            ));
        }
        if t.banned {
            return Err(AppError::forbidden(
                "Cannot transfer ownership to a suspended/banned user",
            ));
        }
        repo::set_role(&mut tx, g.group_id, me, "admin").await?;
        repo::set_role(&mut tx, g.group_id, target, "owner").await?;
        let data = json!({
            "target_id": target,
            "actor_id": me,
            "new_role": "owner",
            "action": "ownership_transferred",
        });
        let id = insert_system_message(&mut tx, chat_id, Some(me), "system_promote", Some(&data))
            .await?;
        tx.commit().await?;

        let msg = render_one(state, conn, id).await?;
        publish_to_chat(state, conn, chat_id, Some(me), kinds::MESSAGE_NEW, &msg).await;
        Ok(msg)
    })
}
