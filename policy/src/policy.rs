//! A set of rules indexed by host, and evaluation against it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::decision::{Decision, Denial, DenyReason, Request};
use crate::error::ParseError;
use crate::host::{normalize_host_cow, DomainPattern, HostKind};
use crate::rule::{parse_rules, Rule, Target};
use crate::suggest::narrow_rule;

/// An ordered list of allow rules, indexed so that evaluation looks only at
/// the rules whose domain could match the request's host.
///
/// Cloning is cheap (the rules sit behind an `Arc`). An empty policy denies
/// everything.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    inner: Arc<Index>,
}

/// Rule indices by the host they can match; every list is ascending.
#[derive(Debug, Default)]
struct Index {
    rules: Vec<Rule>,
    /// `domain=github.com`, keyed by the host.
    exact: HashMap<String, Vec<usize>>,
    /// Patterns with `*` labels, keyed by the literal labels after the last
    /// `*` (`*.github.com` and `api.*.github.com` under `github.com`).
    suffix: HashMap<String, Vec<usize>>,
    /// `domain=*` and rules without a `domain=` key.
    anywhere: Vec<usize>,
}

impl Index {
    fn build(rules: Vec<Rule>) -> Index {
        let mut index = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            match rule.domain_pattern() {
                None | Some(DomainPattern::Any) => index.anywhere.push(i),
                Some(DomainPattern::Exact(host)) => {
                    index.exact.entry(host.clone()).or_default().push(i);
                }
                Some(DomainPattern::Wild { suffix, .. }) => {
                    index.suffix.entry(suffix.clone()).or_default().push(i);
                }
            }
        }
        index.rules = rules;
        index
    }

    /// The lists of rules whose domain may match `host` (normalised): the
    /// exact entry, the entry of every proper label suffix (walked without
    /// allocating), and the rules that match any host.
    fn candidate_lists<'s>(
        &'s self,
        host: &'s str,
        kind: HostKind,
    ) -> impl Iterator<Item = &'s [usize]> + 's {
        let exact = self.exact.get(host).map(Vec::as_slice);
        let suffixes = host
            .match_indices('.')
            .filter(move |_| kind == HostKind::Name && !self.suffix.is_empty())
            .filter_map(move |(dot, _)| self.suffix.get(&host[dot + 1..]).map(Vec::as_slice));
        exact
            .into_iter()
            .chain(suffixes)
            .chain(std::iter::once(self.anywhere.as_slice()))
    }

    /// The lowest index among candidate rules that `accept` takes.
    fn first_match(
        &self,
        host: &str,
        kind: HostKind,
        mut accept: impl FnMut(&Rule) -> bool,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        for list in self.candidate_lists(host, kind) {
            for &i in list {
                if best.is_some_and(|b| i >= b) {
                    break;
                }
                if accept(&self.rules[i]) {
                    best = Some(i);
                    break;
                }
            }
        }
        best
    }

    /// Whether some rule names this host in its domain, and whether any such
    /// rule restricts the port.
    fn host_known(&self, host: &str, kind: HostKind) -> (bool, bool) {
        let (mut known, mut ports) = (false, false);
        for list in self.candidate_lists(host, kind) {
            for &i in list {
                let rule = &self.rules[i];
                if domain_matches(rule, host, kind) {
                    known = true;
                    ports |= rule.restricts_port();
                }
            }
        }
        (known, ports)
    }
}

fn domain_matches(rule: &Rule, host: &str, kind: HostKind) -> bool {
    rule.domain_pattern().is_none_or(|d| d.matches(host, kind))
}

impl Policy {
    /// Index `rules`; their order is kept and decides which rule an
    /// [`Decision::Allow`] names (the lowest index that matches).
    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy {
            inner: Arc::new(Index::build(rules)),
        }
    }

    /// Parse and index rule texts; each text may hold several rules
    /// separated by newlines or `;` (see [`parse_rules`]).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Policy, ParseError> {
        let mut rules = Vec::new();
        for text in texts {
            rules.extend(parse_rules(text)?);
        }
        Ok(Policy::new(rules))
    }

    /// The policy with no rules: every request is denied.
    pub fn deny_all() -> Policy {
        Policy::default()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    pub fn is_empty(&self) -> bool {
        self.inner.rules.is_empty()
    }

    /// The rules as canonical text, one per line; parses back to an equal
    /// policy.
    pub fn to_text(&self) -> String {
        let lines: Vec<String> = self.rules().iter().map(Rule::to_string).collect();
        lines.join("\n")
    }

    /// Allow when at least one rule matches every key it names. Allocates
    /// only to normalise a host or path that is not already normal, and to
    /// write the suggestion of a denial.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let (host, kind) = match normalize_host_cow(req.host) {
            Ok(normal) => normal,
            Err(reason) => return Decision::Deny(Denial::new(reason, None)),
        };
        let mut target = Target::new(req, &host, kind);
        if let Some(rule) = self
            .inner
            .first_match(&host, kind, |r| r.matches_target(&mut target))
        {
            return Decision::Allow { rule };
        }
        if target.path_unsafe {
            return Decision::Deny(Denial::new(DenyReason::UnsafePath, None));
        }
        let suggestion = self.suggest_normalised(req, &host, kind);
        Decision::Deny(Denial::new(DenyReason::NoRuleMatched, suggestion))
    }

    /// Could any request to this host be allowed (ignoring method, path and
    /// port)? Used by the DNS filter: `false` for a host that does not
    /// normalise.
    pub fn could_allow_host(&self, host: &str) -> bool {
        match normalize_host_cow(host) {
            Ok((host, kind)) => self
                .inner
                .first_match(&host, kind, |r| domain_matches(r, &host, kind))
                .is_some(),
            Err(_) => false,
        }
    }

    /// The rule that would allow this request, given what the policy already
    /// allows: `domain=h` for a host no rule names, otherwise the narrow
    /// form `method=M domain=h path=/p` (with `port=N` when a rule for the
    /// host restricts ports). `None` when the host does not normalise, or
    /// when a rule names the host and the path does not normalise.
    pub fn suggest_rule(&self, req: &Request<'_>) -> Option<String> {
        let (host, kind) = normalize_host_cow(req.host).ok()?;
        self.suggest_normalised(req, &host, kind)
    }

    fn suggest_normalised(&self, req: &Request<'_>, host: &str, kind: HostKind) -> Option<String> {
        match self.inner.host_known(host, kind) {
            (false, _) => Some(format!("domain={host}")),
            (true, ports) => narrow_rule(req, host, ports),
        }
    }
}

/// Evaluate against `base` narrowed by `narrowing`: allowed only when both
/// allow. An empty `narrowing` does not narrow (unlike an empty policy on
/// its own, which denies everything). An allow names the rule in `base`; a
/// denial by `narrowing` is `narrowing`'s, suggestion included: the base
/// already allows the request, so that rule, added to `narrowing`, would.
pub fn evaluate_narrowed(base: &Policy, narrowing: &Policy, req: &Request<'_>) -> Decision {
    let decision = base.evaluate(req);
    if narrowing.is_empty() || !decision.is_allowed() {
        return decision;
    }
    match narrowing.evaluate(req) {
        Decision::Allow { .. } => decision,
        denied @ Decision::Deny(_) => denied,
    }
}

/// [`Policy::could_allow_host`] for `base` narrowed by `narrowing` (an
/// empty `narrowing` does not narrow).
pub fn could_allow_host_narrowed(base: &Policy, narrowing: &Policy, host: &str) -> bool {
    base.could_allow_host(host) && (narrowing.is_empty() || narrowing.could_allow_host(host))
}
