//! Docker 20.10 (Debian's docker.io) driving boundary-runc.
//!
//! [`daemon`] makes sure dockerd runs: when `docker info` does not answer,
//! it starts `dockerd` (log in `/tmp/boundary-e2e-dockerd.log`) and leaves
//! it running for later tests. [`DockerRuntime`] registers one test's
//! [`Runtime`] with dockerd: dockerd passes no environment to a runtime, so
//! `/etc/docker/daemon.json` points at a wrapper script that sets
//! `BOUNDARY_RUNC_CONFIG` and execs the built `boundary-runc`; dockerd
//! reloads its runtimes on SIGHUP. [`image`] builds `boundary-e2e-busybox`
//! (the shared rootfs, plus busybox `httpd`) with no registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use crate::binaries::binaries;
use crate::deadline::poll_until;
use crate::rootfs::shared_rootfs;
use crate::runtime::Runtime;

/// The test image.
pub const IMAGE: &str = "boundary-e2e-busybox:latest";
pub const DAEMON_LOG: &str = "/tmp/boundary-e2e-dockerd.log";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// What a docker CLI call did.
#[derive(Debug, Clone)]
pub struct Ran {
    pub cmdline: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    #[track_caller]
    pub fn ok(self) -> Ran {
        assert!(self.success(), "command failed:\n{self}\n(dockerd log: {DAEMON_LOG})");
        self
    }

    #[track_caller]
    pub fn failed(self) -> Ran {
        assert!(matches!(self.code, Some(c) if c != 0), "command was expected to fail:\n{self}");
        self
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "$ {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}", self.cmdline, self.code, self.stdout, self.stderr)
    }
}

fn from_output(cmdline: String, out: Output) -> Ran {
    Ran {
        cmdline,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `docker ARGS` (with a deadline: `timeout 120`).
pub fn docker(args: &[&str]) -> Ran {
    let cmdline = format!("docker {}", args.join(" "));
    let out = Command::new("timeout")
        .arg("120")
        .arg("docker")
        .args(args)
        .stdin(Stdio::null())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    from_output(cmdline, out)
}

/// Makes sure dockerd answers; starts it when it does not. Panics, with
/// the daemon's log, when it cannot be started.
pub fn daemon() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        crate::require_root();
        crate::require_tool("dockerd");
        crate::require_tool("docker");
        if docker(&["info"]).success() {
            return;
        }
        // Through a shell that backgrounds it and exits: dockerd is then
        // nobody's child here, and keeps running after the tests.
        let start = Command::new("sh")
            .arg("-c")
            .arg(format!("dockerd >{DAEMON_LOG} 2>&1 </dev/null &"))
            .status()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        assert!(start.success(), "cannot start dockerd: sh exited with {start}");
        let up = (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            docker(&["info"]).success()
        });
        assert!(up, "dockerd did not come up within 30 s; its log ({DAEMON_LOG}):\n{}", std::fs::read_to_string(DAEMON_LOG).unwrap_or_default());
    });
}

/// The test image, built once per process from the shared rootfs.
pub fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        daemon();
        let ctx = tempfile::Builder::new().prefix("boundary-e2e-image.").tempdir().expect("image context dir");
        let rootfs = ctx.path().join("rootfs");
        let cp = Command::new("cp").arg("-a").arg(shared_rootfs()).arg(&rootfs).output().expect("run cp");
        assert!(cp.status.success(), "cannot copy the rootfs: {}", String::from_utf8_lossy(&cp.stderr));
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/httpd")).expect("link httpd");
        std::fs::create_dir_all(rootfs.join("www")).expect("www dir");
        std::fs::write(rootfs.join("www/index.html"), "served from the jail\n").expect("index.html");
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sleep\", \"1000\"]\n").expect("Dockerfile");
        docker(&["build", "-q", "-t", IMAGE, &ctx.path().display().to_string()]).ok();
    });
    IMAGE
}

/// One test's boundary-runc, registered with dockerd as `name`.
#[derive(Debug)]
pub struct DockerRuntime {
    pub name: String,
    pub wrapper: PathBuf,
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
}

static DAEMON_JSON_LOCK: Mutex<()> = Mutex::new(());

/// Held while a test edits daemon.json: a mutex within this process and an
/// flock across test processes.
#[derive(Debug)]
pub struct DaemonJsonLock {
    _file: nix::fcntl::Flock<std::fs::File>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// Serialises every edit of daemon.json by the tests.
pub fn lock_daemon_json() -> DaemonJsonLock {
    let guard = DAEMON_JSON_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = std::fs::File::create("/run/boundary-e2e-daemon-json.lock").expect("create the daemon.json lock file");
    let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).expect("flock the daemon.json lock file");
    DaemonJsonLock { _file: file, _guard: guard }
}

/// Adds (`Some`) or removes (`None`) a runtime in daemon.json and makes
/// dockerd reload it.
fn set_runtime(name: &str, path: Option<&Path>) {
    let _lock = lock_daemon_json();
    let mut cfg: Value = std::fs::read(DAEMON_JSON).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(|| json!({}));
    if !cfg.is_object() {
        cfg = json!({});
    }
    let runtimes = cfg.as_object_mut().expect("object").entry("runtimes").or_insert_with(|| json!({}));
    match (runtimes.as_object_mut(), path) {
        (Some(r), Some(p)) => {
            r.insert(name.to_string(), json!({"path": p.display().to_string()}));
        }
        (Some(r), None) => {
            r.remove(name);
        }
        (None, _) => panic!("{DAEMON_JSON}: runtimes is not an object"),
    }
    std::fs::create_dir_all("/etc/docker").expect("create /etc/docker");
    // Replaced, not rewritten in place: a reload still pending from an
    // earlier SIGHUP must never read a truncated file.
    let tmp = format!("{DAEMON_JSON}.e2e-tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&cfg).expect("json")).expect("write daemon.json");
    std::fs::rename(&tmp, DAEMON_JSON).expect("replace daemon.json");
    let pid = Command::new("pidof").arg("dockerd").output().expect("run pidof");
    for p in String::from_utf8_lossy(&pid.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-HUP", p]).status();
    }
    if path.is_some() {
        poll_until(Duration::from_secs(20), &format!("dockerd to reload runtime {name}"), || {
            let info = docker(&["info", "--format", "{{json .Runtimes}}"]);
            (info.success() && info.stdout.contains(&format!("\"{name}\""))).then_some(())
        });
    }
}

impl DockerRuntime {
    /// Registers `rt` as `boundary-e2e-<slot>`.
    pub fn register(rt: &Runtime) -> DockerRuntime {
        daemon();
        let name = format!("boundary-e2e-{}", rt.settings.slot);
        let wrapper = rt.config_file.with_file_name("docker-runtime.sh");
        let script = format!(
            "#!/bin/sh\nexport BOUNDARY_RUNC_CONFIG='{}'\nexec '{}' \"$@\"\n",
            rt.config_file.display(),
            binaries().runtime.display()
        );
        std::fs::write(&wrapper, script).expect("write runtime wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        set_runtime(&name, Some(&wrapper));
        DockerRuntime { name, wrapper, containers: Mutex::new(Vec::new()), networks: Mutex::new(Vec::new()) }
    }

    /// `docker run -d --runtime NAME --name NAME ARGS... IMAGE CMD...`;
    /// `args` go before the image, `cmd` after it (empty: the image's
    /// `sleep 1000`).
    pub fn run(&self, container: &str, args: &[&str], cmd: &[&str]) -> Ran {
        self.containers.lock().expect("lock").push(container.to_string());
        let _ = docker(&["rm", "-f", container]);
        let mut all = vec!["run", "-d", "--runtime", &self.name, "--name", container];
        all.extend_from_slice(args);
        all.push(image());
        all.extend_from_slice(cmd);
        docker(&all)
    }

    /// A user-defined bridge network, removed on drop.
    pub fn network(&self, name: &str, subnet: &str) {
        let _ = docker(&["network", "rm", name]);
        docker(&["network", "create", "--subnet", subnet, name]).ok();
        self.networks.lock().expect("lock").push(name.to_string());
    }
}

/// `docker exec C sh -c SCRIPT`.
pub fn exec(container: &str, script: &str) -> Ran {
    docker(&["exec", container, "sh", "-c", script])
}

/// `docker inspect -f FORMAT C`, trimmed.
pub fn inspect(container: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, container]).ok().stdout.trim().to_string()
}

impl DockerRuntime {
    /// `docker rm -f` of every container [`DockerRuntime::run`] started.
    pub fn remove_containers(&self) {
        let all: Vec<String> = self.containers.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
        for c in all.iter().rev() {
            let _ = docker(&["rm", "-f", c]);
        }
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        self.remove_containers();
        for n in self.networks.lock().map(|c| c.clone()).unwrap_or_default() {
            let _ = docker(&["network", "rm", &n]);
        }
        set_runtime(&self.name, None);
    }
}
