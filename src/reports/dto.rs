//! Wire types of the reports endpoints (`model.CreateReportRequest`,
//! `model.ReportListResponse`, `model.ReportDetailResponse`,
//! `model.ResolveReportRequest`) and the evidence snapshot shapes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/reports` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::CreateReportRequest)]
pub struct CreateReportRequest {
    /// `message` (needs `message_id`), `group` (needs `chat_id`) or `user`
    /// (needs `target_user_id`).
    #[serde(default)]
    #[schema(required = true, value_type = Option<super::docs::ReportTarget>, inline)]
    pub target_type: Option<String>,
    /// 1–255 characters after trimming.
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 255)]
    pub reason: Option<String>,
    /// At most 1,000 characters after trimming.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    #[serde(default)]
    pub message_id: Option<Uuid>,
    /// The chat id (not the internal group id) of a reported group.
    #[serde(default)]
    pub chat_id: Option<Uuid>,
    #[serde(default)]
    pub target_user_id: Option<Uuid>,
}

/// `PUT /api/admin/reports/{id}/resolve` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = model::ResolveReportRequest)]
pub struct ResolveReportRequest {
    /// `resolved` or `rejected`.
    #[serde(default)]
    #[schema(required = true, value_type = Option<super::docs::ReportDecision>, inline)]
    pub status: Option<String>,
    /// At most 1,000 characters after trimming.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub notes: Option<String>,
}

/// One row of the admin report list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::ReportListResponse)]
pub struct ReportListItem {
    pub id: Uuid,
    pub target_type: String,
    pub reason: String,
    pub status: String,
    pub reporter_name: String,
    pub created_at: String,
}

/// The admin report detail.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = model::ReportDetailResponse)]
pub struct ReportDetail {
    pub id: Uuid,
    pub target_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<Uuid>,
    pub target_is_deleted: bool,
    pub target_is_banned: bool,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: String,
    pub reporter_id: Uuid,
    pub reporter_name: String,
    pub reporter_avatar: String,
    pub reporter_is_deleted: bool,
    pub reporter_is_banned: bool,
    /// What the target looked like when reported (message, group or user
    /// evidence); always present, `null` when none was recorded.
    #[schema(value_type = Option<Object>, required = true)]
    pub evidence_snapshot: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_notes: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An attachment as recorded in a message report's snapshot. `url` is
/// filled with a fresh presigned URL when an admin reads the report.
#[derive(Debug, Serialize)]
pub struct SnapshotAttachment {
    pub id: Uuid,
    pub file_name: String,
    pub original_name: String,
    pub file_size: i64,
    pub mime_type: String,
    pub url: String,
}

/// Evidence of a message report.
#[derive(Debug, Serialize)]
pub struct MessageSnapshot {
    pub content: Option<String>,
    /// `""` when the sender is unknown (hard-deleted).
    pub sender_id: String,
    pub sender_username: String,
    pub sender_name: String,
    /// Full precision RFC 3339.
    pub sent_at: String,
    pub attachments: Vec<SnapshotAttachment>,
    pub is_edited: bool,
    pub chat_id: Uuid,
    pub chat_type: String,
    /// Internal group id, groups only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<Uuid>,
}

/// Evidence of a group report.
#[derive(Debug, Serialize)]
pub struct GroupSnapshot {
    pub group_id: Uuid,
    pub chat_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub avatar: String,
    pub created_by: Option<Uuid>,
}

/// Evidence of a user report.
#[derive(Debug, Serialize)]
pub struct UserSnapshot {
    pub user_id: Uuid,
    pub username: Option<String>,
    pub full_name: Option<String>,
    pub bio: Option<String>,
    pub avatar: String,
}
