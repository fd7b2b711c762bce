//! Integration tests: the real server in-process on a random port, talking
//! real HTTP and WebSocket, against real Postgres, Redis, SMTP (a local sink)
//! and S3 (the test command's S3-compatible server). One binary, many
//! modules, so the suite links once and runs in parallel.

mod harness;

mod account_abuse;
mod admin;
mod audit;
mod auth;
mod chat_list_scale;
mod chats;
mod contract;
mod edits;
mod events;
mod foundation;
mod groups;
mod idempotency;
mod input_limits;
mod listener;
mod media;
mod messages;
mod multipart;
mod multipart_avatars;
mod ops;
mod pins;
mod plain_send;
mod posture;
mod presence;
mod reactions;
mod read_receipts;
mod realtime;
mod redis_failover;
mod replica;
mod reports;
mod resilience;
mod resume;
mod resume_cluster;
mod scheduler;
mod search;
mod send_account;
mod send_plans;
mod sessions;
mod snapshot;
mod storage;
mod two_factor;
mod users;
mod ws_limits;
