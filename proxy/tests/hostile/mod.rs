//! Harness for hostile-client tests: a proxy in front of a *recording*
//! HTTP/1.1 origin (plain and TLS offering only `http/1.1`), which keeps
//! every request head it parsed and answers each one, and a raw HTTP/2
//! client that writes frames by hand (so it can send what a well-behaved
//! HTTP/2 library refuses to).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boundary_contract::{AuditRecord, SidecarConfig};
use boundary_proxy::audit::AuditLog;
use boundary_proxy::ProxyContext;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::common::make_ca;

/// One request as the origin parsed it off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Header names lowercased, values as bytes (lossy).
    pub headers: Vec<(String, String)>,
    /// The body as received (de-chunked when chunked).
    pub body: Vec<u8>,
    /// Whether the whole body arrived before the connection ended.
    pub complete: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What reached the origin.
#[derive(Debug, Default)]
pub struct OriginLog {
    pub requests: Vec<Seen>,
    /// Bytes the origin could not parse as a request head.
    pub garbage: Vec<Vec<u8>>,
}

pub struct World {
    pub proxy: SocketAddr,
    pub http_origin: SocketAddr,
    pub https_origin: SocketAddr,
    pub ctx: Arc<ProxyContext>,
    pub origin: Arc<Mutex<OriginLog>>,
    audit_path: PathBuf,
    host_ca: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

/// The names the proxy pins to 127.0.0.1.
pub const NAMES: &[&str] = &["origin.test", "other.test"];

pub async fn start(rules: &[&str], header_read_timeout: Duration) -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let host_ca = make_ca("hostile host CA");
    let origin_ca = make_ca("hostile origin CA");
    let log = Arc::new(Mutex::new(OriginLog::default()));
    let http_origin = spawn_origin(None, log.clone()).await;
    let (chain, key) = origin_ca.leaf(NAMES);
    let mut tls = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let https_origin = spawn_origin(Some(TlsAcceptor::from(Arc::new(tls))), log.clone()).await;
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cfg = SidecarConfig {
        container_id: "hostile".into(),
        netns: None,
        bind_only_in_netns: false,
        listen_addr: "127.0.0.1".parse().unwrap(),
        proxy_port: 0,
        dns_port: 0,
        rules: rules.iter().map(|s| s.to_string()).collect(),
        narrowing_rules: Vec::new(),
        narrow_dir: None,
        ca_cert: write("ca.pem", &host_ca.pem),
        ca_key: write("ca.key", &host_ca.key_pem),
        upstream_system_roots: false,
        upstream_ca_files: vec![write("origin-ca.pem", &origin_ca.pem)],
        system_roots_file: None,
        pinned_hosts: NAMES.iter().map(|n| (n.to_string(), "127.0.0.1".parse().unwrap())).collect(),
        upstream_enabled: true,
        allow_special_destinations: false,
        refuse_private_destinations: false,
        upstream_connect_timeout_ms: None,
        rules_in: None,
        config_generation: 0,
        upstream_resolvers: Some(vec!["127.0.0.1".parse().unwrap()]),
        audit_log: dir.path().join("audit.jsonl"),
        audit_max_bytes: None,
        uid: 0,
        gid: 0,
        pid_file: dir.path().join("pids"),
        orphan_watch: None,
    };
    let file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&cfg.audit_log).unwrap();
    let audit = AuditLog::open(file, &cfg.container_id).unwrap();
    let mut ctx = ProxyContext::from_config(&cfg, audit).unwrap();
    ctx.original_dst = Arc::new(|_| None);
    ctx.limits.sniff_timeout = Duration::from_secs(2);
    ctx.limits.handshake_timeout = Duration::from_secs(2);
    ctx.limits.header_read_timeout = header_read_timeout;
    let ctx = Arc::new(ctx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(boundary_proxy::serve_proxy(listener, ctx.clone()));
    World { proxy, http_origin, https_origin, ctx, origin: log, audit_path: cfg.audit_log, host_ca: host_ca.der, _dir: dir }
}

impl World {
    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.proxy).await.unwrap()
    }

    /// TLS to the proxy for `sni` offering `alpn`, trusting the host CA.
    pub async fn tls(&self, sni: &str, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.host_ca.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        TlsConnector::from(Arc::new(cfg)).connect(name, self.connect().await).await.unwrap()
    }

    pub fn audit(&self) -> Vec<AuditRecord> {
        self.ctx.audit.flush();
        std::fs::read_to_string(&self.audit_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Waits (briefly) for an audit record matching `f`.
    pub async fn wait_audit(&self, what: &str, f: impl Fn(&AuditRecord) -> bool) -> AuditRecord {
        for _ in 0..150 {
            if let Some(r) = self.audit().into_iter().find(|r| f(r)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no audit record for {what} in {:#?}", self.audit());
    }

    /// (method, path) of every request the origin parsed, in order.
    pub fn origin_lines(&self) -> Vec<(String, String)> {
        self.origin.lock().unwrap().requests.iter().map(|s| (s.method.clone(), s.path.clone())).collect()
    }

    pub fn origin_requests(&self) -> Vec<Seen> {
        self.origin.lock().unwrap().requests.clone()
    }

    pub fn origin_garbage(&self) -> usize {
        self.origin.lock().unwrap().garbage.len()
    }

    /// Proves the proxy still serves: a fresh plain-HTTP GET for an allowed
    /// path gets the origin's answer.
    pub async fn still_serves(&self, path: &str) {
        let mut s = self.connect().await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: origin.test:{}\r\nConnection: close\r\n\r\n", self.http_origin.port());
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("proxy answers in time").unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "the proxy no longer serves {path}: {text}");
        assert!(text.contains(&format!("origin saw GET {path}")), "{text}");
    }
}

async fn spawn_origin(tls: Option<TlsAcceptor>, log: Arc<Mutex<OriginLog>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, log) = (tls.clone(), log.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(tcp).await {
                            record_connection(s, log).await;
                        }
                    }
                    None => record_connection(tcp, log).await,
                }
            });
        }
    });
    addr
}

/// Reads requests off one connection, records each and answers
/// `origin saw METHOD PATH`; stops at anything it cannot parse.
async fn record_connection<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, log: Arc<Mutex<OriginLog>>) {
    let mut buf = Vec::new();
    loop {
        let (mut seen, framing, used) = loop {
            match parse_head(&buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(()) => {
                    log.lock().unwrap().garbage.push(buf);
                    return;
                }
            }
            if !read_more(&mut s, &mut buf).await {
                if !buf.is_empty() {
                    log.lock().unwrap().garbage.push(buf);
                }
                return;
            }
        };
        buf.drain(..used);
        let complete = match framing {
            Body::Length(n) => read_length(&mut s, &mut buf, n, &mut seen.body).await,
            Body::Chunked => read_chunked(&mut s, &mut buf, &mut seen.body).await,
        };
        seen.complete = complete;
        let answer = format!("origin saw {} {}\n", seen.method, seen.path);
        log.lock().unwrap().requests.push(seen);
        if !complete {
            return;
        }
        let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

enum Body {
    Length(usize),
    Chunked,
}

async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<(Seen, Body, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let headers: Vec<(String, String)> =
        req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())).collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.trim().parse().ok()).unwrap_or(0);
    let seen = Seen {
        method: req.method.unwrap_or_default().to_owned(),
        path: req.path.unwrap_or_default().to_owned(),
        headers,
        body: Vec::new(),
        complete: false,
    };
    Ok(Some((seen, if chunked { Body::Chunked } else { Body::Length(length) }, used)))
}

async fn read_length<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, n: usize, body: &mut Vec<u8>) -> bool {
    while buf.len() < n {
        if !read_more(s, buf).await {
            body.append(buf);
            return false;
        }
    }
    body.extend(buf.drain(..n));
    true
}

async fn read_chunked<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, body: &mut Vec<u8>) -> bool {
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if !read_more(s, buf).await {
                return false;
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16) else { return false };
        buf.drain(..line_end + 2);
        if size == 0 {
            // trailers: until an empty line
            loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.drain(..i + 2);
                    if i == 0 {
                        return true;
                    }
                    continue;
                }
                if !read_more(s, buf).await {
                    return false;
                }
            }
        }
        while buf.len() < size + 2 {
            if !read_more(s, buf).await {
                return false;
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

// ---- a raw HTTP/2 client ----

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut n: usize) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// An HPACK header block of literal fields without indexing, raw strings
/// (no Huffman): whatever bytes the test wants on the wire.
pub fn hpack(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// How the proxy answered stream 1.
#[derive(Debug, Default)]
pub struct H2Outcome {
    pub response_headers: bool,
    /// First byte of the response header block (0x88: `:status: 200`
    /// from the static table).
    pub first_header_byte: Option<u8>,
    pub data: Vec<u8>,
    pub rst: Option<u32>,
    pub goaway: bool,
    pub closed: bool,
}

impl H2Outcome {
    /// The origin's answer came back.
    pub fn served_by_origin(&self) -> bool {
        String::from_utf8_lossy(&self.data).contains("origin saw")
    }
}

/// Sends the preface, an empty SETTINGS and `frames` (for stream 1), then
/// reads until stream 1 ends, is reset, the connection goes away, or 5 s.
pub async fn h2_exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, frames: &[Vec<u8>]) -> H2Outcome {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for f in frames {
        out.extend_from_slice(f);
    }
    s.write_all(&out).await.unwrap();
    let mut o = H2Outcome::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut head = [0u8; 9];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                o.closed = true;
                return o;
            }
            Err(_) => return o,
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if tokio::time::timeout_at(deadline, s.read_exact(&mut payload)).await.map(|r| r.is_err()).unwrap_or(true) {
            o.closed = true;
            return o;
        }
        match (kind, stream) {
            (SETTINGS, 0) if flags & 1 == 0 => {
                let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
            }
            (PING, 0) if flags & 1 == 0 => {
                let _ = s.write_all(&frame(PING, 1, 0, &payload)).await;
            }
            (GOAWAY, _) => {
                o.goaway = true;
                return o;
            }
            (HEADERS, 1) => {
                if !o.response_headers {
                    o.first_header_byte = payload.first().copied();
                }
                o.response_headers = true;
                if flags & END_STREAM != 0 {
                    return o;
                }
            }
            (DATA, 1) => {
                o.data.extend_from_slice(&payload);
                if flags & END_STREAM != 0 {
                    return o;
                }
            }
            (RST_STREAM, 1) => {
                o.rst = payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                return o;
            }
            _ => {}
        }
    }
}
