//! Per-request handling: work out the request's real target, check it
//! against the connection (SNI / CONNECT target), decide with the policy,
//! then deny or forward. Every request gets exactly one audit record.

use std::convert::Infallible;
use std::sync::Arc;

use boundary_policy::{Decision, DenyReason};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response};

use crate::audit::Event;
use crate::context::ProxyContext;
use crate::guard::GUARD_HEADER;
use crate::response::{self, DenyInfo, ProxyBody};
use crate::{forward, tunnel};

/// What a connection fixes for every request on it.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Requests arrived inside intercepted TLS.
    pub tls: bool,
    /// Each request's host must equal this (the SNI or the CONNECT target).
    pub bound_host: Option<String>,
    /// Denial reason when it does not.
    pub bound_reason: &'static str,
    /// Destination port when the request names none (0: scheme default).
    pub port: u16,
    /// The container's own connection (CONNECT is only allowed here).
    pub outer: bool,
    /// Requests are HTTP/1 behind the framing guard (Upgrade possible).
    pub http1: bool,
    /// The connection's place among the connection limit, for a tunnel or
    /// WebSocket to hold once the connection is upgraded.
    pub slot: crate::conn::Slot,
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: &'static str,
    /// Lowercase, no trailing dot, no brackets.
    pub host: String,
    pub port: u16,
    /// Path and query as sent (`/` when absent).
    pub path: String,
    /// Full URL for messages and the audit log.
    pub url: String,
}

impl Target {
    /// `host[:port]` as used upstream (port left out when default).
    pub fn authority(&self) -> String {
        let mut a = String::with_capacity(self.host.len() + 8);
        self.push_authority(&mut a);
        a
    }

    fn push_authority(&self, out: &mut String) {
        let v6 = self.host.contains(':');
        if v6 {
            out.push('[');
        }
        out.push_str(&self.host);
        if v6 {
            out.push(']');
        }
        if self.port != default_port(self.scheme) {
            out.push(':');
            push_decimal(out, self.port);
        }
    }

    /// `scheme://authority/path`.
    fn make_url(&self) -> String {
        let mut url = String::with_capacity(self.scheme.len() + 3 + self.host.len() + 8 + self.path.len());
        url.push_str(self.scheme);
        url.push_str("://");
        self.push_authority(&mut url);
        url.push_str(&self.path);
        url
    }
}

/// Appends `n` in decimal (without the formatting machinery).
fn push_decimal(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// The hyper service body for one request.
pub async fn handle(ctx: Arc<ProxyContext>, scope: Arc<Scope>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    if let Some(reason) = req.headers().get(GUARD_HEADER) {
        let reason = format!("malformed request: {}", reason.to_str().unwrap_or("invalid"));
        ctx.audit.record(Event { status: Some(400), ..Event::deny(scope.kind(), reason.clone()) });
        return Ok(response::bad_request(&reason));
    }
    // The framing guard stops following an HTTP/1 connection at a CONNECT
    // and at any HTTP/1.1 request with an Upgrade header, whatever
    // Connection says (`guard::framing`). Unless the connection then does
    // switch (2xx to CONNECT, 101), it must carry no further request, which
    // would pass unchecked: the answer closes it.
    let connect = req.method() == Method::CONNECT;
    let guard_stopped = scope.http1 && (connect || (req.version() == hyper::Version::HTTP_11 && req.headers().contains_key(hyper::header::UPGRADE)));
    let mut resp = if connect {
        tunnel::handle_connect(ctx, &scope, req)
    } else {
        request(ctx, &scope, req).await
    };
    let switched = if connect { resp.status().is_success() } else { resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS };
    if guard_stopped && !switched {
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

/// Any request but CONNECT: its target, then the decision.
async fn request(ctx: Arc<ProxyContext>, scope: &Scope, req: Request<Incoming>) -> Response<ProxyBody> {
    match target(&req, scope) {
        Ok(t) => decide_and_forward(ctx, scope, req, t).await,
        Err(reason) => {
            let reason = format!("bad request target: {reason}");
            let mut ev = Event::deny(scope.kind(), reason.clone());
            ev.method = Some(req.method().to_string());
            ev.status = Some(400);
            ctx.audit.record(ev);
            response::bad_request(&reason)
        }
    }
}

async fn decide_and_forward(ctx: Arc<ProxyContext>, scope: &Scope, req: Request<Incoming>, t: Target) -> Response<ProxyBody> {
    let method = req.method().as_str();
    if let Some(bound) = &scope.bound_host {
        if *bound != t.host {
            return deny(&ctx, scope, &req, &t, scope.bound_reason, None);
        }
    }
    if !ctx.upstream_enabled {
        return deny(&ctx, scope, &req, &t, "container has no upstream network", None);
    }
    let preq = boundary_policy::Request { method, host: &t.host, path: &t.path, port: Some(t.port) };
    let sets = ctx.narrowing.current();
    let (decision, narrowed_by) = sets.evaluate(&ctx.policy, &preq);
    match decision {
        Decision::Allow { rule } => {
            if let Some(refused) = judge_overrides(&ctx, scope, &req, &t, &sets) {
                return refused;
            }
            forward::forward(ctx, scope, req, t, rule).await
        }
        Decision::Deny(denial) => {
            let reason = deny_reason(denial.reason, narrowed_by);
            deny_narrowed(&ctx, scope, &req, &t, &reason, denial.suggestion.as_deref(), narrowed_by)
        }
    }
}

fn deny_reason(reason: DenyReason, narrowed_by: Option<&str>) -> String {
    let reason = match reason {
        DenyReason::NoRuleMatched => "no rule matched".to_owned(),
        other => other.to_string(),
    };
    match narrowed_by {
        Some(owner) => crate::narrowing::narrowed_reason(&reason, owner),
        None => reason,
    }
}

/// Headers by which origins let a request stand for another method
/// (method-override middleware: Express, ASP.NET, Google's APIs)...
static METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];
/// ... or another path (IIS URL Rewrite, frameworks behind it).
static PATH_OVERRIDES: [HeaderName; 2] = [HeaderName::from_static("x-original-url"), HeaderName::from_static("x-rewrite-url")];

/// The query parameter by which PHP frameworks (Laravel, and Symfony with
/// its parameter override on) and Express's `methodOverride('_method')`
/// let a request stand for another method.
const METHOD_PARAMETER: &str = "_method";

/// Whether query key `key` (decoded) is [`METHOD_PARAMETER`] as PHP reads
/// keys: leading spaces dropped, and a space, `.` or `[` in the name made
/// `_` (`.method` and ` method` reach a PHP origin as `_method`).
fn is_method_parameter(key: &str) -> bool {
    let key = key.trim_start_matches(' ');
    key.len() == METHOD_PARAMETER.len()
        && key.chars().map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c }).eq(METHOD_PARAMETER.chars())
}

/// An allowed request that names another method or path in an override
/// header, or another method in a `_method` query parameter, is judged
/// again as each combination it may stand for, at the same host: an origin
/// that honours the override serves that one, so every one must be allowed
/// too. Returns the refusal, if any.
fn judge_overrides(
    ctx: &ProxyContext,
    scope: &Scope,
    req: &Request<Incoming>,
    t: &Target,
    sets: &crate::narrowing::NarrowSets,
) -> Option<Response<ProxyBody>> {
    let headers = req.headers();
    let mut methods: Vec<(Option<String>, String)> = Vec::new();
    let mut paths: Vec<(Option<String>, String)> = Vec::new();
    for (names, out) in [(&METHOD_OVERRIDES[..], &mut methods), (&PATH_OVERRIDES[..], &mut paths)] {
        for name in names {
            for value in headers.get_all(name) {
                let Ok(v) = value.to_str() else {
                    return Some(deny(ctx, scope, req, t, &format!("the {name} header is not ASCII"), None));
                };
                out.push((Some(format!("{name} header")), v.trim().to_owned()));
            }
        }
    }
    if let Some(query) = req.uri().query().filter(|q| q.contains("method") || q.contains('%')) {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if is_method_parameter(&key) {
                methods.push((Some(format!("{METHOD_PARAMETER} query parameter")), value.trim().to_owned()));
            }
        }
    }
    if methods.is_empty() && paths.is_empty() {
        return None;
    }
    for (_, m) in &mut methods {
        m.make_ascii_uppercase();
    }
    if let Some((name, p)) = paths.iter().find(|(_, p)| !p.starts_with('/')) {
        let reason = format!("the {} {p:?} is not a path", name.as_deref().unwrap_or_default());
        return Some(deny(ctx, scope, req, t, &reason, None));
    }
    methods.insert(0, (None, req.method().as_str().to_owned()));
    paths.insert(0, (None, t.path.clone()));
    for (mh, m) in &methods {
        for (ph, p) in &paths {
            if mh.is_none() && ph.is_none() {
                continue;
            }
            let preq = boundary_policy::Request { method: m, host: &t.host, path: p, port: Some(t.port) };
            if let (Decision::Deny(denial), narrowed_by) = sets.evaluate(&ctx.policy, &preq) {
                let via: Vec<&str> = [mh, ph].into_iter().flatten().map(String::as_str).collect();
                let reason = format!(
                    "the {} make{} it {m} {p} to an origin that honours {}: {}",
                    via.join(" and the "),
                    if via.len() > 1 { "" } else { "s" },
                    if via.len() > 1 { "them" } else { "it" },
                    deny_reason(denial.reason, narrowed_by)
                );
                return Some(deny_narrowed(ctx, scope, req, t, &reason, denial.suggestion.as_deref(), narrowed_by));
            }
        }
    }
    None
}

fn deny(ctx: &ProxyContext, scope: &Scope, req: &Request<Incoming>, t: &Target, reason: &str, rule: Option<&str>) -> Response<ProxyBody> {
    deny_narrowed(ctx, scope, req, t, reason, rule, None)
}

/// [`deny`] of a request that the rules of container `narrowed_by`, which
/// narrow the jail's policy, refused: the rule that would allow it belongs
/// in that container's rules, not the jail's.
fn deny_narrowed(
    ctx: &ProxyContext,
    scope: &Scope,
    req: &Request<Incoming>,
    t: &Target,
    reason: &str,
    rule: Option<&str>,
    narrowed_by: Option<&str>,
) -> Response<ProxyBody> {
    let method = req.method().as_str();
    let rules_in = crate::narrowing::rules_in(narrowed_by, &ctx.rules_in);
    let info = DenyInfo { method, url: &t.url, host: &t.host, reason, allow_rule: rule, rules_in: &rules_in };
    let resp = response::deny(&info, response::wants_json(req.headers()));
    ctx.audit.record(Event {
        method: Some(method.to_owned()),
        url: Some(t.url.clone()),
        host: Some(t.host.clone()),
        status: Some(403),
        ..Event::deny(scope.kind(), reason)
    });
    resp
}

/// The request's target from its URI authority (absolute form or
/// `:authority`) or its single Host header; the two must agree.
pub fn target(req: &Request<Incoming>, scope: &Scope) -> Result<Target, &'static str> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host_hdr = hosts.next();
    if hosts.next().is_some() {
        return Err("several Host headers");
    }
    let host_hdr = host_hdr.map(|h| h.to_str().map_err(|_| "Host header is not ASCII")).transpose()?;
    let uri = req.uri();
    let (authority, absolute_scheme): (Authority, Option<&'static str>) = match uri.authority() {
        Some(auth) => {
            let scheme = match uri.scheme_str() {
                None => None,
                Some(s) if s.eq_ignore_ascii_case("http") => Some("http"),
                Some(s) if s.eq_ignore_ascii_case("https") => Some("https"),
                Some(_) => return Err("unsupported URI scheme"),
            };
            if let Some(h) = host_hdr {
                let h: Authority = h.parse().map_err(|_| "invalid Host header")?;
                let dp = default_port(scheme.unwrap_or(if scope.tls { "https" } else { "http" }));
                if !same_authority(&h, auth, dp) {
                    return Err("Host header does not match the request URI");
                }
            }
            (auth.clone(), scheme)
        }
        None => (host_hdr.ok_or("missing Host header")?.parse().map_err(|_| "invalid Host header")?, None),
    };
    if authority.as_str().contains('@') {
        return Err("user information in the authority");
    }
    // Brackets hold an IPv6 literal and nothing else (RFC 3986): `[name]`
    // would otherwise be judged and sent as `name`, a spelling no client
    // means.
    if let Some(inner) = authority.host().strip_prefix('[') {
        if inner.strip_suffix(']').is_none_or(|a| a.parse::<std::net::Ipv6Addr>().is_err()) {
            return Err("brackets around a host that is not an IPv6 address");
        }
    }
    let scheme = if scope.tls { "https" } else { absolute_scheme.unwrap_or("http") };
    let host = normal_host(authority.host());
    if host.is_empty() {
        return Err("empty host");
    }
    let port = match authority.port_u16() {
        Some(p) => p,
        None if absolute_scheme.is_some() && !scope.tls => default_port(scheme),
        None if scope.port != 0 => scope.port,
        None => default_port(scheme),
    };
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path = if path.is_empty() { "/" } else { path };
    let mut t = Target { scheme, host, port, path: path.to_owned(), url: String::new() };
    t.url = t.make_url();
    Ok(t)
}

/// Lowercase, without IPv6 brackets or *one* trailing dot. Two stay (the
/// rules then see a host with an empty label and deny it): were both
/// taken here and again by the rules, `github.com..` would be judged as
/// `github.com` and sent upstream as `github.com.`.
pub fn normal_host(host: &str) -> String {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = if h.ends_with("..") { h } else { h.strip_suffix('.').unwrap_or(h) };
    h.to_ascii_lowercase()
}

fn same_authority(a: &Authority, b: &Authority, default_port: u16) -> bool {
    normal_host(a.host()) == normal_host(b.host())
        && a.port_u16().unwrap_or(default_port) == b.port_u16().unwrap_or(default_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_by_a_joiners_rules_names_it_and_not_a_pod() {
        let r = deny_reason(DenyReason::NoRuleMatched, Some("ctr-1"));
        assert!(r.starts_with("no rule matched in the rules of ctr-1, which narrow the policy of every container in this jail"), "{r}");
        assert!(!r.contains("pod"), "{r}");
        assert_eq!(deny_reason(DenyReason::NoRuleMatched, None), "no rule matched");
        use crate::narrowing::{rules_in, CONFIG_OWNER};
        assert!(rules_in(Some("ctr-1"), "BOUNDARY_ALLOW").starts_with("the rules of container ctr-1 (BOUNDARY_ALLOW"));
        assert_eq!(rules_in(Some(CONFIG_OWNER), "BOUNDARY_ALLOW"), "the narrowing_rules of the sidecar config");
        assert_eq!(rules_in(None, "the pod's annotation io.boundary.allow"), "the pod's annotation io.boundary.allow");
    }

    fn t(scheme: &'static str, host: &str, port: u16, path: &str) -> Target {
        let mut t = Target { scheme, host: host.into(), port, path: path.into(), url: String::new() };
        t.url = t.make_url();
        t
    }

    #[test]
    fn authority_and_url() {
        let a = t("https", "a.example", 443, "/x?y=1");
        assert_eq!((a.authority().as_str(), a.url.as_str()), ("a.example", "https://a.example/x?y=1"));
        let b = t("http", "a.example", 443, "/");
        assert_eq!((b.authority().as_str(), b.url.as_str()), ("a.example:443", "http://a.example:443/"));
        let c = t("http", "::1", 8080, "/");
        assert_eq!((c.authority().as_str(), c.url.as_str()), ("[::1]:8080", "http://[::1]:8080/"));
        for port in [0u16, 1, 9, 10, 99, 100, 65535] {
            let mut s = String::new();
            push_decimal(&mut s, port);
            assert_eq!(s, port.to_string());
        }
    }
}
