//! HTTP routes of the groups feature (thin: parse, call the service).
//!
//! Rate-limit buckets (auth spec §4): create and update share
//! `user_management` with the profile update; the invite preview is public
//! (`auth_public`, per IP, no authentication); everything else is
//! `general_read`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::docs::{GroupMembersQuery, PublicGroupsQuery};
use super::dto::{
    AddGroupMemberRequest, CreateGroupChatForm, CreateGroupChatRequest, GroupInviteResponse,
    GroupMemberDto, GroupPreviewDto, JoinGroupByInviteRequest, PublicGroupDto,
    TransferGroupOwnershipRequest, UpdateGroupChatForm, UpdateGroupChatRequest,
    UpdateGroupMemberRoleRequest,
};
use super::service::{self, Actor};
use crate::chats::dto::{ChatListResponse, QueryParams};
use crate::chats::routes::path_uuid;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::multipart::JsonOrForm;
use crate::http::openapi::{AuthenticatedErrors, PublicErrors};
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::schema::{DataBody, EmptyBody, ErrorBody, PageBody};
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::media::form::{self, AVATAR_FORM_LIMIT};
use crate::media::service::Usage;
use crate::messages::dto::MessageResponse;
use crate::messages::service::run_detached;
use crate::state::AppState;

const INVALID_CHAT_ID: &str = "Invalid Chat ID";

/// The groups routes with their middleware groups.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let management = routing::authenticated(
        OpenApiRouter::new()
            .routes(routes!(create))
            .routes(routes!(update)),
        state,
        rate_limit::USER_MANAGEMENT,
    );
    let general = routing::authenticated(
        OpenApiRouter::new()
            .routes(routes!(public_groups))
            .routes(routes!(join_by_invite))
            .routes(routes!(delete_group))
            .routes(routes!(join_public))
            .routes(routes!(leave))
            .routes(routes!(reset_invite))
            .routes(routes!(transfer))
            .routes(routes!(list_members, add_members))
            .routes(routes!(kick))
            .routes(routes!(change_role)),
        state,
        rate_limit::GENERAL_READ,
    );
    let public = routing::public(
        OpenApiRouter::new().routes(routes!(preview)),
        state,
        rate_limit::AUTH_PUBLIC,
    );
    management.merge(general).merge(public)
}

/// The chat and user ids of the member routes, each with its own 400.
fn chat_and_user(path: Result<Path<(String, String)>, PathRejection>) -> AppResult<(Uuid, Uuid)> {
    let Ok(Path((chat, user))) = path else {
        return Err(AppError::bad_request(INVALID_CHAT_ID));
    };
    let chat = parse_uuid(&chat, INVALID_CHAT_ID)?;
    let user = parse_uuid(&user, "Invalid User ID")?;
    Ok((chat, user))
}

#[utoipa::path(post, path = "/api/chats/group", tag = "chat", operation_id = "group_create",
    summary = "Create Group Chat",
    description = "Create a group owned by the caller with the given members; everyone gets `chat.new`. JSON names an \
        uploaded avatar (`avatar_media_id`); `multipart/form-data` (the earlier client generation) carries the avatar file \
        and `member_ids` as a JSON array in a string.",
    security(("BearerAuth" = [])),
    request_body(content(
        (CreateGroupChatRequest = "application/json"),
        (CreateGroupChatForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "The new group as the caller sees it", body = DataBody<ChatListResponse>),
        (status = 400, description = "Invalid body or name/description, members not found or deleted, the caller among them, or an unusable avatar", body = ErrorBody),
        (status = 403, description = "A member is banned or blocked with the caller", body = ErrorBody),
        (status = 413, description = "Multipart body over 5 MiB", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    body: JsonOrForm<CreateGroupChatRequest, AVATAR_FORM_LIMIT>,
) -> AppResult<Data<ChatListResponse>> {
    let user = me.user_id;
    let form = match body {
        JsonOrForm::Json(req) => {
            let input = service::validate_create(req)?;
            let chat =
                run_detached(async move { service::create(&state, user, input).await }).await?;
            return Ok(Data(chat));
        }
        JsonOrForm::Form(form) => form::read(&state, form, "avatar", Usage::GroupAvatar).await?,
    };
    let chat = form
        .run(user, |fields, avatar| async move {
            let req = CreateGroupChatRequest::from_form(&fields, avatar.map(|m| m.id))?;
            let input = service::validate_create(req)?;
            run_detached(async move { service::create(&state, user, input).await }).await
        })
        .await?;
    Ok(Data(chat))
}

#[utoipa::path(put, path = "/api/chats/group/{chatID}", tag = "chat", operation_id = "group_update",
    summary = "Update Group Chat Info",
    description = "Change name, description, visibility or avatar (admins and the owner); one system message per change, \
        `chat.update` to every member. JSON names an uploaded avatar; `multipart/form-data` (the earlier client \
        generation) carries the avatar file.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group")),
    request_body(content(
        (UpdateGroupChatRequest = "application/json"),
        (UpdateGroupChatForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "The group as the caller sees it", body = DataBody<ChatListResponse>),
        (status = 400, description = "Invalid Chat ID, body, name/description or avatar", body = ErrorBody),
        (status = 403, description = "Not a member, or a plain member", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        (status = 413, description = "Multipart body over 5 MiB", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn update(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    body: Result<JsonOrForm<UpdateGroupChatRequest, AVATAR_FORM_LIMIT>, AppError>,
) -> AppResult<Data<ChatListResponse>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let actor = Actor::Member(me.user_id);
    let apply = |state: AppState, req: UpdateGroupChatRequest| async move {
        let input = service::validate_update(req)?;
        run_detached(async move { service::update(&state, actor, chat_id, input).await })
            .await?
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("updated group not visible")))
    };
    let chat = match body? {
        JsonOrForm::Json(req) => apply(state, req).await?,
        JsonOrForm::Form(form) => {
            let form = form::read(&state, form, "avatar", Usage::GroupAvatar).await?;
            form.run(me.user_id, |fields, avatar| async move {
                apply(
                    state,
                    UpdateGroupChatRequest::from_form(&fields, avatar.map(|m| m.id))?,
                )
                .await
            })
            .await?
        }
    };
    Ok(Data(chat))
}

#[utoipa::path(delete, path = "/api/chats/group/{chatID}", tag = "chat", operation_id = "group_delete",
    summary = "Delete Group",
    description = "Dissolve the group (owner only); every member gets `chat.delete`.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group")),
    responses(
        (status = 200, description = "Deleted", body = EmptyBody),
        (status = 400, description = "Invalid Chat ID", body = ErrorBody),
        (status = 403, description = "Not a member, or not the owner", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn delete_group(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Empty> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let actor = Actor::Member(me.user_id);
    run_detached(async move { service::delete(&state, actor, chat_id).await }).await?;
    Ok(Empty)
}

#[utoipa::path(get, path = "/api/chats/group/public", tag = "chat", operation_id = "group_search_public",
    summary = "Search Public Groups",
    description = "The public group directory, by name or by member count.",
    security(("BearerAuth" = [])),
    params(PublicGroupsQuery),
    responses(
        (status = 200, description = "A page of public groups", body = PageBody<PublicGroupDto>),
        (status = 400, description = "Invalid query, limit, sort_by or cursor", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn public_groups(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<PublicGroupDto>> {
    service::public_groups(&state, me.user_id, &QueryParams::parse(raw.as_deref())).await
}

#[utoipa::path(get, path = "/api/chats/group/{chatID}/members", tag = "chat", operation_id = "group_list_members",
    summary = "Search Group Members",
    description = "Members of a group the caller belongs to, oldest first.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group"), GroupMembersQuery),
    responses(
        (status = 200, description = "A page of members", body = PageBody<GroupMemberDto>),
        (status = 400, description = "Invalid Chat ID, query, limit or cursor", body = ErrorBody),
        (status = 403, description = "Not a member", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn list_members(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<GroupMemberDto>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    service::list_members(
        &state,
        Some(me.user_id),
        chat_id,
        &QueryParams::parse(raw.as_deref()),
    )
    .await
}

#[utoipa::path(post, path = "/api/chats/group/{chatID}/members", tag = "chat", operation_id = "group_add_members",
    summary = "Add Member to Group",
    description = "Add users (admins and the owner); one `system_add` message per new member.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group")),
    request_body = AddGroupMemberRequest,
    responses(
        (status = 200, description = "The system messages, one per added user", body = DataBody<Vec<MessageResponse>>),
        (status = 400, description = "Invalid Chat ID or body", body = ErrorBody),
        (status = 403, description = "Not a member, a plain member, or a user is banned or blocked", body = ErrorBody),
        (status = 404, description = "Group chat or a user not found", body = ErrorBody),
        (status = 409, description = "All users are already members", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn add_members(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    body: Result<LenientJson<AddGroupMemberRequest>, AppError>,
) -> AppResult<Data<Vec<MessageResponse>>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let LenientJson(req) = body?;
    let users = service::validate_add(req.user_ids)?;
    let user = me.user_id;
    let msgs =
        run_detached(async move { service::add_members(&state, user, chat_id, users).await })
            .await?;
    Ok(Data(msgs))
}

#[utoipa::path(post, path = "/api/chats/group/{chatID}/leave", tag = "chat", operation_id = "group_leave",
    summary = "Leave Group",
    description = "Leave a group (the owner must transfer ownership first).",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group")),
    responses(
        (status = 200, description = "The `system_leave` message", body = DataBody<MessageResponse>),
        (status = 400, description = "Invalid Chat ID, not a member, or the owner", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn leave(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<MessageResponse>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let user = me.user_id;
    let msg = run_detached(async move { service::leave(&state, user, chat_id).await }).await?;
    Ok(Data(msg))
}

#[utoipa::path(post, path = "/api/chats/group/{chatID}/members/{userID}/kick", tag = "chat", operation_id = "group_kick_member",
    summary = "Kick Member from Group",
    description = "Remove a member (admins remove members, the owner anyone but themself).",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group"), ("userID" = uuid::Uuid, Path, description = "The member's user id")),
    responses(
        (status = 200, description = "The `system_kick` message", body = DataBody<MessageResponse>),
        (status = 400, description = "Invalid Chat ID or User ID, or the caller", body = ErrorBody),
        (status = 403, description = "Not a member, or not allowed to kick this member", body = ErrorBody),
        (status = 404, description = "Group chat not found, or the target is not a member", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn kick(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
) -> AppResult<Data<MessageResponse>> {
    let (chat_id, target) = chat_and_user(path)?;
    let user = me.user_id;
    let msg =
        run_detached(async move { service::kick(&state, user, chat_id, target).await }).await?;
    Ok(Data(msg))
}

#[utoipa::path(put, path = "/api/chats/group/{chatID}/members/{userID}/role", tag = "chat", operation_id = "group_update_member_role",
    summary = "Update Member Role",
    description = "Promote to admin or demote to member (owner only).",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group"), ("userID" = uuid::Uuid, Path, description = "The member's user id")),
    request_body = UpdateGroupMemberRoleRequest,
    responses(
        (status = 200, description = "The `system_promote`/`system_demote` message", body = DataBody<MessageResponse>),
        (status = 400, description = "Invalid Chat ID, User ID or role, the caller, or no change", body = ErrorBody),
        (status = 403, description = "Not the owner, or the target is banned", body = ErrorBody),
        (status = 404, description = "Group chat not found, or the target is not a member", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn change_role(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<LenientJson<UpdateGroupMemberRoleRequest>, AppError>,
) -> AppResult<Data<MessageResponse>> {
    let (chat_id, target) = chat_and_user(path)?;
    let LenientJson(req) = body?;
    let role = service::validate_role(req.role)?;
    let user = me.user_id;
    let msg =
        run_detached(
            async move { service::change_role(&state, user, chat_id, target, role).await },
        )
        .await?;
    Ok(Data(msg))
}

#[utoipa::path(post, path = "/api/chats/group/{chatID}/transfer", tag = "chat", operation_id = "group_transfer_ownership",
    summary = "Transfer Ownership",
    description = "Make another member the owner; the caller becomes admin.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group")),
    request_body = TransferGroupOwnershipRequest,
    responses(
        (status = 200, description = "The `system_promote` message", body = DataBody<MessageResponse>),
        (status = 400, description = "Invalid Chat ID or new_owner_id, the caller, or a deleted user", body = ErrorBody),
        (status = 403, description = "Not the owner, or the target is banned", body = ErrorBody),
        (status = 404, description = "Group chat not found, or the target is not a member", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn transfer(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    body: Result<LenientJson<TransferGroupOwnershipRequest>, AppError>,
) -> AppResult<Data<MessageResponse>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let LenientJson(req) = body?;
    let target = service::validate_transfer(req.new_owner_id)?;
    let user = me.user_id;
    let msg =
        run_detached(async move { service::transfer(&state, user, chat_id, target).await }).await?;
    Ok(Data(msg))
}

#[utoipa::path(post, path = "/api/chats/group/{chatID}/join", tag = "chat", operation_id = "group_join_public",
    summary = "Join Public Group",
    description = "Join a public group; the caller gets `chat.new`, the members `message.new`.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group")),
    responses(
        (status = 200, description = "The group as the caller sees it", body = DataBody<ChatListResponse>),
        (status = 400, description = "Invalid Chat ID", body = ErrorBody),
        (status = 403, description = "The group is private, or the owner blocks the caller", body = ErrorBody),
        (status = 404, description = "Group chat not found", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn join_public(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<ChatListResponse>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let user = me.user_id;
    let chat =
        run_detached(async move { service::join_public(&state, user, chat_id).await }).await?;
    Ok(Data(chat))
}

#[utoipa::path(post, path = "/api/chats/group/join/invite", tag = "chat", operation_id = "group_join_by_invite",
    summary = "Join Group by Invite Code",
    description = "Join any group whose invite code the caller has.",
    security(("BearerAuth" = [])),
    request_body = JoinGroupByInviteRequest,
    responses(
        (status = 200, description = "The group as the caller sees it", body = DataBody<ChatListResponse>),
        (status = 400, description = "Invalid body, or the invite code has expired", body = ErrorBody),
        (status = 403, description = "The owner blocks the caller", body = ErrorBody),
        (status = 404, description = "Invalid invite code", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn join_by_invite(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    LenientJson(req): LenientJson<JoinGroupByInviteRequest>,
) -> AppResult<Data<ChatListResponse>> {
    let code = req.invite_code.unwrap_or_default();
    let user = me.user_id;
    let chat =
        run_detached(async move { service::join_by_invite(&state, user, &code).await }).await?;
    Ok(Data(chat))
}

#[utoipa::path(put, path = "/api/chats/group/{chatID}/invite", tag = "chat", operation_id = "group_reset_invite",
    summary = "Reset Group Invite Code",
    description = "Issue a new invite code (admins and the owner); the old one stops working.",
    security(("BearerAuth" = [])),
    params(("chatID" = uuid::Uuid, Path, description = "Chat id of the group")),
    responses(
        (status = 200, description = "The new invite code", body = DataBody<GroupInviteResponse>),
        (status = 400, description = "Invalid Chat ID", body = ErrorBody),
        (status = 403, description = "Not a member, or a plain member", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
        AuthenticatedErrors
    ))]
async fn reset_invite(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
) -> AppResult<Data<GroupInviteResponse>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let user = me.user_id;
    let invite =
        run_detached(async move { service::reset_invite(&state, user, chat_id).await }).await?;
    Ok(Data(invite))
}

#[utoipa::path(get, path = "/api/chats/group/invite/{inviteCode}", tag = "chat", operation_id = "group_preview_invite",
    summary = "Get Group Preview by Invite Code",
    description = "What an invite link leads to; no authentication.",
    params(("inviteCode" = String, Path, description = "The invite code")),
    responses(
        (status = 200, description = "The group's preview", body = DataBody<GroupPreviewDto>),
        (status = 400, description = "The invite code has expired", body = ErrorBody),
        (status = 404, description = "Invalid invite code", body = ErrorBody),
        PublicErrors
    ))]
async fn preview(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
) -> AppResult<Data<GroupPreviewDto>> {
    let Ok(Path(code)) = code else {
        return Err(AppError::not_found("Invalid invite code"));
    };
    Ok(Data(service::preview(&state, &code).await?))
}
