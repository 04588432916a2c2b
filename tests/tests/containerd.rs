//! A real containerd 1.6 (Debian's package) driving boundary-runc through
//! its runc v2 shim. Each test starts its OWN containerd (config, root,
//! state and sockets under a temporary directory; stopped at the end; the
//! system's containerd, if any, is never touched), imports a locally built
//! OCI image (no registry), and runs containers with `ctr run`. Slots
//! 170..=171.
//!
//! `ctr run` gives the spec a network namespace without a path, so the
//! host side is the host's own namespace (`HostSide::Fresh`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use boundary_contract::HostSide;
use boundary_tests::docker::Ran;
use boundary_tests::hostside;
use boundary_tests::probe::HttpReply;
use boundary_tests::{
    binaries, oci_image, poll_until, require_root, require_tool, Counts, LeakSnapshot, Origin,
    Runtime, Settings,
};
use tempfile::TempDir;

const IMAGE: &str = "localhost/boundary-e2e-busybox:latest";
const NAMESPACE: &str = "boundary-e2e";
const RULES: &str = "domain=origin.test path=/allowed/*";

/// One containerd of our own.
struct Containerd {
    dir: TempDir,
    config: PathBuf,
    sock: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    /// Writes the config (CRI plugin on, as a real host has it) without
    /// starting containerd.
    fn new() -> Containerd {
        require_root();
        require_tool("containerd");
        require_tool("ctr");
        let dir = tempfile::Builder::new()
            .prefix("boundary-e2e-ctrd.")
            .tempdir()
            .expect("containerd dir");
        let t = dir.path();
        let sock = t.join("containerd.sock");
        let config = t.join("config.toml");
        let text = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\n[grpc]\n  address = \"{sock}\"\n\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\n\
             [plugins]\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"{opt}\"\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    disable_tcp_service = true\n    stream_server_address = \"127.0.0.1\"\n    stream_server_port = \"0\"\n",
            root = t.join("root").display(),
            state = t.join("state").display(),
            sock = sock.display(),
            opt = t.join("opt").display(),
        );
        std::fs::write(&config, text).expect("write containerd config");
        Containerd {
            dir,
            config,
            sock,
            child: None,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("containerd.log")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Starts containerd with `env` added (the shim and the runtime inherit
    /// containerd's environment) and waits until it answers.
    fn start(&mut self, env: &[(&str, &Path)]) {
        let log = std::fs::File::create(self.log()).expect("containerd log");
        let mut cmd = Command::new(require_tool("containerd"));
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start containerd"));
        poll_until(Duration::from_secs(30), "containerd to answer", || {
            self.ctr(&["version"]).success().then_some(())
        });
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..200 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `ctr --address SOCK --namespace NS ARGS` (deadline 120 s).
    fn ctr(&self, args: &[&str]) -> Ran {
        let mut all = vec![
            "--address".to_string(),
            self.sock.display().to_string(),
            "--namespace".into(),
            NAMESPACE.into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let cmdline = format!("ctr {}", all.join(" "));
        let out = Command::new(require_tool("timeout"))
            .arg("120")
            .arg(require_tool("ctr"))
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr");
        Ran {
            cmdline,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Builds the OCI archive and imports it.
    fn import_image(&self) {
        let archive = oci_image::oci_archive(self.dir.path(), IMAGE);
        self.ctr(&["images", "import", &archive.display().to_string()])
            .ok();
        let list = self.ctr(&["images", "ls", "-q"]).ok();
        assert!(
            list.stdout.lines().any(|l| l.trim() == IMAGE),
            "image {IMAGE} not imported:\n{list}"
        );
    }

    /// `containerd --config CONFIG config dump`, parsed.
    fn config_dump(&self) -> toml::Value {
        let out = Command::new(require_tool("containerd"))
            .arg("--config")
            .arg(&self.config)
            .args(["config", "dump"])
            .output()
            .expect("containerd config dump");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "containerd config dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        toml::from_str(&text).unwrap_or_else(|e| panic!("config dump is not TOML ({e}):\n{text}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers first (their shims outlive containerd otherwise).
            let ids = self.ctr(&["containers", "ls", "-q"]).stdout;
            for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
                std::thread::sleep(Duration::from_millis(200));
                let _ = self.ctr(&["tasks", "delete", "-f", id]);
                let _ = self.ctr(&["containers", "delete", id]);
            }
        }
        self.stop();
        // The snapshotter's mounts (if any are left) must go before the directory.
        boundary_tests::unmount_below(self.dir.path());
    }
}

/// One test's world: an origin, a boundary-runc config, a containerd.
/// Fields drop in order: containerd first, the origin last.
struct World {
    containerd: Containerd,
    rt: Runtime,
    origin: Origin,
}

impl World {
    fn start(slot: u8) -> World {
        require_root();
        let origin = Origin::start(slot);
        let settings = Settings::new(slot)
            .pin("origin.test", origin.addr())
            .upstream_ca(&origin.ca_file());
        let rt = Runtime::new(settings);
        World {
            containerd: Containerd::new(),
            rt,
            origin,
        }
    }

    /// `ctr run --rm --runc-binary BIN --env BOUNDARY_ALLOW=RULES IMAGE ID sh -c SCRIPT`.
    fn run_rm(&self, binary: &Path, id: &str, script: &str) -> Ran {
        let allow = format!("BOUNDARY_ALLOW={RULES}");
        let bin = binary.display().to_string();
        self.containerd.ctr(&[
            "run",
            "--rm",
            "--runc-binary",
            &bin,
            "--env",
            &allow,
            IMAGE,
            id,
            "sh",
            "-c",
            script,
        ])
    }

    /// Runs the boundary probe in a `--rm` container and checks what came
    /// back and what reached the origin.
    fn assert_boundary(&self, binary: &Path, id: &str) {
        let o = self.origin.addr();
        let script = format!(
            "curl -sS --max-time 10 -D - http://origin.test/allowed/a; echo @@@; curl -sS --max-time 10 -D - http://origin.test/private; echo @@@; \
             curl -s --max-time 1 tftp://{o}:7000/probe; echo hello | timeout 2 nc -w 1 {o} 7000; true"
        );
        let before = self.origin.requests().len();
        let base = self.origin.counts();
        let out = self.run_rm(binary, id, &script).ok();
        let parts: Vec<&str> = out.stdout.split("@@@\n").collect();
        assert!(parts.len() >= 2, "probe output:\n{out}");
        let allowed =
            HttpReply::parse(parts[0]).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"));
        assert_eq!(
            (allowed.status, allowed.body.as_str()),
            (200, "origin saw GET /allowed/a\n"),
            "{out}"
        );
        let denied =
            HttpReply::parse(parts[1]).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"));
        self.rt.assert_403_names_a_working_rule(&denied, "GET", "http://origin.test/private");
        assert_eq!(
            self.origin.leaked_since(base),
            Counts::default(),
            "something other than the sidecar's allowed request reached the origin"
        );
        assert_eq!(
            self.origin.requests()[before..],
            ["http GET /allowed/a host=origin.test".to_string()]
        );
        let audit = self.rt.audit_records(id);
        assert!(
            audit.len() >= 2,
            "the audit log of {id} has both decisions: {audit:#?}"
        );
        // --rm: the container is gone, and so is every piece of its jail.
        self.rt.leaks().assert_same_as(&LeakSnapshot::default());
        let left = self.containerd.ctr(&["containers", "ls", "-q"]).ok();
        assert_eq!(left.stdout.trim(), "", "ctr run --rm left a container");
    }

    /// A detached container: its jail's host side is the host's namespace;
    /// kill + delete through ctr removes the jail.
    fn assert_detached_lifecycle(&self, binary: &Path, id: &str) {
        let bin = binary.display().to_string();
        let allow = format!("BOUNDARY_ALLOW={RULES}");
        self.containerd
            .ctr(&[
                "run",
                "-d",
                "--runc-binary",
                &bin,
                "--env",
                &allow,
                IMAGE,
                id,
            ])
            .ok();
        let jail = self.rt.jail(id);
        assert_eq!(
            jail.host_side,
            HostSide::Fresh,
            "ctr's spec has no namespace path: {jail:?}"
        );
        assert!(jail.private_host && jail.dedicated_host_netns.is_some(), "ctr's jail gets a private host side: {jail:?}");
        let in_host = Command::new(require_tool("ip"))
            .args(["-o", "link", "show", &jail.host_if])
            .output()
            .expect("ip link");
        assert!(
            !in_host.status.success(),
            "the jail's host end {} must not be in the host's namespace",
            jail.host_if
        );
        hostside::ip(&jail, &["-o", "link", "show", &jail.host_if]);
        let exec = self
            .containerd
            .ctr(&[
                "tasks",
                "exec",
                "--exec-id",
                "probe",
                id,
                "curl",
                "-sS",
                "--max-time",
                "10",
                "http://origin.test/allowed/exec",
            ])
            .ok();
        assert_eq!(exec.stdout, "origin saw GET /allowed/exec\n", "{exec}");
        self.containerd
            .ctr(&["tasks", "kill", "-s", "SIGKILL", id])
            .ok();
        poll_until(Duration::from_secs(20), "the task to stop", || {
            let l = self.containerd.ctr(&["tasks", "ls"]).ok();
            l.stdout
                .lines()
                .any(|t| t.starts_with(id) && t.contains("STOPPED"))
                .then_some(())
        });
        self.containerd.ctr(&["tasks", "delete", id]).ok();
        self.containerd.ctr(&["containers", "delete", id]).ok();
        self.rt.leaks().assert_same_as(&LeakSnapshot::default());
    }
}

#[test]
fn ctr_run_keeps_the_boundary_and_leaves_nothing() {
    let mut w = World::start(170);
    w.containerd
        .start(&[("BOUNDARY_RUNC_CONFIG", &w.rt.config_file)]);
    w.containerd.import_image();
    let bin = binaries().runtime.clone();
    w.assert_boundary(&bin, "bnd-e2e-170-rm");
    w.assert_detached_lifecycle(&bin, "bnd-e2e-170-detached");
    let errors: Vec<String> = w
        .containerd
        .log_text()
        .lines()
        .filter(|l| l.contains("level=error") && l.contains("bnd-e2e-170"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        errors,
        Vec::<String>::new(),
        "containerd logged errors for our containers"
    );
}

/// `install containerd` on this containerd's own config: containerd loads
/// the entry (its config dump shows it, CRI loads), the BinaryName it
/// loaded runs a jailed container, and `uninstall` restores the config.
#[test]
fn install_containerd_registers_a_runtime_containerd_loads() {
    let mut w = World::start(171);
    let original = std::fs::read_to_string(&w.containerd.config).expect("config");
    let bin = binaries().runtime.display().to_string();
    let config = w.containerd.config.clone();
    let install = |args: &[&str]| {
        let out = Command::new(&binaries().runtime)
            .args(args)
            .env("BOUNDARY_CONTAINERD_CONFIG", &config)
            .output()
            .expect("run install");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "boundary-runc {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let out = install(&["install", "containerd", "--binary", &bin]);
    assert!(
        out.contains("restart containerd"),
        "install says containerd must be restarted: {out}"
    );
    let backup = PathBuf::from(format!(
        "{}.boundary-runc.bak",
        w.containerd.config.display()
    ));
    assert_eq!(std::fs::read_to_string(&backup).expect("backup"), original);

    let dump = w.containerd.config_dump();
    let entry =
        &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["boundary-runc"];
    assert_eq!(
        entry["runtime_type"].as_str(),
        Some("io.containerd.runc.v2"),
        "{dump}"
    );
    assert_eq!(
        entry["pod_annotations"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(toml::Value::as_str),
        Some("io.boundary.*"),
        "{dump}"
    );
    let loaded = entry["options"]["BinaryName"]
        .as_str()
        .unwrap_or_else(|| panic!("no BinaryName in {dump}"))
        .to_string();
    assert_eq!(loaded, bin);

    w.containerd
        .start(&[("BOUNDARY_RUNC_CONFIG", &w.rt.config_file)]);
    let plugins = w.containerd.ctr(&["plugins", "ls"]).ok();
    let cri = plugins
        .stdout
        .lines()
        .find(|l| l.contains("io.containerd.grpc.v1") && l.contains(" cri "))
        .unwrap_or_else(|| panic!("{plugins}"));
    assert!(
        cri.trim_end().ends_with("ok"),
        "CRI did not load with the entry: {cri}\n{}",
        w.containerd.log_text()
    );
    w.containerd.import_image();
    // ctr cannot select a CRI runtime entry; it runs the BinaryName
    // containerd loaded from the installed entry.
    w.assert_boundary(Path::new(&loaded), "bnd-e2e-171-installed");
    w.containerd.stop();

    let out = install(&["uninstall", "containerd"]);
    assert!(out.contains("updated"), "{out}");
    let restored: toml::Value =
        toml::from_str(&std::fs::read_to_string(&w.containerd.config).expect("config"))
            .expect("toml");
    assert_eq!(
        restored,
        toml::from_str::<toml::Value>(&original).expect("toml"),
        "uninstall restores the original"
    );
    let dump = w.containerd.config_dump();
    assert!(
        dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
            .get("boundary-runc")
            .is_none(),
        "{dump}"
    );
}
