//! The sidecar proxy (placeholder; being written).
