//! Admin group endpoints: list, detail, members, dissolve, reset info.

pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
