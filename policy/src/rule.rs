//! One allow rule: parsing its text, printing it back, matching a request.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::decision::Request;
use crate::error::{ParseError, ParseErrorKind};
use crate::host::{normalize_host_cow, DomainPattern, HostKind};
use crate::method::Methods;
use crate::path::{normalize_path_cow, PathPattern, PathPatterns, PathProblem};
use crate::port::Ports;

/// A parsed allow rule. A request matches when it matches every key the
/// rule names; an absent key matches anything.
///
/// `Display` gives canonical rule text (keys in the order method, domain,
/// path, port; methods uppercase and sorted; hosts lowercase; paths
/// re-encoded) that parses back to an equal `Rule`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    method: Option<Methods>,
    domain: Option<DomainPattern>,
    path: Option<PathPatterns>,
    port: Option<Ports>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Method,
    Domain,
    Path,
    Port,
}

impl Key {
    fn parse(text: &str) -> Option<Key> {
        match text {
            "method" => Some(Key::Method),
            "domain" => Some(Key::Domain),
            "path" => Some(Key::Path),
            "port" => Some(Key::Port),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Key::Method => "method",
            Key::Domain => "domain",
            Key::Path => "path",
            Key::Port => "port",
        }
    }
}

type Failure = (usize, ParseErrorKind);

/// The `key=value` fields of a rule with their byte offsets. Separators are
/// space, tab and CR (all one byte, so offsets add up).
fn fields(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut pos = 0;
    text.split([' ', '\t', '\r']).filter_map(move |field| {
        let start = pos;
        pos += field.len() + 1;
        (!field.is_empty()).then_some((start, field))
    })
}

/// The comma-separated items of a value with their byte offsets.
/// A lone `*` allows every value; beside other items it is refused, since
/// the list would read as narrower than it is.
fn items(key: Key, value: &str, start: usize) -> Result<Vec<(usize, &str)>, Failure> {
    let mut pos = start;
    let mut out = Vec::new();
    for item in value.split(',') {
        if item.is_empty() {
            return Err((pos, ParseErrorKind::EmptyListItem(key.name())));
        }
        out.push((pos, item));
        pos += item.len() + 1;
    }
    if out.len() > 1 {
        if let Some((at, _)) = out.iter().find(|(_, item)| *item == "*") {
            return Err((*at, ParseErrorKind::WildcardInList(key.name())));
        }
    }
    Ok(out)
}

/// The first whitespace character other than the separators (space, tab,
/// CR; LF and `;` end a rule), with its byte offset: a no-break space
/// (U+00A0) or an ideographic space pasted into a rule would otherwise be
/// read as part of a value, and `path=/a\u{a0}domain=x` would be one path
/// and no domain.
fn stray_space(text: &str) -> Option<(usize, char)> {
    text.char_indices()
        .find(|&(_, c)| c.is_whitespace() && !matches!(c, ' ' | '\t' | '\r' | '\n'))
}

fn parse_rule(text: &str) -> Result<Rule, Failure> {
    if let Some(at) = text.find([';', '\n']) {
        return Err((at, ParseErrorKind::RuleSeparator));
    }
    let mut rule = Rule {
        method: None,
        domain: None,
        path: None,
        port: None,
    };
    if let Some((at, c)) = stray_space(text) {
        return Err((at, ParseErrorKind::StraySpace(c)));
    }
    let mut named_any = false;
    for (start, field) in fields(text) {
        named_any = true;
        let Some((key_text, value)) = field.split_once('=') else {
            return Err((start, ParseErrorKind::MissingEquals(field.to_owned())));
        };
        let key = Key::parse(key_text)
            .ok_or_else(|| (start, ParseErrorKind::UnknownKey(key_text.to_owned())))?;
        let value_start = start + key_text.len() + 1;
        if value.is_empty() {
            return Err((value_start, ParseErrorKind::EmptyValue(key.name())));
        }
        if rule.names(key) {
            return Err((start, ParseErrorKind::DuplicateKey(key.name())));
        }
        rule.set(key, value, value_start)?;
    }
    if !named_any {
        return Err((0, ParseErrorKind::EmptyRule));
    }
    Ok(rule)
}

impl Rule {
    fn names(&self, key: Key) -> bool {
        match key {
            Key::Method => self.method.is_some(),
            Key::Domain => self.domain.is_some(),
            Key::Path => self.path.is_some(),
            Key::Port => self.port.is_some(),
        }
    }

    fn set(&mut self, key: Key, value: &str, start: usize) -> Result<(), Failure> {
        match key {
            Key::Domain => {
                self.domain = Some(DomainPattern::parse(value).map_err(|k| (start, k))?);
            }
            Key::Method => {
                let list = items(key, value, start)?;
                let texts: Vec<&str> = list.iter().map(|(_, t)| *t).collect();
                let methods = Methods::from_items(&texts)
                    .map_err(|i| (list[i].0, ParseErrorKind::MethodToken(list[i].1.to_owned())))?;
                self.method = Some(methods);
            }
            Key::Port => {
                let list = items(key, value, start)?;
                let texts: Vec<&str> = list.iter().map(|(_, t)| *t).collect();
                let ports = Ports::from_items(&texts)
                    .map_err(|i| (list[i].0, ParseErrorKind::Port(list[i].1.to_owned())))?;
                self.port = Some(ports);
            }
            Key::Path => {
                let parsed = items(key, value, start)?
                    .into_iter()
                    .map(|(at, item)| {
                        PathPattern::parse(item).map_err(|p| (at, ParseErrorKind::Path(p)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.path = Some(PathPatterns::from_items(parsed));
            }
        }
        Ok(())
    }

    pub(crate) fn domain_pattern(&self) -> Option<&DomainPattern> {
        self.domain.as_ref()
    }

    /// Whether the rule has a `port=` key (other than `port=*`).
    pub fn restricts_port(&self) -> bool {
        matches!(self.port, Some(Ports::List(_)))
    }

    /// Whether the rule matches this request on its own. [`crate::Policy`]
    /// is the fast way to evaluate many rules; this normalises on each call.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        let Ok((host, kind)) = normalize_host_cow(req.host) else {
            return false;
        };
        let mut target = Target::new(req, &host, kind);
        self.matches_target(&mut target)
    }

    /// Whether the rule matches the target; `target.host` is normalised.
    pub(crate) fn matches_target(&self, target: &mut Target<'_>) -> bool {
        if self
            .method
            .as_ref()
            .is_some_and(|m| !m.matches(target.method))
        {
            return false;
        }
        if self.port.as_ref().is_some_and(|p| !p.matches(target.port)) {
            return false;
        }
        if self
            .domain
            .as_ref()
            .is_some_and(|d| !d.matches(target.host, target.kind))
        {
            return false;
        }
        match &self.path {
            None | Some(PathPatterns::Any) => true,
            Some(PathPatterns::List(patterns)) => match target.path.get() {
                Ok(path) => patterns.iter().any(|p| p.matches(path)),
                Err(_) => {
                    target.path_unsafe = true;
                    false
                }
            },
        }
    }
}

/// A request with its host normalised and its path normalised on demand
/// (only a rule with a `path=` list needs it).
pub(crate) struct Target<'r> {
    pub(crate) method: &'r str,
    pub(crate) host: &'r str,
    pub(crate) kind: HostKind,
    pub(crate) port: Option<u16>,
    pub(crate) path: LazyPath<'r>,
    /// Set when a rule could not be checked because the path is unsafe.
    pub(crate) path_unsafe: bool,
}

impl<'r> Target<'r> {
    pub(crate) fn new(req: &Request<'r>, host: &'r str, kind: HostKind) -> Target<'r> {
        Target {
            method: req.method,
            host,
            kind,
            port: req.port,
            path: LazyPath {
                raw: req.path,
                normal: None,
            },
            path_unsafe: false,
        }
    }
}

/// A request path, normalised the first time it is needed.
pub(crate) struct LazyPath<'r> {
    raw: &'r str,
    normal: Option<Result<Cow<'r, str>, PathProblem>>,
}

impl LazyPath<'_> {
    pub(crate) fn get(&mut self) -> Result<&str, PathProblem> {
        let raw = self.raw;
        match self.normal.get_or_insert_with(|| normalize_path_cow(raw)) {
            Ok(path) => Ok(path),
            Err(problem) => Err(*problem),
        }
    }
}

impl FromStr for Rule {
    type Err = ParseError;

    /// Parse one rule. `;` and newlines separate rules, so they are refused
    /// here; use [`parse_rules`] for text holding several.
    fn from_str(text: &str) -> Result<Rule, ParseError> {
        parse_rule(text).map_err(|(position, kind)| ParseError::new(text, position, kind))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(m) = &self.method {
            write!(f, "{sep}method={m}")?;
            sep = " ";
        }
        if let Some(d) = &self.domain {
            write!(f, "{sep}domain={d}")?;
            sep = " ";
        }
        if let Some(p) = &self.path {
            write!(f, "{sep}path={p}")?;
            sep = " ";
        }
        if let Some(p) = &self.port {
            write!(f, "{sep}port={p}")?;
        }
        Ok(())
    }
}

/// Parse text holding any number of rules separated by newlines or `;`.
/// Blank entries are skipped; each rule is trimmed of surrounding
/// whitespace, and an error names that trimmed rule and the position in it.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, ParseError> {
    text.split(['\n', ';'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(Rule::from_str)
        .collect()
}
