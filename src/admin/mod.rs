//! The admin console: dashboard, user moderation (list, detail, ban, unban,
//! profile reset), groups (list, detail, members, dissolve, reset) and the
//! audit log of all of these.
//! Report review lives in `crate::reports`.

pub mod audit;
pub mod docs;
pub mod dto;
pub mod groups;
pub mod repo;
pub mod routes;
pub mod service;
