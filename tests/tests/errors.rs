//! Failures reach the engine: as `{"level":"error",...}` lines in the
//! `--log` file (containerd shows the last one), on stderr, with a non-zero
//! exit, and with nothing left behind. Slots 120..=129.

use boundary_tests::{require_root, Bundle, Outcome, Runtime, Settings};

/// The failure is in the log as a JSON error entry containing every one
/// of `needles`, and on stderr.
#[track_caller]
fn assert_reported(out: &Outcome, needles: &[&str]) {
    assert!(matches!(out.code, Some(c) if c != 0), "expected a failure:\n{out}");
    let errors = out.log_errors();
    let last = errors.last().unwrap_or_else(|| panic!("no error entry in the --log file:\n{out}"));
    for n in needles {
        assert!(last.contains(n), "the last log error should mention {n:?}: {last:?}\n{out}");
        assert!(out.stderr.contains(n), "stderr should mention {n:?}:\n{out}");
    }
    for e in &out.log {
        assert!(e["time"].is_string() && e["msg"].is_string() && e["level"].is_string(), "log entry not in runc's shape: {e}");
    }
}

#[test]
fn malformed_config_json_is_reported() {
    require_root();
    let rt = Runtime::new(Settings::new(120));
    let before = rt.leaks();
    let bundle = Bundle::sleeper();
    bundle.overwrite_config(b"{\"ociVersion\": \"1.0.2\", \"process\": ");
    let out = rt.create(&bundle, "bad-json");
    assert_reported(&out, &["malformed bundle config", &bundle.config_path().display().to_string()]);
    rt.leaks().assert_same_as(&before);
}

#[test]
fn missing_bundle_is_reported() {
    require_root();
    let rt = Runtime::new(Settings::new(121));
    let before = rt.leaks();
    let out = rt.cmd(&["create", "--bundle", "/nonexistent/boundary-e2e-bundle", "no-bundle"]);
    assert_reported(&out, &["cannot read bundle config", "/nonexistent/boundary-e2e-bundle/config.json"]);
    rt.leaks().assert_same_as(&before);
}

#[test]
fn invalid_allow_rule_is_reported_with_the_rule() {
    require_root();
    let rt = Runtime::new(Settings::new(122));
    let before = rt.leaks();
    let bundle = Bundle::sleeper().env("BOUNDARY_ALLOW", "domain=origin.test;domain=github.*");
    let out = rt.create(&bundle, "bad-rule");
    assert_reported(&out, &["BOUNDARY_ALLOW", "github.*"]);
    rt.leaks().assert_same_as(&before);

    let bundle = Bundle::sleeper().annotation("io.boundary.allow", "domain=example.com:8080");
    let out = rt.create(&bundle, "bad-annotation");
    assert_reported(&out, &["io.boundary.allow", "example.com:8080"]);
    rt.leaks().assert_same_as(&before);
}

#[test]
fn full_address_pool_is_reported() {
    require_root();
    let rt = Runtime::new(Settings::new(123).pool("10.213.123.0/30"));
    let before = rt.leaks();
    let (first, second) = (Bundle::sleeper(), Bundle::sleeper());
    rt.create(&first, "pool-1").ok();
    let during = rt.leaks();
    let out = rt.create(&second, "pool-2");
    assert_reported(&out, &["is full", "10.213.123.0/30"]);
    // The failed create took nothing and broke nothing.
    rt.leaks().assert_same_as(&during);
    assert_eq!(rt.state_json("pool-1")["status"], "created");
    rt.delete("pool-1").ok();
    // The block is free again.
    rt.create(&second, "pool-2").ok();
    rt.delete("pool-2").ok();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn missing_delegate_runtime_is_reported() {
    require_root();
    let rt = Runtime::new(Settings::new(124).runtime("/nonexistent/runc"));
    let before = rt.leaks();
    let bundle = Bundle::sleeper();
    let out = rt.create(&bundle, "no-runc");
    assert_reported(&out, &["/nonexistent/runc"]);
    rt.leaks().assert_same_as(&before);
    let out = rt.state("no-runc");
    assert_reported(&out, &["/nonexistent/runc"]);
}

/// A bundle runc itself refuses (after boundary-runc built the jail and
/// exec'd it): its rootfs does not exist.
fn bundle_runc_refuses() -> Bundle {
    Bundle::sleeper().edit(|s| s["root"]["path"] = serde_json::json!("/nonexistent/boundary-e2e-rootfs"))
}

#[test]
fn a_create_that_runc_refuses_is_reported_and_leaves_nothing_behind() {
    require_root();
    let rt = Runtime::new(Settings::new(125));
    let before = rt.leaks();
    let bundle = bundle_runc_refuses();
    let out = rt.create(&bundle, "runc-refuses");
    assert_reported(&out, &["/nonexistent/boundary-e2e-rootfs"]);
    // No engine call follows here: a plain `runc create` user gets no
    // `delete`, so the jail must not outlive the failed create. The
    // sidecar's orphan watch sees runc exit with no process in the jail and
    // tears it down, shortly after `create` returns.
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while rt.leaks() != before && std::time::Instant::now() < settled {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    rt.leaks().assert_same_as(&before);
}

#[test]
fn a_created_container_is_not_mistaken_for_a_failed_create() {
    require_root();
    let rt = Runtime::new(Settings::new(140));
    let before = rt.leaks();
    let bundle = Bundle::sleeper();
    rt.create(&bundle, "created-not-started").ok();
    // Give the orphan watch time to look: the jail must survive, because
    // runc's init is waiting inside it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Panics with "cannot read .../jail.json" if the jail was torn down.
    let jail = rt.jail("created-not-started");
    assert_eq!(jail.container_id, "created-not-started");
    rt.start("created-not-started").ok();
    rt.exec("created-not-started", "ip -o link show eth0").ok();
    rt.delete_force("created-not-started").ok();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn delete_force_after_a_refused_create_removes_the_jail() {
    require_root();
    let rt = Runtime::new(Settings::new(126));
    let before = rt.leaks();
    let bundle = bundle_runc_refuses();
    rt.create(&bundle, "refused-then-deleted").failed();
    // What containerd and Docker send after a failed create.
    rt.delete_force("refused-then-deleted");
    rt.leaks().assert_same_as(&before);
}

#[test]
fn a_second_create_with_the_same_id_fails_and_keeps_the_first() {
    require_root();
    let rt = Runtime::new(Settings::new(127));
    let before = rt.leaks();
    let (first, second) = (Bundle::sleeper(), Bundle::sleeper());
    rt.create_and_start(&first, "twice");
    let during = rt.leaks();
    let out = rt.create(&second, "twice");
    assert_reported(&out, &["twice"]);
    rt.leaks().assert_same_as(&during);
    rt.exec("twice", "ip -o link show eth0").ok();
    rt.delete_force("twice").ok();
    rt.leaks().assert_same_as(&before);
    // The id can be used again once deleted.
    rt.create_and_start(&second, "twice");
    rt.delete_force("twice").ok();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn delete_without_force_of_a_running_container_fails_and_keeps_the_jail() {
    require_root();
    let rt = Runtime::new(Settings::new(128));
    let before = rt.leaks();
    let bundle = Bundle::sleeper();
    rt.create_and_start(&bundle, "busy");
    let during = rt.leaks();
    rt.delete("busy").failed();
    rt.leaks().assert_same_as(&during);
    assert_eq!(rt.state_json("busy")["status"], "running");
    rt.exec("busy", "ip -o link show eth0").ok();
    rt.kill("busy", "KILL").ok();
    rt.wait_stopped("busy");
    rt.delete("busy").ok();
    rt.leaks().assert_same_as(&before);
}

#[test]
fn a_create_whose_process_cannot_start_leaves_nothing_behind() {
    require_root();
    let rt = Runtime::new(Settings::new(129));
    let before = rt.leaks();
    let bundle = Bundle::new(&["/nonexistent-binary"]);
    let out = rt.create(&bundle, "no-binary");
    // runc got as far as creating the container, so it destroyed it and ran
    // the poststop hook.
    assert_reported(&out, &["/nonexistent-binary"]);
    rt.leaks().assert_same_as(&before);
}

/// The sidecar starts after `create` has exec'd runc, behind the gate hook
/// (`boundary_runc::gate`); its failure must still fail the create, reach
/// the log first and in full, and leave nothing once `create` returns.
#[test]
fn a_sidecar_that_cannot_start_fails_the_create_behind_the_gate() {
    require_root();
    let rt = Runtime::new(Settings::new(141).sidecar(std::path::Path::new("/bin/false")));
    let before = rt.leaks();
    let bundle = Bundle::sleeper();
    let out = rt.create(&bundle, "no-sidecar");
    assert!(matches!(out.code, Some(c) if c != 0), "expected a failure:\n{out}");
    let errors = out.log_errors();
    let ours = errors.first().unwrap_or_else(|| panic!("no error entry in the --log file:\n{out}"));
    assert!(ours.starts_with("boundary-runc: sidecar failed to start: it exited before it was ready"), "{ours:?}\n{out}");
    let last = errors.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("the jail of no-sidecar could not be built: sidecar failed to start"), "runc's error names the reason: {last:?}\n{out}");
    assert!(out.stderr.contains("sidecar failed to start"), "{out}");
    rt.leaks().assert_same_as(&before);
    rt.state("no-sidecar").failed();
}

/// crun's error for a failed hook carries only its exit status, not what
/// the hook said: the gate hook's status says which way the jail failed
/// (10: it could not be built), and the reason is the log's line before.
#[test]
fn with_crun_the_gate_hooks_status_says_the_jail_could_not_be_built() {
    require_root();
    if !boundary_tests::hybrid_cgroups::run_here_for_crun("with_crun_the_gate_hooks_status_says_the_jail_could_not_be_built") {
        return;
    }
    let rt = Runtime::new(Settings::new(142).runtime("crun").sidecar(std::path::Path::new("/bin/false")));
    let before = rt.leaks();
    let out = rt.create(&Bundle::sleeper(), "no-sidecar-crun");
    assert!(matches!(out.code, Some(c) if c != 0), "expected a failure:\n{out}");
    let errors = out.log_errors();
    let ours = errors.first().unwrap_or_else(|| panic!("no error entry in the --log file:\n{out}"));
    assert!(ours.starts_with("boundary-runc: sidecar failed to start"), "{ours:?}\n{out}");
    let last = errors.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("exit code: 10"), "crun names the gate hook's status: {last:?}\n{out}");
    rt.leaks().assert_same_as(&before);
}
