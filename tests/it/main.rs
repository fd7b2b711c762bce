//! Integration tests: the real server in-process on a random port, talking
//! real HTTP and WebSocket, against real Postgres, Redis, SMTP (a local sink)
//! and S3 (the test command's S3-compatible server). One binary, many
//! modules, so the suite links once and runs in parallel.

mod harness;

mod account_abuse;
mod admin;
mod auth;
mod chats;
mod contract;
mod edits;
mod events;
mod foundation;
mod groups;
mod input_limits;
mod listener;
mod media;
mod messages;
mod multipart;
mod multipart_avatars;
mod posture;
mod reactions;
mod realtime;
mod replica;
mod reports;
mod resilience;
mod scheduler;
mod snapshot;
mod storage;
mod users;
mod ws_limits;
