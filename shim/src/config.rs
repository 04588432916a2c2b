//! boundary-runc's own settings, from a TOML file.
//!
//! `/etc/boundary-runc/config.toml` by default, or the path in
//! `BOUNDARY_RUNC_CONFIG`. A missing file means the defaults; a malformed
//! one is an error that names the file and the problem. There are no new
//! global flags, so nothing can collide with runc's.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/boundary-runc/config.toml";
pub const CONFIG_ENV: &str = "BOUNDARY_RUNC_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("malformed config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The delegate runtime: a path, or a name looked up on PATH. `None`:
    /// `runc`, else `crun`.
    pub runtime: Option<String>,
    /// Per-container state: `<state_root>/<id>/`.
    pub state_root: PathBuf,
    /// The `boundary-hook` binary; default: beside `boundary-runc`.
    pub hook_path: Option<PathBuf>,
    /// The `boundary-sidecar` binary; default: beside `boundary-runc`.
    pub sidecar_path: Option<PathBuf>,
    /// Whether a container may share the runtime's (the host's) pid
    /// namespace: one that does sees the host's processes, can reach the
    /// Unix sockets under their `/proc/<pid>/root` (a resolver, D-Bus)
    /// past the network boundary, and can signal its sidecar. Refused
    /// unless this is on.
    pub allow_host_pid_namespace: bool,
    pub network: NetworkConfig,
    pub policy: PolicyConfig,
    pub tls: TlsConfig,
    pub dns: DnsConfig,
    pub audit: AuditConfig,
    pub sidecar: SidecarSettings,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// IPv4 pool the jail links are carved from, as `a.b.c.d/len`; each
    /// container takes a /30 (host end .1, jail end .2).
    pub pool: String,
    pub proxy_port: u16,
    pub dns_port: u16,
    /// The most flows (TCP connections, DNS exchanges) a jail may have
    /// tracked by the kernel at once on its host side; new ones beyond it
    /// are dropped. It keeps one container from filling a host side's
    /// connection table (the host's own, for a jail on the host's network).
    /// Kept modest: the kernel walks a rule's list of counted flows when a
    /// new one starts (older kernels the whole list each time).
    pub max_flows: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Rules every container gets.
    pub default_rules: Vec<String>,
    /// Whether containers may add rules of their own (`BOUNDARY_ALLOW`,
    /// annotation `io.boundary.allow`).
    pub allow_container_rules: bool,
    /// Which of the container's sources may add rules, when
    /// `allow_container_rules` is on. `process.env` also holds the image's
    /// `ENV`, so a host that does not trust image authors leaves `env` out.
    pub container_rule_sources: Vec<RuleSource>,
}

/// A place in a container's spec that can hold allow rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// `BOUNDARY_ALLOW` in `process.env` (`docker run -e`, and an image's `ENV`).
    Env,
    /// The annotation `io.boundary.allow`.
    Annotation,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Where the host CA is generated on first use.
    pub ca_dir: PathBuf,
    /// A CA given by path instead (both or neither).
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// Trust the host's system roots for upstream TLS.
    pub upstream_system_roots: bool,
    /// Extra PEM files trusted for upstream TLS.
    pub upstream_ca_files: Vec<PathBuf>,
    /// The host's system roots, concatenated into the containers' trust
    /// bundle together with the host CA.
    pub system_roots_file: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Names that resolve as written (`"origin.test" = "10.1.2.3"`).
    pub pinned: BTreeMap<String, IpAddr>,
    /// Resolvers the sidecar asks; default: the host's resolv.conf.
    pub nameservers: Option<Vec<IpAddr>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `<dir>/<container-id>.jsonl`.
    pub dir: PathBuf,
    /// Size limit of each container's audit log, in bytes; 0: none. Past
    /// it the sidecar counts decisions and writes their counts instead of
    /// one record each, so a container cannot fill the host's disk.
    pub max_bytes: u64,
}

/// Default `audit.max_bytes`: 256 MiB per container.
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Default `sidecar.worker_id_base`: far above the host's users (below
/// 60,000), systemd's dynamic users (61184-65519) and the ranges that
/// container user namespaces are usually given (/etc/subuid from 100000,
/// systemd-nspawn's 524288-1879048191), and below 2^31, which some tools
/// read as negative. (A kubelet with no /etc/subuid entry of its own may
/// give a user-namespaced pod any 64K block from 65536 up: see
/// docs/configuration.md.)
pub const DEFAULT_WORKER_ID_BASE: u32 = 2_000_000_000;

/// Largest `sidecar.upstream_connect_timeout_ms` (5 minutes, the limit for
/// the whole response head).
pub const MAX_CONNECT_TIMEOUT_MS: u64 = 300_000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SidecarSettings {
    /// One unprivileged identity for every sidecar worker, given together.
    /// `None` (the default): each jail's worker runs as a uid and gid of
    /// its own, [`Config::worker_ids`].
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The first of the per-jail worker ids: a jail's worker runs as
    /// uid = gid = this + its link lease's index, so no two live jails'
    /// workers share an identity (one cannot signal another), and none
    /// shares `nobody` with the host's processes or a container's.
    pub worker_id_base: u32,
    /// Allow upstream connections to loopback / link-local / metadata
    /// addresses for names that are not pinned.
    pub allow_special_destinations: bool,
    /// Refuse upstream connections to private addresses (10/8, 172.16/12,
    /// 192.168/16, 100.64/10, fc00::/7) too, for names that are not
    /// pinned: an allowed name that resolves into the host's networks is
    /// then refused like loopback. Off by default.
    pub refuse_private_destinations: bool,
    /// How long `create` waits for the sidecar to be ready, in ms.
    pub ready_timeout_ms: u64,
    /// Limit for one upstream connection (resolve, TCP connect, TLS
    /// handshake), in ms; then the request gets a 502.
    pub upstream_connect_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            runtime: None,
            state_root: PathBuf::from("/run/boundary-runc"),
            hook_path: None,
            sidecar_path: None,
            allow_host_pid_namespace: false,
            network: NetworkConfig::default(),
            policy: PolicyConfig::default(),
            tls: TlsConfig::default(),
            dns: DnsConfig::default(),
            audit: AuditConfig::default(),
            sidecar: SidecarSettings::default(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { pool: "10.213.0.0/16".into(), proxy_port: 15001, dns_port: 15053, max_flows: 4096 }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            default_rules: Vec::new(),
            allow_container_rules: true,
            container_rule_sources: vec![RuleSource::Env, RuleSource::Annotation],
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_dir: PathBuf::from("/var/lib/boundary-runc"),
            ca_cert: None,
            ca_key: None,
            upstream_system_roots: true,
            upstream_ca_files: Vec::new(),
            system_roots_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { dir: PathBuf::from("/var/log/boundary-runc"), max_bytes: DEFAULT_AUDIT_MAX_BYTES }
    }
}

impl Default for SidecarSettings {
    fn default() -> Self {
        SidecarSettings {
            uid: None,
            gid: None,
            worker_id_base: DEFAULT_WORKER_ID_BASE,
            allow_special_destinations: false,
            refuse_private_destinations: false,
            ready_timeout_ms: 5000,
            upstream_connect_timeout_ms: 10_000,
        }
    }
}

/// An IPv4 pool `base/len`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub base: Ipv4Addr,
    pub prefix_len: u8,
}

impl Pool {
    /// Number of /30 blocks in the pool.
    pub fn blocks(&self) -> u32 {
        if self.prefix_len >= 30 { 1 } else { 1u32 << (30 - self.prefix_len) }
    }
}

impl Config {
    /// Where the settings come from: `BOUNDARY_RUNC_CONFIG`, else the default.
    pub fn path() -> PathBuf {
        std::env::var_os(CONFIG_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Loads the settings; a missing file gives the defaults.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(&Self::path())
    }

    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path: path.to_path_buf(), source }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string().trim().to_string() })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        self.pool().map_err(invalid)?;
        if self.tls.ca_cert.is_some() != self.tls.ca_key.is_some() {
            return Err(invalid("tls.ca_cert and tls.ca_key must be given together".into()));
        }
        if self.network.max_flows == 0 {
            return Err(invalid("network.max_flows must be at least 1".into()));
        }
        if self.network.proxy_port == 0 || self.network.dns_port == 0 || self.network.proxy_port == self.network.dns_port {
            return Err(invalid("network.proxy_port and network.dns_port must be distinct and non-zero".into()));
        }
        let connect = self.sidecar.upstream_connect_timeout_ms;
        if !(1..=MAX_CONNECT_TIMEOUT_MS).contains(&connect) {
            return Err(invalid(format!(
                "sidecar.upstream_connect_timeout_ms = {connect}: must be between 1 and {MAX_CONNECT_TIMEOUT_MS} (ms)"
            )));
        }
        self.check_worker_ids().map_err(invalid)?;
        let max = self.audit.max_bytes;
        if max != 0 && max < boundary_contract::AUDIT_MIN_MAX_BYTES {
            return Err(invalid(format!(
                "audit.max_bytes = {max}: must be 0 (no limit) or at least {} (bytes)",
                boundary_contract::AUDIT_MIN_MAX_BYTES
            )));
        }
        for (i, rule) in self.policy.default_rules.iter().enumerate() {
            boundary_policy::parse_rules(rule).map_err(|e| invalid(format!("policy.default_rules[{i}]: {e}")))?;
        }
        Ok(())
    }

    fn check_worker_ids(&self) -> Result<(), String> {
        let s = &self.sidecar;
        match (s.uid, s.gid) {
            (Some(0), _) | (_, Some(0)) => Err("sidecar.uid and sidecar.gid must not be 0: the sidecar worker never runs as root".into()),
            // (uid_t)-1 tells setresuid "no change": the worker would stay root.
            (Some(u32::MAX), _) | (_, Some(u32::MAX)) => Err("sidecar.uid and sidecar.gid must not be 4294967295, which setresuid reads as \"no change\"".into()),
            (Some(_), None) | (None, Some(_)) => Err(
                "sidecar.uid and sidecar.gid must be given together (or neither: each jail's worker then runs as ids of its own from sidecar.worker_id_base)".into(),
            ),
            (Some(_), Some(_)) => Ok(()),
            (None, None) => {
                let base = s.worker_id_base;
                let blocks = self.pool()?.blocks();
                if base < 65_536 {
                    return Err(format!("sidecar.worker_id_base = {base}: must be at least 65536, above the host's own users and nobody (65534)"));
                }
                // 4294967295 is (uid_t)-1, "no change" to setresuid.
                match base.checked_add(blocks - 1) {
                    Some(last) if last < u32::MAX => Ok(()),
                    _ => Err(format!(
                        "sidecar.worker_id_base = {base}: the pool network.pool = {:?} has {blocks} jail links, so the ids would pass 4294967294; lower it",
                        self.network.pool
                    )),
                }
            }
        }
    }

    /// The uid and gid of the sidecar worker of the jail whose link lease
    /// has `index`: the configured pair, or `worker_id_base + index` for
    /// both (unique among the live jails of this state root; a second
    /// state root on the host should use a base of its own).
    pub fn worker_ids(&self, index: u32) -> (u32, u32) {
        match (self.sidecar.uid, self.sidecar.gid) {
            (Some(uid), Some(gid)) => (uid, gid),
            _ => {
                let id = self.sidecar.worker_id_base.saturating_add(index);
                (id, id)
            }
        }
    }

    /// The address pool, parsed.
    pub fn pool(&self) -> Result<Pool, String> {
        let p = &self.network.pool;
        let (addr, len) = p.split_once('/').ok_or_else(|| format!("network.pool {p:?} must be a.b.c.d/len"))?;
        let base: Ipv4Addr = addr.parse().map_err(|_| format!("network.pool {p:?}: bad address"))?;
        let prefix_len: u8 = len.parse().map_err(|_| format!("network.pool {p:?}: bad prefix length"))?;
        if !(8..=30).contains(&prefix_len) {
            return Err(format!("network.pool {p:?}: prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix_len);
        if u32::from(base) & !mask != 0 {
            return Err(format!("network.pool {p:?}: address has host bits set"));
        }
        Ok(Pool { base, prefix_len })
    }

    /// A binary that ships beside this one, unless configured.
    pub fn sibling_binary(configured: &Option<PathBuf>, name: &str) -> PathBuf {
        if let Some(p) = configured {
            return p.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(name)))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin").join(name))
    }

    pub fn hook_binary(&self) -> PathBuf {
        Self::sibling_binary(&self.hook_path, "boundary-hook")
    }

    pub fn sidecar_binary(&self) -> PathBuf {
        Self::sibling_binary(&self.sidecar_path, "boundary-sidecar")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults() {
        let c = Config::load_from(Path::new("/nonexistent/boundary.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.pool().unwrap(), Pool { base: Ipv4Addr::new(10, 213, 0, 0), prefix_len: 16 });
        assert_eq!(c.pool().unwrap().blocks(), 16384);
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
runtime = "crun"
state_root = "/tmp/s"
allow_host_pid_namespace = true
[network]
pool = "10.99.0.0/24"
[policy]
default_rules = ["domain=github.com", "method=GET domain=*.npmjs.org"]
allow_container_rules = false
container_rule_sources = ["annotation"]
[dns]
pinned = { "origin.test" = "10.1.2.3" }
[sidecar]
uid = 1000
gid = 1000
upstream_connect_timeout_ms = 2500
refuse_private_destinations = true
"#;
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.runtime.as_deref(), Some("crun"));
        assert!(c.allow_host_pid_namespace);
        assert!(!Config::default().allow_host_pid_namespace, "the host's pid namespace is refused by default");
        assert!(!c.policy.allow_container_rules);
        assert_eq!(c.policy.container_rule_sources, vec![RuleSource::Annotation]);
        assert_eq!(c.dns.pinned["origin.test"], "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(c.pool().unwrap().blocks(), 64);
        assert_eq!(c.sidecar.upstream_connect_timeout_ms, 2500);
        assert_eq!(Config::default().sidecar.upstream_connect_timeout_ms, 10_000);
        assert!(c.sidecar.refuse_private_destinations);
        assert!(!Config::default().sidecar.refuse_private_destinations, "private networks are reachable by default");
        assert_eq!((c.worker_ids(0), c.worker_ids(7)), ((1000, 1000), (1000, 1000)), "one configured identity for every worker");
    }

    #[test]
    fn each_jails_worker_gets_ids_of_its_own_unless_configured() {
        let d = Config::default();
        assert_eq!((d.sidecar.uid, d.sidecar.gid), (None, None));
        assert_eq!(d.worker_ids(0), (DEFAULT_WORKER_ID_BASE, DEFAULT_WORKER_ID_BASE));
        assert_eq!(d.worker_ids(5), (DEFAULT_WORKER_ID_BASE + 5, DEFAULT_WORKER_ID_BASE + 5));
        let c = Config::parse("[sidecar]\nworker_id_base = 3000000", Path::new("x.toml")).unwrap();
        assert_eq!(c.worker_ids(2), (3_000_002, 3_000_002));
        // The whole pool fits below (uid_t)-1: a /8 pool has 2^22 links.
        let top = u32::MAX - (1 << 22);
        let c = Config::parse(&format!("[network]\npool = \"10.0.0.0/8\"\n[sidecar]\nworker_id_base = {top}"), Path::new("x.toml")).unwrap();
        assert_eq!(c.worker_ids((1 << 22) - 1).0, u32::MAX - 1);
    }

    #[test]
    fn bad_worker_ids_name_the_setting() {
        let bad = |text: &str| Config::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        for text in ["[sidecar]\nuid = 1000", "[sidecar]\ngid = 1000"] {
            let e = bad(text);
            assert!(e.contains("sidecar.uid and sidecar.gid must be given together") && e.contains("worker_id_base"), "{e}");
        }
        for text in ["[sidecar]\nuid = 0\ngid = 1000", "[sidecar]\nuid = 1000\ngid = 0"] {
            let e = bad(text);
            assert!(e.contains("must not be 0") && e.contains("root"), "{e}");
        }
        for text in ["[sidecar]\nuid = 4294967295\ngid = 1000", "[sidecar]\nuid = 1000\ngid = 4294967295"] {
            let e = bad(text);
            assert!(e.contains("must not be 4294967295") && e.contains("no change"), "{e}");
        }
        let e = bad("[sidecar]\nworker_id_base = 65534");
        assert!(e.contains("sidecar.worker_id_base = 65534") && e.contains("at least 65536"), "{e}");
        let top = u32::MAX - (1 << 22) + 1;
        let e = bad(&format!("[network]\npool = \"10.0.0.0/8\"\n[sidecar]\nworker_id_base = {top}"));
        assert!(e.contains(&format!("sidecar.worker_id_base = {top}")) && e.contains("4194304 jail links") && e.contains("4294967294"), "{e}");
        let e = bad("[sidecar]\nworker_id_base = 4294967296");
        assert!(e.contains("worker_id_base"), "{e}");
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let e = Config::parse("runtime = [", Path::new("/etc/x.toml")).unwrap_err().to_string();
        assert!(e.starts_with("malformed config file /etc/x.toml"), "{e}");
        let e = Config::parse("bogus = 1", Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse("[network]\npool = \"10.0.0.1/16\"", Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("host bits"), "{e}");
        let e = Config::parse("[policy]\ndefault_rules = [\"domain=github.*\"]", Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("policy.default_rules[0]") && e.contains("github.*"), "{e}");
        for bad in ["0", "300001"] {
            let e = Config::parse(&format!("[sidecar]\nupstream_connect_timeout_ms = {bad}"), Path::new("x.toml")).unwrap_err().to_string();
            assert!(e.contains("sidecar.upstream_connect_timeout_ms") && e.contains(bad), "{e}");
        }
        for bad in ["1", "65535"] {
            let e = Config::parse(&format!("[audit]\nmax_bytes = {bad}"), Path::new("x.toml")).unwrap_err().to_string();
            assert!(e.contains("audit.max_bytes") && e.contains(bad) && e.contains("65536"), "{e}");
        }
        let e = Config::parse("[audit]\nmax_bytes = -1", Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("max_bytes"), "{e}");
        for good in ["0", "65536", "1073741824"] {
            let c = Config::parse(&format!("[audit]\nmax_bytes = {good}"), Path::new("x.toml")).unwrap();
            assert_eq!(c.audit.max_bytes.to_string(), good);
        }
        assert_eq!(Config::default().audit.max_bytes, 256 * 1024 * 1024);
    }
}
