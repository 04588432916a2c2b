//! Running crun on a host with hybrid cgroups.
//!
//! crun (1.8) refuses every container when `/sys/fs/cgroup` is a v1 tmpfs
//! and the v2 hierarchy mounted at `/sys/fs/cgroup/unified` has any
//! controller ("cgroups in hybrid mode not supported, drop all controllers
//! from cgroupv2"); runc does not mind. Rather than change the host's
//! cgroup mounts, a test that needs crun re-runs itself in a new mount
//! namespace (`unshare --mount --propagation slave`: the host's mounts stay
//! visible, nothing made inside leaks out) where the v2 mount is detached,
//! so crun sees a plain cgroup v1 host. The test body, every runtime call
//! and the leak snapshot then all live in that one mount namespace.

use std::path::Path;
use std::process::Command;

use crate::require::require_tool;

const INNER_ENV: &str = "BOUNDARY_E2E_LEGACY_CGROUP_VIEW";
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// Controllers of the v2 hierarchy when the host is in hybrid mode.
fn hybrid_v2_controllers() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let unified_is_v2 = mountinfo.lines().any(|l| {
        let mut halves = l.split(" - ");
        let mount_point = halves.next().and_then(|h| h.split(' ').nth(4));
        let fstype = halves.next().and_then(|h| h.split(' ').next());
        mount_point == Some(UNIFIED) && fstype == Some("cgroup2")
    });
    if !unified_is_v2 {
        return None;
    }
    let controllers = std::fs::read_to_string(Path::new(UNIFIED).join("cgroup.controllers")).unwrap_or_default();
    let controllers = controllers.trim();
    (!controllers.is_empty()).then(|| controllers.to_string())
}

/// Call first in a test that runs crun. Returns `true` when the caller
/// should run its body here; `false` when the body already ran (and passed)
/// in a child process with a crun-compatible cgroup view. `test_name` is
/// the test function's name (as `cargo test` filters it).
pub fn run_here_for_crun(test_name: &str) -> bool {
    if std::env::var_os(INNER_ENV).is_some() {
        if hybrid_v2_controllers().is_some() {
            nix::mount::umount2(UNIFIED, nix::mount::MntFlags::MNT_DETACH)
                .unwrap_or_else(|e| panic!("cannot detach {UNIFIED} in the test's private mount namespace: {e}"));
        }
        return true;
    }
    let Some(controllers) = hybrid_v2_controllers() else { return true };
    let exe = std::env::current_exe().expect("test executable");
    let out = Command::new(require_tool("unshare"))
        .args(["--mount", "--propagation", "slave", "--"])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER_ENV, "1")
        .output()
        .expect("re-run the test under unshare");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test_name} (re-run in a private mount namespace without the cgroup v2 mount, because this host is in hybrid mode with v2 controllers [{controllers}] that crun refuses) failed:\n{text}"
    );
    false
}
