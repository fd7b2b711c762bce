//! Wire types of the admin group endpoints.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// One row of `GET /api/admin/groups`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminGroupListItem {
    /// The internal `group_chats.id`.
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub member_count: i64,
    pub is_public: bool,
    pub created_at: String,
}

/// `GET /api/admin/groups/{chatID}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminGroupDetail {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    /// Always present (`null` allowed).
    #[schema(required = true)]
    pub description: Option<String>,
    pub avatar: String,
    pub is_public: bool,
    /// Always present (`null` when the creator is gone).
    #[schema(required = true)]
    pub creator_id: Option<Uuid>,
    #[schema(required = true)]
    pub creator_name: Option<String>,
    pub member_count: i64,
    pub total_messages: i64,
    pub created_at: String,
}

/// `model.GroupMemberDTO`: one schema for both member lists, so the
/// user and admin views cannot drift apart.
pub use crate::groups::dto::GroupMemberDto;

/// `POST /api/admin/groups/{chatID}/reset` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::ResetGroupInfoRequest)]
pub struct ResetGroupInfoRequest {
    #[serde(default)]
    pub reset_avatar: Option<bool>,
    #[serde(default)]
    pub reset_description: Option<bool>,
    #[serde(default)]
    pub reset_name: Option<bool>,
}
