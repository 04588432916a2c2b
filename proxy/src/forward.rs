//! Forwarding an allowed request upstream: hop-by-hop headers stripped,
//! both bodies streamed, Upgrade (WebSocket) spliced on 101.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

use crate::audit::{AuditLog, Event};
use crate::body::{AuditedBody, Coalesced, WatchedBody};
use crate::conn::Slot;
use crate::context::ProxyContext;
use crate::guard::GUARD_HEADER;
use crate::response::{self, ProxyBody};
use crate::service::{Scope, Target};
use crate::upstream::{failure_reason, Route};

/// Whether an HTTP/1.1 request asks to switch to WebSocket, the one
/// protocol the proxy lets a connection switch to. After a 101 the
/// connection is a byte pipe the rules no longer see; another protocol
/// (`h2c` above all) would carry requests through it unjudged. A request
/// asking for anything else is forwarded as an ordinary request, without
/// its Upgrade (a hop-by-hop header), and its connection then closes.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11 && has_token(req.headers(), "upgrade") && upgrades_to_websocket(req.headers())
}

/// Every protocol the Upgrade header names is `websocket` (with or without
/// a `/version`), and there is at least one.
fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    let mut named = false;
    for value in headers.get_all(UPGRADE) {
        let Ok(value) = value.to_str() else { return false };
        for protocol in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let name = protocol.split('/').next().unwrap_or_default().trim();
            if !name.eq_ignore_ascii_case("websocket") {
                return false;
            }
            named = true;
        }
    }
    named
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Whether `name` is hop-by-hop whatever Connection says (or reserved).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "keep-alive"
            | "proxy-connection"
            | "upgrade"
            | GUARD_HEADER
    )
}

/// Removes hop-by-hop headers (those named by Connection too). With
/// `upgrade`, keeps Upgrade and sets `connection: upgrade`. One pass over
/// the names finds what to remove (usually nothing, or Connection alone),
/// instead of a lookup per possible name.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let keep = |name: &HeaderName| upgrade && name == UPGRADE;
    let mut doomed: Vec<HeaderName> = headers.keys().filter(|n| is_hop_by_hop(n) && !keep(n)).cloned().collect();
    if headers.contains_key(CONNECTION) {
        let named = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !keep(n) && !doomed.contains(n));
        let named: Vec<HeaderName> = named.collect();
        doomed.extend(named);
    }
    for name in doomed {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether the allowing rule names exactly this IP literal as its domain.
fn rule_names_ip(rule_text: &str, host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
        && rule_text.split_ascii_whitespace().any(|kv| kv.strip_prefix("domain=") == Some(host))
}

/// Sends the allowed request upstream and streams the answer back.
pub async fn forward(ctx: Arc<ProxyContext>, scope: &Scope, mut req: Request<Incoming>, t: Target, rule: usize) -> Response<ProxyBody> {
    let rule_text = ctx.rule_texts.get(rule).cloned().unwrap_or_default();
    let upgrade = scope.http1 && is_upgrade(&req);
    let route = Route { h1_only: upgrade, explicit_ip: rule_names_ip(&rule_text, &t.host) };
    let client_upgrade: Option<OnUpgrade> = upgrade.then(|| hyper::upgrade::on(&mut req));
    let method = req.method().clone();
    let (mut parts, body) = req.into_parts();
    // The rules compare methods uppercased (`get` is judged as `GET`):
    // the origin gets the method they judged.
    if parts.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        if let Ok(m) = hyper::Method::from_bytes(parts.method.as_str().to_ascii_uppercase().as_bytes()) {
            parts.method = m;
        }
    }
    let failed = Arc::new(AtomicBool::new(false));
    // The path the rules judged: dot-segments resolved (policy's
    // `forwarded_path`), so the origin cannot read `..` differently.
    let resolved = boundary_policy::forwarded_path(&t.path);
    let path = resolved.as_deref().unwrap_or(&t.path);
    let uri = Uri::builder().scheme(t.scheme).authority(t.authority()).path_and_query(path).build();
    let mut event = Event {
        kind: scope.kind(),
        allowed: true,
        method: Some(method.to_string()),
        url: Some(t.url),
        host: Some(t.host),
        rule: Some(rule_text),
        ..Event::default()
    };
    let Ok(uri) = uri else {
        event.status = Some(400);
        event.reason = Some("request target cannot be forwarded".into());
        ctx.audit.record(event);
        return response::bad_request("request target cannot be forwarded");
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.extensions = Default::default();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(HOST);
    // From here the request may reach the origin while this future waits,
    // and hyper drops the future if the client goes away meanwhile.
    let unanswered = Unanswered { audit: &ctx.audit, event: Some(event) };
    // A burst to an HTTPS origin makes one handshake, not one per request
    // (`crate::coalesce`); the probe is held until the answer is in.
    let probe = match (t.scheme, parts.uri.authority()) {
        ("https", Some(authority)) => ctx.upstream.before_https_request(route, authority.as_str()).await,
        _ => None,
    };
    let upstream_req = Request::from_parts(parts, Coalesced::new(WatchedBody::new(body, failed.clone())).boxed_unsync());

    let sent = tokio::time::timeout(ctx.limits.response_head_timeout, ctx.upstream.client(route).request(upstream_req)).await;
    drop(probe);
    let mut event = unanswered.hand_on();
    let mut resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) if failed.load(Ordering::Relaxed) => {
            log::debug!("client request body failed: {e}");
            return fail(&ctx, event, 400, "malformed request body", response::bad_request("malformed request body"));
        }
        Ok(Err(e)) => {
            let reason = failure_reason(&e);
            let resp = response::bad_gateway(method.as_str(), event.url.as_deref().unwrap_or_default(), &reason);
            return fail(&ctx, event, 502, &format!("upstream failed: {reason}"), resp);
        }
        Err(_) => {
            let reason = "upstream sent no response in time";
            let resp = response::bad_gateway(method.as_str(), event.url.as_deref().unwrap_or_default(), reason);
            return fail(&ctx, event, 502, reason, resp);
        }
    };
    event.status = Some(resp.status().as_u16());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(splice(ctx.clone(), client_upgrade, upstream_upgrade, event, scope.slot.clone()));
            let (mut parts, _) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, true);
            return Response::from_parts(parts, response::empty());
        }
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    parts.version = Version::HTTP_11;
    let body = AuditedBody::new(Coalesced::new(body).map_err(|e| Box::new(e) as _).boxed_unsync(), ctx.audit.clone(), event);
    Response::from_parts(parts, body.boxed_unsync())
}

/// The audit record of an allowed request on its way upstream, until it is
/// handed on (to a failure answer, the response body or the upgraded
/// connection). When hyper drops the service future before the answer
/// comes (the client closed its connection or reset its HTTP/2 stream),
/// this goes with it and writes the record: the request may well have
/// reached the origin.
struct Unanswered<'a> {
    audit: &'a AuditLog,
    event: Option<Event>,
}

impl Unanswered<'_> {
    fn hand_on(mut self) -> Event {
        self.event.take().unwrap_or_default()
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(mut event) = self.event.take() {
            event.reason = Some(ABANDONED.to_owned());
            self.audit.record(event);
        }
    }
}

/// Reason recorded for an allowed request whose client went away before
/// the upstream's answer came.
pub const ABANDONED: &str = "client went away before the response";

fn fail(ctx: &ProxyContext, mut event: Event, status: u16, reason: &str, resp: Response<ProxyBody>) -> Response<ProxyBody> {
    event.status = Some(status);
    event.reason = Some(reason.to_owned());
    ctx.audit.record(event);
    resp
}

/// Joins the two upgraded streams until either side closes, holding the
/// client connection's slot meanwhile.
async fn splice(ctx: Arc<ProxyContext>, client: OnUpgrade, upstream: OnUpgrade, mut event: Event, _slot: Slot) {
    match tokio::try_join!(client, upstream) {
        Ok((c, u)) => {
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            match tokio::io::copy_bidirectional(&mut c, &mut u).await {
                Ok((_up, down)) => event.bytes = Some(down),
                Err(e) => {
                    log::debug!("upgraded connection ended: {e}");
                    event.reason = Some("upgraded connection ended with an error".into());
                }
            }
        }
        Err(e) => {
            log::debug!("upgrade failed: {e}");
            event.reason = Some("upgrade failed".into());
        }
    }
    ctx.audit.record(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::TE;

    #[test]
    fn hop_by_hop_fixed_names_and_none() {
        use hyper::header::{PROXY_AUTHORIZATION, TRANSFER_ENCODING};
        let mut h = HeaderMap::new();
        h.insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(GUARD_HEADER, HeaderValue::from_static("x"));
        h.append("x-keep", HeaderValue::from_static("1"));
        h.append("x-keep", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get_all("x-keep").iter().count(), 2);
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut up = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        strip_hop_by_hop(&mut up, true);
        assert_eq!(up[UPGRADE], "websocket");
        assert_eq!(up[CONNECTION], "upgrade");
    }

    #[test]
    fn explicit_ip_rule() {
        assert!(rule_names_ip("method=GET domain=169.254.169.254", "169.254.169.254"));
        assert!(!rule_names_ip("domain=*", "169.254.169.254"));
        assert!(!rule_names_ip("domain=example.com", "example.com"));
    }
}
