//! Rules of the audit log: what an entry holds and how the list is read.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::dto::AuditEntryDto;
use super::repo::{self, AuditFilter};
use crate::error::AppError;
use crate::http::pagination::{self, QueryParams};
use crate::http::path::parse_uuid;
use crate::http::response::Page;
use crate::http::timestamps::rfc3339;
use crate::state::AppState;

/// Longest `action` filter (the real ones are far shorter).
const MAX_ACTION: usize = 64;

/// One admin action to record.
pub struct Entry<'a> {
    pub admin_id: Uuid,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<Uuid>,
    pub detail: serde_json::Value,
}

/// Writes `entry` with `db`: pass the action's transaction so the entry
/// commits (or rolls back) with the change itself.
pub async fn record<'e>(db: impl PgExecutor<'e>, entry: Entry<'_>) -> Result<(), sqlx::Error> {
    repo::insert(
        db,
        Uuid::now_v7(),
        entry.admin_id,
        entry.action,
        entry.target_type,
        entry.target_id,
        &entry.detail,
    )
    .await
}

/// For actions already committed elsewhere (or that changed nothing): the
/// change stands either way, so a failed write is logged, not answered.
pub async fn record_after(state: &AppState, entry: Entry<'_>) {
    let action = entry.action.to_string();
    if let Err(e) = record(&state.db, entry).await {
        tracing::error!(error = %e, %action, "admin audit entry not written");
    }
}

fn timestamp(raw: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, AppError> {
    match raw.filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => DateTime::parse_from_rfc3339(r)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| AppError::bad_request(format!("Invalid {name}: expected RFC 3339"))),
    }
}

fn uuid_param(raw: Option<&str>, name: &str) -> Result<Option<Uuid>, AppError> {
    match raw.filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => parse_uuid(r, &format!("Invalid {name}")).map(Some),
    }
}

/// `GET /api/admin/audit`.
pub async fn list(state: &AppState, q: &QueryParams) -> Result<Page<AuditEntryDto>, AppError> {
    let action = q.get("action").filter(|a| !a.is_empty());
    if action.is_some_and(|a| a.chars().count() > MAX_ACTION || a.contains('\0')) {
        return Err(AppError::bad_request("Invalid action"));
    }
    let before = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => {
            Some(pagination::decode_uuid_cursor(Some(raw)).ok_or_else(pagination::invalid_cursor)?)
        }
    };
    let filter = AuditFilter {
        admin_id: uuid_param(q.get("admin_id"), "admin_id")?,
        action,
        target_id: uuid_param(q.get("target_id"), "target_id")?,
        since: timestamp(q.get("since"), "since")?
            .map(pagination::cursor_time)
            .transpose()?,
        until: timestamp(q.get("until"), "until")?
            .map(pagination::cursor_time)
            .transpose()?,
        before,
        limit: pagination::parse_limit(q.get("limit"))?,
    };
    let rows = repo::list(&state.db, &filter).await?;
    let (rows, meta) = pagination::forward_page(rows, filter.limit, |r| r.id.to_string());
    let data = rows
        .into_iter()
        .map(|r| AuditEntryDto {
            id: r.id,
            admin_id: r.admin_id,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            detail: r.detail,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(Page { data, meta })
}
