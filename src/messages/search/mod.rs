//! Full-text search of messages (extension, issue 17): routes (thin
//! handlers), service (rules), repo (SQL), query (parsing the search text
//! into a tsquery, and the highlighted snippet).
//!
//! PostgreSQL full-text search over `messages_search_idx` (see the
//! migration `20260105000001_message_search.sql` for the configuration).

pub mod query;
pub mod repo;
pub mod routes;
pub mod service;
