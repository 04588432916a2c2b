//! The real `boundary-sidecar` binary, run as root in a network namespace
//! each test creates: readiness, privilege drop, worker restart with the
//! sockets held open, audit continuity, shutdown, fail-closed on supervisor
//! death, start-up errors, and DNS over the real sockets.
//!
//! These tests need root (network namespaces, binding in them, dropping to
//! uid 65534). Without it they FAIL with a message saying so; they never
//! skip.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use boundary_contract::{AuditRecord, SidecarConfig, SidecarPids};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PROXY_PORT: u16 = 15001;
const DNS_PORT: u16 = 15353;
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const ALLOWED: &str = "allowed.example.com";
const ALLOWED_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const NOBODY: u32 = 65534;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sidecar tests need root (they create network namespaces, bind in them and drop to uid {NOBODY}); \
         run them as root, e.g. `sudo -E cargo test -p boundary-proxy --test sidecar`"
    );
}

/// A network namespace `bnd-test-<pid>-<n>` with loopback up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        require_root();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("bnd-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread that has entered this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let ns = File::open(&path).expect("opening the test namespace");
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("entering the test namespace");
                f()
            })
            .join()
            .expect("the thread in the test namespace panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(argv: &[&str]) {
    let status = Command::new(argv[0]).args(&argv[1..]).status().unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    assert!(status.success(), "{argv:?} failed: {status}");
}

/// A host CA written as PEM files.
fn write_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "boundary test CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn config(ns: &Netns, dir: &Path) -> SidecarConfig {
    let (ca_cert, ca_key) = write_ca(dir);
    SidecarConfig {
        container_id: format!("sidecar-test-{}", ns.name),
        netns: Some(ns.path()),
        bind_only_in_netns: false,
        listen_addr: LOOPBACK,
        proxy_port: PROXY_PORT,
        dns_port: DNS_PORT,
        rules: vec![format!("domain={ALLOWED}")],
        narrowing_rules: vec![],
        narrow_dir: None,
        ca_cert,
        ca_key,
        upstream_system_roots: false,
        upstream_ca_files: vec![],
        system_roots_file: None,
        pinned_hosts: BTreeMap::from([(ALLOWED.to_string(), ALLOWED_IP.into())]),
        upstream_enabled: true,
        allow_special_destinations: false,
        refuse_private_destinations: false,
        upstream_connect_timeout_ms: None,
        rules_in: None,
        config_generation: 0,
        // Nothing listens there: no test name may need a real lookup.
        upstream_resolvers: Some(vec![LOOPBACK.into()]),
        audit_log: dir.join("audit/audit.jsonl"),
        audit_max_bytes: None,
        uid: NOBODY,
        gid: NOBODY,
        pid_file: dir.join("run/sidecar.pid"),
        orphan_watch: None,
    }
}

/// A started supervisor; killed (with its worker) on drop.
struct Sidecar {
    child: Child,
    cfg: SidecarConfig,
    cfg_path: PathBuf,
    log: PathBuf,
    ready: String,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    fn start(ns: &Netns) -> Sidecar {
        Sidecar::start_with(ns, |_| {})
    }

    fn start_with(ns: &Netns, tweak: impl FnOnce(&mut SidecarConfig)) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(ns, dir.path());
        tweak(&mut cfg);
        let cfg_path = dir.path().join("sidecar.json");
        fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let log = dir.path().join("sidecar.log");
        let log_file = File::create(&log).unwrap();
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let ready_fd = write_end.as_raw_fd();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_boundary-sidecar"));
        cmd.arg("--config")
            .arg(&cfg_path)
            .args(["--ready-fd", &ready_fd.to_string()])
            .env("BOUNDARY_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // SAFETY: fcntl is async-signal-safe; it only clears FD_CLOEXEC on
        // the pipe's write end in the forked child, so this one child (and
        // no other process the test harness spawns) inherits it.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::fcntl(ready_fd, nix::libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawning boundary-sidecar");
        drop(write_end);
        let ready = read_all_with_timeout(read_end, Duration::from_secs(30));
        Sidecar { child, cfg, cfg_path, log, ready, _dir: dir }
    }

    fn assert_ready(&self) {
        assert_eq!(self.ready, "ok\n", "sidecar did not report ready; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pids(&self) -> Option<SidecarPids> {
        let text = fs::read(&self.cfg.pid_file).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn worker(&self) -> i32 {
        self.pids().and_then(|p| p.worker).unwrap_or_else(|| panic!("no worker in the pid file; log:\n{}", self.log()))
    }

    fn audit(&self) -> Vec<AuditRecord> {
        fs::read_to_string(&self.cfg.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
            .collect()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.child.try_wait().unwrap())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(worker) = self.pids().and_then(|p| p.worker) {
            let _ = kill(Pid::from_raw(worker), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_all_with_timeout(fd: OwnedFd, timeout: Duration) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = File::from(fd).read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| format!("<nothing within {timeout:?}>"))
}

fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn dns_query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Asks the sidecar over UDP from inside the namespace.
fn ask_udp(ns: &Netns, id: u16, name: &str, qtype: RecordType) -> Message {
    let q = dns_query(id, name, qtype);
    let bytes = ns.run(move || {
        let sock = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.send_to(&q, (LOOPBACK, DNS_PORT)).unwrap();
        let mut buf = vec![0u8; 2048];
        let n = sock.recv(&mut buf).expect("a DNS answer over UDP");
        buf.truncate(n);
        buf
    });
    Message::from_vec(&bytes).unwrap()
}

fn a_answers(m: &Message) -> Vec<(Ipv4Addr, u32)> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((a.0, r.ttl)),
            _ => None,
        })
        .collect()
}

fn status_field(status: &str, key: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned()).unwrap_or_default()
}

/// Gone, or a zombie waiting for init.
fn is_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn connect_proxy(ns: &Netns) -> std::io::Result<TcpStream> {
    ns.run(|| TcpStream::connect_timeout(&SocketAddr::from((LOOPBACK, PROXY_PORT)), Duration::from_secs(1)))
}

#[test]
fn worker_runs_as_nobody_with_no_capabilities_and_is_not_dumpable() {
    let ns = Netns::new();
    let sidecar = Sidecar::start(&ns);
    sidecar.assert_ready();
    let pids = sidecar.pids().expect("pid file after readiness");
    // The process started is the keeper; the supervisor is its child.
    assert_eq!(pids.keeper, Some(sidecar.child.id() as i32));
    assert_ne!(pids.supervisor, sidecar.child.id() as i32);
    let worker = sidecar.worker();
    assert_ne!(worker, pids.supervisor);

    // The shim recognises the worker by its command line.
    let cmdline = fs::read(format!("/proc/{worker}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    assert!(args[0].ends_with(b"boundary-sidecar"));
    assert!(args.contains(&b"--worker".as_slice()));
    assert!(args.contains(&sidecar.cfg_path.as_os_str().as_encoded_bytes()));

    let want_ids = format!("{NOBODY}\t{NOBODY}\t{NOBODY}\t{NOBODY}");
    // A short-lived thread (the one that parses the TLS roots after `ok`)
    // may exit while the list is read: a task gone meanwhile is skipped.
    // Filters this test runs under (a CI container's, systemd's) pass on
    // to the sidecar; the worker adds one of its own.
    let inherited_filters: u32 = status_field(&fs::read_to_string("/proc/self/status").unwrap(), "Seccomp_filters:").parse().unwrap();
    let tasks: Vec<_> = fs::read_dir(format!("/proc/{worker}/task")).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
    assert!(tasks.len() > 1, "the worker should run its runtime threads");
    for task in tasks {
        let status = match fs::read_to_string(task.join("status")) {
            Ok(s) => s,
            Err(_) if !task.exists() => continue,
            Err(e) => panic!("reading {task:?}/status: {e}"),
        };
        assert_eq!(status_field(&status, "Uid:"), want_ids, "{task:?}");
        assert_eq!(status_field(&status, "Gid:"), want_ids, "{task:?}");
        assert_eq!(status_field(&status, "Groups:"), "", "{task:?}");
        for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            assert_eq!(status_field(&status, cap), "0000000000000000", "{cap} of {task:?}");
        }
        assert_eq!(status_field(&status, "NoNewPrivs:"), "1", "{task:?}");
        // Every thread, the audit writer's and later ones too, under the
        // worker's seccomp filter (boundary_proxy::seccomp).
        assert_eq!(status_field(&status, "Seccomp:"), "2", "{task:?}");
        assert_eq!(status_field(&status, "Seccomp_filters:"), (inherited_filters + 1).to_string(), "{task:?}");
    }
    // Not dumpable: the kernel hands its /proc files to root instead of
    // the process's uid...
    assert_eq!(fs::metadata(format!("/proc/{worker}/environ")).unwrap().uid(), 0);
    // ...so another process running as the same uid cannot read them (and
    // cannot ptrace it), while it can read its own.
    let as_nobody = |script: &str| {
        Command::new("setpriv")
            .args(["--reuid", &NOBODY.to_string(), "--regid", &NOBODY.to_string(), "--clear-groups", "sh", "-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running setpriv")
    };
    assert!(as_nobody("cat /proc/$$/environ").success(), "control: nobody reads its own /proc");
    assert!(!as_nobody(&format!("cat /proc/{worker}/environ")).success(), "same uid read a non-dumpable worker's /proc");
    // The worker took its Landlock domain where the kernel has Landlock
    // (what the domain denies: boundary_proxy::landlock's own test).
    let log = sidecar.log();
    match boundary_proxy::landlock::abi().expect("the Landlock ABI query") {
        Ok(abi) => assert!(log.contains(&format!("worker in its Landlock domain (ABI {abi})")), "{log}"),
        Err(why) => assert!(log.contains("without a Landlock domain") && log.contains(&why), "{log}"),
    }
    // The supervisor stays root (it must bind and respawn) but is tiny.
    let sup_status = fs::read_to_string(format!("/proc/{}/status", pids.supervisor)).unwrap();
    assert_eq!(status_field(&sup_status, "Threads:"), "1", "the supervisor must stay single-threaded");
}

#[test]
fn dns_over_udp_and_tcp_answers_from_the_policy() {
    let ns = Netns::new();
    let sidecar = Sidecar::start(&ns);
    sidecar.assert_ready();
    let m = ask_udp(&ns, 1, "denied.example.org", RecordType::A);
    assert_eq!(m.metadata.id, 1);
    assert_eq!(a_answers(&m), vec![(LOOPBACK, 5)], "a denied name gets the sinkhole (the listen address)");
    let m = ask_udp(&ns, 2, ALLOWED, RecordType::A);
    assert_eq!(a_answers(&m), vec![(ALLOWED_IP, 30)]);
    assert!(ask_udp(&ns, 3, ALLOWED, RecordType::AAAA).answers.is_empty());

    let q = dns_query(4, "denied.example.org", RecordType::A);
    let answer = ns.run(move || {
        let mut conn = TcpStream::connect((LOOPBACK, DNS_PORT)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        conn.write_all(&q).unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut body).unwrap();
        body
    });
    assert_eq!(a_answers(&Message::from_vec(&answer).unwrap()), vec![(LOOPBACK, 5)]);

    let recs = wait_until(Duration::from_secs(5), || Some(sidecar.audit()).filter(|r| r.len() >= 4)).expect("4 audit records");
    let denied: Vec<_> = recs.iter().filter(|r| r.host.as_deref() == Some("denied.example.org")).collect();
    assert_eq!(denied.len(), 2);
    assert!(denied.iter().all(|r| r.kind == "dns" && r.decision == "deny" && r.reason.as_deref() == Some("no rule allows this name")));
    assert!(recs.iter().any(|r| r.host.as_deref() == Some(ALLOWED) && r.decision == "allow"));
    assert!(recs.iter().all(|r| r.container_id == sidecar.cfg.container_id));
}

#[test]
fn a_killed_worker_is_replaced_at_once_and_nothing_is_dropped() {
    let ns = Netns::new();
    let sidecar = Sidecar::start(&ns);
    sidecar.assert_ready();
    let first = sidecar.worker();
    assert_eq!(a_answers(&ask_udp(&ns, 1, "before.example.org", RecordType::A)), vec![(LOOPBACK, 5)]);
    wait_until(Duration::from_secs(5), || Some(()).filter(|()| !sidecar.audit().is_empty())).expect("first audit record");

    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    // The listening socket lives in the supervisor: connecting works even
    // while no worker exists, and the connection waits in the backlog.
    let mut conn = connect_proxy(&ns).expect("connecting right after the worker was killed");
    let second = wait_until(Duration::from_secs(1), || sidecar.pids().and_then(|p| p.worker).filter(|w| *w != first))
        .unwrap_or_else(|| panic!("no new worker within 1 s; log:\n{}", sidecar.log()));
    assert!(killed_at.elapsed() <= Duration::from_secs(1));
    assert!(!is_gone(second));
    assert!(is_gone(first), "the killed worker was not reaped");

    // The queued connection is served by the new worker, under policy.
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET /x HTTP/1.1\r\nHost: denied.example.org\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 403"), "queued connection got {response:?}; log:\n{}", sidecar.log());

    assert_eq!(a_answers(&ask_udp(&ns, 2, "after.example.org", RecordType::A)), vec![(LOOPBACK, 5)]);
    let recs = wait_until(Duration::from_secs(5), || {
        Some(sidecar.audit()).filter(|r| r.iter().any(|r| r.host.as_deref() == Some("after.example.org")))
    })
    .expect("audit record after the restart");
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=recs.len() as u64).collect::<Vec<_>>(), "seq must continue across the restart");
    assert!(recs.len() >= 3);
}

#[test]
fn sigterm_stops_supervisor_and_worker_and_removes_the_pid_file() {
    let ns = Netns::new();
    let mut sidecar = Sidecar::start(&ns);
    sidecar.assert_ready();
    let worker = sidecar.worker();
    kill(Pid::from_raw(sidecar.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = sidecar.wait_exit(Duration::from_secs(5)).expect("supervisor exits after SIGTERM");
    assert!(status.success(), "supervisor exit status {status}; log:\n{}", sidecar.log());
    assert!(is_gone(worker));
    assert_eq!(kill(Pid::from_raw(worker), None), Err(Errno::ESRCH), "the worker was not reaped");
    assert!(!sidecar.cfg.pid_file.exists());
    assert_eq!(connect_proxy(&ns).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
}

/// The process the shim starts is the keeper (the top of the tree, which
/// holds the sockets); when it dies, supervisor and worker follow it.
#[test]
fn a_killed_supervisor_takes_its_worker_down_fail_closed() {
    let ns = Netns::new();
    let mut sidecar = Sidecar::start(&ns);
    sidecar.assert_ready();
    let worker = sidecar.worker();
    sidecar.child.kill().unwrap();
    sidecar.child.wait().unwrap();
    wait_until(Duration::from_secs(2), || Some(()).filter(|()| is_gone(worker))).expect("worker gone after its supervisor died");
    let refused = wait_until(Duration::from_secs(2), || connect_proxy(&ns).err());
    assert_eq!(refused.map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionRefused));
}

#[test]
fn start_up_errors_are_reported_on_the_ready_fd() {
    let ns = Netns::new();
    // The worker cannot load the CA: reported through the supervisor.
    let mut sidecar = Sidecar::start_with(&ns, |cfg| cfg.ca_key = cfg.ca_key.with_file_name("missing-key.pem"));
    assert!(sidecar.ready.starts_with("error: "), "{:?}", sidecar.ready);
    assert!(sidecar.ready.contains("missing-key.pem"), "{:?}", sidecar.ready);
    assert!(sidecar.ready.ends_with('\n') && sidecar.ready.lines().count() == 1);
    let status = sidecar.wait_exit(Duration::from_secs(5)).expect("supervisor exits after a failed start");
    assert_eq!(status.code(), Some(1));
    assert!(!sidecar.cfg.pid_file.exists());
    assert_eq!(connect_proxy(&ns).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    drop(sidecar);

    // The proxy port is taken: bind fails in the keeper. (An address the
    // namespace does not have yet binds: IP_FREEBIND, the shim builds the
    // veth while the sidecar starts.)
    let taken = ns.run(|| std::net::TcpListener::bind((LOOPBACK, PROXY_PORT)).expect("take the proxy port"));
    let mut sidecar = Sidecar::start(&ns);
    assert!(sidecar.ready.starts_with(&format!("error: binding the proxy socket on {LOOPBACK}:{PROXY_PORT}")), "{:?}", sidecar.ready);
    assert_eq!(sidecar.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(1));
    drop(taken);
    let sidecar = Sidecar::start_with(&ns, |cfg| cfg.listen_addr = Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(sidecar.ready, "ok\n", "a sidecar binds an address its namespace does not have yet");
    drop(sidecar);

    // A namespace that does not exist.
    let mut sidecar = Sidecar::start_with(&ns, |cfg| cfg.netns = Some("/run/netns/bnd-test-does-not-exist".into()));
    assert!(sidecar.ready.starts_with("error: opening network namespace"), "{:?}", sidecar.ready);
    assert_eq!(sidecar.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(1));
}

#[test]
fn a_crash_looping_worker_is_restarted_with_a_bounded_back_off() {
    let ns = Netns::new();
    let sidecar = Sidecar::start(&ns);
    sidecar.assert_ready();
    let mut worker = sidecar.worker();
    // Each worker is killed right after it appears, so each counts as dying
    // within a second of its start: restarts at 0, 0.1, 0.2, 0.4, 0.8, 1 s.
    let mut delays = Vec::new();
    for _ in 0..6 {
        kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
        let killed = Instant::now();
        let old = worker;
        worker = wait_until(Duration::from_secs(3), || sidecar.pids().and_then(|p| p.worker).filter(|w| *w != old))
            .unwrap_or_else(|| panic!("no new worker; log:\n{}", sidecar.log()));
        delays.push(killed.elapsed());
        connect_proxy(&ns).expect("the proxy port keeps accepting while workers die");
    }
    let ms = |d: &Duration| d.as_millis();
    assert!(ms(&delays[0]) < 100, "first restart must be at once: {delays:?}");
    for (i, floor) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000)] {
        assert!(ms(&delays[i]) >= floor, "restart {i} came before its back-off: {delays:?}");
    }
    assert!(delays.iter().all(|d| ms(d) <= 1500), "back-off exceeded 1 s: {delays:?}");
    // A worker that lives past a second resets the back-off.
    std::thread::sleep(Duration::from_millis(1200));
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let old = worker;
    wait_until(Duration::from_secs(3), || sidecar.pids().and_then(|p| p.worker).filter(|w| *w != old)).unwrap();
    assert!(killed.elapsed() < Duration::from_millis(300), "back-off was not reset: {:?}", killed.elapsed());
    // Still serving DNS after all that.
    assert_eq!(a_answers(&ask_udp(&ns, 9, "denied.example.org", RecordType::A)), vec![(LOOPBACK, 5)]);
}

/// `/proc/<pid>/fd`: descriptor number -> link target.
fn fd_targets(pid: i32) -> BTreeMap<i32, String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            Some((fd, fs::read_link(e.path()).ok()?.display().to_string()))
        })
        .collect()
}

/// Checks that `sup` is a fork of `keeper` (no exec: same image, same
/// command line) holding exactly the supervisor's descriptors: stdio, the
/// keeper's three sockets, the audit log, the lifeline and its own
/// signalfd; nothing else of the keeper's (its signalfd, its orphan-watch
/// pidfd, the lifeline's read end, its readiness pipe).
fn assert_forked_supervisor(sidecar: &Sidecar, keeper: i32, sup: i32) {
    let link = |pid: i32, what: &str| fs::read_link(format!("/proc/{pid}/{what}")).unwrap();
    assert_eq!(link(sup, "exe"), link(keeper, "exe"));
    let cmdline = |pid: i32| fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline(sup), cmdline(keeper), "a forked supervisor keeps the keeper's command line");
    let args: Vec<Vec<u8>> = cmdline(sup).split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    assert!(args.contains(&sidecar.cfg_path.as_os_str().as_encoded_bytes().to_vec()), "teardown finds it by the config path");
    assert!(!args.iter().any(|a| a == b"--worker" || a == b"--supervisor"));

    let (k, s) = (fd_targets(keeper), fd_targets(sup));
    for fd in 0..=2 {
        assert_eq!(s.get(&fd), k.get(&fd), "stdio {fd}");
    }
    assert!(k.values().any(|t| t == "anon_inode:[pidfd]"), "the keeper should hold its orphan watch: {k:?}");
    let audit = fs::canonicalize(&sidecar.cfg.audit_log).unwrap().display().to_string();
    let keeper_sockets: Vec<&String> = k.values().filter(|t| t.starts_with("socket:")).collect();
    assert_eq!(keeper_sockets.len(), 3, "{k:?}");
    let mut rest: Vec<&String> = s.iter().filter(|(fd, _)| **fd > 2).map(|(_, t)| t).collect();
    let mut take = |pred: &dyn Fn(&String) -> bool, what: &str| {
        let i = rest.iter().position(|t| pred(t)).unwrap_or_else(|| panic!("supervisor lacks {what}: {s:?}"));
        rest.remove(i);
    };
    for sock in &keeper_sockets {
        take(&|t| t == *sock, "a socket of the keeper's");
    }
    take(&|t| *t == audit, "the audit log");
    // The lifeline: the write end of the pipe whose read end the keeper holds.
    take(&|t| t.starts_with("pipe:") && k.values().any(|kt| kt == t), "the lifeline");
    take(&|t| t == "anon_inode:[signalfd]", "its signalfd");
    assert!(rest.is_empty(), "the supervisor holds descriptors beyond its set: {rest:?} (all: {s:?})");
    assert_eq!(status_field(&fs::read_to_string(format!("/proc/{sup}/status")).unwrap(), "Threads:"), "1");
}

/// The keeper forks the supervisor without exec (the worker is still
/// exec'd), at the first start and at a restart after SIGKILL.
#[test]
fn the_supervisor_is_a_fork_of_the_keeper_and_holds_only_its_descriptors() {
    let ns = Netns::new();
    let jail = ns.path();
    let sidecar = Sidecar::start_with(&ns, |cfg| {
        // The keeper then holds a pidfd the supervisor must not inherit.
        cfg.orphan_watch = Some(boundary_contract::OrphanWatch {
            creator_pid: std::process::id() as i32,
            jail_netns: jail,
            cleanup: vec!["/bin/true".into()],
        });
    });
    sidecar.assert_ready();
    let keeper = sidecar.child.id() as i32;
    let first = sidecar.pids().unwrap();
    assert_eq!(first.keeper, Some(keeper));
    assert_forked_supervisor(&sidecar, keeper, first.supervisor);
    let settled_fds = fd_targets(first.supervisor).len();
    // The worker is still exec'd: its own command line.
    let worker = sidecar.worker();
    assert!(fs::read(format!("/proc/{worker}/cmdline")).unwrap().split(|b| *b == 0).any(|a| a == b"--worker"));

    kill(Pid::from_raw(first.supervisor), Signal::SIGKILL).unwrap();
    let second = wait_until(Duration::from_secs(5), || {
        sidecar.pids().filter(|p| p.supervisor != first.supervisor && p.worker.is_some_and(|w| w != worker))
    })
    .unwrap_or_else(|| panic!("no new supervisor and worker; log:\n{}", sidecar.log()));
    assert!(is_gone(worker), "the old worker died with its supervisor");
    // The pid file names the new worker before it reports ready; until
    // then the supervisor also holds the readiness pipe's read end.
    wait_until(Duration::from_secs(5), || (fd_targets(second.supervisor).len() == settled_fds).then_some(()));
    assert_forked_supervisor(&sidecar, keeper, second.supervisor);
    assert_eq!(a_answers(&ask_udp(&ns, 3, "again.example.org", RecordType::A)), vec![(LOOPBACK, 5)]);
}
