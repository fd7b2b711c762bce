//! Authentication: JWT sessions, logout blacklist and "revoke everything
//! issued before T" markers, plus the principal lookup used by the HTTP and
//! WebSocket guards.

pub mod principal;
pub mod routes;
pub mod sessions;
pub mod tokens;
