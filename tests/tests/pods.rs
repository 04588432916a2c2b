//! Kubernetes pods as containerd's CRI and CRI-O shape them: a sandbox
//! (pause) whose network entry is the pod namespace CNI made, app
//! containers that join it, the pod annotation as the pod's policy, and
//! app containers' own rules only narrowing it; spoofed pod annotations
//! lead into no other jail; connections to the pod IP reach its servers.
//! Slots 160..=164.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use boundary_tests::probe::{nslookup_answers, HttpReply};
use boundary_tests::{
    poll_until, require_root, require_tool, Bundle, LeakSnapshot, Origin, Runtime, Settings,
};
use serde_json::{json, Value};

const CRI_TYPE: &str = "io.kubernetes.cri.container-type";
const CRI_SANDBOX: &str = "io.kubernetes.cri.sandbox-id";
const CRIO_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
const CRIO_SANDBOX: &str = "io.kubernetes.cri-o.SandboxID";
const POD_ANNOTATION: &str = "io.boundary.allow";
/// The pod's policy (the pod annotation on every spec).
const POD_RULES: &str = "domain=origin.test path=/a/*;domain=origin.test path=/b/*;domain=extra.test";

fn ip(args: &[&str]) {
    let out = Command::new(require_tool("ip"))
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pod namespace a CNI plugin would make: `/run/netns/btp-<pid>-<slot>`
/// with a veth to the origin's namespace (`10.232.<slot>.1/30` here,
/// `.2` there) and a default route through it.
struct CniNetns {
    name: String,
}

impl CniNetns {
    fn new(slot: u8, origin: &Origin) -> CniNetns {
        let pid = std::process::id();
        let name = format!("btp-{pid}-{slot}");
        let (here, there) = (format!("btp{slot}c{pid}"), format!("btp{slot}o{pid}"));
        assert!(here.len() <= 15, "link name {here} too long");
        ip(&["netns", "add", &name]);
        let ns = CniNetns { name };
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there]);
        ip(&["link", "set", &here, "netns", &ns.name]);
        ip(&["link", "set", &there, "netns", origin.netns()]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("10.232.{slot}.1/30"),
            "dev",
            &here,
        ]);
        ip(&["-n", &ns.name, "link", "set", &here, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "default",
            "via",
            &format!("10.232.{slot}.2"),
        ]);
        ip(&[
            "-n",
            origin.netns(),
            "addr",
            "add",
            &format!("10.232.{slot}.2/30"),
            "dev",
            &there,
        ]);
        ip(&["-n", origin.netns(), "link", "set", &there, "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for CniNetns {
    fn drop(&mut self) {
        let _ = Command::new(require_tool("ip"))
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// One pod's world. Fields drop in order: the runtime (and any container
/// left) before the namespaces.
struct Pod {
    rt: Runtime,
    bundles: Vec<Bundle>,
    cni: CniNetns,
    origin: Origin,
    sandbox: String,
    names: (&'static str, &'static str),
}

impl Pod {
    /// Origin, CNI namespace, runtime; nothing created yet.
    fn world(slot: u8, sandbox: &str, crio: bool) -> Pod {
        require_root();
        let origin = Origin::start(slot);
        let cni = CniNetns::new(slot, &origin);
        let settings = Settings::new(slot)
            .pin("origin.test", origin.addr())
            .pin("denied.test", origin.addr())
            .pin("extra.test", origin.addr())
            .nameserver(origin.addr())
            .upstream_ca(&origin.ca_file());
        let rt = Runtime::new(settings);
        let names = if crio {
            (CRIO_TYPE, CRIO_SANDBOX)
        } else {
            (CRI_TYPE, CRI_SANDBOX)
        };
        Pod {
            rt,
            bundles: Vec::new(),
            cni,
            origin,
            sandbox: sandbox.to_string(),
            names,
        }
    }

    /// Creates and starts the sandbox: `sleep` as pause, network entry the
    /// CNI namespace, the pod annotation.
    fn start_sandbox(&mut self) {
        let (type_key, id_key) = self.names;
        let cni = self.cni.path().display().to_string();
        let b = Bundle::sleeper()
            .annotation(type_key, "sandbox")
            .annotation(id_key, &self.sandbox)
            .annotation(POD_ANNOTATION, POD_RULES)
            .edit(|s| set_namespace_path(s, "network", &cni));
        self.rt.create_and_start(&b, &self.sandbox);
        self.bundles.push(b);
    }

    fn pause_pid(&self) -> u32 {
        pid_of(&self.rt, &self.sandbox)
    }

    /// An app container's bundle as CRI makes it: network, ipc and uts
    /// namespaces of the pause process (`net_path` overrides the network
    /// one), the sandbox id, the pod annotation.
    fn app_bundle(&self, net_path: Option<&str>) -> Bundle {
        let (type_key, id_key) = self.names;
        let pause = self.pause_pid();
        let net = net_path
            .map(str::to_string)
            .unwrap_or_else(|| format!("/proc/{pause}/ns/net"));
        Bundle::sleeper()
            .annotation(type_key, "container")
            .annotation(id_key, &self.sandbox)
            .annotation(POD_ANNOTATION, POD_RULES)
            .edit(|s| {
                set_namespace_path(s, "network", &net);
                set_namespace_path(s, "ipc", &format!("/proc/{pause}/ns/ipc"));
                set_namespace_path(s, "uts", &format!("/proc/{pause}/ns/uts"));
            })
    }

    fn start_app(&mut self, id: &str, b: Bundle) {
        self.rt.create_and_start(&b, id);
        self.bundles.push(b);
    }

    /// `curl` inside `id`, parsed.
    fn get(&self, id: &str, url: &str) -> HttpReply {
        let out = self
            .rt
            .exec(id, &format!("curl -sS --max-time 10 -D - '{url}'"))
            .ok();
        HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"))
    }

    fn status(&self, id: &str, url: &str) -> u16 {
        self.get(id, url).status
    }

    /// The (dev, inode) of `id`'s network namespace.
    fn netns_of(&self, id: &str) -> (u64, u64) {
        ns_id(&PathBuf::from(format!(
            "/proc/{}/ns/net",
            pid_of(&self.rt, id)
        )))
    }

    /// The addresses `nslookup NAME` answers inside `id`.
    fn lookup(&self, id: &str, name: &str) -> Vec<String> {
        let out = self.rt.exec(id, &format!("nslookup {name}"));
        nslookup_answers(&out.stdout)
    }

    /// The sandbox's audit records that were denied with `reason_part`.
    fn denials_naming(&self, reason_part: &str) -> usize {
        self.rt
            .audit_records(&self.sandbox)
            .iter()
            .filter(|r| {
                r.decision == "deny" && r.reason.as_deref().is_some_and(|x| x.contains(reason_part))
            })
            .count()
    }
}

fn set_namespace_path(spec: &mut Value, kind: &str, path: &str) {
    let list = spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("runc spec has namespaces");
    match list.iter_mut().find(|e| e["type"] == kind) {
        Some(e) => e["path"] = json!(path),
        None => list.push(json!({"type": kind, "path": path})),
    }
}

/// The sidecar worker's pid from the jail's pid file.
fn worker_pid(rt: &Runtime, id: &str) -> i64 {
    let path = rt.dirs.state_root.join(id).join("sidecar.pids");
    let pids: Value = serde_json::from_slice(&std::fs::read(&path).expect("read sidecar.pids"))
        .expect("sidecar.pids is JSON");
    pids["worker"].as_i64().expect("a worker pid")
}

fn pid_of(rt: &Runtime, id: &str) -> u32 {
    rt.state_json(id)["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("state of {id} has no pid")) as u32
}

fn ns_id(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.dev(), m.ino())
}

/// Warnings the runtime wrote to its `--log`.
fn log_warnings(rt: &Runtime) -> Vec<String> {
    rt.log_entries()
        .iter()
        .filter(|e| e["level"] == "warning")
        .map(|e| e["msg"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_cri_pod_shares_one_jail_and_its_containers_only_narrow_the_pod_policy() {
    let mut pod = Pod::world(160, "pod-sb", false);
    let before = pod.rt.leaks();
    pod.start_sandbox();
    let jail = pod.rt.jail("pod-sb");
    assert_eq!(
        jail.host_side,
        boundary_contract::HostSide::Path {
            path: pod.cni.path()
        },
        "the CNI namespace is the host side"
    );
    let with_sandbox = pod.rt.leaks();

    // An app container with a rule that does not parse is refused with the
    // rule's error, and leaves nothing.
    let bad = pod
        .app_bundle(None)
        .env("BOUNDARY_ALLOW", "domain=github.*");
    let out = pod.rt.create(&bad, "pod-bad").failed();
    assert!(
        out.log_errors()
            .iter()
            .any(|e| e.contains("invalid BOUNDARY_ALLOW") && e.contains("github.*")),
        "{out}"
    );
    pod.rt.leaks().assert_same_as(&with_sandbox);

    // A keep-alive connection opened before the narrowing: the reload does
    // not drop it, and its next request is decided by the narrowed policy.
    // The worker is not restarted for it. (Every descriptor of the
    // background job is redirected: `runc exec` waits for its stdio pipes.)
    let worker_before = worker_pid(&pod.rt, "pod-sb");
    let keepalive = "(printf 'GET /b/1 HTTP/1.1\\r\\nHost: origin.test\\r\\n\\r\\n'; \
                     while ! [ -e /dev/shm/go ]; do sleep 0.1; done; \
                     printf 'GET /b/2 HTTP/1.1\\r\\nHost: origin.test\\r\\n\\r\\n'; sleep 3) 2>/dev/null \
                     | nc origin.test 80 > /dev/shm/keepalive 2>&1 &";
    pod.rt.exec("pod-sb", keepalive).ok();
    poll_until(
        Duration::from_secs(10),
        "the first keep-alive response",
        || {
            let out = pod.rt.exec("pod-sb", "cat /dev/shm/keepalive").stdout;
            out.contains("HTTP/1.1 200").then_some(())
        },
    );

    let narrow = pod
        .app_bundle(None)
        .env("BOUNDARY_ALLOW", "domain=origin.test path=/a/*");
    pod.start_app("pod-narrow", narrow);
    pod.rt.exec("pod-sb", "touch /dev/shm/go").ok();
    let replies = poll_until(
        Duration::from_secs(10),
        "the second keep-alive response",
        || {
            let out = pod.rt.exec("pod-sb", "cat /dev/shm/keepalive").stdout;
            out.contains("HTTP/1.1 403").then_some(out)
        },
    );
    assert_eq!(
        replies.matches("HTTP/1.1 ").count(),
        2,
        "both answers on one connection:\n{replies}"
    );
    assert!(
        replies.contains("pod-narrow"),
        "the 403 names the narrowing container:\n{replies}"
    );
    assert!(
        replies.contains("add this rule to the rules of container pod-narrow"),
        "the 403 puts the rule that would allow it in the narrowing container's rules, not the pod's:\n{replies}"
    );
    assert_eq!(
        worker_pid(&pod.rt, "pod-sb"),
        worker_before,
        "the worker reloads in place"
    );
    let wide = pod
        .app_bundle(None)
        .env("BOUNDARY_ALLOW", "domain=*")
        .annotation(POD_ANNOTATION, "domain=*");
    pod.start_app("pod-wide", wide);
    assert!(
        log_warnings(&pod.rt)
            .iter()
            .any(|w| w.contains("pod-wide") && w.contains("differs from its pod's")),
        "the differing annotation is ignored with a warning: {:?}",
        pod.rt.log_entries()
    );

    // One namespace: the jail.
    let jail_ns = ns_id(&jail.netns_path);
    assert_eq!(pod.netns_of("pod-sb"), jail_ns);
    assert_eq!(pod.netns_of("pod-narrow"), jail_ns);
    assert_eq!(pod.netns_of("pod-wide"), jail_ns);
    assert_ne!(ns_id(&pod.cni.path()), jail_ns);

    // Localhost between the app containers.
    pod.rt
        .exec(
            "pod-narrow",
            "echo pod-local | nc -l -p 9000 >/dev/null 2>&1 &",
        )
        .ok();
    let got = poll_until(
        Duration::from_secs(10),
        "nc from pod-wide to pod-narrow over localhost",
        || {
            let out = pod.rt.exec("pod-wide", "nc 127.0.0.1 9000 </dev/null");
            out.stdout.contains("pod-local").then_some(out.stdout)
        },
    );
    assert!(got.contains("pod-local"));

    for id in ["pod-narrow", "pod-wide"] {
        assert_eq!(
            pod.status(id, "https://origin.test/a/1"),
            200,
            "{id}: the pod rules allow /a/"
        );
        assert_eq!(
            pod.status(id, "https://origin.test/c/1"),
            403,
            "{id}: outside the pod rules (no widening)"
        );
        assert_eq!(
            pod.status(id, "https://denied.test/"),
            403,
            "{id}: outside the pod rules (no widening)"
        );
        assert_eq!(
            pod.status(id, "http://origin.test/b/1"),
            403,
            "{id}: pod-narrow's rules narrow /b/ away"
        );
    }
    assert!(
        pod.denials_naming("pod-narrow") >= 2,
        "narrowed denials name the container: {:?}",
        pod.rt.audit_records("pod-sb")
    );
    // DNS is narrowed too: extra.test, which the pod allows and pod-narrow
    // does not, resolves to the sidecar; origin.test, allowed by both, to
    // its address.
    let origin = pod.origin.addr().to_string();
    let sidecar = jail.host_addr.to_string();
    assert_eq!(pod.lookup("pod-wide", "origin.test"), std::slice::from_ref(&origin), "allowed by both");
    assert_eq!(pod.lookup("pod-wide", "extra.test"), std::slice::from_ref(&sidecar), "narrowed away: the sidecar answers");
    assert!(
        pod.rt
            .audit_records("pod-sb")
            .iter()
            .any(|r| r.kind == "dns" && r.decision == "deny" && r.host.as_deref().is_some_and(|h| h.trim_end_matches('.') == "extra.test")
                && r.reason.as_deref().is_some_and(|x| x.contains("pod-narrow"))),
        "the DNS denial names the narrowing container: {:?}",
        pod.rt.audit_records("pod-sb")
    );
    let outside: Vec<String> = pod
        .origin
        .requests()
        .into_iter()
        .filter(|r| r.contains("/b/") || r.contains("/c/"))
        .collect();
    assert_eq!(
        outside,
        ["http GET /b/1 host=origin.test"],
        "only the request before the narrowing reached the origin"
    );

    // Deleting the narrowing container lifts its narrowing.
    pod.rt.kill("pod-narrow", "KILL").ok();
    pod.rt.wait_stopped("pod-narrow");
    pod.rt.delete("pod-narrow").ok();
    assert_eq!(
        pod.status("pod-wide", "http://origin.test/b/2"),
        200,
        "narrowing lifted with its container"
    );
    assert_eq!(
        pod.status("pod-wide", "https://origin.test/c/2"),
        403,
        "still only the pod rules"
    );
    assert_eq!(pod.lookup("pod-wide", "extra.test"), [origin], "DNS narrowing lifted with its container");

    // Deleting the app containers keeps the jail.
    pod.rt.delete_force("pod-wide").ok();
    pod.rt.leaks().assert_same_as(&with_sandbox);
    assert_eq!(
        pod.status("pod-sb", "https://origin.test/a/3"),
        200,
        "the jail and its sidecar still serve the pod"
    );

    pod.rt.delete_force("pod-sb").ok();
    pod.rt.leaks().assert_same_as(&before);
}

#[test]
fn a_crio_pod_joins_by_sandbox_id_from_the_pod_namespace_path() {
    let mut pod = Pod::world(161, "crio-sb", true);
    let before: LeakSnapshot = pod.rt.leaks();
    pod.start_sandbox();
    let jail_ns = ns_id(&pod.rt.jail("crio-sb").netns_path);

    // CRI-O gives app containers the pod namespace itself: they still join
    // the jail. A namespace of neither is refused.
    let foreign = format!("/run/netns/{}", pod.origin.netns());
    let out = pod
        .rt
        .create(&pod.app_bundle(Some(&foreign)), "crio-foreign")
        .failed();
    assert!(
        out.log_errors()
            .iter()
            .any(|e| e.contains("neither the pod's jail nor its host side")),
        "{out}"
    );

    let cni = pod.cni.path().display().to_string();
    let narrow = pod
        .app_bundle(Some(&cni))
        .env("BOUNDARY_ALLOW", "domain=origin.test path=/b/*");
    pod.start_app("crio-narrow", narrow);
    assert_eq!(pod.netns_of("crio-narrow"), jail_ns);
    assert_eq!(pod.status("crio-narrow", "https://origin.test/b/1"), 200);
    assert_eq!(
        pod.status("crio-sb", "https://origin.test/a/1"),
        403,
        "narrowed for the whole pod"
    );
    assert!(pod.denials_naming("crio-narrow") >= 1);

    pod.rt.delete_force("crio-narrow").ok();
    assert_eq!(
        pod.status("crio-sb", "https://origin.test/a/2"),
        200,
        "narrowing lifted"
    );
    pod.rt.delete_force("crio-sb").ok();
    pod.rt.leaks().assert_same_as(&before);
}

/// The CRI annotations are the engine's word under CRI, but `docker run
/// --annotation` and podman's can write them too. A container whose
/// annotations name a jailed container that is no pod sandbox gets a jail
/// of its own, not that one; one that names a real sandbox but not its
/// namespace (a new one, as `--network none` gives) is refused.
#[test]
fn spoofed_pod_annotations_lead_into_no_other_jail() {
    let mut pod = Pod::world(162, "spoof-sb", false);
    pod.start_sandbox();
    let victim = Bundle::sleeper();
    pod.rt.create_and_start(&victim, "spoof-victim");
    pod.bundles.push(victim);
    let spoof = Bundle::sleeper().annotation(CRI_TYPE, "container").annotation(CRI_SANDBOX, "spoof-victim");
    pod.start_app("spoof-a", spoof);
    assert_ne!(pod.netns_of("spoof-a"), pod.netns_of("spoof-victim"), "the spoofing container shares the victim's jail");
    assert_ne!(ns_id(&pod.rt.jail("spoof-a").netns_path), ns_id(&pod.rt.jail("spoof-victim").netns_path));

    let fresh = Bundle::sleeper().annotation(CRI_TYPE, "container").annotation(CRI_SANDBOX, "spoof-sb");
    let out = pod.rt.create(&fresh, "spoof-b").failed();
    assert!(out.log_errors().iter().any(|e| e.contains("neither the pod's jail nor its host side")), "{out}");
    pod.bundles.push(fresh);
}

/// kubelet's probes and Services connect to the pod's IP, in the pod
/// namespace CNI made, which is the jail's host side:
/// flows that start there go on to the jail, where the pod's servers
/// listen, as Docker's published ports do. The pod's own connections still
/// leave only through the sidecar.
#[test]
fn connections_to_the_pod_ip_reach_a_server_in_the_jail() {
    let mut pod = Pod::world(163, "pod-inbound", false);
    pod.start_sandbox();
    pod.rt
        .exec(&pod.sandbox, "mkdir -p /dev/shm/www && echo served from the pod > /dev/shm/www/index.html && httpd -p 8080 -h /dev/shm/www")
        .ok();
    let curl = |url: &str| {
        Command::new("ip")
            .args(["netns", "exec", pod.origin.netns()])
            .arg(require_tool("curl"))
            .args(["-sS", "--max-time", "5", url])
            .output()
            .expect("run curl")
    };
    let out = poll_until(Duration::from_secs(10), "the pod's server at the pod IP", || {
        let out = curl("http://10.232.163.1:8080/index.html");
        out.status.success().then_some(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served from the pod\n");
    // `kubectl port-forward`: containerd and CRI-O dial `localhost:PORT`
    // (tcp4 first) as root from inside the pod's namespace.
    let in_pod = |uid: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &pod.cni.name]).arg(require_tool("setpriv")).args(["--reuid", uid, "--regid", uid, "--clear-groups"]);
        c.arg(require_tool("curl")).args(["-sS", "--max-time", "5", "http://localhost:8080/index.html"]);
        c.output().expect("run curl in the pod's namespace")
    };
    let out = in_pod("0");
    assert!(out.status.success(), "port-forward's dial: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served from the pod\n");
    // The sidecar worker's uid is never sent in (its upstream connections
    // to a loopback address, where allowed, stay in the pod's namespace),
    // nor any other but root's.
    let (_, worker_uid, _) = pod.rt.sidecar_worker(&pod.sandbox);
    assert_ne!(worker_uid, 0);
    let out = in_pod(&worker_uid.to_string());
    assert!(!out.status.success(), "the worker's uid reached the jail: {}", String::from_utf8_lossy(&out.stdout));
    let out = in_pod("65534");
    assert!(!out.status.success(), "nobody reached the jail: {}", String::from_utf8_lossy(&out.stdout));
    // The boundary holds for what the pod starts.
    assert_eq!(pod.status(&pod.sandbox, "http://origin.test/a/x"), 200);
    assert_eq!(pod.status(&pod.sandbox, "http://origin.test/private"), 403);
}

/// An app container created while its pod's jail is still being built
/// (the builder holds the gate's lock; only a direct caller of the runtime
/// can get there, as engines create app containers once the sandbox's
/// `create` returned) waits for the builder's word: it fails with the
/// jail's reason if the jail could not be built, and joins once it is.
#[test]
fn an_app_container_waits_for_its_pods_jail_to_be_built() {
    use nix::fcntl::{Flock, FlockArg};
    let mut pod = Pod::world(164, "pod-gate", false);
    pod.start_sandbox();
    let dir = pod.rt.dirs.state_root.join(&pod.sandbox);
    let word = dir.join("gate"); // shim::gate::WORD_FILE
    let held = |text: &str| {
        let before = pod.rt.leaks();
        let lock = std::fs::File::open(dir.join("gate.lock")).expect("the sandbox's gate lock");
        let lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock).expect("hold the gate as a builder at work");
        std::fs::remove_file(&word).expect("the builder's word");
        let b = pod.app_bundle(None);
        let rt = &pod.rt;
        let outcome = std::thread::scope(|s| {
            let create = s.spawn(|| rt.create(&b, "app-early"));
            std::thread::sleep(Duration::from_millis(1500));
            assert!(!create.is_finished(), "the app container's create did not wait for the jail");
            std::fs::write(&word, text).expect("the builder's word");
            drop(lock);
            create.join().expect("create")
        });
        (outcome, before, b)
    };
    let (out, before, b) = held("error: held back by the test\n");
    let out = out.failed();
    assert!(
        out.log_errors().iter().any(|e| e.contains("the jail of pod-gate could not be built: held back by the test")),
        "the jail's reason must reach the app container's create:\n{out}"
    );
    pod.rt.leaks().assert_same_as(&before);
    let (out, _, b2) = held("ok\n");
    out.ok();
    pod.rt.start("app-early").ok();
    pod.bundles.extend([b, b2]);
    assert_eq!(pod.netns_of("app-early"), pod.netns_of(&pod.sandbox), "the app container joined its pod's jail");
    assert_eq!(pod.status("app-early", "http://origin.test/a/x"), 200);
}
