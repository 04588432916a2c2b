//! `boundary-runc install|uninstall|doctor` through the binary, the
//! Kubernetes manifests, and (as root) the real containerd reading what
//! `install containerd` wrote. Root tests fail loudly when not root.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_boundary-runc");

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (it runs containerd / touches the host network namespace)");
}

/// Runs boundary-runc with every engine path pointed into `dir`.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("BOUNDARY_DOCKER_CONFIG", dir.join("daemon.json"))
        .env("BOUNDARY_CONTAINERD_CONFIG", dir.join("config.toml"))
        .env("BOUNDARY_CONTAINERD_DIR", dir.join("conf.d"))
        .env("BOUNDARY_CRIO_DIR", dir.join("crio.conf.d"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "status {:?}\nstdout: {}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn docker_install_is_idempotent_keeps_other_settings_and_uninstalls() {
    let d = tempfile::tempdir().unwrap();
    let daemon = d.path().join("daemon.json");
    let original = "{\n  \"log-driver\": \"local\",\n  \"runtimes\": {\"crun\": {\"path\": \"/usr/bin/crun\"}},\n  \"debug\": false\n}\n";
    std::fs::write(&daemon, original).unwrap();
    let backup = d.path().join("daemon.json.boundary-runc.bak");

    let dry = stdout(&run(d.path(), &["install", "docker", "--dry-run", "--binary", "/opt/b/boundary-runc"]));
    assert!(dry.contains("+      \"path\": \"/opt/b/boundary-runc\""), "{dry}");
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), original, "dry run changed the file");
    assert!(!backup.exists());

    let out = stdout(&run(d.path(), &["install", "docker", "--binary", "/opt/b/boundary-runc"]));
    assert!(out.contains("updated"), "{out}");
    let installed = std::fs::read_to_string(&daemon).unwrap();
    let v: serde_json::Value = serde_json::from_str(&installed).unwrap();
    assert_eq!(v["runtimes"]["boundary-runc"]["path"], "/opt/b/boundary-runc");
    assert_eq!(v["runtimes"]["crun"]["path"], "/usr/bin/crun");
    assert_eq!(v["log-driver"], "local");
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["log-driver", "runtimes", "debug"]);
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);

    std::fs::remove_file(&backup).unwrap();
    let again = stdout(&run(d.path(), &["install", "docker", "--binary", "/opt/b/boundary-runc"]));
    assert!(again.contains("already up to date"), "{again}");
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), installed);
    assert!(!backup.exists(), "a backup without a change");

    stdout(&run(d.path(), &["uninstall", "docker"]));
    let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&daemon).unwrap()).unwrap();
    assert_eq!(back, serde_json::from_str::<serde_json::Value>(original).unwrap());
}

#[test]
fn bad_input_is_refused_with_exit_status_2() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("daemon.json"), "{broken").unwrap();
    let o = run(d.path(), &["install", "docker", "--binary", "/x/boundary-runc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("daemon.json"));
    assert_eq!(std::fs::read_to_string(d.path().join("daemon.json")).unwrap(), "{broken");
    assert_eq!(run(d.path(), &["install", "podman"]).status.code(), Some(2));
    assert_eq!(run(d.path(), &["install", "crio", "--binary", "rel/path"]).status.code(), Some(2));
}

#[test]
fn default_binary_is_the_running_one() {
    let d = tempfile::tempdir().unwrap();
    stdout(&run(d.path(), &["install", "crio"]));
    let text = std::fs::read_to_string(d.path().join("crio.conf.d/99-boundary-runc.conf")).unwrap();
    let me = std::fs::canonicalize(BIN).unwrap();
    assert!(text.contains(&format!("runtime_path = \"{}\"", me.display())), "{text}");
}

// ---- Kubernetes manifests ----

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn documents(file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
        if !v.is_null() {
            docs.push(v);
        }
    }
    docs
}

#[test]
fn manifests_are_well_formed_and_agree_with_install() {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(deploy_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            for d in documents(&name) {
                for key in ["apiVersion", "kind"] {
                    assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "{name}: no {key}");
                }
                assert!(d["metadata"]["name"].as_str().is_some_and(|s| !s.is_empty()), "{name}: no metadata.name");
                all.push(d);
            }
        }
    }
    let kind = |k: &str| all.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k}")).clone();
    let rc = kind("RuntimeClass");
    assert_eq!(rc["handler"], boundary_runc::install::DEFAULT_NAME);
    assert_eq!(kind("Namespace")["metadata"]["name"], "boundary-runc");

    let pod = kind("Pod");
    assert_eq!(pod["spec"]["runtimeClassName"], rc["metadata"]["name"]);
    let rules = pod["metadata"]["annotations"]["io.boundary.allow"].as_str().unwrap();
    assert_eq!(boundary_policy::parse_rules(rules).unwrap().len(), 2);

    let ds = kind("DaemonSet");
    assert_eq!(ds["metadata"]["namespace"], "boundary-runc");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true);
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    let script = c["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect::<Vec<_>>().join(" ");
    assert!(script.contains("boundary-runc install containerd"), "{script}");
    for b in ["boundary-runc", "boundary-hook", "boundary-sidecar"] {
        assert!(script.contains(b));
    }
    let host_paths: Vec<&str> = spec["volumes"].as_array().unwrap().iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
    for p in ["/usr/local/bin", "/etc/containerd", "/run"] {
        assert!(host_paths.contains(&p), "{host_paths:?}");
    }
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("FROM debian:12-slim") && dockerfile.contains("/opt/boundary-runc/bin/"));
}

// ---- the real containerd (root) ----

const RUNC_ENTRY: &str = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n  NoPivotRoot = true\n";

struct Containerd {
    child: std::process::Child,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn real_containerd_reads_the_installed_runtime_next_to_its_runc_entry() {
    containerd_round_trip(true);
}

/// Debian's own config.toml declares no runtime: containerd's built-in runc
/// entry must survive the install, or CRI does not load at all.
#[test]
fn real_containerd_keeps_its_builtin_runc_runtime() {
    containerd_round_trip(false);
}

fn containerd_round_trip(runc_entry: bool) {
    require_root();
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    let sock = t.join("containerd.sock");
    let main = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\n[grpc]\n  address = \"{sock}\"\n\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\n\
         [plugins]\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"{opt}\"\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    disable_tcp_service = true\n    stream_server_address = \"127.0.0.1\"\n    stream_server_port = \"0\"\n{runc}",
        runc = if runc_entry { RUNC_ENTRY } else { "" },
        root = t.join("root").display(),
        state = t.join("state").display(),
        sock = sock.display(),
        opt = t.join("opt").display(),
    );
    let config = t.join("config.toml");
    std::fs::write(&config, &main).unwrap();

    let out = stdout(&run(t, &["install", "containerd", "--binary", "/usr/local/bin/boundary-runc"]));
    assert!(out.contains("restart containerd"), "{out}");
    assert_eq!(std::fs::read_to_string(t.join("config.toml.boundary-runc.bak")).unwrap(), main);
    let again = stdout(&run(t, &["install", "containerd", "--binary", "/usr/local/bin/boundary-runc"]));
    assert!(again.contains("already up to date") && !again.contains("restart"), "{again}");

    // containerd's own view of its configuration.
    let dump = Command::new("containerd").arg("--config").arg(&config).args(["config", "dump"]).output().expect("containerd is installed (apt-get install containerd)");
    let dump = stdout(&dump);
    let merged: toml::Value = toml::from_str(&dump).unwrap();
    let runtimes = &merged["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
    assert_eq!(runtimes["runc"]["runtime_type"].as_str(), Some("io.containerd.runc.v2"), "the runc entry is still there: {dump}");
    let rt = &runtimes["boundary-runc"];
    assert_eq!(rt["runtime_type"].as_str(), Some("io.containerd.runc.v2"), "{dump}");
    assert_eq!(rt["options"]["BinaryName"].as_str(), Some("/usr/local/bin/boundary-runc"), "{dump}");
    let no_pivot = rt["options"].get("NoPivotRoot").and_then(toml::Value::as_bool).unwrap_or(false);
    assert_eq!(no_pivot, runc_entry, "runc's options are copied: {dump}");
    assert_eq!(rt["pod_annotations"].as_array().map(|a| a.len()), Some(1), "{dump}");
    assert_eq!(rt["pod_annotations"][0].as_str(), Some("io.boundary.*"));

    // And a running containerd starts with it (its CRI plugin loads).
    let log = std::fs::File::create(t.join("containerd.log")).unwrap();
    let child = Command::new("containerd").arg("--config").arg(&config).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    let _guard = Containerd { child };
    let deadline = Instant::now() + Duration::from_secs(30);
    let plugins = loop {
        let o = Command::new("ctr").arg("--address").arg(&sock).args(["plugins", "ls"]).output().unwrap();
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "containerd did not come up: {}", std::fs::read_to_string(t.join("containerd.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    };
    let cri = plugins.lines().find(|l| l.contains("io.containerd.grpc.v1") && l.contains(" cri ")).unwrap_or_else(|| panic!("{plugins}"));
    assert!(cri.trim_end().ends_with("ok"), "CRI plugin did not load with the runtime entry: {cri}\n{}", std::fs::read_to_string(t.join("containerd.log")).unwrap_or_default());

    // Uninstall takes the entry out of containerd's view again.
    stdout(&run(t, &["uninstall", "containerd"]));
    let dump = stdout(&Command::new("containerd").arg("--config").arg(&config).args(["config", "dump"]).output().unwrap());
    assert!(!dump.contains("boundary-runc"), "{dump}");
    let restored: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(restored, toml::from_str::<toml::Value>(&main).unwrap());
}

// ---- doctor (root: real links, nft tables, namespaces) ----

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn table_exists(name: &str) -> bool {
    Command::new("nft").args(["list", "table", "inet", name]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
}

/// Removes what the doctor test made, whatever happened.
struct HostObjects {
    /// The state root's shared namespace directory (a mount point).
    netns_dir: PathBuf,
}

impl Drop for HostObjects {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.netns_dir, nix::mount::MntFlags::MNT_DETACH);
        for l in ["bnd0afb0701", "bnd0afb0715", "bnd0afc0001"] {
            let _ = Command::new("ip").args(["link", "del", l]).stderr(Stdio::null()).status();
        }
        for t in ["boundary_0afb0701", "boundary_0afb0719"] {
            let _ = Command::new("nft").args(["delete", "table", "inet", t]).stderr(Stdio::null()).status();
        }
    }
}

#[test]
fn doctor_finds_and_cleans_leftovers_of_its_own_pool_only() {
    use boundary_contract::{HostSide, JailState};
    require_root();
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    let state = t.join("state");
    let config = t.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "runtime = \"runc\"\nstate_root = \"{}\"\nhook_path = \"/bin/true\"\nsidecar_path = \"/bin/true\"\n[network]\npool = \"10.251.7.0/24\"\n[tls]\nca_dir = \"{}\"\n",
            state.display(),
            t.join("ca").display()
        ),
    )
    .unwrap();
    let _objects = HostObjects { netns_dir: state.join("netns") };

    // A jail whose container runc does not know, with all its pieces.
    let jail_dir = state.join("gone");
    std::fs::create_dir_all(&jail_dir).unwrap();
    let js = JailState {
        create_token: 1,
        forwarding_turned_on: false,
        container_id: "gone".into(),
        index: 0,
        host_side: HostSide::Fresh,
        netns_path: state.join("netns/gone"),
        host_if: "bnd0afb0701".into(),
        host_addr: "10.251.7.1".parse().unwrap(),
        jail_addr: "10.251.7.2".parse().unwrap(),
        prefix_len: 30,
        nft_table: "boundary_0afb0701".into(),
        sidecar_pid: None,
        runtime_root: Some(t.join("runc-root")),
        dedicated_host_netns: None,
        engine_handover: None,
        private_host: false,
        userns: None,
    };
    std::fs::write(jail_dir.join("jail.json"), serde_json::to_vec(&js).unwrap()).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(120);
    std::fs::File::options().write(true).open(jail_dir.join("jail.json")).unwrap().set_modified(old).unwrap();
    std::fs::create_dir_all(state.join("ipam")).unwrap();
    std::fs::write(state.join("ipam/0"), "gone").unwrap();
    boundary_runc::netns::prepare_dir(&state.join("netns")).unwrap();
    boundary_runc::netns::create(&state.join("netns/gone")).unwrap();
    sh("ip link add bnd0afb0701 type veth peer name bnj0afb0701 && nft add table inet boundary_0afb0701");
    // Strays that no jail owns, and a link of another pool that must survive.
    std::fs::write(state.join("ipam/5"), "ghost").unwrap();
    std::fs::write(state.join("netns/ghost"), "").unwrap();
    sh("ip link add bnd0afb0715 type veth peer name bnj0afb0715 && nft add table inet boundary_0afb0719");
    sh("ip link add bnd0afc0001 type veth peer name bnj0afc0001");
    let fifo = t.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let conf = state.join("vanished/sidecar.json");
    let script = format!("exec -a /usr/local/bin/boundary-sidecar bash -c 'read x < {}' _ --config {}", fifo.display(), conf.display());
    let mut sidecar = Command::new("bash").arg("-c").arg(&script).spawn().unwrap();
    let sidecar_pid = sidecar.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read(format!("/proc/{sidecar_pid}/cmdline")).unwrap_or_default().starts_with(b"/usr/local/bin/boundary-sidecar") {
        assert!(Instant::now() < deadline, "fake sidecar did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let doctor = |clean: bool| {
        let mut args = vec!["doctor", "--config", config.to_str().unwrap()];
        if clean {
            args.push("--clean");
        }
        run(t, &args)
    };
    let o = doctor(false);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{text}");
    for want in [
        "FAIL leftover jail: gone: the container is gone",
        "FAIL leftover lease: 5 held by \"ghost\"",
        "FAIL leftover namespace: ",
        "FAIL leftover link: bnd0afb0715",
        "FAIL leftover link: bnj0afb0715",
        "FAIL leftover nft table: inet boundary_0afb0719",
        &format!("FAIL leftover sidecar: pid {sidecar_pid}"),
        "OK   delegate runtime",
        "OK   nftables",
        "OK   user namespaces: up to ",
        "WARN host CA: not generated yet",
        "WARN docker",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("bnd0afb0701 belongs") && !text.contains("bnd0afc0001"), "{text}");
    assert!(link_exists("bnd0afb0715"), "doctor without --clean removed something");

    let o = doctor(true);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("after cleaning:\nOK   leftovers: none"), "{text}");
    let _ = sidecar.wait();
    assert!(!jail_dir.exists() && !state.join("netns/gone").exists() && !state.join("netns/ghost").exists());
    let left: Vec<_> = std::fs::read_dir(state.join("ipam")).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != ".lock").collect();
    assert!(left.is_empty(), "leases left: {left:?}");
    for l in ["bnd0afb0701", "bnj0afb0701", "bnd0afb0715"] {
        assert!(!link_exists(l), "{l} left");
    }
    assert!(!table_exists("boundary_0afb0701") && !table_exists("boundary_0afb0719"));
    assert!(link_exists("bnd0afc0001"), "a link of another pool was removed");
    assert!(!Path::new(&format!("/proc/{sidecar_pid}/cmdline")).exists() || std::fs::read(format!("/proc/{sidecar_pid}/cmdline")).unwrap().is_empty());
}

#[test]
fn docker_install_signals_the_dockerd_that_reads_that_file() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    // A stand-in whose comm is "dockerd" and whose command line names the
    // test's daemon.json: it records the SIGHUP that reloads runtimes.
    // A symlink, not a copy: exec of a file just written fails with
    // ETXTBSY while another test thread's fork still holds its write
    // descriptor. The kernel names the process after the path it was
    // started by, so its comm is "dockerd" all the same.
    let fake = t.join("dockerd");
    std::os::unix::fs::symlink("/bin/bash", &fake).unwrap();
    let got = t.join("got-hup");
    let ready = t.join("ready");
    let script = format!("trap 'echo hup > {}' HUP; touch {}; for i in $(seq 1 300); do sleep 0.1; done", got.display(), ready.display());
    let mut cmd = Command::new(&fake);
    cmd.arg("-c").arg(&script).arg("_").arg("--config-file").arg(t.join("daemon.json"));
    // A shell cannot trap a signal that was ignored when it started, and
    // under `nohup` (as CI may run) SIGHUP is: give the stand-in the default.
    // SAFETY: only async-signal-safe calls (signal, sigprocmask) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
            signal(Signal::SIGHUP, SigHandler::SigDfl).map_err(std::io::Error::from)?;
            let mut hup = SigSet::empty();
            hup.add(Signal::SIGHUP);
            sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&hup), None).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "stand-in did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = stdout(&run(t, &["install", "docker", "--binary", "/usr/local/bin/boundary-runc"]));
    assert!(out.contains(&format!("sent SIGHUP to dockerd (pid {})", child.id())), "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !got.exists() {
        assert!(Instant::now() < deadline, "no SIGHUP arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = stdout(&run(t, &["install", "docker", "--binary", "/usr/local/bin/boundary-runc"]));
    assert!(!again.contains("SIGHUP"), "nothing changed, nothing to reload: {again}");
    let _ = child.kill();
    let _ = child.wait();
}
