//! A podman pod's rules.
//!
//! podman starts a pod's infra container with none of the pod's
//! annotations: `podman play kube` copies a kube pod's
//! `metadata.annotations` (and its own `--annotation`) to each member's
//! spec only. So a jail that podman made for a container that is no pod
//! member and gave no rules of its own is *open* (`pod-rules-open` in its
//! state directory): the first member that names it as its pod
//! (`io.kubernetes.cri-o.SandboxID`, which podman sets on pod members) and
//! carries `io.boundary.allow` gives the pod its rules, as the same YAML
//! does under Kubernetes. The jail's sidecar config gets them, its worker
//! is restarted to read them, and the member's `create` goes on once the
//! new worker has them in force. They are recorded (`pod-rules`) and fixed
//! from then on: a member's `io.boundary.allow` equal to them is the pod's
//! annotation; one that differs narrows the pod's rules, as every member's
//! `BOUNDARY_ALLOW` does (see [`super::narrow`]). A jail whose container
//! gave rules (an infra image's `ENV BOUNDARY_ALLOW`) is never open, and
//! neither is one where this host takes no rules from annotations
//! (`policy.allow_container_rules`, `policy.container_rule_sources`).
//!
//! Only the engine's caller, who can already choose any container's rules,
//! makes a pod member: a process inside the jail cannot.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use boundary_contract::{SidecarConfig, SIDECAR_CONFIG_FILE};
use serde_json::Value;

use super::{narrow, Role};
use crate::config::{Config, RuleSource};
use crate::{jail, rewrite, rules};

/// Marks a jail whose rules its pod's first member may give.
pub const OPEN_FILE: &str = "pod-rules-open";
/// The rules a member gave the pod (canonical, one per line).
pub const RULES_FILE: &str = "pod-rules";
/// Serialises the members of one pod deciding on its rules.
const LOCK_FILE: &str = "pod-rules.lock";
/// podman's mark on the specs it writes.
const MANAGER_ANNOTATION: &str = "io.container.manager";

/// Whether a jail made for `spec` is open: podman wrote the spec, it is no
/// pod member, and it gives no rules of its own.
pub fn opens(spec: &Value) -> anyhow::Result<bool> {
    let by_podman = rewrite::annotation(spec, MANAGER_ANNOTATION)? == Some("libpod");
    let blank = |v: Option<&str>| v.is_none_or(|t| t.trim().is_empty());
    Ok(by_podman
        && Role::of(spec)?.is_none()
        && blank(rewrite::env_value(spec, rules::ALLOW_ENV)?)
        && blank(rewrite::annotation(spec, rules::ALLOW_ANNOTATION)?))
}

/// Marks `id`'s jail open.
pub fn mark_open(state_root: &Path, id: &str) -> anyhow::Result<()> {
    let path = jail::state_dir(state_root, id).join(OPEN_FILE);
    std::fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))
}

/// The rules by which container `id`, joining `jail_id`'s jail, narrows
/// its policy: its `BOUNDARY_ALLOW`, and its `io.boundary.allow` unless
/// that is the pod's (given now, if `id` is the open jail's first member
/// with one). `None` when there are none.
pub fn member_narrowing(cfg: &Config, id: &str, jail_id: &str, spec: &Value) -> anyhow::Result<Option<Vec<String>>> {
    let mut out = rules::narrowing(spec)?.unwrap_or_default();
    if let Some(own) = rules::annotation_rules(spec)?.filter(|r| !r.is_empty()) {
        let member = matches!(Role::of(spec)?, Some(Role::Container { sandbox_id }) if sandbox_id == jail_id);
        if !(member && is_pods(cfg, id, jail_id, &own)?) {
            for rule in own {
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Whether `own` (member `id`'s annotation) is the pod's rules: they are
/// recorded and equal, or the jail is open and takes them now.
fn is_pods(cfg: &Config, id: &str, jail_id: &str, own: &[String]) -> anyhow::Result<bool> {
    let dir = jail::state_dir(&cfg.state_root, jail_id);
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    match std::fs::read_to_string(dir.join(RULES_FILE)) {
        Ok(text) => return Ok(text.lines().eq(own.iter().map(String::as_str))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.join(RULES_FILE).display())),
    }
    let policy = &cfg.policy;
    let takes_annotations = policy.allow_container_rules && policy.container_rule_sources.contains(&RuleSource::Annotation);
    if !dir.join(OPEN_FILE).exists() || !takes_annotations {
        return Ok(false);
    }
    give(&cfg.state_root, jail_id, own).with_context(|| format!("cannot give the pod of {jail_id} the rules of its member {id}'s annotation {}", rules::ALLOW_ANNOTATION))?;
    Ok(true)
}

/// Adds `rules` to `jail_id`'s sidecar config, records them as the pod's,
/// and restarts the worker with them.
fn give(state_root: &Path, jail_id: &str, rules: &[String]) -> anyhow::Result<()> {
    let dir = jail::state_dir(state_root, jail_id);
    let config = dir.join(SIDECAR_CONFIG_FILE);
    let mut sc = SidecarConfig::read(&config).with_context(|| format!("cannot read {}", config.display()))?;
    for rule in rules {
        if !sc.rules.contains(rule) {
            sc.rules.push(rule.clone());
        }
    }
    sc.rules_in = Some(format!("the pod's annotation {}", rules::ALLOW_ANNOTATION));
    let json = serde_json::to_vec_pretty(&sc).context("cannot serialise the sidecar config")?;
    replace(&config, &json, 0o600)?;
    replace(&dir.join(RULES_FILE), (rules.join("\n") + "\n").as_bytes(), 0o644)?;
    let open = dir.join(OPEN_FILE);
    std::fs::remove_file(&open).with_context(|| format!("cannot remove {}", open.display()))?;
    narrow::restart_worker(state_root, jail_id)?;
    Ok(())
}

/// Writes `path` whole or not at all (a temporary file renamed over it).
fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp"));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(annotations: Value, env: &[&str]) -> Value {
        json!({"ociVersion": "1.0.2", "process": {"env": env}, "annotations": annotations})
    }

    #[test]
    fn only_a_podman_container_with_no_rules_and_no_pod_opens_its_jail() {
        let libpod = json!({"io.container.manager": "libpod"});
        assert!(opens(&spec(libpod.clone(), &["PATH=/bin"])).unwrap(), "a podman pod's infra");
        assert!(!opens(&spec(json!({}), &[])).unwrap(), "not podman's");
        assert!(!opens(&spec(libpod.clone(), &["BOUNDARY_ALLOW=domain=a.test"])).unwrap(), "rules of its own (an infra image's ENV)");
        assert!(opens(&spec(libpod.clone(), &["BOUNDARY_ALLOW= "])).unwrap(), "blank rules are none");
        assert!(!opens(&spec(json!({"io.container.manager": "libpod", "io.boundary.allow": "domain=a.test"}), &[])).unwrap());
        let member = json!({"io.container.manager": "libpod", "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "infra"});
        assert!(!opens(&spec(member, &[])).unwrap(), "a pod member joins, it makes no jail");
    }

    #[test]
    fn a_members_annotation_narrows_unless_it_is_the_pods() {
        let root = tempfile::tempdir().unwrap();
        let cfg = Config { state_root: root.path().to_path_buf(), ..Config::default() };
        let dir = jail::state_dir(root.path(), "infra");
        std::fs::create_dir_all(&dir).unwrap();
        let member = |ann: &str, env: &[&str]| {
            spec(json!({"io.container.manager": "libpod", "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "infra", "io.boundary.allow": ann}), env)
        };
        // Not open, no pod rules: the annotation narrows.
        let got = member_narrowing(&cfg, "m1", "infra", &member("domain=a.test", &["BOUNDARY_ALLOW=domain=a.test path=/x"])).unwrap();
        assert_eq!(got, Some(vec!["domain=a.test path=/x".to_string(), "domain=a.test".to_string()]));
        // The pod's recorded rules: an equal annotation is the pod's, a different one narrows.
        std::fs::write(dir.join(RULES_FILE), "domain=a.test\n").unwrap();
        assert_eq!(member_narrowing(&cfg, "m2", "infra", &member("domain=a.test", &[])).unwrap(), None);
        assert_eq!(member_narrowing(&cfg, "m3", "infra", &member("domain=b.test", &[])).unwrap(), Some(vec!["domain=b.test".to_string()]));
        // Open, but the pod's rules are given: the first member does not reopen it.
        mark_open(root.path(), "infra").unwrap();
        assert_eq!(member_narrowing(&cfg, "m4", "infra", &member("domain=b.test", &[])).unwrap(), Some(vec!["domain=b.test".to_string()]));
        // Open, no rules yet, and this host takes none from annotations: it narrows.
        std::fs::remove_file(dir.join(RULES_FILE)).unwrap();
        let strict = Config { policy: crate::config::PolicyConfig { container_rule_sources: vec![RuleSource::Env], ..cfg.policy.clone() }, ..cfg.clone() };
        assert_eq!(member_narrowing(&strict, "m5", "infra", &member("domain=a.test", &[])).unwrap(), Some(vec!["domain=a.test".to_string()]));
        // Open, rules allowed, but no sidecar to restart: the member fails, naming the pod.
        let e = member_narrowing(&cfg, "m6", "infra", &member("domain=a.test", &[])).unwrap_err();
        assert!(format!("{e:#}").contains("cannot give the pod of infra the rules of its member m6"), "{e:#}");
        // A container joining by `--network container:infra` is no member: its annotation narrows.
        let joiner = spec(json!({"io.boundary.allow": "domain=a.test"}), &[]);
        assert_eq!(member_narrowing(&cfg, "j", "infra", &joiner).unwrap(), Some(vec!["domain=a.test".to_string()]));
    }
}
