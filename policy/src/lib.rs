//! Allow rules (placeholder; being written).
#![forbid(unsafe_code)]
