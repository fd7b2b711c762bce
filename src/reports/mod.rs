//! The reports feature: users report messages, groups and users (with an
//! evidence snapshot that outlives the content); admins review, resolve and
//! delete reports.

pub mod docs;
pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
