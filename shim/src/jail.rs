//! A jail's whole life: the pieces `create` builds and `delete` (or the
//! poststop hook) removes.
//!
//! Layout under `state_root` (default `/run/boundary-runc`):
//! `<id>/jail.json` (what was built), `<id>/sidecar.json`, `<id>/sidecar.pids`,
//! `<id>/sidecar.log`, `<id>/resolv.conf`, `<id>/hostns` (Docker's shape
//! only: bind mount of the dedicated host-side namespace), `<id>/no-net-admin`
//! (a container given no CAP_NET_ADMIN, and why); `netns/<id>` (the
//! jail namespace, a shared mount like /run/netns); `userns/<id>` (the user
//! namespace that owns it, when boundary-runc made one); `ipam/<index>`
//! (address leases).
//! Teardown removes every piece and is idempotent: it can run from the
//! hook, from `delete`, from `delete --force` of a half-created container,
//! and from `doctor --clean`, in any order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use boundary_contract::{HostSide, IdMap, JailState, SidecarConfig, JAIL_STATE_FILE, NARROW_DIR, SIDECAR_CONFIG_FILE};

use crate::config::Config;
use crate::{ca, firewall, ipam, link, netns, sidecar};

pub const SIDECAR_PIDS_FILE: &str = "sidecar.pids";
pub const SIDECAR_LOG_FILE: &str = "sidecar.log";
pub const JAIL_IF: &str = "eth0";
/// The jail link's name when the engine configures the jail itself before
/// `start` and names its own interface `eth0` there.
pub const HANDOVER_JAIL_IF: &str = "bnd0";

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("container {0} already has a jail (delete it first, or run `boundary-runc delete --force {0}`)")]
    Exists(String),
    #[error("cannot {op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("cannot read jail state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(
        "the jail of {id} holds links boundary-runc did not make ({links}): the engine put them in the container's network namespace \
         after create, in a shape boundary-runc does not know (it recognises Docker 26.0.0 and 28+ by the resolv.conf, hostname and \
         hosts files dockerd mounts; replacing all three hides it), and they would lead around the sidecar: refused"
    )]
    ForeignLinks { id: String, links: String },
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    #[error("cannot create the jail network namespace")]
    Netns(#[from] netns::NetnsError),
    #[error("cannot create the jail's veth pair")]
    Link(#[from] link::LinkError),
    #[error("cannot install the jail's firewall")]
    Firewall(#[from] firewall::FirewallError),
    #[error("cannot prepare the host CA")]
    Ca(#[from] ca::CaError),
    #[error(transparent)]
    Sidecar(#[from] sidecar::SidecarError),
    #[error("invalid address pool: {0}")]
    Pool(String),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JailError {
    let path = path.to_path_buf();
    move |source| JailError::Io { op, path, source }
}

pub fn state_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

pub fn netns_path(root: &Path, id: &str) -> PathBuf {
    root.join("netns").join(id)
}

/// File in a container's state directory that holds why the container was
/// given no CAP_NET_ADMIN (see `rewrite::userns_blocker`): `exec` into it
/// gives the new process none either. Absent: the container's
/// capabilities count in a user namespace that owns nothing outside the
/// jail, and an `exec` may have any.
pub const NO_NET_ADMIN_FILE: &str = "no-net-admin";

/// Records [`NO_NET_ADMIN_FILE`] when there is a reason (`None`: nothing).
pub fn record_no_net_admin(root: &Path, id: &str, reason: Option<&str>) -> anyhow::Result<()> {
    let Some(reason) = reason else { return Ok(()) };
    let path = state_dir(root, id).join(NO_NET_ADMIN_FILE);
    std::fs::write(&path, reason).map_err(io("write", &path))?;
    Ok(())
}

/// The reason [`record_no_net_admin`] recorded for `id`, if any.
pub fn no_net_admin(root: &Path, id: &str) -> Result<Option<String>, JailError> {
    let path = state_dir(root, id).join(NO_NET_ADMIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(reason) => Ok(Some(reason)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path)(e)),
    }
}

/// Directory of the user namespaces that own jails (a shared mount, as
/// `netns/` is).
pub const USERNS_DIR: &str = "userns";

/// Bind mount of the user namespace boundary-runc made for `id`'s jail.
pub fn userns_path(root: &Path, id: &str) -> PathBuf {
    root.join(USERNS_DIR).join(id)
}

/// Bind mount of the dedicated host-side namespace (Docker's shape),
/// inside the container's state directory: nothing new at the top of the
/// state root, and whatever lists jails by state directory finds it.
pub fn host_netns_path(root: &Path, id: &str) -> PathBuf {
    state_dir(root, id).join(HOST_NETNS_FILE)
}

/// Whether another jail under `root` whose host side is namespace `ns`
/// (compared by inode: engines name one namespace by several paths)
/// recorded that boundary-runc turned its forwarding on.
fn forwarding_turned_on_by_another(root: &Path, id: &str, ns: &Path) -> bool {
    let Some(ino) = netns::inode(ns) else { return false };
    let Ok(entries) = std::fs::read_dir(root) else { return false };
    entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|other| other != id).any(|other| {
        read_state(root, &other).ok().flatten().is_some_and(|s| {
            s.forwarding_turned_on && host_netns(&s.host_side).and_then(netns::inode) == Some(ino)
        })
    })
}

/// The name of the jail's own link in its namespace.
fn jail_if(state: &JailState) -> &str {
    state.engine_handover.as_ref().map_or(JAIL_IF, |e| e.jail_if.as_str())
}

/// Fails when the jail's namespace holds a link other than `lo` and its
/// own (see `cli::before_start`). Reads `/proc/thread-self/net/dev` from a
/// thread in the namespace: no netlink socket, a fraction of a millisecond.
pub fn check_own_links_only(state: &JailState) -> Result<(), JailError> {
    let own = jail_if(state);
    let read = netns::run_in(Some(&state.netns_path), || std::fs::read_to_string("/proc/thread-self/net/dev"))
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    let text = read.map_err(io("read the links of", &state.netns_path))?;
    let foreign: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .filter(|n| !n.is_empty() && *n != "lo" && *n != own && !n.contains(' ') && !n.contains('|'))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(JailError::ForeignLinks { id: state.container_id.clone(), links: foreign.join(", ") })
}

/// File name of [`host_netns_path`] in a state directory.
pub const HOST_NETNS_FILE: &str = "hostns";

/// The namespace a jail's host side lives in (`None`: the runtime's own).
pub fn state_host_netns(state: &JailState) -> Option<&Path> {
    state.dedicated_host_netns.as_deref().or_else(|| host_netns(&state.host_side))
}

/// How the jail is shaped beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Docker (the `libnetwork-setkey` prestart hook): the host side is a
    /// namespace of its own that dockerd configures in place of the jail.
    pub dedicated_host: bool,
    /// Resolvers the sidecar asks when the runtime config names none.
    pub upstream_resolvers: Option<Vec<std::net::IpAddr>>,
    /// The engine gave the container no network (`--network none`): the
    /// sidecar denies every request with that reason.
    pub no_upstream: bool,
    /// Docker 26.0.0 and 28 onward (Docker's bundle, no setkey hook): the
    /// engine configures the jail itself between `create` and `start`;
    /// `start` hands that to the dedicated host side (`handover`). The jail
    /// link is then [`HANDOVER_JAIL_IF`] and gets its default route then.
    pub engine_handover: bool,
    /// The host side would be the runtime's own namespace (the host's):
    /// it becomes a private namespace instead, holding only the veth's host
    /// end, the nft table and the sidecar's sockets, while the sidecar
    /// serves from the runtime's namespace. The host's namespace then gets
    /// no link and no table, and teardown drops the private one whole.
    pub private_host: bool,
    /// A Kubernetes pod sandbox (its rules may come from the pod
    /// annotation, and port-forward's loopback flows go in). Every jail has
    /// a narrowing directory the sidecar reads: containers that join it
    /// (pod app containers, `--network container:X`, podman pod members)
    /// narrow its policy by their own rules while they live.
    pub pod_sandbox: bool,
    /// The host side is the engine's namespace for the container (a pod's,
    /// podman's, CNI's for nerdctl or `ctr --with-ns`: given by path, not
    /// the host's): flows that start outside for its addresses (kubelet's
    /// probes, Services, podman's published ports) are sent on to the
    /// jail, as Docker's published ports are.
    pub publish_inbound: bool,
    /// The spec's own user namespace: the jail's network namespace is
    /// made owned by it, or by a new one with its maps (see
    /// [`netns::create_owned`]).
    pub spec_userns: crate::rewrite::SpecUserNs,
    /// The container cannot have a user namespace of its own (see
    /// `rewrite::userns_blocker`): the jail is the host user namespace's,
    /// and the container gets no CAP_NET_ADMIN.
    pub host_userns: bool,
}

/// The namespace the host side lives in, as a path to enter (`None`: ours).
pub fn host_netns(side: &HostSide) -> Option<&Path> {
    match side {
        HostSide::Path { path } => Some(path),
        HostSide::Fresh | HostSide::Absent => None,
    }
}

/// Names of host-side objects (veth, nft table) come from the jail's host
/// address, not its lease index: two state roots with disjoint pools (tests,
/// several engines) can then never pick the same name, and a name always
/// belongs to exactly one address block.
pub fn addr_tag(host_addr: std::net::Ipv4Addr) -> String {
    format!("{:08x}", u32::from(host_addr))
}

/// A jail whose state, namespaces and spec inputs (CA bundle, resolv.conf)
/// exist: enough to rewrite the container's spec. [`finish`] builds the
/// rest (nft table, veth, sidecar).
#[derive(Debug)]
pub struct Begun {
    state: JailState,
    dir: PathBuf,
    rules: Vec<String>,
    shape: Shape,
    jail_if: String,
    pub ca: ca::CaFiles,
    pub resolv_conf: PathBuf,
    /// The child holding the jail's namespaces until they are bound.
    pending: Option<netns::Pending>,
}

impl Begun {
    pub fn id(&self) -> &str {
        &self.state.container_id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create_token(&self) -> u64 {
        self.state.create_token
    }

    /// Binds the jail's namespaces to their files (see [`netns::start_owned`]);
    /// before anything uses them.
    pub fn bind_namespaces(&mut self) -> Result<(), JailError> {
        let (Some(pending), Some(own)) = (self.pending.take(), self.state.userns.as_ref()) else { return Ok(()) };
        let (uid_map, gid_map) = (IdMap::proc_lines(&own.uid_mappings), IdMap::proc_lines(&own.gid_mappings));
        pending.finish(&self.state.netns_path, netns::Owner::New { path: &own.path, uid_map: &uid_map, gid_map: &gid_map })?;
        Ok(())
    }

    /// The user namespace made to own the jail, if one was.
    pub fn userns(&self) -> Option<&boundary_contract::OwnUserNs> {
        self.state.userns.as_ref()
    }
}

/// Claims `id` for this `create`: refused when anything of a jail by that
/// id exists ([`exists`]: a jail, a container joined to one, a pod record,
/// leftovers), and its state directory made exclusively, so that of two
/// creates of one id only one goes on and the other touches nothing. The
/// claimer tears down on failure.
pub fn claim(root: &Path, id: &str) -> Result<(), JailError> {
    use std::os::unix::fs::DirBuilderExt;
    if exists(root, id) {
        return Err(JailError::Exists(id.to_string()));
    }
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    let dir = state_dir(root, id);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(JailError::Exists(id.to_string())),
        Err(e) => Err(io("create", &dir)(e)),
    }
}

/// Tears down what a failed `create` of `id` built, and returns its error,
/// with whatever could not be undone said after it.
pub fn undo(root: &Path, id: &str, err: anyhow::Error) -> anyhow::Error {
    let left = teardown(root, id);
    if left.is_empty() {
        err
    } else {
        anyhow::anyhow!("{err:#} (and undoing the create left: {})", left.join("; "))
    }
}

/// The first half of a jail: lease, state, namespaces, CA, resolv.conf,
/// for an id this `create` has [`claim`]ed. On failure everything built so
/// far is removed again.
pub fn begin(cfg: &Config, id: &str, host_side: HostSide, rules: Vec<String>, runtime_root: Option<PathBuf>, shape: &Shape) -> Result<Begun, JailError> {
    let root = &cfg.state_root;
    let dir = state_dir(root, id);
    let res = begin_in(cfg, id, dir, host_side, rules, runtime_root, shape);
    if res.is_err() {
        teardown(root, id);
    }
    res
}

fn begin_in(cfg: &Config, id: &str, dir: PathBuf, host_side: HostSide, rules: Vec<String>, runtime_root: Option<PathBuf>, shape: &Shape) -> Result<Begun, JailError> {
    let root = &cfg.state_root;
    let pool = cfg.pool().map_err(JailError::Pool)?;
    let lease = ipam::allocate(root, pool, id)?;
    let state = JailState {
        container_id: id.to_string(),
        index: lease.index,
        host_side,
        netns_path: netns_path(root, id),
        host_if: format!("{}{}", crate::firewall::HOST_LINK_PREFIX, addr_tag(lease.host_addr)),
        host_addr: lease.host_addr,
        jail_addr: lease.jail_addr,
        prefix_len: lease.prefix_len,
        nft_table: format!("boundary_{}", addr_tag(lease.host_addr)),
        sidecar_pid: None,
        runtime_root,
        dedicated_host_netns: (shape.dedicated_host || shape.private_host).then(|| host_netns_path(root, id)),
        engine_handover: shape.engine_handover.then(|| boundary_contract::EngineHandover { jail_if: HANDOVER_JAIL_IF.into() }),
        private_host: shape.private_host && !shape.dedicated_host,
        userns: if shape.host_userns { None } else { own_userns(root, id, &shape.spec_userns) },
        forwarding_turned_on: false,
        create_token: create_token(),
    };
    let jail_if = jail_if(&state).to_string();
    // Written before anything is built, so a crash leaves enough behind for
    // `delete --force` and `doctor --clean` to find every piece.
    write_state(&dir, &state)?;
    // Only the jail's namespace is named by the spec; a host side of our
    // own (P, H) is made by `finish`, while the delegate starts.
    netns::prepare_dir(&root.join("netns"))?;
    // A user namespace of our own is made by a child started here and
    // bound in `bind_namespaces`, once the spec is rewritten: the kernel's
    // work on the namespaces overlaps with that.
    let mut pending = None;
    if shape.host_userns {
        netns::create_all(&[state.netns_path.as_path()])?;
    } else if state.userns.is_some() {
        netns::prepare_dir(&root.join(USERNS_DIR))?;
        pending = Some(netns::start_owned(&state.netns_path)?);
    } else if let crate::rewrite::SpecUserNs::Path(p) = &shape.spec_userns {
        netns::create_owned(&state.netns_path, netns::Owner::Join(p))?;
    }
    let ca = ca::ensure(cfg)?;
    let resolv_conf = dir.join("resolv.conf");
    std::fs::write(&resolv_conf, format!("nameserver {}\n", state.host_addr)).map_err(io("write", &resolv_conf))?;
    crate::pod::create_narrow_dir(&dir).map_err(io("create", &dir.join(NARROW_DIR)))?;
    Ok(Begun { state, dir, rules, shape: shape.clone(), jail_if, ca, resolv_conf, pending })
}

/// The user namespace to make for the jail: every id mapped to itself, or
/// the spec's maps; none when the spec names one by path.
fn own_userns(root: &Path, id: &str, spec: &crate::rewrite::SpecUserNs) -> Option<boundary_contract::OwnUserNs> {
    use crate::rewrite::SpecUserNs;
    let (uid, gid) = match spec {
        SpecUserNs::Path(_) => return None,
        SpecUserNs::Absent => (vec![IdMap::IDENTITY], vec![IdMap::IDENTITY]),
        SpecUserNs::New { uid, gid } => (uid.clone(), gid.clone()),
    };
    Some(boundary_contract::OwnUserNs { path: userns_path(root, id), uid_mappings: uid, gid_mappings: gid })
}

/// The second half: nft table, veth and sidecar, built at once. `creator`
/// is the process that becomes the delegate (the sidecar's orphan watch
/// follows it). On failure nothing is removed: that is the caller's.
pub fn finish(cfg: &Config, begun: Begun, creator: i32) -> Result<(), JailError> {
    let Begun { mut state, dir, rules, shape, jail_if, ca, .. } = begun;
    let (dir, shape) = (dir.as_path(), &shape);
    if let Some(h) = state.dedicated_host_netns.as_deref() {
        netns::create_all(&[h])?;
        if !state.private_host {
            link::prepare_host_side(h)?;
        }
    }
    if shape.publish_inbound {
        if let Some(pod) = host_netns(&state.host_side) {
            // Recorded at once, so the teardown of a create that fails
            // below turns it off again. A jail that finds it on because
            // another of ours turned it on takes the duty too, should that
            // one go first (a second jail publishes inbound flows there
            // only if no process, the first's sidecar included, uses the
            // namespace); the last of them to go turns it off.
            let was_off = link::enable_forwarding(pod)?;
            state.forwarding_turned_on = was_off || forwarding_turned_on_by_another(&cfg.state_root, &state.container_id, pod);
            if state.forwarding_turned_on {
                write_state(dir, &state)?;
            }
        }
    }
    let host_ns = state_host_netns(&state).map(Path::to_path_buf);
    // The slow steps overlap: nft runs on its own thread (its table names
    // the veth by name, so it need not exist yet) while the veth is built
    // and the sidecar starts; the sidecar's answer is awaited last. Nothing
    // runs in the jail before all of them are done.
    let fw_plan = firewall::FirewallPlan {
        host_netns: host_ns.clone(),
        table: state.nft_table.clone(),
        host_if: state.host_if.clone(),
        host_addr: state.host_addr,
        jail_addr: state.jail_addr,
        redirect: true,
        proxy_port: cfg.network.proxy_port,
        dns_port: cfg.network.dns_port,
        max_flows: cfg.network.max_flows,
        publish_to: (shape.dedicated_host || shape.publish_inbound).then_some(state.jail_addr),
        loopback_in: shape.publish_inbound && shape.pod_sandbox,
        // P and H were made just now by `create_all`.
        replace_stale: state.dedicated_host_netns.is_none(),
    };
    let firewall = std::thread::spawn(move || firewall::apply(&fw_plan));
    // Docker's shape also gets a table inside the jail; it names the jail's
    // link by name, so it need not exist yet either.
    let resolver = shape.dedicated_host.then(|| {
        let (ns, jail_if, host_addr) = (state.netns_path.clone(), jail_if.clone(), state.host_addr);
        std::thread::spawn(move || firewall::apply_jail_resolver(&ns, &jail_if, host_addr))
    });
    let sidecar = SidecarStart { ca: &ca, creator, rules };
    let started = start_sidecar(cfg, &state, shape, sidecar, dir, &link::LinkPlan {
        host_netns: host_ns.clone(),
        jail_netns: state.netns_path.clone(),
        host_if: state.host_if.clone(),
        jail_if: jail_if.clone(),
        host_addr: state.host_addr,
        jail_addr: state.jail_addr,
        prefix_len: state.prefix_len,
        default_route: !shape.engine_handover,
        loopback_in: shape.publish_inbound && shape.pod_sandbox,
    });
    // Joined before any error is returned: the teardown that follows a
    // failure must not race an nft run still adding a table. A sidecar
    // already started is killed when `started` is dropped on an error.
    let firewalled = firewall.join().unwrap_or(Err(firewall::FirewallError::Panicked));
    let resolved = resolver.map(|t| t.join().unwrap_or(Err(firewall::FirewallError::Panicked)));
    let starting = started?;
    firewalled?;
    resolved.transpose()?;
    let pid = starting.wait(Duration::from_millis(cfg.sidecar.ready_timeout_ms))?;
    state.sidecar_pid = Some(pid);
    write_state(dir, &state)
}

/// Builds the veth on a thread of its own while the sidecar's files are
/// written and it is started (the sidecar binds the veth's host address
/// with IP_FREEBIND, so the address need not exist yet); the sidecar's
/// answer is awaited by the caller. The thread is joined before any return.
/// On an error a started sidecar is killed (dropping [`sidecar::Starting`]).
/// What the sidecar is started with beyond the jail's state.
struct SidecarStart<'a> {
    ca: &'a ca::CaFiles,
    creator: i32,
    rules: Vec<String>,
}

fn start_sidecar(cfg: &Config, state: &JailState, shape: &Shape, start: SidecarStart<'_>, dir: &Path, link_plan: &link::LinkPlan) -> Result<sidecar::Starting, JailError> {
    let plan = link_plan.clone();
    let linking = std::thread::spawn(move || link::setup(&plan));
    let started = spawn_sidecar(cfg, state, shape, start, dir);
    let linked = linking.join().unwrap_or(Err(link::LinkError::Panicked));
    let started = started?;
    linked?;
    Ok(started)
}

fn spawn_sidecar(cfg: &Config, state: &JailState, shape: &Shape, start: SidecarStart<'_>, dir: &Path) -> Result<sidecar::Starting, JailError> {
    let mut sc = sidecar_config(cfg, state, start.ca, start.rules, dir, start.creator);
    if sc.upstream_resolvers.is_none() {
        sc.upstream_resolvers = shape.upstream_resolvers.clone();
    }
    sc.upstream_enabled = !shape.no_upstream;
    sc.narrow_dir = Some(dir.join(NARROW_DIR));
    sc.rules_in = Some(rules_in(cfg, shape.pod_sandbox));
    let sc_path = dir.join(SIDECAR_CONFIG_FILE);
    let json = serde_json::to_vec_pretty(&sc).map_err(|e| JailError::State { path: sc_path.clone(), message: e.to_string() })?;
    std::fs::write(&sc_path, json).map_err(io("write", &sc_path))?;
    Ok(sidecar::spawn(&cfg.sidecar_binary(), &sc_path, &dir.join(SIDECAR_LOG_FILE))?)
}

/// Where this container's rules are given, for the 403's advice.
fn rules_in(cfg: &Config, pod_sandbox: bool) -> String {
    use crate::config::RuleSource;
    let policy = &cfg.policy;
    if !policy.allow_container_rules {
        format!("policy.default_rules in {}", Config::path().display())
    } else if pod_sandbox && policy.container_rule_sources.contains(&RuleSource::Annotation) {
        format!("the pod's annotation {}", crate::rules::ALLOW_ANNOTATION)
    } else if pod_sandbox {
        format!("policy.default_rules in {}", Config::path().display())
    } else if policy.container_rule_sources.contains(&RuleSource::Env) {
        crate::rules::ALLOW_ENV.to_string()
    } else if policy.container_rule_sources.contains(&RuleSource::Annotation) {
        format!("the annotation {}", crate::rules::ALLOW_ANNOTATION)
    } else {
        format!("policy.default_rules in {}", Config::path().display())
    }
}

fn sidecar_config(cfg: &Config, state: &JailState, ca: &ca::CaFiles, rules: Vec<String>, dir: &Path, creator: i32) -> SidecarConfig {
    let (uid, gid) = cfg.worker_ids(state.index);
    SidecarConfig {
        container_id: state.container_id.clone(),
        netns: state_host_netns(state).map(Path::to_path_buf),
        bind_only_in_netns: state.private_host,
        listen_addr: state.host_addr,
        proxy_port: cfg.network.proxy_port,
        dns_port: cfg.network.dns_port,
        rules,
        narrowing_rules: Vec::new(),
        narrow_dir: None,
        ca_cert: ca.cert.clone(),
        ca_key: ca.key.clone(),
        upstream_system_roots: cfg.tls.upstream_system_roots,
        upstream_ca_files: cfg.tls.upstream_ca_files.clone(),
        system_roots_file: Some(cfg.tls.system_roots_file.clone()).filter(|p| p.is_file()),
        pinned_hosts: cfg.dns.pinned.iter().map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), *v)).collect(),
        upstream_enabled: true,
        allow_special_destinations: cfg.sidecar.allow_special_destinations,
        refuse_private_destinations: cfg.sidecar.refuse_private_destinations,
        upstream_connect_timeout_ms: Some(cfg.sidecar.upstream_connect_timeout_ms),
        rules_in: None,
        config_generation: 0,
        upstream_resolvers: cfg.dns.nameservers.clone(),
        audit_log: cfg.audit.dir.join(format!("{}.jsonl", state.container_id)),
        audit_max_bytes: Some(cfg.audit.max_bytes).filter(|m| *m > 0),
        uid,
        gid,
        pid_file: dir.join(SIDECAR_PIDS_FILE),
        orphan_watch: Some(boundary_contract::OrphanWatch {
            creator_pid: creator,
            jail_netns: state.netns_path.clone(),
            cleanup: {
                let mut c = vec![
                    cfg.hook_binary().display().to_string(),
                    "poststop".into(),
                    "--state-root".into(),
                    cfg.state_root.display().to_string(),
                ];
                // The teardown is for this create's jail only, never for a
                // later create of the same id (see [`teardown_if_same`]).
                c.extend(["--if-create-token".into(), state.create_token.to_string()]);
                c
            },
        }),
    }
}

fn write_state(dir: &Path, state: &JailState) -> Result<(), JailError> {
    let path = dir.join(JAIL_STATE_FILE);
    let json = serde_json::to_vec_pretty(state).map_err(|e| JailError::State { path: path.clone(), message: e.to_string() })?;
    crate::atomic::write(&path, &json, 0o644).map_err(io("write", &path))
}

pub fn read_state(root: &Path, id: &str) -> Result<Option<JailState>, JailError> {
    let path = state_dir(root, id).join(JAIL_STATE_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| JailError::State { path, message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path)(e)),
    }
}

/// Removes every piece of `id`'s jail that exists. Best effort: each step
/// runs even when an earlier one failed; failures are returned as text.
pub fn teardown(root: &Path, id: &str) -> Vec<String> {
    // A container named like a shared directory has no jail (create
    // refuses the id): nothing of it to remove, and the directory stays.
    if crate::args::RESERVED_IDS.contains(&id) {
        return Vec::new();
    }
    let dir = state_dir(root, id);
    let mut errors = Vec::new();
    if crate::gate::await_builder(&dir, crate::gate::TEARDOWN_WAIT) {
        errors.push(format!("the builder of {id}'s jail was still at work after {:?}; torn down without it", crate::gate::TEARDOWN_WAIT));
    }
    errors.extend(crate::pod::leave(root, id));
    let state = match read_state(root, id) {
        Ok(s) => s,
        Err(e) => {
            errors.push(format!("{:#}", anyhow::Error::from(e)));
            None
        }
    };
    // The sidecar stops (SIGTERM, up to 2 s) while everything else goes:
    // the veth (the kernel waits for RCU grace periods), nft's table, the
    // mounts and the files. No container runs any more when a teardown
    // starts. Its pid file is read first, before the directory can go.
    let (recorded, supervisor, config) = (sidecar::read_pids(&dir.join(SIDECAR_PIDS_FILE)), state.as_ref().and_then(|s| s.sidecar_pid), dir.join(SIDECAR_CONFIG_FILE));
    let stopping = std::thread::spawn(move || sidecar::stop(recorded, supervisor, &config, Duration::from_secs(2)));
    // A host side of our own (private P, or Docker's H) goes whole, link
    // and table included: the veth pair goes when the jail's namespace
    // does (its mount is removed below, no process is left in it), and the
    // table with the namespace once nothing holds it any more: for P the
    // sidecar's sockets, for H also dockerd's sandbox, which dockerd
    // releases when the container stops. Deleting them one by one would
    // wait for RCU grace periods (~30 ms) on every stop.
    // In a host side the engine owns (the host's namespace, a pod's), the
    // link goes first and the table only after it: a container that
    // joined this jail may still run, and its veth must never be there
    // without the table's drops.
    if let Some(s) = state.as_ref().filter(|s| s.dedicated_host_netns.is_none()) {
        match link::remove(state_host_netns(s), &s.host_if) {
            Ok(()) => {
                if let Err(e) = firewall::remove(state_host_netns(s), &s.nft_table) {
                    errors.push(format!("{:#}", anyhow::Error::from(e)));
                }
                // Off again as it was found, unless another jail of ours
                // there still needs it (see `finish`).
                if let Some(ns) = host_netns(&s.host_side).filter(|ns| s.forwarding_turned_on && ns.exists()) {
                    if !forwarding_turned_on_by_another(root, id, ns) {
                        if let Err(e) = link::disable_forwarding(ns) {
                            errors.push(format!("{:#}", anyhow::Error::from(e)));
                        }
                    }
                }
            }
            Err(e) => errors.push(format!("{:#} (the nft table {} stays until the link is gone)", anyhow::Error::from(e), s.nft_table)),
        }
    }
    // The namespaces' mounts go while the sidecar stops: a namespace lives
    // on while its sockets do, and the sidecar looks at the jail's mount
    // only when its creator exits, which for `run` is after this hook.
    for ns in [netns_path(root, id), host_netns_path(root, id), userns_path(root, id)] {
        if let Err(e) = netns::remove(&ns) {
            errors.push(format!("{:#}", anyhow::Error::from(e)));
        }
    }
    // The state directory goes while the sidecar stops (on ext4 with
    // `discard` each freed directory block is a synchronous discard). A
    // sidecar still stopping can write a file into it (a respawned
    // worker's pid file) or hold its log open; once it is gone nothing
    // can, and a second pass removes what the first could not.
    let _ = std::fs::remove_dir_all(&dir);
    if stopping.join().is_err() {
        errors.push(format!("stopping the sidecar of {id} panicked"));
    }
    // The lease goes only once the sidecar has: its index is the worker's
    // uid (`Config::worker_ids`), which a create taking the index at once
    // would give its own worker while the old one still ran.
    for (index, holder) in ipam::leases(root) {
        if holder == id {
            if let Err(e) = ipam::release(root, index, id) {
                errors.push(format!("{:#}", anyhow::Error::from(e)));
            }
        }
    }
    if let Err(e) = ipam::remove_claim(root, id) {
        errors.push(format!("{:#}", anyhow::Error::from(e)));
    }
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("cannot remove {}: {e}", dir.display())),
        }
    }
    errors
}

/// A teardown on behalf of one `create` that may come late (its builder
/// after the delegate exited, its keeper's orphan watch): only while the
/// jail's state is that create's (`token`, [`JailState::create_token`]), so
/// a later create of the same id, which may have claimed the id once an
/// earlier teardown removed it, keeps its jail. `None`: the jail is gone or
/// is another create's (or has no state yet), nothing done.
pub fn teardown_if_same(root: &Path, id: &str, token: u64) -> Option<Vec<String>> {
    let same = matches!(read_state(root, id), Ok(Some(s)) if s.create_token == token);
    same.then(|| teardown(root, id))
}

/// A token no earlier create of any id on this host had (time and pid).
fn create_token() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 44) | 1
}

/// Whether `id` has any jail state at all (the fast path of `delete`).
pub fn exists(root: &Path, id: &str) -> bool {
    if crate::args::RESERVED_IDS.contains(&id) {
        return false;
    }
    state_dir(root, id).exists() || netns_path(root, id).exists() || userns_path(root, id).exists()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_late_teardown_leaves_a_later_creates_jail_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = super::state_dir(root.path(), "c");
        std::fs::create_dir_all(&dir).unwrap();
        let state = boundary_contract::JailState {
            container_id: "c".into(),
            index: 0,
            host_side: boundary_contract::HostSide::Absent,
            netns_path: root.path().join("netns/c"),
            host_if: "bndx".into(),
            host_addr: std::net::Ipv4Addr::new(10, 213, 0, 1),
            jail_addr: std::net::Ipv4Addr::new(10, 213, 0, 2),
            prefix_len: 30,
            nft_table: "boundary_x".into(),
            sidecar_pid: None,
            runtime_root: None,
            // A private host side: the teardown touches no link or table
            // outside the (missing) namespace files.
            dedicated_host_netns: Some(root.path().join("c/hostns")),
            engine_handover: None,
            private_host: true,
            userns: None,
            forwarding_turned_on: false,
            create_token: 7,
        };
        super::write_state(&dir, &state).unwrap();
        assert!(super::teardown_if_same(root.path(), "c", 6).is_none(), "another create's token");
        assert!(dir.join(boundary_contract::JAIL_STATE_FILE).exists(), "the later create's jail stays");
        assert!(super::teardown_if_same(root.path(), "c", 7).is_some());
        assert!(!dir.exists(), "its own create's jail goes");
        assert!(super::teardown_if_same(root.path(), "c", 7).is_none(), "nothing left to tear down");
    }

    #[test]
    fn a_reserved_id_has_no_jail_and_its_teardown_removes_nothing() {
        let root = tempfile::tempdir().unwrap();
        for dir in crate::args::RESERVED_IDS {
            std::fs::create_dir_all(root.path().join(dir).join("lease")).unwrap();
            assert!(!super::exists(root.path(), dir));
            assert!(super::teardown(root.path(), dir).is_empty());
            assert!(root.path().join(dir).join("lease").exists(), "{dir} was removed");
        }
    }
}
