//! podman 4.3 (Debian's package) driving boundary-runc: `podman --runtime
//! <boundary-runc> run`. Every test has its own podman storage (`--root`,
//! `--runroot`, `--tmpdir` under a temporary directory) and imports a local
//! rootfs tarball as its image (no registry). Slots 172, 173 and 175–178.
//!
//! podman prepares the container's network namespace itself (CNI here:
//! Debian's containernetworking-plugins) and hands it over by path
//! (`/run/netns/netns-<uuid>`): that namespace is the jail's host side,
//! and the sidecar reaches the origin through podman's bridge and the
//! host's forwarding.
//!
//! podman's default rlimits (NOFILE and NPROC 1048576 for root) cannot be
//! set without CAP_SYS_RESOURCE, which these machines lack (`--ulimit host`
//! still asks for NOFILE 1048576 here): the tests pass lower limits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use boundary_contract::HostSide;
use boundary_tests::docker::Ran;
use boundary_tests::probe::HttpReply;
use boundary_tests::{
    binaries, oci_image, require_root, require_tool, Counts, LeakSnapshot, Origin, Runtime,
    Settings,
};
use tempfile::TempDir;

const IMAGE: &str = "localhost/boundary-e2e-busybox:latest";
const RULES: &str = "domain=origin.test path=/allowed/*";
/// rlimits every container gets (lowering needs no capability).
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// One test's podman: isolated storage, boundary-runc as its runtime.
struct Podman {
    dir: TempDir,
    wrapper: PathBuf,
    /// Select the runtime by name from the containers.conf (which also
    /// lists it in `runtime_supports_json`, so podman passes
    /// `--log-format=json --log FILE`), instead of `--runtime PATH`.
    by_name: bool,
    /// Given to every podman call (`CONTAINERS_CONF`).
    containers_conf: PathBuf,
}

impl Podman {
    /// `rt`'s boundary-runc behind a wrapper that sets its config (podman
    /// passes conmon, and so the runtime, only part of its environment).
    fn new(rt: &Runtime, by_name: bool) -> Podman {
        require_root();
        require_tool("podman");
        require_tool("conmon");
        let dir = tempfile::Builder::new()
            .prefix("boundary-e2e-podman.")
            .tempdir()
            .expect("podman dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let wrapper = bin.join("boundary-runc");
        let script = format!(
            "#!/bin/sh\nexport BOUNDARY_RUNC_CONFIG='{}'\nexec '{}' \"$@\"\n",
            rt.config_file.display(),
            binaries().runtime.display()
        );
        std::fs::write(&wrapper, script).expect("write wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
        // The limits of containers given no --ulimit (a pod's infra
        // container): podman's default, 1048576 open files, is above what
        // this host lets root raise its own limit to.
        let mut text = String::from("[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n");
        if by_name {
            text.push_str(&format!(
                "[engine]\nruntime = \"boundary-runc\"\nruntime_supports_json = [\"crun\", \"runc\", \"boundary-runc\"]\n\n[engine.runtimes]\nboundary-runc = [\"{}\"]\n",
                wrapper.display()
            ));
        }
        let conf = dir.path().join("containers.conf");
        std::fs::write(&conf, text).expect("write containers.conf");
        Podman {
            dir,
            wrapper,
            by_name,
            containers_conf: conf,
        }
    }

    /// `podman <isolated storage> --runtime WRAPPER ARGS` (deadline 120 s).
    fn podman(&self, args: &[&str]) -> Ran {
        let d = self.dir.path();
        let p = |s: &str| d.join(s).display().to_string();
        let mut all: Vec<String> = vec![
            "--root".into(),
            p("root"),
            "--runroot".into(),
            p("runroot"),
            "--tmpdir".into(),
            p("tmp"),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--network-backend".into(),
            "cni".into(),
        ];
        if !self.by_name {
            all.extend(["--runtime".into(), self.wrapper.display().to_string()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let cmdline = format!("podman {}", all.join(" "));
        let mut cmd = Command::new(require_tool("timeout"));
        cmd.arg("120")
            .arg(require_tool("podman"))
            .args(&all)
            .stdin(Stdio::null());
        cmd.env("CONTAINERS_CONF", &self.containers_conf);
        let out = cmd.output().expect("run podman");
        Ran {
            cmdline,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `podman import` of the shared rootfs as [`IMAGE`].
    fn import_image(&self) {
        self.import_image_as(IMAGE, &[]);
    }

    /// `podman import` of the shared rootfs as `name`, with more
    /// Dockerfile-style `changes` (`ENV K=V`).
    fn import_image_as(&self, name: &str, changes: &[&str]) {
        let tar = self.dir.path().join("rootfs.tar");
        if !tar.exists() {
            oci_image::rootfs_tar(&tar);
        }
        let env = format!("ENV {}", oci_image::PATH_ENV);
        let mut args = vec!["import", "--change", &env, "--change", "CMD [\"/bin/sleep\", \"1000\"]"];
        for c in changes {
            args.extend(["--change", c]);
        }
        let tar = tar.display().to_string();
        args.extend([tar.as_str(), name]);
        self.podman(&args).ok();
    }

    /// `podman run ARGS... IMAGE CMD...` with [`ULIMITS`].
    fn run(&self, args: &[&str], cmd: &[&str]) -> Ran {
        let mut all = vec!["run"];
        all.extend_from_slice(&ULIMITS);
        all.extend_from_slice(args);
        all.push(IMAGE);
        all.extend_from_slice(cmd);
        self.podman(&all)
    }

    /// `podman ps -a -q`: every container podman knows.
    fn all_containers(&self) -> String {
        self.podman(&["ps", "-a", "-q"])
            .ok()
            .stdout
            .trim()
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        // vfs and shm mounts under the storage go before the directory.
        boundary_tests::unmount_below(self.dir.path());
    }
}

/// One test's world. Fields drop in order: podman's containers first, the
/// origin last.
struct World {
    podman: Podman,
    rt: Runtime,
    origin: Origin,
}

impl World {
    fn start(slot: u8, by_name: bool) -> World {
        require_root();
        let origin = Origin::start(slot);
        let settings = Settings::new(slot)
            .pin("origin.test", origin.addr())
            .upstream_ca(&origin.ca_file());
        let rt = Runtime::new(settings);
        let podman = Podman::new(&rt, by_name);
        podman.import_image();
        World { podman, rt, origin }
    }

    #[track_caller]
    fn assert_nothing_left(&self) {
        self.rt.leaks().assert_same_as(&LeakSnapshot::default());
        assert_eq!(
            self.podman.all_containers(),
            "",
            "podman still lists containers"
        );
    }
}

/// Link names in the namespace at `ns`.
fn links_in(ns: &Path) -> String {
    let out = Command::new(require_tool("nsenter"))
        .arg(format!("--net={}", ns.display()))
        .args([
            require_tool("ip").to_str().expect("utf-8 path"),
            "-o",
            "link",
        ])
        .output()
        .expect("nsenter");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn podman_run_rm_keeps_the_boundary_and_leaves_nothing() {
    let w = World::start(172, false);
    let o = w.origin.addr();
    let script = format!(
        "curl -sS --max-time 10 -D - http://origin.test/allowed/a; echo @@@; curl -sS --max-time 10 -D - http://origin.test/private; echo @@@; \
         curl -s --max-time 1 tftp://{o}:7000/probe; echo hello | timeout 2 nc -w 1 {o} 7000; true"
    );
    let allow = format!("BOUNDARY_ALLOW={RULES}");
    let base = w.origin.counts();
    let out = w
        .podman
        .run(&["--rm", "-e", &allow], &["sh", "-c", &script])
        .ok();
    let parts: Vec<&str> = out.stdout.split("@@@\n").collect();
    assert!(parts.len() >= 2, "probe output:\n{out}");
    let allowed = HttpReply::parse(parts[0]).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"));
    assert_eq!(
        (allowed.status, allowed.body.as_str()),
        (200, "origin saw GET /allowed/a\n"),
        "{out}"
    );
    let denied = HttpReply::parse(parts[1]).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"));
    w.rt.assert_403_names_a_working_rule(&denied, "GET", "http://origin.test/private");
    assert_eq!(
        w.origin.leaked_since(base),
        Counts::default(),
        "something other than the sidecar's allowed request reached the origin"
    );
    assert_eq!(
        w.origin.requests(),
        ["http GET /allowed/a host=origin.test".to_string()]
    );
    w.assert_nothing_left();
}

/// Runtime selected by name from containers.conf (JSON log); rules from
/// the environment and from `--annotation io.boundary.allow`.
#[test]
fn podman_namespace_is_the_host_side_and_rm_removes_the_jail() {
    let w = World::start(173, true);
    let allow = format!("BOUNDARY_ALLOW={RULES}");
    let ann = "io.boundary.allow=domain=origin.test path=/annotated/*";
    let id = w
        .podman
        .run(
            &[
                "-d",
                "--name",
                "bnd-e2e-173",
                "-e",
                &allow,
                "--annotation",
                ann,
            ],
            &[],
        )
        .ok()
        .stdout
        .trim()
        .to_string();
    let jail = w.rt.jail(&id);
    let HostSide::Path { path } = &jail.host_side else {
        panic!("podman hands its namespace over by path: {jail:?}")
    };
    assert!(
        path.display().to_string().starts_with("/run/netns/netns-"),
        "{path:?}"
    );
    let host = links_in(path);
    assert!(
        host.contains(&jail.host_if),
        "the jail's host end {} is in podman's namespace:\n{host}",
        jail.host_if
    );
    let inside = w
        .podman
        .podman(&["exec", &id, "ip", "-o", "-4", "addr"])
        .ok()
        .stdout;
    assert!(
        inside.contains(&jail.jail_addr.to_string()) && !inside.contains("10.88."),
        "only the jail's address inside:\n{inside}"
    );
    let r = w
        .podman
        .podman(&[
            "exec",
            &id,
            "curl",
            "-sS",
            "--max-time",
            "10",
            "http://origin.test/allowed/exec",
        ])
        .ok();
    assert_eq!(r.stdout, "origin saw GET /allowed/exec\n", "{r}");
    let r = w
        .podman
        .podman(&[
            "exec",
            &id,
            "curl",
            "-sS",
            "--max-time",
            "10",
            "http://origin.test/annotated/x",
        ])
        .ok();
    assert_eq!(
        r.stdout, "origin saw GET /annotated/x\n",
        "the annotation's rule applies: {r}"
    );
    let r = w
        .podman
        .podman(&[
            "exec",
            &id,
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://origin.test/other",
        ])
        .ok();
    assert_eq!(r.stdout, "403", "{r}");
    // An invalid rule fails `podman run` with the rule's error.
    let bad = w
        .podman
        .run(&["--rm", "-e", "BOUNDARY_ALLOW=domain=github.*"], &["true"])
        .failed();
    assert!(
        bad.all().contains("invalid BOUNDARY_ALLOW") && bad.all().contains("github.*"),
        "podman shows the error from the JSON log: {bad}"
    );
    w.podman.podman(&["rm", "-f", "-t", "0", &id]).ok();
    w.assert_nothing_left();
}

/// A server in a jailed podman container is reached at the container's
/// address and through a published port (`-p`), as without boundary-runc:
/// flows that start outside for podman's namespace's address are sent on
/// to the jail. What the container starts still goes through the sidecar.
#[test]
fn podman_published_ports_and_the_container_address_reach_a_server_in_the_jail() {
    let w = World::start(175, false);
    let allow = format!("BOUNDARY_ALLOW={RULES}");
    let server = "mkdir -p /tmp/www && echo served from the jail > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
    let id = w
        .podman
        .run(&["-d", "-p", "18175:8080", "-e", &allow], &["sh", "-c", server])
        .ok()
        .stdout
        .trim()
        .to_string();
    let addr = w
        .podman
        .podman(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &id])
        .ok()
        .stdout
        .trim()
        .to_string();
    let gateway = w
        .podman
        .podman(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", &id])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(addr.starts_with("10.88.") && gateway.starts_with("10.88."), "podman's addresses: {addr} {gateway}");
    let curl = |url: &str| {
        Command::new(require_tool("curl"))
            .args(["-sS", "--max-time", "5", url])
            .output()
            .expect("run curl")
    };
    for url in [format!("http://{addr}:8080/index.html"), format!("http://{gateway}:18175/index.html")] {
        let out = boundary_tests::poll_until(std::time::Duration::from_secs(10), &format!("the jailed server at {url}"), || {
            let out = curl(&url);
            out.status.success().then_some(out)
        });
        assert_eq!(String::from_utf8_lossy(&out.stdout), "served from the jail\n", "{url}");
    }
    // The boundary holds for what the container starts.
    let status = |url: &str| {
        w.podman
            .podman(&["exec", &id, "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", url])
            .stdout
    };
    assert_eq!(status("http://origin.test/allowed/x"), "200");
    assert_eq!(status("http://origin.test/private"), "403");
    let o = w.origin.addr();
    let base = w.origin.counts();
    w.podman.podman(&["exec", &id, "sh", "-c", &format!("echo hi | timeout 2 nc -w 1 {o} 7000; true")]);
    assert_eq!(w.origin.leaked_since(base), Counts::default(), "raw TCP from the jail reached the origin");
    w.podman.podman(&["rm", "-f", "-t", "0", &id]).ok();
    w.assert_nothing_left();
}

/// A namespace other processes already use is no jail's to publish from:
/// `--network container:X` of an unjailed X keeps X's published port and
/// X's localhost, and two jails sharing X's namespace each keep their own
/// sidecar (neither table sends the other's packets anywhere).
#[test]
fn jails_in_a_namespace_others_use_take_over_nothing_and_each_keep_their_sidecar() {
    let w = World::start(176, false);
    let allow = format!("BOUNDARY_ALLOW={RULES}");
    let serve = |text: &str| format!("mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www");
    // X runs under plain runc.
    let x = w
        .podman
        .podman(&["run", "-d", "--runtime", require_tool("runc").to_str().expect("utf-8"), "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "-p", "18176:8080", IMAGE, "sh", "-c", &serve("served-by-x")])
        .ok()
        .stdout
        .trim()
        .to_string();
    let net = format!("container:{x}");
    let jailed: Vec<String> = (0..2)
        .map(|_| w.podman.run(&["-d", "--network", &net, "-e", &allow], &["sleep", "1000"]).ok().stdout.trim().to_string())
        .collect();
    for id in &jailed {
        let jail = w.rt.jail(id);
        assert!(matches!(jail.host_side, HostSide::Path { .. }), "{jail:?}");
        let table = Command::new(require_tool("nsenter"))
            .arg(format!("--net={}", match &jail.host_side { HostSide::Path { path } => path.display().to_string(), _ => unreachable!() }))
            .arg(require_tool("nft"))
            .args(["list", "table", "inet", &jail.nft_table])
            .output()
            .expect("nft list");
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(table.contains("redirect to :15001") && !table.contains("dnat"), "no inbound into a jail in X's namespace:\n{table}");
    }
    let gateway = w.podman.podman(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", &x]).ok().stdout.trim().to_string();
    let out = boundary_tests::poll_until(std::time::Duration::from_secs(10), "X's published port", || {
        let out = Command::new(require_tool("curl")).args(["-sS", "--max-time", "5", &format!("http://{gateway}:18176/index.html")]).output().expect("curl");
        out.status.success().then_some(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served-by-x\n", "X keeps its published port");
    // Each jail's requests are judged by its own sidecar, DNS included.
    for id in &jailed {
        let status = |url: &str| {
            w.podman.podman(&["exec", id, "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", url]).stdout
        };
        assert_eq!(status("http://origin.test/allowed/x"), "200", "{id}");
        assert_eq!(status("http://origin.test/private"), "403", "{id}");
        let audited = w.rt.audit_records(id);
        assert!(audited.iter().any(|r| r.url.as_deref() == Some("http://origin.test/allowed/x")), "{id}: {audited:?}");
    }
    for id in jailed.iter().chain([&x]) {
        w.podman.podman(&["rm", "-f", "-t", "0", id]).ok();
    }
    w.assert_nothing_left();
}

/// A podman pod is one network, as without boundary-runc: the infra
/// container is jailed (its image's `BOUNDARY_ALLOW` is the pod's policy)
/// and every member, which podman gives `/proc/<infra pid>/ns/net` and the
/// infra's ipc and uts namespaces, joins that jail. The members start
/// (they could not while each got a jail of its own: the infra's ipc
/// namespace belongs to its jail's user namespace), share the pod's
/// localhost, and are judged by the pod's one sidecar, whose rules a
/// member's own narrow while it lives; the pod's published port reaches a
/// server in a member. `pod rm` leaves nothing.
#[test]
fn a_podman_pods_members_join_its_jail_and_share_its_localhost_rules_and_ports() {
    let w = World::start(177, false);
    const INFRA: &str = "localhost/boundary-e2e-infra:latest";
    w.podman.import_image_as(INFRA, &[&format!("ENV BOUNDARY_ALLOW={RULES}")]);
    let pod = w.podman.podman(&["pod", "create", "--infra-image", INFRA, "-p", "18177:8080"]).ok().stdout.trim().to_string();
    let server = "mkdir -p /tmp/www && echo served in the pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
    // The member's own rules cannot widen the pod's.
    let member = w
        .podman
        .run(&["-d", "--pod", &pod, "-e", "BOUNDARY_ALLOW=domain=origin.test"], &["sh", "-c", server])
        .ok()
        .stdout
        .trim()
        .to_string();
    let client = w.podman.run(&["-d", "--pod", &pod], &["sleep", "1000"]).ok().stdout.trim().to_string();
    let infra = w.podman.podman(&["pod", "inspect", "-f", "{{.InfraContainerID}}", &pod]).ok().stdout.trim().to_string();
    let ns = |id: &str, kind: &str| {
        let pid = w.podman.podman(&["inspect", "-f", "{{.State.Pid}}", id]).ok().stdout.trim().to_string();
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap_or_else(|e| panic!("ns/{kind} of {id} (pid {pid}): {e}"))
    };
    let jail = w.rt.jail(&infra);
    assert!(matches!(jail.host_side, HostSide::Path { .. }), "the infra's jail keeps podman's namespace as its host side: {jail:?}");
    for id in [&member, &client] {
        for kind in ["net", "user", "ipc", "uts"] {
            assert_eq!(ns(id, kind), ns(&infra, kind), "{kind} namespace of member {id}");
        }
        let joined = w.rt.dirs.state_root.join(id).join("joined");
        assert_eq!(std::fs::read_to_string(&joined).unwrap_or_default(), infra, "{}", joined.display());
        assert!(!w.rt.dirs.state_root.join("netns").join(id).exists(), "member {id} has a jail of its own");
    }
    let exec_curl = |id: &str, url: &str, out: &str| {
        w.podman.podman(&["exec", id, "curl", "-sS", "--max-time", "10", "-o", out, "-w", "%{http_code}", url]).stdout
    };
    let served = boundary_tests::poll_until(std::time::Duration::from_secs(10), "the member's server over the pod's localhost", || {
        let out = w.podman.podman(&["exec", &client, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/index.html"]);
        (out.code == Some(0)).then_some(out.stdout)
    });
    assert_eq!(served, "served in the pod\n");
    for id in [&client, &member] {
        assert_eq!(exec_curl(id, "http://origin.test/allowed/x", "/dev/null"), "200", "{id}");
        assert_eq!(exec_curl(id, "http://origin.test/private", "/dev/null"), "403", "{id}: the pod's rules, not the member's own");
    }
    let audited = w.rt.audit_records(&infra);
    let allowed = audited.iter().filter(|r| r.url.as_deref() == Some("http://origin.test/allowed/x")).count();
    assert_eq!(allowed, 2, "both members' requests in the pod's one audit log: {audited:?}");
    // A member's own rules narrow the pod's for every member while it
    // lives (they share one network, so it could relay for the others).
    assert_eq!(exec_curl(&client, "http://origin.test/allowed/y", "/dev/null"), "200", "before the narrowing member");
    let narrower = w
        .podman
        .run(&["-d", "--pod", &pod, "-e", "BOUNDARY_ALLOW=domain=origin.test path=/allowed/x"], &["sleep", "1000"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(exec_curl(&client, "http://origin.test/allowed/x", "/dev/null"), "200", "what both allow");
    assert_eq!(exec_curl(&client, "http://origin.test/allowed/y", "/dev/null"), "403", "narrowed by {narrower}");
    w.podman.podman(&["rm", "-f", "-t", "0", &narrower]).ok();
    assert!(!w.rt.dirs.state_root.join(&narrower).exists(), "the narrowing member's state is removed");
    assert_eq!(exec_curl(&client, "http://origin.test/allowed/y", "/dev/null"), "200", "the narrowing lifted with {narrower}");
    let gateway = w.podman.podman(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", &infra]).ok().stdout.trim().to_string();
    let out = boundary_tests::poll_until(std::time::Duration::from_secs(10), "the pod's published port", || {
        let out = Command::new(require_tool("curl")).args(["-sS", "--max-time", "5", &format!("http://{gateway}:18177/index.html")]).output().expect("curl");
        out.status.success().then_some(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served in the pod\n", "the pod's published port");
    w.podman.podman(&["pod", "rm", "-f", "-t", "0", &pod]).ok();
    w.assert_nothing_left();
}

/// `podman play kube` of the YAML a Kubernetes user would apply: the
/// pod's annotation `io.boundary.allow` is the pod's policy, as under
/// Kubernetes. podman gives the infra container (catatonit) none of the
/// pod's annotations, only the members, so the infra's jail, which got no
/// rules, takes them from the first member (its worker restarts with them
/// before that member starts). A later member whose annotation differs
/// narrows the pod's rules while it lives; `pod rm` leaves nothing. A
/// `podman pod create` pod's first annotated member gives its rules too.
#[test]
fn podman_play_kube_gives_the_pod_the_rules_of_its_yaml_annotation() {
    require_tool("catatonit");
    let w = World::start(178, false);
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bnd-e2e-178\n  annotations:\n    io.boundary.allow: \"{RULES}\"\nspec:\n  containers:\n  - name: agent\n    image: {IMAGE}\n    command: [\"/bin/sleep\", \"1000\"]\n"
    );
    let kube = w.podman.dir.path().join("pod.yaml");
    std::fs::write(&kube, yaml).expect("write pod.yaml");
    w.podman.podman(&["play", "kube", &kube.display().to_string()]).ok();
    let infra = w.podman.podman(&["pod", "inspect", "-f", "{{.InfraContainerID}}", "bnd-e2e-178"]).ok().stdout.trim().to_string();
    let agent = w.podman.podman(&["inspect", "-f", "{{.Id}}", "bnd-e2e-178-agent"]).ok().stdout.trim().to_string();
    let jail_dir = w.rt.dirs.state_root.join(&infra);
    assert_eq!(std::fs::read_to_string(jail_dir.join("pod-rules")).unwrap_or_default(), format!("{RULES}\n"), "the pod's rules, from its first member");
    assert!(!jail_dir.join("pod-rules-open").exists(), "the pod's rules are given once");
    assert_eq!(std::fs::read_to_string(w.rt.dirs.state_root.join(&agent).join("joined")).unwrap_or_default(), infra, "the member joined the infra's jail");
    let curl = |id: &str, url: &str| {
        let out = w.podman.podman(&["exec", id, "curl", "-sS", "--max-time", "10", "-w", "~~~%{http_code}", url]);
        let (body, code) = out.stdout.rsplit_once("~~~").unwrap_or_else(|| panic!("curl in {id}:\n{out}"));
        (code.to_string(), body.to_string())
    };
    let (code, body) = curl(&agent, "http://origin.test/allowed/x");
    assert_eq!((code.as_str(), body.as_str()), ("200", "origin saw GET /allowed/x\n"));
    let (code, body) = curl(&agent, "http://origin.test/private");
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("add this rule to the pod's annotation io.boundary.allow"), "the 403 says where the pod's rules are given:\n{body}");
    assert_eq!(w.origin.requests(), ["http GET /allowed/x host=origin.test".to_string()], "only the allowed request reached the origin");
    // A member whose annotation differs from the pod's narrows them.
    let narrower = w
        .podman
        .run(&["-d", "--pod", "bnd-e2e-178", "--annotation", "io.boundary.allow=domain=origin.test path=/allowed/x"], &["sleep", "1000"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(curl(&agent, "http://origin.test/allowed/x").0, "200", "what both allow");
    let (code, body) = curl(&agent, "http://origin.test/allowed/y");
    assert_eq!(code, "403", "narrowed by {narrower}: {body}");
    assert!(body.contains(&format!("in the rules of {narrower}")), "{body}");
    w.podman.podman(&["rm", "-f", "-t", "0", &narrower]).ok();
    assert_eq!(curl(&agent, "http://origin.test/allowed/y").0, "200", "the narrowing lifted with {narrower}");
    w.podman.podman(&["pod", "rm", "-f", "-t", "0", "bnd-e2e-178"]).ok();
    // `podman pod create` with podman's own infra container: the first
    // member's `--annotation` gives the pod its rules in the same way.
    w.podman.podman(&["pod", "create", "--name", "bnd-e2e-178b"]).ok();
    let ann = format!("io.boundary.allow={RULES}");
    let first = w.podman.run(&["-d", "--pod", "bnd-e2e-178b", "--annotation", &ann], &["sleep", "1000"]).ok().stdout.trim().to_string();
    assert_eq!(curl(&first, "http://origin.test/allowed/z").0, "200", "the rules its first member gave");
    assert_eq!(curl(&first, "http://origin.test/private").0, "403");
    w.podman.podman(&["pod", "rm", "-f", "-t", "0", "bnd-e2e-178b"]).ok();
    w.assert_nothing_left();
}
