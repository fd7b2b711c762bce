//! The groups feature: routes (thin handlers), service (rules, transactions,
//! events), repo (SQL), dto (wire types).

pub mod docs;
pub mod dto;
pub mod repo;
pub mod routes;
pub mod service;
