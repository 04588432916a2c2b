//! 10,000 mixed rules: every rule is found by its own request, lookalikes
//! are not, and the index agrees with a linear scan.

use boundary_policy::{Decision, DenyReason, Policy, Request};

const N: usize = 10_000;

/// Rule `i` of four kinds, each naming hosts unique to `i`.
fn rule_text(i: usize) -> String {
    match i % 4 {
        0 => format!("domain=host{i}.example.com"),
        1 => format!("domain=*.w{i}.example.org"),
        2 => format!("method=GET domain=api.*.s{i}.test path=/v{i}/*"),
        _ => format!("domain=h{i}.example.net port=8443"),
    }
}

/// A request rule `i` allows (and no other rule does).
fn allowed_request(i: usize) -> (String, String, Option<u16>, &'static str) {
    match i % 4 {
        0 => (
            format!("HOST{i}.example.com."),
            "/".to_owned(),
            Some(443),
            "POST",
        ),
        1 => (
            format!("a.b.w{i}.example.org"),
            "/x".to_owned(),
            Some(443),
            "GET",
        ),
        2 => (
            format!("api.eu.s{i}.test"),
            format!("/v{i}/items/1?x"),
            Some(443),
            "get",
        ),
        _ => (
            format!("h{i}.example.net"),
            "/".to_owned(),
            Some(8443),
            "PUT",
        ),
    }
}

/// Requests rule `i` must not allow, and no other rule allows either.
fn near_misses(i: usize) -> Vec<(String, String, Option<u16>, &'static str)> {
    match i % 4 {
        0 => vec![
            (
                format!("x.host{i}.example.com"),
                "/".into(),
                Some(443),
                "GET",
            ),
            (
                format!("host{i}.example.com.evil.test"),
                "/".into(),
                Some(443),
                "GET",
            ),
            (
                format!("host{i}x.example.com"),
                "/".into(),
                Some(443),
                "GET",
            ),
        ],
        1 => vec![
            (format!("w{i}.example.org"), "/".into(), Some(443), "GET"),
            (format!("xw{i}.example.org"), "/".into(), Some(443), "GET"),
        ],
        2 => vec![
            (
                format!("api.s{i}.test"),
                format!("/v{i}/x"),
                Some(443),
                "GET",
            ),
            (
                format!("api.eu.s{i}.test"),
                format!("/v{i}"),
                Some(443),
                "GET",
            ),
            (
                format!("api.eu.s{i}.test"),
                format!("/v{i}/x"),
                Some(443),
                "POST",
            ),
            (
                format!("api.eu.s{i}.test"),
                format!("/v{i}/%2e%2e/../admin"),
                Some(443),
                "GET",
            ),
        ],
        _ => vec![(format!("h{i}.example.net"), "/".into(), Some(443), "GET")],
    }
}

fn big_policy() -> Policy {
    let text: Vec<String> = (0..N).map(rule_text).collect();
    let policy = Policy::from_texts([text.join("\n").as_str()]).unwrap();
    assert_eq!(policy.rules().len(), N);
    policy
}

#[test]
fn each_of_ten_thousand_rules_allows_its_own_request() {
    let policy = big_policy();
    for i in 0..N {
        let (host, path, port, method) = allowed_request(i);
        let req = Request {
            method,
            host: &host,
            path: &path,
            port,
        };
        assert_eq!(
            policy.evaluate(&req),
            Decision::Allow { rule: i },
            "{req:?}"
        );
        assert!(policy.could_allow_host(&host));
    }
}

#[test]
fn near_misses_are_denied_among_ten_thousand_rules() {
    let policy = big_policy();
    for i in 0..N {
        for (host, path, port, method) in near_misses(i) {
            let req = Request {
                method,
                host: &host,
                path: &path,
                port,
            };
            let decision = policy.evaluate(&req);
            let Decision::Deny(denial) = decision else {
                panic!("{req:?} allowed: {decision:?}")
            };
            let expected = if path.contains("..") {
                DenyReason::UnsafePath
            } else {
                DenyReason::NoRuleMatched
            };
            assert_eq!(denial.reason, expected, "{req:?}");
        }
    }
}

#[test]
fn index_agrees_with_linear_scan_on_ten_thousand_rules() {
    let policy = big_policy();
    let step = 97; // a spread of rules; linear scans of 10k are slow in debug builds
    for i in (0..N).step_by(step) {
        let (host, path, port, method) = allowed_request(i);
        let mut cases = near_misses(i);
        cases.push((host, path, port, method));
        for (host, path, port, method) in cases {
            let req = Request {
                method,
                host: &host,
                path: &path,
                port,
            };
            let linear = policy.rules().iter().position(|r| r.matches(&req));
            assert_eq!(policy.evaluate(&req).allowed_by(), linear, "{req:?}");
        }
    }
}

#[test]
fn a_catch_all_at_the_end_loses_to_earlier_rules() {
    let mut text: Vec<String> = (0..N).map(rule_text).collect();
    text.push("domain=*".to_owned());
    let policy = Policy::from_texts(text.iter().map(String::as_str)).unwrap();
    let req = Request {
        method: "GET",
        host: "host400.example.com",
        path: "/",
        port: Some(443),
    };
    assert_eq!(policy.evaluate(&req), Decision::Allow { rule: 400 });
    let req = Request {
        method: "GET",
        host: "unknown.example",
        path: "/",
        port: Some(443),
    };
    assert_eq!(policy.evaluate(&req), Decision::Allow { rule: N });
}
