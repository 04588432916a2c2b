//! The rule grammar: keys, ordering, separators, errors and their positions.

use boundary_policy::{parse_rules, ParseErrorKind as K, PathProblem, Policy, Rule};

fn rule(text: &str) -> Rule {
    text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn err(text: &str) -> (usize, K) {
    let e = text.parse::<Rule>().expect_err(text);
    assert_eq!(e.rule(), text);
    (e.position(), e.kind().clone())
}

#[test]
fn every_key_and_canonical_display() {
    let r = rule("method=get,HEAD domain=API.GitHub.com. path=/repos/*,/user port=8443,443");
    assert_eq!(
        r.to_string(),
        "method=GET,HEAD domain=api.github.com path=/repos/*,/user port=443,8443"
    );
    assert_eq!(rule("method=*").to_string(), "method=*");
    assert_eq!(rule("domain=*").to_string(), "domain=*");
    assert_eq!(rule("path=*").to_string(), "path=*");
    assert_eq!(rule("port=*").to_string(), "port=*");
    assert_eq!(
        rule("domain=169.254.169.254").to_string(),
        "domain=169.254.169.254"
    );
}

/// `*` beside other items would read as a narrower list than it is.
#[test]
fn a_star_in_a_list_must_stand_alone() {
    assert_eq!(err("path=/a,*"), (8, K::WildcardInList("path")));
    assert_eq!(err("method=GET,*"), (11, K::WildcardInList("method")));
    assert_eq!(err("domain=h port=*,443"), (14, K::WildcardInList("port")));
}

/// A no-break space pasted into a rule (from a web page or a chat) is not
/// a separator: read as part of the path, it would leave the rule with no
/// `domain=` at all, allowing that odd path on every host.
#[test]
fn whitespace_other_than_space_and_tab_is_refused_where_it_stands() {
    assert_eq!(
        err("path=/public\u{a0}domain=github.com"),
        (12, K::StraySpace('\u{a0}'))
    );
    assert_eq!(err("domain=a.example\u{3000}path=/x"), (16, K::StraySpace('\u{3000}')));
    assert_eq!(err("method=GET\u{85}domain=a"), (10, K::StraySpace('\u{85}')));
    let e = "path=/public\u{a0}domain=github.com".parse::<Rule>().unwrap_err();
    assert!(e.to_string().contains("U+00A0"), "{e}");
    // Non-ASCII that is not whitespace (a zero-width space) cannot glue
    // fields either: a path pattern must be ASCII, percent-encoded as sent.
    assert_eq!(
        err("path=/public\u{200b}domain=github.com"),
        (5, K::Path(PathProblem::NonAscii))
    );
    assert_eq!(err("path=/caf\u{e9}"), (5, K::Path(PathProblem::NonAscii)));
    assert_eq!(rule("path=/caf%C3%A9").to_string(), "path=/caf%C3%A9");
}

#[test]
fn key_order_does_not_matter() {
    let a = rule("method=GET domain=a.example path=/x port=443");
    for text in [
        "port=443 path=/x domain=a.example method=GET",
        "domain=a.example method=GET port=443 path=/x",
    ] {
        assert_eq!(rule(text), a);
    }
}

#[test]
fn absent_key_differs_from_star() {
    assert_ne!(rule("domain=a.example method=*"), rule("domain=a.example"));
}

#[test]
fn spaces_and_tabs_separate_fields() {
    let r = rule("  method=GET\t\tdomain=a.example \t path=/x  ");
    assert_eq!(r.to_string(), "method=GET domain=a.example path=/x");
    assert_eq!(rule("domain=a.example\r"), rule("domain=a.example"));
}

#[test]
fn duplicate_key_is_an_error_at_the_second_key() {
    assert_eq!(
        err("domain=a.example domain=b.example"),
        (17, K::DuplicateKey("domain"))
    );
    assert_eq!(
        err("method=GET path=/ method=POST"),
        (18, K::DuplicateKey("method"))
    );
}

#[test]
fn unknown_key_is_an_error() {
    assert_eq!(
        err("domain=a.example host=b"),
        (17, K::UnknownKey("host".into()))
    );
    assert_eq!(err("Domain=a.example"), (0, K::UnknownKey("Domain".into())));
    assert_eq!(err("=a.example"), (0, K::UnknownKey(String::new())));
}

#[test]
fn missing_equals_is_an_error() {
    assert_eq!(
        err("domain=a.example github.com"),
        (17, K::MissingEquals("github.com".into()))
    );
}

#[test]
fn empty_value_is_an_error() {
    assert_eq!(err("domain="), (7, K::EmptyValue("domain")));
    assert_eq!(
        err("method=GET path= domain=a.example"),
        (16, K::EmptyValue("path"))
    );
    assert_eq!(err("method=GET,,POST"), (11, K::EmptyListItem("method")));
    assert_eq!(err("path=/a,"), (8, K::EmptyListItem("path")));
}

#[test]
fn empty_rule_is_an_error_not_allow_all() {
    assert_eq!(err(""), (0, K::EmptyRule));
    assert_eq!(err(" \t "), (0, K::EmptyRule));
}

#[test]
fn single_rule_refuses_rule_separators() {
    assert_eq!(err("domain=a.example;path=/x"), (16, K::RuleSeparator));
    assert_eq!(err("domain=a.example\npath=/x"), (16, K::RuleSeparator));
}

#[test]
fn value_errors_point_at_the_value_or_item() {
    assert_eq!(err("method=GET,G T"), (13, K::MissingEquals("T".into())));
    assert_eq!(err("method=GET,G(T"), (11, K::MethodToken("G(T".into())));
    assert_eq!(err("method=G*T"), (7, K::MethodToken("G*T".into())));
    assert_eq!(err("port=443,0"), (9, K::Port("0".into())));
    assert_eq!(err("port=https"), (5, K::Port("https".into())));
    assert_eq!(err("path=/ok,api"), (9, K::Path(PathProblem::NotAbsolute)));
    assert_eq!(
        err("path=/a/b*"),
        (5, K::Path(PathProblem::PartialWildcard))
    );
    assert_eq!(
        err("path=/a?x=1"),
        (5, K::Path(PathProblem::QueryInPattern))
    );
    assert_eq!(err("path=/a/../b"), (5, K::Path(PathProblem::DotSegment)));
    assert_eq!(err("path=/a//b"), (5, K::Path(PathProblem::EmptySegment)));
    assert_eq!(err("path=/a%2Fb"), (5, K::Path(PathProblem::EncodedSlash)));
    assert_eq!(
        err("method=GET domain=a..b"),
        (
            18,
            K::DomainLabel {
                label: String::new(),
                problem: boundary_policy::LabelProblem::Empty
            }
        )
    );
}

#[test]
fn domain_syntax_errors() {
    assert_eq!(err("domain=github.*").1, K::DomainEndsInWildcard);
    assert_eq!(err("domain=github.com:8080").1, K::DomainPort);
    assert_eq!(err("domain=gith*b.com").1, K::DomainPartialWildcard);
    assert_eq!(
        err("domain=bücher.de").1,
        K::DomainNonAscii("bücher.de".into())
    );
    assert_eq!(err("domain=127.1").1, K::DomainIpv4("127.1".into()));
    assert_eq!(err("domain=*.0.0.1").1, K::DomainIpv4("*.0.0.1".into()));
    assert_eq!(
        err(&format!("domain={}.com", "a".repeat(64))).1,
        K::DomainLabel {
            label: "a".repeat(64),
            problem: boundary_policy::LabelProblem::TooLong
        }
    );
    let long = format!("domain={}", vec!["abcdefghi"; 26].join("."));
    assert_eq!(err(&long).1, K::DomainTooLong);
    for bad in [
        "domain=-a.com",
        "domain=a-.com",
        "domain=a_b.com",
        "domain=.a.com",
        "domain=a/b",
    ] {
        assert!(matches!(err(bad).1, K::DomainLabel { .. }), "{bad}");
    }
    let e = "domain=xn--bcher-kva.de".parse::<Rule>();
    assert!(e.is_ok(), "punycode is fine");
    assert!(err("domain=bücher.de").1.to_string().contains("punycode"));
}

#[test]
fn several_rules_split_on_newline_and_semicolon() {
    let rules =
        parse_rules("domain=a.example; domain=b.example\n\n  method=GET domain=c.example ;\r\n;")
            .unwrap();
    let texts: Vec<String> = rules.iter().map(Rule::to_string).collect();
    assert_eq!(
        texts,
        [
            "domain=a.example",
            "domain=b.example",
            "method=GET domain=c.example"
        ]
    );
    assert!(parse_rules("").unwrap().is_empty());
    assert!(parse_rules(" ;\n ; ").unwrap().is_empty());
}

#[test]
fn parse_rules_error_names_the_rule_and_position() {
    let e = parse_rules("domain=a.example\n  domain=github.*  ; path=/x").unwrap_err();
    assert_eq!(e.rule(), "domain=github.*");
    assert_eq!(e.position(), 7);
    assert_eq!(
        e.to_string(),
        "invalid rule \"domain=github.*\" at position 7: domain pattern may not end in '*'"
    );
    assert!(e.message().contains("may not end"));
    let e: &dyn std::error::Error = &e;
    assert!(e.source().is_some());
}

#[test]
fn from_texts_concatenates_in_order() {
    let p = Policy::from_texts(["domain=a.example;domain=b.example", "domain=c.example"]).unwrap();
    assert_eq!(p.rules().len(), 3);
    assert_eq!(
        p.to_text(),
        "domain=a.example\ndomain=b.example\ndomain=c.example"
    );
    assert_eq!(
        Policy::from_texts([p.to_text().as_str()]).unwrap().rules(),
        p.rules()
    );
    assert!(Policy::from_texts(["domain=a.example", "domain=b.*"]).is_err());
    assert!(Policy::from_texts(Vec::<&str>::new()).unwrap().is_empty());
}
