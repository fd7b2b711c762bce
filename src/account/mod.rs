//! The account feature: password change, email change and account deletion.

pub mod docs;
pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
