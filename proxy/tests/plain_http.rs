//! Plain HTTP through the proxy: keep-alive, pipelining, denials, smuggling,
//! upstream failures, non-HTTP bytes and the audit log.

mod common;

use std::time::Duration;

use common::{closes_within, read_response, start, start_with, Options};
use tokio::io::{AsyncWriteExt, BufReader};

const RULES: &[&str] = &["domain=origin.test", "method=GET,POST domain=api.test path=/allowed/*", "domain=dead.test"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_mixes_allow_and_deny_on_one_connection() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    for (path_host, want) in [
        (format!("/a HTTP/1.1\r\nHost: origin.test:{port}"), 200),
        (format!("/x HTTP/1.1\r\nHost: other.test:{port}"), 403),
        (format!("/allowed/1?q=1 HTTP/1.1\r\nHost: api.test:{port}"), 200),
        (format!("/secret HTTP/1.1\r\nHost: api.test:{port}"), 403),
        (format!("/b HTTP/1.1\r\nHost: ORIGIN.test.:{port}"), 200),
    ] {
        s.get_mut().write_all(format!("GET {path_host}\r\n\r\n").as_bytes()).await.unwrap();
        let r = read_response(&mut s).await.expect("response");
        assert_eq!(r.status, want, "{path_host}: {r:?}");
        if want == 200 {
            assert!(r.body.starts_with("origin http HTTP/1.1 GET /"), "{}", r.body);
        } else {
            assert_eq!(r.header("x-boundary-decision"), Some("deny"));
        }
    }
    let recs = h.audit();
    assert_eq!(recs.len(), 5);
    assert!(recs.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(recs[0].decision, "allow");
    assert_eq!(recs[0].status, Some(200));
    assert!(recs[0].bytes.unwrap() > 0);
    assert_eq!(recs[0].rule.as_deref(), Some("domain=origin.test"));
    assert_eq!(recs[1].decision, "deny");
    assert_eq!(recs[1].host.as_deref(), Some("other.test"));
    assert_eq!(recs[1].status, Some(403));
    assert_eq!(recs[2].url.as_deref(), Some(&*format!("http://api.test:{port}/allowed/1?q=1")));
}

/// What the rules judged is what the origin gets: a lowercase method
/// (judged as its uppercase) goes upstream uppercased, and a host with two
/// trailing dots is not judged as the host without them (it would have
/// been sent with one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_method_and_host_judged_are_the_ones_sent() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    for (line, want, body) in [
        (format!("GET /allowed/0 HTTP/1.1\r\nHost: api.test:{port}"), 200, "origin http HTTP/1.1 GET /allowed/0"),
        (format!("get /allowed/1 HTTP/1.1\r\nHost: api.test:{port}"), 200, "origin http HTTP/1.1 GET /allowed/1"),
        (format!("pOsT /allowed/2 HTTP/1.1\r\nHost: api.test:{port}\r\nContent-Length: 0"), 200, "origin http HTTP/1.1 POST /allowed/2"),
        (format!("GET /x HTTP/1.1\r\nHost: origin.test..:{port}"), 403, ""),
    ] {
        s.get_mut().write_all(format!("{line}\r\n\r\n").as_bytes()).await.unwrap();
        let r = read_response(&mut s).await.expect("response");
        assert_eq!(r.status, want, "{line}: {r:?}");
        assert!(r.body.starts_with(body), "{line}: {}", r.body);
    }
    let recs = h.audit();
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert_eq!(recs[3].decision, "deny");
}

/// A request allowed as it is, that names another method or path in an
/// override header (which an origin may honour instead), is allowed only
/// when the rules allow that too; the 403 names the header. The origin
/// sees only the allowed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_and_path_override_headers_are_judged_too() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    for (extra, want, reason) in [
        ("X-HTTP-Method-Override: DELETE", 403, "x-http-method-override header makes it DELETE /allowed/a"),
        ("x-method-override: delete", 403, "x-method-override header makes it DELETE"),
        ("X-HTTP-Method: PUT", 403, "x-http-method header makes it PUT"),
        ("X-Original-URL: /private/x", 403, "x-original-url header makes it GET /private/x"),
        ("X-Rewrite-URL: /allowed/../admin", 403, "x-rewrite-url header makes it GET /allowed/../admin"),
        ("X-Original-URL: http://api.test/allowed/x", 403, "is not a path"),
        ("X-HTTP-Method-Override: POST\r\nX-Original-URL: /private", 403, "x-original-url header makes it GET /private"),
        ("X-HTTP-Method-Override: DELETE\r\nX-Original-URL: /allowed/c", 403, "x-http-method-override header makes it DELETE /allowed/a"),
        ("X-HTTP-Method-Override: post\r\nX-Original-URL: /allowed/b", 200, ""),
    ] {
        let req = format!("GET /allowed/a HTTP/1.1\r\nHost: api.test:{port}\r\n{extra}\r\n\r\n");
        s.get_mut().write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await.expect("response");
        assert_eq!(r.status, want, "{extra}: {r:?}");
        assert!(r.body.contains(reason), "{extra}: {}", r.body);
    }
    let recs = h.audit();
    assert_eq!(recs.iter().filter(|r| r.decision == "allow").count(), 1, "{recs:?}");
    assert_eq!(recs.iter().filter(|r| r.decision == "deny").count(), 8, "{recs:?}");
}

/// `_method` in the query (Laravel, Symfony, Express's methodOverride) is
/// judged like the override headers, under the names PHP reads as `_method`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_override_in_the_query_is_judged_too() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let cases = [
        ("POST", "/allowed/a?_method=DELETE", 403, "_method query parameter makes it DELETE /allowed/a"),
        ("GET", "/allowed/a?x=1&_method=put", 403, "_method query parameter makes it PUT"),
        ("POST", "/allowed/a?%5Fmethod=DELETE", 403, "_method query parameter makes it DELETE"),
        ("POST", "/allowed/a?_m%65thod=%20delete%20", 403, "makes it DELETE"),
        ("POST", "/allowed/a?.method=DELETE", 403, "makes it DELETE"),
        ("POST", "/allowed/a?+_method=DELETE", 403, "makes it DELETE"),
        ("POST", "/allowed/a?_method=POST&_method=PATCH", 403, "makes it PATCH"),
        ("GET", "/allowed/a?_method=DELETE", 403, "makes it DELETE"),
        ("POST", "/allowed/a?_method=post", 200, ""),
        ("GET", "/allowed/a?method=DELETE&x_method=DELETE&_methods=DELETE&+method=DELETE", 200, ""),
    ];
    for (method, target, want, reason) in cases {
        let req = format!("{method} {target} HTTP/1.1\r\nHost: api.test:{port}\r\nContent-Length: 0\r\n\r\n");
        s.get_mut().write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await.expect("response");
        assert_eq!(r.status, want, "{method} {target}: {r:?}");
        assert!(r.body.contains(reason), "{method} {target}: {}", r.body);
    }
    let recs = h.audit();
    assert_eq!(recs.iter().filter(|r| r.decision == "allow").count(), 2, "{recs:?}");
    assert_eq!(recs.iter().filter(|r| r.decision == "deny").count(), 8, "{recs:?}");
}

/// Requests in flight at once need as many upstream connections; once they
/// are answered the sidecar keeps them all for the next burst instead of
/// closing those above a small idle cap and opening them again (each close
/// leaves a TIME_WAIT port on the host: sustained churn ran the host out
/// of ephemeral ports under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_requests_reuses_its_upstream_connections() {
    const AT_ONCE: usize = 150;
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut clients = Vec::new();
    for _ in 0..AT_ONCE {
        clients.push(BufReader::new(h.connect().await));
    }
    for burst in 0..2 {
        let tasks: Vec<_> = clients
            .drain(..)
            .map(|mut s| {
                tokio::spawn(async move {
                    let req = format!("GET /slow HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n");
                    s.get_mut().write_all(req.as_bytes()).await.unwrap();
                    let r = read_response(&mut s).await.expect("response");
                    assert_eq!((r.status, r.body.as_str()), (200, "slow"), "{r:?}");
                    s
                })
            })
            .collect();
        for t in tasks {
            clients.push(t.await.unwrap());
        }
        let accepted = h.http_origin_accepts.load(std::sync::atomic::Ordering::SeqCst);
        assert!(accepted >= AT_ONCE / 2, "burst {burst}: the origin saw only {accepted} connections; the requests were not concurrent");
        assert!(accepted <= AT_ONCE, "burst {burst}: {AT_ONCE} requests at a time made {accepted} upstream connections");
        // Let the last responses' connections go back to the pool (100 ms
        // was once too short with the other test binaries busy on 2 cores).
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_evaluated() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let two = format!(
        "GET /one HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\nPOST /two HTTP/1.1\r\nHost: other.test:{port}\r\nContent-Length: 3\r\n\r\nabc\
         POST /three HTTP/1.1\r\nHost: origin.test:{port}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    );
    s.get_mut().write_all(two.as_bytes()).await.unwrap();
    let a = read_response(&mut s).await.unwrap();
    let b = read_response(&mut s).await.unwrap();
    let c = read_response(&mut s).await.unwrap();
    assert_eq!((a.status, b.status, c.status), (200, 403, 200));
    assert!(a.body.contains("GET /one"));
    assert!(c.body.contains("POST /three") && c.body.contains("len=3"), "{}", c.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_destination_port_is_used_when_host_has_none() {
    let h = start(RULES).await;
    *h.dst.lock().unwrap() = Some(h.http_origin);
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(b"GET /d HTTP/1.1\r\nHost: origin.test\r\n\r\n").await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_uses_the_uri_and_host_must_agree() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let req = format!("GET http://origin.test:{port}/abs HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n");
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("GET /abs"), "{}", r.body);
    let req = format!("GET http://other.test:{port}/abs HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n");
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bracketed_host_name_is_refused() {
    expect_400("GET /allowed/x HTTP/1.1\r\nHost: [origin.test]:PORT\r\n\r\n", "brackets around a host that is not an IPv6 address").await;
    expect_400("GET http://[origin.test]:PORT/allowed/x HTTP/1.1\r\n\r\n", "brackets around a host").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_bodies_name_the_rule_in_text_and_json() {
    let h = start(RULES).await;
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(b"GET /v1/x HTTP/1.1\r\nHost: other.test\r\n\r\n").await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        "boundary-runc: GET http://other.test/v1/x was denied by the network boundary (no rule matched).\n\
         To allow it, add this rule to BOUNDARY_ALLOW:\n  domain=other.test\n"
    );
    s.get_mut()
        .write_all(b"DELETE /allowed/1 HTTP/1.1\r\nHost: api.test\r\nAccept: application/json\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"], "denied");
    assert_eq!(v["method"], "DELETE");
    assert_eq!(v["url"], "http://api.test/allowed/1");
    assert_eq!(v["host"], "api.test");
    let rule = v["allow_rule"].as_str().unwrap();
    assert!(rule.contains("method=DELETE") && rule.contains("domain=api.test"), "{rule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upstream_network_denies_everything() {
    let h = start_with(RULES, Options { upstream_enabled: false, ..Options::default() }).await;
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n").await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("container has no upstream network"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_rules_must_also_allow() {
    let opts = Options { narrowing: vec!["method=GET".into()], ..Options::default() };
    let h = start_with(RULES, opts).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let req = format!("GET / HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\nPOST / HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: 0\r\n\r\n");
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().status, 200);
    assert_eq!(read_response(&mut s).await.unwrap().status, 403);
}

async fn expect_400(head: &str, reason: &str) {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let head = head.replace("PORT", &port.to_string());
    s.get_mut().write_all(head.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.expect("a response");
    assert_eq!(r.status, 400, "{head:?}: {r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("x-boundary-decision"), Some("error"));
    assert!(r.body.contains(reason), "{head:?}: {}", r.body);
    assert!(closes_within(s.get_mut(), 3).await, "connection left open after 400");
    h.wait_audit(|r| r.status == Some(400) && r.reason.as_deref().is_some_and(|x| x.contains(reason))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_content_length_with_transfer_encoding() {
    expect_400(
        "POST / HTTP/1.1\r\nHost: origin.test:PORT\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: other.test\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_duplicate_content_length() {
    expect_400("POST / HTTP/1.1\r\nHost: origin.test:PORT\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "duplicate Content-Length").await;
    expect_400("POST / HTTP/1.1\r\nHost: origin.test:PORT\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", "duplicate Content-Length").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_bad_transfer_encoding() {
    expect_400("POST / HTTP/1.1\r\nHost: origin.test:PORT\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "other than chunked").await;
    expect_400("POST / HTTP/1.1\r\nHost: origin.test:PORT\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "other than chunked").await;
    expect_400(
        "POST / HTTP/1.1\r\nHost: origin.test:PORT\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        "other than chunked",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_obs_fold_and_bare_line_ends() {
    expect_400("GET / HTTP/1.1\r\nHost: origin.test:PORT\r\nX-A: b\r\n  folded\r\n\r\n", "line folding").await;
    expect_400("GET / HTTP/1.1\r\nHost: origin.test:PORT\nX-A: b\r\n\r\n", "bare LF").await;
    expect_400("GET / HTTP/1.1\r\nHost: origin.test:PORT\r\nX-A: b\rX-B: c\r\n\r\n", "bare CR").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_body_is_not_forwarded_whole() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let req = format!("POST / HTTP/1.1\r\nHost: origin.test:{port}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n");
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    match read_response(&mut s).await {
        None => {}
        Some(r) => assert_eq!(r.status, 400, "{r:?}"),
    }
    assert!(closes_within(s.get_mut(), 3).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let req = format!("GET / HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n");
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert!(r.body.ends_with("hop=false"), "{}", r.body);
}

/// An allowed request whose client goes away while it waits for the
/// origin's answer has reached the origin all the same: it is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_the_client_abandons_before_the_answer_is_audited() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = h.connect().await;
    let req = format!("POST /hold HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: 5\r\n\r\nhello");
    s.write_all(req.as_bytes()).await.unwrap();
    h.hold.arrivals(1).await;
    drop(s);
    let rec = h.wait_audit(|r| r.url.as_deref().is_some_and(|u| u.ends_with("/hold"))).await;
    assert_eq!((rec.decision.as_str(), rec.method.as_deref()), ("allow", Some("POST")), "{rec:?}");
    assert_eq!(rec.reason.as_deref(), Some(boundary_proxy::forward::ABANDONED), "{rec:?}");
    assert_eq!(rec.rule.as_deref(), Some("domain=origin.test"), "{rec:?}");
    h.hold.release.notify_waiters();
    // One record, not a second one when the answer comes after all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.audit().len(), 1, "{:#?}", h.audit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_a_prompt_502() {
    let h = start(RULES).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = BufReader::new(h.connect().await);
    let req = format!("GET / HTTP/1.1\r\nHost: dead.test:{closed}\r\n\r\n");
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(12), read_response(&mut s)).await.unwrap().unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-boundary-decision"), Some("error"));
    assert!(r.body.contains("connecting to 127.0.0.1"), "{}", r.body);
    let rec = h.wait_audit(|r| r.status == Some(502)).await;
    assert_eq!(rec.decision, "allow");
    assert!(rec.reason.unwrap().contains("upstream failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinned_special_address_is_refused_upstream() {
    // A rule may name an IP literal, but loopback stays refused unless the
    // rule names exactly that address.
    let h = start(&["domain=*"]).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("refused addresses"), "{}", r.body);

    let h = start(&["domain=127.0.0.1"]).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused_upstream_when_configured() {
    // With refuse_private_destinations, `domain=*` no longer reaches the
    // host's private networks (10.255.255.1 is never connected to: the
    // refusal comes before any connect); pinned names still resolve.
    let h = start_with(&["domain=*"], Options { refuse_private: true, ..Options::default() }).await;
    for host in ["10.255.255.1", "192.168.255.1:8080", "100.64.0.1"] {
        let mut s = BufReader::new(h.connect().await);
        s.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
        let r = read_response(&mut s).await.unwrap();
        assert_eq!(r.status, 502, "{host}: {r:?}");
        assert!(r.body.contains("refuse_private_destinations"), "{host}: {}", r.body);
    }
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().status, 200, "a pinned name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_http_bytes_are_closed_and_audited() {
    let h = start(RULES).await;
    let mut s = h.connect().await;
    s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    assert!(closes_within(&mut s, 3).await);
    let mut s = h.connect().await;
    s.write_all(&[0, 1, 2, 3, 0xff, b'\n']).await.unwrap();
    assert!(closes_within(&mut s, 3).await);
    let rec = h.wait_audit(|r| r.kind == "tcp").await;
    assert_eq!(rec.decision, "deny");
    assert_eq!(rec.reason.as_deref(), Some("non-HTTP bytes"));
    // The proxy still serves the next connection.
    let mut s = BufReader::new(h.connect().await);
    let port = h.http_origin.port();
    s.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    let body = vec![b'x'; 3 * 1024 * 1024];
    let head = format!("POST /big HTTP/1.1\r\nHost: origin.test:{port}\r\nContent-Length: {}\r\n\r\n", body.len());
    s.get_mut().write_all(head.as_bytes()).await.unwrap();
    s.get_mut().write_all(&body).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!("len={}", body.len())), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_are_cut_off() {
    let opts = Options { header_read_timeout: Duration::from_secs(1), ..Options::default() };
    let h = start_with(RULES, opts).await;
    let mut s = h.connect().await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: orig").await.unwrap();
    assert!(closes_within(&mut s, 4).await, "slowloris connection kept open");
    let port = h.http_origin.port();
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().status, 200);
    assert!(closes_within(s.get_mut(), 4).await, "idle keep-alive connection kept open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_is_refused() {
    let h = start(RULES).await;
    let mut s = BufReader::new(h.connect().await);
    let big = format!("GET / HTTP/1.1\r\nHost: origin.test\r\nX-Big: {}\r\n\r\n", "a".repeat(80 * 1024));
    s.get_mut().write_all(big.as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("request head too large"), "{}", r.body);
}

/// CONNECT is refused for a port the narrowing rules allow nowhere, as for
/// one the policy allows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_port_the_narrowing_forbids_is_refused() {
    let opts = Options { narrowing: vec!["domain=origin.test port=443".into()], ..Options::default() };
    let h = start_with(RULES, opts).await;
    for (port, want) in [(7000, 403), (443, 200)] {
        let mut s = BufReader::new(h.connect().await);
        let req = format!("CONNECT origin.test:{port} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n");
        s.get_mut().write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await.unwrap();
        assert_eq!(r.status, want, "CONNECT origin.test:{port}: {r:?}");
        if want == 403 {
            // The jail's rules allow it; the narrowing set refused it, and
            // the rule that would allow it belongs in that set's rules.
            assert!(r.body.contains("no rule allows this port in the rules of the sidecar config"), "{}", r.body);
            assert!(r.body.contains("add this rule to the narrowing_rules of the sidecar config"), "{}", r.body);
        }
    }
    // A host the narrowing set does not name at all.
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(b"CONNECT dead.test:443 HTTP/1.1\r\nHost: dead.test:443\r\n\r\n").await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("no rule matched in the rules of the sidecar config"), "{}", r.body);
}
