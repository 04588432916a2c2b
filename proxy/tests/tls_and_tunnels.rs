//! TLS interception, HTTP/2, server-sent events, WebSocket and CONNECT.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{closes_within, read_response, start, start_with, Harness, Options};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const RULES: &[&str] = &["domain=origin.test", "domain=sse.test"];

async fn h1<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: T) -> http1::SendRequest<Empty<Bytes>> {
    let (send, conn) = http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn.with_upgrades());
    send
}

fn get(uri: &str, host: Option<&str>) -> Request<Empty<Bytes>> {
    let mut b = Request::get(uri);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    b.body(Empty::new()).unwrap()
}

async fn text(resp: hyper::Response<hyper::body::Incoming>) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_terminated_for_the_sni_and_host_must_match() {
    let h = start(RULES).await;
    let port = h.https_origin.port();
    let tls = h.tls_connect("origin.test", &[b"http/1.1"]).await;
    let mut send = h1(tls).await;
    let host = format!("origin.test:{port}");
    let (status, body) = text(send.send_request(get("/hello?x=1", Some(&host))).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("origin https HTTP/2.0 GET /hello?x=1"), "{body}");
    // Domain fronting: same TLS session, another Host.
    let other = format!("other.test:{port}");
    send.ready().await.unwrap();
    let resp = send.send_request(get("/x", Some(&other))).await.unwrap();
    assert_eq!(resp.headers()["x-boundary-decision"], "deny");
    let (status, body) = text(resp).await;
    assert_eq!(status, 403);
    assert!(body.contains("host does not match TLS server name"), "{body}");
    let recs = h.audit();
    assert_eq!(recs[0].kind, "https");
    assert_eq!(recs[0].url.as_deref(), Some(&*format!("https://origin.test:{port}/hello?x=1")));
    assert_eq!(recs[1].reason.as_deref(), Some("host does not match TLS server name"));
}

/// Megabytes up and back through both TLS legs (client to sidecar, sidecar
/// to origin, HTTP/1.1 and HTTP/2), while the origin echoes the upload as
/// it arrives: every byte comes back in order (the legs read ahead of
/// rustls, `readahead.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_go_up_and_come_back_intact_over_tls() {
    let h = start(RULES).await;
    let port = h.https_origin.port();
    let body: Vec<u8> = (0..5 * 1024 * 1024 + 123).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let body = Bytes::from(body);
    let host = format!("origin.test:{port}");
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let tls = h.tls_connect("origin.test", &[alpn]).await;
        let req = Request::post("/echo").header("host", &host).body(http_body_util::Full::new(body.clone())).unwrap();
        let req = if alpn == b"h2" {
            let (mut send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            let mut req = req;
            *req.uri_mut() = format!("https://{host}/echo").parse().unwrap();
            send.send_request(req).await
        } else {
            let (mut send, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await
        };
        let resp = req.unwrap();
        assert_eq!(resp.status(), 200);
        let back = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(back.len(), body.len(), "{:?}", String::from_utf8_lossy(alpn));
        assert!(back == body, "the echoed bytes differ ({:?})", String::from_utf8_lossy(alpn));
    }
}

/// An upstream that accepts but never finishes the TLS handshake: a 502
/// naming the configured limit, when it is reached and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_gets_a_502_at_the_configured_connect_limit() {
    let h = start_with(&["domain=dead.test"], Options { connect_timeout_ms: Some(700), ..Options::default() }).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c); // never answers, never closes
        }
    });
    let tls = h.tls_connect("dead.test", &[b"http/1.1"]).await;
    let mut send = h1(tls).await;
    let started = std::time::Instant::now();
    let resp = send.send_request(get("/", Some(&format!("dead.test:{port}")))).await.unwrap();
    let waited = started.elapsed();
    let (status, body) = text(resp).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream connection timed out after 0.7 s"), "{body}");
    assert!(waited >= Duration::from_millis(650) && waited < Duration::from_secs(5), "502 after {waited:?}");
    let rec = h.wait_audit(|r| r.status == Some(502)).await;
    assert!(rec.reason.unwrap().contains("timed out after 0.7 s"));
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume() {
    let h = start(RULES).await;
    let connector = h.tls(&[b"http/1.1"]);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = h.connect().await;
        let mut tls = connector.connect(ServerName::try_from("origin.test").unwrap(), tcp).await.unwrap();
        // Drive the session ticket in: one request/response round trip.
        let port = h.https_origin.port();
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n").as_bytes()).await.unwrap();
        let mut r = BufReader::new(tls);
        assert_eq!(read_response(&mut r).await.unwrap().status, 200);
        kinds.push(r.get_ref().get_ref().1.handshake_kind());
    }
    assert_eq!(kinds[1], Some(rustls::HandshakeKind::Resumed), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_are_each_checked_against_the_sni() {
    let h = start(RULES).await;
    let port = h.https_origin.port();
    let tls = h.tls_connect("origin.test", &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let ok = send.send_request(get(&format!("https://origin.test:{port}/a"), None));
    let bad = send.clone().send_request(get(&format!("https://other.test:{port}/b"), None));
    let (ok, bad) = tokio::join!(ok, bad);
    let (status, body) = text(ok.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /a host=origin.test"), "{body}");
    let (status, body) = text(bad.unwrap()).await;
    assert_eq!(status, 403);
    assert!(body.contains("host does not match TLS server name"), "{body}");
}

/// An HTTP/2 stream the client resets while its allowed request waits for
/// the origin's answer (and a connection closed under one) is audited: the
/// request has reached the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_abandoned_before_the_answer_are_audited() {
    let h = start(RULES).await;
    let port = h.https_origin.port();
    let tls = h.tls_connect("origin.test", &[b"h2"]).await;
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    let conn = tokio::spawn(conn);
    // Dropping the response future resets the stream (RST_STREAM CANCEL).
    let reset = tokio::spawn(send.send_request(get(&format!("https://origin.test:{port}/hold?reset"), None)));
    h.hold.arrivals(1).await;
    reset.abort();
    let rec = h.wait_audit(|r| r.url.as_deref().is_some_and(|u| u.ends_with("/hold?reset"))).await;
    assert_eq!((rec.kind.as_str(), rec.decision.as_str()), ("https", "allow"), "{rec:?}");
    assert_eq!(rec.reason.as_deref(), Some(boundary_proxy::forward::ABANDONED), "{rec:?}");
    // The whole connection closed under a waiting stream.
    send.ready().await.unwrap();
    let waiting = tokio::spawn(send.send_request(get(&format!("https://origin.test:{port}/hold?closed"), None)));
    h.hold.arrivals(2).await;
    waiting.abort();
    conn.abort();
    let rec = h.wait_audit(|r| r.url.as_deref().is_some_and(|u| u.ends_with("/hold?closed"))).await;
    assert_eq!(rec.reason.as_deref(), Some(boundary_proxy::forward::ABANDONED), "{rec:?}");
    h.hold.release.notify_waiters();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.audit().len(), 2, "{:#?}", h.audit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_less_and_ip_literal_tls_is_closed() {
    let h = start(RULES).await;
    let tcp = h.connect().await;
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let res = tokio::time::timeout(Duration::from_secs(5), h.tls(&[]).connect(ip, tcp)).await.unwrap();
    assert!(res.is_err(), "handshake without SNI must fail");
    let rec = h.wait_audit(|r| r.kind == "tls").await;
    assert_eq!(rec.decision, "deny");
    assert_eq!(rec.reason.as_deref(), Some("TLS without a server name (SNI)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_are_not_buffered() {
    let h = start(RULES).await;
    let port = h.https_origin.port();
    let tls = h.tls_connect("sse.test", &[b"http/1.1"]).await;
    let mut send = h1(tls).await;
    let resp = send.send_request(get("/sse", Some(&format!("sse.test:{port}")))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first event must arrive before the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(first.data_ref().unwrap().as_ref(), b"data: one\n\n");
    h.sse_release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect()).await.unwrap().unwrap().to_bytes();
    assert_eq!(rest.as_ref(), b"data: two\n\n");
    let rec = h.wait_audit(|r| r.url.as_deref().is_some_and(|u| u.ends_with("/sse"))).await;
    assert_eq!(rec.bytes, Some(22));
}

/// The HTTP/2 idle cut-off counts streams being answered, not bytes: a
/// stream that outlasts it is not cut, and the connection goes away once
/// it has had no stream for that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_outlasting_the_idle_cut_off_is_not_cut() {
    let h = start_with(RULES, Options { header_read_timeout: Duration::from_secs(1), ..Options::default() }).await;
    let port = h.https_origin.port();
    let tls = h.tls_connect("sse.test", &[b"h2"]).await;
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    let conn = tokio::spawn(conn);
    let resp = send.send_request(get(&format!("https://sse.test:{port}/sse"), None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.data_ref().unwrap().as_ref(), b"data: one\n\n");
    // Longer than the cut-off and the grace after a GOAWAY together.
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.sse_release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect()).await.unwrap().unwrap().to_bytes();
    assert_eq!(rest.as_ref(), b"data: two\n\n");
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "an HTTP/2 connection without a stream was kept open");
}

async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(url: &str, stream: S) -> Result<String, String> {
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.map_err(|e| e.to_string())?;
    ws.send(Message::text("hello")).await.map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(m)) => Ok(m.into_text().map_err(|e| e.to_string())?.to_string()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_allowed_host_and_refused_for_denied() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws_echo(&format!("ws://origin.test:{port}/ws"), h.connect().await))
        .await
        .unwrap();
    assert_eq!(echoed.unwrap(), "hello");

    let denied = tokio::time::timeout(Duration::from_secs(5), ws_echo(&format!("ws://other.test:{port}/ws"), h.connect().await))
        .await
        .expect("a denied WebSocket must not hang");
    let err = denied.unwrap_err();
    assert!(err.contains("403"), "{err}");

    // And over intercepted TLS.
    let port = h.https_origin.port();
    let tls = h.tls_connect("origin.test", &[b"http/1.1"]).await;
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws_echo(&format!("wss://origin.test:{port}/ws"), tls)).await.unwrap();
    assert_eq!(echoed.unwrap(), "hello");
    let rec = h.wait_audit(|r| r.status == Some(101)).await;
    assert_eq!(rec.decision, "allow");
}

async fn connect_tunnel(h: &Harness, target: &str) -> (u16, BufReader<tokio::net::TcpStream>) {
    let mut s = BufReader::new(h.connect().await);
    s.get_mut().write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    (r.status, s)
}

/// A CONNECT tunnel and a WebSocket outlive the HTTP/1 exchange that
/// opened them and keep its place among `max_connections`: with the limit
/// at two and both open, a third connection is not served until one of
/// them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tunnels_and_websockets_count_against_the_connection_limit() {
    let h = start_with(RULES, Options { max_connections: 2, ..Options::default() }).await;
    let port = h.http_origin.port();
    let (status, tunnel) = connect_tunnel(&h, &format!("origin.test:{port}")).await;
    assert_eq!(status, 200);
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://origin.test:{port}/ws"), h.connect().await).await.unwrap();
    ws.send(Message::text("first")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "first");

    let mut third = BufReader::new(h.connect().await);
    let req = format!("GET /third HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n");
    third.get_mut().write_all(req.as_bytes()).await.unwrap();
    let early = tokio::time::timeout(Duration::from_secs(1), read_response(&mut third)).await;
    assert!(early.is_err(), "a third connection was served beside an open tunnel and WebSocket: {early:?}");
    drop(tunnel);
    let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut third)).await.expect("served once the tunnel closed").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("GET /third"), "{}", r.body);
    // The WebSocket kept its place and still carries messages.
    ws.send(Message::text("second")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_allowed_carries_intercepted_tls() {
    let h = start(RULES).await;
    let port = h.https_origin.port();
    let target = format!("origin.test:{port}");
    let (status, s) = connect_tunnel(&h, &target).await;
    assert_eq!(status, 200);
    let tls = h.tls(&[b"http/1.1"]).connect(ServerName::try_from("origin.test").unwrap(), s.into_inner()).await.unwrap();
    let mut send = h1(tls).await;
    let (status, body) = text(send.send_request(get("/via-connect", Some(&target))).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /via-connect"), "{body}");
    let rec = h.wait_audit(|r| r.kind == "connect").await;
    assert_eq!((rec.decision.as_str(), rec.status), ("allow", Some(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnel_with_plain_http_is_bound_to_the_target() {
    let h = start(RULES).await;
    let port = h.http_origin.port();
    let (status, mut s) = connect_tunnel(&h, &format!("origin.test:{port}")).await;
    assert_eq!(status, 200);
    let req = format!("GET /in HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\nGET /in HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n");
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().status, 200);
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("host does not match CONNECT target"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_denied_gets_403() {
    let h = start(RULES).await;
    let (status, mut s) = connect_tunnel(&h, "other.test:443").await;
    assert_eq!(status, 403);
    assert!(closes_within(s.get_mut(), 3).await);
    let rec = h.wait_audit(|r| r.kind == "connect").await;
    assert_eq!(rec.decision, "deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_then_other_bytes_is_closed() {
    let h = start(RULES).await;
    let (status, mut s) = connect_tunnel(&h, "origin.test:22").await;
    assert_eq!(status, 200);
    s.get_mut().write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    assert!(closes_within(s.get_mut(), 3).await);
    let rec = h.wait_audit(|r| r.kind == "tcp").await;
    assert_eq!(rec.reason.as_deref(), Some("non-HTTP bytes in CONNECT tunnel"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_then_tls_for_another_name_is_closed() {
    let h = start(RULES).await;
    let (status, s) = connect_tunnel(&h, "origin.test:443").await;
    assert_eq!(status, 200);
    let res = h.tls(&[]).connect(ServerName::try_from("sse.test").unwrap(), s.into_inner()).await;
    assert!(res.is_err());
    let rec = h.wait_audit(|r| r.kind == "tls").await;
    assert_eq!(rec.reason.as_deref(), Some("TLS server name does not match CONNECT target"));
}

/// `n` clients at once, each on its own TLS connection to the proxy,
/// `GET /slow` (300 ms) from the HTTPS origin: every answer a 200.
async fn burst_of_slow_https(h: &Harness, n: usize) {
    let authority = format!("origin.test:{}", h.https_origin.port());
    // Every client connected first, then all requests at once.
    let mut senders = Vec::new();
    for _ in 0..n {
        senders.push(h1(h.tls_connect("origin.test", &[b"http/1.1"]).await).await);
    }
    let mut tasks = Vec::new();
    for mut send in senders {
        let authority = authority.clone();
        tasks.push(tokio::spawn(async move { text(send.send_request(get("/slow", Some(&authority))).await.unwrap()).await }));
    }
    for t in tasks {
        assert_eq!(tokio::time::timeout(Duration::from_secs(20), t).await.unwrap().unwrap(), (200, "slow".to_string()));
    }
}

/// A burst to an HTTPS origin that speaks HTTP/2 makes one upstream
/// connection: the first request connects, the others wait for its
/// handshake and share it (before, each made a TLS handshake of its own
/// and the pool dropped all but one). On a current-thread runtime, as in
/// the worker.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_to_an_http2_origin_makes_one_upstream_handshake() {
    let h = start(RULES).await;
    burst_of_slow_https(&h, 40).await;
    assert_eq!(h.https_origin_accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A second burst uses the same connection.
    burst_of_slow_https(&h, 10).await;
    assert_eq!(h.https_origin_accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// The same burst to an origin that speaks only HTTP/1.1 still gets a
/// connection per request in flight, at once after the first handshake.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_to_an_http1_origin_connects_in_parallel() {
    let h = start_with(RULES, Options { origin_h1_only: true, ..Options::default() }).await;
    burst_of_slow_https(&h, 20).await;
    let accepts = h.https_origin_accepts.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(accepts, 20, "one connection per concurrent request");
}
