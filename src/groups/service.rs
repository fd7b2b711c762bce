//! Rules of the groups feature: create, update, delete, the public
//! directory, invites, membership (join, leave, add, kick), roles and
//! ownership, with their system messages and events.
//!
//! Concurrency: every action on an existing group runs inside the chat's
//! [`ChatOrderGuard`] (so its system messages and events are ordered with
//! concurrent sends) and its transaction starts by locking the chat and
//! group rows ([`repo::lock_group`]); roles and memberships are read after
//! that lock. Events are published after commit, before the guard is
//! released, so every client sees them in commit order.

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::dto::{
    decode_member_cursor, decode_public_cursor, encode_member_cursor, encode_public_cursor,
    like_prefix, CreateGroupChatRequest, GroupInviteResponse, GroupMemberDto, GroupPreviewDto,
    PublicCursor, PublicGroupDto, PublicSort, UpdateGroupChatRequest, DESCRIPTION_MAX_CHARS,
    NAME_MAX_CHARS, NAME_MIN_CHARS, QUERY_MAX_CHARS,
};
use super::repo::{self, GroupInfo, LockedGroup, NewGroup};
use crate::chats::dto::{ChatIdPayload, ChatListResponse, QueryParams};
use crate::chats::service::chat_list_items_for;
use crate::error::{AppError, AppResult};
use crate::http::response::{Page, PageMeta};
use crate::http::text;
use crate::messages::dto::{format_ts, MessageResponse, RenderOpts};
use crate::messages::ordering::ChatOrderGuard;
use crate::messages::service::{insert_system_message, load_message_responses, publish_to_chat};
use crate::realtime::event::{kinds, Event};
use crate::state::AppState;

/// Length of invite codes: 22 characters of `[A-Za-z0-9]` carry 131 bits
/// from the OS CSPRNG (the reference's 12 carry 71), URL-safe as they are.
pub const INVITE_CODE_LEN: usize = 22;
/// The `invite_code` column's width; longer input cannot be a code.
const INVITE_CODE_MAX: usize = 50;

const NOT_FOUND: &str = "Group chat not found";
const NOT_MEMBER: &str = "You are not a member of this group";
const TARGET_NOT_MEMBER: &str = "Target user is not a member of this group";
const INVALID_INVITE: &str = "Invalid invite code";
const INVITE_EXPIRED: &str = "Invite code has expired";
const ALREADY_MEMBER: &str = "You are already a member of this group";
const INVALID_AVATAR: &str = "Invalid avatar media";
const BANNED_MEMBER: &str = "Cannot add suspended/banned user to group";
/// Joining is refused when the joiner and the owner are in a block
/// relation (the reference ignores blocks on join). The message does not
/// say who blocked whom.
const JOIN_BLOCKED: &str = "You cannot join this group";

/// A fresh invite code.
pub fn new_invite_code() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(INVITE_CODE_LEN)
        .map(char::from)
        .collect()
}

/// Who performs a group action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A user through the group endpoints: membership and role rules apply.
    Member(Uuid),
    /// A platform admin through the admin console (dissolve, reset): no
    /// membership needed, acts with the owner's powers, is the sender of
    /// the system messages and events.
    PlatformAdmin(Uuid),
}

impl Actor {
    /// The acting user.
    pub fn id(self) -> Uuid {
        match self {
            Actor::Member(u) | Actor::PlatformAdmin(u) => u,
        }
    }
}

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

fn internal(what: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("{what}"))
}

/// A group name as stored: a trimmed display name of 3–100 code points.
/// Unlike the reference, the length rule applies AFTER trimming, so
/// `"  ab  "` and whitespace-only names are refused instead of stored short
/// or failing.
fn valid_name(raw: &str) -> Option<String> {
    text::display_name(raw, NAME_MIN_CHARS, NAME_MAX_CHARS)
}

/// A description as stored: trimmed free text of at most 255 code points.
fn valid_description(raw: &str) -> Option<String> {
    text::free_text(raw, DESCRIPTION_MAX_CHARS)
}

fn parse_ids(raw: Option<Vec<String>>) -> AppResult<Vec<Uuid>> {
    let raw = raw.filter(|v| !v.is_empty()).ok_or_else(bad_request)?;
    raw.iter()
        .map(|s| Uuid::try_parse(s.trim()).map_err(|_| bad_request()))
        .collect()
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

/// Runs `$body` (a future using `$conn: &mut PgConnection`) inside the
/// chat's ordering guard, then releases it. A macro rather than a helper
/// taking a closure: the body's future borrows the guard's connection, and a
/// generic `FnOnce(&mut PgConnection) -> Fut` cannot tie `Fut` to that borrow.
macro_rules! in_chat_order {
    ($state:expr, $chat_id:expr, |$conn:ident| $body:expr) => {{
        let mut guard = ChatOrderGuard::acquire(&$state.db, $chat_id).await?;
        let res = {
            let $conn: &mut PgConnection = guard.conn();
            $body.await
        };
        guard.release().await;
        res
    }};
}

/// Renders freshly inserted system messages (no avatar, `target_name`
/// only), ascending.
async fn render_system(
    state: &AppState,
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> AppResult<Vec<MessageResponse>> {
    let msgs = load_message_responses(conn, state.storage.as_ref(), ids, RenderOpts::SYSTEM_ACTION)
        .await?;
    if msgs.len() != ids.len() {
        return Err(internal("system message vanished after commit"));
    }
    Ok(msgs)
}

async fn render_one(
    state: &AppState,
    conn: &mut PgConnection,
    id: Uuid,
) -> AppResult<MessageResponse> {
    render_system(state, conn, &[id])
        .await?
        .pop()
        .ok_or_else(|| internal("system message vanished after commit"))
}

/// `kind` personalised per viewer (each one's role, invite visibility and
/// counters), in one query and one Redis round trip.
async fn publish_chat_items(
    state: &AppState,
    conn: &mut PgConnection,
    kind: &'static str,
    chat_id: Uuid,
    sender: Uuid,
    viewers: &[Uuid],
) -> Vec<(Uuid, ChatListResponse)> {
    if viewers.is_empty() {
        return Vec::new();
    }
    match chat_list_items_for(state, conn, chat_id, viewers).await {
        Ok(items) => {
            let events = items
                .iter()
                .map(|(viewer, item)| {
                    (*viewer, Event::new(kind, item, Some(chat_id), Some(sender)))
                })
                .collect();
            state.bus.to_each(events).await;
            items
        }
        Err(e) => {
            tracing::error!(error = %e, %chat_id, kind, "group chat event not sent");
            Vec::new()
        }
    }
}

async fn publish_messages(
    state: &AppState,
    conn: &mut PgConnection,
    chat_id: Uuid,
    sender: Uuid,
    msgs: &[MessageResponse],
) {
    for m in msgs {
        publish_to_chat(state, conn, chat_id, Some(sender), kinds::MESSAGE_NEW, m).await;
    }
}

/// The role a member actor needs, or the error of the endpoint.
fn member_role(g: &LockedGroup, not_member: AppError) -> AppResult<&str> {
    g.my_role.as_deref().ok_or(not_member)
}

// ---------------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------------

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
    let mut conn = state.db.acquire().await?;
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

// ---------------------------------------------------------------------------------------------
// Update / delete
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// The `query` parameter of the group lists: 1–100 code points when given
/// (an empty value counts as absent), then trimmed. `None`: no filter.
fn list_query(q: &QueryParams) -> AppResult<Option<String>> {
    let Some(raw) = q.non_empty("query") else {
        return Ok(None);
    };
    if raw.chars().count() > QUERY_MAX_CHARS || raw.contains('\0') {
        return Err(bad_request());
    }
    let trimmed = raw.trim();
    Ok((!trimmed.is_empty()).then(|| like_prefix(trimmed)))
}

/// `GET /api/chats/group/{chatID}/members` (`viewer` = the caller, who must
/// be a member) and the admin member list (`viewer` = `None`).
pub async fn list_members(
    state: &AppState,
    viewer: Option<Uuid>,
    chat_id: Uuid,
    q: &QueryParams,
) -> AppResult<Page<GroupMemberDto>> {
    let prefix = list_query(q)?;
    let limit = q.limit()?;
    let after = match q.non_empty("cursor") {
        None => None,
        // The reference answers 500 here.
        Some(raw) => Some(
            decode_member_cursor(raw)
                .ok_or_else(|| AppError::bad_request("Invalid cursor format"))?,
        ),
    };
    let access = repo::access(&state.db, chat_id, viewer)
        .await?
        .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    if viewer.is_some() && !access.is_member {
        return Err(AppError::forbidden(NOT_MEMBER));
    }
    let mut rows = repo::member_page(
        &state.db,
        access.group_id,
        prefix.as_deref(),
        after,
        limit + 1,
    )
    .await?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = has_next
        .then(|| rows.last().map(|r| encode_member_cursor(r.joined_at, r.id)))
        .flatten();
    Ok(Page {
        data: rows
            .into_iter()
            .map(|r| r.into_dto(state.storage.as_ref()))
            .collect(),
        meta: PageMeta {
            next_cursor,
            has_next,
            prev_cursor: None,
            has_prev: false,
        },
    })
}

/// `GET /api/chats/group/public`.
pub async fn public_groups(
    state: &AppState,
    me: Uuid,
    q: &QueryParams,
) -> AppResult<Page<PublicGroupDto>> {
    let prefix = list_query(q)?;
    let limit = q.limit()?;
    let sort = match q.non_empty("sort_by") {
        None | Some("name") => PublicSort::Name,
        Some("member_count") => PublicSort::MemberCount,
        Some(_) => return Err(bad_request()),
    };
    let after = match q.non_empty("cursor") {
        None => None,
        Some(raw) => Some(decode_public_cursor(raw, sort)?),
    };
    let mut rows = repo::public_page(
        &state.db,
        me,
        prefix.as_deref(),
        sort,
        after.as_ref(),
        limit + 1,
    )
    .await?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_next {
        rows.last().map(|r| {
            encode_public_cursor(&match sort {
                PublicSort::Name => PublicCursor::Name(r.name.clone(), r.id),
                PublicSort::MemberCount => PublicCursor::MemberCount(r.member_count, r.id),
            })
        })
    } else {
        None
    };
    Ok(Page {
        data: rows
            .into_iter()
            .map(|r| r.into_dto(state.storage.as_ref()))
            .collect(),
        meta: PageMeta {
            next_cursor,
            has_next,
            prev_cursor: None,
            has_prev: false,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Invites and joining
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_codes_are_long_random_and_url_safe() {
        let a = new_invite_code();
        let b = new_invite_code();
        assert_eq!(a.len(), INVITE_CODE_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

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
