//! Edit history of messages (extension, issue 17): every edit keeps the
//! version it replaces; `GET /api/messages/{messageID}/history` lists them.

pub mod repo;
pub mod routes;
pub mod service;
