//! Every row of the example table in shared/notes/policy-and-threats.md.

mod common;

use boundary_policy::{ParseErrorKind, Rule};
use common::{allowed, policy};

#[test]
fn exact_domain_allows_its_host() {
    assert!(allowed(
        &policy("domain=github.com"),
        "GET",
        "https://github.com/repos"
    ));
}

#[test]
fn exact_domain_denies_a_subdomain() {
    assert!(!allowed(
        &policy("domain=github.com"),
        "GET",
        "https://api.github.com/repos"
    ));
}

#[test]
fn subdomain_wildcard_allows_deeper_subdomains() {
    assert!(allowed(
        &policy("domain=*.github.com"),
        "GET",
        "https://v1.api.github.com/x"
    ));
}

#[test]
fn subdomain_wildcard_denies_the_apex() {
    assert!(!allowed(
        &policy("domain=*.github.com"),
        "GET",
        "https://github.com/x"
    ));
}

#[test]
fn method_list_denies_other_methods() {
    let p = policy("method=GET,HEAD domain=github.com");
    assert!(!allowed(&p, "POST", "https://github.com/x"));
    assert!(allowed(&p, "HEAD", "https://github.com/x"));
}

#[test]
fn trailing_path_wildcard_allows_deeper_paths() {
    assert!(allowed(
        &policy("path=/api/*"),
        "GET",
        "https://h/api/v1/users/1"
    ));
}

#[test]
fn exact_path_denies_subpaths() {
    assert!(!allowed(&policy("path=/api"), "GET", "https://h/api/users"));
}

#[test]
fn domain_ending_in_wildcard_is_rejected() {
    let err = "domain=github.*".parse::<Rule>().unwrap_err();
    assert_eq!(err.kind(), &ParseErrorKind::DomainEndsInWildcard);
    assert_eq!(
        err.to_string(),
        "invalid rule \"domain=github.*\" at position 7: domain pattern may not end in '*'"
    );
}

#[test]
fn domain_with_port_is_rejected() {
    let err = "domain=github.com:8080".parse::<Rule>().unwrap_err();
    assert_eq!(err.kind(), &ParseErrorKind::DomainPort);
    assert_eq!(err.position(), 7);
}

/// The rows of Coder's own documentation tables, which this language keeps.
#[test]
fn coder_documented_wildcards() {
    let p = policy("domain=api.*.com");
    assert!(allowed(&p, "GET", "https://api.github.com/"));
    assert!(!allowed(&p, "GET", "https://api.v1.github.com/"));
    let p = policy("domain=*.*.com");
    assert!(allowed(&p, "GET", "https://api.example.com/"));
    assert!(allowed(&p, "GET", "https://api.v1.github.com/"));
    let p = policy("path=/api/*/users");
    assert!(allowed(&p, "GET", "https://h/api/v1/users"));
    assert!(!allowed(&p, "GET", "https://h/api/users"));
    assert!(!allowed(&p, "GET", "https://h/api/v1/v2/users"));
    let p = policy("path=/*/users");
    assert!(allowed(&p, "GET", "https://h/api/users"));
    assert!(!allowed(&p, "GET", "https://h/api/v1/users"));
    let p = policy("path=/api,/api/*");
    assert!(allowed(&p, "GET", "https://h/api"));
    assert!(allowed(&p, "GET", "https://h/api/x"));
    assert!(!allowed(
        &policy("path=/api/v1/*"),
        "GET",
        "https://h/api/v1"
    ));
    assert!(allowed(
        &policy("path=*"),
        "GET",
        "https://h/anything/at/all"
    ));
    assert!(allowed(
        &policy("domain=*"),
        "GET",
        "https://any.host.example/"
    ));
}
