//! Admin audit log (extension, issue 19): every admin action is written to
//! `admin_audit` (in the action's own transaction where it has one) and
//! listed by `GET /api/admin/audit`. The scheduler's `audit-cleanup` job
//! keeps `AUDIT_RETENTION_DAYS` of it.

pub mod docs;
pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;

pub use service::{record, record_after, Entry};
