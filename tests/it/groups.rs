//! Integration tests: groups.
