//! HTTP/2 from the container, HTTP/1.1 to the origin (the origin offers
//! only `http/1.1`): requests that would desync the downgraded connection
//! are refused, and what the origin receives is checked byte for byte.
//! Frames are written by hand, since HTTP/2 libraries refuse to send them.

mod common;
mod hostile;

use std::time::Duration;

use hostile::{frame, h2_exchange, hpack, start, World, DATA, END_HEADERS, END_STREAM, HEADERS};

const RULES: &[&str] = &["domain=origin.test path=/allowed/*", "method=GET domain=origin.test path=/get-only/*"];

/// The smuggled request the tests try to get to the origin.
const SMUGGLED: &[u8] = b"GET /allowed/smuggled HTTP/1.1\r\nHost: origin.test\r\n\r\n";

fn base(w: &World, method: &str, path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let authority = format!("origin.test:{}", w.https_origin.port());
    vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":scheme".to_vec(), b"https".to_vec()),
        (b":authority".to_vec(), authority.into_bytes()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
    ]
}

fn block(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
    hpack(&refs)
}

/// Sends one stream (HEADERS, then `body` as DATA frames, the last with
/// END_STREAM) on a fresh h2 connection.
async fn send(w: &World, fields: Vec<(Vec<u8>, Vec<u8>)>, body: &[&[u8]]) -> hostile::H2Outcome {
    let mut tls = w.tls("origin.test", &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut frames = Vec::new();
    let flags = if body.is_empty() { END_HEADERS | END_STREAM } else { END_HEADERS };
    frames.push(frame(HEADERS, flags, 1, &block(&fields)));
    for (i, chunk) in body.iter().enumerate() {
        let last = i + 1 == body.len();
        frames.push(frame(DATA, if last { END_STREAM } else { 0 }, 1, chunk));
    }
    h2_exchange(&mut tls, &frames).await
}

/// Whatever happened to the stream, the origin saw no smuggled request,
/// no request line it could not parse, and at most `max` requests, none
/// framed by Transfer-Encoding and each complete body of its declared length.
async fn assert_no_desync(w: &World, max: usize) {
    // Let a forwarded request (if any) land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = w.origin_requests();
    assert!(seen.len() <= max, "the origin saw more requests than were sent: {seen:#?}");
    assert!(seen.iter().all(|s| s.path != "/allowed/smuggled"), "a smuggled request reached the origin: {seen:#?}");
    for s in &seen {
        assert_eq!(s.header("transfer-encoding"), None, "an h2 request reached the origin chunked: {s:#?}");
        if s.complete {
            let cl = s.header("content-length").map(|v| v.parse::<usize>().unwrap()).unwrap_or(0);
            assert_eq!(cl, s.body.len(), "declared length and body disagree at the origin: {s:#?}");
        }
        for (n, v) in &s.headers {
            assert!(!v.contains(['\r', '\n', '\0']) && !n.contains(['\r', '\n', '\0', ' ', ':']), "{s:#?}");
        }
    }
    assert_eq!(w.origin_garbage(), 0, "the origin received bytes that were not a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_formed_h2_request_reaches_the_h1_origin_once() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let mut fields = base(&w, "POST", "/allowed/ok");
    fields.push((b"content-length".to_vec(), b"5".to_vec()));
    let o = send(&w, fields, &[b"he", b"llo"]).await;
    assert!(o.served_by_origin(), "{o:?}");
    let seen = w.origin_requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str(), seen[0].body.as_slice()), ("POST", "/allowed/ok", &b"hello"[..]));
    assert_no_desync(&w, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_request_with_transfer_encoding_is_refused() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let mut body = b"0\r\n\r\n".to_vec();
    body.extend_from_slice(SMUGGLED);
    for te in [&b"chunked"[..], b"gzip, chunked", b"identity"] {
        let mut fields = base(&w, "POST", "/allowed/te");
        fields.push((b"transfer-encoding".to_vec(), te.to_vec()));
        let o = send(&w, fields, &[&body]).await;
        assert!(!o.served_by_origin(), "transfer-encoding {:?} was forwarded: {o:?}", String::from_utf8_lossy(te));
    }
    // `te` other than `trailers` is connection-specific too.
    let mut fields = base(&w, "POST", "/allowed/te2");
    fields.push((b"te".to_vec(), b"chunked".to_vec()));
    let o = send(&w, fields, &[&body]).await;
    assert!(!o.served_by_origin(), "te: chunked was forwarded: {o:?}");
    assert_no_desync(&w, 0).await;
    w.still_serves("/allowed/after-te").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_content_length_disagreeing_with_data_never_desyncs_the_origin() {
    let w = start(RULES, Duration::from_secs(30)).await;
    // Declared 0, DATA carries a whole second request.
    let mut fields = base(&w, "POST", "/allowed/cl0");
    fields.push((b"content-length".to_vec(), b"0".to_vec()));
    let o = send(&w, fields, &[SMUGGLED]).await;
    assert!(!o.served_by_origin() || w.origin_requests().iter().all(|s| s.body.is_empty()), "{o:?}");
    // Declared 5, DATA longer.
    let mut fields = base(&w, "POST", "/allowed/cl5");
    fields.push((b"content-length".to_vec(), b"5".to_vec()));
    let mut long = b"hello".to_vec();
    long.extend_from_slice(SMUGGLED);
    let o = send(&w, fields, &[&long]).await;
    assert!(!o.served_by_origin() || w.origin_requests().iter().all(|s| s.body.len() <= 5), "{o:?}");
    // Declared 100, DATA shorter, stream ended.
    let mut fields = base(&w, "POST", "/allowed/cl100");
    fields.push((b"content-length".to_vec(), b"100".to_vec()));
    let o = send(&w, fields, &[b"short"]).await;
    assert!(!o.served_by_origin(), "a request whose DATA fell short of its content-length was answered: {o:?}");
    // Two content-length fields that disagree.
    let mut fields = base(&w, "POST", "/allowed/cl2");
    fields.push((b"content-length".to_vec(), b"3".to_vec()));
    fields.push((b"content-length".to_vec(), b"60".to_vec()));
    let o = send(&w, fields, &[b"abc"]).await;
    assert!(!o.served_by_origin(), "two disagreeing content-lengths were forwarded: {o:?}");
    assert_no_desync(&w, 3).await;
    for s in w.origin_requests() {
        assert!(s.path == "/allowed/cl0" || s.path == "/allowed/cl5" || s.path == "/allowed/cl100", "{s:#?}");
        assert!(!String::from_utf8_lossy(&s.body).contains("smuggled") || !s.complete, "{s:#?}");
    }
    w.still_serves("/allowed/after-cl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_header_values_with_cr_lf_or_nul_are_refused() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let values: [&[u8]; 5] = [
        b"a\r\nTransfer-Encoding: chunked",
        b"a\nX-Injected: 1",
        b"a\rX-Injected: 1",
        b"a\0b",
        b"a\r\n\r\nGET /allowed/smuggled HTTP/1.1\r\nHost: origin.test",
    ];
    for v in values {
        let mut fields = base(&w, "GET", "/allowed/hv");
        fields.push((b"x-evil".to_vec(), v.to_vec()));
        let o = send(&w, fields, &[]).await;
        assert!(!o.served_by_origin(), "header value {:?} was forwarded: {o:?}", String::from_utf8_lossy(v));
    }
    // Bad names: upper case, a colon, a space, CR LF.
    let names: [&[u8]; 4] = [b"X-Upper", b"x:colon", b"x space", b"x\r\ny"];
    for n in names {
        let mut fields = base(&w, "GET", "/allowed/hn");
        fields.push((n.to_vec(), b"1".to_vec()));
        let o = send(&w, fields, &[]).await;
        assert!(!o.served_by_origin(), "header name {:?} was forwarded: {o:?}", String::from_utf8_lossy(n));
    }
    // Pseudo-headers that would rewrite the request line.
    for (method, path) in [
        ("GET", "/allowed/x HTTP/1.1\r\nHost: origin.test\r\n\r\nGET /allowed/smuggled"),
        ("GET", "/allowed/x HTTP/1.1"),
        ("GET /allowed/smuggled HTTP/1.1\r\nX:", "/allowed/m"),
        ("GET", "/allowed/\0nul"),
    ] {
        let o = send(&w, base(&w, method, path), &[]).await;
        assert!(!o.served_by_origin(), "{method:?} {path:?} was forwarded: {o:?}");
    }
    assert_no_desync(&w, 0).await;
    w.still_serves("/allowed/after-headers").await;
}

/// Streams on one HTTP/2 connection to the same allowed authority that
/// differ only in method or path: each judged on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_to_one_authority_differing_in_method_or_path_are_judged_each() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper::client::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let w = start(RULES, Duration::from_secs(30)).await;
    let tls = w.tls("origin.test", &[b"h2"]).await;
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let port = w.https_origin.port();
    let cases = [
        ("GET", "/get-only/a", 200),
        ("POST", "/get-only/a", 403),
        ("GET", "/allowed/b", 200),
        ("GET", "/private/b", 403),
        ("DELETE", "/allowed/c", 200),
        ("GET", "/allowed/../private/d", 403),
    ];
    let futs = cases.iter().map(|(m, p, _)| {
        let mut send = send.clone();
        let req = hyper::Request::builder().method(*m).uri(format!("https://origin.test:{port}{p}")).body(Empty::<Bytes>::new()).unwrap();
        async move {
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let decision = resp.headers().get("x-boundary-decision").map(|v| v.to_str().unwrap().to_owned());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, decision, String::from_utf8_lossy(&body).into_owned())
        }
    });
    let results = futures::future::join_all(futs).await;
    for ((m, p, want), (status, decision, body)) in cases.iter().zip(&results) {
        assert_eq!(status, want, "{m} {p}: {body}");
        if *want == 403 {
            assert_eq!(decision.as_deref(), Some("deny"), "{m} {p}");
        } else {
            assert_eq!(body, &format!("origin saw {m} {p}\n"));
        }
    }
    let mut seen = w.origin_lines();
    seen.sort();
    let mut want: Vec<(String, String)> =
        cases.iter().filter(|c| c.2 == 200).map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    want.sort();
    assert_eq!(seen, want, "the origin must see exactly the allowed streams");
    for (m, p, want) in cases {
        let url = format!("https://origin.test:{port}{p}");
        let r = w.wait_audit(&url, |r| r.url.as_deref() == Some(&url) && r.method.as_deref() == Some(m)).await;
        assert_eq!(r.decision, if want == 200 { "allow" } else { "deny" }, "{r:?}");
    }
}
