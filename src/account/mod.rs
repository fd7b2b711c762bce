//! The account feature: password change, email change and account
//! deletion, plus the extensions of issue 18 (sessions and devices,
//! two-factor authentication).

pub mod docs;
pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod two_factor;
