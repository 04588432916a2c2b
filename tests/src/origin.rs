//! The origin: the "internet" of one test, in a network namespace of its own.
//!
//! `bto-<pid>-<slot>` is linked to the host by a veth: host end
//! `10.231.<slot>.1/30` and `fd00:231:<slot>::1/64`, origin end `.2` / `::2`.
//! A thread that entered the namespace runs, on its own tokio runtime:
//! - HTTP on :80 and HTTPS on :443 (h1 and h2; a certificate for
//!   `origin.test` and `*.origin.test` signed by a test CA, written to
//!   [`Origin::ca_file`]), answering `origin saw <METHOD> <path?query>`;
//! - DNS on :53 (UDP and TCP) that counts queries and answers, over UDP,
//!   only the names of [`Origin::upstream_names`] (silence for everything
//!   else, as from a resolver that is not there);
//! - a sink on :7000 counting UDP datagrams and TCP connections;
//! - raw ICMP and ICMPv6 sockets counting echo requests.
//!
//! Nothing but the sidecar should ever reach it, and the sidecar only with
//! requests the rules allow. Drop stops the thread and deletes the
//! namespace (which deletes the veth).

use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::socket::{socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use tempfile::TempDir;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, UdpSocket};

use crate::require::require_tool;

pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;
pub const DNS_PORT: u16 = 53;
pub const SINK_PORT: u16 = 7000;
/// The names the origin's certificate is valid for.
pub const ORIGIN_NAMES: [&str; 2] = ["origin.test", "*.origin.test"];
/// Answered by the origin's DNS server with the origin's own address.
pub const UPSTREAM_ORIGIN_NAME: &str = "origin.upstream.test";
/// Answered by the origin's DNS server with 127.0.0.1 (rebinding to loopback).
pub const UPSTREAM_LOOPBACK_NAME: &str = "loopback.upstream.test";
/// Answered by the origin's DNS server with 169.254.169.254 (cloud metadata).
pub const UPSTREAM_METADATA_NAME: &str = "metadata.upstream.test";

/// What reached the origin so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub http_requests: u64,
    pub https_requests: u64,
    pub dns_queries: u64,
    pub sink_udp_datagrams: u64,
    pub sink_tcp_connections: u64,
    pub icmp_echo_requests: u64,
}

#[derive(Debug, Default)]
struct Counters {
    http: AtomicU64,
    https: AtomicU64,
    dns: AtomicU64,
    sink_udp: AtomicU64,
    sink_tcp: AtomicU64,
    icmp: AtomicU64,
    requests: Mutex<Vec<String>>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::SeqCst);
}

/// A running origin.
#[derive(Debug)]
pub struct Origin {
    pub slot: u8,
    netns: String,
    dir: TempDir,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn ip(args: &[&str]) {
    let out = Command::new(require_tool("ip")).args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Origin {
    /// Builds the namespace and link for `slot` and starts the servers.
    pub fn start(slot: u8) -> Origin {
        remove_stale_namespaces();
        let pid = std::process::id();
        let netns = format!("bto-{pid}-{slot}");
        let (host_if, peer_if) = (format!("bto{slot}h{pid}"), format!("bto{slot}o{pid}"));
        assert!(host_if.len() <= 15, "link name {host_if} too long");
        ip(&["netns", "add", &netns]);
        let dir = tempfile::Builder::new().prefix("boundary-e2e-origin.").tempdir().expect("origin dir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod origin dir");
        let mut origin = Origin { slot, netns, dir, counters: Arc::default(), stop: None, thread: None };
        origin.link(&host_if, &peer_if);
        let tls = origin.make_certificates();
        origin.spawn_servers(tls);
        origin
    }

    fn link(&self, host_if: &str, peer_if: &str) {
        let ns = self.netns.as_str();
        ip(&["link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", ns]);
        ip(&["addr", "add", &format!("{}/30", self.host_addr()), "dev", host_if]);
        ip(&["-6", "addr", "add", &format!("{}/64", self.host_addr6()), "dev", host_if, "nodad"]);
        ip(&["link", "set", host_if, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{}/30", self.addr()), "dev", peer_if]);
        ip(&["-n", ns, "-6", "addr", "add", &format!("{}/64", self.addr6()), "dev", peer_if, "nodad"]);
        ip(&["-n", ns, "link", "set", peer_if, "up"]);
        // Routes back to anything, so a leaked TCP handshake could complete.
        ip(&["-n", ns, "route", "add", "default", "via", &self.host_addr().to_string()]);
        ip(&["-n", ns, "-6", "route", "add", "default", "via", &self.host_addr6().to_string()]);
    }

    /// What the origin's DNS server answers (A records over UDP, TTL 60; no
    /// records for other types of these names); no other name is answered.
    pub fn upstream_names(&self) -> Vec<(String, Ipv4Addr)> {
        vec![
            (UPSTREAM_ORIGIN_NAME.to_string(), self.addr()),
            (UPSTREAM_LOOPBACK_NAME.to_string(), Ipv4Addr::LOCALHOST),
            (UPSTREAM_METADATA_NAME.to_string(), Ipv4Addr::new(169, 254, 169, 254)),
        ]
    }

    /// The origin's IPv4 address (`10.231.<slot>.2`).
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.slot, 2)
    }

    /// The host end of the origin link (`10.231.<slot>.1`).
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.slot, 1)
    }

    pub fn addr6(&self) -> Ipv6Addr {
        format!("fd00:231:{}::2", self.slot).parse().expect("ipv6 literal")
    }

    pub fn host_addr6(&self) -> Ipv6Addr {
        format!("fd00:231:{}::1", self.slot).parse().expect("ipv6 literal")
    }

    /// The namespace name (`ip netns` name).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// PEM of the CA that signed the origin's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("origin-ca.pem")
    }

    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Counts {
            http_requests: get(&c.http),
            https_requests: get(&c.https),
            dns_queries: get(&c.dns),
            sink_udp_datagrams: get(&c.sink_udp),
            sink_tcp_connections: get(&c.sink_tcp),
            icmp_echo_requests: get(&c.icmp),
        }
    }

    /// Counts once every packet sent before the call has had its chance to
    /// arrive: sends one control of each kind from the host (a UDP datagram
    /// and a TCP connection to the sink, a DNS datagram, an echo request),
    /// waits until each arrived, and returns the counts without them.
    pub fn counts_after_barrier(&self) -> Counts {
        let start = self.counts();
        let udp = std::net::UdpSocket::bind("0.0.0.0:0").expect("control socket");
        udp.send_to(b"control", (self.addr(), SINK_PORT)).expect("control datagram to the sink");
        udp.send_to(b"control", (self.addr(), DNS_PORT)).expect("control datagram to DNS");
        let tcp = std::net::TcpStream::connect((self.addr(), SINK_PORT)).expect("control connection to the sink");
        let ping = Command::new(crate::require::BUSYBOX)
            .args(["ping", "-c", "1", "-W", "2", &self.addr().to_string()])
            .output()
            .expect("control ping");
        assert!(ping.status.success(), "control ping from the host to the origin failed: {}", String::from_utf8_lossy(&ping.stdout));
        drop(tcp);
        let arrived = crate::deadline::poll_until(std::time::Duration::from_secs(5), "the origin to count the controls", || {
            let c = self.counts();
            (c.sink_udp_datagrams > start.sink_udp_datagrams
                && c.dns_queries > start.dns_queries
                && c.sink_tcp_connections > start.sink_tcp_connections
                && c.icmp_echo_requests > start.icmp_echo_requests)
                .then_some(c)
        });
        Counts {
            sink_udp_datagrams: arrived.sink_udp_datagrams - 1,
            dns_queries: arrived.dns_queries - 1,
            sink_tcp_connections: arrived.sink_tcp_connections - 1,
            icmp_echo_requests: arrived.icmp_echo_requests - 1,
            ..arrived
        }
    }

    /// What reached the origin since `base` other than HTTP(S) requests
    /// (which [`Origin::requests`] lists): DNS, UDP and TCP to the sink,
    /// ICMP; counted after a barrier (see [`Origin::counts_after_barrier`]).
    pub fn leaked_since(&self, base: Counts) -> Counts {
        let now = self.counts_after_barrier();
        Counts {
            http_requests: 0,
            https_requests: 0,
            dns_queries: now.dns_queries - base.dns_queries,
            sink_udp_datagrams: now.sink_udp_datagrams - base.sink_udp_datagrams,
            sink_tcp_connections: now.sink_tcp_connections - base.sink_tcp_connections,
            icmp_echo_requests: now.icmp_echo_requests - base.icmp_echo_requests,
        }
    }

    /// Requests served, in order: `http GET /path?q host=origin.test`.
    pub fn requests(&self) -> Vec<String> {
        self.counters.requests.lock().expect("requests lock").clone()
    }

    fn make_certificates(&self) -> Arc<rustls::ServerConfig> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("boundary-tests origin CA {}", self.slot));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
        std::fs::write(self.ca_file(), ca_cert.pem()).expect("write origin CA");
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(ORIGIN_NAMES.map(String::from).to_vec()).expect("leaf params");
        leaf.distinguished_name.push(DnType::CommonName, "origin.test");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone()], key)
            .expect("origin TLS config");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    fn spawn_servers(&mut self, tls: Arc<rustls::ServerConfig>) {
        let ns_path = PathBuf::from("/run/netns").join(&self.netns);
        let counters = self.counters.clone();
        let names = self.upstream_names();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("origin-{}", self.slot))
            .spawn(move || serve(&ns_path, tls, names, counters, ready_tx, stop_rx))
            .expect("spawn origin thread");
        self.stop = Some(stop_tx);
        self.thread = Some(thread);
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("origin {} could not start: {e}", self.slot),
            Err(_) => panic!("origin {} thread died while starting", self.slot),
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = Command::new(require_tool("ip")).args(["netns", "del", &self.netns]).output();
    }
}

/// Deletes `bto-<pid>-*` namespaces of test processes that are gone.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("bto-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new(require_tool("ip")).args(["netns", "del", &name]).output();
        }
    }
}

/// The origin thread: enter the namespace, bind everything, report, serve
/// until told to stop.
fn serve(
    ns_path: &Path,
    tls: Arc<rustls::ServerConfig>,
    names: Vec<(String, Ipv4Addr)>,
    counters: Arc<Counters>,
    ready: mpsc::Sender<Result<(), String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let entered = std::fs::File::open(ns_path)
        .map_err(|e| format!("open {}: {e}", ns_path.display()))
        .and_then(|f| nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}")));
    if let Err(e) = entered {
        let _ = ready.send(Err(e));
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("tokio runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        match start_all(tls, names, counters).await {
            Ok(()) => {
                let _ = ready.send(Ok(()));
                let _ = stop.await;
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    });
}

async fn start_all(tls: Arc<rustls::ServerConfig>, names: Vec<(String, Ipv4Addr)>, c: Arc<Counters>) -> Result<(), String> {
    let any = |port: u16| format!("[::]:{port}");
    let bind_tcp = |port: u16| async move { TcpListener::bind(any(port)).await.map_err(|e| format!("bind tcp {port}: {e}")) };
    let bind_udp = |port: u16| async move { UdpSocket::bind(any(port)).await.map_err(|e| format!("bind udp {port}: {e}")) };
    let http = bind_tcp(HTTP_PORT).await?;
    let https = bind_tcp(HTTPS_PORT).await?;
    let dns_udp = bind_udp(DNS_PORT).await?;
    let dns_tcp = bind_tcp(DNS_PORT).await?;
    let sink_udp = bind_udp(SINK_PORT).await?;
    let sink_tcp = bind_tcp(SINK_PORT).await?;
    let icmp4 = raw_socket(AddressFamily::Inet, SockProtocol::Icmp)?;
    let icmp6 = raw_socket(AddressFamily::Inet6, SockProtocol::IcmpV6)?;
    tokio::spawn(serve_http(http, None, c.clone()));
    tokio::spawn(serve_http(https, Some(tokio_rustls::TlsAcceptor::from(tls)), c.clone()));
    tokio::spawn(serve_dns(dns_udp, names, c.clone()));
    tokio::spawn(count_connections(dns_tcp, c.clone(), |c| &c.dns));
    tokio::spawn(count_datagrams(sink_udp, c.clone(), |c| &c.sink_udp));
    tokio::spawn(count_connections(sink_tcp, c.clone(), |c| &c.sink_tcp));
    // IPv4 raw sockets see the IP header; ICMPv6 ones only the message.
    tokio::spawn(count_echo_requests(icmp4, c.clone(), |b| b.get(usize::from(b.first()? & 0x0f) * 4).copied(), 8));
    tokio::spawn(count_echo_requests(icmp6, c, |b| b.first().copied(), 128));
    Ok(())
}

fn raw_socket(family: AddressFamily, proto: SockProtocol) -> Result<AsyncFd<std::os::fd::OwnedFd>, String> {
    let fd = socket(family, SockType::Raw, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, proto)
        .map_err(|e| format!("raw {proto:?} socket: {e}"))?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open and
    // returns the same number from as_raw_fd until the AsyncFd drops it.
    unsafe { AsyncFd::register(fd) }.map_err(|e| format!("register raw socket: {e}"))
}

async fn count_echo_requests(
    fd: AsyncFd<std::os::fd::OwnedFd>,
    c: Arc<Counters>,
    icmp_type: fn(&[u8]) -> Option<u8>,
    echo_request: u8,
) {
    let mut buf = [0u8; 2048];
    loop {
        let Ok(mut guard) = fd.readable().await else { return };
        let got = guard.try_io(|inner| {
            nix::sys::socket::recv(inner.get_ref().as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(std::io::Error::from)
        });
        if let Ok(Ok(n)) = got {
            if icmp_type(&buf[..n]) == Some(echo_request) {
                bump(&c.icmp);
            }
        }
    }
}

async fn count_datagrams(sock: UdpSocket, c: Arc<Counters>, counter: fn(&Counters) -> &AtomicU64) {
    let mut buf = [0u8; 2048];
    while sock.recv_from(&mut buf).await.is_ok() {
        bump(counter(&c));
    }
}

/// Counts every datagram; answers a query for one of `names` (its address
/// for A, no records for other types), nothing else.
async fn serve_dns(sock: UdpSocket, names: Vec<(String, Ipv4Addr)>, c: Arc<Counters>) {
    let mut buf = [0u8; 2048];
    while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
        bump(&c.dns);
        if let Some(answer) = dns_answer(&buf[..n], &names) {
            let _ = sock.send_to(&answer, peer).await;
        }
    }
}

fn dns_answer(query: &[u8], names: &[(String, Ipv4Addr)]) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::{rdata, RData, Record, RecordType};
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?;
    let asked = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let addr = names.iter().find(|(name, _)| *name == asked).map(|(_, a)| *a)?;
    let mut resp = Message::response(req.metadata.id, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    if q.query_type() == RecordType::A {
        resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(rdata::A(addr))));
    }
    resp.to_vec().ok()
}

async fn count_connections(listener: TcpListener, c: Arc<Counters>, counter: fn(&Counters) -> &AtomicU64) {
    while let Ok((conn, _)) = listener.accept().await {
        bump(counter(&c));
        drop(conn);
    }
}

async fn serve_http(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, c: Arc<Counters>) {
    while let Ok((conn, _)) = listener.accept().await {
        let (tls, c) = (tls.clone(), c.clone());
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let scheme = if tls.is_some() { "https" } else { "http" };
            let svc = hyper::service::service_fn(move |req| answer(req, scheme, c.clone()));
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(conn).await {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(conn), svc).await;
                }
            }
        });
    }
}

async fn answer(req: Request<Incoming>, scheme: &'static str, c: Arc<Counters>) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let line = format!("{} {target}", req.method());
    bump(if scheme == "https" { &c.https } else { &c.http });
    c.requests.lock().expect("requests lock").push(format!("{scheme} {line} host={host}"));
    let body = format!("origin saw {line}\n");
    Ok(Response::builder()
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}
