//! Everything one sidecar needs to serve its container, built once from the
//! [`SidecarConfig`] while the process is still root (every file is read
//! here; nothing is opened later).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use boundary_contract::SidecarConfig;
use boundary_policy::{ParseError, Policy};
use rustls::client::Resumption;
use rustls::server::ServerSessionMemoryCache;
use tokio::net::TcpStream;

use crate::audit::AuditLog;
use crate::ca::{CaError, CertAuthority};
use crate::narrowing::{Narrowing, NarrowingError};
use crate::resolve::{ResolveError, Resolver};
use crate::upstream::{BuildTls, Upstream, CONNECT_TIMEOUT};

/// Finds where a redirected connection was originally going.
pub type OriginalDst = Arc<dyn Fn(&TcpStream) -> Option<SocketAddr> + Send + Sync>;

/// Errors from [`ProxyContext::from_config`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the host CA")]
    Ca(#[source] CaError),
    #[error("parsing the {which} rules")]
    Policy {
        which: &'static str,
        #[source]
        source: ParseError,
    },
    #[error("loading the narrowing rules")]
    Narrowing(#[source] NarrowingError),
    #[error("building the upstream resolver")]
    Resolver(#[source] ResolveError),
    #[error("{path} holds no usable PEM certificate")]
    NoCert { path: PathBuf },
    #[error("configuring TLS")]
    Tls(#[source] rustls::Error),
}

/// Concurrent client connections one sidecar serves ([`Limits::default`]).
pub const MAX_CONNECTIONS: usize = 4096;

/// Timeouts and limits; [`Limits::default`] is what the sidecar uses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Concurrent client connections; further accepts wait.
    pub max_connections: usize,
    /// Time for the first bytes (ClientHello or request line) to arrive.
    pub sniff_timeout: Duration,
    /// Time for a TLS handshake with the client.
    pub handshake_timeout: Duration,
    /// HTTP/1 request head read timeout; also the keep-alive idle timeout,
    /// and how long an HTTP/2 connection may go without a stream (its
    /// first one included).
    pub header_read_timeout: Duration,
    /// Time for the upstream to send its response head.
    pub response_head_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            sniff_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            response_head_timeout: Duration::from_secs(300),
        }
    }
}

/// Shared state of one sidecar.
pub struct ProxyContext {
    pub container_id: String,
    pub policy: Arc<Policy>,
    /// Sets of rules narrowing `policy` (a request must be allowed by
    /// `policy` and every set); reloaded on SIGHUP.
    pub narrowing: Arc<Narrowing>,
    pub ca: Arc<CertAuthority>,
    pub resolver: Arc<Resolver>,
    pub audit: AuditLog,
    /// `false`: every request is denied ("container has no upstream network").
    pub upstream_enabled: bool,
    /// Where the 403 tells the user to add a rule.
    pub rules_in: String,
    pub listen_addr: Ipv4Addr,
    /// Default: netfilter `SO_ORIGINAL_DST`.
    pub original_dst: OriginalDst,
    /// TLS server configuration for intercepted connections (leaf per SNI).
    pub tls_server: Arc<rustls::ServerConfig>,
    /// Pooled upstream clients.
    pub upstream: Upstream,
    pub limits: Limits,
    /// Canonical text of each rule of `policy`, for audit records.
    pub rule_texts: Arc<[String]>,
}

impl std::fmt::Debug for ProxyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyContext")
            .field("container_id", &self.container_id)
            .field("upstream_enabled", &self.upstream_enabled)
            .field("listen_addr", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

impl ProxyContext {
    /// Reads every file named in the config (CA cert and key, upstream CA
    /// files, system roots, resolv.conf): call as root before dropping
    /// privileges.
    pub fn from_config(cfg: &SidecarConfig, audit: AuditLog) -> Result<ProxyContext, BuildError> {
        let ca = CertAuthority::from_pem(&read(&cfg.ca_cert)?, &read(&cfg.ca_key)?).map_err(BuildError::Ca)?;
        let policy = Policy::from_texts(cfg.rules.iter().map(String::as_str))
            .map_err(|source| BuildError::Policy { which: "allow", source })?;
        let narrowing = Arc::new(Narrowing::from_config(cfg).map_err(BuildError::Narrowing)?);
        let resolver = Resolver::new(
            cfg.pinned_hosts.clone(),
            cfg.upstream_resolvers.clone(),
            cfg.allow_special_destinations,
            vec![cfg.listen_addr.into()],
        )
        .map_err(BuildError::Resolver)?
        .refusing_private(cfg.refuse_private_destinations);
        let resolver = Arc::new(resolver);
        let roots = upstream_roots(cfg.upstream_system_roots, cfg.system_roots_file.as_deref(), &cfg.upstream_ca_files)?;
        // The one fallible step (protocol versions) is taken now, so that it
        // fails the start; the roots are added when first needed.
        let versions = tls_client_versions()?;
        let fallback = tls_client_config(versions.clone(), roots.extra.clone());
        let build: BuildTls = Box::new(move || tls_client_config(versions, roots.all()));
        let ca = Arc::new(ca);
        let connect_timeout = cfg.upstream_connect_timeout_ms.map_or(CONNECT_TIMEOUT, |ms| Duration::from_millis(ms.max(1)));
        Ok(ProxyContext {
            container_id: cfg.container_id.clone(),
            rule_texts: policy.rules().iter().map(ToString::to_string).collect(),
            policy: Arc::new(policy),
            narrowing,
            tls_server: tls_server_config(ca.clone())?,
            upstream: Upstream::new(resolver.clone(), fallback, build, connect_timeout),
            ca,
            resolver,
            audit,
            upstream_enabled: cfg.upstream_enabled,
            rules_in: cfg.rules_in.clone().unwrap_or_else(|| "BOUNDARY_ALLOW".to_string()),
            listen_addr: cfg.listen_addr,
            original_dst: Arc::new(netfilter_original_dst),
            limits: Limits::default(),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Read { path: path.to_owned(), source })
}

/// The upstream trust anchors, read as root at the start. The system roots
/// file (~140 certificates, ~220 KiB of PEM) is only parsed by [`all`],
/// once the worker serves (see [`Upstream::warm`]).
///
/// [`all`]: UpstreamRoots::all
struct UpstreamRoots {
    /// `upstream_ca_files`, and the platform's roots when no file is named.
    extra: rustls::RootCertStore,
    system_pem: Option<Vec<u8>>,
}

impl UpstreamRoots {
    fn all(self) -> rustls::RootCertStore {
        let mut roots = self.extra;
        if let Some(pem) = self.system_pem {
            let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).filter_map(Result::ok).collect();
            let (added, ignored) = roots.add_parsable_certificates(certs);
            log::debug!("system roots: {added} added, {ignored} ignored");
        }
        roots
    }
}

/// System roots (when asked: from `system_file` when given, else the
/// platform's locations) plus every certificate in `ca_files`.
fn upstream_roots(system: bool, system_file: Option<&Path>, ca_files: &[PathBuf]) -> Result<UpstreamRoots, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut system_pem = None;
    if let (true, Some(file)) = (system, system_file) {
        system_pem = Some(read(file)?);
    } else if system {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            log::warn!("loading system roots: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        log::debug!("system roots: {added} added, {ignored} ignored");
    }
    for path in ca_files {
        let pem = read(path)?;
        let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).filter_map(Result::ok).collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(BuildError::NoCert { path: path.clone() });
        }
    }
    Ok(UpstreamRoots { extra: roots, system_pem })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    let aes = cpu_has_aes();
    provider.cipher_suites.sort_by_key(|suite| suite_rank(suite.suite(), aes));
    Arc::new(provider)
}

/// Whether this CPU encrypts AES-GCM in hardware. The container runs on
/// the same CPU as its sidecar, so this answers for both ends of the
/// client-facing leg.
fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The order in which the sidecar prefers cipher suites, as both server
/// and client (stable sort, so TLS 1.3 stays ahead of TLS 1.2): with AES
/// in hardware, AES-128-GCM first (10 rounds against AES-256's 14, at the
/// same 128-bit GCM tag and TLS 1.3's mandatory-to-implement suite), then
/// AES-256-GCM, then ChaCha20-Poly1305; without it ChaCha20 first, which
/// is faster in software. The order Go's crypto/tls uses.
fn suite_rank(suite: rustls::CipherSuite, aes: bool) -> (u8, u8) {
    use rustls::CipherSuite as S;
    let version = match suite {
        S::TLS13_AES_128_GCM_SHA256 | S::TLS13_AES_256_GCM_SHA384 | S::TLS13_CHACHA20_POLY1305_SHA256 => 0,
        _ => 1,
    };
    let cipher = match suite {
        S::TLS13_AES_128_GCM_SHA256 | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384 | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    };
    let cipher = if aes { cipher } else { (cipher + 1) % 3 };
    (version, cipher)
}

/// The upstream TLS client builder up to its roots: the provider and the
/// safe default protocol versions.
fn tls_client_versions() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, BuildError> {
    rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(BuildError::Tls)
}

/// Upstream TLS client configuration (ALPN is set per client flavour).
fn tls_client_config(versions: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let mut cfg = versions.with_root_certificates(roots).with_no_client_auth();
    cfg.resumption = Resumption::in_memory_sessions(1024);
    cfg
}

/// The client-facing TLS configuration: leaves from `ca`, ALPN h2 and
/// http/1.1, session cache and tickets for resumption.
pub fn tls_server_config(ca: Arc<CertAuthority>) -> Result<Arc<rustls::ServerConfig>, BuildError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(BuildError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(ca);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The container's client shares this CPU: the sidecar's order (see
    // `suite_rank`) is right for both ends, whatever the client lists first.
    cfg.ignore_client_order = true;
    cfg.session_storage = ServerSessionMemoryCache::new(4096);
    cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(BuildError::Tls)?;
    Ok(Arc::new(cfg))
}

/// `SO_ORIGINAL_DST` of a connection redirected by nftables.
pub fn netfilter_original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let sin = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::OriginalDst).ok()?;
    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_rank_aes_128_first_with_aes_hardware_and_chacha_first_without() {
        let suites = |aes: bool| {
            let mut all = rustls::crypto::ring::default_provider().cipher_suites;
            all.sort_by_key(|s| suite_rank(s.suite(), aes));
            all.iter().map(|s| s.suite()).collect::<Vec<_>>()
        };
        use rustls::CipherSuite as S;
        let hw = suites(true);
        assert_eq!(&hw[..3], &[S::TLS13_AES_128_GCM_SHA256, S::TLS13_AES_256_GCM_SHA384, S::TLS13_CHACHA20_POLY1305_SHA256]);
        let sw = suites(false);
        assert_eq!(&sw[..3], &[S::TLS13_CHACHA20_POLY1305_SHA256, S::TLS13_AES_128_GCM_SHA256, S::TLS13_AES_256_GCM_SHA384]);
        // Every TLS 1.2 suite after every TLS 1.3 one, none dropped.
        assert_eq!(hw.len(), rustls::crypto::ring::default_provider().cipher_suites.len());
        assert!(hw[3..].iter().all(|s| !format!("{s:?}").starts_with("TLS13")));
    }

    #[test]
    fn the_client_facing_server_picks_its_own_order_over_the_clients() {
        // A client that lists AES-256 first, as OpenSSL's curl does, gets
        // the sidecar's first choice for this CPU.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "unit test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let ca = Arc::new(CertAuthority::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap());
        let server_cfg = tls_server_config(ca).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut client_provider = rustls::crypto::ring::default_provider();
        client_provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
        let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("origin.test").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_cfg), name).unwrap();
        let mut server = rustls::ServerConnection::new(server_cfg).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        let expected = if cpu_has_aes() { rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 } else { rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 };
        assert_eq!(server.negotiated_cipher_suite().unwrap().suite(), expected);
        assert_eq!(client.negotiated_cipher_suite().unwrap().suite(), expected);
    }

    fn pem_cert(name: &str) -> String {
        let kp = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&kp).unwrap().pem()
    }

    #[test]
    fn system_roots_are_read_at_once_and_parsed_on_demand() {
        let d = tempfile::tempdir().unwrap();
        let system = d.path().join("system.pem");
        std::fs::write(&system, format!("{}{}", pem_cert("a.test"), pem_cert("b.test"))).unwrap();
        let extra = d.path().join("extra.pem");
        std::fs::write(&extra, pem_cert("c.test")).unwrap();
        let roots = upstream_roots(true, Some(&system), std::slice::from_ref(&extra)).unwrap();
        assert_eq!(roots.extra.len(), 1, "only the CA files are parsed at the start");
        // The file was read: changing it now changes nothing.
        std::fs::write(&system, "").unwrap();
        assert_eq!(roots.all().len(), 3);
        let without = upstream_roots(false, Some(&system), &[]).unwrap();
        assert!(without.system_pem.is_none() && without.all().is_empty());
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "no certificate").unwrap();
        assert!(matches!(upstream_roots(false, None, &[empty]), Err(BuildError::NoCert { .. })));
    }
}
