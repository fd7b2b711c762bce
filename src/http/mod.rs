//! Cross-cutting HTTP pieces: the response envelope, the lenient JSON
//! extractor, client IP resolution, authentication and middleware.

pub mod auth;
pub mod client_ip;
pub mod health;
pub mod json;
pub mod middleware;
pub mod response;
