//! Host names: normalising a request's host and matching `domain=` patterns.
//!
//! A host is compared lowercase, without a trailing dot, and must be either
//! a hostname (labels of letters, digits and inner hyphens, 1-63 characters
//! each, 253 in all) or an IPv4 address in canonical dotted-quad form. A host
//! whose last label is numeric (`127.1`, `2130706433`, `0x7f.1`) is read by
//! many resolvers as an IPv4 address in a legacy form, so it is valid only as
//! a canonical dotted quad; anything else is refused rather than guessed at.

use std::borrow::Cow;
use std::fmt;

use crate::decision::DenyReason;
use crate::error::{LabelProblem, ParseErrorKind};

const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Whether a normalised host is a name or an IPv4 literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKind {
    Name,
    Ipv4,
}

/// Lowercase `host`, strip one trailing dot and check it is a hostname or a
/// canonical IPv4 address. The caller strips any `:port` first.
///
/// Non-ASCII hosts are refused with [`DenyReason::NonAsciiHost`]:
/// internationalised names must already be punycode (`xn--...`).
pub fn normalize_host(host: &str) -> Result<String, DenyReason> {
    normalize_host_cow(host).map(|(h, _)| h.into_owned())
}

/// [`normalize_host`] without allocating when the host is already normal.
pub(crate) fn normalize_host_cow(host: &str) -> Result<(Cow<'_, str>, HostKind), DenyReason> {
    if !host.is_ascii() {
        return Err(DenyReason::NonAsciiHost);
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let lowered = if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    };
    let kind = check_host(&lowered).map_err(|_| DenyReason::InvalidHost)?;
    Ok((lowered, kind))
}

/// Validate a lowercase host without a trailing dot.
fn check_host(host: &str) -> Result<HostKind, ParseErrorKind> {
    if host.len() > MAX_HOST_LEN {
        return Err(ParseErrorKind::DomainTooLong);
    }
    for label in host.split('.') {
        check_label(label)?;
    }
    host_kind(host)
}

/// A host ending in a numeric label must be a canonical IPv4 address.
fn host_kind(host: &str) -> Result<HostKind, ParseErrorKind> {
    let last = host.rsplit('.').next().unwrap_or(host);
    if !is_numeric_label(last) {
        return Ok(HostKind::Name);
    }
    if is_canonical_ipv4(host) {
        Ok(HostKind::Ipv4)
    } else {
        Err(ParseErrorKind::DomainIpv4(host.to_owned()))
    }
}

/// Decimal digits, or `0x` followed by hex digits: what URL parsers and
/// `inet_aton` take as a number.
fn is_numeric_label(label: &str) -> bool {
    if let Some(hex) = label.strip_prefix("0x") {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit())
}

fn is_canonical_ipv4(host: &str) -> bool {
    let mut count = 0;
    for part in host.split('.') {
        count += 1;
        let canonical = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && !(part.len() > 1 && part.starts_with('0'))
            && part.parse::<u16>().is_ok_and(|n| n <= 255);
        if !canonical {
            return false;
        }
    }
    count == 4
}

fn check_label(label: &str) -> Result<(), ParseErrorKind> {
    let problem = if label.is_empty() {
        Some(LabelProblem::Empty)
    } else if label.len() > MAX_LABEL_LEN {
        Some(LabelProblem::TooLong)
    } else if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(LabelProblem::BadChar(c))
    } else if label.starts_with('-') {
        Some(LabelProblem::LeadingHyphen)
    } else if label.ends_with('-') {
        Some(LabelProblem::TrailingHyphen)
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(ParseErrorKind::DomainLabel {
            label: label.to_owned(),
            problem,
        }),
    }
}

/// One label of a wildcard domain pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Label {
    /// `*`: exactly one label, or one or more when it is the first label.
    Any,
    Lit(String),
}

/// A parsed `domain=` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DomainPattern {
    /// `domain=*`: every host, names and IPv4 literals alike.
    Any,
    /// A host name or IPv4 address, matched exactly.
    Exact(String),
    /// A pattern holding `*` labels (never last). `suffix` is the literal
    /// labels after the last `*`, used as the index key.
    Wild { labels: Vec<Label>, suffix: String },
}

impl DomainPattern {
    /// Parse a `domain=` value.
    pub(crate) fn parse(value: &str) -> Result<DomainPattern, ParseErrorKind> {
        if value == "*" {
            return Ok(DomainPattern::Any);
        }
        if !value.is_ascii() {
            return Err(ParseErrorKind::DomainNonAscii(value.to_owned()));
        }
        if value.contains(':') {
            return Err(ParseErrorKind::DomainPort);
        }
        let lowered = value.to_ascii_lowercase();
        let text = lowered.strip_suffix('.').unwrap_or(&lowered);
        if text.len() > MAX_HOST_LEN {
            return Err(ParseErrorKind::DomainTooLong);
        }
        if !text.contains('*') {
            check_host(text)?;
            return Ok(DomainPattern::Exact(text.to_owned()));
        }
        Self::parse_wild(text)
    }

    fn parse_wild(text: &str) -> Result<DomainPattern, ParseErrorKind> {
        let mut labels = Vec::new();
        for label in text.split('.') {
            if label == "*" {
                labels.push(Label::Any);
            } else if label.contains('*') {
                return Err(ParseErrorKind::DomainPartialWildcard);
            } else {
                check_label(label)?;
                labels.push(Label::Lit(label.to_owned()));
            }
        }
        if matches!(labels.last(), Some(Label::Any)) {
            return Err(ParseErrorKind::DomainEndsInWildcard);
        }
        let last = text.rsplit('.').next().unwrap_or(text);
        if is_numeric_label(last) {
            return Err(ParseErrorKind::DomainIpv4(text.to_owned()));
        }
        let first_lit = labels
            .iter()
            .rposition(|l| *l == Label::Any)
            .map_or(0, |i| i + 1);
        let suffix = text
            .split('.')
            .skip(first_lit)
            .collect::<Vec<_>>()
            .join(".");
        Ok(DomainPattern::Wild { labels, suffix })
    }

    /// Whether a normalised host matches this pattern. Wildcard labels never
    /// match IPv4 literals: an address is allowed only when written out.
    pub(crate) fn matches(&self, host: &str, kind: HostKind) -> bool {
        match self {
            DomainPattern::Any => true,
            DomainPattern::Exact(name) => name == host,
            DomainPattern::Wild { labels, .. } => {
                kind == HostKind::Name && wild_matches(labels, host)
            }
        }
    }
}

/// Match labels right to left. A `*` in first position takes one or more
/// labels; anywhere else exactly one.
fn wild_matches(labels: &[Label], host: &str) -> bool {
    let mut host_labels = host.rsplit('.');
    for (i, pattern) in labels.iter().enumerate().rev() {
        let Some(label) = host_labels.next() else {
            return false;
        };
        match pattern {
            Label::Lit(lit) if lit != label => return false,
            Label::Any if i == 0 => return true,
            _ => {}
        }
    }
    host_labels.next().is_none()
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Any => f.write_str("*"),
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Wild { labels, .. } => {
                for (i, label) in labels.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    match label {
                        Label::Any => f.write_str("*")?,
                        Label::Lit(lit) => f.write_str(lit)?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> DomainPattern {
        DomainPattern::parse(s).unwrap()
    }

    fn m(p: &str, host: &str) -> bool {
        let (h, kind) = normalize_host_cow(host).unwrap();
        pat(p).matches(&h, kind)
    }

    #[test]
    fn normalises_case_and_trailing_dot_without_allocating_when_normal() {
        assert_eq!(normalize_host("GitHub.COM.").unwrap(), "github.com");
        assert!(matches!(
            normalize_host_cow("github.com").unwrap().0,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn refuses_bad_hosts() {
        for bad in [
            "", ".", "a..b", "-a.com", "a-.com", "a_b.com", "a b", "a:443", "[::1]", "::1",
        ] {
            assert_eq!(normalize_host(bad), Err(DenyReason::InvalidHost), "{bad}");
        }
        assert_eq!(normalize_host("bücher.de"), Err(DenyReason::NonAsciiHost));
        assert_eq!(
            normalize_host(&"a".repeat(64)),
            Err(DenyReason::InvalidHost)
        );
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        assert_eq!(long.len(), 254);
        assert_eq!(normalize_host(&long), Err(DenyReason::InvalidHost));
        assert!(normalize_host(&long[1..]).is_ok());
    }

    #[test]
    fn ipv4_only_in_canonical_form() {
        assert_eq!(
            normalize_host_cow("169.254.169.254").unwrap().1,
            HostKind::Ipv4
        );
        for legacy in [
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "127.0.0.01",
            "1.2.3.256",
            "1.2.3.4.5",
            "a.0x10",
        ] {
            assert_eq!(
                normalize_host(legacy),
                Err(DenyReason::InvalidHost),
                "{legacy}"
            );
        }
        assert_eq!(normalize_host_cow("1.2.3.com").unwrap().1, HostKind::Name);
    }

    #[test]
    fn patterns() {
        assert!(m("github.com", "GITHUB.com."));
        assert!(!m("github.com", "api.github.com"));
        assert!(m("*.github.com", "api.github.com"));
        assert!(m("*.github.com", "v1.api.github.com"));
        assert!(!m("*.github.com", "github.com"));
        assert!(m("api.*.com", "api.github.com"));
        assert!(!m("api.*.com", "api.v1.github.com"));
        assert!(!m("api.*.com", "api.com"));
        assert!(m("*.*.com", "api.example.com"));
        assert!(m("*.*.com", "api.v1.github.com"));
        assert!(!m("*.*.com", "example.com"));
        assert!(m("*", "anything.example"));
        assert!(m("*", "10.0.0.1"));
        assert!(m("169.254.169.254", "169.254.169.254"));
    }

    #[test]
    fn wildcards_never_match_addresses() {
        let p = pat("*.example");
        assert!(!p.matches("1.2.3.4", HostKind::Ipv4));
        assert!(DomainPattern::parse("*.0.0.1").is_err());
        assert!(DomainPattern::parse("10.*.0.1").is_err());
    }

    #[test]
    fn pattern_errors() {
        use ParseErrorKind as K;
        assert_eq!(
            DomainPattern::parse("github.*"),
            Err(K::DomainEndsInWildcard)
        );
        assert_eq!(DomainPattern::parse("github.com:8080"), Err(K::DomainPort));
        assert_eq!(
            DomainPattern::parse("api-*.x.com"),
            Err(K::DomainPartialWildcard)
        );
        assert!(matches!(
            DomainPattern::parse("bücher.de"),
            Err(K::DomainNonAscii(_))
        ));
        assert!(matches!(
            DomainPattern::parse("-a.com"),
            Err(K::DomainLabel { .. })
        ));
        assert!(matches!(
            DomainPattern::parse("a..com"),
            Err(K::DomainLabel { .. })
        ));
        assert!(matches!(
            DomainPattern::parse("127.1"),
            Err(K::DomainIpv4(_))
        ));
        assert_eq!(DomainPattern::parse("*."), Err(K::DomainEndsInWildcard));
    }

    #[test]
    fn suffix_key_and_display() {
        let p = pat("API.*.GitHub.com.");
        assert_eq!(p.to_string(), "api.*.github.com");
        match p {
            DomainPattern::Wild { suffix, .. } => assert_eq!(suffix, "github.com"),
            other => panic!("{other:?}"),
        }
    }
}
