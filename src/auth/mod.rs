//! Authentication: sign-in, sign-up, password reset, one-time codes, Google
//! sign-in, JWT sessions, logout blacklist and "revoke everything issued
//! before T" markers, plus the principal lookup used by the HTTP and
//! WebSocket guards.

pub mod device;
pub mod docs;
pub mod dto;
pub mod fields;
pub mod oauth;
pub mod otp;
pub mod passwords;
pub mod principal;
pub mod repo;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod throttle;
pub mod tokens;
