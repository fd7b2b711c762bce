//! The users feature: own profile, profile updates, profile view, user search
//! and blocking.

pub mod cursor;
pub mod docs;
pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
