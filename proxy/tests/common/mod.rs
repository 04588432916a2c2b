//! In-process test harness: a host CA and an origin CA made with rcgen,
//! plain and TLS (h2 + http/1.1) origins on 127.0.0.1, and a proxy whose
//! resolver pins the test names to 127.0.0.1.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boundary_contract::{AuditRecord, SidecarConfig};
use boundary_proxy::audit::AuditLog;
use boundary_proxy::ProxyContext;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub const NAMES: &[&str] = &["origin.test", "api.test", "other.test", "sse.test", "dead.test"];

pub struct Ca {
    pub pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

pub fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let key_pem = key.serialize_pem();
    Ca { pem: cert.pem(), key_pem, der: cert.der().clone(), issuer: Issuer::new(params, key) }
}

impl Ca {
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }
}

pub struct Harness {
    pub proxy: SocketAddr,
    pub http_origin: SocketAddr,
    pub https_origin: SocketAddr,
    /// Connections the plain-HTTP origin has accepted.
    pub http_origin_accepts: Arc<AtomicUsize>,
    /// Connections the HTTPS origin has accepted.
    pub https_origin_accepts: Arc<AtomicUsize>,
    pub ctx: Arc<ProxyContext>,
    pub audit_path: PathBuf,
    pub host_ca: CertificateDer<'static>,
    pub dst: Arc<Mutex<Option<SocketAddr>>>,
    pub sse_release: Arc<Notify>,
    /// Requests to `/hold` on either origin.
    pub hold: Arc<Hold>,
    _dir: tempfile::TempDir,
}

/// The origins' `/hold`: the whole request is read, counted, and answered
/// only once `release` is notified.
#[derive(Default)]
pub struct Hold {
    arrived: AtomicUsize,
    arrival: Notify,
    pub release: Notify,
}

impl Hold {
    /// Waits until `n` requests to `/hold` have arrived whole (5 s at most).
    pub async fn arrivals(&self, n: usize) {
        let wait = async {
            loop {
                let arrival = self.arrival.notified();
                if self.arrived.load(Ordering::SeqCst) >= n {
                    return;
                }
                arrival.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("requests to /hold arrive at the origin");
    }
}

pub struct Options {
    pub upstream_enabled: bool,
    pub narrowing: Vec<String>,
    pub header_read_timeout: Duration,
    /// `SidecarConfig::upstream_connect_timeout_ms`.
    pub connect_timeout_ms: Option<u64>,
    /// `SidecarConfig::refuse_private_destinations`.
    pub refuse_private: bool,
    /// The HTTPS origin offers only HTTP/1.1 (ALPN).
    pub origin_h1_only: bool,
    /// `Limits::max_connections`.
    pub max_connections: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            upstream_enabled: true,
            narrowing: Vec::new(),
            header_read_timeout: Duration::from_secs(30),
            connect_timeout_ms: None,
            refuse_private: false,
            origin_h1_only: false,
            max_connections: boundary_proxy::Limits::default().max_connections,
        }
    }
}

pub async fn start(rules: &[&str]) -> Harness {
    start_with(rules, Options::default()).await
}

pub async fn start_with(rules: &[&str], opts: Options) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let host_ca = make_ca("test host CA");
    let origin_ca = make_ca("test origin CA");
    let sse_release = Arc::new(Notify::new());
    let hold = Arc::new(Hold::default());
    let (http_origin, http_origin_accepts) = spawn_origin(None, sse_release.clone(), hold.clone()).await;
    let acceptor = origin_tls(&origin_ca, opts.origin_h1_only);
    let (https_origin, https_origin_accepts) = spawn_origin(Some(acceptor), sse_release.clone(), hold.clone()).await;

    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cfg = SidecarConfig {
        container_id: "test-container".into(),
        netns: None,
        bind_only_in_netns: false,
        listen_addr: "127.0.0.1".parse().unwrap(),
        proxy_port: 0,
        dns_port: 0,
        rules: rules.iter().map(|s| s.to_string()).collect(),
        narrowing_rules: opts.narrowing,
        narrow_dir: None,
        ca_cert: write("ca.pem", &host_ca.pem),
        ca_key: write("ca.key", &host_ca.key_pem),
        upstream_system_roots: false,
        upstream_ca_files: vec![write("origin-ca.pem", &origin_ca.pem)],
        system_roots_file: None,
        pinned_hosts: NAMES.iter().map(|n| (n.to_string(), "127.0.0.1".parse().unwrap())).collect(),
        upstream_enabled: opts.upstream_enabled,
        allow_special_destinations: false,
        refuse_private_destinations: opts.refuse_private,
        upstream_connect_timeout_ms: opts.connect_timeout_ms,
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
    let dst = Arc::new(Mutex::new(None));
    let d = dst.clone();
    ctx.original_dst = Arc::new(move |_| *d.lock().unwrap());
    ctx.limits.sniff_timeout = Duration::from_secs(2);
    ctx.limits.header_read_timeout = opts.header_read_timeout;
    ctx.limits.max_connections = opts.max_connections;
    let ctx = Arc::new(ctx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(boundary_proxy::serve_proxy(listener, ctx.clone()));
    Harness {
        proxy,
        http_origin,
        https_origin,
        http_origin_accepts,
        https_origin_accepts,
        ctx,
        audit_path: cfg.audit_log,
        host_ca: host_ca.der,
        dst,
        sse_release,
        hold,
        _dir: dir,
    }
}

impl Harness {
    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.proxy).await.unwrap()
    }

    /// A TLS client trusting only the host CA.
    pub fn tls(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.host_ca.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        TlsConnector::from(Arc::new(cfg))
    }

    pub async fn tls_connect(&self, sni: &str, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = self.connect().await;
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        self.tls(alpn).connect(name, tcp).await.unwrap()
    }

    pub fn audit(&self) -> Vec<AuditRecord> {
        self.ctx.audit.flush();
        std::fs::read_to_string(&self.audit_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (briefly) until the audit log has a record matching `f`.
    pub async fn wait_audit(&self, f: impl Fn(&AuditRecord) -> bool) -> AuditRecord {
        for _ in 0..100 {
            if let Some(r) = self.audit().into_iter().find(|r| f(r)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no matching audit record in {:#?}", self.audit());
    }
}

fn origin_tls(ca: &Ca, h1_only: bool) -> TlsAcceptor {
    let (chain, key) = ca.leaf(NAMES);
    let mut cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    cfg.alpn_protocols = if h1_only { vec![b"http/1.1".to_vec()] } else { vec![b"h2".to_vec(), b"http/1.1".to_vec()] };
    TlsAcceptor::from(Arc::new(cfg))
}

type OriginBody = BoxBody<Bytes, Infallible>;

async fn spawn_origin(tls: Option<TlsAcceptor>, release: Arc<Notify>, hold: Arc<Hold>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            let release = release.clone();
            let hold = hold.clone();
            tokio::spawn(async move {
                let scheme = if tls.is_some() { "https" } else { "http" };
                let svc = service_fn(move |req| origin(req, scheme, release.clone(), hold.clone()));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(tcp).await {
                            let _ = builder.serve_connection_with_upgrades(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    (addr, accepts)
}

/// The origin: `/sse` streams two events (the second after `release`),
/// `/ws` echoes WebSocket messages, `/echo` streams the request body back
/// as it arrives, `/slow` answers after 300 ms, `/hold` once the test lets
/// it ([`Hold`]), anything else describes the request.
async fn origin(mut req: Request<Incoming>, scheme: &'static str, release: Arc<Notify>, hold: Arc<Hold>) -> Result<Response<OriginBody>, Infallible> {
    match req.uri().path() {
        "/sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"data: one\n\n")))).await;
                release.notified().await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"data: two\n\n")))).await;
            });
            let stream = tokio_stream_from(rx);
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            resp.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            Ok(resp)
        }
        "/echo" => Ok(Response::new(BodyExt::boxed(EchoBody(req.into_body())))),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(text(200, "slow".into()))
        }
        "/hold" => {
            let len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(usize::MAX);
            let released = hold.release.notified();
            hold.arrived.fetch_add(1, Ordering::SeqCst);
            hold.arrival.notify_waiters();
            released.await;
            Ok(text(200, format!("held len={len}")))
        }
        "/ws" => {
            let key = req.headers().get("sec-websocket-key").cloned();
            let Some(key) = key else { return Ok(text(400, "no key".into())) };
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let on_up = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on_up.await else { return };
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                let (mut sink, mut stream) = ws.split();
                while let Some(Ok(msg)) = stream.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = sink.send(msg).await;
                    }
                }
            });
            let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::new())));
            *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert("upgrade", "websocket".parse().unwrap());
            h.insert("connection", "upgrade".parse().unwrap());
            h.insert("sec-websocket-accept", accept.parse().unwrap());
            Ok(resp)
        }
        _ => {
            let method = req.method().clone();
            let version = req.version();
            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let host = req
                .headers()
                .get("host")
                .map(|h| h.to_str().unwrap().to_owned())
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            let hop = req.headers().contains_key("x-hop") || req.headers().contains_key("keep-alive");
            let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(usize::MAX);
            Ok(text(200, format!("origin {scheme} {version:?} {method} {path} host={host} len={body} hop={hop}")))
        }
    }
}

/// A request body passed back as the response body, frame by frame.
struct EchoBody(Incoming);

impl hyper::body::Body for EchoBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match std::pin::Pin::new(&mut self.get_mut().0).poll_frame(cx) {
            std::task::Poll::Ready(Some(Ok(f))) => std::task::Poll::Ready(Some(Ok(f))),
            std::task::Poll::Ready(_) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn text(status: u16, body: String) -> Response<OriginBody> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp
}

/// One parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one response (Content-Length, chunked, or until close).
pub async fn read_response<R: AsyncBufRead + Unpin>(r: &mut R) -> Option<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).await.ok()?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = get("content-length") {
        let mut b = vec![0; len.parse().ok()?];
        r.read_exact(&mut b).await.ok()?;
        body = b;
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut b = vec![0; n + 2];
            r.read_exact(&mut b).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&b[..n]);
        }
    } else if status != 101 && status != 204 && status != 304 && !(200..300).contains(&status) || get("connection").as_deref() == Some("close") {
        r.read_to_end(&mut body).await.ok()?;
    }
    Some(Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Whether the peer closes the stream within `secs` (reading and
/// discarding anything it sends first).
pub async fn closes_within<R: tokio::io::AsyncRead + Unpin>(r: &mut R, secs: u64) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}
