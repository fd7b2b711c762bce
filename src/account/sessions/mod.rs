//! Sessions and devices (extension, issue 18): every sign-in creates a
//! `sessions` row whose id the token carries as `sid`. Users list their
//! sessions and end any of them; the token stops working on every instance
//! at once (the principal lookup reads the row) and its sockets close with
//! 4001. Revoke-all actions (password change, reset, email change, account
//! deletion, ban) end every session in their transaction.

pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
