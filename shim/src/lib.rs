//! boundary-runc: a runc-compatible OCI runtime that puts every container
//! behind a default-deny network boundary.
//!
//! The binary is thin (`main.rs` calls [`cli::main`]). Pure parts
//! (`args`, `config`, `rewrite`, `seccomp`, `rules`) have no side effects;
//! the privileged parts (`netns`, `link`, `firewall`, `sidecar`) are the only
//! places that touch the kernel or spawn processes; `jail` composes them.

pub mod args;
pub mod atomic;
pub mod builder;
pub mod ca;
pub mod cli;
pub mod commands;
pub mod config;
pub mod delegate;
pub mod docker;
pub mod doctor;
pub mod exec_env;
pub mod firewall;
pub mod gate;
pub mod handover;
pub mod install;
pub mod ipam;
pub mod jail;
pub mod link;
pub mod netns;
pub mod pod;
pub mod rewrite;
pub mod rules;
pub mod runtime_log;
pub mod seccomp;
pub mod sidecar;
