//! Shared by `escapes.rs` and `hostile_input.rs`: a jailed container with
//! Docker's capabilities (CAP_NET_RAW, CAP_KILL, root) plus the
//! CAP_NET_ADMIN boundary-runc adds, the `probe` binary bind-mounted at
//! `/tmp` (with the one library it needs beyond the shared rootfs), an
//! origin, a host sink, and raw-socket counters for protocols the origin
//! does not listen for (SCTP, raw IP).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use boundary_tests::{poll_until, require_root, require_tool, Bundle, Origin, Outcome, Runtime, Settings};
use nix::sys::socket::{socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

/// Rules of the escapes world: one name, two paths' worth, ports 80 and 443 only.
pub const RULES: &str = "domain=origin.test path=/allowed/* port=80,443";

pub use boundary_tests::probe::PROBE;

pub struct World {
    pub rt: Runtime,
    pub bundle: Bundle,
    pub origin: Origin,
    pub id: &'static str,
    _probe_dir: tempfile::TempDir,
}

impl World {
    pub fn start(slot: u8, id: &'static str) -> World {
        World::start_with(slot, id, |s| s, |b| b)
    }

    pub fn start_with(slot: u8, id: &'static str, settings: impl FnOnce(Settings) -> Settings, bundle: impl FnOnce(Bundle) -> Bundle) -> World {
        require_root();
        let origin = Origin::start(slot);
        let s = Settings::new(slot)
            .pin("origin.test", origin.addr())
            .pin("denied.test", origin.addr())
            .nameserver(origin.addr())
            .upstream_ca(&origin.ca_file());
        let rt = Runtime::new(settings(s));
        let probe = boundary_tests::probe::probe_dir();
        let source = probe.path().display().to_string();
        let b = Bundle::sleeper().docker_capabilities().env("BOUNDARY_ALLOW", RULES).edit(|s| {
            let mount = serde_json::json!({"destination": "/tmp", "type": "bind", "source": source, "options": ["rbind", "ro"]});
            s["mounts"].as_array_mut().expect("mounts").push(mount);
        });
        let b = bundle(b);
        rt.create_and_start(&b, id);
        World { rt, bundle: b, origin, id, _probe_dir: probe }
    }

    pub fn exec(&self, script: &str) -> Outcome {
        self.rt.exec(self.id, script)
    }

    /// `probe ARGS` inside; its one output line.
    pub fn probe(&self, args: &str) -> String {
        let out = self.exec(&format!("{PROBE} {args}"));
        assert!(!out.stdout.is_empty(), "the probe did not run:\n{out}");
        out.stdout.trim().to_string()
    }

    pub fn sidecar(&self) -> Ipv4Addr {
        self.rt.jail(self.id).host_addr
    }

    pub fn jail_addr(&self) -> Ipv4Addr {
        self.rt.jail(self.id).jail_addr
    }

    /// MAC of the host end of the jail's veth.
    pub fn host_mac(&self) -> String {
        boundary_tests::hostside::host_mac(&self.rt.jail(self.id))
    }

    pub fn host_rx_packets(&self) -> u64 {
        boundary_tests::hostside::host_rx_packets(&self.rt.jail(self.id))
    }

    /// Host pids of the sidecar processes (supervisor, worker, ...).
    pub fn sidecar_pids(&self) -> Vec<i32> {
        self.rt.leaks().sidecars.iter().filter_map(|s| s.split_whitespace().next()?.parse().ok()).collect()
    }

    pub fn origin_netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(self.origin.netns())
    }
}

/// Marks the counters' own control packets.
const CONTROL: &[u8] = b"boundary-raw-control";

/// Counts IPv4 packets of one protocol arriving in a network namespace
/// (a raw socket sees every packet of its protocol delivered locally).
pub struct RawCounter {
    proto: i32,
    target: Ipv4Addr,
    probes: Arc<AtomicU64>,
    controls: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Namespace the barrier's control packet is sent from (`None`: ours).
    control_from: Option<PathBuf>,
}

impl RawCounter {
    /// [`RawCounter::start`] for a namespace our own cannot route to (a
    /// private host side): the control packet is sent from inside it, to
    /// `target` there (its loopback must be up).
    pub fn start_local(netns: &Path, proto: i32, target: Ipv4Addr) -> RawCounter {
        let mut counter = RawCounter::start(Some(netns), proto, target);
        counter.control_from = Some(netns.to_path_buf());
        counter
    }

    /// Counts protocol `proto` in the namespace at `netns` (`None`: the
    /// test's own, the host's); `target` is a local address there, for
    /// the control packet.
    pub fn start(netns: Option<&Path>, proto: i32, target: Ipv4Addr) -> RawCounter {
        let (probes, controls, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (p, c, s) = (probes.clone(), controls.clone(), stop.clone());
        let ns = netns.map(Path::to_path_buf);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            if let Some(ns) = ns {
                let f = std::fs::File::open(&ns).expect("open netns");
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            }
            let fd = socket(AddressFamily::Inet, SockType::Raw, SockFlag::SOCK_CLOEXEC, raw_protocol(proto)).expect("raw socket");
            let tv = nix::sys::time::TimeVal::new(0, 100_000);
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv).expect("SO_RCVTIMEO");
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    let data = &buf[..n];
                    if data.windows(CONTROL.len()).any(|w| w == CONTROL) {
                        c.fetch_add(1, Ordering::SeqCst);
                    } else {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        ready_rx.recv().expect("raw counter started");
        RawCounter { proto, target, probes, controls, stop, thread: Some(thread), control_from: None }
    }

    /// Packets of the protocol that arrived (not counting controls), once a
    /// control sent from the host after everything else has arrived.
    pub fn count_after_barrier(&self) -> u64 {
        let before = self.controls.load(Ordering::SeqCst);
        // Sent from inside the counter's namespace.
        let proto = self.proto;
        let fd = boundary_tests::hostside::run_in(self.control_from.as_deref(), move || {
            socket(AddressFamily::Inet, SockType::Raw, SockFlag::SOCK_CLOEXEC, raw_protocol(proto)).expect("control socket")
        });
        let to = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(self.target, 0));
        poll_until(Duration::from_secs(5), "the raw counter's control packet", || {
            let _ = nix::sys::socket::sendto(fd.as_raw_fd(), CONTROL, &to, MsgFlags::empty());
            std::thread::sleep(Duration::from_millis(50));
            (self.controls.load(Ordering::SeqCst) > before).then_some(())
        });
        self.probes.load(Ordering::SeqCst)
    }
}

fn raw_protocol(proto: i32) -> SockProtocol {
    match proto {
        132 => SockProtocol::Sctp,
        17 => SockProtocol::Udp,
        _ => SockProtocol::Raw, // IPPROTO_RAW would be send-only; callers use SCTP here
    }
}

impl Drop for RawCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A link in the host namespace holding `addr` (e.g. the cloud
/// metadata address), so that a leak to it would be seen by a host sink.
pub struct HostAddress {
    link: String,
}

impl HostAddress {
    pub fn add(link: &str, addr: Ipv4Addr) -> HostAddress {
        let ip = require_tool("ip");
        let _ = Command::new(&ip).args(["link", "del", link]).output();
        let run = |args: &[&str]| {
            let out = Command::new(&ip).args(args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        // A veth pair (this kernel may lack the dummy link type).
        let peer = format!("{link}p");
        run(&["link", "add", link, "type", "veth", "peer", "name", &peer]);
        run(&["addr", "add", &format!("{addr}/32"), "dev", link]);
        run(&["link", "set", link, "up"]);
        run(&["link", "set", &peer, "up"]);
        HostAddress { link: link.to_string() }
    }
}

impl Drop for HostAddress {
    fn drop(&mut self) {
        let _ = Command::new(require_tool("ip")).args(["link", "del", &self.link]).output();
    }
}
