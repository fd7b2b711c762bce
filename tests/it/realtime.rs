//! Integration tests: realtime.
