//! The admin console: dashboard, user moderation (list, detail, ban, unban,
//! profile reset) and groups (list, detail, members, dissolve, reset).
//! Report review lives in `crate::reports`.

pub mod docs;
pub mod dto;
pub mod groups;
pub mod repo;
pub mod routes;
pub mod service;
