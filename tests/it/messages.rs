//! Integration tests: messages.
