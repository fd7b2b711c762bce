//! OpenAPI fragment of the audit log.

use utoipa::IntoParams;

/// Query of `GET /api/admin/audit`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    /// Only actions of this admin (UUID).
    pub admin_id: Option<String>,
    /// Only this action, e.g. `user.ban`.
    pub action: Option<String>,
    /// Only actions on this target (UUID).
    pub target_id: Option<String>,
    /// Only entries at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Only entries before this instant (RFC 3339).
    pub until: Option<String>,
    /// Page size, 1–50; 0 or absent means 20.
    #[param(minimum = 0, maximum = 50)]
    pub limit: Option<i64>,
    /// `meta.next_cursor` of the previous page (400 when unreadable).
    pub cursor: Option<String>,
}
