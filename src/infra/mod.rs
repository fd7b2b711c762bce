//! Adapters to the outside world, each behind a small interface with its real
//! implementation: Postgres, Redis, object storage, email, captcha, Google.

pub mod captcha;
pub mod db;
pub mod email;
pub mod google;
pub mod metrics;
pub mod redis;
pub mod storage;
