//! Types that cross process boundaries in boundary-runc.
//!
//! The shim (`boundary-runc`) writes these as JSON files under the
//! per-container state directory (`/run/boundary-runc/<id>/`); the hook
//! (`boundary-hook`) and the sidecar (`boundary-sidecar`) read them. Keeping
//! them in one small crate means the three binaries cannot disagree on the
//! schema.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of [`SidecarConfig`] inside a container's state directory.
pub const SIDECAR_CONFIG_FILE: &str = "sidecar.json";
/// File name of the jail state inside a container's state directory.
pub const JAIL_STATE_FILE: &str = "jail.json";
/// Name of the narrowing directory ([`SidecarConfig::narrow_dir`]) inside a
/// jail's state directory.
pub const NARROW_DIR: &str = "narrow";
/// File in the narrowing directory where the sidecar worker appends one
/// [`NarrowingApplied`] JSON line after each load of the directory.
pub const NARROWING_APPLIED_FILE: &str = ".applied";

/// The narrowing sets in force after one load of
/// [`SidecarConfig::narrow_dir`] (the owners, i.e. file names, sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NarrowingApplied {
    pub owners: Vec<String>,
    /// [`SidecarConfig::config_generation`] of the config the loading
    /// worker serves with: a worker reads the config, then loads the
    /// directory, before it serves, so the first record with a new
    /// generation says that config is in force.
    #[serde(default)]
    pub config_generation: u64,
}

/// Everything the sidecar needs to serve one jailed container (or pod).
///
/// The sidecar is started as root by the shim. It enters `netns` (when
/// set), binds its sockets on `listen_addr`, opens the files named here, and
/// then drops to `uid`/`gid` with no capabilities before it reads a byte
/// from the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// The container (or pod sandbox) id, as given to `create`.
    pub container_id: String,
    /// Network namespace to enter before binding: the container's host side.
    /// `None` means the namespace the sidecar was started in.
    pub netns: Option<PathBuf>,
    /// `netns` is only where the sockets are bound (a private host side):
    /// the keeper goes back to the namespace it was started in before it
    /// starts the supervisor, so the worker's upstream connections and DNS
    /// queries leave from there. `false`: everything runs in `netns`.
    #[serde(default)]
    pub bind_only_in_netns: bool,
    /// The host end of the veth: the sidecar binds here.
    pub listen_addr: Ipv4Addr,
    /// TCP port that nftables redirects all of the container's TCP to.
    pub proxy_port: u16,
    /// UDP and TCP port that nftables redirects the container's DNS to.
    pub dns_port: u16,
    /// Allow rules, already validated by the shim (Coder `boundary --allow`
    /// syntax, one rule per entry). Empty means deny everything.
    pub rules: Vec<String>,
    /// Rules that narrow `rules`: when non-empty, a request must be allowed
    /// by both sets (pod policy narrowed by a container's own policy).
    #[serde(default)]
    pub narrowing_rules: Vec<String>,
    /// Directory of further narrowing sets, one file per owner (a pod's app
    /// container) holding canonical rule text; files whose name starts with
    /// `.` are not sets. The worker opens it as root, reads it at start and
    /// again on SIGHUP, and appends a [`NarrowingApplied`] line to
    /// [`NARROWING_APPLIED_FILE`] in it after each load. `None`: none.
    #[serde(default)]
    pub narrow_dir: Option<PathBuf>,
    /// The host CA certificate (PEM) used to sign leaf certificates.
    pub ca_cert: PathBuf,
    /// The host CA private key (PEM, 0600, never mounted in a container).
    pub ca_key: PathBuf,
    /// Trust the host's system roots for upstream TLS.
    pub upstream_system_roots: bool,
    /// Extra CA files (PEM) trusted for upstream TLS.
    #[serde(default)]
    pub upstream_ca_files: Vec<PathBuf>,
    /// The system roots as one PEM file (Debian's
    /// `/etc/ssl/certs/ca-certificates.crt`). Reading this one file is much
    /// faster at sidecar start than scanning the certificate directory;
    /// `None` falls back to the platform's usual locations.
    #[serde(default)]
    pub system_roots_file: Option<PathBuf>,
    /// Names that resolve as written, never through a resolver
    /// (`name = "ip"` in the runtime config). Keys are lowercase, no
    /// trailing dot.
    #[serde(default)]
    pub pinned_hosts: BTreeMap<String, IpAddr>,
    /// Whether the sidecar may connect upstream at all. `false` for
    /// containers whose engine gave them no network (`--network none`):
    /// every request is denied with that reason.
    pub upstream_enabled: bool,
    /// Allow upstream connections to loopback, link-local (metadata) and
    /// other special addresses when the name was not pinned. Default false.
    #[serde(default)]
    pub allow_special_destinations: bool,
    /// Refuse private addresses too (RFC 1918, RFC 6598 shared space, IPv6
    /// unique local) for names that are not pinned and IP literals that no
    /// rule names exactly. Default false: cluster services live there.
    #[serde(default)]
    pub refuse_private_destinations: bool,
    /// Limit for one upstream connection (resolve, TCP connect, TLS
    /// handshake), in ms. `None`: 10 s.
    #[serde(default)]
    pub upstream_connect_timeout_ms: Option<u64>,
    /// Where a rule that would allow a denied request goes, as the 403
    /// says it ("BOUNDARY_ALLOW", the pod annotation, the host's
    /// config). `None`: `BOUNDARY_ALLOW`.
    #[serde(default)]
    pub rules_in: Option<String>,
    /// Raised by each rewrite of a running sidecar's config (a podman
    /// pod's rules given by its first member); workers started after the
    /// rewrite say it in their [`NarrowingApplied`] records. Written only
    /// when not 0, so a sidecar from before it reads the configs it can.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub config_generation: u64,
    /// Resolver used for upstream names (host side's view). `None` means the
    /// system resolver configuration (`/etc/resolv.conf`).
    #[serde(default)]
    pub upstream_resolvers: Option<Vec<IpAddr>>,
    /// Append-only JSON-lines audit log.
    pub audit_log: PathBuf,
    /// Size limit of the audit log in bytes: past it, records are counted
    /// and summarised instead of written. `None`: no limit. At least
    /// [`AUDIT_MIN_MAX_BYTES`].
    #[serde(default)]
    pub audit_max_bytes: Option<u64>,
    /// Unprivileged identity the sidecar worker runs as.
    pub uid: u32,
    pub gid: u32,
    /// File the supervisor writes its and the worker's pids to.
    pub pid_file: PathBuf,
    /// Clean up after a `create` that never produced a container (the
    /// delegate refused the spec after the jail was built; no hook runs
    /// then, and the shim has already exec'd away).
    #[serde(default)]
    pub orphan_watch: Option<OrphanWatch>,
}

/// The smallest audit log size limit (`[audit] max_bytes`) there may be.
pub const AUDIT_MIN_MAX_BYTES: u64 = 64 * 1024;

/// What the supervisor watches to tell a failed `create` from a live
/// container: once `creator_pid` (the shim, which becomes the delegate)
/// exits, a container exists exactly when some process is inside
/// `jail_netns`. If none is, the supervisor runs `cleanup` with the OCI
/// state `{"id": ...}` on stdin, as runc would run the poststop hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrphanWatch {
    pub creator_pid: i32,
    pub jail_netns: PathBuf,
    /// argv of the teardown command (`boundary-hook poststop --state-root R`).
    pub cleanup: Vec<String>,
}

/// Why a [`SidecarConfig`] file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigReadError {
    #[error("reading config {path}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("parsing config {path}")]
    Parse { path: PathBuf, #[source] source: serde_json::Error },
}

impl SidecarConfig {
    /// Reads and parses a sidecar config file (the supervisor and the
    /// worker both load it).
    pub fn read(path: &Path) -> Result<SidecarConfig, ConfigReadError> {
        let text = std::fs::read(path).map_err(|source| ConfigReadError::Read { path: path.to_owned(), source })?;
        serde_json::from_slice(&text).map_err(|source| ConfigReadError::Parse { path: path.to_owned(), source })
    }
}

/// How the container's original network namespace was given in config.json.
/// This is the container's *host side*: where the sidecar lives and where
/// permitted traffic leaves from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostSide {
    /// `{"type":"network"}` with no path: runc would have made a fresh
    /// namespace (Docker, `runc spec`). The host side is the namespace the
    /// runtime runs in.
    Fresh,
    /// `{"type":"network","path":P}`: an existing namespace (podman, CRI,
    /// `--network container:X`, Docker `--network host` on 20.10).
    Path { path: PathBuf },
    /// No network entry at all: the container would share the runtime's
    /// namespace (host networking).
    Absent,
}

/// What the shim set up for one jailed container; read back by `delete`,
/// the poststop hook and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailState {
    pub container_id: String,
    /// Index in the address pool (the lease). The veth (`bnd<hex addr>`) and
    /// the nft table (`boundary_<hex addr>`) are named after `host_addr`.
    pub index: u32,
    pub host_side: HostSide,
    /// Bind mount of the jail's network namespace.
    pub netns_path: PathBuf,
    pub host_if: String,
    pub host_addr: Ipv4Addr,
    pub jail_addr: Ipv4Addr,
    pub prefix_len: u8,
    pub nft_table: String,
    /// Sidecar keeper pid (the process the builder started), once started.
    pub sidecar_pid: Option<i32>,
    /// Runtime root given with `--root`, if any.
    #[serde(default)]
    pub runtime_root: Option<PathBuf>,
    /// A host-side namespace boundary-runc created for this jail (Docker's
    /// shape: dockerd configures this namespace instead of the jail), bind
    /// mounted here. `None`: the host side is `host_side`'s namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_host_netns: Option<PathBuf>,
    /// The engine configures the jail's namespace itself between `create`
    /// and `start` (Docker 26.0.0 and 28 onward: no setkey hook); `start`
    /// first hands what it put there to the dedicated host side. `None`:
    /// nothing to hand over (the jail link is then `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_handover: Option<EngineHandover>,
    /// `dedicated_host_netns` is a *private* host side (the host side would
    /// otherwise have been the runtime's own namespace): it holds only the
    /// veth's host end, the nft table and the sidecar's sockets, and nothing
    /// else refers to it, so teardown drops it whole (the kernel removes
    /// the link and the table with it) instead of deleting them one by one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub private_host: bool,
    /// The user namespace boundary-runc made to own the jail's network
    /// namespace (the container runs in it, so its capabilities reach no
    /// namespace outside the jail). `None`: the spec named one of its own
    /// (a `user` entry with a path), which owns the jail instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<OwnUserNs>,
    /// IPv4 forwarding in the host side (an engine's namespace whose
    /// inbound flows go on to the jail) is on because of boundary-runc: it
    /// was off when this jail or another of ours there turned it on. The
    /// teardown that leaves no jail link there turns it off again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forwarding_turned_on: bool,
    /// Tells this `create`'s jail from a later create's of the same id:
    /// teardowns that may come late (the builder's after its delegate
    /// exited, the keeper's orphan watch) remove only the jail whose token
    /// they were given. 0 in state written before it existed.
    #[serde(default)]
    pub create_token: u64,
}

/// See [`JailState::userns`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnUserNs {
    /// Bind mount of the user namespace.
    pub path: PathBuf,
    /// Its maps, as the spec's `linux.uidMappings` / `gidMappings` give
    /// them (runc requires them beside a `user` entry with a path).
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
}

/// One line of a user namespace's map, as in an OCI spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

impl IdMap {
    /// Every id to itself: root in the namespace is root on the host for
    /// files, and nothing else changes but where capabilities count.
    pub const IDENTITY: IdMap = IdMap { container_id: 0, host_id: 0, size: u32::MAX };

    /// The lines of `/proc/<pid>/uid_map` (or `gid_map`) for `maps`.
    pub fn proc_lines(maps: &[IdMap]) -> String {
        maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// See [`JailState::engine_handover`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineHandover {
    /// Name of the jail's own link inside the jail (not `eth0`, which the
    /// engine gives its own interface).
    pub jail_if: String,
}

/// Process ids written by the sidecar supervisor to `SidecarConfig::pid_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarPids {
    pub supervisor: i32,
    pub worker: Option<i32>,
    /// The keeper: the top of the sidecar's process tree, which holds the
    /// sockets and restarts a supervisor that dies.
    #[serde(default)]
    pub keeper: Option<i32>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC time of the decision.
    pub time: String,
    pub container_id: String,
    /// Per-container sequence number, starting at 1, never reused (it
    /// continues across sidecar restarts).
    pub seq: u64,
    /// `http`, `https`, `connect`, `dns`, `tcp` (non-HTTP bytes), ...
    pub kind: String,
    /// `allow` or `deny`.
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<String>,
    /// The rule that allowed the request.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule: Option<String>,
    /// Why a request was denied or failed (no rule, host/SNI mismatch, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Response status sent to the client.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Response body bytes sent to the client, when allowed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_round_trips_with_a_tag() {
        let h = HostSide::Path { path: "/run/netns/x".into() };
        let s = serde_json::to_string(&h).unwrap();
        assert_eq!(s, r#"{"kind":"path","path":"/run/netns/x"}"#);
        assert_eq!(serde_json::from_str::<HostSide>(&s).unwrap(), h);
        assert_eq!(serde_json::to_string(&HostSide::Fresh).unwrap(), r#"{"kind":"fresh"}"#);
    }
}
