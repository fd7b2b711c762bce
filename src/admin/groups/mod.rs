//! Admin group endpoints: list, detail, members, dissolve, reset info.

pub mod docs;
pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
