//! The runc lifecycle of a jailed container, with runc and with crun, and
//! what it leaves behind (nothing); checkpoint and restore refused.
//! Slots 100..=109.

use std::collections::BTreeSet;
use std::path::Path;

use boundary_tests::probe::link_names;
use boundary_tests::{hostside, require_root, Bundle, Runtime, Settings};

/// create, start, state, exec, kill, delete — then nothing is left.
fn lifecycle(slot: u8, delegate: &str) {
    require_root();
    let rt = Runtime::new(Settings::new(slot).runtime(delegate));
    let before = rt.leaks();
    let id = format!("life-{delegate}");
    let bundle = Bundle::sleeper();

    rt.create(&bundle, &id).ok();
    assert_eq!(rt.state_json(&id)["status"], "created");
    let spec = bundle.on_disk();
    let netns = rt.dirs.state_root.join("netns").join(&id);
    let network: Vec<&serde_json::Value> =
        spec["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] == "network").collect();
    assert_eq!(network.len(), 1, "{spec:#}");
    assert_eq!(network[0]["path"].as_str().map(Path::new), Some(netns.as_path()), "the container joins the jail namespace");

    rt.start(&id).ok();
    let state = rt.state_json(&id);
    assert_eq!(state["status"], "running", "{state:#}");
    assert_eq!(state["id"], id.as_str());
    assert!(state["pid"].as_u64().is_some_and(|p| p > 0), "{state:#}");

    let out = rt.exec(&id, "echo hello from $(hostname); ip -o link").ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("hello from runc"), "{out}");
    assert_eq!(link_names(&lines.collect::<Vec<_>>().join("\n")), ["lo", "eth0"], "{out}");

    let jail = rt.jail(&id);
    let during = rt.leaks();
    // A private host side: the veth's host end and the table live there,
    // and the host's own namespace gets neither.
    let host_ns = jail.dedicated_host_netns.as_ref().filter(|_| jail.private_host).unwrap_or_else(|| panic!("no private host side: {jail:?}"));
    assert!(during.mounts.contains(&host_ns.display().to_string()), "private host side not mounted: {during}");
    assert!(during.links.is_empty() && during.nft_tables.is_empty(), "the host's namespace got jail pieces: {during}");
    hostside::ip(&jail, &["-o", "link", "show", &jail.host_if]);
    let table = hostside::command(&jail, "nft").args(["list", "table", "inet", &jail.nft_table]).output().expect("nft");
    assert!(table.status.success(), "nft table {} missing on the host side: {}", jail.nft_table, String::from_utf8_lossy(&table.stderr));
    assert!(!during.sidecars.is_empty(), "no sidecar running: {during}");
    assert!(during.mounts.contains(&netns.display().to_string()), "jail namespace not mounted: {during}");

    rt.kill(&id, "KILL").ok();
    rt.wait_stopped(&id);
    rt.delete(&id).ok();
    let errors: Vec<_> = rt.log_entries().into_iter().filter(|e| e["level"] == "error").collect();
    assert!(errors.is_empty(), "errors in the runtime log: {errors:?}");
    rt.state(&id).failed();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn lifecycle_with_runc() {
    lifecycle(100, "runc");
}

#[test]
fn lifecycle_with_crun() {
    require_root();
    if boundary_tests::hybrid_cgroups::run_here_for_crun("lifecycle_with_crun") {
        lifecycle(101, "crun");
    }
}

/// `run` in the foreground: the exit status passes through and the
/// poststop hook tears the jail down when runc destroys the container.
fn run_exit(slot: u8, delegate: &str) {
    let rt = Runtime::new(Settings::new(slot).runtime(delegate));
    let before = rt.leaks();
    let bundle = Bundle::new(&["sh", "-c", "ip -o link; exit 3"]);
    let id = format!("run-{delegate}");
    let out = rt.run(&bundle, &id);
    assert_eq!(out.code, Some(3), "the container's exit status must pass through:\n{out}");
    assert_eq!(link_names(&out.stdout), ["lo", "eth0"], "{out}");
    // No delete: the hook did the cleaning.
    rt.leaks().assert_same_as(&before);
    rt.state(&id).failed();
}

#[test]
fn run_passes_the_exit_status_through_and_cleans_up_itself() {
    require_root();
    run_exit(102, "runc");
}

#[test]
fn run_with_crun_cleans_up_itself() {
    require_root();
    if boundary_tests::hybrid_cgroups::run_here_for_crun("run_with_crun_cleans_up_itself") {
        run_exit(105, "crun");
    }
}

#[test]
fn two_containers_at_once_get_their_own_jails() {
    require_root();
    let rt = Runtime::new(Settings::new(103));
    let before = rt.leaks();
    let (ba, bb) = (Bundle::sleeper(), Bundle::sleeper());
    rt.create_and_start(&ba, "pair-a");
    rt.create_and_start(&bb, "pair-b");
    let (ja, jb) = (rt.jail("pair-a"), rt.jail("pair-b"));
    assert_ne!(ja.host_addr, jb.host_addr);
    assert_ne!(ja.host_if, jb.host_if);
    assert_ne!(ja.nft_table, jb.nft_table);
    for (id, j) in [("pair-a", &ja), ("pair-b", &jb)] {
        let out = rt.exec(id, "ip -o -4 addr show dev eth0").ok();
        assert!(out.stdout.contains(&format!("inet {}/30", j.jail_addr)), "{id} should have {}:\n{out}", j.jail_addr);
    }
    rt.delete_force("pair-a").ok();
    // The other one is untouched.
    assert_eq!(rt.state_json("pair-b")["status"], "running");
    rt.exec("pair-b", "true").ok();
    rt.delete_force("pair-b").ok();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn eight_concurrent_creates_all_succeed_with_distinct_addresses() {
    require_root();
    let rt = Runtime::new(Settings::new(104));
    let before = rt.leaks();
    let ids: Vec<String> = (0..8).map(|i| format!("many-{i}")).collect();
    let bundles: Vec<Bundle> = ids.iter().map(|_| Bundle::sleeper()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = ids.iter().zip(&bundles).map(|(id, b)| s.spawn(|| rt.create(b, id))).collect();
        for h in handles {
            h.join().expect("create thread").ok();
        }
    });
    let jails: Vec<_> = ids.iter().map(|id| rt.jail(id)).collect();
    let hosts: BTreeSet<_> = jails.iter().map(|j| j.host_addr).collect();
    let guests: BTreeSet<_> = jails.iter().map(|j| j.jail_addr).collect();
    let links: BTreeSet<_> = jails.iter().map(|j| j.host_if.clone()).collect();
    assert_eq!((hosts.len(), guests.len(), links.len()), (8, 8, 8), "addresses must be distinct: {jails:#?}");
    assert!(jails.iter().all(|j| rt.settings.pool_contains(j.host_addr)), "{jails:#?}");
    let during = rt.leaks();
    assert_eq!((during.links.len(), during.nft_tables.len()), (0, 0), "the host's namespace got jail pieces: {during}");
    for j in &jails {
        hostside::ip(j, &["-o", "link", "show", &j.host_if]);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = ids.iter().map(|id| s.spawn(|| rt.delete_force(id))).collect();
        for h in handles {
            h.join().expect("delete thread").ok();
        }
    });
    rt.leaks().assert_same_as(&before);
}

/// The boundary-sidecar processes serving `id`'s jail, by pid.
fn sidecar_pids(rt: &Runtime, id: &str) -> BTreeSet<u32> {
    let config = rt.dirs.state_root.join(id).join("sidecar.json").display().to_string();
    rt.leaks()
        .sidecars
        .iter()
        .filter(|s| s.split(' ').any(|a| a == config))
        .filter_map(|s| s.split(' ').next()?.parse().ok())
        .collect()
}

/// Once the container's init has exited and nothing is left in its jail,
/// the keeper stops the proxy (supervisor and worker) and releases the
/// jail's and the private host side's namespaces (their mounts) without
/// waiting for `delete`; while another
/// process is still in the jail it does neither. The audit log is whole and
/// `delete` still leaves nothing.
#[test]
fn the_proxy_stops_once_the_jail_is_empty_and_not_before() {
    require_root();
    let nsenter = boundary_tests::require::require_tool("nsenter");
    let rt = Runtime::new(Settings::new(106));
    let before = rt.leaks();

    // Another process in the jail (as a joined container would be): the
    // init's exit leaves the proxy running.
    let bundle = Bundle::sleeper();
    rt.create_and_start(&bundle, "stay");
    let serving = sidecar_pids(&rt, "stay");
    assert_eq!(serving.len(), 3, "keeper, supervisor and worker: {serving:?}");
    let netns = rt.dirs.state_root.join("netns").join("stay");
    let mut guest = std::process::Command::new(&nsenter)
        .arg(format!("--net={}", netns.display()))
        .args(["sleep", "60"])
        .spawn()
        .expect("nsenter");
    boundary_tests::deadline::poll_until(std::time::Duration::from_secs(5), "the guest in the jail", || {
        std::fs::read_link(format!("/proc/{}/ns/net", guest.id())).ok().filter(|l| l != &std::fs::read_link("/proc/self/ns/net").unwrap())
    });
    rt.kill("stay", "KILL").ok();
    rt.wait_stopped("stay");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(sidecar_pids(&rt, "stay"), serving, "a process is still in the jail: the proxy must keep serving");
    let mounted = rt.leaks().mounts;
    let host_side = rt.dirs.state_root.join("stay").join("hostns");
    assert!(
        mounted.contains(&netns.display().to_string()) && mounted.contains(&host_side.display().to_string()),
        "a process is still in the jail: its namespace and the private host side's stay mounted: {mounted:?}"
    );
    guest.kill().ok();
    guest.wait().ok();
    rt.delete("stay").ok();

    // Nothing else in the jail: the proxy stops, the keeper waits.
    let bundle = Bundle::new(&["sleep", "1"]);
    rt.create_and_start(&bundle, "gone");
    let serving = sidecar_pids(&rt, "gone");
    assert_eq!(serving.len(), 3, "keeper, supervisor and worker: {serving:?}");
    // A request the proxy denies (no rule names the sidecar's own address).
    let sidecar = rt.jail("gone").host_addr;
    let out = rt.exec("gone", &format!("curl -sS -m 2 -o /dev/null -w '%{{http_code}}' http://{sidecar}/denied-before-exit")).ok();
    assert_eq!(out.stdout.trim(), "403", "{out}");
    rt.wait_stopped("gone");
    let left = boundary_tests::deadline::poll_until(std::time::Duration::from_secs(5), "the proxy to stop", || {
        let now = sidecar_pids(&rt, "gone");
        (now.len() == 1).then_some(now)
    });
    assert!(left.is_subset(&serving), "only the keeper is left: {left:?} of {serving:?}");
    // The empty jail's namespace and its private host side's are released
    // with the proxy, not at `delete`: their mounts are gone, their files
    // and the state stay for `delete`.
    let jail_netns = rt.dirs.state_root.join("netns").join("gone");
    let host_side = rt.dirs.state_root.join("gone").join("hostns");
    let mounted = rt.leaks().mounts;
    assert!(
        !mounted.contains(&jail_netns.display().to_string()) && !mounted.contains(&host_side.display().to_string()),
        "the empty jail's namespaces are still mounted: {mounted:?}"
    );
    assert!(jail_netns.exists() && rt.dirs.state_root.join("gone").join("jail.json").exists(), "the jail's files wait for delete");
    let audit = std::fs::read_to_string(rt.audit_path("gone")).unwrap_or_default();
    assert!(audit.contains("/denied-before-exit"), "the worker's decisions are in the audit log before it stopped:\n{audit}");
    rt.delete("gone").ok();
    let errors: Vec<_> = rt.log_entries().into_iter().filter(|e| e["level"] == "error").collect();
    assert!(errors.is_empty(), "errors in the runtime log: {errors:?}");
    rt.leaks().assert_same_as(&before);
}

/// `checkpoint` and `restore` are refused with the reason in the `--log`
/// file, before runc runs: the running container is left running in its
/// jail (a checkpoint stops it), and no restored container exists.
#[test]
fn checkpoint_and_restore_are_refused_and_the_container_keeps_running() {
    require_root();
    let rt = Runtime::new(Settings::new(107));
    let before = rt.leaks();
    let bundle = Bundle::sleeper();
    rt.create_and_start(&bundle, "ckpt");
    let images = tempfile::tempdir().expect("tempdir");
    let image = images.path().to_str().expect("utf-8");
    let out = rt.cmd(&["checkpoint", "--image-path", image, "ckpt"]).failed();
    assert!(out.log_errors().iter().any(|e| e.contains("does not checkpoint containers") && e.contains("outside its network jail")), "{out}");
    assert_eq!(rt.state_json("ckpt")["status"], "running", "a refused checkpoint leaves the container running");
    let bundle_dir = bundle.path().to_str().expect("utf-8");
    let out = rt.cmd(&["restore", "--bundle", bundle_dir, "--image-path", image, "--detach", "ckpt-restored"]).failed();
    assert!(out.log_errors().iter().any(|e| e.contains("does not restore containers")), "{out}");
    rt.state("ckpt-restored").failed();
    assert_eq!(std::fs::read_dir(images.path()).expect("read image dir").count(), 0, "runc wrote a checkpoint image");
    rt.cmd(&["delete", "--force", "ckpt"]).ok();
    rt.leaks().assert_same_as(&before);
}

/// A `delete` that leaves out the runtime root the container was created
/// under (or names another) deletes another container of that id, if any:
/// the delegate fails, and the live container's jail is left alone, since
/// the container still exists under its own root.
#[test]
fn a_delete_under_another_root_leaves_the_live_jail_alone() {
    require_root();
    let rt = Runtime::new(Settings::new(108));
    let before = rt.leaks();
    let b = Bundle::sleeper();
    rt.create_and_start(&b, "rooted");
    let serving = sidecar_pids(&rt, "rooted");
    assert!(!serving.is_empty(), "the jail has a sidecar");
    let other = tempfile::tempdir().expect("temp dir");
    let other_root = other.path().display().to_string();
    for args in [vec!["delete", "rooted"], vec!["delete", "--force", "rooted"], vec!["--root", &other_root, "delete", "rooted"]] {
        let out = rt.raw(&args);
        // runc's `delete --force` of no container succeeds.
        assert_eq!(out.success(), args.contains(&"--force"), "no container of that id under that root: {out}");
        assert_eq!(sidecar_pids(&rt, "rooted"), serving, "{args:?} left the sidecar alone");
        assert!(rt.dirs.state_root.join("rooted").join("jail.json").is_file(), "{args:?} left the jail's state alone");
        rt.exec("rooted", "ip -o link show dev eth0").ok();
    }
    assert_eq!(rt.state_json("rooted")["status"], "running");
    rt.delete_force("rooted").ok();
    rt.leaks().assert_same_as(&before);
}

/// Two creates of one id at once: one claims the id and goes on, the other
/// fails and touches nothing of the first one's jail.
#[test]
fn two_creates_of_one_id_at_once_leave_one_working_jail() {
    require_root();
    let rt = Runtime::new(Settings::new(109));
    let before = rt.leaks();
    for round in 0..4 {
        let (ba, bb) = (Bundle::sleeper(), Bundle::sleeper());
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| rt.create(&ba, "twin"));
            let b = s.spawn(|| rt.create(&bb, "twin"));
            (a.join().expect("create thread"), b.join().expect("create thread"))
        });
        assert_eq!(a.success() as u8 + b.success() as u8, 1, "round {round}: exactly one create succeeds:\n{a}\n{b}");
        let failed = if a.success() { &b } else { &a };
        let said = failed.log_errors().join("\n");
        assert!(said.contains("already has a jail") || said.contains("already exists"), "round {round}: {failed}");
        rt.start("twin").ok();
        assert!(!sidecar_pids(&rt, "twin").is_empty(), "round {round}: the jail has its sidecar");
        let jail = rt.jail("twin");
        hostside::ip(&jail, &["-o", "link", "show", &jail.host_if]);
        rt.exec("twin", "ip -o link show dev eth0").ok();
        rt.delete_force("twin").ok();
        rt.leaks().assert_same_as(&before);
    }
}
