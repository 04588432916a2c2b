//! Faults: the sidecar killed under traffic (worker and supervisor), the
//! shim killed midway through `create`, dockerd restarted under jailed
//! containers, an upstream that blackholes or refuses. Slots 220..=229.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boundary_contract::{AuditRecord, SidecarPids};
use boundary_tests::docker::{self, DockerRuntime};
use boundary_tests::{binaries, poll_until, require_root, require_tool, Bundle, LeakSnapshot, Origin, Runtime, Settings};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const RULES: &str = "domain=origin.test path=/allowed/*";
/// How fast a killed sidecar must serve again.
const RESTART_LIMIT: Duration = Duration::from_secs(1);

/// A jailed `sleep` with [`RULES`] and an origin; fields drop in order.
struct World {
    rt: Runtime,
    _bundle: Bundle,
    origin: Origin,
    id: &'static str,
}

impl World {
    fn start(slot: u8, id: &'static str, settings: impl FnOnce(Settings, &Origin) -> Settings, rules: &str) -> World {
        require_root();
        let origin = Origin::start(slot);
        let s = Settings::new(slot).pin("origin.test", origin.addr()).upstream_ca(&origin.ca_file());
        let rt = Runtime::new(settings(s, &origin));
        let bundle = Bundle::sleeper().env("BOUNDARY_ALLOW", rules);
        rt.create_and_start(&bundle, id);
        World { rt, _bundle: bundle, origin, id }
    }

    fn netns(&self) -> PathBuf {
        self.rt.jail(self.id).netns_path
    }

    /// Any TCP destination: the host side redirects every connection from
    /// the jail to the sidecar, which judges by the Host header.
    fn target(&self) -> SocketAddr {
        SocketAddr::from((self.origin.addr(), 80))
    }

    fn pids(&self) -> SidecarPids {
        let path = self.rt.dirs.state_root.join(self.id).join("sidecar.pids");
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&text).expect("sidecar.pids is JSON")
    }
}

/// Runs `f` on a thread that entered the network namespace at `netns`:
/// its sockets are the jail's, exactly as the container's would be.
fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap_or_else(|e| panic!("{}: {e}", netns.display()));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the jail namespace");
        f()
    })
}

/// One HTTP/1.1 GET with `Connection: close`: the status and body, or why
/// there is none (refused, reset, cut, timed out).
fn http_get(target: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// What a correct decision looks like for `path`.
fn assert_decided(path: &str, got: &(u16, String)) {
    if path.starts_with("/allowed/") {
        assert_eq!((got.0, got.1.as_str()), (200, format!("origin saw GET {path}\n").as_str()), "{path}");
    } else {
        assert_eq!(got.0, 403, "{path}: {got:?}");
    }
}

/// A request's path and its answer (status, body) or why there is none.
type Outcome = (String, Result<(u16, String), String>);

/// Clients in the jail sending a steady stream of requests, half allowed,
/// half denied; every outcome is kept.
struct Traffic {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(w: &World, clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, outcomes, next, target) = (stop.clone(), outcomes.clone(), next.clone(), w.target());
                in_netns(&w.netns(), move || {
                    while !stop.load(Ordering::SeqCst) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        let path = if n.is_multiple_of(2) { format!("/allowed/t{n}") } else { format!("/private/t{n}") };
                        let got = http_get(target, "origin.test", &path, Duration::from_secs(5));
                        outcomes.lock().expect("outcomes").push((path, got));
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Traffic { stop, outcomes, threads }
    }

    fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("traffic thread");
        }
        Arc::try_unwrap(self.outcomes).expect("outcomes owner").into_inner().expect("outcomes")
    }
}

/// `seq` counts 1, 2, 3, ... with no gap and no repeat, and every record
/// for a request carries the decision its path calls for.
fn assert_audit_sound(records: &[AuditRecord]) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "audit seq must be contiguous across the restart (record {i}): {r:?}");
    }
    for r in records.iter().filter(|r| r.kind == "http") {
        let path = r.url.as_deref().and_then(|u| u.strip_prefix("http://origin.test")).unwrap_or_default();
        let want = if path.starts_with("/allowed/") { ("allow", 200) } else { ("deny", 403) };
        assert_eq!((r.decision.as_str(), r.status), (want.0, Some(want.1)), "{r:?}");
    }
}

/// Kills `victim` of the sidecar (worker or supervisor) while clients in
/// the jail have traffic in flight, and checks the boundary throughout.
fn kill_under_traffic(slot: u8, id: &'static str, victim: &str) {
    let w = World::start(slot, id, |s, _| s, RULES);
    let target = w.target();
    let netns = w.netns();
    let before = w.pids();
    assert!(before.keeper.is_some(), "the pid file names the keeper: {before:?}");
    assert_decided("/allowed/first", &http_get(target, "origin.test", "/allowed/first", Duration::from_secs(5)).expect("first request"));

    // A request caught half-sent at the moment of the kill.
    let half = in_netns(&netns, move || {
        let mut s = TcpStream::connect(target).expect("connect before the kill");
        s.write_all(b"GET /allowed/half-sent HTTP/1.1\r\nHost: origin.test\r\n").expect("first half");
        s
    })
    .join()
    .expect("half-sent request");

    let traffic = Traffic::start(&w, 4);
    std::thread::sleep(Duration::from_millis(300));
    let pid = match victim {
        "worker" => before.worker.expect("a worker pid"),
        _ => before.supervisor,
    };
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL the sidecar process");
    let killed_at = Instant::now();
    // kill(2) returns before the victim has died; the worker serving the
    // half-sent connection dies with it (itself, or by its parent-death
    // signal when the supervisor goes). Wait for that death, not longer.
    let old_worker = before.worker.expect("a worker pid");
    let gone = |p: i32| std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |st| st.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
    poll_until(Duration::from_secs(2), &format!("the killed {victim} ({pid}) and the worker ({old_worker}) gone"), || (gone(pid) && gone(old_worker)).then_some(()));

    // The half-sent request is cut, never forwarded by the next worker.
    let mut half = half;
    let _ = half.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = half.write_all(b"\r\n");
    let mut rest = Vec::new();
    let cut = half.read_to_end(&mut rest);
    assert!(cut.is_err() || rest.is_empty(), "a connection the killed process held was answered: {:?}", String::from_utf8_lossy(&rest));

    // Serving again within a second: a fresh request gets its decision.
    let served = in_netns(&netns, move || loop {
        if let Ok(got) = http_get(target, "origin.test", "/allowed/probe", Duration::from_millis(900)) {
            return (got, killed_at.elapsed());
        }
        if killed_at.elapsed() > Duration::from_secs(10) {
            panic!("the sidecar did not serve again within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    })
    .join()
    .expect("probe thread");
    assert_decided("/allowed/probe", &served.0);
    eprintln!("faults: {victim} SIGKILLed; serving again after {:?}", served.1);
    assert!(served.1 < RESTART_LIMIT, "serving again took {:?} after the {victim} was killed", served.1);
    std::thread::sleep(Duration::from_millis(300));
    let outcomes = traffic.stop();

    // The tree after the restart: same keeper, new victim, old one gone.
    let after = poll_until(Duration::from_secs(5), "a new pid file", || Some(w.pids()).filter(|p| p.worker.is_some() && p.worker != before.worker));
    assert_eq!(after.keeper, before.keeper, "{before:?} -> {after:?}");
    if victim == "supervisor" {
        assert_ne!(after.supervisor, before.supervisor, "{before:?} -> {after:?}");
    } else {
        assert_eq!(after.supervisor, before.supervisor, "{before:?} -> {after:?}");
    }
    for old in [Some(pid), before.worker].into_iter().flatten() {
        poll_until(Duration::from_secs(2), &format!("old sidecar process {old} to be gone"), || {
            std::fs::read_to_string(format!("/proc/{old}/stat")).map_or(true, |s| s.contains(") Z ")).then_some(())
        });
    }

    // Every outcome is the right decision or a failure (fail closed).
    let decided: Vec<_> = outcomes.iter().filter_map(|(p, o)| o.as_ref().ok().map(|g| (p, g))).collect();
    for (path, got) in &decided {
        assert_decided(path, got);
    }
    let failed = outcomes.len() - decided.len();
    eprintln!("faults: {} requests in flight around the kill, {failed} cut", outcomes.len());
    assert!(decided.len() > failed, "most requests must have been decided: {outcomes:?}");

    // Decisions after the restart are the same as before.
    let after_restart = in_netns(&netns, move || {
        ["/allowed/after", "/private/after"].map(|p| (p, http_get(target, "origin.test", p, Duration::from_secs(5)).expect("request after the restart")))
    })
    .join()
    .expect("after thread");
    for (p, got) in &after_restart {
        assert_decided(p, got);
    }

    // Nothing unjudged reached the origin: only allowed paths, never the
    // half-sent request.
    let seen = w.origin.requests();
    assert!(seen.iter().all(|r| r.starts_with("http GET /allowed/") && !r.contains("half-sent")), "{seen:?}");
    let records = poll_until(Duration::from_secs(5), "the audit log to hold the last requests", || {
        let r = w.rt.audit_records(w.id);
        r.iter().any(|r| r.url.as_deref() == Some("http://origin.test/private/after")).then_some(r)
    });
    assert_audit_sound(&records);
    let urls: Vec<&str> = records.iter().filter_map(|r| r.url.as_deref()).collect();
    let unique: BTreeSet<&str> = urls.iter().copied().collect();
    assert_eq!(unique.len(), urls.len(), "a request was audited twice");
    w.rt.delete_force(w.id).ok();
    w.rt.leaks().assert_same_as(&LeakSnapshot::default());
}

#[test]
fn a_worker_killed_under_traffic_fails_closed_and_is_replaced_within_a_second() {
    kill_under_traffic(220, "kill-worker", "worker");
}

#[test]
fn a_supervisor_killed_under_traffic_fails_closed_and_is_restarted_within_a_second() {
    kill_under_traffic(221, "kill-supervisor", "supervisor");
}

/// Runs `nft` in the origin's namespace.
fn origin_nft(origin: &Origin, script: &str) {
    let out = Command::new(require_tool("ip"))
        .args(["netns", "exec", origin.netns()])
        .arg(require_tool("nft"))
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run nft in the origin namespace");
    assert!(out.status.success(), "nft in the origin namespace: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_unreachable_upstream_gets_a_502_in_bounded_time_and_is_audited() {
    let rules = format!("domain=blackhole.test;domain=refused.test;{RULES}");
    let w = World::start(224, "unreachable", |s, o| s.pin("blackhole.test", o.addr()).pin("refused.test", o.addr()), &rules);
    // Port 81 of the origin drops every SYN (a blackhole); nothing listens
    // on port 82 (the origin's kernel answers with a reset).
    origin_nft(&w.origin, "table inet blackhole {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 81 drop\n }\n}\n");
    let target = w.target();
    let cases = [("blackhole.test:81", "/slow"), ("refused.test:82", "/refused"), ("origin.test", "/allowed/meanwhile")];
    let handles: Vec<_> = cases
        .iter()
        .map(|&(host, path)| {
            in_netns(&w.netns(), move || {
                let started = Instant::now();
                (host, path, http_get(target, host, path, Duration::from_secs(60)), started.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("request thread")).collect();
    for (host, path, got, took) in &results {
        eprintln!("faults: {host}{path}: {:?} after {took:?}", got.as_ref().map(|g| g.0));
        let got = got.as_ref().unwrap_or_else(|e| panic!("{host}{path}: no answer: {e}"));
        if *host == "origin.test" {
            assert_decided(path, got);
            assert!(*took < Duration::from_secs(5), "an allowed request waited {took:?} behind an unreachable upstream");
        } else {
            assert_eq!(got.0, 502, "{host}{path}: {got:?}");
            assert!(*took < Duration::from_secs(15), "{host}{path}: the 502 took {took:?}");
        }
    }
    let records = poll_until(Duration::from_secs(5), "the audit log to hold the 502s", || {
        let r = w.rt.audit_records(w.id);
        (r.iter().filter(|r| r.status == Some(502)).count() == 2).then_some(r)
    });
    for (host, reason) in [("blackhole.test", "timed out"), ("refused.test", "refused")] {
        let r = records.iter().find(|r| r.host.as_deref() == Some(host)).unwrap_or_else(|| panic!("no audit record for {host}: {records:#?}"));
        assert_eq!((r.decision.as_str(), r.status), ("allow", Some(502)), "{r:?}");
        assert!(r.reason.as_deref().is_some_and(|x| x.contains(reason)), "{host}: the reason should say {reason:?}: {r:?}");
    }
    assert_eq!(w.origin.requests(), ["http GET /allowed/meanwhile host=origin.test"]);
}

/// Processes of container `id` (runc puts them in a cgroup named after it)
/// or mentioning `root` on their command line.
fn processes_of(id: &str, root: &Path) -> BTreeSet<String> {
    let root = root.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) {
                return None;
            }
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).replace('\0', " ");
            let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            let ours = cmdline.contains(&root) || cgroup.lines().any(|l| l.ends_with(&format!("/{id}")));
            ours.then(|| format!("{pid} {cmdline}"))
        })
        .collect()
}

/// `boundary-runc create` started the way an engine starts it, not waited for.
fn spawn_create(rt: &Runtime, bundle: &Bundle, id: &str) -> std::process::Child {
    Command::new(&binaries().runtime)
        .env("BOUNDARY_RUNC_CONFIG", &rt.config_file)
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("--root")
        .arg(&rt.runc_root)
        .arg("--log")
        .arg(&rt.log_file)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(bundle.path())
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn boundary-runc create")
}

#[test]
fn a_shim_killed_anywhere_in_create_leaves_nothing_after_delete_force_and_doctor_clean() {
    require_root();
    let rt = Runtime::new(Settings::new(222));
    let bundle = Bundle::sleeper();
    let before = rt.leaks();
    // The full create, measured.
    let started = Instant::now();
    let status = spawn_create(&rt, &bundle, "kill-measure").wait().expect("wait for create");
    let full = started.elapsed();
    assert!(status.success(), "create failed: {}", std::fs::read_to_string(&rt.log_file).unwrap_or_default());
    rt.delete_force("kill-measure").ok();
    rt.leaks().assert_same_as(&before);

    const POINTS: u32 = 30;
    let mut outcomes = Vec::new();
    for i in 0..POINTS {
        let delay = full * i / (POINTS - 1);
        let id = format!("kill-{i:02}");
        let mut child = spawn_create(&rt, &bundle, &id);
        std::thread::sleep(delay);
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let status = child.wait().expect("wait for the killed create");
        rt.delete_force(&id).ok();
        let doctor = rt.raw(&["doctor", "--clean"]);
        let cleaned = Instant::now();
        let settled = cleaned + Duration::from_secs(5);
        loop {
            let now = rt.leaks();
            let procs = processes_of(&id, &rt.dirs.state_root);
            if now == before && procs.is_empty() {
                break;
            }
            if Instant::now() > settled {
                now.assert_same_as(&before);
                panic!("processes of {id} left after a kill at {delay:?}: {procs:?}\ndoctor:\n{doctor}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        outcomes.push(format!("{delay:.0?}: {status}, settled {:.0?} after doctor", cleaned.elapsed()));
        let found = doctor.stdout.lines().any(|l| l.starts_with("FAIL") && l.contains("leftover"));
        assert!(!found, "doctor found leftovers after delete --force (kill at {delay:?}):\n{doctor}");
    }
    eprintln!("faults: full create {full:?}; kills: {outcomes:?}");
}

/// Stops dockerd (SIGTERM: without live-restore it stops its containers)
/// and starts it again with the same command line, detached as
/// [`docker::daemon`] starts it; holds the daemon.json lock meanwhile.
fn restart_dockerd() -> Duration {
    let _lock = docker::lock_daemon_json();
    let out = Command::new("pidof").arg("dockerd").output().expect("run pidof");
    let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect();
    assert_eq!(pids.len(), 1, "exactly one dockerd must run: {pids:?}");
    let pid = pids[0];
    let argv: Vec<String> = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("dockerd cmdline"))
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let started = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM dockerd");
    poll_until(Duration::from_secs(90), "dockerd to exit", || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()));
    let sh = format!("{} >>{} 2>&1 </dev/null &", argv.join(" "), docker::DAEMON_LOG);
    assert!(Command::new("sh").arg("-c").arg(&sh).status().expect("start dockerd").success(), "{sh}");
    poll_until(Duration::from_secs(60), "dockerd to answer again", || docker::docker(&["info"]).success().then_some(()));
    started.elapsed()
}

#[test]
fn jailed_containers_are_jailed_again_after_dockerd_restarts_and_nothing_leaks() {
    require_root();
    let origin = Origin::start(223);
    let rt = Runtime::new(Settings::new(223).pin("origin.test", origin.addr()).upstream_ca(&origin.ca_file()));
    let dr = DockerRuntime::register(&rt);
    let before = rt.leaks();
    let allow = format!("BOUNDARY_ALLOW={RULES}");
    let names = ["bnd-e2e-223-a", "bnd-e2e-223-b"];
    let get = |c: &str, url: &str| {
        let out = docker::exec(c, &format!("curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}' '{url}'")).ok();
        out.stdout.trim().to_string()
    };
    let check = |when: &str| {
        for c in names {
            let id = docker::inspect(c, "{{.Id}}");
            let jail = rt.jail(&id);
            assert!(jail.dedicated_host_netns.is_some(), "{when}: {c} is not in Docker's shape: {jail:?}");
            assert!(rt.leaks().sidecars.iter().any(|s| s.contains(&id)), "{when}: {c} has no sidecar");
            assert_eq!(get(c, "http://origin.test/allowed/x"), "200", "{when}: {c}");
            assert_eq!(get(c, "http://origin.test/private"), "403", "{when}: {c}");
        }
    };
    for c in names {
        dr.run(c, &["--stop-timeout", "2", "-e", &allow], &[]).ok();
    }
    check("before the restart");
    let took = restart_dockerd();
    eprintln!("faults: dockerd restarted in {took:?}");
    // Without live-restore dockerd stopped the containers: their jails are
    // gone with them.
    for c in names {
        assert_eq!(docker::inspect(c, "{{.State.Running}}"), "false", "{c} still runs: live-restore is on?");
    }
    poll_until(Duration::from_secs(10), "the stopped containers' jails to be gone", || (rt.leaks() == before).then_some(()));
    for c in names {
        docker::docker(&["start", c]).ok();
    }
    check("after the restart and docker start");
    let seen = origin.requests();
    assert!(seen.iter().all(|r| r.starts_with("http GET /allowed/x")), "{seen:?}");
    dr.remove_containers();
    poll_until(Duration::from_secs(10), "the removed containers' jails to be gone", || (rt.leaks() == before).then_some(()));
    rt.leaks().assert_same_as(&before);
}
