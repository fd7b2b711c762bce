//! AtoiTalk: a chat backend (REST + WebSocket) compatible with the
//! AtoiTalkAPI wire contract. The binary in `main.rs` is a thin CLI over this
//! library; integration tests drive the same library in-process.

pub mod account;
pub mod admin;
pub mod app;
pub mod auth;
pub mod chats;
pub mod cli;
pub mod config;
pub mod error;
pub mod groups;
pub mod http;
pub mod infra;
pub mod jobs;
pub mod logging;
pub mod media;
pub mod messages;
pub mod realtime;
pub mod reports;
pub mod state;
pub mod users;
