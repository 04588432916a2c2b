//! What engines parse from a runtime's stdout and exit status passes
//! through unchanged. Needs runc and the built binaries, not root.

use boundary_tests::{binaries, require_tool, Runtime, Settings};

fn runtime() -> Runtime {
    require_tool("runc");
    binaries();
    // Slot 0: these calls never build a jail.
    Runtime::new(Settings::new(0))
}

#[test]
fn version_starts_with_runcs_and_names_boundary_runc() {
    let rt = runtime();
    let out = rt.raw(&["--version"]).ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("runc version "), "go-runc reads the first line:\n{out}");
    assert!(out.stdout.lines().any(|l| l == format!("boundary-runc {}", env!("CARGO_PKG_VERSION"))), "{out}");
    // dockerd names the runtime after the last line holding "version".
    assert_eq!(out.stdout.lines().rfind(|l| l.contains("version")), Some(first), "{out}");
}

#[test]
fn features_is_valid_json() {
    let rt = runtime();
    let runc = std::process::Command::new(require_tool("runc")).arg("features").output().expect("run runc features");
    assert!(runc.status.success(), "runc features is not supported by this runc");
    let out = rt.raw(&["features"]).ok();
    let ours: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let theirs: serde_json::Value = serde_json::from_slice(&runc.stdout).expect("runc features JSON");
    assert_eq!(ours, theirs, "features must be runc's, unchanged");
}

#[test]
fn state_of_a_missing_container_fails_like_runc() {
    let rt = runtime();
    let root = rt.runc_root.display().to_string();
    let runc = std::process::Command::new(require_tool("runc"))
        .args(["--root", &root, "state", "nonexistent"])
        .output()
        .expect("run runc state");
    let out = rt.cmd(&["state", "nonexistent"]);
    assert_ne!(runc.status.code(), Some(0));
    assert_eq!(out.code, runc.status.code(), "exit status must be runc's:\n{out}");
    assert!(out.stdout.is_empty(), "nothing on stdout:\n{out}");
}
