//! The messages feature: routes (thin handlers), service (rules), repo (SQL),
//! dto (wire types), ordering (per-chat sequencing of message writes and
//! their events), the extensions of issue 17 (reactions, pins, edit history,
//! search) and of issue 16 (idempotent sends).

pub mod access;
pub mod docs;
pub mod dto;
pub mod edits;
pub mod idempotency;
pub mod ordering;
pub mod pins;
pub mod plain_send;
pub mod reactions;
pub mod repo;
pub mod routes;
pub mod search;
pub mod sent;
pub mod service;
