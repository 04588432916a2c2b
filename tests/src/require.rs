//! What the root tests need from the machine, checked up front.
//!
//! A missing requirement is a test failure with the command that fixes it,
//! never a silent skip: a green run must mean the boundary was exercised.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Tools the root tests run, and the Debian package that ships each.
const TOOLS: &[(&str, &str)] = &[
    ("runc", "runc"),
    ("crun", "crun"),
    ("nft", "nftables"),
    ("ip", "iproute2"),
    ("curl", "curl"),
    ("ldd", "libc-bin"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
];

/// The statically linked busybox the container rootfs is built from.
pub const BUSYBOX: &str = "/bin/busybox";

/// Finds `name` on PATH, or in the sbin/bin directories root normally has
/// (cargo may run the tests with a PATH that lacks /usr/sbin).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    std::env::split_paths(&path)
        .chain(fallback.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The path of a tool, or a panic naming the package to install.
pub fn require_tool(name: &str) -> PathBuf {
    match find_tool(name) {
        Some(p) => p,
        None => {
            let pkg = TOOLS.iter().find(|(t, _)| *t == name).map(|(_, p)| *p).unwrap_or(name);
            panic!("the tests need `{name}`, which is not installed: run `apt-get install {pkg}`")
        }
    }
}

fn busybox_problem() -> Option<String> {
    let fix = "run `apt-get install busybox-static` (the container rootfs is built from a static /bin/busybox)";
    if !is_executable(Path::new(BUSYBOX)) {
        return Some(format!("{BUSYBOX} is missing: {fix}"));
    }
    let ldd = find_tool("ldd")?;
    let out = Command::new(ldd).arg(BUSYBOX).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        None
    } else {
        Some(format!("{BUSYBOX} is dynamically linked (Debian's `busybox` package): {fix}"))
    }
}

fn check() -> Result<(), String> {
    let mut problems = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        problems.push("the root end-to-end tests must run as root (they create namespaces, veths and nftables tables): run them with sudo, e.g. `sudo -E cargo test -p boundary-tests`".to_string());
    }
    let missing: Vec<&(&str, &str)> = TOOLS.iter().filter(|(t, _)| find_tool(t).is_none()).collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
        let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        pkgs.dedup();
        problems.push(format!("missing tools {}: run `apt-get install {}`", names.join(", "), pkgs.join(" ")));
    }
    problems.extend(busybox_problem());
    if let Err(e) = crate::binaries::locate() {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n  - "))
    }
}

/// Panics unless the process is root and every tool the root tests use is
/// installed (runc, crun, nft, ip, curl, a static busybox) and the
/// boundary-runc binaries are built. Call it first in every root test.
pub fn require_root() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = CHECKED.get_or_init(check) {
        panic!("the end-to-end test environment is not ready:\n  - {e}");
    }
}
