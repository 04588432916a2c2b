//! Helpers shared by the integration tests.
#![allow(dead_code)]

use boundary_policy::{Decision, DenyReason, Policy, Request};

/// A request from `METHOD scheme://host[:port]/path?query`; the port
/// defaults to 443 for https and 80 for http.
pub fn req<'a>(method: &'a str, url: &'a str) -> Request<'a> {
    let (scheme, rest) = url.split_once("://").expect("url has a scheme");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().expect("port"))),
        None => (authority, Some(if scheme == "https" { 443 } else { 80 })),
    };
    Request {
        method,
        host,
        path,
        port,
    }
}

pub fn policy(text: &str) -> Policy {
    Policy::from_texts([text]).expect("rules parse")
}

pub fn allowed(p: &Policy, method: &str, url: &str) -> bool {
    p.evaluate(&req(method, url)).is_allowed()
}

pub fn denied_for(p: &Policy, method: &str, url: &str) -> DenyReason {
    match p.evaluate(&req(method, url)) {
        Decision::Deny(d) => d.reason,
        Decision::Allow { rule } => panic!("{method} {url} allowed by rule {rule}"),
    }
}
