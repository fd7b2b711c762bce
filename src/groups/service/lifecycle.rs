//! Group lifecycle: create, update (also the admin reset) and delete (also
//! the admin dissolve).

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{
    bad_request, internal, member_role, new_invite_code, parse_ids, publish_chat_items,
    publish_messages, render_system, Actor, BANNED_MEMBER, NOT_FOUND, NOT_MEMBER,
};
use crate::chats::dto::{ChatIdPayload, ChatListResponse};
use crate::chats::service::chat_list_items_for;
use crate::error::{AppError, AppResult};
use crate::groups::dto::{
    CreateGroupChatRequest, UpdateGroupChatRequest, DESCRIPTION_MAX_CHARS, NAME_MAX_CHARS,
    NAME_MIN_CHARS,
};
use crate::groups::repo::{self, GroupInfo, NewGroup};
use crate::messages::service::insert_system_message;
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

const INVALID_AVATAR: &str = "Invalid avatar media";

/// A group name as stored: a trimmed display name of 3–100 code points.
/// Unlike the reference, the length rule applies AFTER trimming, so
/// `"  ab  "` and whitespace-only names are refused instead of stored short
/// or failing.
fn valid_name(raw: &str) -> Option<String> {
    crate::http::text::display_name(raw, NAME_MIN_CHARS, NAME_MAX_CHARS)
}

/// A description as stored: trimmed free text of at most 255 code points.
fn valid_description(raw: &str) -> Option<String> {
    crate::http::text::free_text(raw, DESCRIPTION_MAX_CHARS)
}

/// An optional media id; `""` counts as absent, anything else unparsable is
/// an invalid avatar.
fn parse_avatar(raw: Option<String>) -> AppResult<Option<Uuid>> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Uuid::try_parse(s)
            .map(Some)
            .map_err(|_| AppError::bad_request(INVALID_AVATAR)),
    }
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct CreateInput {
    pub name: String,
    pub description: String,
    pub member_ids: Vec<Uuid>,
    pub avatar_media_id: Option<String>,
    pub is_public: bool,
}

/// Validates a create body (400 `Bad Request`).
pub fn validate_create(req: CreateGroupChatRequest) -> AppResult<CreateInput> {
    let name = req
        .name
        .as_deref()
        .and_then(valid_name)
        .ok_or_else(bad_request)?;
    let description = match req.description.as_deref() {
        None => String::new(),
        Some(d) => valid_description(d).ok_or_else(bad_request)?,
    };
    let member_ids = parse_ids(req.member_ids)?;
    Ok(CreateInput {
        name,
        description,
        member_ids,
        avatar_media_id: req.avatar_media_id,
        is_public: req.is_public.unwrap_or(false),
    })
}

/// `POST /api/chats/group`: the group, its members, the `system_create`
/// message; `chat.new` to everyone, each built for their own role (the
/// reference sends the owner's view, private invite code included, to all).
pub async fn create(state: &AppState, me: Uuid, input: CreateInput) -> AppResult<ChatListResponse> {
    let mut conn = crate::infra::db::acquire(&state.db).await?;
    let mut tx = conn.begin().await?;
    let found = repo::candidates(&mut tx, &input.member_ids, me, Some(me), None).await?;
    if found.len() != input.member_ids.len() || found.iter().any(|c| c.deleted) {
        return Err(AppError::bad_request(
            "One or more members not found or deleted.",
        ));
    }
    if input.member_ids.contains(&me) {
        return Err(AppError::bad_request(
            "Cannot add yourself to the member list.",
        ));
    }
    if found.iter().any(|c| c.banned) {
        return Err(AppError::forbidden(BANNED_MEMBER));
    }
    if found.iter().any(|c| c.blocked_with_actor) {
        return Err(AppError::forbidden(
            "Cannot create a group with a blocked user.",
        ));
    }
    let avatar_id = parse_avatar(input.avatar_media_id)?;
    if let Some(media) = avatar_id {
        if !repo::lock_usable_group_avatar(&mut tx, media, me).await? {
            return Err(AppError::bad_request(INVALID_AVATAR));
        }
    }
    let chat_id = Uuid::now_v7();
    let group_id = Uuid::now_v7();
    let code = new_invite_code();
    repo::insert_group(
        &mut tx,
        &NewGroup {
            chat_id,
            group_id,
            name: &input.name,
            description: &input.description,
            is_public: input.is_public,
            invite_code: &code,
            avatar_id,
            created_by: me,
        },
    )
    .await?;
    let members: Vec<(Uuid, &str)> = std::iter::once((me, "owner"))
        .chain(input.member_ids.iter().map(|m| (*m, "member")))
        .collect();
    repo::insert_members(&mut tx, group_id, &members).await?;
    insert_system_message(
        &mut tx,
        chat_id,
        Some(me),
        "system_create",
        Some(&json!({ "initial_name": input.name })),
    )
    .await?;
    tx.commit().await?;

    let viewers: Vec<Uuid> = members.iter().map(|m| m.0).collect();
    let mut items = chat_list_items_for(state, &mut conn, chat_id, &viewers).await?;
    for (_, item) in &mut items {
        // The creation message is the owner's.
        if let Some(m) = item.last_message.as_mut() {
            m.sender_role = Some("owner".into());
        }
    }
    let events = items
        .iter()
        .map(|(viewer, item)| {
            (
                *viewer,
                Event::new(kinds::CHAT_NEW, item, Some(chat_id), Some(me)),
            )
        })
        .collect();
    state.bus.to_each(events).await;
    items
        .into_iter()
        .find(|(v, _)| *v == me)
        .map(|(_, item)| item)
        .ok_or_else(|| internal("new group not visible to its creator"))
}

/// A validated update request.
#[derive(Debug, Clone, Default)]
pub struct UpdateInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_public: Option<bool>,
    pub avatar_media_id: Option<String>,
    pub delete_avatar: bool,
}

impl UpdateInput {
    /// The admin console's reset (admin spec §12.5): name `Group <first 8
    /// characters of the chat id>`, empty description, avatar removed.
    pub fn admin_reset(chat_id: Uuid, name: bool, description: bool, avatar: bool) -> Self {
        let id = chat_id.to_string();
        UpdateInput {
            name: name.then(|| format!("Group {}", &id[..8])),
            description: description.then(String::new),
            is_public: None,
            avatar_media_id: None,
            delete_avatar: avatar,
        }
    }
}

/// Validates an update body (400 `Bad Request`). `null` fields are absent.
pub fn validate_update(req: UpdateGroupChatRequest) -> AppResult<UpdateInput> {
    let name = match req.name.as_deref() {
        None => None,
        Some(n) => Some(valid_name(n).ok_or_else(bad_request)?),
    };
    let description = match req.description.as_deref() {
        None => None,
        Some(d) => Some(valid_description(d).ok_or_else(bad_request)?),
    };
    Ok(UpdateInput {
        name,
        description,
        is_public: req.is_public,
        avatar_media_id: req.avatar_media_id,
        delete_avatar: req.delete_avatar.unwrap_or(false),
    })
}

/// `PUT /api/chats/group/{chatID}` (and the admin reset): one system message
/// per effective change, then `message.new` for each and `chat.update` to
/// every member built with their own role. Returns the actor's view of the
/// chat (`None` for a platform admin who cannot see it).
pub async fn update(
    state: &AppState,
    actor: Actor,
    chat_id: Uuid,
    input: UpdateInput,
) -> AppResult<Option<ChatListResponse>> {
    in_chat_order!(state, chat_id, |conn| update_locked(
        state, conn, actor, chat_id, input
    ))
}

async fn update_locked(
    state: &AppState,
    conn: &mut PgConnection,
    actor: Actor,
    chat_id: Uuid,
    input: UpdateInput,
) -> AppResult<Option<ChatListResponse>> {
    let me = actor.id();
    let mut tx = conn.begin().await?;
    let g = repo::lock_group(&mut tx, chat_id, me)
        .await?
        .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    if let Actor::Member(_) = actor {
        if member_role(&g, AppError::forbidden(NOT_MEMBER))? == "member" {
            return Err(AppError::forbidden(
                "Only admins or owners can update group info",
            ));
        }
    }

    let mut changes: Vec<(&str, Value)> = Vec::new();
    let mut name = g.name.clone();
    if let Some(new) = input.name.filter(|n| *n != g.name) {
        changes.push((
            "system_rename",
            json!({ "old_name": g.name, "new_name": new }),
        ));
        name = new;
    }
    let current_description = g.description.clone().unwrap_or_default();
    let mut description = g.description.clone();
    if let Some(new) = input.description.filter(|d| *d != current_description) {
        changes.push((
            "system_description",
            json!({ "old_description": current_description, "new_description": new }),
        ));
        description = Some(new);
    }
    let mut is_public = g.is_public;
    let visibility_changed = input.is_public.is_some_and(|p| p != g.is_public);
    if visibility_changed {
        is_public = !g.is_public;
        changes.push((
            "system_visibility",
            json!({ "new_visibility": if is_public { "public" } else { "private" } }),
        ));
    }
    let mut avatar_id = g.avatar_id;
    if input.delete_avatar && g.avatar_id.is_some() {
        avatar_id = None;
        changes.push(("system_avatar", json!({ "action": "removed" })));
    } else if let Some(media) = parse_avatar(input.avatar_media_id)? {
        if !repo::lock_usable_group_avatar(&mut tx, media, me).await? {
            return Err(AppError::bad_request(INVALID_AVATAR));
        }
        avatar_id = Some(media);
        changes.push(("system_avatar", json!({ "action": "updated" })));
    }

    if changes.is_empty() {
        tx.rollback().await?;
        return Ok(chat_list_items_for(state, conn, chat_id, &[me])
            .await?
            .pop()
            .map(|(_, item)| item));
    }
    repo::update_info(
        &mut tx,
        g.group_id,
        &GroupInfo {
            name: &name,
            description: description.as_deref(),
            is_public,
            avatar_id,
        },
    )
    .await?;
    if visibility_changed {
        // A new code either way: going private must not keep a code that
        // was public, and going public must not publish a code that was
        // handed out privately (the reference keeps it).
        repo::set_invite(&mut tx, g.group_id, &new_invite_code(), is_public).await?;
    }
    let mut ids = Vec::with_capacity(changes.len());
    for (kind, data) in &changes {
        ids.push(insert_system_message(&mut tx, chat_id, Some(me), kind, Some(data)).await?);
    }
    tx.commit().await?;

    let msgs = render_system(state, conn, &ids).await?;
    publish_messages(state, conn, chat_id, me, &msgs).await;
    let members = crate::chats::repo::members(conn, chat_id).await?;
    let items = publish_chat_items(state, conn, kinds::CHAT_UPDATE, chat_id, me, &members).await;
    if let Some((_, item)) = items.into_iter().find(|(v, _)| *v == me) {
        return Ok(Some(item));
    }
    Ok(chat_list_items_for(state, conn, chat_id, &[me])
        .await?
        .pop()
        .map(|(_, item)| item))
}

/// `DELETE /api/chats/group/{chatID}` (owner) and the admin dissolve:
/// soft-deletes the chat, then `chat.delete` to every member row.
pub async fn delete(state: &AppState, actor: Actor, chat_id: Uuid) -> AppResult<()> {
    in_chat_order!(state, chat_id, |conn| async move {
        let mut tx = conn.begin().await?;
        let g = repo::lock_group(&mut tx, chat_id, actor.id())
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        if let Actor::Member(_) = actor {
            if member_role(&g, AppError::forbidden(NOT_MEMBER))? != "owner" {
                return Err(AppError::forbidden("Only owner can delete the group"));
            }
        }
        repo::soft_delete_chat(&mut tx, chat_id).await?;
        tx.commit().await?;
        let members = crate::chats::repo::members(conn, chat_id).await?;
        let event = Event::new(
            kinds::CHAT_DELETE,
            ChatIdPayload { chat_id },
            Some(chat_id),
            Some(actor.id()),
        );
        state.bus.to_users(&members, &event).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_after_trimming() {
        assert_eq!(valid_name("  Team  ").as_deref(), Some("Team"));
        assert_eq!(valid_name("  ab  "), None);
        assert_eq!(valid_name("     "), None);
        assert_eq!(valid_name(&"x".repeat(101)), None);
        assert_eq!(
            valid_name(&"é".repeat(100)).map(|s| s.chars().count()),
            Some(100)
        );
        assert_eq!(valid_name("a\0bc"), None);
    }

    #[test]
    fn admin_reset_names_the_group_after_its_chat_id() {
        let id = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        let input = UpdateInput::admin_reset(id, true, true, false);
        assert_eq!(input.name.as_deref(), Some("Group 0193a1b2"));
        assert_eq!(input.description.as_deref(), Some(""));
        assert!(!input.delete_avatar);
    }
}
