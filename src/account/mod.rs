//! The account feature: routes (thin handlers), service (rules), repo (SQL), dto (wire types).

pub mod routes;
