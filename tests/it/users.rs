//! Integration tests: users.
