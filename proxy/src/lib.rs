//! The boundary-runc sidecar: transparent HTTP/HTTPS interception, policy
//! decisions, upstream forwarding and the audit log.
//!
//! [`serve_proxy`] accepts the container's redirected TCP connections;
//! [`ProxyContext::from_config`] builds everything it needs from the
//! [`boundary_contract::SidecarConfig`] before privileges are dropped.

pub mod audit;
pub mod body;
pub mod ca;
pub mod conn;
pub mod context;
pub mod dns;
pub mod forward;
pub mod guard;
pub mod narrowing;
pub mod privdrop;
pub mod readahead;
pub mod resident;
pub mod resolve;
pub mod response;
pub mod service;
pub mod sni;
pub mod sniff;
pub mod supervisor;
pub mod tunnel;
pub mod upstream;
pub mod worker;

pub use conn::serve_proxy;
pub use context::{BuildError, Limits, ProxyContext};
