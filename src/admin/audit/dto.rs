//! Wire types of the audit log.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One admin action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub id: Uuid,
    /// The admin who acted.
    pub admin_id: Uuid,
    /// `user.ban`, `user.unban`, `user.reset`, `group.dissolve`,
    /// `group.reset`, `report.resolve` or `report.delete`.
    pub action: String,
    /// `user`, `group` or `report`.
    pub target_type: String,
    #[schema(nullable)]
    pub target_id: Option<Uuid>,
    /// Action-specific facts (ban reason and duration, fields reset, new
    /// report status; `changed: false` when the action changed nothing).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
}
