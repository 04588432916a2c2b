//! Property tests: lookalike hosts, rule text round trips, the index against
//! a linear reference, suggestions, normalisation.

use boundary_policy::{normalize_host, normalize_path, Decision, Policy, Request, Rule};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

/// A valid hostname whose last label is alphabetic (so never an address).
fn hostname() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 0..3), "[a-z]{2,6}").prop_map(|(mut labels, tld)| {
        labels.push(tld);
        labels.join(".")
    })
}

fn get(host: &str) -> Request<'_> {
    Request {
        method: "GET",
        host,
        path: "/",
        port: Some(443),
    }
}

fn lookalikes(x: &str) -> Vec<String> {
    vec![
        format!("{x}.evil.test"),
        format!("evil{x}"),
        format!("{x}-evil"),
        format!("{x}evil.test"),
        format!("evil-{x}"),
        format!("{x}.evil"),
        format!("{x}x"),
        format!("x{x}"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn exact_and_subdomain_patterns_reject_lookalikes(x in hostname(), sub in label()) {
        let exact = Policy::from_texts([format!("domain={x}").as_str()]).unwrap();
        let wild = Policy::from_texts([format!("domain=*.{x}").as_str()]).unwrap();
        for fake in lookalikes(&x) {
            prop_assert!(!exact.evaluate(&get(&fake)).is_allowed(), "domain={} allowed {}", x, fake);
            prop_assert!(!wild.evaluate(&get(&fake)).is_allowed(), "domain=*.{} allowed {}", x, fake);
            prop_assert!(!exact.could_allow_host(&fake) && !wild.could_allow_host(&fake));
        }
        let (upper, dotted) = (x.to_uppercase(), format!("{x}."));
        let (child, grandchild) = (format!("{sub}.{x}"), format!("{sub}.{sub}.{x}"));
        prop_assert!(exact.evaluate(&get(&x)).is_allowed());
        prop_assert!(exact.evaluate(&get(&upper)).is_allowed());
        prop_assert!(exact.evaluate(&get(&dotted)).is_allowed());
        prop_assert!(!exact.evaluate(&get(&child)).is_allowed());
        prop_assert!(!wild.evaluate(&get(&x)).is_allowed());
        prop_assert!(wild.evaluate(&get(&child)).is_allowed());
        prop_assert!(wild.evaluate(&get(&grandchild)).is_allowed());
    }
}

fn method_value() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        4 => prop::collection::vec(prop_oneof!["[A-Za-z]{1,7}", Just("M-SEARCH".to_owned())], 1..4)
            .prop_map(|v| v.join(",")),
    ]
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]))
}

fn domain_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        hostname(),
        hostname().prop_map(|h| format!("*.{h}")),
        (label(), hostname()).prop_map(|(l, h)| format!("{l}.*.{h}")),
        hostname().prop_map(|h| format!("*.*.{}", h.to_uppercase())),
        ipv4(),
    ]
}

/// A percent-encoded literal segment decoding to `text`.
fn encode_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02x}")).collect()
}

fn segment_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9._~!$&'()+=:@-]{1,6}".prop_filter("dot segment", |s| s != "." && s != ".."),
        1 => "[^/\\\\%\\x00-\\x1f\\x7f]{1,4}"
            .prop_filter("dot segment", |s| s != "." && s != "..")
            .prop_map(|s| encode_all(&s)),
        1 => Just("*".to_owned()),
    ]
}

fn path_item() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment_text(), 0..4), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p: String = segs.iter().map(|s| format!("/{s}")).collect();
        if slash || p.is_empty() {
            p.push('/');
        }
        p
    })
}

/// A `path=` value: `*` alone, or a list of patterns.
fn path_value() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        8 => prop::collection::vec(path_item(), 1..3).prop_map(|v| v.join(",")),
    ]
}

fn port_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        prop::collection::vec(1u16.., 1..4).prop_map(|v| v
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")),
    ]
}

fn rule_text() -> impl Strategy<Value = String> {
    (
        prop::option::of(method_value()),
        prop::option::of(domain_value()),
        prop::option::of(path_value()),
        prop::option::of(port_value()),
        prop::sample::select(vec![" ", "\t", "  \t "]),
    )
        .prop_filter("at least one key", |(m, d, p, o, _)| {
            m.is_some() || d.is_some() || p.is_some() || o.is_some()
        })
        .prop_map(|(m, d, p, o, sep)| {
            let mut fields = Vec::new();
            fields.extend(o.map(|v| format!("port={v}")));
            fields.extend(p.map(|v| format!("path={v}")));
            fields.extend(m.map(|v| format!("method={v}")));
            fields.extend(d.map(|v| format!("domain={v}")));
            fields.join(sep)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn generated_rules_parse_and_round_trip(text in rule_text()) {
        let rule: Rule = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let shown = rule.to_string();
        let again: Rule = shown.parse().map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
        prop_assert_eq!(&again, &rule);
        prop_assert_eq!(again.to_string(), shown);
    }

    #[test]
    fn any_text_that_parses_round_trips(
        text in prop_oneof![
            ".{0,40}",
            "((method|domain|path|port)=[ -~]{0,16}[ \t]{1,2}){1,4}",
        ]
    ) {
        if let Ok(rule) = text.parse::<Rule>() {
            let shown = rule.to_string();
            let again: Rule = shown.parse().map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
            prop_assert_eq!(again, rule);
        }
    }

    #[test]
    fn normalised_paths_are_well_formed(path in "[/a.%2fFeE?#\\\\0-9]{0,16}") {
        if let Ok(p) = normalize_path(&path) {
            prop_assert!(p.starts_with('/'));
            let segs: Vec<&str> = p[1..].split('/').collect();
            for (i, seg) in segs.iter().enumerate() {
                prop_assert!(*seg != "." && *seg != "..", "{} -> {}", path, p);
                prop_assert!(!seg.is_empty() || i + 1 == segs.len(), "{} -> {}", path, p);
                prop_assert!(!seg.contains('\\'));
            }
            // The normal form is decoded: a `?` or `#` in it came from
            // `%3F`/`%23` and is a path character there, while
            // normalize_path reads its input as a request target, where
            // they start the query. Only forms without them (and without
            // `%`) must come back unchanged.
            if !p.contains(['%', '?', '#']) {
                prop_assert_eq!(normalize_path(&p), Ok(p.clone()));
            }
        }
    }

    #[test]
    fn host_normalisation_is_idempotent(host in "[a-zA-Z0-9.\\-_:ü]{0,20}") {
        if let Ok(h) = normalize_host(&host) {
            prop_assert_eq!(normalize_host(&h), Ok(h.clone()));
            prop_assert!(!h.ends_with('.') && h == h.to_lowercase());
        }
    }
}

const HOSTS: &[&str] = &[
    "a.example",
    "b.a.example",
    "c.b.a.example",
    "example",
    "x.other",
    "10.0.0.1",
    "A.Example.",
];
const DOMAINS: &[&str] = &[
    "a.example",
    "*.a.example",
    "*.example",
    "b.*.example",
    "*",
    "10.0.0.1",
    "*.*.example",
    "example",
    "x.other",
];
const PATHS: &[&str] = &[
    "/x",
    "/x/y",
    "/",
    "/x//y",
    "/y",
    "/x/%2e%2e/y",
    "/x%2Fy",
    "/x/",
];
const PATTERNS: &[&str] = &["/x", "/x/*", "/", "*", "/*/y", "/y,/x/"];

fn small_rule() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop::sample::select(DOMAINS)),
        prop::option::of(prop::sample::select(&["GET", "POST", "GET,HEAD"][..])),
        prop::option::of(prop::sample::select(PATTERNS)),
        prop::option::of(prop::sample::select(&["443", "80", "443,80"][..])),
    )
        .prop_map(|(d, m, p, o)| {
            let mut f = Vec::new();
            f.extend(d.map(|v| format!("domain={v}")));
            f.extend(m.map(|v| format!("method={v}")));
            f.extend(p.map(|v| format!("path={v}")));
            f.extend(o.map(|v| format!("port={v}")));
            if f.is_empty() {
                f.push("domain=*".to_owned());
            }
            f.join(" ")
        })
}

fn small_request() -> impl Strategy<Value = (&'static str, &'static str, &'static str, Option<u16>)>
{
    (
        prop::sample::select(&["GET", "POST", "head"][..]),
        prop::sample::select(HOSTS),
        prop::sample::select(PATHS),
        prop::sample::select(&[Some(443), Some(80), None][..]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The host index gives exactly what a linear scan gives.
    #[test]
    fn index_agrees_with_linear_scan(
        rules in prop::collection::vec(small_rule(), 0..12),
        reqs in prop::collection::vec(small_request(), 1..8),
    ) {
        let policy = Policy::from_texts(rules.iter().map(String::as_str)).unwrap();
        for (method, host, path, port) in reqs {
            let req = Request { method, host, path, port };
            let linear = policy.rules().iter().position(|r| r.matches(&req));
            prop_assert_eq!(policy.evaluate(&req).allowed_by(), linear, "{:?} under {:?}", req, rules);
            let host_ok = policy.rules().iter().any(|r| {
                let probe = Request { method: "GET", host, path: "/", port: Some(443) };
                let loose: Rule = strip_to_domain(r);
                loose.matches(&probe)
            });
            prop_assert_eq!(policy.could_allow_host(host), host_ok);
        }
    }

    /// A suggested rule parses, and adding it allows the denied request.
    #[test]
    fn suggestions_allow_the_request(
        rules in prop::collection::vec(small_rule(), 0..6),
        host in prop_oneof![hostname(), prop::sample::select(HOSTS).prop_map(str::to_owned)],
        method in prop_oneof![Just("GET".to_owned()), "[a-zA-Z]{1,6}", Just("B@D".to_owned())],
        path in "(/([a-z]{1,3}|%20|%2A|\\*|,|;|\\.|\\.\\.|%25|%C3%A9)){0,4}/?(\\?q=1)?",
        port in prop::option::of(1u16..),
    ) {
        let policy = Policy::from_texts(rules.iter().map(String::as_str)).unwrap();
        let req = Request { method: &method, host: &host, path: &path, port };
        if let Decision::Deny(denial) = policy.evaluate(&req) {
            if let Some(s) = denial.suggestion {
                let rule: Rule = s.parse().map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
                prop_assert!(rule.matches(&req), "{} does not match {:?}", s, req);
                let grown = Policy::new([policy.rules(), &[rule]].concat());
                prop_assert!(grown.evaluate(&req).is_allowed());
            }
        }
    }
}

/// The rule reduced to its domain key (or `domain=*` if it has none).
fn strip_to_domain(rule: &Rule) -> Rule {
    let text = rule.to_string();
    let domain = text
        .split(' ')
        .find(|f| f.starts_with("domain="))
        .unwrap_or("domain=*");
    domain.parse().unwrap()
}

/// `%3F` in a path is a `?` inside the path, not the start of a query
/// (found by `normalised_paths_are_well_formed`): it decodes into the
/// normal form, a rule naming it matches only it, and the same bytes
/// unencoded are a path `/a` with a query.
#[test]
fn an_encoded_question_mark_is_part_of_the_path() {
    assert_eq!(normalize_path("/a%3Fb").as_deref(), Ok("/a?b"));
    assert_eq!(normalize_path("/a?b").as_deref(), Ok("/a"));
    let policy = Policy::new(vec!["domain=h.test path=/a%3Fb".parse::<Rule>().unwrap()]);
    let at = |path| Request { path, ..get("h.test") };
    assert!(policy.evaluate(&at("/a%3Fb")).allowed_by().is_some());
    assert!(policy.evaluate(&at("/a%3fb")).allowed_by().is_some());
    assert!(policy.evaluate(&at("/a?b")).allowed_by().is_none());
}
