//! The OCI spec rewrite: what `boundary-runc create`/`run` does to a bundle's
//! `config.json` before handing it to the real runtime.
//!
//! [`rewrite`] is a pure function over the parsed document:
//! - it touches only the places listed below and keeps every other field,
//!   known or not, and the order of keys (serde_json's `preserve_order`);
//! - it is idempotent: `rewrite(rewrite(x)) == rewrite(x)` for one plan;
//! - it reads with types checked, so a malformed spec is a
//!   [`RewriteError`] naming the JSON path, never a panic. Fields it does
//!   not read are never inspected.
//!
//! The places it touches:
//! 1. `linux.namespaces`: the network entry becomes
//!    `{"type":"network","path":<jail netns>}`; the original entry is kept,
//!    as a [`HostSide`], in the annotation [`HOST_SIDE_ANNOTATION`].
//! 2. `process.capabilities.{bounding,effective,permitted}`: `CAP_NET_ADMIN`.
//! 3. `linux.seccomp` (when present): see [`crate::seccomp`].
//! 4. `hooks.poststop`: the boundary hook.
//! 5. `mounts` and `process.env`: the boundary CA, when the plan has one.
//! 6. `mounts`: a `/etc/resolv.conf` bind, when the plan has one and the
//!    spec has no mount there.
//! 7. `linux.namespaces`, `linux.uidMappings`, `linux.gidMappings`: the
//!    `user` entry becomes the user namespace that owns the jail (when the
//!    plan has one), so `CAP_NET_ADMIN` counts in the jail alone.

pub(crate) mod access;
mod config_file;

use std::path::{Component, Path, PathBuf};

use boundary_contract::HostSide;
pub use boundary_contract::{IdMap, OwnUserNs};
use serde_json::{json, Map, Value};

use self::access::{
    arr_entry, field, obj, obj_entry, obj_mut, opt_arr, opt_obj, opt_str, string, Loc,
};
pub use self::config_file::{check_process_spellings, read_config, replace_config, write_config_atomically};
use crate::seccomp::{patch_seccomp_at, SeccompChange};

/// Annotation holding the JSON of the container's original [`HostSide`].
pub const HOST_SIDE_ANNOTATION: &str = "run.boundary-runc.host-side";
/// Where the boundary CA bundle is mounted inside the container.
pub const CA_BUNDLE_DEST: &str = "/etc/ssl/boundary-runc/ca-bundle.pem";
/// Environment variables pointed at [`CA_BUNDLE_DEST`] (unless already set).
pub const CA_ENV_VARS: [&str; 5] = [
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
];
/// The one capability the rewrite adds.
pub const NET_ADMIN: &str = "CAP_NET_ADMIN";
/// Where the optional resolver configuration is mounted.
pub const RESOLV_CONF_DEST: &str = "/etc/resolv.conf";

const DOC: &str = "config.json";
/// Options of the read-only file binds the rewrite adds.
const RO_BIND_OPTIONS: [&str; 5] = ["rbind", "ro", "nosuid", "nodev", "noexec"];
/// Capability sets that get [`NET_ADMIN`]; inheritable and ambient are left alone.
const CAP_SETS_EXTENDED: [&str; 3] = ["bounding", "effective", "permitted"];
const CAP_SETS_ALL: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// What the shim prepared for one container; every path must be absolute.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JailPlan {
    /// Bind mount of the jail network namespace.
    pub netns_path: PathBuf,
    /// Absolute path of the `boundary-hook` binary.
    pub hook_path: PathBuf,
    /// State root passed to the hook (`/run/boundary-runc`).
    pub state_root: PathBuf,
    /// Host file mounted read-only at [`CA_BUNDLE_DEST`]; the CA environment
    /// variables are set only when this is `Some`.
    pub ca_bundle: Option<PathBuf>,
    /// Host file bind-mounted read-only at `/etc/resolv.conf`, only when the
    /// spec has no mount with that destination.
    pub resolv_conf: Option<PathBuf>,
    /// The user namespace that owns the jail, when boundary-runc made it:
    /// the container's own entry points at it ([`rewrite`]); a container
    /// joining the jail gets it unless it names a user namespace itself
    /// ([`rewrite_joined`]).
    pub userns: Option<OwnUserNs>,
    /// `Some(reason)`: the container runs in the host's user namespace
    /// (see [`userns_blocker`]), so it gets no CAP_NET_ADMIN, and loses one
    /// the spec gave it.
    pub no_net_admin: Option<String>,
}

/// The spec's own user namespace, before the rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SpecUserNs {
    /// No `user` entry: the jail gets a user namespace mapping every id to
    /// itself.
    #[default]
    Absent,
    /// A `user` entry without a path: the jail's user namespace gets the
    /// spec's maps.
    New { uid: Vec<IdMap>, gid: Vec<IdMap> },
    /// A `user` entry with a path: that namespace owns the jail.
    Path(PathBuf),
}

/// The result of [`rewrite`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    pub spec: Value,
    /// The container's original network entry.
    pub host_side: HostSide,
    /// Things the shim should log: the spec is accepted but less confined
    /// than it could be.
    pub warnings: Vec<String>,
    /// What the seccomp patch changed; `None` when the spec has no
    /// `linux.seccomp` (unconfined).
    pub seccomp: Option<SeccompChange>,
}

/// Why a spec (or a plan) cannot be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("config.json: not valid JSON")]
    Parse(#[source] serde_json::Error),
    #[error("{doc}: {path} must be {expected}")]
    WrongType {
        doc: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("{doc}: {path} is missing")]
    Missing { doc: &'static str, path: String },
    #[error("config.json: process.env sets {key} twice with different values (process.env[{first}] and [{second}]); runc keeps the last, other runtimes the first: give it once")]
    DuplicateEnv { key: String, first: usize, second: usize },
    #[error("config.json: linux.namespaces has two network entries ([{first}] and [{second}])")]
    DuplicateNetworkEntry { first: usize, second: usize },
    #[error(
        "config.json: the network entry already points at the jail namespace {} \
         but annotation {HOST_SIDE_ANNOTATION} is missing",
        netns.display()
    )]
    HostSideAnnotationMissing { netns: PathBuf },
    #[error("config.json: annotation {HOST_SIDE_ANNOTATION} is not a valid host side record")]
    HostSideAnnotationGarbled(#[source] serde_json::Error),
    #[error("config.json: cannot record the host side in annotation {HOST_SIDE_ANNOTATION}")]
    RecordHostSide(#[source] serde_json::Error),
    #[error("config.json: linux.namespaces has a user entry but linux.{0} is missing or empty")]
    UserNsWithoutMappings(&'static str),
    #[error("config.json: linux.namespaces has two user entries ([{first}] and [{second}])")]
    DuplicateUserEntry { first: usize, second: usize },
    #[error("jail plan: {field} {} must be an absolute UTF-8 path", path.display())]
    PlanPath { field: &'static str, path: PathBuf },
    #[error("{at}: a key spelled unlike the OCI field {field:?}, which runc (matching keys without regard to case) would read it as: refused")]
    Misspelled { at: String, field: String },
    #[error("config.json: linux.netDevices moves host network devices ({0}) into the container, where their traffic would bypass the boundary: refused")]
    NetDevices(String),
}

fn root() -> Loc {
    Loc::root(DOC)
}

/// The container's network entry as given: `Fresh` (no path, or an empty
/// one, which runc treats the same), `Path`, or `Absent`. On a spec that was
/// already rewritten this is the jail namespace; the original is in the
/// [`HOST_SIDE_ANNOTATION`].
pub fn host_side(spec: &Value) -> Result<HostSide, RewriteError> {
    Ok(match network_entry(spec)? {
        None => HostSide::Absent,
        Some((_, None)) => HostSide::Fresh,
        Some((_, Some(path))) => HostSide::Path {
            path: PathBuf::from(path),
        },
    })
}

/// Index and non-empty `path` of the network entry in `linux.namespaces`.
fn network_entry(spec: &Value) -> Result<Option<(usize, Option<&str>)>, RewriteError> {
    namespace_entry(obj(spec, &root())?, "network", |first, second| RewriteError::DuplicateNetworkEntry { first, second })
}

/// Index and non-empty `path` of the one entry of type `wanted` in
/// `linux.namespaces`; `twice` names the error for a second one.
fn namespace_entry<'a>(top: &'a Map<String, Value>, wanted: &str, twice: fn(usize, usize) -> RewriteError) -> Result<Option<(usize, Option<&'a str>)>, RewriteError> {
    let linux = root().key("linux");
    let Some(linux_map) = opt_obj(top, "linux", &root())? else {
        return Ok(None);
    };
    let list = linux.key("namespaces");
    let Some(entries) = opt_arr(linux_map, "namespaces", &linux)? else {
        return Ok(None);
    };
    let mut found = None;
    for (i, entry) in entries.iter().enumerate() {
        let here = list.idx(i);
        let entry = obj(entry, &here)?;
        let kind = string(field(entry, "type").ok_or_else(|| here.key("type").missing())?, &here.key("type"))?;
        if kind != wanted {
            continue;
        }
        if let Some((first, _)) = found {
            return Err(twice(first, i));
        }
        found = Some((i, opt_str(entry, "path", &here)?.filter(|p| !p.is_empty())));
    }
    Ok(found)
}

/// The value of `key` in `process.env` (for `BOUNDARY_ALLOW`). A key set
/// more than once with different values is an error: runc keeps the last
/// entry, crun passes both (getenv finds the first), so which was meant is
/// unclear.
pub fn env_value<'a>(spec: &'a Value, key: &str) -> Result<Option<&'a str>, RewriteError> {
    env_lookup(obj(spec, &root())?, key, true)
}

/// The first value of `key` in `process.env`; with `unique`, a second
/// entry with another value is an error.
fn env_lookup<'a>(top: &'a Map<String, Value>, key: &str, unique: bool) -> Result<Option<&'a str>, RewriteError> {
    let Some(process) = opt_obj(top, "process", &root())? else {
        return Ok(None);
    };
    let loc = root().key("process");
    let Some(env) = opt_arr(process, "env", &loc)? else {
        return Ok(None);
    };
    let mut value: Option<(usize, &str)> = None;
    for (i, item) in env.iter().enumerate() {
        let entry = string(item, &loc.key("env").idx(i))?;
        if let Some((k, v)) = entry.split_once('=') {
            if k == key {
                if let Some((first, seen)) = value {
                    if unique && seen != v {
                        return Err(RewriteError::DuplicateEnv { key: key.to_owned(), first, second: i });
                    }
                } else {
                    value = Some((i, v));
                }
            }
        }
    }
    Ok(value.map(|(_, v)| v))
}

/// The value of annotation `key`.
pub fn annotation<'a>(spec: &'a Value, key: &str) -> Result<Option<&'a str>, RewriteError> {
    let top = obj(spec, &root())?;
    match opt_obj(top, "annotations", &root())? {
        Some(annotations) => opt_str(annotations, key, &root().key("annotations")),
        None => Ok(None),
    }
}

/// Rewrite `spec` so the container runs in the jail `plan` describes. See
/// the module documentation for what changes.
pub fn rewrite(spec: Value, plan: &JailPlan) -> Result<Rewritten, RewriteError> {
    rewrite_network(spec, plan, true)
}

/// [`rewrite`] for a container that joins an existing jail (a pod's app
/// container, `--network container:X` with X jailed, a podman pod's
/// member): the caller has already pointed the network entry at the jail's
/// mount, and it is left alone; everything else is the same.
pub fn rewrite_joined(spec: Value, plan: &JailPlan) -> Result<Rewritten, RewriteError> {
    rewrite_network(spec, plan, false)
}

fn rewrite_network(mut spec: Value, plan: &JailPlan, jail: bool) -> Result<Rewritten, RewriteError> {
    let plan = PlanStrings::new(plan)?;
    let mut warnings = Vec::new();
    refuse_net_devices(&spec)?;
    let host_side = if jail { jail_network(&mut spec, &plan)? } else { host_side(&spec)? };
    let top = obj_mut(&mut spec, &root())?;
    if let Some(w) = missing_pid_namespace(top)? {
        warnings.push(w);
    }
    match plan.no_net_admin {
        None => warnings.extend(add_net_admin(top)?),
        Some(reason) => {
            let removed = remove_net_admin(top)?;
            warnings.push(format!(
                "the container gets no CAP_NET_ADMIN{}: {reason}; with it, CAP_NET_ADMIN would count \
                 in the host's user namespace and reach the jail's host side",
                if removed { " (the spec's is removed)" } else { "" }
            ));
        }
    }
    let seccomp = patch_spec_seccomp(top)?;
    add_poststop_hook(top, &plan)?;
    if let Some(own) = plan.userns {
        set_user_namespace(top, own, jail)?;
    }
    if let Some(ca) = plan.ca_bundle {
        mount_ca_bundle(top, ca)?;
    }
    if let Some(resolv) = plan.resolv_conf {
        mount_resolv_conf(top, resolv, plan.state_root)?;
    }
    Ok(Rewritten {
        spec,
        host_side,
        warnings,
        seccomp,
    })
}

/// The plan's paths, checked absolute and UTF-8 (they go into JSON).
struct PlanStrings<'a> {
    netns: &'a str,
    hook: &'a str,
    state_root: &'a str,
    ca_bundle: Option<&'a str>,
    resolv_conf: Option<&'a str>,
    userns: Option<&'a OwnUserNs>,
    no_net_admin: Option<&'a str>,
}

impl<'a> PlanStrings<'a> {
    fn new(plan: &'a JailPlan) -> Result<Self, RewriteError> {
        fn check<'p>(field: &'static str, path: &'p Path) -> Result<&'p str, RewriteError> {
            match path.to_str() {
                Some(s) if path.is_absolute() => Ok(s),
                _ => Err(RewriteError::PlanPath {
                    field,
                    path: path.to_owned(),
                }),
            }
        }
        Ok(PlanStrings {
            netns: check("netns_path", &plan.netns_path)?,
            hook: check("hook_path", &plan.hook_path)?,
            state_root: check("state_root", &plan.state_root)?,
            ca_bundle: plan
                .ca_bundle
                .as_deref()
                .map(|p| check("ca_bundle", p))
                .transpose()?,
            resolv_conf: plan
                .resolv_conf
                .as_deref()
                .map(|p| check("resolv_conf", p))
                .transpose()?,
            no_net_admin: plan.no_net_admin.as_deref(),
            userns: match &plan.userns {
                Some(u) => {
                    check("userns", &u.path)?;
                    Some(u)
                }
                None => None,
            },
        })
    }
}

/// Step 1: point the network entry at the jail and record the original.
///
/// A spec whose network entry already points at a jail namespace was
/// rewritten before, and the original is only in the annotation: for this
/// plan's namespace the annotation is required; for a sibling namespace (same
/// directory: an earlier attempt under another container id) it is used when
/// present.
fn jail_network(spec: &mut Value, plan: &PlanStrings<'_>) -> Result<HostSide, RewriteError> {
    let entry = network_entry(spec)?;
    let ours = Path::new(plan.netns);
    let host_side = match entry {
        Some((_, Some(p))) if Path::new(p) == ours => recorded_host_side(spec, plan.netns)?,
        Some((_, Some(p))) if Path::new(p).parent() == ours.parent() => {
            match annotation(spec, HOST_SIDE_ANNOTATION)? {
                Some(record) => {
                    serde_json::from_str(record).map_err(RewriteError::HostSideAnnotationGarbled)?
                }
                None => host_side(spec)?,
            }
        }
        _ => host_side(spec)?,
    };
    let index = entry.map(|(i, _)| i);
    let record = serde_json::to_string(&host_side).map_err(RewriteError::RecordHostSide)?;

    let top = obj_mut(spec, &root())?;
    let linux = obj_entry(top, "linux", &root())?;
    let namespaces = arr_entry(linux, "namespaces", &root().key("linux"))?;
    let jail = json!({"type": "network", "path": plan.netns});
    match index {
        Some(i) => namespaces[i] = jail,
        None => namespaces.push(jail),
    }
    let annotations = obj_entry(top, "annotations", &root())?;
    annotations.insert(HOST_SIDE_ANNOTATION.to_owned(), Value::String(record));
    Ok(host_side)
}

/// On a spec already rewritten for this jail, the original host side lives
/// only in the annotation.
fn recorded_host_side(spec: &Value, netns: &str) -> Result<HostSide, RewriteError> {
    let record = annotation(spec, HOST_SIDE_ANNOTATION)?.ok_or_else(|| {
        RewriteError::HostSideAnnotationMissing {
            netns: PathBuf::from(netns),
        }
    })?;
    serde_json::from_str(record).map_err(RewriteError::HostSideAnnotationGarbled)
}

/// Index and `path` (non-empty) of the `user` entry in `linux.namespaces`.
fn user_entry(top: &Map<String, Value>) -> Result<Option<(usize, Option<&str>)>, RewriteError> {
    namespace_entry(top, "user", |first, second| RewriteError::DuplicateUserEntry { first, second })
}

/// The spec's `user` entry, if any, with its path, if any.
pub fn user_entry_path(spec: &Value) -> Result<Option<Option<PathBuf>>, RewriteError> {
    Ok(user_entry(obj(spec, &root())?)?.map(|(_, p)| p.map(PathBuf::from)))
}

/// What the spec asks for its user namespace. A path inside `ours` (the
/// directory of the user namespaces boundary-runc makes) is an earlier
/// rewrite's: the spec's maps are then what it asked for.
pub fn user_namespace(spec: &Value, ours: &Path) -> Result<SpecUserNs, RewriteError> {
    let top = obj(spec, &root())?;
    match user_entry(top)? {
        None => Ok(SpecUserNs::Absent),
        Some((_, Some(p))) if !Path::new(p).starts_with(ours) => Ok(SpecUserNs::Path(PathBuf::from(p))),
        Some(_) => Ok(SpecUserNs::New { uid: id_maps(top, "uidMappings")?, gid: id_maps(top, "gidMappings")? }),
    }
}

fn id_maps(top: &Map<String, Value>, key: &'static str) -> Result<Vec<IdMap>, RewriteError> {
    let linux = root().key("linux");
    let list = opt_obj(top, "linux", &root())?.map(|l| opt_arr(l, key, &linux)).transpose()?.flatten();
    let maps: Vec<IdMap> = match list {
        Some(items) => serde_json::from_value(Value::Array(items.clone())).map_err(|_| linux.key(key).wrong("a list of {containerID, hostID, size}"))?,
        None => Vec::new(),
    };
    if maps.is_empty() {
        return Err(RewriteError::UserNsWithoutMappings(key));
    }
    Ok(maps)
}

/// Step 7: the container runs in the user namespace that owns the jail.
/// Its own spec (`replace`) points its `user` entry there; a container
/// joining the jail gets it only when it names no user namespace (one
/// that does cannot enter the jail but by the owner's leave, which the
/// kernel checks, so nothing is opened by leaving it alone).
fn set_user_namespace(top: &mut Map<String, Value>, own: &OwnUserNs, replace: bool) -> Result<(), RewriteError> {
    let existing = user_entry(top)?.map(|(i, _)| i);
    if existing.is_some() && !replace {
        return Ok(());
    }
    let path = own.path.to_str().ok_or_else(|| RewriteError::PlanPath { field: "userns", path: own.path.clone() })?;
    let linux = obj_entry(top, "linux", &root())?;
    let entry = json!({"type": "user", "path": path});
    let namespaces = arr_entry(linux, "namespaces", &root().key("linux"))?;
    match existing {
        Some(i) => namespaces[i] = entry,
        None => namespaces.push(entry),
    }
    for (key, maps) in [("uidMappings", &own.uid_mappings), ("gidMappings", &own.gid_mappings)] {
        linux.insert(key.to_owned(), serde_json::to_value(maps).expect("id maps serialise"));
    }
    Ok(())
}

/// Why the container cannot run in a user namespace of its own, if it
/// cannot: procfs needs a pid namespace owned by it (a spec without a
/// `pid` entry shares the host's), and a namespace joined by path must be
/// owned by it too (runc enters the user namespace first). `owned_by_host`
/// tells whether a namespace file belongs to the host's user namespace.
pub fn userns_blocker(spec: &Value, owned_by_host: impl Fn(&Path) -> bool) -> Result<Option<String>, RewriteError> {
    let entries = namespace_entries(spec)?;
    for (kind, path) in &entries {
        if matches!(*kind, "network" | "user") {
            continue;
        }
        if let Some(path) = path.filter(|p| owned_by_host(Path::new(p))) {
            return Ok(Some(format!("it joins the {kind} namespace {path}, which belongs to the host's user namespace")));
        }
    }
    let pid = entries.iter().any(|(kind, _)| *kind == "pid");
    Ok((!pid).then(|| "it shares the host's pid namespace (no pid entry), where procfs cannot be mounted from a user namespace".to_owned()))
}

/// The spec's `linux.namespaces` as (type, path) pairs, an empty path as
/// none; a malformed entry is an error naming it.
fn namespace_entries(spec: &Value) -> Result<Vec<(&str, Option<&str>)>, RewriteError> {
    let top = obj(spec, &root())?;
    let linux = root().key("linux");
    let entries = match opt_obj(top, "linux", &root())? {
        Some(l) => opt_arr(l, "namespaces", &linux)?.map(Vec::as_slice).unwrap_or_default(),
        None => &[],
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let here = linux.key("namespaces").idx(i);
            let entry = obj(entry, &here)?;
            let kind = string(field(entry, "type").ok_or_else(|| here.key("type").missing())?, &here.key("type"))?;
            Ok((kind, opt_str(entry, "path", &here)?.filter(|p| !p.is_empty())))
        })
        .collect()
}

/// `linux.netDevices` (runc 1.3 onward; CDI and NRI network plugins write
/// it) moves a device of the runtime's namespace into the container's,
/// the jail: an uplink whose traffic never meets the host side's table.
fn refuse_net_devices(spec: &Value) -> Result<(), RewriteError> {
    let linux = root().key("linux");
    let Some(l) = opt_obj(obj(spec, &root())?, "linux", &root())? else { return Ok(()) };
    match field(l, "netDevices") {
        None => Ok(()),
        Some(Value::Object(m)) if m.is_empty() => Ok(()),
        Some(Value::Object(m)) => Err(RewriteError::NetDevices(m.keys().cloned().collect::<Vec<_>>().join(", "))),
        Some(_) => Err(linux.key("netDevices").wrong("an object")),
    }
}

/// Without a user namespace of its own, CAP_NET_ADMIN in the jail would
/// count in the host's user namespace and reach the veth's host side
/// (see `netns::create_owned`): it is taken out of every set.
fn remove_net_admin(top: &mut Map<String, Value>) -> Result<bool, RewriteError> {
    let process_loc = root().key("process");
    let Some(process) = top.get_mut("process").filter(|p| !p.is_null()) else {
        return Err(process_loc.missing());
    };
    process_without_net_admin(obj_mut(process, &process_loc)?, &process_loc)
}

/// Takes CAP_NET_ADMIN out of every capability set of a process object
/// (the spec's `process`, or the process file `exec --process` reads).
/// Names are matched as runtimes might read them: any case, with or
/// without the `CAP_` prefix. Returns whether any was there.
fn process_without_net_admin(process: &mut Map<String, Value>, process_loc: &Loc) -> Result<bool, RewriteError> {
    let caps_loc = process_loc.key("capabilities");
    let Some(caps) = process.get_mut("capabilities").filter(|c| !c.is_null()) else {
        return Ok(false);
    };
    let caps = obj_mut(caps, &caps_loc)?;
    let mut removed = false;
    for set in CAP_SETS_ALL {
        if access::opt_str_list(caps, set, &caps_loc)?.into_iter().any(is_net_admin) {
            if let Some(list) = caps.get_mut(set).and_then(Value::as_array_mut) {
                list.retain(|c| !c.as_str().is_some_and(is_net_admin));
                removed = true;
            }
        }
    }
    Ok(removed)
}

/// [`process_without_net_admin`] for the process file of `exec --process`
/// (a process object at the top level).
pub fn exec_process_without_net_admin(process: &mut Value) -> Result<bool, RewriteError> {
    let top = Loc::root("the exec process file");
    process_without_net_admin(obj_mut(process, &top)?, &top)
}

/// Whether a capability name is CAP_NET_ADMIN's, in any spelling a
/// runtime might accept (`CAP_NET_ADMIN`, `net_admin`, ...).
pub fn is_net_admin(name: &str) -> bool {
    is_capability(name, "NET_ADMIN")
}

/// Whether `name` names the capability `bare` (`NET_ADMIN`): any case,
/// with or without the `CAP_` prefix.
pub fn is_capability(name: &str, bare: &str) -> bool {
    let name = name.trim();
    let rest = match name.get(..4) {
        Some(prefix) if name.len() > 4 && prefix.eq_ignore_ascii_case("CAP_") => &name[4..],
        _ => name,
    };
    rest.eq_ignore_ascii_case(bare)
}

/// Why the container would share the runtime's pid namespace, if it
/// would: its spec has no `pid` entry, or one whose path `is_ours` (the
/// runtime's own namespace, `/proc/1/ns/pid` on a host).
pub fn host_pid_namespace(spec: &Value, is_ours: impl Fn(&Path) -> bool) -> Result<Option<String>, RewriteError> {
    Ok(match namespace_entries(spec)?.into_iter().find(|(kind, _)| *kind == "pid") {
        None => Some("linux.namespaces has no pid entry: the container would share the runtime's pid namespace (the host's)".to_owned()),
        Some((_, Some(path))) if is_ours(Path::new(path)) => {
            Some(format!("linux.namespaces joins the pid namespace {path}, the runtime's own (the host's)"))
        }
        Some(_) => None,
    })
}

/// Warning when the container shares the runtime's pid namespace.
fn missing_pid_namespace(top: &Map<String, Value>) -> Result<Option<String>, RewriteError> {
    let linux = root().key("linux");
    let namespaces = match opt_obj(top, "linux", &root())? {
        Some(l) => opt_arr(l, "namespaces", &linux)?
            .map(Vec::as_slice)
            .unwrap_or_default(),
        None => &[],
    };
    // Every entry's type was checked to be a string by `network_entry`.
    if namespaces
        .iter()
        .any(|e| e.get("type").and_then(Value::as_str) == Some("pid"))
    {
        return Ok(None);
    }
    Ok(Some(
        "linux.namespaces has no pid entry: the container shares the runtime's pid \
         namespace and can see and signal the boundary sidecar"
            .to_owned(),
    ))
}

/// Step 2: add CAP_NET_ADMIN to the bounding, effective and permitted sets.
fn add_net_admin(top: &mut Map<String, Value>) -> Result<Vec<String>, RewriteError> {
    let process_loc = root().key("process");
    let process = match top.get_mut("process") {
        None | Some(Value::Null) => return Err(process_loc.missing()),
        Some(p) => obj_mut(p, &process_loc)?,
    };
    let caps_loc = process_loc.key("capabilities");
    let caps = obj_entry(process, "capabilities", &process_loc)?;
    let mut warnings = Vec::new();
    for set in CAP_SETS_ALL {
        let held = access::opt_str_list(caps, set, &caps_loc)?;
        if held.contains(&"CAP_SYS_ADMIN") {
            warnings.push(format!(
                "process.capabilities.{set} holds CAP_SYS_ADMIN: the container can mount, \
                 unshare and setns with it and may leave the network jail"
            ));
        }
    }
    for set in CAP_SETS_EXTENDED {
        let list = arr_entry(caps, set, &caps_loc)?;
        if !list.iter().any(|c| c == NET_ADMIN) {
            list.push(Value::from(NET_ADMIN));
        }
    }
    Ok(warnings)
}

/// Step 3: patch `linux.seccomp` when there is one.
fn patch_spec_seccomp(top: &mut Map<String, Value>) -> Result<Option<SeccompChange>, RewriteError> {
    let linux_loc = root().key("linux");
    let linux = obj_entry(top, "linux", &root())?;
    match linux.get_mut("seccomp") {
        None | Some(Value::Null) => Ok(None),
        Some(profile) => patch_seccomp_at(profile, &linux_loc.key("seccomp")).map(Some),
    }
}

/// Step 4: run the boundary hook at poststop.
fn add_poststop_hook(
    top: &mut Map<String, Value>,
    plan: &PlanStrings<'_>,
) -> Result<(), RewriteError> {
    let hook = json!({
        "path": plan.hook,
        "args": ["boundary-hook", "poststop", "--state-root", plan.state_root],
    });
    let hooks = obj_entry(top, "hooks", &root())?;
    let poststop = arr_entry(hooks, "poststop", &root().key("hooks"))?;
    if !poststop.contains(&hook) {
        poststop.push(hook);
    }
    Ok(())
}

fn ro_bind(destination: &str, source: &str) -> Value {
    json!({"destination": destination, "type": "bind", "source": source, "options": RO_BIND_OPTIONS})
}

/// Indices of the mounts whose destination is `dest` (compared as paths:
/// `/etc//resolv.conf` and `etc/resolv.conf` are `/etc/resolv.conf`).
fn mounts_at(top: &Map<String, Value>, dest: &str) -> Result<Vec<usize>, RewriteError> {
    let Some(mounts) = opt_arr(top, "mounts", &root())? else {
        return Ok(Vec::new());
    };
    let want = path_key(dest);
    let mut found = Vec::new();
    for (i, mount) in mounts.iter().enumerate() {
        let here = root().key("mounts").idx(i);
        let destination = field(obj(mount, &here)?, "destination")
            .ok_or_else(|| here.key("destination").missing())?;
        if path_key(string(destination, &here.key("destination"))?) == want {
            found.push(i);
        }
    }
    Ok(found)
}

fn path_key(p: &str) -> Vec<&std::ffi::OsStr> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// Step 5: mount the CA bundle and point the usual variables at it.
fn mount_ca_bundle(top: &mut Map<String, Value>, ca: &str) -> Result<(), RewriteError> {
    let ours = mounts_at(top, CA_BUNDLE_DEST)?;
    let mounts = arr_entry(top, "mounts", &root())?;
    let mount = ro_bind(CA_BUNDLE_DEST, ca);
    match ours.split_first() {
        // The destination is ours: a mount there is one we added before.
        Some((&first, rest)) => {
            mounts[first] = mount;
            for &i in rest.iter().rev() {
                mounts.remove(i);
            }
        }
        None => mounts.push(mount),
    }
    set_ca_env(top)
}

/// Set each of [`CA_ENV_VARS`] that `process.env` does not set yet.
fn set_ca_env(top: &mut Map<String, Value>) -> Result<(), RewriteError> {
    let process_loc = root().key("process");
    let mut missing = Vec::new();
    for var in CA_ENV_VARS {
        if env_lookup(top, var, false)?.is_none() {
            missing.push(Value::String(format!("{var}={CA_BUNDLE_DEST}")));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let process = obj_entry(top, "process", &root())?;
    arr_entry(process, "env", &process_loc)?.extend(missing);
    Ok(())
}

/// Step 6: the plan's resolv.conf, unless the spec mounts one already. A
/// resolv.conf mount whose source lies under the state root is one an
/// earlier rewrite added (a bundle re-used for another container): it is
/// replaced, never kept pointing at another jail's file.
fn mount_resolv_conf(top: &mut Map<String, Value>, resolv: &str, state_root: &str) -> Result<(), RewriteError> {
    let at = mounts_at(top, RESOLV_CONF_DEST)?;
    let mounts = arr_entry(top, "mounts", &root())?;
    let ours = |m: &Value| {
        m.get("source").and_then(Value::as_str).is_some_and(|src| Path::new(src).starts_with(state_root))
    };
    match at.split_first() {
        None => mounts.push(ro_bind(RESOLV_CONF_DEST, resolv)),
        Some((&first, rest)) if at.iter().all(|&i| ours(&mounts[i])) => {
            mounts[first] = ro_bind(RESOLV_CONF_DEST, resolv);
            for &i in rest.iter().rev() {
                mounts.remove(i);
            }
        }
        Some(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> JailPlan {
        JailPlan {
            netns_path: "/run/boundary-runc/c1/netns".into(),
            hook_path: "/usr/bin/boundary-hook".into(),
            state_root: "/run/boundary-runc".into(),
            ca_bundle: Some("/run/boundary-runc/ca.pem".into()),
            resolv_conf: Some("/run/boundary-runc/c1/resolv.conf".into()),
            userns: None,
            no_net_admin: None,
        }
    }

    fn spec_with(namespaces: Value) -> Value {
        json!({"ociVersion": "1.0.2", "process": {"args": ["sh"]}, "linux": {"namespaces": namespaces}})
    }

    #[test]
    fn a_bundle_reused_for_another_container_gets_that_containers_resolv_conf() {
        let spec = spec_with(json!([{"type": "network"}]));
        let first = rewrite(spec, &plan()).unwrap().spec;
        let mut other = plan();
        other.netns_path = "/run/boundary-runc/netns/c2".into();
        other.resolv_conf = Some("/run/boundary-runc/c2/resolv.conf".into());
        let second = rewrite(first, &other).unwrap().spec;
        let resolv: Vec<&Value> = second["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == RESOLV_CONF_DEST)
            .collect();
        assert_eq!(resolv.len(), 1);
        assert_eq!(resolv[0]["source"], "/run/boundary-runc/c2/resolv.conf");
        // A resolv.conf the engine mounted is never replaced.
        let mut engine = spec_with(json!([{"type": "network"}]));
        engine["mounts"] = json!([{"destination": "/etc/resolv.conf", "type": "bind", "source": "/var/lib/docker/x/resolv.conf"}]);
        let out = rewrite(engine, &other).unwrap().spec;
        assert_eq!(out["mounts"][0]["source"], "/var/lib/docker/x/resolv.conf");
        assert_eq!(out["mounts"].as_array().unwrap().iter().filter(|m| m["destination"] == RESOLV_CONF_DEST).count(), 1);
    }

    #[test]
    fn host_side_reads_the_network_entry() {
        let fresh = spec_with(json!([{"type": "pid"}, {"type": "network"}]));
        assert_eq!(host_side(&fresh).unwrap(), HostSide::Fresh);
        // runc treats an empty path as no path.
        let empty = spec_with(json!([{"type": "network", "path": ""}]));
        assert_eq!(host_side(&empty).unwrap(), HostSide::Fresh);
        let path = spec_with(json!([{"type": "network", "path": "/run/netns/x"}]));
        assert_eq!(
            host_side(&path).unwrap(),
            HostSide::Path {
                path: "/run/netns/x".into()
            }
        );
        assert_eq!(
            host_side(&spec_with(json!([{"type": "pid"}]))).unwrap(),
            HostSide::Absent
        );
        assert_eq!(
            host_side(&json!({"ociVersion": "1"})).unwrap(),
            HostSide::Absent
        );
        let twice = spec_with(
            json!([{"type": "network"}, {"type": "uts"}, {"type": "network", "path": "/x"}]),
        );
        assert!(matches!(
            host_side(&twice),
            Err(RewriteError::DuplicateNetworkEntry {
                first: 0,
                second: 2
            })
        ));
    }

    #[test]
    fn a_forged_host_side_annotation_is_overwritten() {
        let mut spec = spec_with(json!([{"type": "network", "path": "/run/netns/podman"}]));
        spec["annotations"] =
            json!({(HOST_SIDE_ANNOTATION): r#"{"kind":"path","path":"/proc/1/ns/net"}"#});
        let out = rewrite(spec, &plan()).unwrap();
        assert_eq!(
            out.host_side,
            HostSide::Path {
                path: "/run/netns/podman".into()
            }
        );
        assert_eq!(
            annotation(&out.spec, HOST_SIDE_ANNOTATION).unwrap(),
            Some(r#"{"kind":"path","path":"/run/netns/podman"}"#)
        );
    }

    #[test]
    fn a_spec_jailed_under_another_id_keeps_its_original_host_side() {
        let spec = spec_with(json!([{"type": "network", "path": "/run/netns/podman"}]));
        let first = rewrite(spec, &plan()).unwrap().spec;
        let other = JailPlan {
            netns_path: "/run/boundary-runc/c2/netns".into(),
            ..plan()
        };
        let sibling = JailPlan {
            netns_path: "/run/boundary-runc/c1/netns2".into(),
            ..plan()
        };
        // Another directory: the first jail is taken as the host side.
        let out = rewrite(first.clone(), &other).unwrap();
        assert_eq!(
            out.host_side,
            HostSide::Path {
                path: "/run/boundary-runc/c1/netns".into()
            }
        );
        // A sibling in the same directory: the record is used.
        let out = rewrite(first, &sibling).unwrap();
        assert_eq!(
            out.host_side,
            HostSide::Path {
                path: "/run/netns/podman".into()
            }
        );
        assert_eq!(
            host_side(&out.spec).unwrap(),
            HostSide::Path {
                path: "/run/boundary-runc/c1/netns2".into()
            }
        );
    }

    #[test]
    fn plan_paths_must_be_absolute() {
        let bad = JailPlan {
            hook_path: "boundary-hook".into(),
            ..plan()
        };
        let err = rewrite(spec_with(json!([])), &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "jail plan: hook_path boundary-hook must be an absolute UTF-8 path"
        );
    }

    #[test]
    fn env_lookup_refuses_a_key_given_twice_with_different_values() {
        let spec = json!({"process": {"env": ["A=1", "NOEQUALS", "B=x=y", "A=2", "A", "C=3", "C=3"]}});
        let e = env_value(&spec, "A").unwrap_err().to_string();
        assert!(e.contains("sets A twice with different values (process.env[0] and [3])"), "{e}");
        // Whether a CA variable is set at all is no such question.
        assert_eq!(env_lookup(obj(&spec, &root()).unwrap(), "A", false).unwrap(), Some("1"));
        assert_eq!(env_value(&spec, "C").unwrap(), Some("3"));
        assert_eq!(env_value(&spec, "B").unwrap(), Some("x=y"));
        assert_eq!(env_value(&spec, "NOEQUALS").unwrap(), None);
        assert_eq!(env_value(&json!({}), "A").unwrap(), None);
        assert_eq!(
            annotation(&json!({"annotations": {"k": "v"}}), "k").unwrap(),
            Some("v")
        );
        assert_eq!(
            annotation(&json!({"annotations": {"k": 1}}), "k")
                .unwrap_err()
                .to_string(),
            "config.json: annotations.k must be a string"
        );
    }

    #[test]
    fn capabilities_gain_net_admin_once_and_nothing_else() {
        let mut spec = spec_with(json!([{"type": "pid"}]));
        spec["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_NET_ADMIN"], "inheritable": ["CAP_KILL"], "ambient": []
        });
        let out = rewrite(spec, &plan()).unwrap().spec;
        let caps = &out["process"]["capabilities"];
        assert_eq!(caps["bounding"], json!(["CAP_KILL", "CAP_NET_ADMIN"]));
        assert_eq!(caps["effective"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(caps["permitted"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(caps["inheritable"], json!(["CAP_KILL"]));
        assert_eq!(caps["ambient"], json!([]));
        let keys: Vec<_> = caps.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "bounding",
                "inheritable",
                "ambient",
                "effective",
                "permitted"
            ]
        );
    }

    fn own_userns() -> OwnUserNs {
        OwnUserNs { path: "/run/boundary-runc/userns/c1".into(), uid_mappings: vec![IdMap::IDENTITY], gid_mappings: vec![IdMap::IDENTITY] }
    }

    #[test]
    fn the_spec_user_namespace_is_read_and_ours_is_not_taken_for_the_specs() {
        let ours = Path::new("/run/boundary-runc/userns");
        assert_eq!(user_namespace(&spec_with(json!([{"type": "pid"}])), ours).unwrap(), SpecUserNs::Absent);
        let joined = spec_with(json!([{"type": "user", "path": "/proc/7/ns/user"}]));
        assert_eq!(user_namespace(&joined, ours).unwrap(), SpecUserNs::Path("/proc/7/ns/user".into()));
        let mut new = spec_with(json!([{"type": "user"}]));
        assert!(matches!(user_namespace(&new, ours), Err(RewriteError::UserNsWithoutMappings("uidMappings"))));
        let maps = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        new["linux"]["uidMappings"] = maps.clone();
        new["linux"]["gidMappings"] = maps;
        let want = SpecUserNs::New { uid: vec![IdMap { container_id: 0, host_id: 100000, size: 65536 }], gid: vec![IdMap { container_id: 0, host_id: 100000, size: 65536 }] };
        assert_eq!(user_namespace(&new, ours).unwrap(), want);
        // Rewritten before (a bundle used again): the maps are the spec's.
        let mut again = new.clone();
        again["linux"]["namespaces"] = json!([{"type": "user", "path": "/run/boundary-runc/userns/old"}]);
        assert_eq!(user_namespace(&again, ours).unwrap(), want);
        let two = spec_with(json!([{"type": "user"}, {"type": "user"}]));
        assert!(matches!(user_namespace(&two, ours), Err(RewriteError::DuplicateUserEntry { first: 0, second: 1 })));
    }

    #[test]
    fn the_container_runs_in_the_jails_user_namespace() {
        let plan = JailPlan { userns: Some(own_userns()), ..plan() };
        let out = rewrite(spec_with(json!([{"type": "pid"}, {"type": "user", "path": "/old"}])), &plan).unwrap().spec;
        assert_eq!(out["linux"]["namespaces"][1], json!({"type": "user", "path": "/run/boundary-runc/userns/c1"}));
        assert_eq!(out["linux"]["gidMappings"], json!([{"containerID": 0, "hostID": 0, "size": 4294967295u32}]));
        assert_eq!(rewrite(out.clone(), &plan).unwrap().spec, out, "idempotent");
        // A container joining the jail keeps a user entry of its own.
        let mine = spec_with(json!([{"type": "pid"}, {"type": "user", "path": "/proc/9/ns/user"}]));
        let out = rewrite_joined(mine.clone(), &plan).unwrap().spec;
        assert_eq!(out["linux"]["namespaces"], mine["linux"]["namespaces"]);
        assert!(out["linux"].get("uidMappings").is_none());
        let out = rewrite_joined(spec_with(json!([{"type": "pid"}])), &plan).unwrap().spec;
        assert_eq!(out["linux"]["namespaces"][1], json!({"type": "user", "path": "/run/boundary-runc/userns/c1"}));
    }

    #[test]
    fn the_host_pid_namespace_is_named() {
        let ours = |p: &Path| p == Path::new("/proc/1/ns/pid");
        let no_entry = host_pid_namespace(&spec_with(json!([{"type": "network"}])), ours).unwrap().unwrap();
        assert!(no_entry.contains("no pid entry"), "{no_entry}");
        assert!(host_pid_namespace(&json!({"process": {}}), ours).unwrap().unwrap().contains("no pid entry"));
        let joined = host_pid_namespace(&spec_with(json!([{"type": "pid", "path": "/proc/1/ns/pid"}])), ours).unwrap().unwrap();
        assert!(joined.contains("joins the pid namespace /proc/1/ns/pid"), "{joined}");
        for own in [json!([{"type": "pid"}]), json!([{"type": "pid", "path": ""}]), json!([{"type": "pid", "path": "/proc/9/ns/pid"}])] {
            assert_eq!(host_pid_namespace(&spec_with(own.clone()), ours).unwrap(), None, "{own}");
        }
        assert!(host_pid_namespace(&spec_with(json!([{"type": 7}])), ours).is_err(), "a malformed entry is an error");
    }

    #[test]
    fn net_devices_are_refused() {
        let mut spec = spec_with(json!([{"type": "pid"}, {"type": "network"}]));
        spec["linux"]["netDevices"] = json!({"eth1": {"name": "eth1"}});
        let e = rewrite(spec.clone(), &plan()).unwrap_err().to_string();
        assert!(e.contains("linux.netDevices") && e.contains("eth1"), "{e}");
        assert!(rewrite_joined(spec.clone(), &plan()).is_err());
        spec["linux"]["netDevices"] = json!({});
        rewrite(spec.clone(), &plan()).unwrap();
        spec["linux"]["netDevices"] = json!(null);
        rewrite(spec, &plan()).unwrap();
    }

    #[test]
    fn net_admin_is_recognised_in_every_spelling_a_runtime_accepts() {
        for name in ["CAP_NET_ADMIN", "net_admin", "Cap_Net_Admin", " CAP_NET_ADMIN", "NET_ADMIN"] {
            assert!(is_net_admin(name), "{name}");
        }
        for name in ["CAP_NET_ADMINX", "CAP_NET_RAW", "CAP_", "", "CAPNET_ADMIN", "CAP_CAP_NET_ADMIN", "CAPé", "é", "CA\u{e9}NET"] {
            assert!(!is_net_admin(name), "{name}");
        }
    }

    #[test]
    fn without_a_user_namespace_the_container_gets_no_net_admin() {
        let host = |p: &Path| p == Path::new("/proc/1/ns/ipc");
        let none = |_: &Path| false;
        assert!(userns_blocker(&spec_with(json!([{"type": "ipc"}])), none).unwrap().unwrap().contains("pid namespace"));
        assert_eq!(userns_blocker(&spec_with(json!([{"type": "pid"}, {"type": "ipc", "path": "/proc/2/ns/ipc"}])), host).unwrap(), None);
        let why = userns_blocker(&spec_with(json!([{"type": "pid"}, {"type": "ipc", "path": "/proc/1/ns/ipc"}])), host).unwrap().unwrap();
        assert!(why.contains("ipc namespace /proc/1/ns/ipc"), "{why}");
        let mut spec = spec_with(json!([{"type": "ipc"}]));
        spec["process"]["capabilities"] = json!({"bounding": ["CAP_KILL", "CAP_NET_ADMIN"], "ambient": ["CAP_NET_ADMIN"]});
        let plan = JailPlan { no_net_admin: Some("no pid namespace".into()), ..plan() };
        let out = rewrite(spec, &plan).unwrap();
        assert_eq!(out.spec["process"]["capabilities"], json!({"bounding": ["CAP_KILL"], "ambient": []}));
        assert!(out.warnings.iter().any(|w| w.contains("no CAP_NET_ADMIN (the spec's is removed): no pid namespace")), "{:?}", out.warnings);
    }

    #[test]
    fn ca_mount_at_our_destination_is_replaced_not_duplicated() {
        let mut spec = spec_with(json!([{"type": "pid"}]));
        spec["mounts"] = json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": CA_BUNDLE_DEST, "type": "bind", "source": "/old.pem"},
            {"destination": "/etc//ssl/boundary-runc/ca-bundle.pem/", "type": "bind", "source": "/older.pem"},
            {"destination": "etc/resolv.conf", "type": "bind", "source": "/mine"},
        ]);
        let out = rewrite(spec, &plan()).unwrap().spec;
        let mounts = out["mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 3, "{mounts:?}");
        assert_eq!(mounts[1]["source"], "/run/boundary-runc/ca.pem");
        // The spec's own resolv.conf (relative destination) wins.
        assert_eq!(mounts[2]["source"], "/mine");
    }

    #[test]
    fn without_ca_or_resolver_nothing_is_mounted() {
        let bare = JailPlan {
            ca_bundle: None,
            resolv_conf: None,
            ..plan()
        };
        let out = rewrite(spec_with(json!([{"type": "pid"}])), &bare)
            .unwrap()
            .spec;
        assert!(out.get("mounts").is_none());
        assert!(out["process"].get("env").is_none());
    }

    #[test]
    fn hooks_are_appended_after_existing_ones_once() {
        let mut spec = spec_with(json!([{"type": "pid"}]));
        spec["hooks"] =
            json!({"prestart": [{"path": "/a"}], "poststop": [{"path": "/b", "timeout": 5}]});
        let once = rewrite(spec, &plan()).unwrap().spec;
        let twice = rewrite(once.clone(), &plan()).unwrap().spec;
        assert_eq!(once, twice);
        assert_eq!(once["hooks"]["prestart"], json!([{"path": "/a"}]));
        assert_eq!(
            once["hooks"]["poststop"],
            json!([{"path": "/b", "timeout": 5}, {
                "path": "/usr/bin/boundary-hook",
                "args": ["boundary-hook", "poststop", "--state-root", "/run/boundary-runc"]
            }])
        );
    }

    #[test]
    fn null_seccomp_is_unconfined_and_left_alone() {
        let mut spec = spec_with(json!([{"type": "pid"}]));
        spec["linux"]["seccomp"] = Value::Null;
        let out = rewrite(spec, &plan()).unwrap();
        assert!(out.seccomp.is_none());
        assert_eq!(out.spec["linux"]["seccomp"], Value::Null);
    }
}
