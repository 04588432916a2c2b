//! Upstream name resolution for the sidecar.
//!
//! The sidecar never trusts the destination address the container chose: it
//! resolves the request's host itself. Pinned names resolve as written;
//! everything else goes through hickory-resolver (system configuration or
//! the configured name servers), and addresses that reach the host itself or
//! the cloud metadata service are refused unless the name was pinned, the
//! configuration allows special destinations, or the matched rule named that
//! exact IP literal. Private addresses are refused the same way when the
//! configuration says so ([`Resolver::refusing_private`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;

/// Errors from building the resolver or resolving a name.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("reading the system resolver configuration")]
    SystemConfig(#[source] NetError),
    #[error("building the resolver")]
    Build(#[source] NetError),
    #[error("invalid host name {host:?}")]
    InvalidName { host: String },
    #[error("resolving {host}")]
    Lookup {
        host: String,
        #[source]
        source: NetError,
    },
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("{host} resolves only to refused addresses ({addr} is {class})")]
    Refused { host: String, addr: IpAddr, class: &'static str },
}

/// The sidecar's resolver: pins, then DNS, with a special-address filter.
pub struct Resolver {
    pins: BTreeMap<String, IpAddr>,
    allow_special: bool,
    refuse_private: bool,
    own_addrs: Vec<IpAddr>,
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("pins", &self.pins)
            .field("allow_special", &self.allow_special)
            .field("refuse_private", &self.refuse_private)
            .field("own_addrs", &self.own_addrs)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds a resolver. `nameservers: None` reads `/etc/resolv.conf` now
    /// (call before dropping privileges); `/etc/hosts` is never consulted
    /// (pins take its place), and search domains are never appended.
    pub fn new(
        pins: BTreeMap<String, IpAddr>,
        nameservers: Option<Vec<IpAddr>>,
        allow_special: bool,
        own_addrs: Vec<IpAddr>,
    ) -> Result<Self, ResolveError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match nameservers {
            Some(servers) => {
                let config = ResolverConfig::from_parts(
                    None,
                    Vec::new(),
                    servers.into_iter().map(NameServerConfig::udp_and_tcp).collect(),
                );
                TokioResolver::builder_with_config(config, provider)
            }
            None => TokioResolver::builder(provider).map_err(ResolveError::SystemConfig)?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.timeout = std::time::Duration::from_secs(3);
        opts.attempts = 2;
        let inner = builder.build().map_err(ResolveError::Build)?;
        let pins = pins
            .into_iter()
            .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v))
            .collect();
        Ok(Resolver { pins, allow_special, refuse_private: false, own_addrs, inner })
    }

    /// With `refuse`, private addresses ([`private_class`]) are refused like
    /// special ones: an allowed name that resolves into the host's own
    /// networks (rebinding) is not reached, nor an IP literal that no rule
    /// names exactly. Pinned names and `allow_special` stay exempt.
    pub fn refusing_private(mut self, refuse: bool) -> Resolver {
        self.refuse_private = refuse;
        self
    }

    /// Resolves `host` (lowercase, no port) to the addresses the sidecar may
    /// connect to. `explicitly_allowed` is set by the caller when the matched
    /// rule names exactly this IP literal.
    pub async fn resolve(&self, host: &str, explicitly_allowed: bool) -> Result<Vec<IpAddr>, ResolveError> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ip) = self.pins.get(&key) {
            return Ok(vec![*ip]);
        }
        let exempt = self.allow_special || explicitly_allowed;
        if let Some(ip) = parse_ip_literal(&key) {
            return self.filter(&key, vec![ip], exempt);
        }
        let name = fqdn(&key)?;
        let lookup = self
            .inner
            .lookup_ip(name)
            .await
            .map_err(|source| ResolveError::Lookup { host: key.clone(), source })?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        self.filter(&key, addrs, exempt)
    }

    /// Like [`Resolver::resolve`] but IPv4 (A records) only; used by the DNS
    /// filter to answer the container's queries.
    pub async fn resolve_v4(&self, host: &str) -> Result<Vec<Ipv4Addr>, ResolveError> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let addrs = if let Some(ip) = self.pins.get(&key) {
            vec![*ip]
        } else if let Some(ip) = parse_ip_literal(&key) {
            self.filter(&key, vec![ip], self.allow_special)?
        } else {
            let name = fqdn(&key)?;
            let lookup = self
                .inner
                .ipv4_lookup(name)
                .await
                .map_err(|source| ResolveError::Lookup { host: key.clone(), source })?;
            let addrs = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect();
            self.filter(&key, addrs, self.allow_special)?
        };
        let v4: Vec<Ipv4Addr> = addrs
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            })
            .collect();
        if v4.is_empty() {
            return Err(ResolveError::NoAddress { host: key });
        }
        Ok(v4)
    }

    /// Drops refused addresses; errors when nothing is left.
    fn filter(&self, host: &str, addrs: Vec<IpAddr>, exempt: bool) -> Result<Vec<IpAddr>, ResolveError> {
        if addrs.is_empty() {
            return Err(ResolveError::NoAddress { host: host.to_owned() });
        }
        if exempt {
            return Ok(addrs);
        }
        let mut first_refusal = None;
        let kept: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|addr| match self.refusal(*addr) {
                Some(class) => {
                    first_refusal.get_or_insert((*addr, class));
                    false
                }
                None => true,
            })
            .collect();
        match (kept.is_empty(), first_refusal) {
            (true, Some((addr, class))) => Err(ResolveError::Refused { host: host.to_owned(), addr, class }),
            _ => Ok(kept),
        }
    }

    fn refusal(&self, addr: IpAddr) -> Option<&'static str> {
        let canon = canonical(addr);
        if self.own_addrs.iter().any(|own| canonical(*own) == canon) {
            return Some("the sidecar's own address");
        }
        special_class(addr).or_else(|| if self.refuse_private { private_class(addr) } else { None })
    }
}

/// Parses `1.2.3.4`, `::1` or `[::1]`.
fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    inner.parse().ok()
}

/// An absolute name, so no search domain is ever appended.
fn fqdn(host: &str) -> Result<Name, ResolveError> {
    let mut name = Name::from_ascii(host).map_err(|_| ResolveError::InvalidName { host: host.to_owned() })?;
    name.set_fqdn(true);
    Ok(name)
}

/// The IPv4 address an IPv6 address maps or embeds, else the address itself.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// IPv4 addresses carried inside IPv6 forms that can reach them: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`),
/// 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail); // IPv4-compatible (but not :: or ::1)
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    None
}

/// Why an address is special (never reachable without an exemption).
/// Private ranges are not special: cluster services live there.
pub fn special_class(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return special_v4(v4).or(if v6.to_ipv4_mapped().is_some() { None } else { special_v6(v6) });
            }
            special_v6(v6)
        }
    }
}

/// Why an address is private, refused only when the configuration says so
/// (`refuse_private_destinations`): RFC 1918, RFC 6598 shared address space
/// (carrier-grade NAT, some clusters' pod networks) and IPv6 unique local
/// addresses, also when mapped or embedded in IPv6.
pub fn private_class(addr: IpAddr) -> Option<&'static str> {
    match canonical(addr) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_private() {
                Some("private (RFC 1918; refuse_private_destinations is set)")
            } else if o[0] == 100 && o[1] & 0xc0 == 64 {
                Some("shared address space (RFC 6598; refuse_private_destinations is set)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) if v6.segments()[0] & 0xfe00 == 0xfc00 => Some("unique local (fc00::/7; refuse_private_destinations is set)"),
        IpAddr::V6(_) => None,
    }
}

fn special_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if o == [100, 100, 100, 200] || o == [168, 63, 129, 16] {
        // Alibaba Cloud's metadata, and Azure's WireServer (VM agent,
        // extension settings): both outside link-local.
        Some("cloud metadata")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if o[0] == 0 {
        Some("unspecified")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if o[0] >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn special_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let s0 = v6.segments()[0];
    if v6.is_loopback() {
        Some("loopback")
    } else if v6.is_unspecified() {
        Some("unspecified")
    } else if v6.is_multicast() {
        Some("multicast")
    } else if s0 & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s0 & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if v6.segments()[..2] == [0x2001, 0] {
        Some("teredo") // embeds an obfuscated IPv4 address we cannot vet
    } else if v6.segments()[..3] == [0x64, 0xff9b, 1] {
        Some("NAT64 (local use)") // RFC 8215: where the IPv4 sits depends on the prefix length, unknown here
    } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata") // AWS's instance metadata over IPv6
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(pins: &[(&str, &str)], allow_special: bool, own: &[&str]) -> Resolver {
        let pins = pins.iter().map(|(k, v)| (k.to_string(), v.parse().unwrap())).collect();
        let own = own.iter().map(|a| a.parse().unwrap()).collect();
        // 127.0.0.1:53 is never queried by these tests (pins and literals only).
        Resolver::new(pins, Some(vec!["127.0.0.1".parse().unwrap()]), allow_special, own).unwrap()
    }

    #[test]
    fn special_addresses_are_classified() {
        for a in [
            "127.0.0.1", "127.255.0.9", "169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255",
            "::1", "::", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
            "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:a9fe:a9:fe00::", "fd00:ec2::254", "100.100.100.200",
            "::ffff:100.100.100.200", "168.63.129.16", "::ffff:168.63.129.16",
        ] {
            assert!(special_class(a.parse().unwrap()).is_some(), "{a} should be special");
        }
        for a in ["10.0.0.1", "192.168.1.1", "172.16.0.1", "8.8.8.8", "2606:4700::1111", "fd00::1", "::ffff:8.8.8.8"] {
            assert!(special_class(a.parse().unwrap()).is_none(), "{a} should be ordinary");
        }
    }

    #[tokio::test]
    async fn literals_and_pins() {
        let r = resolver(&[("origin.test", "127.0.0.1")], false, &["10.9.0.1"]);
        assert_eq!(r.resolve("origin.test", false).await.unwrap(), vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.resolve("ORIGIN.test.", false).await.unwrap().len(), 1);
        assert_eq!(r.resolve("8.8.8.8", false).await.unwrap(), vec!["8.8.8.8".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.resolve("10.1.2.3", false).await.unwrap().len(), 1);
        for refused in ["127.0.0.1", "169.254.169.254", "[::1]", "::ffff:127.0.0.1", "10.9.0.1", "::ffff:10.9.0.1", "0.0.0.0"] {
            let e = r.resolve(refused, false).await.unwrap_err();
            assert!(matches!(e, ResolveError::Refused { .. }), "{refused}: {e}");
        }
        assert!(r.resolve("169.254.169.254", true).await.is_ok());
        assert!(r.resolve_v4("127.0.0.1").await.is_err());
        assert_eq!(r.resolve_v4("origin.test").await.unwrap(), vec![Ipv4Addr::LOCALHOST]);
    }

    #[tokio::test]
    async fn allow_special_exempts_everything() {
        let r = resolver(&[], true, &[]);
        assert!(r.resolve("127.0.0.1", false).await.is_ok());
        assert!(r.resolve_v4("169.254.169.254").await.is_ok());
    }

    #[test]
    fn private_addresses_are_classified() {
        for a in [
            "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.1", "192.168.1.1", "100.64.0.1", "100.127.255.254",
            "fd00::1", "fc00::1", "::ffff:10.1.2.3", "64:ff9b::c0a8:0101", "2002:c0a8:0101::1",
        ] {
            assert!(private_class(a.parse().unwrap()).is_some(), "{a} should be private");
        }
        for a in ["8.8.8.8", "172.32.0.1", "172.15.255.1", "100.128.0.1", "100.63.255.255", "192.169.0.1", "2606:4700::1111", "fe00::1", "::ffff:8.8.8.8"] {
            assert!(private_class(a.parse().unwrap()).is_none(), "{a} should not be private");
        }
    }

    #[tokio::test]
    async fn private_addresses_are_refused_only_when_configured() {
        let open = resolver(&[], false, &[]);
        assert!(open.resolve("10.1.2.3", false).await.is_ok(), "private ranges are reachable by default");
        assert!(open.resolve_v4("192.168.0.9").await.is_ok());

        let strict = resolver(&[("registry.internal", "10.0.0.5")], false, &[]).refusing_private(true);
        for refused in ["10.1.2.3", "172.17.0.1", "192.168.0.9", "100.64.0.10", "[fd12::1]", "::ffff:10.1.2.3"] {
            match strict.resolve(refused, false).await {
                Err(ResolveError::Refused { class, .. }) => assert!(class.contains("refuse_private_destinations"), "{refused}: {class}"),
                other => panic!("{refused}: {other:?}"),
            }
        }
        assert!(strict.resolve_v4("192.168.0.9").await.is_err(), "the DNS filter refuses them too");
        assert!(strict.resolve("10.1.2.3", true).await.is_ok(), "a rule naming the exact address");
        assert_eq!(strict.resolve("registry.internal", false).await.unwrap(), vec!["10.0.0.5".parse::<IpAddr>().unwrap()], "pinned");
        assert!(strict.resolve("8.8.8.8", false).await.is_ok());
        let e = strict.resolve("127.0.0.1", false).await.unwrap_err().to_string();
        assert!(e.contains("loopback"), "special addresses keep their reason: {e}");

        let exempt = resolver(&[], true, &[]).refusing_private(true);
        assert!(exempt.resolve("10.1.2.3", false).await.is_ok(), "allow_special exempts everything");
    }

    #[tokio::test]
    async fn invalid_names_error_without_panicking() {
        let r = resolver(&[], false, &[]);
        assert!(r.resolve("bad name with spaces\u{0}", false).await.is_err());
    }
}
