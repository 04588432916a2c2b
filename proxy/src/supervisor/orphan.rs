//! Cleaning up after a `create` that never produced a container.
//!
//! The shim `execve`s the delegate while its builder finishes the jail and
//! starts this sidecar. If the delegate then refuses the spec before it
//! made the container, no hook ever runs and nobody is left to tear the
//! jail down. The keeper watches the creator (the shim's pid, which becomes
//! the delegate) through a pidfd; when it exits and no process is inside
//! the jail's network namespace, there is no container, and the keeper runs
//! the teardown command as runc would run the poststop hook. That command
//! stops this sidecar in turn.
//!
//! The same file holds the keeper's watch on the container's init
//! ([`InitWatch`]): the gate hook hands the keeper the init's pid (queued
//! with SIGUSR1), and once the init has exited and no process is left in
//! the jail's namespace, nothing can use the proxy any more, so the keeper
//! stops its supervisor and worker at once instead of when the teardown
//! comes (runc's poststop hook, or the engine's `delete`).

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use boundary_contract::OrphanWatch;

/// A live watch on the creator.
#[derive(Debug)]
pub struct Watch {
    /// `None` once the creator was gone before we could open it.
    pidfd: Option<OwnedFd>,
    jail_netns: PathBuf,
    cleanup: Vec<String>,
    container_id: String,
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; the descriptor is owned by the OwnedFd from here on.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Watch {
    pub fn new(w: &OrphanWatch, container_id: &str) -> Watch {
        let pidfd = match pidfd_open(w.creator_pid) {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::info!("creator {} already gone ({e}); checking the jail now", w.creator_pid);
                None
            }
        };
        Watch { pidfd, jail_netns: w.jail_netns.clone(), cleanup: w.cleanup.clone(), container_id: container_id.to_owned() }
    }

    /// The descriptor that becomes readable when the creator exits.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }

    /// Whether the creator is known to have exited already.
    pub fn creator_gone(&self) -> bool {
        self.pidfd.is_none()
    }

    /// The creator exited: tear the jail down when no container came of it.
    pub fn creator_exited(self) {
        if netns_in_use(&self.jail_netns) {
            log::debug!("container {} exists; the orphan watch ends", self.container_id);
            return;
        }
        log::warn!("no container {} was created; removing its jail", self.container_id);
        let Some((prog, args)) = self.cleanup.split_first() else { return };
        let child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn();
        match child {
            Ok(mut c) => {
                if let Some(mut stdin) = c.stdin.take() {
                    let state = serde_json::json!({"ociVersion": "1.0.2", "id": self.container_id, "status": "stopped"});
                    let _ = stdin.write_all(state.to_string().as_bytes());
                }
                // Not waited for: it stops this supervisor, which reaps it
                // on SIGCHLD or leaves it to init.
            }
            Err(e) => log::error!("cannot run the jail teardown {prog}: {e}"),
        }
    }
}

/// A watch on the container's init process, handed over by the gate hook.
#[derive(Debug)]
pub struct InitWatch {
    /// `None` when the init was already gone when it was handed over.
    pidfd: Option<OwnedFd>,
    pid: i32,
    jail_netns: PathBuf,
}

impl InitWatch {
    /// Opens a watch on `pid`. `None` when `pid` is alive but not inside
    /// `jail_netns` (not this container's process). A `pid` already gone
    /// gives a watch that has fired: what decides the stop is the jail's
    /// namespace being unused ([`netns_in_use`]), which an init in the jail
    /// keeps it from being from the gate hook on.
    pub fn open(pid: i32, jail_netns: &Path) -> Option<InitWatch> {
        if pid <= 0 {
            return None;
        }
        let watch = |pidfd| Some(InitWatch { pidfd, pid, jail_netns: jail_netns.to_path_buf() });
        let Ok(fd) = pidfd_open(pid) else { return watch(None) };
        // Checked after the pidfd is open: if `pid` was reused in between,
        // the pidfd's process has exited and the watch fires at once, which
        // only makes the keeper look at the namespace (see above).
        let want = namespace_link(jail_netns)?;
        match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            Ok(link) if link.as_os_str() == want.as_str() => watch(Some(fd)),
            Ok(_) => None,
            // Exited (a zombie has no namespaces left).
            Err(_) => watch(Some(fd)),
        }
    }

    /// The descriptor that becomes readable when the init exits.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }

    /// Whether the init is known to have exited already.
    pub fn exited(&self) -> bool {
        self.pidfd.is_none()
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the init is alive now (its pidfd is not readable yet).
    pub fn alive(&self) -> bool {
        let Some(fd) = &self.pidfd else { return false };
        let mut pfd = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        matches!(nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO), Ok(0))
    }

    /// Whether any process is still in the jail's namespace.
    pub fn jail_in_use(&self) -> bool {
        netns_in_use(&self.jail_netns)
    }

    /// The jail namespace's file (a bind mount until released).
    pub fn jail_netns(&self) -> &Path {
        &self.jail_netns
    }
}

/// Removes the mount of a namespace this jail owns (the file stays for the
/// teardown), dropping what may be its last reference, so the kernel starts
/// freeing it (with its links and nft table) now. Freeing a namespace waits
/// for RCU barriers on a kernel worker for tens of milliseconds; started at
/// the teardown, that overlapped the engine's own network clean-up (dockerd
/// moving and deleting its veth, which waits for the same barriers) and held
/// it up. Namespaces released together are freed in one pass.
pub fn release_netns(netns: &Path) {
    match nix::mount::umount2(netns, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
        Err(e) => log::warn!("cannot unmount the namespace {}: {e}; the teardown will", netns.display()),
    }
}

/// The `/proc/<pid>/ns/net` link text of a process in `netns` (a
/// bind-mounted namespace file): `net:[<inode>]`.
fn namespace_link(netns: &Path) -> Option<String> {
    std::fs::metadata(netns).ok().map(|m| format!("net:[{}]", m.ino()))
}

/// Whether any process has `netns` (a bind-mounted namespace file) as its
/// network namespace.
pub fn netns_in_use(netns: &Path) -> bool {
    let Some(want) = namespace_link(netns) else { return false };
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    procs.flatten().any(|e| {
        e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.as_os_str() == want.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_in_use_and_a_plain_file_is_not() {
        assert!(netns_in_use(Path::new("/proc/self/ns/net")));
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(!netns_in_use(f.path()));
        assert!(!netns_in_use(Path::new("/nonexistent/netns")));
    }

    #[test]
    fn an_init_outside_the_jail_is_refused_and_a_gone_one_has_exited() {
        let f = tempfile::NamedTempFile::new().unwrap();
        // Our own process is not in a namespace whose file is `f`.
        assert!(InitWatch::open(std::process::id() as i32, f.path()).is_none());
        let own = InitWatch::open(std::process::id() as i32, Path::new("/proc/self/ns/net")).unwrap();
        assert!(!own.exited() && own.fd().is_some() && own.alive());
        let gone = InitWatch::open(i32::MAX - 1, f.path()).unwrap();
        assert!(gone.exited() && !gone.alive());
        assert!(InitWatch::open(0, f.path()).is_none());
    }

    #[test]
    fn an_init_is_alive_until_it_exits() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let watch = InitWatch::open(child.id() as i32, Path::new("/proc/self/ns/net")).unwrap();
        assert!(watch.alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!watch.alive(), "the init exited: its pidfd is readable");
    }

    #[test]
    fn a_gone_creator_is_noticed() {
        let w = Watch::new(
            &OrphanWatch { creator_pid: i32::MAX - 1, jail_netns: "/nonexistent".into(), cleanup: vec![] },
            "c",
        );
        assert!(w.creator_gone());
        assert!(w.fd().is_none());
    }
}
