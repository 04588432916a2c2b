//! Hostile clients against the proxy: slowloris heads, oversized heads,
//! broken chunked bodies, malformed TLS ClientHellos and path confusion.
//! Each is refused cleanly, audited, checked at a recording origin, and the
//! proxy goes on serving.

mod common;
mod hostile;

use std::time::{Duration, Instant};

use hostile::{frame, h2_exchange, hpack, start, END_HEADERS, END_STREAM, HEADERS, PREFACE, SETTINGS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &[&str] = &["domain=origin.test path=/allowed/*"];

/// Reads everything until the proxy closes, or `secs` pass.
async fn read_until_close(s: &mut tokio::net::TcpStream, secs: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_head_trickled_byte_by_byte_is_cut_off_and_others_are_served() {
    let w = start(RULES, Duration::from_secs(1)).await;
    let head = format!("GET /allowed/slow HTTP/1.1\r\nHost: origin.test:{}\r\nX-Pad: {}\r\n\r\n", w.http_origin.port(), "p".repeat(200));
    let mut s = w.connect().await;
    let started = Instant::now();
    let trickle = async {
        let mut sent = 0;
        for b in head.as_bytes() {
            if s.write_all(std::slice::from_ref(b)).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sent
    };
    // While one client trickles, others are served.
    let others = async {
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            w.still_serves(&format!("/allowed/other-{i}")).await;
        }
    };
    let (sent, ()) = tokio::join!(trickle, others);
    let sent_for = started.elapsed();
    assert!(
        sent < head.len() || sent_for > Duration::from_secs(5),
        "the whole head went through in {sent_for:?}, the test did not trickle"
    );
    let rest = read_until_close(&mut s, 3).await.expect("slowloris connection kept open");
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("origin saw"), "a trickled head was served after the timeout: {text}");
    assert!(w.origin_lines().iter().all(|(_, p)| p != "/allowed/slow"), "{:?}", w.origin_lines());
    let r = w.wait_audit("the head timeout", |r| r.reason.as_deref().is_some_and(|x| x.contains("request head not received"))).await;
    assert_eq!(r.decision, "deny", "{r:?}");
    w.still_serves("/allowed/after-slowloris").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_without_an_audit_refusal() {
    let w = start(RULES, Duration::from_secs(1)).await;
    let mut s = w.connect().await;
    // Nothing sent at all: the sniffer gives up; nothing to refuse.
    assert!(read_until_close(&mut s, 5).await.is_some(), "an idle connection was kept open");
    assert!(w.audit().iter().all(|r| r.reason.as_deref().is_none_or(|x| !x.contains("request head"))), "{:#?}", w.audit());
}

/// hyper's HTTP/2 server has no head read timer: a connection that
/// negotiated h2 and then sends nothing, sends only its preface, or goes
/// quiet after a stream (answering no PING, ignoring GOAWAY) is closed at
/// the idle cut-off instead of holding a connection slot for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http2_connections_are_closed_at_the_idle_cut_off() {
    let w = start(RULES, Duration::from_secs(1)).await;
    let mut silent = w.tls("origin.test", &[b"h2"]).await;
    let mut preface_only = w.tls("origin.test", &[b"h2"]).await;
    preface_only.write_all(PREFACE).await.unwrap();
    preface_only.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let mut after_a_stream = w.tls("origin.test", &[b"h2"]).await;
    let authority = format!("origin.test:{}", w.https_origin.port());
    let fields: [(&[u8], &[u8]); 4] = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.as_bytes()), (b":path", b"/allowed/h2")];
    let answered = h2_exchange(&mut after_a_stream, &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(&fields))]).await;
    assert!(answered.served_by_origin(), "{answered:?}");
    let started = Instant::now();
    let closed = tokio::join!(
        common::closes_within(&mut silent, 6),
        common::closes_within(&mut preface_only, 6),
        common::closes_within(&mut after_a_stream, 6)
    );
    assert_eq!(closed, (true, true, true), "(silent, preface only, after a stream) closed after {:?}", started.elapsed());
    w.still_serves("/allowed/after-silent-h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused_and_audited() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let port = w.http_origin.port();
    let many: String = (0..2000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases = [
        format!("GET /allowed/big HTTP/1.1\r\nHost: origin.test:{port}\r\nX-Big: {}\r\n\r\n", "a".repeat(200 * 1024)),
        format!("GET /allowed/many HTTP/1.1\r\nHost: origin.test:{port}\r\n{many}\r\n"),
        format!("GET /allowed/{} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n", "u".repeat(100 * 1024)),
    ];
    for (i, req) in cases.iter().enumerate() {
        let mut s = w.connect().await;
        let _ = s.write_all(req.as_bytes()).await;
        let out = read_until_close(&mut s, 5).await.unwrap_or_else(|| panic!("case {i}: connection kept open"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 431") || text.is_empty(), "case {i}: {text}");
    }
    assert_eq!(w.origin_lines(), Vec::<(String, String)>::new(), "an oversized head reached the origin");
    let refusals = w.audit().into_iter().filter(|r| r.decision == "deny" && r.status == Some(400)).count();
    assert!(refusals >= 2, "oversized heads must be audited: {:#?}", w.audit());
    w.still_serves("/allowed/after-big").await;
}

/// Heads the framing guard would pass but hyper itself refuses (more
/// header fields than hyper takes, a request target `http::Uri` cannot
/// read) are refused by the guard and audited, instead of getting a 431 or
/// 400 from hyper that nothing records; as many fields as hyper takes, and
/// the odd bytes it does read in a target, are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_hyper_itself_would_refuse_are_refused_and_audited() {
    use boundary_proxy::guard::MAX_HEADERS;
    let w = start(RULES, Duration::from_secs(30)).await;
    let port = w.http_origin.port();
    // Host and Connection, and the rest up to the count.
    let fields = |n: usize| -> String { (2..n).map(|i| format!("X-H{i}: v\r\n")).collect() };
    let get = |target: &str, n: usize| format!("GET {target} HTTP/1.1\r\nHost: origin.test:{port}\r\n{}Connection: close\r\n\r\n", fields(n));
    let refused = [
        ("too many header fields", get("/allowed/many", MAX_HEADERS + 1)),
        ("request target is not a URI", get("other.test/x", 2)),
        ("request target is not a URI", get("/allowed/a<b>", 2)),
        ("request target is not a URI", get("/allowed/a?b=\"c\"", 2)),
    ];
    for (reason, req) in &refused {
        let mut s = w.connect().await;
        s.write_all(req.as_bytes()).await.unwrap();
        let out = read_until_close(&mut s, 5).await.expect("connection kept open");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400") && text.contains(reason), "{req:.60}: {text}");
        let want = format!("malformed request: {reason}");
        let r = w.wait_audit(reason, |r| r.reason.as_deref() == Some(&*want)).await;
        assert_eq!((r.decision.as_str(), r.status), ("deny", Some(400)), "{r:?}");
    }
    assert_eq!(w.audit().len(), refused.len(), "{:#?}", w.audit());
    for target in ["/allowed/full", "/allowed/{\"a\"}|b", "/allowed/q?a=[b]^{c}|`d`"] {
        let mut s = w.connect().await;
        let n = if target == "/allowed/full" { MAX_HEADERS } else { 2 };
        s.write_all(get(target, n).as_bytes()).await.unwrap();
        let out = read_until_close(&mut s, 5).await.expect("connection kept open");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200") && text.contains(&format!("origin saw GET {target}")), "{target}: {text}");
    }
    let seen = w.origin_requests();
    assert_eq!(seen.len(), 3, "{:?}", w.origin_lines());
    assert_eq!(seen[0].headers.len(), MAX_HEADERS - 1, "every field but Connection reaches the origin");
}

/// What hyper's HTTP/1 server, set up as `conn::serve_h1` sets it up, makes
/// of `bytes` (the whole client side of one connection), behind the framing
/// guard or straight off the wire. The service stands in for the sidecar's:
/// it reads each body and answers, closing after a refusal by the guard, a
/// CONNECT or an Upgrade, as the sidecar does. `Err` is how the connection
/// ended: a parse error here is what `serve_h1` audits as "malformed
/// request".
async fn hyper_serves(bytes: Vec<u8>, guarded: bool) -> Result<(), hyper::Error> {
    use boundary_proxy::guard::{GuardIo, GUARD_HEADER, MAX_HEAD};
    use http_body_util::{BodyExt, Full};
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
        let close = req.headers().contains_key(GUARD_HEADER)
            || req.method() == hyper::Method::CONNECT
            || req.headers().contains_key(hyper::header::UPGRADE);
        let _ = req.into_body().collect().await;
        let mut resp = hyper::Response::new(Full::new(bytes::Bytes::from_static(b"served")));
        if close {
            resp.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
        }
        Ok::<_, std::convert::Infallible>(resp)
    });
    let builder = {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.keep_alive(true).max_buf_size(MAX_HEAD + 32 * 1024);
        b
    };
    let conn = tokio::spawn(async move {
        if guarded {
            let io = hyper_util::rt::TokioIo::new(GuardIo::new(server, bytes::BytesMut::new()));
            builder.serve_connection(io, svc).with_upgrades().await
        } else {
            builder.serve_connection(hyper_util::rt::TokioIo::new(server), svc).with_upgrades().await
        }
    });
    client.write_all(&bytes).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answers = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answers)).await;
    assert!(read.is_ok(), "no end to the connection for {:?}", String::from_utf8_lossy(&bytes));
    tokio::time::timeout(Duration::from_secs(5), conn).await.expect("the connection task ends").expect("no panic")
}

/// `conn::serve_h1` audits a request head hyper's parser refuses on its
/// own ("malformed request: ..."): the framing guard refuses what it knows
/// hyper refuses, and this is for whatever it does not know. Searched for
/// such a head, with the guard and the version of hyper in Cargo.lock,
/// there is none: every byte value put in place of, and inserted before,
/// each byte of three request heads (a Content-Length, a chunked and an
/// absolute-form request), and a list of Content-Length,
/// Transfer-Encoding, method and target values. Off the wire these give
/// hyper each of its 400 parse errors; behind the guard, none. (So that
/// audit is a backstop no test reaches; should hyper come to refuse a head
/// the guard passes, this names it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_head_the_guard_passes_is_refused_by_hyper() {
    const HYPER_400S: [&str; 7] = [
        "invalid HTTP method parsed",
        "invalid HTTP header parsed",
        "invalid HTTP version parsed",
        "invalid URI",
        "invalid content-length parsed",
        "invalid transfer-encoding parsed",
        "unexpected transfer-encoding parsed",
    ];
    let templates: [(&[u8], &[u8]); 3] = [
        (b"POST /a?b=c HTTP/1.1\r\nHost: origin.test\r\nX-Y: z\r\nContent-Length: 5\r\n\r\n", b"hello"),
        (b"POST /a HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        (b"GET http://origin.test:80/a HTTP/1.1\r\nHost: origin.test\r\n\r\n", b""),
    ];
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for (head, body) in templates {
        for pos in 0..head.len() {
            for b in 0..=255u8 {
                let mut replaced = head.to_vec();
                replaced[pos] = b;
                let mut inserted = head.to_vec();
                inserted.insert(pos, b);
                for mut case in [replaced, inserted] {
                    case.extend_from_slice(body);
                    cases.push(case);
                }
            }
        }
    }
    for cl in ["", "+5", "-5", "0x5", "5 5", "5,5", "5.0", "05", "18446744073709551615", "99999999999999999999", "\u{a0}5"] {
        cases.push(format!("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nhello").into_bytes());
    }
    for te in ["", "Chunked", " chunked\t", "chunked,", ",chunked", "identity, chunked", "chunked\u{a0}", "\"chunked\""] {
        cases.push(format!("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n").into_bytes());
    }
    for method in ["GET", "get", "M-SEARCH", "CONNECT", "connect", "PRI", "G`T", "G|T", "G~T", "G(T", "G@T"] {
        for target in ["/", "*", "a:1", "origin.test:443", "http://a/", "http://a:99999/", "http://[::1]:80/", "http://a@b/", "//a", "/%zz", "/a#b#c", "/?#", "http://a?x", "a:b", "[::1]", "http://a%20b/", "/\u{e9}"] {
            cases.push(format!("{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes());
        }
    }
    let mut hyper_alone: std::collections::BTreeMap<String, usize> = Default::default();
    let mut past_the_guard = Vec::new();
    for batch in cases.chunks(256) {
        let runs: Vec<_> = batch
            .iter()
            .map(|case| {
                let case = case.clone();
                tokio::spawn(async move { (hyper_serves(case.clone(), false).await, hyper_serves(case.clone(), true).await, case) })
            })
            .collect();
        for run in runs {
            let (alone, guarded, case) = run.await.unwrap();
            if let Some(e) = alone.err().filter(hyper::Error::is_parse) {
                *hyper_alone.entry(e.to_string()).or_default() += 1;
            }
            if let Some(e) = guarded.err().filter(hyper::Error::is_parse) {
                past_the_guard.push(format!("{e}: {:?}", String::from_utf8_lossy(&case)));
            }
        }
    }
    for kind in HYPER_400S {
        assert!(hyper_alone.contains_key(kind), "no case makes hyper answer {kind:?} on its own: {hyper_alone:?}");
    }
    assert!(past_the_guard.is_empty(), "{} heads pass the guard and are refused by hyper:\n{}", past_the_guard.len(), past_the_guard.join("\n"));
}

/// Heads hyper refuses on its own (one for each of its 400 parse errors),
/// each sent on a keep-alive connection behind an allowed request, where
/// the first-bytes sniffer no longer looks: the allowed request is served,
/// the bad head gets one 400 and the connection closes; it is audited once,
/// as "malformed request: ...", with status 400, and never reaches the
/// origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_hyper_refuses_behind_an_allowed_request_are_refused_and_audited_once() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let host = format!("origin.test:{}", w.http_origin.port());
    let bad = [
        ("invalid HTTP method parsed", format!("G(T /allowed/second HTTP/1.1\r\nHost: {host}\r\n\r\n")),
        ("invalid HTTP version parsed", format!("GET /allowed/second HTTP/1.2\r\nHost: {host}\r\n\r\n")),
        ("invalid HTTP header parsed", format!("GET /allowed/second HTTP/1.1\r\nHost: {host}\r\nX(Y: z\r\n\r\n")),
        ("invalid HTTP header parsed", format!("GET /allowed/second HTTP/1.1\r\nHost: {host}\r\nX-Y: a\x7fb\r\n\r\n")),
        ("invalid URI", format!("GET /allowed/<second> HTTP/1.1\r\nHost: {host}\r\n\r\n")),
        ("invalid content-length parsed", format!("POST /allowed/second HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5x\r\n\r\nhello")),
        ("invalid transfer-encoding parsed", format!("POST /allowed/second HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n")),
        ("unexpected transfer-encoding parsed", format!("POST /allowed/second HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")),
    ];
    let first = format!("GET /allowed/first HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for (hyper_says, head) in &bad {
        let alone = hyper_serves(head.clone().into_bytes(), false).await;
        assert_eq!(alone.map_err(|e| e.to_string()), Err(hyper_says.to_string()), "{head:?}");
        let before = w.audit().len();
        let mut s = w.connect().await;
        s.write_all(format!("{first}{head}").as_bytes()).await.unwrap();
        let out = read_until_close(&mut s, 5).await.unwrap_or_else(|| panic!("kept open after {head:?}"));
        let text = String::from_utf8_lossy(&out);
        let answers: Vec<&str> = text.match_indices("HTTP/1.1 ").map(|(i, _)| &text[i..i + 12]).collect();
        assert_eq!(answers, ["HTTP/1.1 200", "HTTP/1.1 400"], "{head:?}: {text}");
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{head:?}: {text}");
        for _ in 0..150 {
            if w.audit().len() >= before + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let new: Vec<_> = w.audit().into_iter().skip(before).collect();
        let denies: Vec<_> = new.iter().filter(|r| r.decision == "deny").collect();
        assert_eq!((new.len(), denies.len()), (2, 1), "{head:?}: {new:#?}");
        assert!(denies[0].reason.as_deref().is_some_and(|x| x.starts_with("malformed request")), "{head:?}: {new:#?}");
        assert_eq!(denies[0].status, Some(400), "{head:?}: {new:#?}");
    }
    let paths: Vec<String> = w.origin_lines().into_iter().map(|(_, p)| p).collect();
    assert_eq!(paths, vec!["/allowed/first".to_owned(); bad.len()], "only the allowed first requests reach the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunked_bodies_never_let_a_second_request_through() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let port = w.http_origin.port();
    let smuggled = format!("GET /allowed/smuggled HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n");
    let bodies = [
        format!("fffffffffffffffffffff\r\nx\r\n0\r\n\r\n{smuggled}"),
        format!("-5\r\nhello\r\n0\r\n\r\n{smuggled}"),
        format!("zz\r\nhello\r\n0\r\n\r\n{smuggled}"),
        format!("5\r\nhelloXX0\r\n\r\n{smuggled}"),
        format!("5\nhello\n0\n\n{smuggled}"),
        format!("5 ;ext=\"a\r\nb\"\r\nhello\r\n0\r\n\r\n{smuggled}"),
        format!("0x5\r\nhello\r\n0\r\n\r\n{smuggled}"),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let mut s = w.connect().await;
        let req = format!("POST /allowed/chunked-{i} HTTP/1.1\r\nHost: origin.test:{port}\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let _ = s.write_all(req.as_bytes()).await;
        let out = read_until_close(&mut s, 5).await.unwrap_or_else(|| panic!("case {i}: connection kept open"));
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("origin saw GET /allowed/smuggled"), "case {i}: {text}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for seen in w.origin_requests() {
        assert_ne!(seen.path, "/allowed/smuggled", "a request smuggled in a chunked body reached the origin");
        assert!(!seen.complete || !String::from_utf8_lossy(&seen.body).contains("smuggled"), "{seen:#?}");
    }
    let bad = w.audit().into_iter().filter(|r| r.status == Some(400)).count();
    assert!(bad >= bodies.len() - 1, "broken chunked bodies must be audited as 400: {:#?}", w.audit());
    w.still_serves("/allowed/after-chunked").await;
}

/// A TLS record holding a handshake message of `body`.
fn record(handshake_type: u8, body: &[u8], claimed_len: Option<usize>) -> Vec<u8> {
    let hs_len = claimed_len.unwrap_or(body.len());
    let mut hs = vec![handshake_type, (hs_len >> 16) as u8, (hs_len >> 8) as u8, hs_len as u8];
    hs.extend_from_slice(body);
    let mut r = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    r.extend_from_slice(&hs);
    r
}

/// A ClientHello body with `extensions` (raw bytes of the extensions block).
fn client_hello(extensions: &[u8]) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&[7u8; 32]);
    b.push(0); // session id
    b.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one suite
    b.extend_from_slice(&[0x01, 0x00]); // null compression
    b.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    b.extend_from_slice(extensions);
    b
}

fn sni_extension(name: &[u8], list_len: Option<u16>, name_len: Option<u16>) -> Vec<u8> {
    let mut entry = vec![0u8];
    entry.extend_from_slice(&name_len.unwrap_or(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name);
    let mut list = list_len.unwrap_or(entry.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&entry);
    let mut ext = vec![0x00, 0x00];
    ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&list);
    ext
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_hellos_are_closed_audited_and_the_proxy_serves_on() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let good_sni = sni_extension(b"origin.test", None, None);
    let full = record(1, &client_hello(&good_sni), None);
    let mut huge_ext = sni_extension(b"origin.test", None, None);
    huge_ext.extend_from_slice(&[0xff, 0x01, 0xff, 0xf0]);
    huge_ext.extend(std::iter::repeat_n(0u8, 0xfff0));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated record", full[..full.len() / 2].to_vec()),
        ("record header only", full[..5].to_vec()),
        ("handshake length beyond the record", record(1, &client_hello(&good_sni), Some(0xffffff))),
        ("extension list length beyond the hello", {
            let mut h = client_hello(&good_sni);
            let n = h.len() - good_sni.len() - 2;
            h[n] = 0xff;
            h[n + 1] = 0xff;
            record(1, &h, None)
        }),
        ("SNI list length lies", record(1, &client_hello(&sni_extension(b"origin.test", Some(500), None)), None)),
        ("SNI name length lies", record(1, &client_hello(&sni_extension(b"origin.test", None, Some(400))), None)),
        ("no SNI", record(1, &client_hello(&[]), None)),
        ("SNI with a NUL", record(1, &client_hello(&sni_extension(b"origin.test\0.evil", None, None)), None)),
        ("SNI not a host name", record(1, &client_hello(&sni_extension(b"origin.test/../x", None, None)), None)),
        ("not a ClientHello", record(2, &client_hello(&good_sni), None)),
        ("huge extension", record(1, &client_hello(&huge_ext), None)),
        ("huge record", {
            let mut r = vec![0x16, 0x03, 0x01, 0xff, 0xff];
            r.extend(std::iter::repeat_n(0x41u8, 0xffff));
            r
        }),
    ];
    for (what, bytes) in &cases {
        let mut s = w.connect().await;
        let _ = s.write_all(bytes).await;
        let _ = s.shutdown().await;
        let out = read_until_close(&mut s, 6).await.unwrap_or_else(|| panic!("{what}: connection kept open"));
        // Anything the proxy sends back is a TLS alert at most, never a
        // ServerHello (a handshake record).
        assert!(out.first().is_none_or(|b| *b != 0x16), "{what}: the proxy answered with a handshake: {out:?}");
    }
    let refused = w.audit().into_iter().filter(|r| r.decision == "deny" && (r.kind == "tls" || r.kind == "tcp")).count();
    assert!(refused >= cases.len() - 3, "malformed ClientHellos must be audited: {:#?}", w.audit());
    assert_eq!(w.origin_lines(), Vec::<(String, String)>::new());
    assert_eq!(w.origin_garbage(), 0);
    w.still_serves("/allowed/after-hellos").await;
}

/// Path confusion through the proxy: what the origin receives, not only
/// what the policy says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_confusion_through_the_proxy_never_reaches_a_denied_path() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let port = w.http_origin.port();
    let denied = [
        "/allowed/..%2Fprivate",
        "/allowed/..%2fprivate",
        "/allowed/../private",
        "/allowed/%2e%2e/private",
        "/allowed/%2E%2E/private",
        "/allowed/.%2e/private",
        "/allowed/..",
        "/allowed/%2F..%2F..%2Fprivate",
        "/allowed%2F..%2Fprivate",
        "/allowed/x/../../private",
        "//allowed/../private",
        "/private/../allowed/../private",
        "/Allowed/x",
        "/allowed",
        "/allowed/%00/../../private",
        // Tomcat and Spring strip `;` parameters before resolving `..`.
        "/allowed/..;/private",
        "/allowed/..;x=1/private",
        "/allowed/%2e%2e;/private",
        "/allowed/.;/../private",
        // Windows and IIS drop trailing dots and spaces.
        "/allowed/.../private",
        "/allowed/..%20/private",
    ];
    for path in denied {
        let mut s = w.connect().await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let out = read_until_close(&mut s, 5).await.expect("answered");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 403") || text.starts_with("HTTP/1.1 400"), "{path} was not refused: {text}");
    }
    // Allowed once resolved, and sent resolved: an origin that routes on
    // the raw path (or resolves `..` its own way) would have served
    // /private for the last three.
    let allowed = [
        ("/allowed/./x", "/allowed/x"),
        ("/allowed/y/../x", "/allowed/x"),
        ("/allowed/%2e/x", "/allowed/x"),
        ("/private/../allowed/x", "/allowed/x"),
        ("/private/%2e%2E/allowed/a%20b?q=/../private", "/allowed/a%20b?q=/../private"),
        ("/private/.%2e/allowed/y/", "/allowed/y/"),
    ];
    for (path, _) in allowed {
        let mut s = w.connect().await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let out = read_until_close(&mut s, 5).await.expect("answered");
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"), "{path}: {}", String::from_utf8_lossy(&out));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen: Vec<String> = w.origin_lines().into_iter().map(|(_, p)| p).collect();
    let expected: Vec<String> = allowed.iter().map(|(_, sent)| sent.to_string()).collect();
    assert_eq!(seen, expected, "the origin must see exactly the resolved paths the rules judged");
    for path in denied {
        let url = format!("http://origin.test:{port}{path}");
        let r = w.wait_audit(path, |r| r.url.as_deref() == Some(&url)).await;
        assert_eq!(r.decision, "deny", "{r:?}");
    }
}

/// Unicode slash look-alikes sent raw (UTF-8), not percent-encoded, in a
/// request the sniffer does not read (the second on a keep-alive
/// connection): an origin that maps them to `/` (IIS's best-fit mapping,
/// NFKC) would read `/allowed/../private`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_slash_lookalikes_in_a_later_request_are_refused() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let port = w.http_origin.port();
    for lookalike in ['\u{FF0F}', '\u{FF3C}', '\u{2215}'] {
        let path = format!("/allowed/..{lookalike}private");
        let mut s = w.connect().await;
        let req = format!(
            "GET /allowed/first HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n\
             GET {path} HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let out = read_until_close(&mut s, 5).await.expect("answered");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: the first request: {text}");
        let second = text.match_indices("HTTP/1.1 ").nth(1).map(|(i, _)| &text[i..]).unwrap_or_else(|| panic!("{path}: no second answer: {text}"));
        assert!(second.starts_with("HTTP/1.1 403"), "{path} was not refused: {second}");
        let url = format!("http://origin.test:{port}{path}");
        let r = w.wait_audit(&path, |r| r.url.as_deref() == Some(&url)).await;
        assert_eq!(r.decision, "deny", "{r:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen: Vec<String> = w.origin_lines().into_iter().map(|(_, p)| p).collect();
    assert_eq!(seen, vec!["/allowed/first"; 3], "the origin must see only the allowed requests");
}

/// CONNECT is refused for a port no rule allows, not only its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_port_no_rule_allows_is_refused() {
    let w = start(&["domain=origin.test port=80,443", "method=GET domain=other.test path=/x"], Duration::from_secs(30)).await;
    for (target, want) in [("origin.test:7000", "403"), ("origin.test:443", "200"), ("other.test:7000", "200"), ("denied.test:443", "403")] {
        let mut s = w.connect().await;
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.expect("answered").unwrap();
        assert_eq!(&buf[9..12], want.as_bytes(), "CONNECT {target}: {}", String::from_utf8_lossy(&buf));
    }
    let r = w.wait_audit("the port refusal", |r| r.url.as_deref() == Some("origin.test:7000")).await;
    assert_eq!((r.decision.as_str(), r.reason.as_deref()), ("deny", Some("no rule allows this port")));
    // The 403 suggests that host on that port, not the host alone (which
    // would open every port).
    let mut s = w.connect().await;
    s.write_all(b"CONNECT origin.test:7000 HTTP/1.1\r\nHost: origin.test:7000\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await.expect("answered and closed").unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("add this rule to BOUNDARY_ALLOW:\n  domain=origin.test port=7000\n"), "{reply}");
}

/// The framing guard stops following a connection at a CONNECT and at any
/// HTTP/1.1 request with an Upgrade header. When the connection does not
/// switch protocols after all (no `Connection: upgrade`, a protocol other
/// than WebSocket, a denial), it must close after the answer: a request
/// sent behind it would otherwise skip the guard's smuggling checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_guard_stopped_following_carries_no_second_request() {
    let w = start(RULES, Duration::from_secs(30)).await;
    let port = w.http_origin.port();
    let host = format!("origin.test:{port}");
    let smuggled = format!("POST /allowed/smuggled HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /allowed/behind HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let firsts = [
        (format!("GET /allowed/no-connection-token HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\r\n"), "HTTP/1.1 200"),
        (format!("GET /private/x HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"), "HTTP/1.1 403"),
        (format!("GET /allowed/h2c HTTP/1.1\r\nHost: {host}\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"), "HTTP/1.1 200"),
        (format!("CONNECT other.test:{port} HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n"), "HTTP/1.1 403"),
    ];
    for (first, status) in &firsts {
        let mut s = w.connect().await;
        let _ = s.write_all(format!("{first}{smuggled}").as_bytes()).await;
        let out = read_until_close(&mut s, 5).await.unwrap_or_else(|| panic!("kept open after {first:?}"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(status), "{first:?}: {text}");
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{first:?}: {text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "a second answer on the same connection: {text}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = w.origin_requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/allowed/no-connection-token", "/allowed/h2c"], "only the first requests may reach the origin");
    // Only WebSocket may switch protocols: the h2c ask went on as an
    // ordinary request, without its Upgrade and HTTP2-Settings.
    for r in &seen {
        assert!(r.headers.iter().all(|(n, _)| n != "upgrade" && n != "http2-settings"), "{:?}", r.headers);
    }
    w.still_serves("/allowed/after-upgrades").await;
}

/// A ClientHello naming an IP address as its server name (rustls never
/// sends one, so this is written by hand): closed before any handshake,
/// audited with that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_address_as_the_tls_server_name_is_refused() {
    let w = start(RULES, Duration::from_secs(30)).await;
    for name in [&b"127.0.0.1"[..], b"10.0.0.1."] {
        let mut s = w.connect().await;
        let _ = s.write_all(&record(1, &client_hello(&sni_extension(name, None, None)), None)).await;
        let out = read_until_close(&mut s, 6).await.expect("connection kept open");
        assert!(out.first().is_none_or(|b| *b != 0x16), "the proxy answered with a handshake: {out:?}");
    }
    let r = w.wait_audit("the IP server name refusal", |r| r.reason.as_deref() == Some("TLS server name is an IP address")).await;
    assert_eq!((r.decision.as_str(), r.kind.as_str()), ("deny", "tls"), "{r:?}");
    assert_eq!(w.origin_lines(), Vec::<(String, String)>::new());
    w.still_serves("/allowed/after-ip-sni").await;
}
