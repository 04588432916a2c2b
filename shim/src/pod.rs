//! Kubernetes pods, driven by the CRI annotations on every spec.
//!
//! A pod's **sandbox** (the pause container: `io.kubernetes.cri.container-type
//! = sandbox`, CRI-O's `io.kubernetes.cri-o.ContainerType = sandbox`) is
//! jailed like any container; its network entry names the pod namespace
//! CNI configured (`/var/run/netns/cni-...`), which becomes the jail's host
//! side. Its rules are the pod's: the host defaults and the pod annotation
//! `io.boundary.allow`, which reaches the sandbox spec through containerd's
//! `pod_annotations` (recorded in `<state_root>/<sandbox>/pod.json`).
//!
//! An **app container** (`container-type = container`) whose sandbox id
//! (`io.kubernetes.cri.sandbox-id`, CRI-O `io.kubernetes.cri-o.SandboxID`)
//! names a jailed sandbox joins that sandbox's jail by id: its network entry
//! is pointed at the jail's bind mount. The path the engine gave must be the
//! jail (containerd: `/proc/<pause pid>/ns/net`) or the pod's host side
//! (CRI-O pins the pod namespace and gives that to every container);
//! anything else is refused. It gets the capabilities, seccomp, CA and
//! resolv.conf changes of a joined container and is recorded like Docker's
//! `--network container:X` (`<state_root>/<id>/joined`), so its delete and
//! poststop only remove that record: the jail goes with the sandbox.
//!
//! Its own `BOUNDARY_ALLOW` narrows the whole pod's policy while it lives
//! ([`narrow`]): the containers of a pod share one network identity and can
//! relay for each other over localhost, so per-container attribution would
//! be no boundary. Its `io.boundary.allow` annotation is the pod's; one that
//! differs from the sandbox's is ignored with a warning.

pub mod narrow;
pub mod podman;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use boundary_contract::{HostSide, JailState, NARROW_DIR};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::{args, docker, jail, rewrite, rules};

pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
pub const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";
/// The pod's record in the sandbox's state directory.
pub const POD_FILE: &str = "pod.json";

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Spec(#[from] rewrite::RewriteError),
    #[error("annotation {key}: {id:?} is not a valid sandbox id")]
    SandboxId { key: &'static str, id: String },
    #[error(
        "container {id} of pod sandbox {sandbox} asks for network namespace {}, which is neither the pod's jail nor its host side",
        path.display()
    )]
    ForeignNamespace {
        id: String,
        sandbox: String,
        path: PathBuf,
    },
    #[error("cannot read the jail of pod sandbox {sandbox}")]
    Jail {
        sandbox: String,
        #[source]
        source: Box<jail::JailError>,
    },
    #[error("pod sandbox {0} has no jail")]
    NoJail(String),
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed pod record {}: {message}", path.display())]
    Record { path: PathBuf, message: String },
}

/// What a spec is in a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Sandbox,
    Container { sandbox_id: String },
}

impl Role {
    /// The role the CRI (or CRI-O) annotations give; `None` for a spec
    /// outside a pod, an unknown type, or a container without a sandbox id.
    pub fn of(spec: &Value) -> Result<Option<Role>, PodError> {
        let names = [
            (CRI_CONTAINER_TYPE, CRI_SANDBOX_ID),
            (CRIO_CONTAINER_TYPE, CRIO_SANDBOX_ID),
        ];
        for (type_key, id_key) in names {
            let Some(kind) = rewrite::annotation(spec, type_key)? else {
                continue;
            };
            return match kind {
                "sandbox" => Ok(Some(Role::Sandbox)),
                "container" => match rewrite::annotation(spec, id_key)? {
                    Some(id) => {
                        args::validate_id(id).map_err(|_| PodError::SandboxId {
                            key: id_key,
                            id: id.to_string(),
                        })?;
                        Ok(Some(Role::Container {
                            sandbox_id: id.to_string(),
                        }))
                    }
                    None => Ok(None),
                },
                _ => Ok(None),
            };
        }
        Ok(None)
    }

    /// The sandbox to join: an app container's sandbox when it is a jailed
    /// pod sandbox (its jail and its pod record, which only a `create` with
    /// the sandbox role writes). The annotations are the engine's word
    /// under CRI, but `docker run --annotation` and podman's can write them
    /// too: naming any other jailed container must not lead into its jail.
    pub fn jailed_sandbox(&self, state_root: &Path) -> Option<&str> {
        match self {
            Role::Container { sandbox_id } => {
                let dir = state_root.join(sandbox_id);
                (dir.join(boundary_contract::JAIL_STATE_FILE).is_file() && dir.join(POD_FILE).is_file()).then_some(sandbox_id)
            }
            _ => None,
        }
    }
}

/// What the shim remembers of a pod, in the sandbox's state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Canonical rules of the sandbox's `io.boundary.allow` (the pod
    /// annotation); `None` when it had none.
    #[serde(default)]
    pub annotation_rules: Option<Vec<String>>,
}

/// Records the pod annotation of a sandbox about to be jailed as `id`
/// (already [`jail::claim`]ed).
pub fn record_sandbox(state_root: &Path, id: &str, spec: &Value) -> anyhow::Result<()> {
    let dir = jail::state_dir(state_root, id);
    let record = PodRecord {
        annotation_rules: rules::annotation_rules(spec)?,
    };
    create_private_dir(&dir)?;
    let path = dir.join(POD_FILE);
    let text = serde_json::to_vec_pretty(&record).context("cannot serialise the pod record")?;
    std::fs::write(&path, text).map_err(|source| PodError::Io {
        op: "write",
        path,
        source,
    })?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), PodError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(|source| PodError::Io {
            op: "create",
            path: dir.to_path_buf(),
            source,
        })
}

/// The pod record of a sandbox (a default one when it has none).
pub fn read_record(state_root: &Path, sandbox: &str) -> Result<PodRecord, PodError> {
    let path = jail::state_dir(state_root, sandbox).join(POD_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| PodError::Record {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PodRecord::default()),
        Err(source) => Err(PodError::Io {
            op: "read",
            path,
            source,
        }),
    }
}

/// The narrowing directory of a pod sandbox's jail (created with the
/// jail, so its sidecar can open it at start): readable by the sidecar's
/// unprivileged worker, which reaches it only through a descriptor opened
/// as root (the state directory above it is 0700).
pub fn create_narrow_dir(state_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = state_dir.join(NARROW_DIR);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
}

fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Checks that the network namespace the engine gave an app container is
/// its pod's: the jail itself or the pod's host side. No entry, or one
/// without a path, is joined explicitly as well (the sandbox was jailed the
/// same way).
pub fn check_namespace(spec: &Value, id: &str, sandbox: &JailState) -> Result<(), PodError> {
    let path = match rewrite::host_side(spec)? {
        HostSide::Path { path } => path,
        // A host-network pod: the sandbox had no network entry either.
        HostSide::Absent if sandbox.host_side == HostSide::Absent => return Ok(()),
        // CRI gives an app container its sandbox's namespace by path, or
        // (host network) none; anything else is not the pod's.
        other => {
            return Err(PodError::ForeignNamespace {
                id: id.to_string(),
                sandbox: sandbox.container_id.clone(),
                path: PathBuf::from(match other {
                    HostSide::Fresh => "(a new namespace)",
                    _ => "(the host's namespace)",
                }),
            })
        }
    };
    let given = ns_id(&path);
    let pod_side = match &sandbox.host_side {
        HostSide::Path { path } => ns_id(path),
        HostSide::Fresh | HostSide::Absent => None,
    };
    if given.is_some() && (given == ns_id(&sandbox.netns_path) || given == pod_side) {
        return Ok(());
    }
    Err(PodError::ForeignNamespace {
        id: id.to_string(),
        sandbox: sandbox.container_id.clone(),
        path,
    })
}

/// Points the spec's network entry at `netns` (adding the entry if there is
/// none).
pub fn set_network_path(spec: &mut Value, netns: &Path) -> Result<(), PodError> {
    let wrong = |path: &str, expected| rewrite::RewriteError::WrongType {
        doc: "config.json",
        path: path.into(),
        expected,
    };
    let top = spec
        .as_object_mut()
        .ok_or_else(|| wrong("(root)", "an object"))?;
    let linux = top.entry("linux").or_insert_with(|| json!({}));
    let linux = linux
        .as_object_mut()
        .ok_or_else(|| wrong("linux", "an object"))?;
    let list = linux.entry("namespaces").or_insert_with(|| json!([]));
    let list = list
        .as_array_mut()
        .ok_or_else(|| wrong("linux.namespaces", "an array"))?;
    let path = json!(netns.display().to_string());
    match list
        .iter_mut()
        .find(|e| e.get("type").and_then(Value::as_str) == Some("network"))
    {
        Some(entry) => {
            let entry = entry
                .as_object_mut()
                .ok_or_else(|| wrong("linux.namespaces[network]", "an object"))?;
            entry.insert("path".into(), path);
        }
        None => list.push(json!({"type": "network", "path": path})),
    }
    Ok(())
}

/// The warning for an app container whose `io.boundary.allow` differs from
/// its pod's, if it does.
pub fn annotation_warning(
    spec: &Value,
    id: &str,
    sandbox: &str,
    pod: &PodRecord,
) -> Result<Option<String>, rules::RulesError> {
    let own = match rules::annotation_rules(spec) {
        Ok(own) => own,
        Err(rules::RulesError::Invalid { .. }) => Some(vec!["(invalid rules)".to_string()]),
        Err(e) => return Err(e),
    };
    Ok(match own {
        Some(own) if Some(&own) != pod.annotation_rules.as_ref() => Some(format!(
            "{id}: annotation {} differs from its pod's (sandbox {sandbox}) and is ignored: the pod annotation is the pod's policy; \
             to narrow the pod's policy for as long as {id} lives, set {} in its environment",
            rules::ALLOW_ANNOTATION,
            rules::ALLOW_ENV
        )),
        _ => None,
    })
}

/// `create` of an app container of a jailed pod: join the sandbox's jail,
/// narrow the pod's policy by the container's own rules, rewrite the spec.
pub fn prepare_container(
    cfg: &Config,
    id: &str,
    sandbox_id: &str,
    spec: Value,
    config_path: &Path,
) -> anyhow::Result<Vec<String>> {
    jail::claim(&cfg.state_root, id)?;
    container_in(cfg, id, sandbox_id, spec, config_path).map_err(|e| jail::undo(&cfg.state_root, id, e))
}

fn container_in(
    cfg: &Config,
    id: &str,
    sandbox_id: &str,
    spec: Value,
    config_path: &Path,
) -> anyhow::Result<Vec<String>> {
    let root = &cfg.state_root;
    crate::cli::await_jail(cfg, sandbox_id)?;
    let sandbox = jail::read_state(root, sandbox_id)
        .map_err(|source| PodError::Jail {
            sandbox: sandbox_id.to_string(),
            source: Box::new(source),
        })?
        .ok_or_else(|| PodError::NoJail(sandbox_id.to_string()))?;
    check_namespace(&spec, id, &sandbox)?;
    let narrowing = rules::narrowing(&spec)?;
    let warnings: Vec<String> =
        annotation_warning(&spec, id, sandbox_id, &read_record(root, sandbox_id)?)?
            .into_iter()
            .collect();
    let joined = crate::cli::join_jail(cfg, id, sandbox_id, Some(&sandbox), &sandbox.netns_path, narrowing.as_deref(), spec, config_path)?;
    Ok(warnings.into_iter().chain(joined).collect())
}

/// Teardown of a container that joined another's jail: lifts its narrowing
/// of that jail's policy, if any. Returns errors as text.
pub fn leave(state_root: &Path, id: &str) -> Vec<String> {
    let marker = jail::state_dir(state_root, id).join(docker::JOINED_FILE);
    let Ok(sandbox) = std::fs::read_to_string(&marker) else {
        return Vec::new();
    };
    let sandbox = sandbox.trim();
    if args::validate_id(sandbox).is_err() {
        return vec![format!(
            "{}: {sandbox:?} is not a container id",
            marker.display()
        )];
    }
    match narrow::lift(state_root, sandbox, id) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("lifting the narrowing of {id} from {sandbox}: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: Value) -> Value {
        json!({"ociVersion": "1.0.2", "process": {"env": ["PATH=/bin"]}, "annotations": annotations})
    }

    #[test]
    fn roles_come_from_cri_and_crio_annotations() {
        let cri = |t: &str| spec(json!({CRI_CONTAINER_TYPE: t, CRI_SANDBOX_ID: "sb1"}));
        assert_eq!(Role::of(&cri("sandbox")).unwrap(), Some(Role::Sandbox));
        assert_eq!(
            Role::of(&cri("container")).unwrap(),
            Some(Role::Container {
                sandbox_id: "sb1".into()
            })
        );
        let crio = |t: &str| spec(json!({CRIO_CONTAINER_TYPE: t, CRIO_SANDBOX_ID: "sb2"}));
        assert_eq!(Role::of(&crio("sandbox")).unwrap(), Some(Role::Sandbox));
        assert_eq!(
            Role::of(&crio("container")).unwrap(),
            Some(Role::Container {
                sandbox_id: "sb2".into()
            })
        );
        assert_eq!(Role::of(&cri("other")).unwrap(), None);
        assert_eq!(
            Role::of(&spec(json!({CRI_CONTAINER_TYPE: "container"}))).unwrap(),
            None
        );
        assert_eq!(Role::of(&spec(json!({}))).unwrap(), None);
        assert_eq!(Role::of(&json!({"ociVersion": "1.0.2"})).unwrap(), None);
        let bad = spec(json!({CRI_CONTAINER_TYPE: "container", CRI_SANDBOX_ID: "../etc"}));
        assert!(matches!(Role::of(&bad), Err(PodError::SandboxId { .. })));
        assert!(Role::of(&spec(json!({CRI_CONTAINER_TYPE: 7}))).is_err());
    }

    #[test]
    fn a_jailed_sandbox_is_one_with_jail_state() {
        let root = tempfile::tempdir().unwrap();
        let role = Role::Container {
            sandbox_id: "sb".into(),
        };
        assert_eq!(role.jailed_sandbox(root.path()), None);
        std::fs::create_dir(root.path().join("sb")).unwrap();
        std::fs::write(
            root.path()
                .join("sb")
                .join(boundary_contract::JAIL_STATE_FILE),
            "{}",
        )
        .unwrap();
        assert_eq!(role.jailed_sandbox(root.path()), None, "a jail that is no pod sandbox (any other container's)");
        std::fs::write(root.path().join("sb").join(POD_FILE), "{}").unwrap();
        assert_eq!(role.jailed_sandbox(root.path()), Some("sb"));
        assert_eq!(Role::Sandbox.jailed_sandbox(root.path()), None);
    }

    #[test]
    fn network_path_is_set_or_added() {
        let mut s = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"}]}});
        set_network_path(&mut s, Path::new("/run/b/netns/sb")).unwrap();
        assert_eq!(
            s["linux"]["namespaces"][1],
            json!({"type": "network", "path": "/run/b/netns/sb"})
        );
        let mut s = json!({"process": {}});
        set_network_path(&mut s, Path::new("/run/b/netns/sb")).unwrap();
        assert_eq!(
            s["linux"]["namespaces"],
            json!([{"type": "network", "path": "/run/b/netns/sb"}])
        );
    }

    #[test]
    fn only_the_pods_namespaces_may_be_joined() {
        let dir = tempfile::tempdir().unwrap();
        let (jail_ns, pod_ns, other) = (
            dir.path().join("jail"),
            dir.path().join("pod"),
            dir.path().join("other"),
        );
        for p in [&jail_ns, &pod_ns, &other] {
            std::fs::write(p, "").unwrap();
        }
        let state: JailState = serde_json::from_value(json!({
            "container_id": "sb", "index": 0, "host_side": {"kind": "path", "path": pod_ns},
            "netns_path": jail_ns, "host_if": "bnd", "host_addr": "10.0.0.1", "jail_addr": "10.0.0.2",
            "prefix_len": 30, "nft_table": "t", "sidecar_pid": null
        }))
        .unwrap();
        let with = |p: &Path| json!({"linux": {"namespaces": [{"type": "network", "path": p.display().to_string()}]}});
        check_namespace(&with(&jail_ns), "c", &state).unwrap();
        check_namespace(&with(&pod_ns), "c", &state).unwrap();
        assert!(matches!(
            check_namespace(&with(&other), "c", &state),
            Err(PodError::ForeignNamespace { .. })
        ));
        assert!(check_namespace(&with(&dir.path().join("gone")), "c", &state).is_err());
        // A new namespace, or none (the host's), is not the pod's...
        let fresh = json!({"linux": {"namespaces": [{"type": "network"}]}});
        let absent = json!({"linux": {"namespaces": [{"type": "pid"}]}});
        assert!(matches!(check_namespace(&fresh, "c", &state), Err(PodError::ForeignNamespace { .. })));
        assert!(matches!(check_namespace(&absent, "c", &state), Err(PodError::ForeignNamespace { .. })));
        // ... but for a host-network pod, whose sandbox had none either.
        let host_pod = JailState { host_side: HostSide::Absent, ..state };
        check_namespace(&absent, "c", &host_pod).unwrap();
        assert!(check_namespace(&fresh, "c", &host_pod).is_err());
    }

    #[test]
    fn a_differing_annotation_is_only_a_warning() {
        let pod = PodRecord {
            annotation_rules: Some(vec!["domain=a.test".into()]),
        };
        let same = spec(json!({rules::ALLOW_ANNOTATION: " domain=a.test ;"}));
        assert_eq!(annotation_warning(&same, "c", "sb", &pod).unwrap(), None);
        let other = spec(json!({rules::ALLOW_ANNOTATION: "domain=*"}));
        let w = annotation_warning(&other, "c", "sb", &pod)
            .unwrap()
            .unwrap();
        assert!(
            w.contains("differs from its pod's") && w.contains("BOUNDARY_ALLOW"),
            "{w}"
        );
        let invalid = spec(json!({rules::ALLOW_ANNOTATION: "domain=github.*"}));
        assert!(annotation_warning(&invalid, "c", "sb", &pod)
            .unwrap()
            .is_some());
        assert_eq!(
            annotation_warning(&spec(json!({})), "c", "sb", &pod).unwrap(),
            None
        );
    }
}
