//! A podman pod's rules.
//!
//! podman starts a pod's infra container with none of the pod's
//! annotations: `podman play kube` copies a kube pod's
//! `metadata.annotations` (and its own `--annotation`) to each member's
//! spec only, and `podman run --pod P --annotation` sets one member's. So
//! the jail of a pod's infra container (podman's spec of its own pause
//! image, `/catatonit -P`) that gave no rules of its own is *open*
//! (`pod-rules-open` in its state directory): the first member (a podman
//! spec that names the jail in `io.kubernetes.cri-o.SandboxID`) that
//! carries `io.boundary.allow` gives the pod its rules, as the same YAML
//! does under Kubernetes. Once that member's own join is done, the rules
//! are added to the jail's sidecar config, its worker is restarted to read
//! them, and the member's `create` returns once the new worker has them in
//! force; on failure the config is put back and the jail stays open. They
//! are recorded (`pod-rules`) and fixed from then on: a member's
//! `io.boundary.allow` equal to them is the pod's annotation; one that
//! differs narrows them, as every member's `BOUNDARY_ALLOW` does (see
//! [`super::narrow`]). A jail whose infra container gave rules (an infra
//! image's `ENV BOUNDARY_ALLOW`) is never open, and a host that takes no
//! rules from annotations (`policy.allow_container_rules`,
//! `policy.container_rule_sources`) never gives it any this way.
//!
//! Only the engine's caller, who can already choose any container's rules,
//! makes a pod member: a process inside the jail cannot.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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
/// The command of podman's own infra (pause) image.
const INFRA_COMMAND: [&str; 2] = ["/catatonit", "-P"];

fn by_podman(spec: &Value) -> anyhow::Result<bool> {
    Ok(rewrite::annotation(spec, MANAGER_ANNOTATION)? == Some("libpod"))
}

/// Whether a jail made for `spec` is open: podman's spec of its own infra
/// container (no pod member, `/catatonit -P`), with no rules of its own.
pub fn opens(spec: &Value) -> anyhow::Result<bool> {
    let blank = |v: Option<&str>| v.is_none_or(|t| t.trim().is_empty());
    let args: Option<Vec<&str>> = spec.pointer("/process/args").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect());
    Ok(by_podman(spec)?
        && args.as_deref() == Some(&INFRA_COMMAND[..])
        && Role::of(spec)?.is_none()
        && blank(rewrite::env_value(spec, rules::ALLOW_ENV)?)
        && blank(rewrite::annotation(spec, rules::ALLOW_ANNOTATION)?))
}

/// Marks `id`'s jail open.
pub fn mark_open(state_root: &Path, id: &str) -> anyhow::Result<()> {
    let path = jail::state_dir(state_root, id).join(OPEN_FILE);
    std::fs::write(&path, b"").with_context(|| format!("cannot write {}", path.display()))
}

/// What a container joining `jail_id`'s jail brings to its rules.
#[derive(Debug)]
pub struct Membership {
    /// Its narrowing of the jail's rules: its `BOUNDARY_ALLOW`, and its
    /// `io.boundary.allow` unless that is the pod's. `None` when none.
    pub narrowing: Option<Vec<String>>,
    /// The pod's rules it gives, once its join is done ([`Membership::finish`]).
    giving: Option<Giving>,
}

/// Rules for an open jail, and the lock that keeps other members waiting
/// until they are given or not.
#[derive(Debug)]
struct Giving {
    rules: Vec<String>,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Membership {
    /// Gives the pod its rules, if this member is the one to: the last
    /// step of its join (nothing after it can fail).
    pub fn finish(self, state_root: &Path, jail_id: &str, id: &str) -> anyhow::Result<()> {
        match self.giving {
            Some(g) => give(state_root, jail_id, &g.rules).with_context(|| {
                format!("cannot give the pod of {jail_id} the rules of its member {id}'s annotation {}", rules::ALLOW_ANNOTATION)
            }),
            None => Ok(()),
        }
    }
}

/// The [`Membership`] of a container joining `jail_id`'s jail.
pub fn membership(cfg: &Config, jail_id: &str, spec: &Value) -> anyhow::Result<Membership> {
    let mut narrowing = rules::narrowing(spec)?.unwrap_or_default();
    let mut giving = None;
    if let Some(own) = rules::annotation_rules(spec)?.filter(|r| !r.is_empty()) {
        let member = by_podman(spec)? && matches!(Role::of(spec)?, Some(Role::Container { sandbox_id }) if sandbox_id == jail_id);
        let pods = match member {
            true => pods_rules(cfg, jail_id, own)?,
            false => PodsRules::Narrows(own),
        };
        match pods {
            PodsRules::Same => {}
            PodsRules::Narrows(own) => {
                for rule in own {
                    if !narrowing.contains(&rule) {
                        narrowing.push(rule);
                    }
                }
            }
            PodsRules::Gives(g) => giving = Some(g),
        }
    }
    Ok(Membership { narrowing: (!narrowing.is_empty()).then_some(narrowing), giving })
}

enum PodsRules {
    /// The member's annotation is the pod's recorded rules.
    Same,
    /// It narrows them (or the jail has none to give).
    Narrows(Vec<String>),
    /// It gives an open jail its rules.
    Gives(Giving),
}

/// Whether member annotation `own` is the pod's rules: recorded and equal,
/// or to be given to the open jail (the lock then stays held).
fn pods_rules(cfg: &Config, jail_id: &str, own: Vec<String>) -> anyhow::Result<PodsRules> {
    let dir = jail::state_dir(&cfg.state_root, jail_id);
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    match std::fs::read_to_string(dir.join(RULES_FILE)) {
        Ok(text) if text.lines().eq(own.iter().map(String::as_str)) => return Ok(PodsRules::Same),
        Ok(_) => return Ok(PodsRules::Narrows(own)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.join(RULES_FILE).display())),
    }
    let policy = &cfg.policy;
    let takes_annotations = policy.allow_container_rules && policy.container_rule_sources.contains(&RuleSource::Annotation);
    if !dir.join(OPEN_FILE).exists() || !takes_annotations {
        return Ok(PodsRules::Narrows(own));
    }
    Ok(PodsRules::Gives(Giving { rules: own, _lock: lock }))
}

/// Adds `rules` to `jail_id`'s sidecar config (a new generation), records
/// them as the pod's and restarts the worker with them; closes the jail
/// once they are in force. On failure the config and the record are put
/// back (the worker restarted with the old config) and the jail stays open.
fn give(state_root: &Path, jail_id: &str, rules: &[String]) -> anyhow::Result<()> {
    let dir = jail::state_dir(state_root, jail_id);
    let config = dir.join(SIDECAR_CONFIG_FILE);
    let old = std::fs::read(&config).with_context(|| format!("cannot read {}", config.display()))?;
    let mut sc: SidecarConfig = serde_json::from_slice(&old).with_context(|| format!("malformed {}", config.display()))?;
    let old_generation = sc.config_generation;
    for rule in rules {
        if !sc.rules.contains(rule) {
            sc.rules.push(rule.clone());
        }
    }
    sc.rules_in = Some(format!("the pod's annotation {}", rules::ALLOW_ANNOTATION));
    sc.config_generation = old_generation + 1;
    let json = serde_json::to_vec_pretty(&sc).context("cannot serialise the sidecar config")?;
    let record = dir.join(RULES_FILE);
    let given = replace(&config, &json, 0o600)
        .and_then(|()| replace(&record, (rules.join("\n") + "\n").as_bytes(), 0o644))
        .and_then(|()| Ok(narrow::restart_worker(state_root, jail_id, sc.config_generation)?));
    if let Err(e) = given {
        let _ = std::fs::remove_file(&record);
        if replace(&config, &old, 0o600).is_ok() {
            let _ = narrow::restart_worker(state_root, jail_id, old_generation);
        }
        return Err(e);
    }
    // The record decides from here on; the marker goes for tidiness.
    let _ = std::fs::remove_file(dir.join(OPEN_FILE));
    Ok(())
}

/// [`crate::atomic::write`], with the path in its error.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    crate::atomic::write(path, bytes, mode).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(annotations: Value, args: &[&str], env: &[&str]) -> Value {
        json!({"ociVersion": "1.0.2", "process": {"args": args, "env": env}, "annotations": annotations})
    }

    const INFRA: &[&str] = &["/catatonit", "-P"];

    #[test]
    fn only_podmans_infra_container_with_no_rules_opens_its_jail() {
        let libpod = json!({"io.container.manager": "libpod"});
        assert!(opens(&spec(libpod.clone(), INFRA, &["PATH=/bin"])).unwrap(), "a podman pod's infra");
        assert!(!opens(&spec(libpod.clone(), &["/bin/sleep", "1000"], &[])).unwrap(), "a plain podman container, or an infra image of the user's");
        assert!(!opens(&spec(json!({}), INFRA, &[])).unwrap(), "not podman's");
        assert!(!opens(&spec(libpod.clone(), INFRA, &["BOUNDARY_ALLOW=domain=a.test"])).unwrap(), "rules of its own");
        assert!(opens(&spec(libpod.clone(), INFRA, &["BOUNDARY_ALLOW= "])).unwrap(), "blank rules are none");
        assert!(!opens(&spec(json!({"io.container.manager": "libpod", "io.boundary.allow": "domain=a.test"}), INFRA, &[])).unwrap());
        let member = json!({"io.container.manager": "libpod", "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "infra"});
        assert!(!opens(&spec(member, INFRA, &[]).clone()).unwrap(), "a pod member joins, it makes no jail");
    }

    fn member(ann: &str, env: &[&str]) -> Value {
        spec(
            json!({"io.container.manager": "libpod", "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "infra", "io.boundary.allow": ann}),
            &["/bin/sleep", "1000"],
            env,
        )
    }

    fn narrowing(cfg: &Config, spec: &Value) -> Option<Vec<String>> {
        let m = membership(cfg, "infra", spec).unwrap();
        assert!(m.giving.is_none(), "{m:?}");
        m.narrowing
    }

    /// A jail directory with a sidecar config (no sidecar runs).
    fn jail_with_config(root: &Path) -> (std::path::PathBuf, Vec<u8>) {
        let dir = jail::state_dir(root, "infra");
        std::fs::create_dir_all(dir.join(boundary_contract::NARROW_DIR)).unwrap();
        let config = json!({
            "container_id": "infra", "netns": null, "listen_addr": "10.213.0.1", "proxy_port": 3128, "dns_port": 53,
            "rules": [], "ca_cert": "/ca.pem", "ca_key": "/ca.key", "upstream_system_roots": false, "upstream_enabled": true,
            "audit_log": "/audit.jsonl", "uid": 1, "gid": 1, "pid_file": "/pids",
        });
        let bytes = serde_json::to_vec_pretty(&config).unwrap();
        std::fs::write(dir.join(SIDECAR_CONFIG_FILE), &bytes).unwrap();
        (dir, bytes)
    }

    #[test]
    fn a_members_annotation_narrows_unless_it_is_the_pods() {
        let root = tempfile::tempdir().unwrap();
        let cfg = Config { state_root: root.path().to_path_buf(), ..Config::default() };
        let (dir, _) = jail_with_config(root.path());
        // Not open, no pod rules: the annotation narrows.
        let got = narrowing(&cfg, &member("domain=a.test", &["BOUNDARY_ALLOW=domain=a.test path=/x"]));
        assert_eq!(got, Some(vec!["domain=a.test path=/x".to_string(), "domain=a.test".to_string()]));
        // The pod's recorded rules: an equal annotation is the pod's, a different one narrows.
        std::fs::write(dir.join(RULES_FILE), "domain=a.test\n").unwrap();
        assert_eq!(narrowing(&cfg, &member("domain=a.test", &[])), None);
        assert_eq!(narrowing(&cfg, &member("domain=b.test", &[])), Some(vec!["domain=b.test".to_string()]));
        // Open, but the pod's rules are given: a member does not give them again.
        mark_open(root.path(), "infra").unwrap();
        assert_eq!(narrowing(&cfg, &member("domain=b.test", &[])), Some(vec!["domain=b.test".to_string()]));
        std::fs::remove_file(dir.join(RULES_FILE)).unwrap();
        // Open, no rules yet, and this host takes none from annotations: it narrows.
        let strict = Config { policy: crate::config::PolicyConfig { container_rule_sources: vec![RuleSource::Env], ..cfg.policy.clone() }, ..cfg.clone() };
        assert_eq!(narrowing(&strict, &member("domain=a.test", &[])), Some(vec!["domain=a.test".to_string()]));
        // Containers that are no podman member of this pod narrow: one
        // joining by `--network container:infra`, one that only claims the
        // CRI-O keys without being podman's.
        assert_eq!(narrowing(&cfg, &spec(json!({"io.boundary.allow": "domain=a.test"}), &[], &[])), Some(vec!["domain=a.test".to_string()]));
        let claims = spec(json!({"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "infra", "io.boundary.allow": "domain=a.test"}), &[], &[]);
        assert_eq!(narrowing(&cfg, &claims), Some(vec!["domain=a.test".to_string()]));
    }

    #[test]
    fn giving_fails_whole_when_the_worker_does_not_restart() {
        let root = tempfile::tempdir().unwrap();
        let cfg = Config { state_root: root.path().to_path_buf(), ..Config::default() };
        let (dir, before) = jail_with_config(root.path());
        mark_open(root.path(), "infra").unwrap();
        let m = membership(&cfg, "infra", &member("domain=a.test", &["BOUNDARY_ALLOW=domain=a.test path=/x"])).unwrap();
        assert_eq!(m.narrowing, Some(vec!["domain=a.test path=/x".to_string()]), "the annotation is the pod's, not a narrowing");
        assert!(m.giving.is_some());
        // No sidecar runs: the restart fails, and everything is as before.
        let e = m.finish(root.path(), "infra", "m1").unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("cannot give the pod of infra the rules of its member m1's annotation io.boundary.allow") && text.contains("not running"), "{text}");
        assert_eq!(std::fs::read(dir.join(SIDECAR_CONFIG_FILE)).unwrap(), before, "the config is put back");
        assert!(!dir.join(RULES_FILE).exists(), "no rules recorded");
        assert!(dir.join(OPEN_FILE).exists(), "the jail stays open");
        // The lock went with the membership: the next member decides.
        assert!(membership(&cfg, "infra", &member("domain=b.test", &[])).unwrap().giving.is_some());
    }
}
