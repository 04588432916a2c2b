//! `CONNECT host:port` from explicit-proxy clients: allowed only when a rule
//! could allow the host; the tunnel is then inspected like a new connection
//! whose TLS server name or Host must be the CONNECT host.

use std::sync::Arc;

use boundary_policy::suggest_rule;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::audit::Event;
use crate::context::ProxyContext;
use crate::response::{self, DenyInfo, ProxyBody};
use crate::service::{normal_host, Scope};

/// Answers a CONNECT request: 403, 400 or 200 and a spawned tunnel.
pub fn handle_connect(ctx: Arc<ProxyContext>, scope: &Scope, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let mut ev = Event { kind: "connect", method: Some("CONNECT".into()), ..Event::default() };
    let target = req.uri().authority().and_then(|a| Some((normal_host(a.host()), a.port_u16()?)));
    let Some((host, port)) = target.filter(|(h, _)| !h.is_empty()) else {
        ev.reason = Some("CONNECT target must be host:port".into());
        ev.status = Some(400);
        ctx.audit.record(ev);
        return response::bad_request("CONNECT target must be host:port");
    };
    let url = format!("{host}:{port}");
    ev.url = Some(url.clone());
    ev.host = Some(host.clone());
    let sets = ctx.narrowing.current();
    // (reason, the narrowing set's owner when a set and not the jail's
    // rules refused)
    let refusal: Option<(&str, Option<&str>)> = if !scope.outer {
        Some(("CONNECT inside an intercepted connection", None))
    } else if !ctx.upstream_enabled {
        Some(("container has no upstream network", None))
    } else if !sets.could_allow_host(&ctx.policy, &host) {
        Some(("no rule matched", sets.host_narrowed_by(&ctx.policy, &host)))
    } else if !policy_could_allow_port(&ctx.policy, &host, port) {
        Some(("no rule allows this port", None))
    } else if let Some(set) = sets.sets().iter().find(|s| !s.policy.is_empty() && !policy_could_allow_port(&s.policy, &host, port)) {
        Some(("no rule allows this port", Some(set.owner.as_str())))
    } else {
        None
    };
    if let Some((reason, narrowed_by)) = refusal {
        // A host the rules name on other ports: that host on this port (the
        // host alone would open every port).
        let suggestion = (scope.outer && ctx.upstream_enabled).then(|| {
            let rule = suggest_rule(&boundary_policy::Request { method: "GET", host: &host, path: "/", port: Some(port) });
            if reason == "no rule allows this port" && port != 0 { format!("{rule} port={port}") } else { rule }
        });
        let reason = narrowed_by.map_or_else(|| reason.to_owned(), |owner| crate::narrowing::narrowed_reason(reason, owner));
        let rules_in = crate::narrowing::rules_in(narrowed_by, &ctx.rules_in);
        let info = DenyInfo { method: "CONNECT", url: &url, host: &host, reason: &reason, allow_rule: suggestion.as_deref(), rules_in: &rules_in };
        let mut resp = response::deny(&info, response::wants_json(req.headers()));
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        ev.reason = Some(reason);
        ev.status = Some(403);
        ctx.audit.record(ev);
        return resp;
    }
    ev.allowed = true;
    ev.status = Some(200);
    ctx.audit.record(ev);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let slot = scope.slot.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => crate::conn::serve_tunnel(ctx, TokioIo::new(upgraded), host, port, slot).await,
            Err(e) => log::debug!("CONNECT tunnel to {host}:{port} was not established: {e}"),
        }
    });
    response::connect_established()
}

/// Whether some rule's `domain=` and `port=` keys allow `host:port` (its
/// method and path are judged per request inside the tunnel).
fn policy_could_allow_port(policy: &boundary_policy::Policy, host: &str, port: u16) -> bool {
    let req = boundary_policy::Request { method: "GET", host, path: "/", port: Some(port) };
    policy.rules().iter().any(|rule| {
        let text = rule.to_string();
        let kept: Vec<&str> = text.split(' ').filter(|kv| kv.starts_with("domain=") || kv.starts_with("port=")).collect();
        if kept.is_empty() {
            return true; // any host, any port
        }
        // The rule re-parses (its text is canonical); should it not, the
        // requests inside are still judged one by one.
        boundary_policy::parse_rules(&kept.join(" ")).map_or(true, |rules| rules.iter().all(|r| r.matches(&req)))
    })
}
