//! Connections to the real servers: the sidecar resolves the request's host
//! itself (never the container's chosen address), connects within a limit
//! (10 s unless configured), speaks TLS with the configured roots and picks HTTP/2 or
//! HTTP/1.1 by ALPN. Connections are pooled across all client connections.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::coalesce::{LiveH2, Origins, ProbeGuard};
use crate::readahead::{ReadAhead, TLS_READ_AHEAD};
use crate::resolve::{ResolveError, Resolver};
use crate::response::ProxyBody;

/// Default limit for resolve + TCP connect + TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a request waits for another's handshake to the same origin
/// before it connects itself (`crate::coalesce`): longer than a healthy
/// handshake, short enough that a blackholed origin fails a waiting
/// request after at most this plus the connect timeout.
const PROBE_WAIT_MAX: Duration = Duration::from_secs(2);
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Idle upstream connections kept per origin: as many as the client
/// connections the sidecar serves at once, so a steady number of requests
/// in flight never churns connections. With a smaller cap, each response
/// beyond it closed its connection and the next request opened a new one:
/// at 250 requests in flight to one plain-HTTP origin that was hundreds
/// of closes a second, each leaving a TIME_WAIT port behind on the host,
/// until `connect` failed with EADDRNOTAVAIL (the `load` test, once, on a
/// busy machine). Idle connections still close after [`POOL_IDLE`].
const POOL_MAX_IDLE_PER_HOST: usize = crate::context::MAX_CONNECTIONS;
/// Upstream connections one worker holds at once, idle ones in the pool
/// included: as many as the client connections it serves. Without a cap a
/// container could open one per name under a wildcard rule, or one per
/// HTTP/2 stream to a slow HTTP/1.1 origin (4096 connections of 256
/// streams), and run the host out of ports to a destination. A request
/// beyond it waits for a connection to close, within the connect timeout.
pub const MAX_UPSTREAM_CONNECTIONS: usize = crate::context::MAX_CONNECTIONS;

/// Why an upstream connection failed (shown in the 502 body).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("request URI has no host")]
    NoHost,
    #[error("resolving the upstream host")]
    Resolve(#[source] ResolveError),
    #[error("connecting to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {host}")]
    Tls {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host:?} is not a valid TLS server name")]
    ServerName { host: String },
    #[error("upstream connection timed out after {}", seconds(*.0))]
    Timeout(Duration),
    #[error("the sidecar already holds its most upstream connections ({max}), and none closed within {}", seconds(*.waited))]
    TooMany { max: usize, waited: Duration },
}

/// `2.5 s`, `10 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// How one upstream request may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Offer only HTTP/1.1 (needed to forward an Upgrade).
    pub h1_only: bool,
    /// The allowing rule names this exact IP literal: special addresses OK.
    pub explicit_ip: bool,
}

/// Pooled HTTP clients, one per [`Route`] flavour.
#[derive(Clone)]
pub struct Upstream {
    tls: Arc<TlsClients>,
    clients: Arc<[Client<Connector, ProxyBody>; 4]>,
    /// What is known of HTTPS origins, so a burst makes one handshake.
    origins: Arc<Origins>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// Builds the upstream TLS client configuration (the trust anchors).
pub type BuildTls = Box<dyn FnOnce() -> rustls::ClientConfig + Send>;

/// The upstream TLS connectors, built on first use or by
/// [`Upstream::warm_in_background`], whichever comes first: parsing the
/// system roots was half of a worker's start, and no container needs them
/// before its first HTTPS request.
struct TlsClients {
    /// A thread was started to build them ([`Upstream::warm_in_background`]).
    warming: AtomicBool,
    build: Mutex<Option<BuildTls>>,
    /// The configured CA files alone: used only if `build` is gone, which
    /// takes a build that panicked.
    fallback: rustls::ClientConfig,
    /// `[h2 and http/1.1, http/1.1 only]` by ALPN.
    built: OnceLock<[TlsConnector; 2]>,
}

impl TlsClients {
    fn connector(&self, h1_only: bool) -> &TlsConnector {
        let both = self.built.get_or_init(|| {
            let build = self.build.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            let base = build.map_or_else(|| self.fallback.clone(), |b| b());
            let alpn = |protocols: &[&[u8]]| {
                let mut cfg = base.clone();
                cfg.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
                TlsConnector::from(Arc::new(cfg))
            };
            [alpn(&[b"h2", b"http/1.1"]), alpn(&[b"http/1.1"])]
        });
        &both[usize::from(h1_only)]
    }
}

impl Upstream {
    /// `build` makes the client configuration (roots) when it is first
    /// needed; ALPN is set here. `connect_timeout` limits each connection
    /// (resolve, TCP connect, TLS handshake).
    pub fn new(resolver: Arc<Resolver>, fallback: rustls::ClientConfig, build: BuildTls, connect_timeout: Duration) -> Upstream {
        Upstream::with_cap(resolver, fallback, build, connect_timeout, MAX_UPSTREAM_CONNECTIONS)
    }

    /// [`Upstream::new`] with at most `cap` upstream connections at once.
    fn with_cap(resolver: Arc<Resolver>, fallback: rustls::ClientConfig, build: BuildTls, connect_timeout: Duration, cap: usize) -> Upstream {
        let tls = Arc::new(TlsClients { warming: AtomicBool::new(false), build: Mutex::new(Some(build)), fallback, built: OnceLock::new() });
        let origins = Arc::new(Origins::default());
        let open = Arc::new(tokio::sync::Semaphore::new(cap));
        let make = |h1_only: bool, explicit_ip: bool| {
            let connector = Connector {
                resolver: resolver.clone(),
                tls: tls.clone(),
                h1_only,
                explicit_ip,
                timeout: connect_timeout,
                origins: origins.clone(),
                open: open.clone(),
                cap,
            };
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .http2_keep_alive_interval(Duration::from_secs(30))
                .build(connector)
        };
        let clients = Arc::new([make(false, false), make(false, true), make(true, false), make(true, true)]);
        Upstream { tls, clients, origins, connect_timeout }
    }

    /// Starts building the TLS configuration (parsing the roots) on a thread
    /// of its own the first time it is called; later calls cost one atomic
    /// load. A request that needs it first builds it itself or waits for
    /// this thread. Called when the container first shows it may go out (a
    /// proxy connection, an allowed name resolved), so the roots are parsed
    /// while the client's own handshake and request are still on their way,
    /// and a container that never connects (a short job, a health check)
    /// never pays for them: at start they competed for the CPU with the
    /// runtime starting the container.
    pub fn warm_in_background(&self) {
        if self.tls.warming.load(Ordering::Relaxed) || self.tls.warming.swap(true, Ordering::Relaxed) {
            return;
        }
        let tls = self.tls.clone();
        if let Err(e) = std::thread::Builder::new().name("tls-roots".into()).spawn(move || {
            tls.connector(false);
        }) {
            log::warn!("parsing the TLS roots ahead of use: {e}; the first HTTPS request will");
        }
    }

    /// Whether the TLS configuration is built.
    #[cfg(test)]
    fn is_warm(&self) -> bool {
        self.tls.built.get().is_some()
    }

    /// Call before an HTTPS request to `authority` goes out on `route`'s
    /// client: waits while another request's connection to the origin,
    /// which may turn out HTTP/2 and carry this one too, is being made
    /// (`crate::coalesce`). Keep what it returns until the answer is in.
    pub async fn before_https_request(&self, route: Route, authority: &str) -> Option<ProbeGuard> {
        if route.h1_only {
            return None; // offers only HTTP/1.1: one connection per request
        }
        self.origins.before_request(route.explicit_ip, authority, self.connect_timeout.min(PROBE_WAIT_MAX)).await
    }

    /// The client for `route`.
    pub fn client(&self, route: Route) -> &Client<Connector, ProxyBody> {
        &self.clients[usize::from(route.h1_only) * 2 + usize::from(route.explicit_ip)]
    }
}

/// The tower connector used by the pooled clients.
#[derive(Clone)]
pub struct Connector {
    resolver: Arc<Resolver>,
    tls: Arc<TlsClients>,
    h1_only: bool,
    explicit_ip: bool,
    timeout: Duration,
    origins: Arc<Origins>,
    /// [`MAX_UPSTREAM_CONNECTIONS`], shared by the four clients.
    open: Arc<tokio::sync::Semaphore>,
    cap: usize,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamIo>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let limit = this.timeout;
            let Ok(Ok(permit)) = tokio::time::timeout(limit, this.open.clone().acquire_owned()).await else {
                return Err(ConnectError::TooMany { max: this.cap, waited: limit });
            };
            match tokio::time::timeout(limit, this.connect(uri)).await {
                Ok(res) => res.map(|io| TokioIo::new(io.holding(permit))),
                Err(_) => Err(ConnectError::Timeout(limit)),
            }
        })
    }
}

impl Connector {
    async fn connect(self, uri: Uri) -> Result<UpstreamIo, ConnectError> {
        let host = uri.host().ok_or(ConnectError::NoHost)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addrs = self.resolver.resolve(host, self.explicit_ip).await.map_err(ConnectError::Resolve)?;
        let tcp = connect_any(&addrs, port).await?;
        if !tls {
            return Ok(UpstreamIo::new(Stream::Plain(tcp)));
        }
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::ServerName { host: host.to_owned() })?,
        };
        let handshake = self.tls.connector(self.h1_only).connect(name, ReadAhead::new(tcp, TLS_READ_AHEAD)).await;
        // Ends the origin's probe either way (`crate::coalesce`); the pool
        // key's authority is the URI's, as the request's was.
        let authority = uri.authority().map_or("", |a| a.as_str());
        let learned = |h2| if self.h1_only { None } else { self.origins.connected(self.explicit_ip, authority, h2) };
        match handshake {
            Ok(stream) => {
                let live = learned(Some(stream.get_ref().1.alpn_protocol() == Some(b"h2")));
                Ok(UpstreamIo::new(Stream::Tls(Box::new(stream), live)))
            }
            Err(source) => {
                learned(None);
                Err(ConnectError::Tls { host: host.to_owned(), source })
            }
        }
    }
}

/// Tries each address in order; the last error is reported.
async fn connect_any(addrs: &[IpAddr], port: u16) -> Result<TcpStream, ConnectError> {
    let mut last = None;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(source) => last = Some(ConnectError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or(ConnectError::NoHost))
}

/// A plain or TLS upstream stream, holding its place among the worker's
/// [`MAX_UPSTREAM_CONNECTIONS`] while it is open.
pub struct UpstreamIo {
    stream: Stream,
    _open: Option<tokio::sync::OwnedSemaphorePermit>,
}

enum Stream {
    Plain(TcpStream),
    /// With the count of open HTTP/2 connections it is part of, held for
    /// its drop.
    Tls(Box<TlsStream<ReadAhead<TcpStream>>>, #[allow(dead_code)] Option<LiveH2>),
}

impl UpstreamIo {
    fn new(stream: Stream) -> UpstreamIo {
        UpstreamIo { stream, _open: None }
    }

    fn holding(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> UpstreamIo {
        self._open = Some(permit);
        self
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        match &self.stream {
            Stream::Plain(_) => Connected::new(),
            Stream::Tls(s, _) if s.get_ref().1.alpn_protocol() == Some(b"h2") => Connected::new().negotiated_h2(),
            Stream::Tls(..) => Connected::new(),
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, b),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, b),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s, _) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The most specific reason in an upstream error chain, for a 502 body.
pub fn failure_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut found = false;
    while let Some(e) = cur {
        if e.downcast_ref::<ConnectError>().is_some() {
            found = true;
        }
        if found {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&e.to_string());
        }
        cur = e.source();
    }
    if found {
        reason
    } else {
        let mut all = err.to_string();
        let mut cur = err.source();
        while let Some(e) = cur {
            all.push_str(": ");
            all.push_str(&e.to_string());
            cur = e.source();
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    fn client_config() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    }

    /// Busy and idle upstream connections count against the cap; a request
    /// that would need one more waits the connect timeout and fails with a
    /// reason, and the origin never sees it. One to an origin with an idle
    /// pooled connection reuses it.
    #[tokio::test(flavor = "current_thread")]
    async fn upstream_connections_are_capped() {
        use http_body_util::BodyExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let mut released = released.clone();
                tokio::spawn(async move {
                    loop {
                        let mut buf = [0u8; 4096];
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let _ = released.wait_for(|r| *r).await;
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                    }
                });
            }
        });
        let local = IpAddr::from([127, 0, 0, 1]);
        let pins = ["a.test", "b.test", "c.test"].iter().map(|n| (n.to_string(), local)).collect();
        let resolver = Resolver::new(pins, Some(vec![local]), true, Vec::new()).unwrap();
        let up = Upstream::with_cap(Arc::new(resolver), client_config(), Box::new(client_config), Duration::from_millis(300), 2);
        let get = |host: &str| {
            let req = hyper::Request::get(format!("http://{host}:{port}/")).body(crate::response::empty()).unwrap();
            let client = up.client(Route { h1_only: true, explicit_ip: false }).clone();
            async move {
                match client.request(req).await {
                    Ok(resp) => Ok(resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default()),
                    Err(e) => Err(failure_reason(&e)),
                }
            }
        };
        let (a, b) = (tokio::spawn(get("a.test")), tokio::spawn(get("b.test")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let c = get("c.test").await.unwrap_err();
        assert!(c.contains("most upstream connections (2)"), "{c}");
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited for a connection to close");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the origin saw the third connection");
        release.send(true).unwrap();
        assert_eq!(&a.await.unwrap().unwrap()[..], b"ok");
        assert_eq!(&b.await.unwrap().unwrap()[..], b"ok");
        // Idle in the pool, both still count; a.test's is reused.
        assert_eq!(&get("a.test").await.unwrap()[..], b"ok");
        assert!(get("c.test").await.unwrap_err().contains("most upstream connections"));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn roots_are_built_once_and_only_once_asked_for() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counted = builds.clone();
        let resolver = Resolver::new(Default::default(), Some(vec![IpAddr::from([127, 0, 0, 1])]), false, Vec::new()).unwrap();
        let build: BuildTls = Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            client_config()
        });
        let up = Upstream::new(Arc::new(resolver), client_config(), build, CONNECT_TIMEOUT);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!up.is_warm(), "nothing is parsed before the container shows it may go out");
        for _ in 0..3 {
            up.warm_in_background();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !up.is_warm() {
            assert!(Instant::now() < deadline, "the background build never finished");
            std::thread::sleep(Duration::from_millis(1));
        }
        up.tls.connector(true);
        assert_eq!(builds.load(Ordering::SeqCst), 1, "built once, by one thread");
    }
}
