//! What a runtime's jails leave on the machine, to compare before and after.
//!
//! Tests run in parallel, so a snapshot is scoped to one [`crate::Runtime`]:
//! its state root and its address pool. Everything a jail builds is named
//! from one of the two (veth `bnd<hex host addr>` and `bnj<hex>`, nft table
//! `boundary_<hex>`, sidecar config `<state_root>/<id>/sidecar.json`,
//! namespace mount `<state_root>/netns/<id>`), so nothing escapes the scope.
//! The state root's own `netns` and `userns` (shared bind mounts made on
//! first use) and `ipam` directories are infrastructure, not leaks; what is
//! in them is.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use crate::require::require_tool;
use crate::settings::Settings;

/// The pieces that exist at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeakSnapshot {
    /// Mount points under the state root (`/proc/self/mountinfo`).
    pub mounts: BTreeSet<String>,
    /// Host links `bnd*`/`bnj*` named after an address of the pool.
    pub links: BTreeSet<String>,
    /// nft tables `boundary_*` named after an address of the pool.
    pub nft_tables: BTreeSet<String>,
    /// `pid argv` of boundary-sidecar processes serving this state root.
    pub sidecars: BTreeSet<String>,
    /// Paths under the state root, relative.
    pub files: BTreeSet<String>,
}

impl LeakSnapshot {
    pub fn take(state_root: &Path, settings: &Settings) -> LeakSnapshot {
        let in_pool = |tag: &str| {
            tag.len() == 8 && u32::from_str_radix(tag, 16).is_ok_and(|a| settings.pool_contains(Ipv4Addr::from(a)))
        };
        LeakSnapshot {
            mounts: mounts_under(state_root),
            links: host_links().into_iter().filter(|n| n.get(3..).is_some_and(in_pool)).collect(),
            nft_tables: nft_tables().into_iter().filter(|t| t.strip_prefix("boundary_").is_some_and(in_pool)).collect(),
            sidecars: sidecars(state_root),
            files: files_under(state_root),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == LeakSnapshot::default()
    }

    /// Panics with what appeared and what vanished unless `self` (after)
    /// equals `before`.
    #[track_caller]
    pub fn assert_same_as(&self, before: &LeakSnapshot) {
        if self == before {
            return;
        }
        let mut msg = String::from("jail pieces differ from before:\n");
        for (name, b, a) in self.categories(before) {
            let appeared: Vec<&String> = a.difference(b).collect();
            let vanished: Vec<&String> = b.difference(a).collect();
            if !appeared.is_empty() {
                msg += &format!("  {name} left behind: {appeared:?}\n");
            }
            if !vanished.is_empty() {
                msg += &format!("  {name} gone: {vanished:?}\n");
            }
        }
        panic!("{msg}");
    }

    fn categories<'a>(&'a self, before: &'a LeakSnapshot) -> [(&'static str, &'a BTreeSet<String>, &'a BTreeSet<String>); 5] {
        [
            ("mounts", &before.mounts, &self.mounts),
            ("links", &before.links, &self.links),
            ("nft tables", &before.nft_tables, &self.nft_tables),
            ("sidecar processes", &before.sidecars, &self.sidecars),
            ("files", &before.files, &self.files),
        ]
    }

    /// Removes every piece (for cleanup after a failed test).
    pub fn remove_all(&self) {
        for s in &self.sidecars {
            if let Some(pid) = s.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        for t in &self.nft_tables {
            let _ = Command::new(require_tool("nft")).args(["delete", "table", "inet", t]).output();
        }
        for l in &self.links {
            let _ = Command::new(require_tool("ip")).args(["link", "del", l]).output();
        }
        for m in &self.mounts {
            let _ = nix::mount::umount2(Path::new(m), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl fmt::Display for LeakSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, _, set) in self.categories(self) {
            writeln!(f, "  {name}: {set:?}")?;
        }
        Ok(())
    }
}

/// Mount points below `root`, except `root/netns` and `root/userns`
/// themselves.
fn mounts_under(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", root.display());
    let infra = [root.join("netns").display().to_string(), root.join("userns").display().to_string()];
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| m.starts_with(&prefix) && !infra.contains(m))
        .collect()
}

/// Detaches every mount at or below `root`, deepest first: what an engine
/// under test (containerd's snapshotter, podman's storage) left mounted in
/// its directory before the directory is removed.
pub fn unmount_below(root: &Path) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = root.display().to_string();
    let mut ours: Vec<String> =
        text.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mountinfo).filter(|m| m.starts_with(&root)).collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ours {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.by_ref().take(3).collect();
            if let Ok(v) = u8::from_str_radix(&oct, 8) {
                out.push(v as char);
                continue;
            }
            out.push('\\');
            out.push_str(&oct);
        } else {
            out.push(c);
        }
    }
    out
}

/// Names of host links starting with `bnd` or `bnj`.
fn host_links() -> BTreeSet<String> {
    let out = Command::new(require_tool("ip")).args(["-o", "link", "show"]).output().expect("run ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("bnd") || n.starts_with("bnj"))
        .collect()
}

fn nft_tables() -> BTreeSet<String> {
    let out = Command::new(require_tool("nft")).args(["list", "tables"]).output().expect("run nft list tables");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .map(|t| t.trim().to_string())
        .collect()
}

/// Live boundary-sidecar processes with an argument under `root`.
fn sidecars(root: &Path) -> BTreeSet<String> {
    let root = root.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let is_sidecar = args.first().is_some_and(|a0| Path::new(a0).file_name().is_some_and(|n| n == "boundary-sidecar"));
            (is_sidecar && args.iter().any(|a| a.starts_with(&root))).then(|| format!("{pid} {}", args.join(" ")))
        })
        .collect()
}

/// Relative paths of everything under `root`, except the `netns`,
/// `userns` and `ipam` directories themselves and the address pool's lock.
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
                if rel == "netns" || rel == "userns" || rel == "ipam" {
                    continue;
                }
            }
            if rel != "ipam/.lock" {
                out.insert(rel);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b/netns/x"), "/tmp/a b/netns/x");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
