//! Adapters to the outside world, each behind a small interface with its real
//! implementation: Postgres, Redis, object storage, email, captcha, Google;
//! plus the in-process keyed locks that sequence work per chat or user.

pub mod captcha;
pub mod db;
pub mod email;
pub mod fd_limit;
pub mod google;
pub mod keyed_lock;
pub mod metrics;
pub mod redis;
pub mod replica;
pub mod storage;
