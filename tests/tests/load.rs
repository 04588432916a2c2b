//! Load: many jails created and deleted concurrently leave nothing behind
//! and reuse a small address pool; one jail under 500 concurrent
//! connections decides every request right, audits each exactly once and
//! keeps its memory flat. Slots 230..=231.
//!
//! `BOUNDARY_LOAD_SECONDS` sets the duration of the connection test
//! (default 60).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boundary_contract::SidecarPids;
use boundary_tests::{poll_until, require_root, Bundle, Origin, Runtime, Settings};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

const RULES: &str = "domain=origin.test path=/allowed/*";

/// The tests here run one at a time: they count this process's
/// descriptors and the host's, and measure under load.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Descriptors open in this process.
fn own_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// The host's allocated file handles (first field of file-nr).
fn host_file_handles() -> u64 {
    let text = std::fs::read_to_string("/proc/sys/fs/file-nr").expect("/proc/sys/fs/file-nr");
    text.split_whitespace().next().and_then(|n| n.parse().ok()).expect("file-nr first field")
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn two_hundred_jail_cycles_twenty_at_a_time_leave_nothing_and_reuse_the_pool() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 32 blocks of /30: fewer than the 200 jails, more than the 20 at once.
    let rt = Runtime::new(Settings::new(230).pool("10.213.230.0/25"));
    let bundles: Vec<Bundle> = (0..20).map(|_| Bundle::sleeper()).collect();
    // Warm-up cycle, so one-time state (CA, netns directory) is in the baseline.
    rt.create_and_start(&bundles[0], "warm");
    rt.delete_force("warm").ok();
    let before = rt.leaks();
    let (fds_before, host_before) = (own_fds(), host_file_handles());
    let cycles: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
    let addrs: Mutex<BTreeSet<std::net::Ipv4Addr>> = Mutex::new(BTreeSet::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for (t, bundle) in bundles.iter().enumerate() {
            let (rt, cycles, addrs) = (&rt, &cycles, &addrs);
            s.spawn(move || {
                for n in 0..10 {
                    let id = format!("load-{t:02}-{n}");
                    let t0 = Instant::now();
                    rt.create(bundle, &id).ok();
                    addrs.lock().expect("addrs").insert(rt.jail(&id).host_addr);
                    rt.start(&id).ok();
                    rt.delete_force(&id).ok();
                    cycles.lock().expect("cycles").push(t0.elapsed());
                }
            });
        }
    });
    let total = started.elapsed();
    let mut cycles = cycles.into_inner().expect("cycles");
    cycles.sort();
    let addrs = addrs.into_inner().expect("addrs");
    eprintln!(
        "load: 200 cycles (create, start, delete --force; 20 at a time) in {total:.1?}: p50 {:.0?}, p95 {:.0?}, max {:.0?}; {} distinct jail addresses",
        percentile(&cycles, 50),
        percentile(&cycles, 95),
        cycles[cycles.len() - 1],
        addrs.len()
    );
    assert_eq!(cycles.len(), 200);
    assert!(addrs.len() <= 32 && addrs.iter().all(|a| rt.settings.pool_contains(*a)), "{addrs:?}");
    rt.leaks().assert_same_as(&before);
    let (fds_after, host_after) = (own_fds(), host_file_handles());
    eprintln!("load: descriptors of this process {fds_before} -> {fds_after}; host file handles {host_before} -> {host_after}");
    assert!(fds_after <= fds_before + 2, "this process holds {} more descriptors", fds_after - fds_before);
    // The host count moves with everything else on the machine; a leak of
    // a few descriptors per cycle would add well over this.
    assert!(host_after <= host_before + 1000, "host file handles grew from {host_before} to {host_after}");
}

/// Raises this process's descriptor limit to its hard limit.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    /// path -> status, for every request that got a response.
    answered: BTreeMap<String, u16>,
    wrong: Vec<String>,
    errors: Vec<String>,
    reconnects: u64,
}

/// One client: a keep-alive connection sending GETs until `deadline`,
/// alternating allowed and denied paths, each unique.
async fn client(c: usize, target: SocketAddr, deadline: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut n = 0u64;
    'outer: while Instant::now() < deadline {
        let stream = match tokio::net::TcpStream::connect(target).await {
            Ok(s) => s,
            Err(e) => {
                seen.errors.push(format!("client {c}: connect: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(x) => x,
            Err(e) => {
                seen.errors.push(format!("client {c}: handshake: {e}"));
                continue;
            }
        };
        tokio::spawn(conn);
        while Instant::now() < deadline {
            if sender.ready().await.is_err() {
                seen.reconnects += 1;
                continue 'outer;
            }
            let path = if n.is_multiple_of(2) { format!("/allowed/c{c}/{n}") } else { format!("/private/c{c}/{n}") };
            n += 1;
            let req = hyper::Request::get(path.as_str()).header(hyper::header::HOST, "origin.test").body(Empty::<Bytes>::new()).expect("request");
            let resp = match sender.send_request(req).await {
                Ok(r) => r,
                Err(e) => {
                    seen.errors.push(format!("{path}: {e}"));
                    continue 'outer;
                }
            };
            let status = resp.status().as_u16();
            let body = match resp.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    seen.errors.push(format!("{path}: body: {e}"));
                    continue 'outer;
                }
            };
            let right = if path.starts_with("/allowed/") {
                status == 200 && body == format!("origin saw GET {path}\n").as_bytes()
            } else {
                status == 403
            };
            if !right {
                seen.wrong.push(format!("{path}: {status} {:?}", String::from_utf8_lossy(&body)));
            }
            seen.answered.insert(path, status);
        }
    }
    seen
}

/// Runs `conns` clients from inside the jail namespace for `duration`.
fn load_from_jail(netns: PathBuf, target: SocketAddr, conns: usize, duration: Duration) -> Seen {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap_or_else(|e| panic!("{}: {e}", netns.display()));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the jail namespace");
        // Built here, so its threads are born in the jail namespace.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        runtime.block_on(async move {
            let deadline = Instant::now() + duration;
            let tasks: Vec<_> = (0..conns).map(|c| tokio::spawn(client(c, target, deadline))).collect();
            let mut all = Seen::default();
            for t in tasks {
                let s = t.await.expect("client task");
                all.answered.extend(s.answered);
                all.wrong.extend(s.wrong);
                all.errors.extend(s.errors);
                all.reconnects += s.reconnects;
            }
            all
        })
    })
    .join()
    .expect("load thread")
}

fn load_seconds() -> u64 {
    std::env::var("BOUNDARY_LOAD_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60)
}

fn sidecar_pids(state_root: &Path, id: &str) -> Vec<i32> {
    let text = std::fs::read(state_root.join(id).join("sidecar.pids")).expect("sidecar.pids");
    let p: SidecarPids = serde_json::from_slice(&text).expect("sidecar.pids is JSON");
    [p.keeper, Some(p.supervisor), p.worker].into_iter().flatten().collect()
}

#[test]
fn five_hundred_connections_for_a_minute_are_decided_right_audited_once_and_memory_stays_flat() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    raise_nofile();
    let origin = Origin::start(231);
    let rt = Runtime::new(Settings::new(231).pin("origin.test", origin.addr()));
    let bundle = Bundle::sleeper().env("BOUNDARY_ALLOW", RULES);
    let id = "load-conns";
    rt.create_and_start(&bundle, id);
    let netns = rt.jail(id).netns_path;
    let target = SocketAddr::from((origin.addr(), 80));
    let seconds = load_seconds();
    let pids = sidecar_pids(&rt.dirs.state_root, id);

    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, pids) = (sampling.clone(), pids.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                samples.push(pids.iter().map(|p| rss_kib(*p)).sum::<u64>());
                std::thread::sleep(Duration::from_millis(500));
            }
            samples
        })
    };
    let started = Instant::now();
    let seen = load_from_jail(netns, target, 500, Duration::from_secs(seconds));
    let took = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let samples = sampler.join().expect("sampler");

    let total = seen.answered.len();
    let allowed = seen.answered.keys().filter(|p| p.starts_with("/allowed/")).count();
    eprintln!(
        "load: 500 connections for {took:.1?}: {total} requests ({allowed} allowed, {} denied), {:.0} req/s, {} reconnects, {} errors",
        total - allowed,
        total as f64 / took.as_secs_f64(),
        seen.reconnects,
        seen.errors.len()
    );
    assert!(seen.wrong.is_empty(), "{} wrong decisions, e.g. {:?}", seen.wrong.len(), &seen.wrong[..seen.wrong.len().min(5)]);
    assert!(seen.errors.is_empty(), "{} failed requests, e.g. {:?}", seen.errors.len(), &seen.errors[..seen.errors.len().min(5)]);
    assert!(total >= 1000, "only {total} requests in {took:?}");
    assert_eq!(pids, sidecar_pids(&rt.dirs.state_root, id), "the sidecar restarted under load");

    // Memory: after a warm-up fifth, the last third is not above the first
    // third of the rest (plus slack for allocator noise).
    let mib = |k: u64| k as f64 / 1024.0;
    let rest = &samples[samples.len() / 5..];
    let third = (rest.len() / 3).max(1);
    let avg = |s: &[u64]| s.iter().sum::<u64>() / s.len().max(1) as u64;
    let (early, late, max) = (avg(&rest[..third]), avg(&rest[rest.len() - third..]), samples.iter().copied().max().unwrap_or(0));
    eprintln!("load: sidecar RSS (keeper+supervisor+worker) {:.1} MiB at start, early {:.1} MiB, late {:.1} MiB, max {:.1} MiB ({} samples)", mib(samples[0]), mib(early), mib(late), mib(max), samples.len());
    assert!(late <= early + early / 5 + 4096, "sidecar RSS grew from {:.1} MiB to {:.1} MiB", mib(early), mib(late));
    assert!(max < 512 * 1024, "sidecar RSS reached {:.1} MiB", mib(max));

    // The audit log: every request exactly once, seq contiguous.
    let records = poll_until(Duration::from_secs(30), "the audit log to hold every request", || {
        let r = rt.audit_records(id);
        (r.iter().filter(|r| r.kind == "http").count() >= total).then_some(r)
    });
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "audit seq must be contiguous (record {i})");
    }
    let mut audited: BTreeMap<String, (String, Option<u16>)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.kind == "http") {
        let path = r.url.as_deref().and_then(|u| u.strip_prefix("http://origin.test")).unwrap_or_default().to_string();
        let dup = audited.insert(path.clone(), (r.decision.clone(), r.status));
        assert!(dup.is_none(), "{path} audited twice");
    }
    assert_eq!(audited.len(), total, "one audit record per request");
    for (path, status) in &seen.answered {
        let want = if *status == 200 { "allow" } else { "deny" };
        assert_eq!(audited.get(path), Some(&(want.to_string(), Some(*status))), "{path}");
    }
    assert_eq!(origin.requests().len(), allowed, "the origin saw exactly the allowed requests");
    rt.delete_force(id).ok();
}
