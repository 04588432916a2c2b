//! What is evaluated (a [`Request`]) and what comes back (a [`Decision`]).

use std::fmt;

use thiserror::Error;

/// One HTTP request as the sidecar saw it after TLS termination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request method as sent; compared after ASCII-uppercasing.
    pub method: &'a str,
    /// The host without a port (`Host` header or `:authority`, port stripped).
    pub host: &'a str,
    /// The request target in origin form; a query string or fragment is
    /// ignored.
    pub path: &'a str,
    /// Destination port, when known. Rules with a `port=` key never match a
    /// request whose port is `None`.
    pub port: Option<u16>,
}

/// The outcome of evaluating a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the rule at this index of [`crate::Policy::rules`] (the
    /// lowest index among the rules that match).
    Allow {
        rule: usize,
    },
    Deny(Denial),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The index of the allowing rule, if allowed.
    pub fn allowed_by(&self) -> Option<usize> {
        match self {
            Decision::Allow { rule } => Some(*rule),
            Decision::Deny(_) => None,
        }
    }

    /// The denial, if denied.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny(denial) => Some(denial),
        }
    }
}

/// Why a request was denied, and the rule that would allow it when one can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    /// Rule text that would allow the request; it always parses. `None` when
    /// no rule can allow the request (bad host, unsafe path).
    pub suggestion: Option<String>,
}

impl Denial {
    pub(crate) fn new(reason: DenyReason, suggestion: Option<String>) -> Denial {
        Denial { reason, suggestion }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(rule) = &self.suggestion {
            write!(f, "; to allow it add the rule {rule:?}")?;
        }
        Ok(())
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum DenyReason {
    #[error("no allow rule matches the request")]
    NoRuleMatched,
    #[error("the host is neither a valid hostname nor a dotted-quad IPv4 address")]
    InvalidHost,
    #[error("the path is ambiguous (encoded '/', backslash, NUL, '//' or '..' above the root), so no path rule can match it")]
    UnsafePath,
    #[error("the host is not ASCII: internationalised names must be sent as punycode (xn--...)")]
    NonAsciiHost,
}
