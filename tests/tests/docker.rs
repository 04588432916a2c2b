//! `docker run --runtime=<boundary-runc>` against a real dockerd 20.10:
//! every network mode keeps the boundary (allowed requests reach the
//! origin, denied ones get the 403, UDP / non-HTTP / ICMP go nowhere),
//! Docker's own interface and resolver stay out of the jail, published
//! ports work, stop / start / rm leave nothing behind, and CAP_NET_ADMIN
//! inside reaches none of the host side's links (nor, from a `--pid=host`
//! container, that of a `docker exec` process). Slots 150..=159.
//!
//! Needs root and Debian's docker.io; dockerd is started when it is not
//! running (log: /tmp/boundary-e2e-dockerd.log) and left running.

use std::path::PathBuf;
use std::process::Command;

use boundary_tests::docker::{docker, exec, inspect, DockerRuntime, DAEMON_LOG};
use boundary_tests::probe::{nslookup_answers, ping_counts, HttpReply};
use boundary_tests::{require_root, require_tool, Counts, HostSink, LeakSnapshot, Origin, Runtime, Settings};

const RULES: &str = "domain=origin.test path=/allowed/*";

/// One test's world: an origin, a boundary-runc config registered with
/// dockerd. Fields drop in order: containers first, the origin last.
struct World {
    docker: DockerRuntime,
    rt: Runtime,
    origin: Origin,
}

impl World {
    fn start(slot: u8) -> World {
        World::start_with(slot, |s| s)
    }

    /// [`World::start`] with changes to the settings.
    fn start_with(slot: u8, change: impl FnOnce(Settings) -> Settings) -> World {
        require_root();
        let origin = Origin::start(slot);
        let settings = Settings::new(slot).pin("origin.test", origin.addr()).pin("denied.test", origin.addr()).upstream_ca(&origin.ca_file());
        let rt = Runtime::new(change(settings));
        let docker = DockerRuntime::register(&rt);
        World { docker, rt, origin }
    }

    fn name(&self, what: &str) -> String {
        format!("bnd-e2e-{}-{what}", self.rt.settings.slot)
    }

    /// `docker run -d` of a jailed container with [`RULES`] (plus `extra`
    /// rules); returns its full id.
    fn run(&self, name: &str, args: &[&str], extra_rules: &str) -> String {
        let allow = format!("BOUNDARY_ALLOW={RULES};{extra_rules}");
        let mut all = vec!["-e", allow.as_str()];
        all.extend_from_slice(args);
        self.docker.run(name, &all, &[]).ok().stdout.trim().to_string()
    }

    /// `curl -sS -D - URL` inside, parsed.
    fn get(&self, container: &str, url: &str) -> HttpReply {
        let out = exec(container, &format!("curl -sS --max-time 10 -D - '{url}'")).ok();
        HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"))
    }

    /// The boundary in one container: allowed request through, denied one
    /// refused with the 403, UDP, direct non-HTTP TCP and ICMP reach nothing.
    fn assert_boundary(&self, container: &str) {
        let before = self.origin.requests().len();
        let base = self.origin.counts();
        let r = self.get(container, "http://origin.test/allowed/a");
        assert_eq!((r.status, r.body.as_str()), (200, "origin saw GET /allowed/a\n"), "{container}: {r:?}");
        let r = self.get(container, "http://origin.test/private");
        assert_eq!(r.status, 403, "{container}: {r:?}");
        assert_eq!(r.header("x-boundary-decision"), Some("deny"), "{r:?}");
        let o = self.origin.addr();
        let script = format!("curl -s --max-time 1 tftp://{o}:7000/probe; curl -s --max-time 1 tftp://{o}:53/probe; echo hello | timeout 2 nc -w 1 {o} 7000; true");
        exec(container, &script);
        let ping = exec(container, &format!("ping -c 1 -W 1 {o}"));
        assert_eq!(ping_counts(&ping.stdout), Some((1, 0)), "{container}: one echo request, no reply:\n{ping}");
        assert_eq!(self.origin.leaked_since(base), Counts::default(), "{container}: something other than the sidecar's allowed request reached the origin");
        assert_eq!(self.origin.requests()[before..], ["http GET /allowed/a host=origin.test".to_string()], "{container}");
    }

    /// Nothing of this runtime's jails exists (no state, namespace mounts,
    /// nft tables, host links, sidecars).
    #[track_caller]
    fn assert_no_leaks(&self) {
        self.rt.leaks().assert_same_as(&LeakSnapshot::default());
    }

    /// The dedicated host side of a Docker jail.
    fn host_side(&self, id: &str) -> PathBuf {
        let jail = self.rt.jail(id);
        jail.dedicated_host_netns.clone().unwrap_or_else(|| panic!("{id} has no dedicated host side: {jail:?}"))
    }

    /// dockerd's error lines that mention `id`.
    fn daemon_errors(id: &str) -> Vec<String> {
        let log = std::fs::read_to_string(DAEMON_LOG).unwrap_or_default();
        log.lines().filter(|l| l.contains("level=error") && l.contains(id)).map(str::to_string).collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Containers first: their teardown needs the runtime's files.
        self.docker.remove_containers();
    }
}

/// `ip ARGS` in the namespace at `ns`, its stdout.
fn ip_in(ns: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(require_tool("nsenter")).arg(format!("--net={}", ns.display())).arg(require_tool("ip")).args(args).output().expect("nsenter ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The index of dockerd's `eth0` (the jail's uplink) in the host side.
fn uplink_index(host: &std::path::Path) -> String {
    let uplink = ip_in(host, &["-o", "link", "show", "eth0"]);
    let index = uplink.split(':').next().unwrap_or_default().trim().to_string();
    assert!(index.parse::<u32>().is_ok(), "dockerd's eth0 in the host side: {uplink:?}");
    index
}

fn links_in(ns: &std::path::Path) -> Vec<String> {
    let out = Command::new(require_tool("nsenter")).arg(format!("--net={}", ns.display())).args([require_tool("ip").to_str().unwrap(), "-o", "-4", "addr"]).output().expect("nsenter");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn default_bridge_keeps_dockers_network_on_the_host_side() {
    let w = World::start(150);
    let name = w.name("bridge");
    let id = w.run(&name, &[], "");
    // Inside: only the jail's veth, with a pool address; Docker's address
    // and resolver are not there.
    let links = exec(&name, "ip -o -4 addr").ok().stdout;
    let jail = w.rt.jail(&id);
    assert!(links.contains(&format!("eth0    inet {}/30", jail.jail_addr)) || links.contains(&jail.jail_addr.to_string()), "{links}");
    let docker_ip = inspect(&name, "{{.NetworkSettings.IPAddress}}");
    assert!(docker_ip.starts_with("172.") && !links.contains(&docker_ip), "Docker's address {docker_ip} must not be in the jail:\n{links}");
    assert_eq!(links.lines().count(), 2, "lo and eth0 only:\n{links}");
    // The host side holds Docker's eth0 with that address and our veth.
    let host = links_in(&w.host_side(&id)).join("\n");
    assert!(host.contains(&docker_ip) && host.contains(&jail.host_addr.to_string()), "host side:\n{host}");
    w.assert_boundary(&name);
    // The orchestrator's bridge (docker0's address, in the host's
    // namespace) and Docker's own address for this container (in H): HTTP
    // lands on the sidecar and is denied; UDP and ICMP reach nothing.
    // The container's gateway on the default bridge is docker0's address.
    // (Not `network inspect bridge`: on a daemon's first start its IPAM
    // config has no Gateway, moby/moby#26799.)
    let bridge = inspect(&name, "{{.NetworkSettings.Gateway}}");
    assert!(bridge.starts_with("172."), "docker0's address: {bridge:?}");
    let mut sink = HostSink::bind(20150);
    for target in [bridge.as_str(), docker_ip.as_str()] {
        let r = w.get(&name, &format!("http://{target}:20150/bridge"));
        assert_eq!((r.status, r.header("x-boundary-decision")), (403, Some("deny")), "{target}: {r:?}");
        exec(&name, &format!("curl -s --max-time 1 tftp://{target}:20150/probe; ping -c 1 -W 1 {target}; true"));
    }
    assert_eq!(sink.counts_after_barrier(), (0, 0), "something from the jail reached the host through Docker's bridge");
    // `docker network connect`/`disconnect` act on the host side too.
    let net = w.name("extra");
    w.docker.network(&net, "172.30.150.0/24");
    docker(&["network", "connect", &net, &name]).ok();
    let extra = inspect(&name, &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"));
    assert!(links_in(&w.host_side(&id)).join("\n").contains(&extra), "connected network's address {extra} is on the host side");
    assert!(!exec(&name, "ip -o -4 addr").ok().stdout.contains(&extra), "and not in the jail");
    docker(&["network", "disconnect", &net, &name]).ok();
    assert!(!links_in(&w.host_side(&id)).join("\n").contains(&extra), "disconnected");
    // HTTPS from a `docker exec` process, verified with no flag: the
    // runtime gave the exec'd process the CA variables (its process
    // description from containerd's shim has none of the spec's env).
    let out = exec(&name, "echo $SSL_CERT_FILE; curl -sS --max-time 10 https://origin.test/allowed/tls").ok();
    assert_eq!(out.stdout, "/etc/ssl/boundary-runc/ca-bundle.pem\norigin saw GET /allowed/tls\n", "{out}");
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
    assert_eq!(World::daemon_errors(&id), Vec::<String>::new(), "dockerd logged errors for {id}");
}

#[test]
fn user_network_resolves_container_names_through_the_sidecar() {
    let w = World::start(151);
    let net = w.name("net");
    w.docker.network(&net, "172.30.151.0/24");
    let peer = w.name("peer");
    // The peer is an ordinary (runc) container serving HTTP.
    w.docker.run(&peer, &["--runtime", "runc", "--network", &net], &["httpd", "-f", "-p", "80", "-h", "/www"]).ok();
    let name = w.name("user");
    let id = w.run(&name, &["--network", &net], &format!("domain={peer}"));
    let resolv = exec(&name, "cat /etc/resolv.conf").ok().stdout;
    assert!(resolv.contains("nameserver 127.0.0.11"), "Docker's resolv.conf on a user network:\n{resolv}");
    // The allowed peer name resolves (sidecar → Docker's resolver in the
    // host side) to its address on the network, and HTTP to it works.
    let peer_ip = inspect(&peer, &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"));
    let out = exec(&name, &format!("nslookup {peer}")).ok();
    assert_eq!(nslookup_answers(&out.stdout), [peer_ip], "{out}");
    let r = w.get(&name, &format!("http://{peer}/index.html"));
    assert_eq!((r.status, r.body.as_str()), (200, "served from the jail\n"), "{r:?}");
    // A name no rule allows is never asked upstream: the sidecar's address.
    let out = exec(&name, "nslookup not-allowed.example 127.0.0.11").ok();
    assert_eq!(nslookup_answers(&out.stdout), [w.rt.jail(&id).host_addr.to_string()], "{out}");
    w.assert_boundary(&name);
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
}

#[test]
fn host_and_none_networks() {
    let w = World::start(152);
    let host = w.name("host");
    let id = w.run(&host, &["--network", "host"], "");
    let jail = w.rt.jail(&id);
    // Docker 20.10 names the host's own namespace: taken as no entry, so
    // the host side is a private namespace and nothing of the jail (the
    // veth's host end, the table, the sidecar's address) is in the host's,
    // where `nft flush ruleset` or a process binding that address could
    // undo it.
    assert!(jail.private_host && jail.dedicated_host_netns.is_some(), "--network host gets a private host side: {jail:?}");
    let root_links = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link");
    assert!(!String::from_utf8_lossy(&root_links.stdout).contains(&jail.host_if), "the jail's veth is in the host's namespace");
    let tables = Command::new("nft").args(["list", "tables"]).output().expect("nft list tables");
    assert!(!String::from_utf8_lossy(&tables.stdout).contains(&jail.nft_table), "the jail's table is in the host's namespace");
    w.assert_boundary(&host);

    let none = w.name("none");
    let id = w.run(&none, &["--network", "none"], "");
    let hostns = links_in(&w.host_side(&id)).join("\n");
    assert!(!hostns.contains("eth0"), "--network none: no Docker interface on the host side:\n{hostns}");
    let base = w.origin.counts();
    let served = w.origin.requests().len();
    let r = w.get(&none, "http://origin.test/allowed/a");
    assert_eq!(r.status, 403, "{r:?}");
    let audit = w.rt.audit_records(&id);
    assert!(audit.iter().any(|a| a.reason.as_deref().is_some_and(|r| r.contains("no upstream network"))), "{audit:#?}");
    let ping = exec(&none, &format!("ping -c 1 -W 1 {}", w.origin.addr()));
    assert_eq!(ping_counts(&ping.stdout), Some((1, 0)), "{ping}");
    assert_eq!(w.origin.leaked_since(base), Counts::default(), "--network none: nothing may reach the origin");
    assert_eq!(w.origin.requests().len(), served, "--network none: no request may reach the origin");
    docker(&["rm", "-f", &host, &none]).ok();
    w.assert_no_leaks();
}

#[test]
fn container_network_joins_the_jail_of_that_container() {
    let w = World::start(153);
    let owner = w.name("owner");
    let owner_id = w.run(&owner, &[], "");
    let joiner = w.name("joiner");
    let joiner_id = w.docker.run(&joiner, &["--network", &format!("container:{owner}")], &[]).ok().stdout.trim().to_string();
    let addr = exec(&joiner, "ip -o -4 addr").ok().stdout;
    assert!(addr.contains(&w.rt.jail(&owner_id).jail_addr.to_string()), "the joiner is in the owner's jail:\n{addr}");
    assert!(w.rt.dirs.state_root.join(&joiner_id).join("joined").is_file(), "joiner recorded");
    assert!(!w.rt.dirs.state_root.join(&joiner_id).join("jail.json").exists(), "no jail of its own");
    w.assert_boundary(&joiner);
    docker(&["rm", "-f", &joiner]).ok();
    assert!(!w.rt.dirs.state_root.join(&joiner_id).exists(), "the joiner's state is removed");
    // The owner's jail is untouched.
    let r = w.get(&owner, "http://origin.test/allowed/still");
    assert_eq!(r.status, 200, "{r:?}");

    // A joiner with rules of its own narrows the jail's, for the owner
    // too, while it runs; it widens nothing.
    let net = format!("container:{owner}");
    let narrower = w.name("narrower");
    let narrow_dir = w.rt.dirs.state_root.join(&owner_id).join("narrow");
    let narrower_id = w
        .docker
        .run(&narrower, &["--network", &net, "-e", "BOUNDARY_ALLOW=domain=origin.test path=/allowed/a;domain=denied.test"], &[])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(narrow_dir.join(&narrower_id).is_file(), "the narrowing is recorded in {}", narrow_dir.display());
    let r = w.get(&owner, "http://origin.test/allowed/still");
    assert_eq!(r.status, 403, "narrowed by {narrower_id}: {r:?}");
    assert!(
        r.body.contains(&format!("in the rules of {narrower_id}"))
            && r.body.contains(&format!("add this rule to the rules of container {narrower_id}")),
        "the 403 names the narrowing container and where its rule goes:\n{}",
        r.body
    );
    assert_eq!(w.get(&narrower, "http://origin.test/allowed/a").status, 200, "allowed by both");
    assert_eq!(w.get(&narrower, "http://denied.test/x").status, 403, "a joiner's rule the jail lacks widens nothing");
    docker(&["rm", "-f", &narrower]).ok();
    assert!(!w.rt.dirs.state_root.join(&narrower_id).exists(), "the narrower's state is removed");
    assert!(!narrow_dir.join(&narrower_id).exists(), "its narrowing is lifted");
    assert_eq!(w.get(&owner, "http://origin.test/allowed/still").status, 200, "the narrowing lifted with its container");

    // A joiner with a rule that does not parse fails with the rule's error
    // and leaves nothing: no state, no narrowing.
    let bad = w.name("badjoiner");
    let out = w.docker.run(&bad, &["--network", &net, "-e", "BOUNDARY_ALLOW=domain=github.*"], &[]).failed();
    let all = out.all();
    assert!(all.contains("invalid BOUNDARY_ALLOW") && all.contains("github.*"), "Docker's message must carry the rule's error:\n{out}");
    let bad_id = inspect(&bad, "{{.Id}}");
    assert!(!w.rt.dirs.state_root.join(&bad_id).exists(), "no state for the refused joiner");
    let narrowings: Vec<_> = std::fs::read_dir(&narrow_dir).unwrap().flatten().map(|e| e.file_name()).filter(|n| !n.to_string_lossy().starts_with('.')).collect();
    assert!(narrowings.is_empty(), "no narrowing left: {narrowings:?}");
    assert_eq!(w.get(&owner, "http://origin.test/allowed/still").status, 200, "the jail serves on");
    docker(&["rm", "-f", &bad, &owner]).ok();
    w.assert_no_leaks();
}

#[test]
fn stop_start_and_rm_leave_nothing_behind() {
    let w = World::start(154);
    let name = w.name("life");
    let id = w.run(&name, &[], "");
    let first = w.host_side(&id);
    docker(&["stop", "-t", "1", &name]).ok();
    w.assert_no_leaks();
    assert!(!first.exists(), "the host side's mount {} is gone after stop", first.display());
    docker(&["start", &name]).ok();
    let r = w.get(&name, "http://origin.test/allowed/again");
    assert_eq!(r.status, 200, "after docker start: {r:?}");
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
    let netns: Vec<String> = std::fs::read_dir("/var/run/docker/netns").map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    let sandbox = id.get(..12).unwrap_or(&id);
    assert!(!netns.iter().any(|n| n.contains(sandbox)), "dockerd's sandbox mount is gone: {netns:?}");
    assert_eq!(World::daemon_errors(&id), Vec::<String>::new(), "dockerd logged errors for {id}");
}

#[test]
fn published_ports_reach_the_jailed_server() {
    let w = World::start(155);
    let name = w.name("web");
    let port = 21155;
    let publish = format!("127.0.0.1:{port}:80");
    w.docker.run(&name, &["-p", &publish], &["httpd", "-f", "-p", "80", "-h", "/www"]).ok();
    let curl = |url: &str| Command::new(require_tool("curl")).args(["-sS", "--max-time", "10", url]).output().expect("run curl");
    for url in [format!("http://127.0.0.1:{port}/index.html"), format!("http://{}/index.html", inspect(&name, "{{.NetworkSettings.IPAddress}}"))] {
        let out = curl(&url);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "served from the jail\n", "{url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
}

#[test]
fn an_invalid_rule_fails_docker_run_with_the_rules_error() {
    let w = World::start(156);
    let name = w.name("bad");
    let out = w.docker.run(&name, &["-e", "BOUNDARY_ALLOW=domain=github.*"], &[]).failed();
    let all = out.all();
    assert!(all.contains("invalid BOUNDARY_ALLOW") && all.contains("github.*"), "Docker's message must carry the rule's error:\n{out}");
    docker(&["rm", "-f", &name]).ok();
    // `--pid=host` is refused unless the config allows it, and Docker's
    // message says why and how.
    let out = w.docker.run(&name, &["--pid=host"], &[]).failed();
    let all = out.all();
    assert!(all.contains("no pid entry") && all.contains("allow_host_pid_namespace = true"), "Docker's message must carry the refusal:\n{out}");
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
}

/// Docker's host side H holds dockerd's `eth0` on docker0: a macvlan on it,
/// made from inside through the id the kernel gives H in the jail
/// (`IFLA_LINK_NETNSID`), would put the container straight on Docker's
/// bridge, past the nft table and the sidecar; a veth pair made in H
/// (`IFLA_TARGET_NETNSID`) would be a second link outside the table's
/// `iifname`. The container runs in the user namespace that owns its jail,
/// so its CAP_NET_ADMIN counts there alone: both are refused, no such link
/// exists on either side, and the boundary holds.
#[test]
fn net_admin_inside_reaches_no_link_of_dockers_host_side() {
    let w = World::start(157);
    let name = w.name("peerlink");
    let probe = boundary_tests::probe::probe_dir();
    let bind = format!("{}:/tmp:ro", probe.path().display());
    let id = w.run(&name, &["-v", &bind], "");
    let host = w.host_side(&id);
    let index = uplink_index(&host);
    let map = exec(&name, "cat /proc/self/uid_map").ok();
    assert_eq!(map.stdout.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"], "{map}");
    let probe_cmd = boundary_tests::probe::PROBE;
    for args in [format!("peer-macvlan eth0 {index}"), "peer-veth eth0 bnx".to_string()] {
        let out = exec(&name, &format!("{probe_cmd} {args}"));
        let line = out.stdout.trim();
        assert!(line.starts_with("error:") && line.contains("Operation not permitted"), "probe {args} in Docker's jail: {out}");
    }
    let inside = boundary_tests::probe::link_names(&exec(&name, "ip -o link").ok().stdout);
    assert_eq!(inside, ["lo", "eth0"], "links in the jail");
    let outside = boundary_tests::probe::link_names(&ip_in(&host, &["-o", "link"]));
    assert!(!outside.iter().any(|l| l == "bnx"), "a link appeared in Docker's host side: {outside:?}");
    w.assert_boundary(&name);
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
}

/// `--pid=host --cap-add NET_ADMIN`: the container cannot have a user
/// namespace of its own (procfs), so boundary-runc takes CAP_NET_ADMIN
/// from it, since in the host's user namespace it would reach Docker's
/// host side. dockerd builds a `docker exec` process from its own record
/// of the container, `--cap-add` included, and sends it as a process
/// file: the process gets no CAP_NET_ADMIN either, and the probe for a
/// link on Docker's uplink is refused.
#[test]
fn docker_exec_into_a_host_pid_container_gets_no_net_admin() {
    use boundary_tests::probe::{cap_eff, CAP_NET_ADMIN, CAP_NET_RAW};
    let w = World::start_with(158, |s| s.allow_host_pid_namespace(true));
    let name = w.name("execcap");
    let probe = boundary_tests::probe::probe_dir();
    let bind = format!("{}:/tmp:ro", probe.path().display());
    let id = w.run(&name, &["--pid=host", "--cap-add", "NET_ADMIN", "-v", &bind], "");
    let has = |status: &str, cap: u32| cap_eff(status) & (1 << cap) != 0;
    let inner = inspect(&name, "{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{inner}/status")).expect("the container's main process");
    assert!(!has(&status, CAP_NET_ADMIN), "the container's main process holds CAP_NET_ADMIN:\n{status}");
    let exec_status = exec(&name, "cat /proc/self/status").ok();
    assert!(!has(&exec_status.stdout, CAP_NET_ADMIN), "docker exec gave CAP_NET_ADMIN:\n{exec_status}");
    assert!(has(&exec_status.stdout, CAP_NET_RAW), "docker exec keeps the other capabilities:\n{exec_status}");
    let index = uplink_index(&w.host_side(&id));
    let probe_cmd = boundary_tests::probe::PROBE;
    let out = exec(&name, &format!("{probe_cmd} peer-macvlan eth0 {index}"));
    let line = out.stdout.trim();
    assert!(line.starts_with("error:") && line.contains("Operation not permitted"), "probe from docker exec: {out}");
    w.assert_boundary(&name);
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
}

/// Docker's host side holds the sidecar's and dockerd's resolver's own
/// flows. A reply to one of them that arrives with no tracking entry (one
/// evicted from a full table) looks new; sent on to the jail, the container
/// could answer it as that flow's reply and talk to the upstream resolver.
/// So only the start of a flow is sent on: UDP from port 53 (a DNS answer)
/// stays on the host side, while other UDP to the container's address
/// still reaches the jail, as published ports and other containers need.
#[test]
fn a_dns_answer_that_looks_new_is_not_sent_on_to_the_jail() {
    let w = World::start(159);
    let name = w.name("udp");
    w.run(&name, &[], "");
    let addr = inspect(&name, "{{.NetworkSettings.IPAddress}}");
    let gateway = inspect(&name, "{{.NetworkSettings.Gateway}}");
    // Datagrams the jail's kernel received for a port nothing listens on
    // (busybox has no UDP listener): `Udp: ... NoPorts` in its namespace.
    let no_ports = || {
        let snmp = exec(&name, "cat /proc/net/snmp").ok().stdout;
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (keys, values) = (udp.next().expect("Udp header"), udp.next().expect("Udp values"));
        let at = keys.split_whitespace().position(|k| k == "NoPorts").expect("NoPorts");
        values.split_whitespace().nth(at).and_then(|v| v.parse::<u64>().ok()).expect("NoPorts value")
    };
    let send = |sport: u16| {
        let s = std::net::UdpSocket::bind((gateway.as_str(), sport)).unwrap_or_else(|e| panic!("bind {gateway}:{sport}: {e}"));
        for _ in 0..3 {
            s.send_to(b"probe\n", (addr.as_str(), 7777)).expect("send");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let before = no_ports();
    send(53);
    assert_eq!(no_ports(), before, "UDP from port 53 stayed on the host side");
    send(5353);
    assert_eq!(no_ports(), before + 3, "UDP from another port reaches the jail");
    w.assert_boundary(&name);
    docker(&["rm", "-f", &name]).ok();
    w.assert_no_leaks();
}
