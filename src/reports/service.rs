//! Report rules: who may report what, the evidence snapshot (which outlives
//! the reported content), and the admin review (list, detail, resolve,
//! delete).

use uuid::Uuid;

use super::dto::{
    CreateReportRequest, GroupSnapshot, MessageSnapshot, ReportDetail, ReportListItem,
    ResolveReportRequest, SnapshotAttachment, UserSnapshot,
};
use super::repo::{self, ListFilter, NewReport};
use crate::admin::audit;
use crate::error::AppError;
use crate::http::pagination::{self, QueryParams};
use crate::http::response::Page;
use crate::http::text;
use crate::http::timestamps::{rfc3339, rfc3339_nano};
use crate::infra::storage::Bucket;
use crate::messages::dto::MessageDeletedPayload;
use crate::messages::service::publish_to_chat;
use crate::realtime::event::kinds;
use crate::state::AppState;

/// Longest reason (the column is `varchar(255)`), in characters.
const MAX_REASON: usize = 255;
/// Longest report description and resolution note.
pub const MAX_DESCRIPTION: usize = 1000;
/// Longest admin-list search text.
const MAX_QUERY: usize = 100;
/// Statuses a report can have.
const STATUSES: [&str; 4] = ["pending", "reviewed", "resolved", "rejected"];
/// Name shown for reporters who are gone or nameless.
const DELETED_USER: &str = "Deleted User";

fn bad_request() -> AppError {
    AppError::bad_request("Bad Request")
}

fn public_avatar(state: &AppState, file: Option<&str>) -> String {
    file.map(|f| state.storage.public_url(f))
        .unwrap_or_default()
}

/// `POST /api/reports`. Every call files a new pending report.
pub async fn create(
    state: &AppState,
    reporter: Uuid,
    req: CreateReportRequest,
) -> Result<(), AppError> {
    let target_type = req.target_type.unwrap_or_default();
    if !matches!(target_type.as_str(), "message" | "group" | "user") {
        return Err(bad_request());
    }
    // Unlike the reference, a blank reason is a 400 rather than a failed
    // insert (500), and over-long or NUL-carrying text never reaches the DB.
    let reason = text::free_text(req.reason.as_deref().unwrap_or_default(), MAX_REASON)
        .filter(|r| !r.is_empty())
        .ok_or_else(bad_request)?;
    let description = match req.description.as_deref() {
        Some(d) => text::free_text(d, MAX_DESCRIPTION).ok_or_else(bad_request)?,
        None => String::new(),
    };
    let description = (!description.is_empty()).then_some(description);

    let mut tx = crate::infra::db::begin(&state.db).await?;
    let id = Uuid::now_v7();
    let mut report = NewReport {
        id,
        target_type: &target_type,
        reason: &reason,
        description: description.as_deref(),
        snapshot: serde_json::Value::Null,
        reporter,
        message_id: None,
        group_id: None,
        target_user_id: None,
    };
    let mut evidence = Vec::new();
    match target_type.as_str() {
        "message" => {
            let message = req
                .message_id
                .ok_or_else(|| AppError::bad_request("Message ID is required"))?;
            let m = repo::message_target(&mut tx, message, reporter)
                .await?
                .ok_or_else(|| AppError::not_found("Message not found"))?;
            if m.sender_id == Some(reporter) {
                return Err(AppError::bad_request("You cannot report your own message"));
            }
            if !m.reporter_in_chat {
                return Err(AppError::forbidden(if m.chat_type == "private" {
                    "You cannot report a message from a chat you are not part of"
                } else {
                    "You cannot report a message from a group you are not part of"
                }));
            }
            let attachments = repo::attachments(&mut tx, message).await?;
            evidence.extend(attachments.iter().map(|a| a.id));
            let snapshot = MessageSnapshot {
                content: m.content,
                sender_id: m.sender_id.map(|s| s.to_string()).unwrap_or_default(),
                sender_username: m.sender_username.unwrap_or_default(),
                sender_name: m.sender_name.unwrap_or_default(),
                sent_at: rfc3339_nano(m.created_at),
                // URLs are presigned when an admin reads the report: a URL
                // stored now would be dead (or public-bucket style, as the
                // reference stores it, and never valid for private objects).
                attachments: attachments
                    .into_iter()
                    .map(|a| SnapshotAttachment {
                        id: a.id,
                        file_name: a.file_name,
                        original_name: a.original_name,
                        file_size: a.file_size,
                        mime_type: a.mime_type,
                        url: String::new(),
                    })
                    .collect(),
                is_edited: m.edited,
                chat_id: m.chat_id,
                chat_type: m.chat_type.clone(),
                group_id: if m.chat_type == "group" {
                    m.group_id
                } else {
                    None
                },
            };
            report.snapshot = serde_json::to_value(snapshot).map_err(anyhow::Error::from)?;
            report.message_id = Some(m.id);
        }
        "group" => {
            let chat = req
                .chat_id
                .ok_or_else(|| AppError::bad_request("Chat ID is required for group report"))?;
            let g = repo::group_target(&mut tx, chat, reporter)
                .await?
                .ok_or_else(|| AppError::not_found("Group not found"))?;
            if !g.reporter_is_member {
                return Err(AppError::forbidden(
                    "You must be a member of the group to report it",
                ));
            }
            evidence.extend(g.avatar_id);
            let snapshot = GroupSnapshot {
                group_id: g.id,
                chat_id: g.chat_id,
                name: g.name,
                description: g.description,
                avatar: public_avatar(state, g.avatar_file.as_deref()),
                created_by: g.created_by,
            };
            report.snapshot = serde_json::to_value(snapshot).map_err(anyhow::Error::from)?;
            report.group_id = Some(g.id);
        }
        _ => {
            let target = req
                .target_user_id
                .ok_or_else(|| AppError::bad_request("Target User ID is required"))?;
            if target == reporter {
                return Err(AppError::bad_request("You cannot report yourself"));
            }
            let u = repo::user_target(&mut tx, target)
                .await?
                .ok_or_else(|| AppError::not_found("User not found"))?;
            evidence.extend(u.avatar_id);
            let snapshot = UserSnapshot {
                user_id: u.id,
                username: u.username,
                full_name: u.full_name,
                bio: u.bio,
                avatar: public_avatar(state, u.avatar_file.as_deref()),
            };
            report.snapshot = serde_json::to_value(snapshot).map_err(anyhow::Error::from)?;
            report.target_user_id = Some(u.id);
        }
    }
    repo::insert(&mut tx, &report, &evidence).await?;
    tx.commit().await?;
    Ok(())
}

/// `GET /api/admin/reports`.
pub async fn list(
    state: &AppState,
    admin: Uuid,
    q: &QueryParams,
) -> Result<Page<ReportListItem>, AppError> {
    let query = pagination::search_text(q.get_or_empty("query"), MAX_QUERY)?;
    let status = q.get_or_empty("status");
    if !status.is_empty() && !STATUSES.contains(&status) {
        return Err(bad_request());
    }
    let limit = pagination::parse_limit(q.get("limit"))?;
    // An unreadable cursor starts from the first page (as the reference).
    let before = pagination::decode_uuid_cursor(q.get("cursor"));
    let escaped = pagination::escape_like(query);
    let rows = repo::list(
        &mut *state.read_conn(admin).await?,
        &ListFilter {
            status: (!status.is_empty()).then_some(status),
            query: (!query.is_empty()).then_some(escaped.as_str()),
            before,
            limit,
        },
    )
    .await?;
    let (rows, meta) = pagination::forward_page(rows, limit, |r| r.id.to_string());
    let data = rows
        .into_iter()
        .map(|r| ReportListItem {
            id: r.id,
            target_type: r.target_type,
            reason: r.reason,
            status: r.status,
            reporter_name: r
                .reporter_name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| DELETED_USER.into()),
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(Page { data, meta })
}

/// Replaces every attachment URL of a message snapshot by a fresh presigned
/// GET (private bucket, 15 minutes; `""` when presigning fails).
async fn refresh_attachment_urls(state: &AppState, snapshot: &mut serde_json::Value) {
    let Some(items) = snapshot
        .get_mut("attachments")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for item in items {
        let Some(file) = item
            .get("file_name")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let url = state
            .storage
            .presign_get(Bucket::Private, &file, crate::media::service::URL_TTL)
            .await
            .unwrap_or_default();
        if let Some(obj) = item.as_object_mut() {
            obj.insert("url".into(), serde_json::Value::String(url));
        }
    }
}

/// `GET /api/admin/reports/{id}`.
pub async fn detail(state: &AppState, id: Uuid) -> Result<ReportDetail, AppError> {
    let r = repo::detail(&state.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("Report not found"))?;
    let (target_id, target_gone, target_banned) = match r.target_type.as_str() {
        "user" => (r.target_user_id, r.target_user_gone, r.target_user_banned),
        "group" => (r.group_id, r.group_gone, false),
        _ => (r.message_id, r.message_gone, r.sender_banned),
    };
    let mut snapshot = r.evidence_snapshot.unwrap_or(serde_json::Value::Null);
    if r.target_type == "message" {
        refresh_attachment_urls(state, &mut snapshot).await;
    }
    Ok(ReportDetail {
        id: r.id,
        target_type: r.target_type,
        target_id,
        target_is_deleted: target_id.is_none() || target_gone,
        target_is_banned: target_banned,
        reason: r.reason,
        description: r.description.filter(|d| !d.is_empty()),
        status: r.status,
        reporter_id: r.reporter_id.unwrap_or(Uuid::nil()),
        reporter_name: r
            .reporter_name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DELETED_USER.into()),
        reporter_avatar: public_avatar(state, r.reporter_avatar.as_deref()),
        reporter_is_deleted: r.reporter_deleted,
        reporter_is_banned: r.reporter_banned,
        evidence_snapshot: snapshot,
        admin_notes: r.resolution_notes.filter(|n| !n.is_empty()),
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    })
}

/// `PUT /api/admin/reports/{id}/resolve`. Resolving a message report takes
/// the message down and tells the chat.
pub async fn resolve(
    state: &AppState,
    admin: Uuid,
    id: Uuid,
    req: ResolveReportRequest,
) -> Result<(), AppError> {
    let status = req.status.unwrap_or_default();
    if !matches!(status.as_str(), "resolved" | "rejected") {
        return Err(bad_request());
    }
    let notes = match req.notes.as_deref() {
        Some(n) => text::free_text(n, MAX_DESCRIPTION).ok_or_else(bad_request)?,
        None => String::new(),
    };
    let notes = (!notes.is_empty()).then_some(notes);
    let mut tx = crate::infra::db::begin(&state.db).await?;
    let (current, message) = repo::lock(&mut tx, id)
        .await?
        .ok_or_else(|| AppError::not_found("Report not found"))?;
    if current == status {
        tracing::info!(admin_id = %admin, action = "report.resolve", target = %id, %status, "admin action (no change)");
        drop(tx);
        let detail = serde_json::json!({"status": status, "changed": false});
        audit::record_after(state, report_entry(admin, "report.resolve", id, detail)).await;
        return Ok(());
    }
    repo::set_status(&mut tx, id, &status, admin, notes.as_deref()).await?;
    let mut taken_down = None;
    if status == "resolved" {
        if let Some(message) = message {
            taken_down = repo::take_down_message(&mut tx, message)
                .await?
                .map(|chat| (message, chat));
        }
    }
    let detail = serde_json::json!({
        "status": status,
        "message_taken_down": taken_down.map(|(m, _)| m),
    });
    audit::record(&mut *tx, report_entry(admin, "report.resolve", id, detail)).await?;
    tx.commit().await?;
    tracing::info!(
        admin_id = %admin,
        action = "report.resolve",
        target = %id,
        %status,
        message_taken_down = ?taken_down.map(|(m, _)| m),
        "admin action"
    );
    if let Some((message, chat)) = taken_down {
        // No sender: every member is told, whoever they block. The change
        // is committed, so a failure here is logged, not answered.
        match crate::infra::db::acquire(&state.db).await {
            Ok(mut conn) => {
                let payload = MessageDeletedPayload {
                    message_id: message,
                };
                publish_to_chat(state, &mut conn, chat, None, kinds::MESSAGE_DELETE, payload).await
            }
            Err(e) => tracing::error!(error = %e, %chat, "message.delete not sent"),
        }
    }
    Ok(())
}

/// `DELETE /api/admin/reports/{id}`: only decided reports can go.
pub async fn delete(state: &AppState, admin: Uuid, id: Uuid) -> Result<(), AppError> {
    let mut tx = crate::infra::db::begin(&state.db).await?;
    let (status, _) = repo::lock(&mut tx, id)
        .await?
        .ok_or_else(|| AppError::not_found("Report not found"))?;
    if !matches!(status.as_str(), "resolved" | "rejected") {
        return Err(AppError::bad_request(
            "Cannot delete report that is not resolved or rejected",
        ));
    }
    repo::delete(&mut tx, id).await?;
    let detail = serde_json::json!({"status": status});
    audit::record(&mut *tx, report_entry(admin, "report.delete", id, detail)).await?;
    tx.commit().await?;
    tracing::info!(admin_id = %admin, action = "report.delete", target = %id, "admin action");
    Ok(())
}

/// An audit entry about a report.
fn report_entry(
    admin: Uuid,
    action: &'static str,
    report: Uuid,
    detail: serde_json::Value,
) -> audit::Entry<'static> {
    audit::Entry {
        admin_id: admin,
        action,
        target_type: "report",
        target_id: Some(report),
        detail,
    }
}
