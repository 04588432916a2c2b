//! The container root filesystem every test bundle shares, read-only:
//! Debian's static busybox with its applets linked, and the host's curl
//! with every library `ldd` names.
//!
//! Built once per test process under `$TMPDIR/boundary-e2e-rootfs.<pid>`;
//! directories of processes that no longer exist are removed first, so
//! runs do not pile up copies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::require::{require_tool, BUSYBOX};

const PREFIX: &str = "boundary-e2e-rootfs.";

/// Applets linked to /bin/busybox.
const APPLETS: &[&str] = &[
    "sh", "ash", "ip", "ping", "ping6", "nc", "wget", "nslookup", "cat", "ls", "sleep", "unshare", "nsenter", "grep",
    "echo", "true", "false", "id", "ps", "kill", "env", "head", "tail", "sed", "awk", "wc", "tr", "cut", "sort", "uniq",
    "hostname", "mkdir", "rm", "printf", "test", "[", "timeout", "sysctl", "mount", "seq", "date", "tee", "xargs",
    "ifconfig", "route", "netstat", "which", "uname", "dd", "hexdump", "stat", "find", "expr",
];

/// Empty files and directories that runc mounts over (the rootfs is shared
/// read-only, so they exist up front).
const MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "tmp", "root", "etc/ssl/boundary-runc"];
const MOUNT_FILES: &[&str] = &["etc/resolv.conf", "etc/ssl/boundary-runc/ca-bundle.pem"];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

/// The shared rootfs (built on first use). Panics when it cannot be built.
pub fn shared_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        remove_stale();
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("cannot clear {}: {e}", dir.display()));
        }
        build(&dir).unwrap_or_else(|e| panic!("cannot build the test rootfs in {}: {e:#}", dir.display()));
        dir
    })
}

/// Removes rootfs directories of test processes that are gone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn build(dir: &Path) -> anyhow::Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(BUSYBOX, bin.join("busybox"))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    for d in MOUNT_POINTS {
        std::fs::create_dir_all(dir.join(d))?;
    }
    for f in MOUNT_FILES {
        std::fs::write(dir.join(f), b"")?;
    }
    for (f, text) in [("etc/passwd", PASSWD), ("etc/group", GROUP), ("etc/hosts", HOSTS), ("etc/nsswitch.conf", NSSWITCH)] {
        std::fs::write(dir.join(f), text)?;
    }
    copy_with_libraries(&require_tool("curl"), dir)
}

/// Copies `exe` and every library `ldd` names (and the loader) to the same
/// paths under `dir`.
fn copy_with_libraries(exe: &Path, dir: &Path) -> anyhow::Result<()> {
    let out = Command::new(require_tool("ldd")).arg(exe).output()?;
    anyhow::ensure!(out.status.success(), "ldd {} failed: {}", exe.display(), String::from_utf8_lossy(&out.stderr));
    let mut files = vec![exe.to_path_buf()];
    files.extend(String::from_utf8_lossy(&out.stdout).lines().filter_map(ldd_path));
    for f in files {
        let rel = f.strip_prefix("/")?;
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap_or(dir))?;
        std::fs::copy(&f, &target).map_err(|e| anyhow::anyhow!("copy {}: {e}", f.display()))?;
    }
    Ok(())
}

/// The file an `ldd` line names: `libx.so => /path (0x..)` or `/loader (0x..)`.
fn ldd_path(line: &str) -> Option<PathBuf> {
    let line = line.trim();
    let candidate = match line.split_once("=>") {
        Some((_, rest)) => rest.trim(),
        None => line,
    };
    let path = candidate.split_whitespace().next()?;
    path.starts_with('/').then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines() {
        assert_eq!(ldd_path("\tlibcurl.so.4 => /lib/x86_64-linux-gnu/libcurl.so.4 (0x00007f)"), Some("/lib/x86_64-linux-gnu/libcurl.so.4".into()));
        assert_eq!(ldd_path("\t/lib64/ld-linux-x86-64.so.2 (0x00007f)"), Some("/lib64/ld-linux-x86-64.so.2".into()));
        assert_eq!(ldd_path("\tlinux-vdso.so.1 (0x00007ffd)"), None);
    }
}
