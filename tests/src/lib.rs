//! Helpers for the root end-to-end tests.
