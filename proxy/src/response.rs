//! Every response the proxy makes itself, in one place: 403 for a boundary
//! denial, 400 for a request the proxy will not parse, 502 for an upstream
//! failure, and the 200 that opens a CONNECT tunnel.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, CONNECTION, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Body of every response the proxy sends to a client.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// Error type of [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Marks who answered: `deny` (the boundary refused) or `error`.
pub const DECISION_HEADER: &str = "x-boundary-decision";

/// What a 403 names.
#[derive(Debug, Clone, Copy)]
pub struct DenyInfo<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub host: &'a str,
    pub reason: &'a str,
    /// A rule that would allow the request, when one can.
    pub allow_rule: Option<&'a str>,
    /// Where such a rule is given (`BOUNDARY_ALLOW`, the pod annotation).
    pub rules_in: &'a str,
}

/// Whether the client's Accept header asks for JSON.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().to_ascii_lowercase().starts_with("application/json")))
}

/// 403 with a text or JSON body explaining the denial.
pub fn deny(info: &DenyInfo<'_>, json: bool) -> Response<ProxyBody> {
    let body = if json {
        serde_json::json!({
            "error": "denied",
            "method": info.method,
            "url": info.url,
            "host": info.host,
            "reason": info.reason,
            "allow_rule": info.allow_rule,
            "rules_in": info.rules_in,
        })
        .to_string()
            + "\n"
    } else {
        deny_text(info)
    };
    let ctype = if json { "application/json" } else { "text/plain; charset=utf-8" };
    build(StatusCode::FORBIDDEN, "deny", ctype, body, false)
}

fn deny_text(info: &DenyInfo<'_>) -> String {
    let mut text = format!(
        "boundary-runc: {} {} was denied by the network boundary ({}).\n",
        info.method, info.url, info.reason
    );
    match info.allow_rule {
        Some(rule) => {
            text.push_str(&format!("To allow it, add this rule to {}:\n  ", info.rules_in));
            text.push_str(rule);
            text.push('\n');
        }
        None => text.push_str("No rule can be suggested for this request (see the reason).\n"),
    }
    text
}

/// 400 for a request the proxy refuses to interpret; closes the connection.
pub fn bad_request(reason: &str) -> Response<ProxyBody> {
    let body = format!("boundary-runc: bad request ({reason}).\n");
    build(StatusCode::BAD_REQUEST, "error", "text/plain; charset=utf-8", body, true)
}

/// 502 when the upstream could not be reached or failed.
pub fn bad_gateway(method: &str, url: &str, reason: &str) -> Response<ProxyBody> {
    let body = format!("boundary-runc: {method} {url} was allowed, but the upstream failed: {reason}.\n");
    build(StatusCode::BAD_GATEWAY, "error", "text/plain; charset=utf-8", body, false)
}

/// The 200 that opens a CONNECT tunnel.
pub fn connect_established() -> Response<ProxyBody> {
    Response::new(empty())
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn build(status: StatusCode, decision: &'static str, ctype: &'static str, body: String, close: bool) -> Response<ProxyBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(DECISION_HEADER, HeaderValue::from_static(decision));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    if close {
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_text(resp: Response<ProxyBody>) -> String {
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn info() -> DenyInfo<'static> {
        DenyInfo {
            method: "GET",
            url: "https://api.example.com/v1/x",
            host: "api.example.com",
            reason: "no rule matched",
            allow_rule: Some("domain=api.example.com"),
            rules_in: "BOUNDARY_ALLOW",
        }
    }

    #[tokio::test]
    async fn deny_text_names_everything() {
        let resp = deny(&info(), false);
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()[DECISION_HEADER], "deny");
        assert_eq!(
            body_text(resp).await,
            "boundary-runc: GET https://api.example.com/v1/x was denied by the network boundary (no rule matched).\n\
             To allow it, add this rule to BOUNDARY_ALLOW:\n  domain=api.example.com\n"
        );
    }

    #[tokio::test]
    async fn deny_json() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("text/html, Application/JSON;q=0.9"));
        assert!(wants_json(&h));
        let resp = deny(&info(), true);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(v["error"], "denied");
        assert_eq!(v["allow_rule"], "domain=api.example.com");
        assert_eq!(v["host"], "api.example.com");
    }

    #[test]
    fn errors_are_marked() {
        let r = bad_request("duplicate Content-Length");
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[CONNECTION], "close");
        assert_eq!(r.headers()[DECISION_HEADER], "error");
        assert_eq!(bad_gateway("GET", "http://x/", "refused").headers()[DECISION_HEADER], "error");
    }
}
