//! `boundary_policy::parse_rules` on arbitrary UTF-8.
//!
//! Checks, beyond "never panics":
//! - an error names a position inside the failed rule's text;
//! - every parsed rule round-trips: `parse(display(rule)) == rule`, and the
//!   canonical text is a fixed point;
//! - `Policy::to_text` parses back to the same rules;
//! - a few fixed requests get the same answer from the host index as from a
//!   linear scan of the rules, and a denial's suggested rule parses and
//!   allows the request once added.
#![no_main]

use boundary_policy::{parse_rules, Decision, Policy, Request, Rule};
use libfuzzer_sys::fuzz_target;

const REQUESTS: &[Request<'static>] = &[
    Request {
        method: "GET",
        host: "github.com",
        path: "/repos/x",
        port: Some(443),
    },
    Request {
        method: "POST",
        host: "api.github.com",
        path: "/v2/a/b?q=1",
        port: Some(443),
    },
    Request {
        method: "get",
        host: "A.B.Example.",
        path: "/api/",
        port: None,
    },
    Request {
        method: "DELETE",
        host: "10.0.0.1",
        path: "/x/%2e%2e/y",
        port: Some(8080),
    },
    Request {
        method: "HEAD",
        host: "registry.npmjs.org",
        path: "/@scope%2fname",
        port: Some(80),
    },
    Request {
        method: "B@D",
        host: "xn--bcher-kva.example",
        path: "/a//b",
        port: Some(1),
    },
    Request {
        method: "GET",
        host: "169.254.169.254",
        path: "/latest/meta-data",
        port: Some(80),
    },
    Request {
        method: "PUT",
        host: "bad_host",
        path: "relative",
        port: Some(65535),
    },
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = match parse_rules(text) {
        Ok(rules) => rules,
        Err(e) => {
            assert!(
                e.position() <= e.rule().len(),
                "position {} past the end of {:?}",
                e.position(),
                e.rule()
            );
            assert!(!e.message().is_empty());
            let _ = e.to_string();
            return;
        }
    };
    for rule in &rules {
        let shown = rule.to_string();
        let back: Rule = shown
            .parse()
            .unwrap_or_else(|e| panic!("display {shown:?} of {rule:?} does not parse: {e}"));
        assert_eq!(&back, rule, "display {shown:?} parses to a different rule");
        assert_eq!(
            back.to_string(),
            shown,
            "canonical text is not a fixed point"
        );
    }
    let policy = Policy::new(rules.clone());
    let text_again = policy.to_text();
    assert_eq!(parse_rules(&text_again).expect("to_text parses"), rules);
    for req in REQUESTS {
        check_request(&policy, req);
    }
});

fn check_request(policy: &Policy, req: &Request<'_>) {
    let decision = policy.evaluate(req);
    let linear = policy.rules().iter().position(|r| r.matches(req));
    assert_eq!(
        decision.allowed_by(),
        linear,
        "index and linear scan disagree on {req:?}"
    );
    if decision.is_allowed() {
        assert!(
            policy.could_allow_host(req.host),
            "{req:?} allowed but its host is not"
        );
    }
    if let Decision::Deny(denial) = decision {
        if let Some(s) = denial.suggestion {
            let rule: Rule = s
                .parse()
                .unwrap_or_else(|e| panic!("suggestion {s:?} does not parse: {e}"));
            assert!(rule.matches(req), "suggestion {s:?} does not match {req:?}");
            let grown = Policy::new([policy.rules(), &[rule]].concat());
            assert!(
                grown.evaluate(req).is_allowed(),
                "adding {s:?} does not allow {req:?}"
            );
        }
    }
}
