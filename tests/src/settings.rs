//! boundary-runc's TOML settings for one test (`BOUNDARY_RUNC_CONFIG`).
//!
//! The directories (state root, CA, audit) are filled in by
//! [`crate::Runtime`], which owns them; this is the rest.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The parts of the config a test chooses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The test's slot (see the crate documentation).
    pub slot: u8,
    /// The delegate runtime (`None`: boundary-runc's default, runc).
    pub runtime: Option<String>,
    /// The jail address pool, `10.213.<slot>.0/24` by default.
    pub pool: String,
    pub default_rules: Vec<String>,
    pub allow_container_rules: bool,
    pub upstream_system_roots: bool,
    pub upstream_ca_files: Vec<PathBuf>,
    pub pinned: BTreeMap<String, IpAddr>,
    /// `None`: the host's resolv.conf.
    pub nameservers: Option<Vec<IpAddr>>,
    /// `sidecar_path`: another sidecar binary (a broken one, for failures).
    pub sidecar: Option<PathBuf>,
    /// `[sidecar] refuse_private_destinations`.
    pub refuse_private: bool,
    /// `[network] max_flows` (`None`: the default).
    pub max_flows: Option<u32>,
    /// `[audit] max_bytes` (`None`: the default).
    pub audit_max_bytes: Option<u64>,
    /// `allow_host_pid_namespace`.
    pub allow_host_pid: bool,
}

/// Where the runtime's state lives; owned by [`crate::Runtime`].
#[derive(Debug, Clone)]
pub struct Dirs {
    pub state_root: PathBuf,
    pub ca_dir: PathBuf,
    pub audit_dir: PathBuf,
}

impl Settings {
    /// Settings for slot `n`: pool `10.213.n.0/24`, no rules, no system
    /// roots (tests trust only what they create).
    pub fn new(slot: u8) -> Settings {
        Settings {
            slot,
            runtime: None,
            pool: format!("10.213.{slot}.0/24"),
            default_rules: Vec::new(),
            allow_container_rules: true,
            upstream_system_roots: false,
            upstream_ca_files: Vec::new(),
            pinned: BTreeMap::new(),
            nameservers: None,
            sidecar: None,
            refuse_private: false,
            max_flows: None,
            audit_max_bytes: None,
            allow_host_pid: false,
        }
    }

    /// Let containers share the host's pid namespace
    /// (`allow_host_pid_namespace`).
    pub fn allow_host_pid_namespace(mut self, allow: bool) -> Settings {
        self.allow_host_pid = allow;
        self
    }

    /// Refuse private destinations (`refuse_private_destinations`).
    pub fn refuse_private(mut self, refuse: bool) -> Settings {
        self.refuse_private = refuse;
        self
    }

    /// Cap the jail's tracked flows (`max_flows`).
    pub fn max_flows(mut self, n: u32) -> Settings {
        self.max_flows = Some(n);
        self
    }

    /// Limit each audit log (`[audit] max_bytes`).
    pub fn audit_max_bytes(mut self, n: u64) -> Settings {
        self.audit_max_bytes = Some(n);
        self
    }

    /// Start `binary` as the sidecar.
    pub fn sidecar(mut self, binary: &Path) -> Settings {
        self.sidecar = Some(binary.to_path_buf());
        self
    }

    pub fn runtime(mut self, r: &str) -> Settings {
        self.runtime = Some(r.to_string());
        self
    }

    pub fn pool(mut self, cidr: &str) -> Settings {
        self.pool = cidr.to_string();
        self
    }

    pub fn default_rule(mut self, rule: &str) -> Settings {
        self.default_rules.push(rule.to_string());
        self
    }

    pub fn container_rules(mut self, allowed: bool) -> Settings {
        self.allow_container_rules = allowed;
        self
    }

    pub fn pin(mut self, name: &str, addr: impl Into<IpAddr>) -> Settings {
        self.pinned.insert(name.to_string(), addr.into());
        self
    }

    pub fn nameserver(mut self, addr: impl Into<IpAddr>) -> Settings {
        self.nameservers.get_or_insert_with(Vec::new).push(addr.into());
        self
    }

    pub fn upstream_ca(mut self, pem: &Path) -> Settings {
        self.upstream_ca_files.push(pem.to_path_buf());
        self
    }

    /// Base address and prefix length of the pool.
    pub fn pool_net(&self) -> (Ipv4Addr, u8) {
        let (a, l) = self.pool.split_once('/').expect("pool is a.b.c.d/len");
        (a.parse().expect("pool address"), l.parse().expect("pool prefix length"))
    }

    /// Whether `addr` lies in the pool.
    pub fn pool_contains(&self, addr: Ipv4Addr) -> bool {
        let (base, len) = self.pool_net();
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        u32::from(addr) & mask == u32::from(base) & mask
    }

    /// The TOML text.
    pub fn to_toml(&self, dirs: &Dirs) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("string quotes");
        let p = |p: &Path| q(&p.to_string_lossy());
        let list = |items: Vec<String>| format!("[{}]", items.join(", "));
        let mut t = String::new();
        if let Some(r) = &self.runtime {
            writeln!(t, "runtime = {}", q(r)).ok();
        }
        writeln!(t, "state_root = {}", p(&dirs.state_root)).ok();
        if let Some(b) = &self.sidecar {
            writeln!(t, "sidecar_path = {}", p(b)).ok();
        }
        if self.allow_host_pid {
            writeln!(t, "allow_host_pid_namespace = true").ok();
        }
        writeln!(t, "\n[network]\npool = {}", q(&self.pool)).ok();
        if let Some(n) = self.max_flows {
            writeln!(t, "max_flows = {n}").ok();
        }
        writeln!(t, "\n[policy]\ndefault_rules = {}", list(self.default_rules.iter().map(|r| q(r)).collect())).ok();
        writeln!(t, "allow_container_rules = {}", self.allow_container_rules).ok();
        writeln!(t, "\n[tls]\nca_dir = {}", p(&dirs.ca_dir)).ok();
        writeln!(t, "upstream_system_roots = {}", self.upstream_system_roots).ok();
        writeln!(t, "upstream_ca_files = {}", list(self.upstream_ca_files.iter().map(|f| p(f)).collect())).ok();
        writeln!(t, "\n[dns]").ok();
        if let Some(ns) = &self.nameservers {
            writeln!(t, "nameservers = {}", list(ns.iter().map(|a| q(&a.to_string())).collect())).ok();
        }
        writeln!(t, "\n[dns.pinned]").ok();
        for (name, addr) in &self.pinned {
            writeln!(t, "{} = {}", q(name), q(&addr.to_string())).ok();
        }
        writeln!(t, "\n[audit]\ndir = {}", p(&dirs.audit_dir)).ok();
        if let Some(n) = self.audit_max_bytes {
            writeln!(t, "max_bytes = {n}").ok();
        }
        if self.refuse_private {
            writeln!(t, "\n[sidecar]\nrefuse_private_destinations = true").ok();
        }
        t
    }
}
