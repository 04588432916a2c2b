//! The stricter, deny-safe readings: host and path confusion, ports,
//! suggestions, narrowing and determinism.

mod common;

use boundary_policy::{
    could_allow_host_narrowed, evaluate_narrowed, normalize_host, normalize_path, suggest_rule,
    Decision, DenyReason, Policy, Request, Rule,
};
use common::{allowed, denied_for, policy, req};

#[test]
fn hosts_compare_case_insensitively_without_trailing_dot() {
    let p = policy("domain=GitHub.com");
    assert!(allowed(&p, "GET", "https://GITHUB.COM/"));
    assert!(allowed(&p, "GET", "https://github.com./"));
    assert!(!allowed(&p, "GET", "https://github.com../"));
    let p = policy("domain=*.github.com");
    assert!(allowed(&p, "GET", "https://API.GitHub.Com./x"));
    assert_eq!(normalize_host("Api.GitHub.COM.").unwrap(), "api.github.com");
}

#[test]
fn non_ascii_and_invalid_hosts_are_denied_even_by_domain_star() {
    let p = policy("domain=*");
    assert_eq!(
        denied_for(&p, "GET", "https://bücher.de/"),
        DenyReason::NonAsciiHost
    );
    assert_eq!(
        denied_for(&p, "GET", "https://gіthub.com/"),
        DenyReason::NonAsciiHost
    ); // Cyrillic i
    for host in [
        "a_b.example",
        "-a.example",
        "a..example",
        "",
        "127.1",
        "0x7f000001",
        "::1",
    ] {
        let r = Request {
            method: "GET",
            host,
            path: "/",
            port: Some(443),
        };
        let Decision::Deny(d) = p.evaluate(&r) else {
            panic!("{host} allowed")
        };
        assert_eq!(d.reason, DenyReason::InvalidHost, "{host}");
        assert_eq!(d.suggestion, None);
    }
    assert!(allowed(&p, "GET", "http://10.0.0.1/"));
    assert!(allowed(&p, "GET", "https://xn--bcher-kva.de/"));
}

#[test]
fn addresses_only_when_written_out() {
    let p = policy("domain=169.254.169.254");
    assert!(allowed(
        &p,
        "GET",
        "http://169.254.169.254/latest/meta-data"
    ));
    assert!(!allowed(&p, "GET", "http://169.254.169.253/"));
    assert_eq!(
        denied_for(&p, "GET", "http://169.254.43518/"),
        DenyReason::InvalidHost
    );
    assert_eq!(
        denied_for(&p, "GET", "http://0251.0376.0251.0376/"),
        DenyReason::InvalidHost
    );
    assert!(!allowed(
        &policy("domain=*.example"),
        "GET",
        "http://169.254.169.254/"
    ));
}

#[test]
fn encoded_slash_is_unsafe_for_path_rules() {
    let p = policy("path=/api/*");
    assert_eq!(
        denied_for(&p, "GET", "https://h/api%2F..%2Fadmin"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/api/a%2fb"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/api/a%00"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/api/a%5cb"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/api/a\\..\\b"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/api/a%252Fb"),
        DenyReason::UnsafePath
    );
    let r = req("GET", "https://h/api/a%2Fb");
    assert_eq!(p.evaluate(&r).denial().unwrap().suggestion, None);
    assert_eq!(normalize_path("/a%2Fb"), Err(DenyReason::UnsafePath));
}

#[test]
fn rules_without_a_path_key_ignore_the_path() {
    let p = policy("domain=registry.npmjs.org");
    assert!(allowed(
        &p,
        "GET",
        "https://registry.npmjs.org/@types%2fnode"
    ));
    assert!(allowed(
        &p,
        "GET",
        "https://registry.npmjs.org/a//b/../../.."
    ));
    let p = policy("domain=h path=*");
    assert!(allowed(&p, "GET", "https://h/a%2Fb"));
}

#[test]
fn dot_segments_are_resolved_before_matching() {
    let p = policy("path=/public/*");
    assert!(!allowed(&p, "GET", "https://h/public/../admin"));
    assert!(!allowed(&p, "GET", "https://h/public/%2e%2e/admin"));
    assert!(!allowed(&p, "GET", "https://h/public/%2E%2E/admin"));
    assert!(!allowed(&p, "GET", "https://h/public/.%2e/admin"));
    assert!(allowed(&p, "GET", "https://h/public/./x"));
    assert!(allowed(&p, "GET", "https://h/admin/../public/x"));
    assert!(allowed(&p, "GET", "https://h/public/a/b/../c"));
    assert_eq!(normalize_path("/a/./b/../c?x=/../..").unwrap(), "/a/c");
}

#[test]
fn dot_dot_above_the_root_is_denied() {
    let p = policy("path=/etc/*");
    assert_eq!(
        denied_for(&p, "GET", "https://h/../etc/passwd"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/a/../../etc/passwd"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/%2e%2e/etc/passwd"),
        DenyReason::UnsafePath
    );
}

#[test]
fn empty_segments_match_no_pattern() {
    let p = policy("path=/api/*,/x/*/y");
    assert_eq!(
        denied_for(&p, "GET", "https://h/api//x"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h//api/x"),
        DenyReason::UnsafePath
    );
    assert_eq!(
        denied_for(&p, "GET", "https://h/x//y"),
        DenyReason::UnsafePath
    );
    assert_eq!(normalize_path("/a//b"), Err(DenyReason::UnsafePath));
}

#[test]
fn trailing_slash_is_its_own_segment() {
    assert!(!allowed(&policy("path=/api"), "GET", "https://h/api/"));
    assert!(allowed(&policy("path=/api/"), "GET", "https://h/api/"));
    assert!(!allowed(&policy("path=/api/"), "GET", "https://h/api"));
    assert!(allowed(&policy("path=/v2/*"), "GET", "https://h/v2/"));
    assert!(allowed(&policy("path=/v2/*"), "GET", "https://h/v2/x/"));
    assert!(!allowed(&policy("path=/v2/*"), "GET", "https://h/v2"));
    assert!(allowed(&policy("path=/"), "GET", "https://h/"));
    assert!(!allowed(&policy("path=/"), "GET", "https://h/x"));
}

#[test]
fn query_and_fragment_are_ignored() {
    let p = policy("path=/search");
    assert!(allowed(&p, "GET", "https://h/search?q=../../admin&x=%2F"));
    assert!(allowed(&p, "GET", "https://h/search#frag"));
    assert!(!allowed(&p, "GET", "https://h/search/?q"));
    let bare_query = Request {
        method: "GET",
        host: "h",
        path: "?x",
        port: Some(443),
    };
    assert!(policy("path=/").evaluate(&bare_query).is_allowed());
}

#[test]
fn path_segments_compare_case_sensitively_after_decoding() {
    let p = policy("path=/Api/a%20b");
    assert!(allowed(&p, "GET", "https://h/Api/a%20b"));
    assert!(allowed(&p, "GET", "https://h/%41pi/a b"));
    assert!(!allowed(&p, "GET", "https://h/api/a%20b"));
}

#[test]
fn methods_compare_after_uppercasing() {
    let p = policy("method=get domain=h");
    assert!(allowed(&p, "GET", "https://h/"));
    assert!(allowed(&p, "get", "https://h/"));
    assert!(!allowed(&p, "GETX", "https://h/"));
    assert!(!allowed(&p, "", "https://h/"));
    assert!(allowed(&policy("method=* domain=h"), "BREW", "https://h/"));
}

#[test]
fn port_key_restricts_the_destination_port() {
    let p = policy("domain=h port=443,8443");
    assert!(allowed(&p, "GET", "https://h/"));
    assert!(allowed(&p, "GET", "https://h:8443/"));
    assert!(!allowed(&p, "GET", "http://h/"));
    assert!(!allowed(&p, "GET", "https://h:22/"));
    let unknown = Request {
        method: "GET",
        host: "h",
        path: "/",
        port: None,
    };
    assert!(!p.evaluate(&unknown).is_allowed());
    assert!(policy("domain=h").evaluate(&unknown).is_allowed());
    assert!(policy("domain=h port=*").evaluate(&unknown).is_allowed());
    assert!(allowed(&policy("domain=h"), "GET", "https://h:22/"));
}

#[test]
fn no_rules_deny_all() {
    for p in [
        Policy::deny_all(),
        Policy::new(Vec::new()),
        Policy::from_texts([" ; \n"]).unwrap(),
    ] {
        assert!(p.is_empty());
        assert_eq!(
            denied_for(&p, "GET", "https://h/"),
            DenyReason::NoRuleMatched
        );
        assert!(!p.could_allow_host("h"));
    }
}

#[test]
fn the_lowest_matching_rule_is_named() {
    let p =
        policy("domain=other.example\npath=/x\ndomain=*.h.example\ndomain=a.h.example\ndomain=*");
    assert_eq!(
        p.evaluate(&req("GET", "https://a.h.example/x")),
        Decision::Allow { rule: 1 }
    );
    assert_eq!(
        p.evaluate(&req("GET", "https://a.h.example/y")),
        Decision::Allow { rule: 2 }
    );
    assert_eq!(
        p.evaluate(&req("GET", "https://b.example/y")),
        Decision::Allow { rule: 4 }
    );
    assert_eq!(
        p.evaluate(&req("GET", "https://other.example/y")),
        Decision::Allow { rule: 0 }
    );
}

#[test]
fn could_allow_host_ignores_method_path_and_port() {
    let p = policy("method=POST domain=api.example path=/x port=1\ndomain=*.cdn.example");
    assert!(p.could_allow_host("API.example."));
    assert!(p.could_allow_host("a.b.cdn.example"));
    assert!(!p.could_allow_host("cdn.example"));
    assert!(!p.could_allow_host("evil.example"));
    assert!(!p.could_allow_host("bücher.de"));
    assert!(policy("path=/x").could_allow_host("anything.example"));
}

#[test]
fn suggestions() {
    let p = Policy::deny_all();
    let r = req("POST", "https://API.github.com/repos/x?y=1");
    assert_eq!(
        p.evaluate(&r).denial().unwrap().suggestion.as_deref(),
        Some("domain=api.github.com")
    );
    assert_eq!(suggest_rule(&r), "domain=api.github.com");

    let p = policy("method=GET domain=api.github.com");
    let d = p.evaluate(&r);
    let s = d.denial().unwrap().suggestion.clone().unwrap();
    assert_eq!(s, "method=POST domain=api.github.com path=/repos/x");
    assert_eq!(p.suggest_rule(&r).as_deref(), Some(s.as_str()));

    let p = policy("domain=h port=443");
    let r = req("get", "http://h/a%20b/*/");
    let s = p.evaluate(&r).denial().unwrap().suggestion.clone().unwrap();
    assert_eq!(s, "method=GET domain=h path=/a%20b/%2A/ port=80");
    let grown = Policy::new([p.rules(), &[s.parse::<Rule>().unwrap()]].concat());
    assert!(grown.evaluate(&r).is_allowed());
    assert!(!grown
        .evaluate(&req("GET", "http://h/a%20b/x/"))
        .is_allowed());

    let bad = Request {
        method: "GET",
        host: "bücher.de",
        path: "/",
        port: None,
    };
    assert_eq!(suggest_rule(&bad), "domain=invalid");
    assert!(suggest_rule(&bad).parse::<Rule>().is_ok());
    assert_eq!(Policy::deny_all().suggest_rule(&bad), None);

    // A named host whose request path does not normalise: no narrow rule
    // exists, and dropping `path=` would allow the method everywhere on h.
    let p = policy("method=GET domain=h path=/a");
    let unsafe_path = req("POST", "https://h/x%2Fy");
    let d = p.evaluate(&unsafe_path);
    assert_eq!(d.denial().unwrap().suggestion, None);
    assert_eq!(p.suggest_rule(&unsafe_path), None);
}

#[test]
fn narrowing_requires_both_and_empty_does_not_narrow() {
    let base = policy("domain=*.example");
    let narrow = policy("method=GET domain=a.example");
    let empty = Policy::deny_all();
    assert_eq!(
        evaluate_narrowed(&base, &empty, &req("POST", "https://b.example/")),
        Decision::Allow { rule: 0 }
    );
    assert!(evaluate_narrowed(&base, &narrow, &req("GET", "https://a.example/")).is_allowed());
    let d = evaluate_narrowed(&base, &narrow, &req("POST", "https://a.example/"));
    assert_eq!(d.denial().unwrap().reason, DenyReason::NoRuleMatched);
    // The suggestion is the narrowing's: added to it, it allows the request.
    let rule = d.denial().unwrap().suggestion.clone().expect("a rule for the narrowing set");
    let widened = policy(&format!("method=GET domain=a.example;{rule}"));
    assert_eq!(evaluate_narrowed(&base, &widened, &req("POST", "https://a.example/")), Decision::Allow { rule: 0 });
    assert!(!evaluate_narrowed(&narrow, &base, &req("GET", "https://a.other/")).is_allowed());
    assert!(!evaluate_narrowed(&empty, &narrow, &req("GET", "https://a.example/")).is_allowed());
    assert!(could_allow_host_narrowed(&base, &narrow, "a.example"));
    assert!(!could_allow_host_narrowed(&base, &narrow, "b.example"));
    assert!(could_allow_host_narrowed(&base, &empty, "b.example"));
}

#[test]
fn policy_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Policy>();
    let p = policy("domain=a.example");
    let q = p.clone();
    assert!(std::ptr::eq(p.rules().as_ptr(), q.rules().as_ptr()));
}

#[test]
fn rule_matches_on_its_own() {
    let r: Rule = "method=GET domain=*.h path=/x".parse().unwrap();
    assert!(r.matches(&req("GET", "https://a.h/x")));
    assert!(!r.matches(&req("GET", "https://h/x")));
    assert!(!r.matches(&req("GET", "https://a.h/y")));
}

#[test]
fn denial_display_mentions_reason_and_rule() {
    let d = Policy::deny_all().evaluate(&req("GET", "https://h/"));
    let text = d.denial().unwrap().to_string();
    assert!(
        text.contains("no allow rule") && text.contains("domain=h"),
        "{text}"
    );
}
