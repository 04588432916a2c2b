//! Docker's shape of a bundle, and the hand-over of Docker's network
//! configuration to the dedicated host side.
//!
//! Docker up to 27 asks for a fresh network namespace and adds a prestart
//! hook `/proc/<dockerd>/exe libnetwork-setkey -exec-root=R <id> <ctl>`
//! that reads the OCI state (its `pid`) on stdin and makes dockerd move the
//! container's `eth0` into `/proc/<pid>/ns/net`, with its routes and, on
//! user-defined networks, the embedded resolver on 127.0.0.11. Left alone,
//! that would put Docker's interface (and a resolver that answers any name)
//! inside the jail. So the rewrite wraps the hook ([`wrap_setkey_hooks`]):
//! `boundary-hook docker-setkey --state-root S -- <path> <args...>`, and
//! [`setkey`] hands dockerd the pid of the jail's sidecar supervisor, a
//! process that lives in the jail's dedicated host side. dockerd then
//! configures (and bind-mounts as its sandbox key) that namespace; the
//! container only ever sees the jail's own veth.
//!
//! `--network container:X` gives the path `/proc/<pid of X>/ns/net`; when
//! that is an existing jail, the container joins it ([`joined_jail`]).

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::firewall::DOCKER_RESOLVER;
use crate::jail;

/// The argv[0] dockerd's re-exec dispatches on.
pub const SETKEY_ARG: &str = "libnetwork-setkey";
/// Our hook subcommand that wraps it.
pub const WRAP_SUBCOMMAND: &str = "docker-setkey";
/// The wrapper's option that makes it the gate too ([`gate_in_setkey`]).
pub const GATE_FLAG: &str = "--gate-timeout-ms";
/// Marker file of a container that joined another container's jail.
pub const JOINED_FILE: &str = "joined";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("the OCI state on stdin is not valid: {0}")]
    State(String),
    #[error("container {0} has no Docker jail under {1} (was it created by boundary-runc?)")]
    NoJail(String, PathBuf),
    #[error("cannot read the jail of {id}")]
    Jail { id: String, #[source] source: Box<jail::JailError> },
    #[error("the sidecar of {0} is not running in its host-side namespace; refusing to hand Docker's network to anything else")]
    NoSidecar(String),
    #[error("usage: boundary-hook docker-setkey --state-root DIR [--gate-timeout-ms N] -- PATH ARGV0 [ARGS...]")]
    Usage,
    #[error(transparent)]
    Gate(#[from] crate::gate::GateError),
    #[error("cannot {op} Docker's hook {path}")]
    Exec { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
}

fn hook_args(hook: &Value) -> Vec<&str> {
    hook.get("args").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn is_setkey(hook: &Value) -> bool {
    hook_args(hook).first() == Some(&SETKEY_ARG)
}

fn is_wrapped(hook: &Value) -> bool {
    hook_args(hook).get(1) == Some(&WRAP_SUBCOMMAND)
}

/// Whether the spec carries Docker's `libnetwork-setkey` prestart hook
/// (wrapped already or not).
pub fn has_setkey_hook(spec: &Value) -> bool {
    prestart(spec).is_some_and(|list| list.iter().any(|h| is_setkey(h) || (is_wrapped(h) && hook_args(h).contains(&SETKEY_ARG))))
}

fn prestart(spec: &Value) -> Option<&Vec<Value>> {
    spec.get("hooks")?.get("prestart")?.as_array()
}

/// Replaces every `libnetwork-setkey` prestart hook, in place, by
/// `boundary-hook docker-setkey --state-root S -- <path> <args...>`,
/// keeping its other keys (`env`, `timeout`). Idempotent.
pub fn wrap_setkey_hooks(spec: &mut Value, hook_binary: &Path, state_root: &Path) {
    let Some(list) = spec.get_mut("hooks").and_then(|h| h.get_mut("prestart")).and_then(Value::as_array_mut) else { return };
    for hook in list.iter_mut().filter(|h| is_setkey(h)) {
        let Some(obj) = hook.as_object_mut() else { continue };
        let path = obj.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut args = vec![
            json!("boundary-hook"),
            json!(WRAP_SUBCOMMAND),
            json!("--state-root"),
            json!(state_root.display().to_string()),
            json!("--"),
            json!(path),
        ];
        args.extend(obj.get("args").and_then(Value::as_array).cloned().unwrap_or_default());
        obj.insert("path".into(), json!(hook_binary.display().to_string()));
        obj.insert("args".into(), Value::Array(args));
    }
}

/// Makes the wrapped setkey hook the gate too, when it is the first
/// prestart hook and has no timeout of its own (the gate's wait must not
/// be cut short by Docker's limit): runc then forks one hook, not two.
/// Returns false (and changes nothing) otherwise; the caller adds the
/// gate hook of its own then.
pub fn gate_in_setkey(spec: &mut Value, timeout: std::time::Duration) -> bool {
    let Some(first) = spec.get_mut("hooks").and_then(|h| h.get_mut("prestart")).and_then(Value::as_array_mut).and_then(|l| l.first_mut()) else {
        return false;
    };
    if !is_wrapped(first) || first.get("timeout").is_some() {
        return false;
    }
    let Some(args) = first.get_mut("args").and_then(Value::as_array_mut) else { return false };
    // boundary-hook docker-setkey --state-root DIR [--gate-timeout-ms N] -- ...
    if args.get(4).and_then(Value::as_str) == Some(GATE_FLAG) {
        args[5] = json!(timeout.as_millis().to_string());
    } else if args.get(4).and_then(Value::as_str) == Some("--") {
        args.splice(4..4, [json!(GATE_FLAG), json!(timeout.as_millis().to_string())]);
    } else {
        return false;
    }
    true
}

/// The host file the spec mounts at /etc/resolv.conf.
fn resolv_conf_source(spec: &Value) -> Option<PathBuf> {
    spec.get("mounts")?
        .as_array()?
        .iter()
        .filter(|m| m.get("destination").and_then(Value::as_str).is_some_and(|d| Path::new(d) == Path::new("/etc/resolv.conf")))
        .find_map(|m| m.get("source").and_then(Value::as_str).map(PathBuf::from))
}

/// The directory dockerd keeps the container's files in (hostconfig.json
/// beside resolv.conf, hostname and hosts, which it bind-mounts into the
/// container): the parent of the first of those mounts' sources that holds
/// a hostconfig.json. Each of the three can be replaced by a volume of the
/// user's (`-v ./r:/etc/resolv.conf`); all three rarely are, and a missed
/// directory would hide the shape in which dockerd configures the jail
/// itself between `create` and `start`.
fn container_dir(spec: &Value) -> Option<PathBuf> {
    let mounts = spec.get("mounts")?.as_array()?;
    ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"].iter().find_map(|dest| {
        mounts
            .iter()
            .filter(|m| m.get("destination").and_then(Value::as_str).is_some_and(|d| Path::new(d) == Path::new(dest)))
            .filter_map(|m| m.get("source").and_then(Value::as_str).map(Path::new))
            .filter_map(Path::parent)
            .find(|dir| dir.join("hostconfig.json").is_file())
            .map(Path::to_path_buf)
    })
}

/// `nameserver` addresses of a resolv.conf text.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// Docker's `HostConfig.NetworkMode` of the container, from the
/// hostconfig.json dockerd keeps beside the container's resolv.conf
/// (`default`, `bridge`, `host`, `none`, `container:<id>` or a network
/// name).
pub fn network_mode(spec: &Value) -> Option<String> {
    let dir = container_dir(spec)?;
    let text = std::fs::read(dir.join("hostconfig.json")).ok()?;
    let cfg: Value = serde_json::from_slice(&text).ok()?;
    cfg.get("NetworkMode").and_then(Value::as_str).map(str::to_string)
}

/// Whether a network mode is a user-defined network (where dockerd writes
/// 127.0.0.11 into resolv.conf, but only during the prestart hook, after
/// `create` read the file).
fn is_user_network(mode: &str) -> bool {
    !(mode.is_empty() || matches!(mode, "default" | "bridge" | "host" | "none") || mode.starts_with("container:"))
}

/// The resolvers the sidecar of a Docker container asks: Docker's embedded
/// resolver (which lives in the dedicated host side) on user networks, else
/// the non-loopback nameservers of the container's resolv.conf; `None` when
/// there is nothing to go by (the host's resolv.conf then).
pub fn upstream_resolvers(spec: &Value) -> Option<Vec<IpAddr>> {
    let source = resolv_conf_source(spec)?;
    let text = std::fs::read_to_string(&source).unwrap_or_default();
    let listed = nameservers(&text);
    let docker = IpAddr::V4(DOCKER_RESOLVER);
    if listed.contains(&docker) || network_mode(spec).is_some_and(|m| is_user_network(&m)) {
        return Some(vec![docker]);
    }
    let outside: Vec<IpAddr> = listed.into_iter().filter(|a| !a.is_loopback()).collect();
    (!outside.is_empty()).then_some(outside)
}

/// Whether the spec is Docker's bundle without the setkey hook (Docker
/// 26.0.0 and 28 onward): dockerd keeps a hostconfig.json beside the
/// container's resolv.conf, and, with a network mode that gives the
/// container a namespace of its own, configures that namespace after
/// `create` returns and before `start`.
pub fn configures_before_start(spec: &Value) -> bool {
    !has_setkey_hook(spec) && network_mode(spec).is_some_and(|m| m != "host" && !m.starts_with("container:"))
}

fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The id of the jail whose namespace `path` is (`--network container:X`
/// with X jailed gives `/proc/<pid of X>/ns/net`).
pub fn joined_jail(state_root: &Path, path: &Path) -> Option<String> {
    let want = ns_id(path)?;
    let entries = std::fs::read_dir(state_root.join("netns")).ok()?;
    entries
        .flatten()
        .find(|e| ns_id(&e.path()) == Some(want))
        .and_then(|e| e.file_name().to_str().map(str::to_string))
}

/// Records that `id` runs in `jail`'s namespace: a state directory with
/// only a marker, which teardown removes without touching the jail.
pub fn record_joined(state_root: &Path, id: &str, jail_id: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = jail::state_dir(state_root, id);
    std::fs::DirBuilder::new().mode(0o700).recursive(true).create(&dir)?;
    std::fs::write(dir.join(JOINED_FILE), jail_id)
}

/// The hook: run Docker's `libnetwork-setkey` with the OCI state's `pid`
/// replaced by the pid of the jail's sidecar supervisor (in the dedicated
/// host side). `args` is what follows `docker-setkey`. Returns only on
/// error; on success it becomes Docker's hook (`execve`).
pub fn setkey(args: &[OsString], input: &[u8]) -> DockerError {
    match setkey_inner(args, input) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn setkey_inner(args: &[OsString], input: &[u8]) -> Result<std::convert::Infallible, DockerError> {
    let (state_root, gate, original) = match args {
        [flag, root, sep, rest @ ..] if flag == "--state-root" && sep == "--" && rest.len() >= 2 => (PathBuf::from(root), None, rest),
        [flag, root, g, ms, sep, rest @ ..] if flag == "--state-root" && g == GATE_FLAG && sep == "--" && rest.len() >= 2 => {
            let ms: u64 = ms.to_str().and_then(|m| m.parse().ok()).ok_or(DockerError::Usage)?;
            (PathBuf::from(root), Some(std::time::Duration::from_millis(ms)), rest)
        }
        _ => return Err(DockerError::Usage),
    };
    let mut state: Value = serde_json::from_slice(input).map_err(|e| DockerError::State(e.to_string()))?;
    let id = state.get("id").and_then(Value::as_str).ok_or_else(|| DockerError::State("no \"id\"".into()))?.to_string();
    crate::args::validate_id(&id).map_err(|e| DockerError::State(e.to_string()))?;
    if let Some(timeout) = gate {
        crate::gate::pass_as_hook(&state_root, &id, state.get("pid").and_then(Value::as_i64), timeout)?;
    }
    let js = jail::read_state(&state_root, &id).map_err(|source| DockerError::Jail { id: id.clone(), source: Box::new(source) })?;
    let js = js.ok_or_else(|| DockerError::NoJail(id.clone(), state_root.clone()))?;
    let host = js.dedicated_host_netns.clone().ok_or_else(|| DockerError::NoJail(id.clone(), state_root.clone()))?;
    let pid = js
        .sidecar_pid
        .filter(|p| ns_id(Path::new(&format!("/proc/{p}/ns/net"))).is_some_and(|n| Some(n) == ns_id(&host)))
        .ok_or_else(|| DockerError::NoSidecar(id.clone()))?;
    state["pid"] = json!(pid);
    log::info!("handing Docker's network of {id} to the host side {} (pid {pid})", host.display());
    exec_with_stdin(&original[0], &original[1..], state.to_string().as_bytes())
}

/// `execve`s `path` with `argv` (argv[0] included) and `data` on stdin.
fn exec_with_stdin(path: &OsString, argv: &[OsString], data: &[u8]) -> Result<std::convert::Infallible, DockerError> {
    use std::os::unix::process::CommandExt;
    let p = PathBuf::from(path);
    let err = |op| {
        let p = p.clone();
        move |source| DockerError::Exec { op, path: p, source }
    };
    let (rd, wr) = nix::unistd::pipe().map_err(|e| err("make a pipe for")(e.into()))?;
    // The state is a few hundred bytes: it fits in the pipe buffer, so it
    // is written whole before the exec and the pipe is closed behind it.
    let mut w = std::fs::File::from(wr);
    std::io::Write::write_all(&mut w, data).map_err(err("write the state for"))?;
    drop(w);
    let mut cmd = std::process::Command::new(path);
    cmd.arg0(&argv[0]).args(&argv[1..]).stdin(std::process::Stdio::from(rd));
    Err(err("run")(cmd.exec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker_spec() -> Value {
        json!({"hooks": {"prestart": [
            {"path": "/usr/bin/other", "args": ["other"]},
            {"path": "/proc/42/exe", "args": ["libnetwork-setkey", "-exec-root=/var/run/docker", "abc", "0815"], "timeout": 10}
        ]}})
    }

    #[test]
    fn setkey_hook_is_wrapped_in_place_once() {
        let mut spec = docker_spec();
        assert!(has_setkey_hook(&spec));
        wrap_setkey_hooks(&mut spec, Path::new("/usr/bin/boundary-hook"), Path::new("/run/b"));
        let once = spec.clone();
        wrap_setkey_hooks(&mut spec, Path::new("/usr/bin/boundary-hook"), Path::new("/run/b"));
        assert_eq!(spec, once);
        assert!(has_setkey_hook(&spec));
        let h = &spec["hooks"]["prestart"];
        assert_eq!(h[0], json!({"path": "/usr/bin/other", "args": ["other"]}));
        assert_eq!(h[1]["path"], "/usr/bin/boundary-hook");
        assert_eq!(h[1]["timeout"], 10);
        assert_eq!(
            h[1]["args"],
            json!(["boundary-hook", "docker-setkey", "--state-root", "/run/b", "--", "/proc/42/exe", "libnetwork-setkey", "-exec-root=/var/run/docker", "abc", "0815"])
        );
        assert!(!has_setkey_hook(&json!({"hooks": {"prestart": [{"path": "/x", "args": ["x"]}]}})));
        assert!(!has_setkey_hook(&json!({})));
    }

    #[test]
    fn the_first_wrapped_setkey_hook_without_a_timeout_becomes_the_gate() {
        let ms = std::time::Duration::from_millis(2500);
        // Docker's own shape: setkey is the only prestart hook, no timeout.
        let mut spec = json!({"hooks": {"prestart": [{"path": "/proc/42/exe", "args": ["libnetwork-setkey", "-exec-root=/r", "abc", "0815"]}]}});
        wrap_setkey_hooks(&mut spec, Path::new("/usr/bin/boundary-hook"), Path::new("/run/b"));
        assert!(gate_in_setkey(&mut spec, ms));
        let merged = spec.clone();
        assert!(gate_in_setkey(&mut spec, ms), "idempotent");
        assert_eq!(spec, merged);
        assert_eq!(
            spec["hooks"]["prestart"][0]["args"],
            json!(["boundary-hook", "docker-setkey", "--state-root", "/run/b", "--gate-timeout-ms", "2500", "--", "/proc/42/exe", "libnetwork-setkey", "-exec-root=/r", "abc", "0815"])
        );
        // Another hook first, or a timeout: a gate hook of its own.
        let mut spec = docker_spec();
        wrap_setkey_hooks(&mut spec, Path::new("/usr/bin/boundary-hook"), Path::new("/run/b"));
        let before = spec.clone();
        assert!(!gate_in_setkey(&mut spec, ms));
        assert_eq!(spec, before);
        spec["hooks"]["prestart"].as_array_mut().unwrap().remove(0);
        assert!(!gate_in_setkey(&mut spec, ms), "Docker's timeout would cut the gate's wait short");
        assert!(!gate_in_setkey(&mut json!({}), ms));
    }

    #[test]
    fn resolvers_come_from_the_containers_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        let spec = json!({"mounts": [{"destination": "/etc/resolv.conf", "source": resolv.display().to_string()}]});
        std::fs::write(&resolv, "nameserver 10.255.255.53\nnameserver 127.0.0.1\noptions ndots:0\n").unwrap();
        assert_eq!(upstream_resolvers(&spec), Some(vec!["10.255.255.53".parse().unwrap()]));
        std::fs::write(dir.path().join("hostconfig.json"), r#"{"NetworkMode":"bridge"}"#).unwrap();
        assert_eq!(upstream_resolvers(&spec), Some(vec!["10.255.255.53".parse().unwrap()]));
        std::fs::write(dir.path().join("hostconfig.json"), r#"{"NetworkMode":"mynet"}"#).unwrap();
        assert_eq!(upstream_resolvers(&spec), Some(vec!["127.0.0.11".parse().unwrap()]));
        std::fs::write(dir.path().join("hostconfig.json"), r#"{"NetworkMode":"none"}"#).unwrap();
        std::fs::write(&resolv, "nameserver 127.0.0.11\n").unwrap();
        assert_eq!(upstream_resolvers(&spec), Some(vec!["127.0.0.11".parse().unwrap()]));
        std::fs::write(&resolv, "nameserver 127.0.0.53\n").unwrap();
        assert_eq!(upstream_resolvers(&spec), None);
        assert_eq!(upstream_resolvers(&json!({})), None);
    }

    #[test]
    fn the_hookless_shape_is_docker_files_without_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 10.255.255.53\n").unwrap();
        let mut spec = json!({"mounts": [{"destination": "/etc/resolv.conf", "source": resolv.display().to_string()}]});
        assert!(!configures_before_start(&spec), "no hostconfig.json: not Docker");
        for (mode, late) in [("bridge", true), ("default", true), ("mynet", true), ("none", true), ("host", false), ("container:abc", false)] {
            std::fs::write(dir.path().join("hostconfig.json"), format!(r#"{{"NetworkMode":"{mode}"}}"#)).unwrap();
            assert_eq!(configures_before_start(&spec), late, "{mode}");
        }
        std::fs::write(dir.path().join("hostconfig.json"), r#"{"NetworkMode":"bridge"}"#).unwrap();
        // A volume of the user's over /etc/resolv.conf: hostname and hosts
        // still come from dockerd's directory.
        let own = tempfile::tempdir().unwrap();
        let user_resolv = own.path().join("resolv.conf");
        std::fs::write(&user_resolv, "nameserver 10.0.0.53\n").unwrap();
        let hostname = dir.path().join("hostname");
        let volume = json!({"mounts": [
            {"destination": "/etc/resolv.conf", "source": user_resolv.display().to_string()},
            {"destination": "/etc/hostname", "source": hostname.display().to_string()},
        ]});
        assert!(configures_before_start(&volume), "dockerd's directory found through /etc/hostname");
        spec["hooks"] = docker_spec()["hooks"].clone();
        assert!(!configures_before_start(&spec), "the hook is Docker <= 27");
    }

    #[test]
    fn hook_usage_is_checked() {
        let e = setkey(&["--state-root".into(), "/x".into()], b"{}");
        assert!(matches!(e, DockerError::Usage), "{e}");
        let e = setkey(&["--state-root".into(), "/nonexistent".into(), "--".into(), "/bin/true".into(), "true".into()], b"{\"id\":\"c1\"}");
        assert!(matches!(e, DockerError::NoJail(..)), "{e}");
    }
}
