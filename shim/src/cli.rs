//! The `boundary-runc` command: runc's interface, with a jail around
//! `create` and `run`.
//!
//! Every subcommand but `create`, `run`, `delete`, `exec`, `features` and
//! boundary-runc's own (`policy`, `audit`, `doctor`, `install`, `uninstall`) is handed to the delegate runtime
//! with one `execve`: same argv, environment, stdio, inherited fds, pid and
//! exit status. `--version` adds a line; `features` guarantees valid JSON.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use boundary_contract::HostSide;

use crate::args::{Globals, Invocation};
use crate::config::Config;
use crate::runtime_log::{self, Level};
use crate::{builder, commands, delegate, docker, exec_env, gate, handover, jail, pod, rewrite, rules};

/// Entry point; never returns.
pub fn main() -> ! {
    let inv = Invocation::parse(std::env::args_os().skip(1).collect());
    // `--version` or `--help` before a subcommand: runc (urfave/cli) and
    // crun (argp) print it and run no subcommand, so neither do we.
    if (inv.globals.version || inv.globals.help) && inv.command().is_some() {
        pass_through(&inv);
    }
    match inv.command() {
        Some("create" | "run") => create(&inv),
        Some("delete") => delete(&inv),
        Some("start") => start(&inv),
        Some("exec") => exec_into(&inv),
        Some("policy" | "audit" | "doctor" | "install" | "uninstall") => {
            let code = commands::run(inv.command_index.map(|i| &inv.args[i..]).unwrap_or_default());
            std::process::exit(code)
        }
        Some("features") => features(&inv),
        Some(c @ ("checkpoint" | "restore")) => refuse_checkpoint(&inv, c),
        None if inv.globals.version => version(&inv),
        Some(c) if crate::args::KNOWN_COMMANDS.contains(&c) => pass_through(&inv),
        None if inv.command_index.is_none() => pass_through(&inv),
        _ => {
            let name = inv.command_index.map(|i| inv.args[i].to_string_lossy().into_owned()).unwrap_or_default();
            let e = anyhow::anyhow!(
                "unknown subcommand {name:?} (or a global flag boundary-runc cannot read before it): refused, \
                 so that no create reaches the runtime unseen"
            );
            runtime_log::fatal(&inv.globals, &e)
        }
    }
}

fn load(globals: &Globals) -> (Config, PathBuf) {
    let cfg = Config::load().unwrap_or_else(|e| runtime_log::fatal(globals, &e.into()));
    let runtime = delegate::find(&cfg).unwrap_or_else(|e| runtime_log::fatal(globals, &e.into()));
    (cfg, runtime)
}

fn exec(globals: &Globals, runtime: &Path, args: &[OsString]) -> ! {
    let err = delegate::exec(runtime, args);
    runtime_log::fatal(globals, &err.into())
}

fn pass_through(inv: &Invocation) -> ! {
    let (_, runtime) = load(&inv.globals);
    exec(&inv.globals, &runtime, &inv.args)
}

/// `--version`: the delegate's lines first (go-runc reads the first line,
/// which must start with `runc version`), then ours, without the word
/// "version": dockerd takes the runtime's name and version from the last
/// line holding it, and reports runc's commit beside them.
fn version(inv: &Invocation) -> ! {
    let (_, runtime) = load(&inv.globals);
    let out = Command::new(&runtime).args(&inv.args).output();
    match out {
        Ok(o) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&o.stdout);
            if !o.stdout.is_empty() && !o.stdout.ends_with(b"\n") {
                let _ = stdout.write_all(b"\n");
            }
            let _ = writeln!(stdout, "boundary-runc {}", env!("CARGO_PKG_VERSION"));
            let _ = std::io::stderr().write_all(&o.stderr);
            std::process::exit(o.status.code().unwrap_or(1))
        }
        Err(e) => runtime_log::fatal(&inv.globals, &anyhow::anyhow!(e).context(format!("cannot run {} --version", runtime.display()))),
    }
}

/// `checkpoint` and `restore` are refused, before the delegate runs. A
/// restore builds the container from its bundle's config.json, which the
/// engine writes afresh from the original spec (containerd does for
/// `docker start --checkpoint`), so the restored container would run
/// outside any jail. Refusing the checkpoint too keeps the container
/// running (runc stops it once the checkpoint is written) instead of
/// leaving an image that can only be restored unjailed.
fn refuse_checkpoint(inv: &Invocation, command: &str) -> ! {
    let id = inv.command_args().last().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let e = anyhow::anyhow!(
        "boundary-runc does not {command} containers ({command} {id}): a container restored from a checkpoint would run outside its network jail; start a new container instead"
    );
    runtime_log::fatal(&inv.globals, &e)
}

/// Minimal features document for a delegate that has no `features`
/// subcommand (crun before 1.9): the OCI versions runc 1.1 speaks.
const FALLBACK_FEATURES: &str = r#"{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2"}"#;

/// `features`: the delegate's JSON verbatim when it has one; a minimal
/// valid document when it has no such subcommand (crun before 1.9 says
/// "unknown command features") or answers with something else than JSON;
/// any other failure is passed on as it is (output and status), so an
/// engine is not told a delegate's features are the minimal ones.
fn features(inv: &Invocation) -> ! {
    use std::io::Write;
    let (_, runtime) = load(&inv.globals);
    let out = match Command::new(&runtime).args(&inv.args).output() {
        Ok(o) => o,
        Err(e) => runtime_log::fatal(&inv.globals, &anyhow::anyhow!(e).context(format!("cannot run {} features", runtime.display()))),
    };
    let mut stdout = std::io::stdout().lock();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).to_ascii_lowercase();
    let lacks = ["unknown command", "no help topic", "command not found", "unknown subcommand"].iter().any(|m| said.contains(m));
    if out.status.success() && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok() {
        let _ = stdout.write_all(&out.stdout);
    } else if out.status.success() || lacks {
        let _ = writeln!(stdout, "{FALLBACK_FEATURES}");
    } else {
        let _ = stdout.write_all(&out.stdout);
        let _ = std::io::stderr().write_all(&out.stderr);
        std::process::exit(out.status.code().unwrap_or(1))
    }
    std::process::exit(0)
}

/// `create` and `run`: build the jail, rewrite config.json, exec runc.
fn create(inv: &Invocation) -> ! {
    let (cfg, runtime) = load(&inv.globals);
    match prepare(&cfg, inv) {
        Ok(warnings) => {
            for w in warnings {
                runtime_log::write(&inv.globals, Level::Warning, &format!("boundary-runc: {w}"));
            }
            exec(&inv.globals, &runtime, &inv.args)
        }
        Err(e) => runtime_log::fatal(&inv.globals, &e),
    }
}

fn prepare(cfg: &Config, inv: &Invocation) -> anyhow::Result<Vec<String>> {
    let a = inv.create_args()?;
    let bundle = match a.bundle {
        Some(b) => b,
        None => std::env::current_dir().context("cannot determine the bundle (current directory)")?,
    };
    let config_path = bundle.join("config.json");
    let bytes = std::fs::read(&config_path).with_context(|| format!("cannot read bundle config {}", config_path.display()))?;
    let spec = rewrite::read_config(&bytes).with_context(|| format!("malformed bundle config {}", config_path.display()))?;
    for (what, p) in [("boundary-hook", cfg.hook_binary()), ("boundary-sidecar", cfg.sidecar_binary())] {
        if !p.is_file() {
            bail!("{what} not found at {} (install it beside boundary-runc, or set {}_path in {})", p.display(), what.trim_start_matches("boundary-"), Config::path().display());
        }
    }
    if !cfg.allow_host_pid_namespace {
        if let Some(why) = rewrite::host_pid_namespace(&spec, same_pidns_as_ours)? {
            bail!(
                "{why}, where it would see the host's processes, reach the Unix sockets under their /proc/<pid>/root \
                 (a resolver, D-Bus) past the network boundary, and signal its sidecar; boundary-runc refuses it \
                 (run it with a pid namespace of its own, or set allow_host_pid_namespace = true in {} to allow it)",
                Config::path().display()
            );
        }
    }
    let pod = pod::Role::of(&spec)?;
    if let Some(sandbox) = pod.as_ref().and_then(|r| r.jailed_sandbox(&cfg.state_root)) {
        return pod::prepare_container(cfg, &a.id, sandbox, spec, &config_path);
    }
    let host_side = original_host_side(&spec, &cfg.state_root.join("netns"))?;
    // A namespace path that is a jail's own namespace is the engine putting
    // this container in that container's network: Docker's and podman's
    // `--network container:X`, and a podman pod's members, which are given
    // `/proc/<infra pid>/ns/net` (and its ipc and uts namespaces, owned by
    // the jail's user namespace). The container joins that jail: its
    // localhost, its sidecar and its rules, as without boundary-runc it
    // would share X's network. (A jail of its own inside X's would cut it
    // off from X's localhost, and could not join X's other namespaces.)
    if let HostSide::Path { path } = &host_side {
        if let Some(jail_id) = docker::joined_jail(&cfg.state_root, path) {
            return prepare_joined(cfg, &a.id, &jail_id, spec, &config_path);
        }
    }
    // A path to the runtime's own namespace (Docker 20.10's `--network
    // host`, `--network container:X` of a host-network X) is taken as no
    // entry at all: a private host side, as newer Docker gets. Nothing of
    // the jail is then in the host's namespace, where the host's own
    // firewall tooling (`nft flush ruleset`) would remove its table, and
    // nothing there can bind the sidecar's address if the sidecar dies.
    let host_side = match host_side {
        HostSide::Path { path } if same_netns_as_ours(&path) => HostSide::Absent,
        other => other,
    };
    let docker = host_side == HostSide::Fresh && docker::has_setkey_hook(&spec);
    // `run` starts at once: no engine configures anything in between.
    let late = host_side == HostSide::Fresh && inv.command() == Some("create") && docker::configures_before_start(&spec);
    let pod_sandbox = pod == Some(pod::Role::Sandbox);
    let shape = match docker || late {
        true => jail::Shape {
            dedicated_host: true,
            upstream_resolvers: docker::upstream_resolvers(&spec),
            no_upstream: docker::network_mode(&spec).as_deref() == Some("none"),
            engine_handover: late,
            private_host: false,
            pod_sandbox,
            ..jail::Shape::default()
        },
        false => jail::Shape {
            private_host: matches!(host_side, HostSide::Fresh | HostSide::Absent),
            pod_sandbox,
            // Inbound flows go on to the jail only where the namespace is
            // this container's alone: a pod's, or one no process uses yet
            // (podman's, CNI's for this container). Never into a namespace
            // that other processes use (`--network container:X` of an
            // unjailed X, the member of a pod whose infra is unjailed, the
            // host's):
            // the jail would take over their published ports.
            publish_inbound: matches!(&host_side, HostSide::Path { path }
                if !is_our_netns(path) && (pod_sandbox || crate::netns::holds_no_process(path))),
            ..jail::Shape::default()
        },
    };
    let spec_userns = rewrite::user_namespace(&spec, &cfg.state_root.join(jail::USERNS_DIR))?;
    let (no_net_admin, host_userns) = match &spec_userns {
        rewrite::SpecUserNs::Absent => {
            let blocked = rewrite::userns_blocker(&spec, owned_by_host)?;
            let host = blocked.is_some();
            (blocked, host)
        }
        rewrite::SpecUserNs::Path(user) => (own_userns_reaching(user, jail::host_netns(&host_side)), false),
        rewrite::SpecUserNs::New { .. } => (None, false),
    };
    let shape = jail::Shape { spec_userns, host_userns, ..shape };
    let rules = rules::collect(cfg, &spec)?;
    let open = pod::podman::opens(&spec)?;
    jail::claim(&cfg.state_root, &a.id)?;
    if open {
        if let Err(e) = pod::podman::mark_open(&cfg.state_root, &a.id) {
            return Err(jail::undo(&cfg.state_root, &a.id, e));
        }
    }
    if pod_sandbox {
        if let Err(e) = pod::record_sandbox(&cfg.state_root, &a.id, &spec) {
            return Err(jail::undo(&cfg.state_root, &a.id, e));
        }
    }
    // The jail's first half, then the spec, then the second half behind
    // the gate while the delegate starts (see `gate`).
    let begun = jail::begin(cfg, &a.id, host_side, rules, inv.globals.root.clone(), &shape)?;
    let plan = rewrite::JailPlan {
        netns_path: jail::netns_path(&cfg.state_root, &a.id),
        hook_path: cfg.hook_binary(),
        state_root: cfg.state_root.clone(),
        ca_bundle: Some(begun.ca.bundle.clone()),
        resolv_conf: Some(begun.resolv_conf.clone()),
        userns: begun.userns().cloned(),
        no_net_admin,
    };
    // The engine's config.json, replaced, stays open across the builder's
    // fork: the builder closes it last, so freeing its blocks (a
    // synchronous discard on some file systems) is not on the way to runc.
    let mut replaced = None;
    let written = jail::record_no_net_admin(&cfg.state_root, &a.id, plan.no_net_admin.as_deref());
    let written = written.and_then(|()| rewrite::rewrite(spec, &plan).map_err(anyhow::Error::from)).and_then(|mut out| {
        if docker {
            docker::wrap_setkey_hooks(&mut out.spec, &cfg.hook_binary(), &cfg.state_root);
        }
        if !(docker && docker::gate_in_setkey(&mut out.spec, gate_timeout(cfg))) {
            gate::add_hook(&mut out.spec, &cfg.hook_binary(), &cfg.state_root, gate_timeout(cfg));
        }
        replaced = rewrite::replace_config(&config_path, &out.spec).with_context(|| format!("cannot write {}", config_path.display()))?;
        Ok(out.warnings)
    });
    let finished = written.and_then(|warnings| builder::finish_detached(cfg, &inv.globals, begun).map(|()| warnings));
    drop(replaced);
    finished.map_err(|e| jail::undo(&cfg.state_root, &a.id, e))
}

/// How long the gate hook waits for the builder: the sidecar's own limit,
/// plus time for nft and the veth on a loaded machine.
fn gate_timeout(cfg: &Config) -> std::time::Duration {
    std::time::Duration::from_millis(cfg.sidecar.ready_timeout_ms.saturating_add(10_000))
}

/// A spec whose network namespace is X's jail (`--network container:X` of
/// Docker and podman, a podman pod's members): the container joins X's
/// jail, under X's sidecar and policy, narrowed by its own rules while it
/// lives (as a pod's app container narrows its pod's); it gets the same
/// capabilities, seccomp and CA changes as any jailed container, and its
/// network entry names the jail's own mount, not the `/proc` path the
/// engine gave.
fn prepare_joined(cfg: &Config, id: &str, jail_id: &str, spec: serde_json::Value, config_path: &Path) -> anyhow::Result<Vec<String>> {
    jail::claim(&cfg.state_root, id)?;
    joined_in(cfg, id, jail_id, spec, config_path).map_err(|e| jail::undo(&cfg.state_root, id, e))
}

fn joined_in(cfg: &Config, id: &str, jail_id: &str, spec: serde_json::Value, config_path: &Path) -> anyhow::Result<Vec<String>> {
    await_jail(cfg, jail_id)?;
    // Its own rules can only narrow what the jail allows (both containers
    // share one network and could relay for each other), so they are
    // taken even where container rules are refused. (A podman pod member's
    // annotation may be the pod's rules instead: see `pod::podman`.)
    let membership = pod::podman::membership(cfg, jail_id, &spec)?;
    let jail = jail::read_state(&cfg.state_root, jail_id)?;
    let netns = jail::netns_path(&cfg.state_root, jail_id);
    let warnings = join_jail(cfg, id, jail_id, jail.as_ref(), &netns, membership.narrowing.as_deref(), spec, config_path)?;
    membership.finish(&cfg.state_root, jail_id, id)?;
    Ok(warnings)
}

/// Waits for the builder of `jail_id`'s jail, if it is still at work, and
/// fails with its reason if the jail could not be built: its namespace is
/// mounted before its table and link exist, and a container that joined
/// it then (created while the jail's own container still is, as only a
/// direct caller of the runtime can) would start before the jail is whole.
/// Engines create a joiner after the jail's `create` returned, when its
/// gate is long open: then this is one lock and one read.
pub fn await_jail(cfg: &Config, jail_id: &str) -> Result<(), gate::GateError> {
    gate::pass(&jail::state_dir(&cfg.state_root, jail_id), jail_id, gate_timeout(cfg))
}

/// What every container that joins an existing jail gets (a pod's app
/// container, [`prepare_joined`]'s): its record (`<id>/joined`), its
/// narrowing of the jail's policy, in force before this returns, its
/// network entry pointed at the jail's mount `netns`, the jail's user
/// namespace (or no CAP_NET_ADMIN), the CA and resolver, written to
/// `config_path`. Undone by the caller's `jail::undo`.
#[allow(clippy::too_many_arguments)]
pub fn join_jail(
    cfg: &Config,
    id: &str,
    jail_id: &str,
    jail: Option<&boundary_contract::JailState>,
    netns: &Path,
    narrowing: Option<&[String]>,
    mut spec: serde_json::Value,
    config_path: &Path,
) -> anyhow::Result<Vec<String>> {
    let root = &cfg.state_root;
    let ca = crate::ca::ensure(cfg)?;
    docker::record_joined(root, id, jail_id).with_context(|| format!("cannot record {id} under {}", root.display()))?;
    if let Some(rules) = narrowing {
        crate::pod::narrow::apply(root, jail_id, id, rules)?;
    }
    crate::pod::set_network_path(&mut spec, netns)?;
    let plan = rewrite::JailPlan {
        netns_path: netns.to_path_buf(),
        hook_path: cfg.hook_binary(),
        state_root: root.clone(),
        ca_bundle: Some(ca.bundle.clone()),
        resolv_conf: Some(jail::state_dir(root, jail_id).join("resolv.conf")),
        ..joined_userns(&spec, jail, jail_id)?
    };
    jail::record_no_net_admin(root, id, plan.no_net_admin.as_deref())?;
    let out = rewrite::rewrite_joined(spec, &plan)?;
    rewrite::write_config_atomically(config_path, &out.spec).with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(out.warnings)
}

/// Whether `path` is the network namespace this process runs in (the
/// host's): never one whose inbound flows go to a jail. Unreadable counts
/// as ours, the safe reading.
fn is_our_netns(path: &Path) -> bool {
    ns_is_ours(path, "net").unwrap_or(true)
}

/// Whether `path` is this process's network namespace, read strictly: an
/// unreadable one is not (unlike [`is_our_netns`]).
fn same_netns_as_ours(path: &Path) -> bool {
    ns_is_ours(path, "net").unwrap_or(false)
}

/// Whether `path` is this process's pid namespace (one that cannot be
/// read is not: the delegate, as root here too, fails on it itself).
fn same_pidns_as_ours(path: &Path) -> bool {
    ns_is_ours(path, "pid").unwrap_or(false)
}

/// Whether `path` is this process's namespace of `kind` (`net`, `pid`);
/// `None` when either cannot be read.
fn ns_is_ours(path: &Path, kind: &str) -> Option<bool> {
    Some(crate::netns::inode(path)? == crate::netns::inode(&Path::new("/proc/self/ns").join(kind))?)
}

/// Whether a namespace file belongs to the host's user namespace (an
/// unreadable one counts as the host's: the safe reading).
fn owned_by_host(path: &Path) -> bool {
    crate::netns::owned_by_our_userns(path).unwrap_or(true)
}

/// The user namespace of a container joining `jail_id`'s jail (a pod's
/// app container, `--network container:X`), as the plan's `userns` and
/// `no_net_admin`: the jail's own user namespace when it has one and the
/// container names none; else, unless the container names its own, no
/// CAP_NET_ADMIN (it would count in the host's user namespace).
pub fn joined_userns(spec: &serde_json::Value, jail: Option<&boundary_contract::JailState>, jail_id: &str) -> anyhow::Result<rewrite::JailPlan> {
    let mut plan = rewrite::JailPlan::default();
    if let Some(entry) = rewrite::user_entry_path(spec)? {
        if let Some(user) = entry {
            plan.no_net_admin = own_userns_reaching(&user, jail.and_then(jail::state_host_netns));
        }
        return Ok(plan);
    }
    match (rewrite::userns_blocker(spec, owned_by_host)?, jail.and_then(|j| j.userns.clone())) {
        (Some(reason), _) => plan.no_net_admin = Some(reason),
        (None, Some(u)) => plan.userns = Some(u),
        (None, None) => plan.no_net_admin = Some(format!("the jail of {jail_id} it joins has no user namespace of boundary-runc's")),
    }
    Ok(plan)
}

/// A spec's own user namespace (by path) that holds capabilities over the
/// jail's host side (`host`: `None` is one the runtime owns) may not have
/// CAP_NET_ADMIN: with it the container could reach that namespace as
/// from the host's user namespace.
fn own_userns_reaching(user: &Path, host: Option<&Path>) -> Option<String> {
    let host = host?;
    crate::netns::userns_reaches(user, host).then(|| {
        format!("its user namespace {} also holds the jail's host side {}", user.display(), host.display())
    })
}

/// The host side as the engine gave it, also when the bundle was already
/// rewritten by an earlier attempt, for this id or another (then it is read
/// back from the annotation the rewrite left).
fn original_host_side(spec: &serde_json::Value, netns_dir: &Path) -> anyhow::Result<HostSide> {
    let current = rewrite::host_side(spec)?;
    if matches!(&current, HostSide::Path { path } if path.starts_with(netns_dir)) {
        if let Some(text) = rewrite::annotation(spec, rewrite::HOST_SIDE_ANNOTATION)? {
            return serde_json::from_str(text).with_context(|| format!("malformed annotation {}", rewrite::HOST_SIDE_ANNOTATION));
        }
    }
    Ok(current)
}

/// `exec`: into a container with jail state, the process gets the CA
/// variables it lacks ([`exec_env`]); then, as for every other container,
/// one `execve` of the delegate.
fn exec_into(inv: &Invocation) -> ! {
    let (cfg, runtime) = load(&inv.globals);
    let a = match exec_env::exec_args(inv) {
        Ok(a) => a,
        Err(e) => {
            // Unreadable (a flag we do not know): fine for a container
            // whose exec may have any capability, refused for one given
            // no CAP_NET_ADMIN, as we could not take it away.
            let guarded = inv.command_args().iter().filter_map(|a| a.to_str()).find(|id| {
                crate::args::validate_id(id).is_ok() && matches!(jail::no_net_admin(&cfg.state_root, id), Ok(Some(_)) | Err(_))
            });
            match guarded {
                None => exec(&inv.globals, &runtime, &inv.args),
                Some(id) => runtime_log::fatal(
                    &inv.globals,
                    &anyhow::Error::from(e).context(format!("exec into {id}, a container given no CAP_NET_ADMIN: refused")),
                ),
            }
        }
    };
    if !jail::state_dir(&cfg.state_root, &a.id).is_dir() {
        exec(&inv.globals, &runtime, &inv.args);
    }
    let no_net_admin = jail::no_net_admin(&cfg.state_root, &a.id);
    let prepared = no_net_admin.map_err(anyhow::Error::from).and_then(|n| Ok(exec_env::prepare(inv, &a, n.as_deref())?));
    match prepared {
        Ok(p) => {
            for w in &p.warnings {
                runtime_log::write(&inv.globals, Level::Warning, &format!("boundary-runc: {w}"));
            }
            exec(&inv.globals, &runtime, &p.args)
        }
        Err(e) => runtime_log::fatal(&inv.globals, &e.context(format!("exec into {}", a.id))),
    }
}

/// `start`: when the engine configured the jail itself after `create`
/// (Docker 26.0.0, 28 onward), what it put there is handed to the jail's
/// host side first ([`handover`]); nothing is started if that fails. Every
/// other `start` is one `execve` after one small file read.
fn start(inv: &Invocation) -> ! {
    let (cfg, runtime) = load(&inv.globals);
    if let Ok(id) = inv.plain_id() {
        if let Err(e) = before_start(&cfg, &inv.globals, &id) {
            runtime_log::fatal(&inv.globals, &e.context(format!("cannot start {id}")));
        }
    }
    exec(&inv.globals, &runtime, &inv.args)
}

/// What `start` of a jailed container does before the delegate's: the
/// hand-over of the engine's network where the jail awaits one, then the
/// check that the jail holds no link but `lo` and its own. An engine that
/// moved a link into the container's namespace after `create` in a shape
/// not recognised as Docker's (whose signs a user's own mounts can hide)
/// would otherwise give the container a way around the sidecar.
fn before_start(cfg: &Config, globals: &Globals, id: &str) -> anyhow::Result<()> {
    let Some(state) = jail::read_state(&cfg.state_root, id)? else {
        return Ok(());
    };
    // Another runtime root's container of the same id is not this jail's.
    if matches!((&state.runtime_root, &globals.root), (Some(mine), Some(given)) if !same_root(mine, given)) {
        return Ok(());
    }
    if state.engine_handover.is_some() {
        handover::run(&cfg.state_root, &state)?;
    }
    jail::check_own_links_only(&state)?;
    Ok(())
}

/// `delete`: when the container has a jail, run the delegate's delete as a
/// child and tear the jail down once the container is gone. Without a jail
/// it is a plain pass-through.
fn delete(inv: &Invocation) -> ! {
    let (cfg, runtime) = load(&inv.globals);
    let id = match inv.delete_args() {
        Ok(a) => a.id,
        Err(_) => exec(&inv.globals, &runtime, &inv.args),
    };
    if !jail::exists(&cfg.state_root, &id) {
        exec(&inv.globals, &runtime, &inv.args);
    }
    // Jails are keyed by id alone; a container of that id under another
    // runtime root (two containerd namespaces, say) is not this jail's:
    // its delete must not tear the jail down.
    // (Only two roots both given can be told apart: one left out is the
    // delegate's default, which may be the other spelled out.)
    let recorded = jail::read_state(&cfg.state_root, &id).ok().flatten().map(|s| s.runtime_root);
    if let Some((Some(mine), Some(given))) = recorded.as_ref().map(|r| (r, &inv.globals.root)) {
        if !same_root(mine, given) {
            exec(&inv.globals, &runtime, &inv.args);
        }
    }
    let status = Command::new(&runtime).args(&inv.args).status();
    let code = match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => runtime_log::fatal(&inv.globals, &anyhow::anyhow!(e).context(format!("cannot run {}", runtime.display()))),
    };
    // The poststop hook has normally torn the jail down already (its state
    // directory is removed last); what it left, or a jail whose hook never
    // ran, is torn down here: once the container is gone under the root
    // this delete named and under the one its create named (a delete with
    // the root left out, or spelled otherwise, may have been another
    // container's of the same id).
    let given = inv.globals.root.as_deref();
    let gone_here = code == 0 || !container_exists(&runtime, given, &id);
    let gone_there = match &recorded {
        Some(mine) if mine.as_deref() != given => !container_exists(&runtime, mine.as_deref(), &id),
        _ => true,
    };
    if gone_here && gone_there && jail::exists(&cfg.state_root, &id) {
        for e in jail::teardown(&cfg.state_root, &id) {
            runtime_log::write(&inv.globals, Level::Warning, &format!("boundary-runc: teardown of {id}: {e}"));
        }
    }
    std::process::exit(code)
}

/// Whether two runtime roots are one directory (`/run/x` and
/// `/var/run/x` are, where /var/run is a link to /run); spelled alike when
/// either cannot be resolved.
fn same_root(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn container_exists(runtime: &Path, root: Option<&Path>, id: &str) -> bool {
    let mut cmd = Command::new(runtime);
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    cmd.arg("state").arg(id).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtime_roots_are_compared_as_directories() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
        assert!(super::same_root(&real, &d.path().join("link")));
        assert!(super::same_root(&real, &d.path().join("./real/../real")));
        assert!(!super::same_root(&real, d.path()));
        assert!(super::same_root(std::path::Path::new("/no/such"), std::path::Path::new("/no/such")));
        assert!(!super::same_root(std::path::Path::new("/no/such"), std::path::Path::new("/no/other")));
    }
}
