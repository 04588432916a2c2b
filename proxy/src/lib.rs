//! The boundary-runc sidecar: transparent HTTP/HTTPS interception, policy
//! decisions, upstream forwarding and the audit log.

pub mod resolve;
pub mod audit;
pub mod ca;
pub mod sni;
pub mod guard;
pub mod body;
pub mod response;
pub mod sniff;
