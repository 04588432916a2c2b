//! The error returned when rule text does not parse.

use std::fmt;

use thiserror::Error;

use crate::path::PathProblem;

/// A rule that does not parse: the rule's text, the byte position in that
/// text where the problem starts, and what is wrong.
///
/// Displays as `invalid rule "domain=github.*" at position 7: domain pattern
/// may not end in '*'`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid rule {rule:?} at position {position}: {kind}")]
pub struct ParseError {
    rule: String,
    position: usize,
    #[source]
    kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(rule: &str, position: usize, kind: ParseErrorKind) -> ParseError {
        ParseError {
            rule: rule.to_owned(),
            position,
            kind,
        }
    }

    /// The text of the one rule that failed (trimmed of surrounding
    /// whitespace when it came from [`crate::parse_rules`]).
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Byte offset into [`ParseError::rule`] where the problem starts.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What is wrong, as a typed value.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// What is wrong, as text (the part after the position in `Display`).
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// What is wrong with a rule. The position is kept by [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    #[error("empty rule: name at least one of method=, domain=, path=, port= (domain=* allows every host)")]
    EmptyRule,
    #[error(
        "';' and newlines separate rules: give one rule here, or parse the text with parse_rules"
    )]
    RuleSeparator,
    #[error("expected key=value, found {0:?}")]
    MissingEquals(String),
    #[error("unknown key {0:?}: the keys are method, domain, path and port")]
    UnknownKey(String),
    #[error("key {0:?} appears more than once")]
    DuplicateKey(&'static str),
    #[error("key {0:?} has an empty value")]
    EmptyValue(&'static str),
    #[error("empty item in the {0} list (stray comma)")]
    EmptyListItem(&'static str),
    #[error("{0:?} is not an HTTP method token")]
    MethodToken(String),
    #[error("'*' must stand alone in the {0} list: it already stands for every {0}")]
    WildcardInList(&'static str),
    #[error("{:?} (U+{:04X}) is not a separator: separate key=value fields with spaces or tabs", .0, u32::from(*.0))]
    StraySpace(char),
    #[error("domain pattern may not end in '*'")]
    DomainEndsInWildcard,
    #[error("domain pattern may not carry a port: use the port= key")]
    DomainPort,
    #[error("domain {0:?} is not ASCII: write internationalised names as punycode (xn--...)")]
    DomainNonAscii(String),
    #[error("'*' must be a whole domain label")]
    DomainPartialWildcard,
    #[error("domain label {label:?} {problem}")]
    DomainLabel {
        label: String,
        problem: LabelProblem,
    },
    #[error("domain pattern is longer than 253 characters")]
    DomainTooLong,
    #[error("{0:?} ends in a numeric label, so it must be an IPv4 address: four decimal octets 0-255, no leading zeros, no wildcards")]
    DomainIpv4(String),
    #[error("path pattern {0}")]
    Path(PathProblem),
    #[error("{0:?} is not a port number 1-65535 (or '*')")]
    Port(String),
}

/// Why a domain label is not valid hostname syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelProblem {
    Empty,
    TooLong,
    LeadingHyphen,
    TrailingHyphen,
    BadChar(char),
}

impl fmt::Display for LabelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelProblem::Empty => f.write_str("is empty (two dots in a row, or a leading dot)"),
            LabelProblem::TooLong => f.write_str("is longer than 63 characters"),
            LabelProblem::LeadingHyphen => f.write_str("starts with a hyphen"),
            LabelProblem::TrailingHyphen => f.write_str("ends with a hyphen"),
            LabelProblem::BadChar(c) => {
                write!(f, "holds {c:?}: labels are letters, digits and hyphens")
            }
        }
    }
}
