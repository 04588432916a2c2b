//! What a jailed container sees and cannot do, without any allow rule.
//! Slots 110..=119.

use boundary_tests::probe::{cap_eff, link_names, ping_counts, CAP_NET_ADMIN, CAP_SYS_ADMIN};
use boundary_tests::{hostside, require_root, Bundle, Counts, HostSink, Origin, Runtime, Settings};

const ID: &str = "iso";

/// Sends UDP (curl's TFTP client: one datagram to any port) and TCP at the
/// host's addresses and at the origin from inside `ID`.
fn send_udp_and_tcp(rt: &Runtime, origin: &Origin, sink: &HostSink) {
    let jail = rt.jail(ID);
    let (h, oh, o, p) = (jail.host_addr, origin.host_addr(), origin.addr(), sink.port);
    let udp_targets = [format!("{h}:{p}"), format!("{oh}:{p}"), format!("{o}:7000"), format!("{o}:443"), format!("{o}:53")];
    let mut script: String = udp_targets.iter().map(|t| format!("curl -s --max-time 1 tftp://{t}/probe & ")).collect();
    script += &format!("echo hello | timeout 2 nc -w 1 {o} 7000 & echo hello | timeout 2 nc -w 1 {h} {p} & wait");
    rt.exec(ID, &script);
}

/// `ping -c 1` from inside `ID` to each target: (transmitted, received).
fn ping_from_jail(rt: &Runtime, targets: &[std::net::Ipv4Addr]) -> Vec<(u32, u32)> {
    targets
        .iter()
        .map(|t| {
            let out = rt.exec(ID, &format!("ping -c 1 -W 1 {t}"));
            ping_counts(&out.stdout).unwrap_or_else(|| panic!("ping {t} printed no statistics:\n{out}"))
        })
        .collect()
}

fn probe_everything(rt: &Runtime, origin: &Origin, sink: &HostSink) {
    send_udp_and_tcp(rt, origin, sink);
    let targets = [origin.addr(), rt.jail(ID).host_addr, origin.host_addr()];
    for (t, counts) in targets.iter().zip(ping_from_jail(rt, &targets)) {
        assert_eq!(counts, (1, 0), "ping {t} from the jail must send one echo request and get nothing back");
    }
}

#[track_caller]
fn assert_nothing_arrived(origin: &Origin, sink: &mut HostSink) {
    assert_eq!(origin.counts_after_barrier(), Counts::default(), "something from the jail reached the origin");
    assert_eq!(sink.counts_after_barrier(), (0, 0), "something from the jail reached the host sink on port {}", sink.port);
}

#[test]
fn inside_only_lo_and_eth0_and_nothing_reaches_the_host_or_the_origin() {
    require_root();
    let origin = Origin::start(110);
    let mut sink = HostSink::bind(20110);
    let rt = Runtime::new(Settings::new(110));
    let before = rt.leaks();
    let bundle = Bundle::sleeper().docker_capabilities();
    rt.create_and_start(&bundle, ID);
    let jail = rt.jail(ID);

    let out = rt.exec(ID, "ip -o link").ok();
    assert_eq!(link_names(&out.stdout), ["lo", "eth0"], "{out}");
    let out = rt.exec(ID, "ip -o -4 addr show dev eth0; ip route").ok();
    assert!(out.stdout.contains(&format!("inet {}/30", jail.jail_addr)), "{out}");
    assert!(out.stdout.contains(&format!("default via {} dev eth0", jail.host_addr)), "{out}");

    probe_everything(&rt, &origin, &sink);
    assert_nothing_arrived(&origin, &mut sink);

    rt.delete_force(ID).ok();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn net_admin_inside_opens_no_path_out() {
    require_root();
    let origin = Origin::start(111);
    let mut sink = HostSink::bind(20111);
    let rt = Runtime::new(Settings::new(111));
    let before = rt.leaks();
    let bundle = Bundle::sleeper().docker_capabilities();
    rt.create_and_start(&bundle, ID);
    let jail = rt.jail(ID);

    let status = rt.exec(ID, "cat /proc/self/status").ok().stdout;
    let caps = cap_eff(&status);
    assert!(caps & (1 << CAP_NET_ADMIN) != 0, "CAP_NET_ADMIN missing inside: CapEff {caps:#x}");
    assert!(caps & (1 << CAP_SYS_ADMIN) == 0, "CAP_SYS_ADMIN must not be granted: CapEff {caps:#x}");

    // Nested namespaces: a user+net namespace works, a bare net namespace
    // needs CAP_SYS_ADMIN, which the jail does not grant.
    rt.exec(ID, "unshare -r -n true").ok();
    rt.exec(ID, "unshare -n true").failed();

    // Reconfigure the jail's own network: new links, a spoofed source
    // address, new routes.
    rt.exec(ID, "ip link add bx0 type veth peer name bx1").ok();
    rt.exec(ID, "ip addr add 192.0.2.77/32 dev eth0").ok();
    let route = format!("ip route add {}/32 via {} dev eth0 src 192.0.2.77", origin.addr(), jail.host_addr);
    rt.exec(ID, &route).ok();
    rt.exec(ID, &format!("ip route add 10.231.{}.0/24 dev eth0", origin.slot)).ok();

    probe_everything(&rt, &origin, &sink);
    assert_nothing_arrived(&origin, &mut sink);

    rt.delete_force(ID).ok();
    rt.leaks().assert_same_as(&before);
}

/// The probes above would see a leak: with the jail's nft table removed
/// (as if the boundary were missing), the host side answers pings and a
/// sink there receives the datagram and the connection sent to it. Guards
/// against probes that silently send nothing. (A private host side has no
/// route on to the host's namespace or the origin, so only what is sent to
/// the host side's own address can arrive.)
#[test]
fn the_probes_do_detect_a_missing_firewall() {
    require_root();
    let origin = Origin::start(112);
    let rt = Runtime::new(Settings::new(112));
    let before = rt.leaks();
    let bundle = Bundle::sleeper().docker_capabilities();
    rt.create_and_start(&bundle, ID);
    let jail = rt.jail(ID);
    hostside::loopback_up(&jail);
    let mut sink = HostSink::bind_in(hostside::netns(&jail).as_deref(), 20112);
    hostside::delete_table(&jail);

    send_udp_and_tcp(&rt, &origin, &sink);
    let (tcp, udp) = sink.counts_after_barrier();
    assert!(udp >= 1 && tcp >= 1, "without the firewall the host side's sink should see the jail's datagram and connection, saw tcp {tcp} udp {udp}");
    assert_eq!(ping_from_jail(&rt, &[jail.host_addr]), [(1, 1)], "without the firewall the host answers pings");

    // Teardown copes with a table that is already gone.
    rt.delete_force(ID).ok();
    rt.leaks().assert_same_as(&before);
}

/// A namespace given by path that no process uses (`ip netns add`, as
/// podman's and CNI's are) passes its inbound flows on to the jail, so
/// boundary-runc turns its IPv4 forwarding on; the last of its jails there
/// to go turns it off again, as it was found, and nothing else is left.
#[test]
fn forwarding_in_an_engines_namespace_is_put_back_when_its_last_jail_goes() {
    use std::process::Command;
    require_root();
    let rt = Runtime::new(Settings::new(113));
    let ns = "bnd-e2e-113";
    let ip = |args: &[&str]| Command::new("ip").args(args).output().expect("run ip");
    let _ = ip(&["netns", "del", ns]);
    assert!(ip(&["netns", "add", ns]).status.success(), "cannot make namespace {ns}");
    struct Gone(&'static str);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", self.0]).output();
        }
    }
    let _gone = Gone(ns);
    let forward = || String::from_utf8_lossy(&ip(&["netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward"]).stdout).trim().to_string();
    // A new namespace takes the host's setting (devconf_inherit_init_net):
    // start from off, as a host without Docker has it.
    assert!(ip(&["netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0"]).status.success());
    assert_eq!(forward(), "0");
    let before = rt.leaks();
    let path = format!("/run/netns/{ns}");
    let in_ns = || {
        Bundle::sleeper().edit(|s| {
            for n in s["linux"]["namespaces"].as_array_mut().expect("namespaces") {
                if n["type"] == "network" {
                    n["path"] = serde_json::json!(path);
                }
            }
        })
    };
    let (a, b) = (in_ns(), in_ns());
    rt.create_and_start(&a, "fwd-a");
    assert_eq!(forward(), "1", "the jail's inbound flows need forwarding");
    assert!(rt.jail("fwd-a").forwarding_turned_on);
    // A second jail there (the first's sidecar uses the namespace, so it
    // publishes nothing and needs no forwarding of its own).
    rt.create_and_start(&b, "fwd-b");
    assert!(!rt.jail("fwd-b").forwarding_turned_on);
    rt.delete_force("fwd-a").ok();
    assert_eq!(forward(), "0", "the jail that turned it on puts forwarding back");
    rt.delete_force("fwd-b").ok();
    assert_eq!(forward(), "0");
    rt.leaks().assert_same_as(&before);
    // A namespace that forwarded already is left forwarding.
    assert!(ip(&["netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]).status.success());
    rt.create_and_start(&a, "fwd-c");
    assert!(!rt.jail("fwd-c").forwarding_turned_on);
    rt.delete_force("fwd-c").ok();
    assert_eq!(forward(), "1", "forwarding the namespace had is left on");
}
