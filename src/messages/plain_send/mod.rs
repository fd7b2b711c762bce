//! The one-statement send: a plain text message (no attachments, no reply,
//! no `Idempotency-Key`) is checked, stored and counted by ONE autocommit
//! statement under the chat's ordering lock, instead of `BEGIN`, the chat
//! context, the insert and `COMMIT` (two PostgreSQL round trips fewer per
//! send, issue 21). Whenever the statement would not store the message
//! exactly as the general path would (any refusal, a locked chat row, a
//! lagging clock, an expired ban to lift) it stores nothing and the general
//! path answers instead, with its own verdicts.

pub mod repo;
pub mod service;
