//! Arbitrary requests against a fixed policy.
//!
//! Input: up to four fields separated by `\n`: method, host, path, port
//! (decimal; anything else is "unknown port"). Checks, beyond "never
//! panics": `normalize_host` is idempotent and lowercase without a trailing
//! dot; a normalised path is absolute with no dot segments and no inner
//! empty segment; the host index agrees with a linear scan; an allowed
//! host is one the DNS filter would resolve; a suggestion allows the request.
#![no_main]

use std::sync::OnceLock;

use boundary_policy::{forwarded_path, normalize_host, normalize_path, Decision, Policy, Request, Rule};
use libfuzzer_sys::fuzz_target;

const RULES: &str = "\
domain=github.com
method=GET,HEAD domain=*.github.com path=/repos/*,/user
domain=api.*.example port=443,8443
domain=10.0.0.1 path=/
method=POST domain=registry.npmjs.org path=/-/v1/*,/@scope/name
path=/health
domain=xn--bcher-kva.example path=/a%20b/*
method=* domain=*.internal.test port=80";

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::from_texts([RULES]).expect("fixed rules parse"))
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(4, |b| *b == b'\n');
    let mut next = || std::str::from_utf8(fields.next().unwrap_or_default()).ok();
    let (Some(method), Some(host), Some(path), Some(port)) = (next(), next(), next(), next())
    else {
        return;
    };
    let port = port.trim().parse::<u16>().ok();

    if let Ok(h) = normalize_host(host) {
        assert_eq!(
            normalize_host(&h),
            Ok(h.clone()),
            "host normalisation not idempotent"
        );
        assert!(
            !h.ends_with('.') && h == h.to_ascii_lowercase(),
            "{host:?} -> {h:?}"
        );
    }
    if let Ok(p) = normalize_path(path) {
        assert!(p.starts_with('/'), "{path:?} -> {p:?}");
        let segs: Vec<&str> = p[1..].split('/').collect();
        for (i, seg) in segs.iter().enumerate() {
            assert!(*seg != "." && *seg != "..", "{path:?} -> {p:?}");
            assert!(!seg.is_empty() || i + 1 == segs.len(), "{path:?} -> {p:?}");
        }
        // What is sent upstream reads as what was judged, and is resolved.
        if let Some(sent) = forwarded_path(path) {
            assert_eq!(normalize_path(&sent), Ok(p.clone()), "{path:?} sent as {sent:?}");
            assert_eq!(forwarded_path(&sent), None, "{path:?} sent as {sent:?}");
        }
    }

    let policy = policy();
    let req = Request {
        method,
        host,
        path,
        port,
    };
    let decision = policy.evaluate(&req);
    let linear = policy.rules().iter().position(|r| r.matches(&req));
    assert_eq!(
        decision.allowed_by(),
        linear,
        "index and linear scan disagree on {req:?}"
    );
    if decision.is_allowed() {
        assert!(
            policy.could_allow_host(host),
            "{req:?} allowed but its host is not"
        );
    }
    if let Decision::Deny(denial) = decision {
        if let Some(s) = denial.suggestion {
            let rule: Rule = s
                .parse()
                .unwrap_or_else(|e| panic!("suggestion {s:?} does not parse: {e}"));
            assert!(
                rule.matches(&req),
                "suggestion {s:?} does not match {req:?}"
            );
            let grown = Policy::new([policy.rules(), &[rule]].concat());
            assert!(
                grown.evaluate(&req).is_allowed(),
                "adding {s:?} does not allow {req:?}"
            );
        }
    }
    let _ = policy.suggest_rule(&req);
});
