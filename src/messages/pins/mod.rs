//! Pinned messages (extension, issue 17): routes (thin handlers), service
//! (rules), repo (SQL), dto (wire types).

pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
