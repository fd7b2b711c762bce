//! Two-factor authentication with TOTP (RFC 6238; extension, issue 18).
//! Enrolment (`setup`, `enable` with a first code, `disable`), the second
//! step of sign-in (a challenge answered at `POST /api/auth/login/2fa`),
//! one-time recovery codes, and per-account failure throttling.
//!
//! Codes are single-use: the latest accepted time step is stored and only a
//! later one is accepted (the enabling code counts), with ±1 step of skew.

pub mod codes;
pub mod dto;
pub mod login;
pub mod repo;
pub mod routes;
pub mod service;
pub mod throttle;
