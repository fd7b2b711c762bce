//! The media feature: presigned direct uploads to the public (avatars) or
//! private (attachments) bucket, completion after a storage HEAD, and read
//! URLs for the people allowed to see an object.

pub mod docs;
pub mod dto;
pub mod form;
pub mod repo;
pub mod routes;
mod seal;
pub mod service;
