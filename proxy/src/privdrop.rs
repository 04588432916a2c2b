//! Dropping the sidecar worker from root to an unprivileged identity.
//!
//! The worker starts as root so that it can read the CA private key and the
//! policy; before it reads a single byte from the container it calls
//! [`drop_privileges`], which leaves it with no capabilities in any set, no
//! supplementary groups, `no_new_privs` set (no setuid or file-capability
//! binary can give anything back) and not dumpable (a process of the same
//! uid can neither ptrace it nor open its `/proc/<pid>` files). The function
//! then reads the result back from the kernel and fails unless every set is
//! empty and the ids are exactly the ones asked for.
//!
//! Capabilities, the bounding set and `no_new_privs` are per-thread
//! attributes, and `capset(2)` and `prctl(2)` act on the calling thread only;
//! new threads copy them from their creator. The uid/gid changes are
//! process-wide (glibc's `setresuid`/`setresgid`/`setgroups` apply them to
//! every thread), and leaving uid 0 makes the kernel clear each thread's
//! permitted, effective and ambient sets. So the drop is done in two steps:
//! [`restrict_before_threads`] while the process still has one thread
//! (before the audit writer thread or the async runtime start), keeping
//! root's effective capabilities for reading root-only files; then
//! [`drop_privileges`], which may run with threads alive, refuses unless
//! every other thread was born restricted, and at the end checks every
//! thread of the process in `/proc/self/task`.

use std::fs;
use std::io;

use caps::errors::CapsError;
use caps::CapSet;
use nix::errno::Errno;
use nix::sys::prctl;
use nix::unistd::{getgroups, getresgid, getresuid, setgroups, setresgid, setresuid, Gid, Uid};

/// Errors from [`drop_privileges`]. Each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivDropError {
    #[error("refusing to drop privileges to uid {uid} gid {gid}: the worker must not run as root")]
    TargetIsRoot { uid: u32, gid: u32 },
    #[error("privileges must be dropped while single-threaded, but the process has {threads} threads")]
    Threaded { threads: usize },
    #[error("{count} other threads were created before restrict_before_threads and keep privileges")]
    UnrestrictedThreads { count: usize },
    #[error("listing the process's threads in /proc/self/task")]
    CountThreads(#[source] io::Error),
    #[error("setting PR_SET_NO_NEW_PRIVS")]
    NoNewPrivs(#[source] Errno),
    #[error("clearing the capability bounding set")]
    ClearBounding(#[source] CapsError),
    #[error("clearing supplementary groups (setgroups [])")]
    SetGroups(#[source] Errno),
    #[error("setresgid to {gid}")]
    SetResGid {
        gid: u32,
        #[source]
        source: Errno,
    },
    #[error("setresuid to {uid}")]
    SetResUid {
        uid: u32,
        #[source]
        source: Errno,
    },
    #[error("clearing the {set} capability set")]
    ClearCaps {
        set: &'static str,
        #[source]
        source: CapsError,
    },
    #[error("setting PR_SET_DUMPABLE to 0")]
    Dumpable(#[source] Errno),
    #[error("reading back the process credentials")]
    ReadBack(#[source] io::Error),
    #[error("privilege drop did not take effect: {what}")]
    NotDropped { what: String },
}

/// The capability sets of one thread as the kernel reports them in
/// `/proc/thread-self/status` (bit masks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapMasks {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
}

impl CapMasks {
    /// Parses the `Cap*:` lines of a `/proc/<pid>/status` file. Missing
    /// lines count as full sets, so a parse failure can never read as
    /// "no capabilities".
    pub fn from_status(status: &str) -> Self {
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(u64::MAX)
        };
        CapMasks {
            inheritable: field("CapInh:"),
            permitted: field("CapPrm:"),
            effective: field("CapEff:"),
            bounding: field("CapBnd:"),
            ambient: field("CapAmb:"),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == CapMasks::default()
    }
}

/// Step one, while the process has a single thread: sets `no_new_privs`,
/// empties the bounding, inheritable and ambient sets. Threads created
/// afterwards inherit all of that. Uid 0 and the effective set stay, so
/// root-only files can still be read.
pub fn restrict_before_threads() -> Result<(), PrivDropError> {
    let threads = fs::read_dir("/proc/self/task").map_err(PrivDropError::CountThreads)?.count();
    if threads != 1 {
        return Err(PrivDropError::Threaded { threads });
    }
    restrict_this_thread()
}

fn restrict_this_thread() -> Result<(), PrivDropError> {
    prctl::set_no_new_privs().map_err(PrivDropError::NoNewPrivs)?;
    // Needs CAP_SETPCAP, so it comes before the uid change.
    caps::clear(None, CapSet::Bounding).map_err(PrivDropError::ClearBounding)?;
    for (set, name) in [(CapSet::Ambient, "ambient"), (CapSet::Inheritable, "inheritable")] {
        caps::clear(None, set).map_err(|source| PrivDropError::ClearCaps { set: name, source })?;
    }
    Ok(())
}

/// Drops the process to `uid`/`gid` with no capabilities, no supplementary
/// groups, `no_new_privs` and not dumpable, then verifies all of it on every
/// thread. In a process with more than one thread, [`restrict_before_threads`]
/// must have run before the other threads were created; otherwise this
/// refuses before changing anything.
pub fn drop_privileges(uid: u32, gid: u32) -> Result<(), PrivDropError> {
    if uid == 0 || gid == 0 {
        return Err(PrivDropError::TargetIsRoot { uid, gid });
    }
    let me = nix::unistd::gettid().as_raw();
    let unrestricted = threads_status()?
        .into_iter()
        .filter(|(tid, status)| *tid != me && !born_restricted(status))
        .count();
    if unrestricted > 0 {
        return Err(PrivDropError::UnrestrictedThreads { count: unrestricted });
    }
    restrict_this_thread()?;
    setgroups(&[]).map_err(PrivDropError::SetGroups)?;
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    setresgid(g, g, g).map_err(|source| PrivDropError::SetResGid { gid, source })?;
    setresuid(u, u, u).map_err(|source| PrivDropError::SetResUid { uid, source })?;
    // Leaving uid 0 has cleared permitted and effective already (no
    // SECBIT_KEEP_CAPS is set); being explicit costs nothing.
    for (set, name) in [(CapSet::Effective, "effective"), (CapSet::Permitted, "permitted")] {
        caps::clear(None, set).map_err(|source| PrivDropError::ClearCaps { set: name, source })?;
    }
    // A credential change resets "dumpable" to fs.suid_dumpable, so this
    // comes last.
    prctl::set_dumpable(false).map_err(PrivDropError::Dumpable)?;
    verify(uid, gid)
}

/// `(tid, status text)` of every thread of this process.
fn threads_status() -> Result<Vec<(i32, String)>, PrivDropError> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc/self/task").map_err(PrivDropError::CountThreads)? {
        let entry = entry.map_err(PrivDropError::CountThreads)?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        match fs::read_to_string(entry.path().join("status")) {
            Ok(status) => out.push((tid, status)),
            // The thread exited while we looked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(PrivDropError::ReadBack(e)),
        }
    }
    Ok(out)
}

/// Whether a thread was created after [`restrict_before_threads`].
fn born_restricted(status: &str) -> bool {
    let m = CapMasks::from_status(status);
    m.bounding == 0 && m.inheritable == 0 && m.ambient == 0 && no_new_privs(status)
}

fn no_new_privs(status: &str) -> bool {
    status.lines().find_map(|l| l.strip_prefix("NoNewPrivs:")).map(str::trim) == Some("1")
}

/// Reads the credentials back from the kernel and checks each one, for
/// every thread.
fn verify(uid: u32, gid: u32) -> Result<(), PrivDropError> {
    let not = |what: String| Err(PrivDropError::NotDropped { what });
    let errno = |e: Errno| PrivDropError::ReadBack(io::Error::from(e));
    let r = getresuid().map_err(errno)?;
    if [r.real, r.effective, r.saved] != [Uid::from_raw(uid); 3] {
        return not(format!("uids are {}/{}/{}, wanted {uid}", r.real, r.effective, r.saved));
    }
    let g = getresgid().map_err(errno)?;
    if [g.real, g.effective, g.saved] != [Gid::from_raw(gid); 3] {
        return not(format!("gids are {}/{}/{}, wanted {gid}", g.real, g.effective, g.saved));
    }
    let groups = getgroups().map_err(errno)?;
    if !groups.is_empty() {
        return not(format!("supplementary groups remain: {groups:?}"));
    }
    let want_uid = format!("{uid}\t{uid}\t{uid}\t{uid}");
    let want_gid = format!("{gid}\t{gid}\t{gid}\t{gid}");
    for (tid, status) in threads_status()? {
        let masks = CapMasks::from_status(&status);
        if !masks.is_empty() {
            return not(format!("thread {tid} still has capabilities: {masks:x?}"));
        }
        if !no_new_privs(&status) {
            return not(format!("thread {tid} lacks no_new_privs"));
        }
        let line = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("");
        if line("Uid:") != want_uid || line("Gid:") != want_gid || !line("Groups:").is_empty() {
            return not(format!("thread {tid} has other credentials"));
        }
    }
    if prctl::get_dumpable().map_err(errno)? {
        return not("the process is still dumpable".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_masks_parse_and_missing_lines_are_full() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
                      CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let m = CapMasks::from_status(status);
        assert_eq!(m.bounding, 0x1ff_ffff_ffff);
        assert_eq!(m.effective, 0);
        assert!(!m.is_empty());
        assert_eq!(CapMasks::from_status("CapEff:\t0\n").permitted, u64::MAX);
        assert!(CapMasks::from_status(&status.replace("000001ffffffffff", "0000000000000000")).is_empty());
    }

    #[test]
    fn root_target_is_refused_before_any_change() {
        assert!(matches!(drop_privileges(0, 65534), Err(PrivDropError::TargetIsRoot { .. })));
        assert!(matches!(drop_privileges(65534, 0), Err(PrivDropError::TargetIsRoot { .. })));
    }

    #[test]
    fn a_threaded_unrestricted_process_is_refused_unchanged() {
        // The test harness has other threads that were never restricted;
        // nothing may change.
        let before = fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(matches!(restrict_before_threads(), Err(PrivDropError::Threaded { .. })));
        assert!(matches!(drop_privileges(65534, 65534), Err(PrivDropError::UnrestrictedThreads { .. })));
        let after = fs::read_to_string("/proc/thread-self/status").unwrap();
        assert_eq!(CapMasks::from_status(&before), CapMasks::from_status(&after));
        assert_eq!(no_new_privs(&before), no_new_privs(&after));
    }

    #[test]
    fn no_new_privs_line_is_read() {
        assert!(no_new_privs("Name:\tx\nNoNewPrivs:\t1\nSeccomp:\t0\n"));
        assert!(!no_new_privs("NoNewPrivs:\t0\n"));
        assert!(!no_new_privs(""));
    }
}
