//! HTTP routes of the groups feature (thin: parse, call the service).
//!
//! Rate-limit buckets (auth spec §4): create and update share
//! `user_management` with the profile update; the invite preview is public
//! (`auth_public`, per IP, no authentication); everything else is
//! `general_read`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post, put};
use axum::Router;
use uuid::Uuid;

use super::dto::{
    AddGroupMemberRequest, CreateGroupChatRequest, GroupInviteResponse, GroupMemberDto,
    GroupPreviewDto, JoinGroupByInviteRequest, PublicGroupDto, TransferGroupOwnershipRequest,
    UpdateGroupChatRequest, UpdateGroupMemberRoleRequest,
};
use super::service::{self, Actor};
use crate::app::AppState;
use crate::chats::dto::{ChatListResponse, QueryParams};
use crate::chats::routes::path_uuid;
use crate::error::{AppError, AppResult};
use crate::http::auth::AuthUser;
use crate::http::json::LenientJson;
use crate::http::path::parse_uuid;
use crate::http::rate_limit;
use crate::http::response::{Data, Empty, Page};
use crate::http::routing;
use crate::messages::dto::MessageResponse;
use crate::messages::service::run_detached;

const INVALID_CHAT_ID: &str = "Invalid Chat ID";

/// The groups routes with their middleware groups.
pub fn routes(state: &AppState) -> Router<AppState> {
    let management = routing::authenticated(
        Router::new()
            .route("/api/chats/group", post(create))
            .route("/api/chats/group/{chat_id}", put(update)),
        state,
        rate_limit::USER_MANAGEMENT,
    );
    let general = routing::authenticated(
        Router::new()
            .route("/api/chats/group/public", get(public_groups))
            .route("/api/chats/group/join/invite", post(join_by_invite))
            .route(
                "/api/chats/group/{chat_id}",
                axum::routing::delete(delete_group),
            )
            .route("/api/chats/group/{chat_id}/join", post(join_public))
            .route("/api/chats/group/{chat_id}/leave", post(leave))
            .route("/api/chats/group/{chat_id}/invite", put(reset_invite))
            .route("/api/chats/group/{chat_id}/transfer", post(transfer))
            .route(
                "/api/chats/group/{chat_id}/members",
                get(list_members).post(add_members),
            )
            .route(
                "/api/chats/group/{chat_id}/members/{user_id}/kick",
                post(kick),
            )
            .route(
                "/api/chats/group/{chat_id}/members/{user_id}/role",
                put(change_role),
            ),
        state,
        rate_limit::GENERAL_READ,
    );
    let public = routing::public(
        Router::new().route("/api/chats/group/invite/{invite_code}", get(preview)),
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

async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    LenientJson(req): LenientJson<CreateGroupChatRequest>,
) -> AppResult<Data<ChatListResponse>> {
    let input = service::validate_create(req)?;
    let user = me.user_id;
    let chat = run_detached(async move { service::create(&state, user, input).await }).await?;
    Ok(Data(chat))
}

async fn update(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    raw_id: Result<Path<String>, PathRejection>,
    body: Result<LenientJson<UpdateGroupChatRequest>, AppError>,
) -> AppResult<Data<ChatListResponse>> {
    let chat_id = path_uuid(raw_id, INVALID_CHAT_ID)?;
    let LenientJson(req) = body?;
    let input = service::validate_update(req)?;
    let actor = Actor::Member(me.user_id);
    let chat = run_detached(async move { service::update(&state, actor, chat_id, input).await })
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("updated group not visible")))?;
    Ok(Data(chat))
}

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

async fn public_groups(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    RawQuery(raw): RawQuery,
) -> AppResult<Page<PublicGroupDto>> {
    service::public_groups(&state, me.user_id, &QueryParams::parse(raw.as_deref())).await
}

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

async fn preview(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
) -> AppResult<Data<GroupPreviewDto>> {
    let Ok(Path(code)) = code else {
        return Err(AppError::not_found("Invalid invite code"));
    };
    Ok(Data(service::preview(&state, &code).await?))
}
