//! Docker 26.0.0 and 28 onward, reproduced without dockerd (only Docker
//! 20.10 is installable here): Docker's bundle without the setkey hook, and
//! a test engine that does what dockerd does between `create` and `start`:
//! a veth whose far end sits in the origin's namespace, the near end moved
//! into `/proc/<init pid>/ns/net`, renamed `eth0`, addressed, with a default
//! route, and that namespace bind-mounted as a sandbox key. `start` must
//! hand all of it to the jail's host side. Slots 165..=169.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use boundary_contract::SidecarConfig;
use boundary_tests::probe::{link_names, nslookup_answers, ping_counts, HttpReply};
use boundary_tests::{poll_until, require_root, require_tool, Bundle, Counts, HostSink, Origin, Runtime, Settings};
use serde_json::json;

const RULES: &str = "domain=origin.test path=/allowed/*";
const ID: &str = "late";

/// `ip ARGS` in `ns` (`None`: the host's), asserting success; its stdout.
fn ip_in(ns: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = match ns {
        Some(p) => {
            let mut c = Command::new(require_tool("nsenter"));
            c.arg(format!("--net={}", p.display())).arg(require_tool("ip"));
            c
        }
        None => Command::new(require_tool("ip")),
    };
    let out = cmd.args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?} in {ns:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ns_id(p: &Path) -> (u64, u64) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.dev(), m.ino())
}

/// The files dockerd keeps for a container: `<dir>/<id>/resolv.conf` and
/// `hostconfig.json` beside it.
struct DockerFiles {
    _dir: tempfile::TempDir,
    resolv: PathBuf,
}

impl DockerFiles {
    fn new(id: &str, mode: &str, nameserver: std::net::Ipv4Addr) -> DockerFiles {
        let dir = tempfile::Builder::new().prefix("boundary-e2e-dockerfiles.").tempdir().expect("docker files dir");
        let c = dir.path().join("containers").join(id);
        std::fs::create_dir_all(&c).expect("container dir");
        std::fs::write(c.join("resolv.conf"), format!("nameserver {nameserver}\noptions ndots:0\n")).expect("resolv.conf");
        std::fs::write(c.join("hostconfig.json"), json!({"NetworkMode": mode}).to_string()).expect("hostconfig.json");
        DockerFiles { resolv: c.join("resolv.conf"), _dir: dir }
    }

    /// A sleeper bundle in Docker's shape (no hook: Docker 26.0.0 / 28+).
    fn bundle(&self) -> Bundle {
        let source = self.resolv.display().to_string();
        Bundle::sleeper().docker_capabilities().env("BOUNDARY_ALLOW", RULES).edit(|s| {
            let m = json!({"destination": "/etc/resolv.conf", "type": "bind", "source": source, "options": ["rbind", "ro"]});
            s["mounts"].as_array_mut().expect("mounts").push(m);
        })
    }
}

/// The test engine's network for one container: `10.231.<slot>.4/30`
/// (and `fd00:231:<slot>:1::/64`) between the origin's namespace (gateway
/// `.5`) and the container (`.6`), plus the sandbox key.
struct Engine {
    slot: u8,
    /// Holds the key file; removed after the test.
    _key_dir: tempfile::TempDir,
    key: PathBuf,
}

impl Engine {
    fn gateway(&self) -> String {
        format!("10.231.{}.5", self.slot)
    }

    fn addr(&self) -> String {
        format!("10.231.{}.6", self.slot)
    }

    fn gateway6(&self) -> String {
        format!("fd00:231:{}:1::5", self.slot)
    }

    fn addr6(&self) -> String {
        format!("fd00:231:{}:1::6", self.slot)
    }

    /// What dockerd does after `create`: veth into the container's
    /// namespace, `eth0`, addresses, default routes, sandbox key.
    fn connect(origin: &Origin, pid: i64, extra_link: bool) -> Engine {
        let slot = origin.slot;
        let me = std::process::id();
        let (far, near) = (format!("bte{slot}o{me}"), format!("bte{slot}c{me}"));
        assert!(near.len() <= 15, "{near} too long");
        let key_dir = tempfile::Builder::new().prefix("boundary-e2e-sandbox.").tempdir().expect("sandbox key dir");
        let e = Engine { slot, key: key_dir.path().join("0123456789ab"), _key_dir: key_dir };
        let ons = PathBuf::from("/run/netns").join(origin.netns());
        let jail = PathBuf::from(format!("/proc/{pid}/ns/net"));
        ip_in(None, &["link", "add", &far, "type", "veth", "peer", "name", &near]);
        ip_in(None, &["link", "set", &far, "netns", origin.netns()]);
        ip_in(Some(&ons), &["addr", "add", &format!("{}/30", e.gateway()), "dev", &far]);
        ip_in(Some(&ons), &["-6", "addr", "add", &format!("{}/64", e.gateway6()), "dev", &far, "nodad"]);
        ip_in(Some(&ons), &["link", "set", &far, "up"]);
        ip_in(None, &["link", "set", &near, "netns", &pid.to_string()]);
        ip_in(Some(&jail), &["link", "set", &near, "name", "eth0"]);
        ip_in(Some(&jail), &["addr", "add", &format!("{}/30", e.addr()), "dev", "eth0"]);
        ip_in(Some(&jail), &["-6", "addr", "add", &format!("{}/64", e.addr6()), "dev", "eth0", "nodad"]);
        ip_in(Some(&jail), &["link", "set", "eth0", "up"]);
        // dockerd adds its default route with NLM_F_EXCL: it fails if the
        // jail already has one.
        ip_in(Some(&jail), &["route", "add", "default", "via", &e.gateway()]);
        ip_in(Some(&jail), &["-6", "route", "add", "default", "via", &e.gateway6(), "dev", "eth0"]);
        if extra_link {
            ip_in(Some(&jail), &["link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"]);
            ip_in(Some(&jail), &["addr", "add", "192.0.2.9/24", "dev", "eth1"]);
        }
        std::fs::write(&e.key, b"").expect("sandbox key file");
        nix::mount::mount(Some(&jail), &e.key, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).expect("bind the sandbox key");
        e
    }

    /// dockerd's release of the sandbox: unmount and remove the key.
    fn release(&self) {
        nix::mount::umount2(&self.key, nix::mount::MntFlags::MNT_DETACH).expect("the engine unmounts its sandbox key");
        std::fs::remove_file(&self.key).expect("the engine removes its sandbox key");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.key, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn settings(slot: u8, origin: &Origin) -> Settings {
    Settings::new(slot).pin("origin.test", origin.addr()).pin("denied.test", origin.addr()).upstream_ca(&origin.ca_file())
}

fn init_pid(rt: &Runtime, id: &str) -> i64 {
    rt.state_json(id)["pid"].as_i64().expect("state has a pid")
}

/// The container's view: only `lo` and the jail link, default route via
/// the sidecar's address.
#[track_caller]
fn assert_only_the_jail_link(rt: &Runtime, id: &str) {
    let jail = rt.jail(id);
    let jail_if = jail.engine_handover.as_ref().expect("awaits the engine's network").jail_if.clone();
    let out = rt.exec(id, "ip -o link; ip route; ip -6 route").ok();
    assert_eq!(link_names(&out.stdout), ["lo", jail_if.as_str()], "{out}");
    assert!(out.stdout.contains(&format!("default via {} dev {jail_if}", jail.host_addr)), "{out}");
    assert!(!out.stdout.contains("10.231.") && !out.stdout.contains("fd00:231"), "an engine route is left in the jail:\n{out}");
}

fn get(rt: &Runtime, url: &str) -> HttpReply {
    let out = rt.exec(ID, &format!("curl -sS --max-time 10 -D - '{url}'")).ok();
    HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"))
}

#[test]
fn start_hands_the_engines_network_to_the_host_side_and_the_boundary_holds() {
    require_root();
    let origin = Origin::start(165);
    let mut sink = HostSink::bind(20165);
    let rt = Runtime::new(settings(165, &origin));
    let before = rt.leaks();
    let files = DockerFiles::new(ID, "bridge", origin.addr());
    let bundle = files.bundle();
    rt.create(&bundle, ID).ok();
    let jail = rt.jail(ID);
    let host = jail.dedicated_host_netns.clone().expect("a dedicated host side");
    assert_eq!(jail.engine_handover.as_ref().map(|e| e.jail_if.as_str()), Some("bnd0"));
    let sc = SidecarConfig::read(&rt.dirs.state_root.join(ID).join("sidecar.json")).expect("sidecar.json");
    assert_eq!(sc.upstream_resolvers, Some(vec![origin.addr().into()]), "the sidecar asks the resolvers of Docker's resolv.conf");
    let before_start = ip_in(Some(&jail.netns_path), &["route"]);
    assert!(!before_start.contains("default"), "no default route in the jail before the engine's: {before_start}");

    let engine = Engine::connect(&origin, init_pid(&rt, ID), false);
    assert_eq!(ns_id(&engine.key), ns_id(&jail.netns_path), "the sandbox key is the jail before start");
    rt.start(ID).ok();

    assert_only_the_jail_link(&rt, ID);
    let h4 = ip_in(Some(&host), &["-o", "-4", "addr", "show", "dev", "eth0"]) + &ip_in(Some(&host), &["route"]);
    assert!(h4.contains(&format!("inet {}/30", engine.addr())), "{h4}");
    assert!(h4.contains(&format!("default via {} dev eth0", engine.gateway())), "{h4}");
    let h6 = ip_in(Some(&host), &["-o", "-6", "addr", "show", "dev", "eth0"]) + &ip_in(Some(&host), &["-6", "route"]);
    assert!(h6.contains(&format!("inet6 {}/64", engine.addr6())), "{h6}");
    assert!(h6.contains(&format!("default via {} dev eth0", engine.gateway6())), "{h6}");
    assert!(ip_in(Some(&host), &["-o", "link", "show", "eth0"]).contains("UP"), "eth0 is up on the host side");
    let sidecar_ns = PathBuf::from(format!("/proc/{}/ns/net", jail.sidecar_pid.expect("sidecar pid")));
    assert_eq!(ns_id(&sidecar_ns), ns_id(&host), "the sidecar lives where the engine's network now is");
    assert_eq!(ns_id(&engine.key), ns_id(&host), "the sandbox key now points at the host side");

    // The boundary: the allowed request leaves through the engine's eth0
    // (now on the host side), the denied one gets the 403.
    let r = get(&rt, "http://origin.test/allowed/a");
    assert_eq!((r.status, r.body.as_str()), (200, "origin saw GET /allowed/a\n"), "{r:?}");
    let r = get(&rt, "https://origin.test/allowed/b");
    assert_eq!((r.status, r.body.as_str()), (200, "origin saw GET /allowed/b\n"), "{r:?}");
    let r = get(&rt, "http://origin.test/private");
    assert_eq!((r.status, r.header("x-boundary-decision")), (403, Some("deny")), "{r:?}");
    // Docker's resolver address still reaches the sidecar's DNS filter.
    let out = rt.exec(ID, "nslookup denied.example 127.0.0.11");
    assert_eq!(nslookup_answers(&out.stdout), [jail.host_addr.to_string()], "{out}");

    // UDP, raw TCP and ICMP to the origin, the engine's gateway and the host.
    let base = origin.counts();
    let (o, g, p) = (origin.addr().to_string(), engine.gateway(), sink.port);
    let targets = [format!("{o}:7000"), format!("{o}:53"), format!("{g}:7000"), format!("{}:{p}", origin.host_addr()), format!("{}:{p}", jail.host_addr)];
    let mut script: String = targets.iter().map(|t| format!("curl -s --max-time 1 tftp://{t}/probe & ")).collect();
    script += &format!("echo hello | timeout 2 nc -w 1 {o} 7000 & echo hello | timeout 2 nc -w 1 {g} 7000 & wait");
    rt.exec(ID, &script);
    for t in [o.as_str(), g.as_str(), &jail.host_addr.to_string()] {
        let ping = rt.exec(ID, &format!("ping -c 1 -W 1 {t}"));
        assert_eq!(ping_counts(&ping.stdout), Some((1, 0)), "ping {t}: one echo request, no reply:\n{ping}");
    }
    let now = origin.counts_after_barrier();
    let leaked = Counts { http_requests: 0, https_requests: 0, ..now };
    let base = Counts { http_requests: 0, https_requests: 0, ..base };
    assert_eq!(leaked, base, "something other than the sidecar's allowed requests reached the origin");
    assert_eq!(sink.counts_after_barrier(), (0, 0), "something from the jail reached the host sink");
    assert_eq!(origin.requests(), ["http GET /allowed/a host=origin.test", "https GET /allowed/b host=origin.test"]);

    // The probes would see a leak: without the host side's table, a
    // datagram from the jail reaches the origin through the engine's eth0.
    let nft = Command::new(require_tool("nsenter"))
        .arg(format!("--net={}", host.display()))
        .arg(require_tool("nft"))
        .args(["delete", "table", "inet", &jail.nft_table])
        .status()
        .expect("run nft");
    assert!(nft.success(), "cannot delete {} in the host side", jail.nft_table);
    let base = origin.counts();
    rt.exec(ID, &format!("curl -s --max-time 1 tftp://{o}:7000/probe; true"));
    poll_until(std::time::Duration::from_secs(5), "the unguarded datagram to reach the origin", || {
        (origin.counts().sink_udp_datagrams > base.sink_udp_datagrams).then_some(())
    });

    // The engine's teardown, then delete: nothing is left.
    rt.kill(ID, "KILL").ok();
    rt.wait_stopped(ID);
    engine.release();
    rt.delete(ID).ok();
    rt.leaks().assert_same_as(&before);
    let far = format!("bte165o{}", std::process::id());
    poll_until(std::time::Duration::from_secs(10), "the engine's veth to go with the host side", || {
        let links = ip_in(Some(&PathBuf::from("/run/netns").join(origin.netns())), &["-o", "link"]);
        (!links.contains(&far)).then_some(())
    });
}

#[test]
fn a_failed_handover_starts_nothing_and_a_retry_finishes_it() {
    require_root();
    let origin = Origin::start(166);
    let rt = Runtime::new(settings(166, &origin));
    let before = rt.leaks();
    let files = DockerFiles::new(ID, "bridge", origin.addr());
    let bundle = files.bundle();
    rt.create(&bundle, ID).ok();
    let jail = rt.jail(ID);
    let host = jail.dedicated_host_netns.clone().expect("a dedicated host side");
    let engine = Engine::connect(&origin, init_pid(&rt, ID), true);
    // A link of the same name on the host side: the move must fail.
    ip_in(Some(&host), &["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);

    let out = rt.start(ID).failed();
    let errors = out.log_errors();
    assert!(errors.last().is_some_and(|e| e.contains(&format!("cannot start {ID}")) && e.contains("eth0")), "{out}");
    assert_eq!(rt.state_json(ID)["status"], "created", "nothing may start after a failed hand-over");

    ip_in(Some(&host), &["link", "del", "eth0"]);
    rt.start(ID).ok();
    assert_only_the_jail_link(&rt, ID);
    let h = ip_in(Some(&host), &["-o", "-4", "addr"]) + &ip_in(Some(&host), &["route"]);
    assert!(h.contains(&format!("inet {}/30", engine.addr())) && h.contains("inet 192.0.2.9/24"), "{h}");
    assert!(h.contains(&format!("default via {} dev eth0", engine.gateway())), "{h}");
    assert_eq!(ns_id(&engine.key), ns_id(&host), "the sandbox key now points at the host side");
    let r = get(&rt, "http://origin.test/allowed/retry");
    assert_eq!(r.status, 200, "{r:?}");

    rt.delete_force(ID).ok();
    engine.release();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn a_plain_bundle_keeps_eth0_and_a_docker_bundle_without_network_keeps_only_its_link() {
    require_root();
    let origin = Origin::start(167);
    let rt = Runtime::new(settings(167, &origin));
    let before = rt.leaks();
    let plain = Bundle::sleeper();
    rt.create_and_start(&plain, "plain");
    assert_eq!(rt.jail("plain").engine_handover, None);
    let out = rt.exec("plain", "ip -o link").ok();
    assert_eq!(link_names(&out.stdout), ["lo", "eth0"], "{out}");

    let files = DockerFiles::new(ID, "none", origin.addr());
    let bundle = files.bundle();
    rt.create_and_start(&bundle, ID);
    assert_only_the_jail_link(&rt, ID);
    let r = get(&rt, "http://origin.test/allowed/x");
    assert_eq!(r.status, 403, "--network none: the sidecar has no upstream: {r:?}");
    rt.delete_force(ID).ok();
    rt.delete_force("plain").ok();
    rt.leaks().assert_same_as(&before);
}

/// A UDP socket bound inside the namespace at `ns`, the way dockerd 28
/// starts its embedded resolver in the container's namespace on a
/// user-defined network.
fn udp_socket_in(ns: &Path, addr: &str) -> std::net::UdpSocket {
    let addr = addr.to_string();
    boundary_tests::hostside::run_in(Some(ns), move || std::net::UdpSocket::bind(&addr).unwrap_or_else(|e| panic!("bind {addr} in the jail: {e}")))
}

#[test]
fn a_socket_the_engine_left_in_the_jail_refuses_the_start() {
    require_root();
    let origin = Origin::start(168);
    let rt = Runtime::new(settings(168, &origin));
    let before = rt.leaks();
    let files = DockerFiles::new(ID, "usernet", origin.addr());
    let bundle = files.bundle();
    rt.create(&bundle, ID).ok();
    let jail = rt.jail(ID);
    let engine = Engine::connect(&origin, init_pid(&rt, ID), false);
    // Docker 28's embedded resolver for a user-defined network: a socket in
    // the container's namespace that would answer any name.
    let resolver = udp_socket_in(&jail.netns_path, "0.0.0.0:0");
    let port = resolver.local_addr().expect("local address").port();

    let out = rt.start(ID).failed();
    let errors = out.log_errors();
    let last = errors.last().cloned().unwrap_or_default();
    assert!(last.contains("socket(s) in the jail's network namespace") && last.contains(&format!("udp 0.0.0.0:{port}")) && last.contains("embedded DNS resolver"), "{out}");
    assert_eq!(rt.state_json(ID)["status"], "created", "nothing may start while an engine socket sits in the jail");

    drop(resolver);
    rt.start(ID).ok();
    assert_only_the_jail_link(&rt, ID);
    let r = get(&rt, "http://origin.test/allowed/after");
    assert_eq!(r.status, 200, "{r:?}");

    rt.delete_force(ID).ok();
    engine.release();
    rt.leaks().assert_same_as(&before);
}

/// An engine that moves a link into the container's namespace after
/// `create`, in a shape not recognised as Docker's (here: a plain bundle;
/// for Docker 28, one whose resolv.conf, hostname and hosts mounts the user
/// replaced), would give the container a way around the sidecar: `start`
/// refuses while the jail holds a link it did not make, and names it.
#[test]
fn a_link_the_engine_moved_into_an_unrecognised_jail_refuses_the_start() {
    require_root();
    let origin = Origin::start(169);
    let rt = Runtime::new(settings(169, &origin));
    let before = rt.leaks();
    let plain = Bundle::sleeper();
    rt.create(&plain, "moved").ok();
    assert_eq!(rt.jail("moved").engine_handover, None);
    let me = std::process::id();
    let (near, far) = (format!("btm{me}"), format!("btm{me}p"));
    ip_in(None, &["link", "add", &near, "type", "veth", "peer", "name", &far]);
    ip_in(None, &["link", "set", &near, "netns", &init_pid(&rt, "moved").to_string()]);
    let jail = PathBuf::from(format!("/proc/{}/ns/net", init_pid(&rt, "moved")));
    ip_in(Some(&jail), &["link", "set", &near, "name", "x0"]);

    let out = rt.start("moved").failed();
    let last = out.log_errors().last().cloned().unwrap_or_default();
    assert!(last.contains("holds links boundary-runc did not make (x0)") && last.contains("cannot start moved"), "{out}");
    assert_eq!(rt.state_json("moved")["status"], "created", "nothing may start while a foreign link sits in the jail");

    ip_in(Some(&jail), &["link", "del", "x0"]);
    rt.start("moved").ok();
    let out = rt.exec("moved", "ip -o link").ok();
    assert_eq!(link_names(&out.stdout), ["lo", "eth0"], "{out}");
    rt.delete_force("moved").ok();
    rt.leaks().assert_same_as(&before);
}
