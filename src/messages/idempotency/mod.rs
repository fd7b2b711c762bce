//! Idempotent sends (extension, issue 16): `POST /api/messages` with an
//! `Idempotency-Key` header stores at most one message per (sender, key)
//! within 24 h. A retry gets the original message back and publishes
//! nothing; the same key with a different body is refused with 409.

pub mod repo;
pub mod service;

pub use service::{Claim, IdempotencyKey};
