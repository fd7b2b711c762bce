//! Cross-cutting HTTP pieces: the response envelope, the lenient JSON
//! extractor, client IP resolution, authentication, rate limits and route
//! groups.

pub mod auth;
pub mod client_ip;
pub mod conn;
pub mod health;
pub mod json;
pub mod metrics;
pub mod middleware;
pub mod multipart;
pub mod openapi;
pub mod pagination;
pub mod path;
pub mod rate_limit;
pub mod response;
pub mod routing;
pub mod server;
pub mod text;
pub mod timestamps;
