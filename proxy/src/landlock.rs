//! Landlock for the worker: what a worker taken over through a bug could
//! still reach outside its sockets.
//!
//! Its uid is its jail's own, but files readable by everyone, other
//! processes it could signal and abstract Unix sockets in its network
//! namespace are reachable by any uid. Once it has dropped its privileges,
//! while it still has one thread (a Landlock domain binds the thread that
//! takes it and the threads it starts later), the worker takes a domain in
//! which:
//! - no file or directory may be opened, made, removed, renamed, linked,
//!   truncated or executed, except reading, for a pod's sandbox, its
//!   narrowing directory (reloaded on SIGHUP); descriptors it opened
//!   before (sockets, the audit log, `/proc/self/smaps` for
//!   `crate::resident`) keep working; `stat` and `readlink` are not
//!   Landlock's to refuse;
//! - no TCP port may be bound (ABI 4; it only connects upstream; its
//!   seccomp filter allows no socket but TCP/IP and UDP/IP ones, so no
//!   Unix socket either, `crate::seccomp`);
//! - no signal reaches a process outside the domain, and no abstract Unix
//!   socket made outside it may be connected to (ABI 6).
//!
//! Each part is asked for only when the kernel's Landlock ABI has it; a
//! kernel without Landlock (not built in, or not in the boot's `lsm=`
//! list) leaves the worker with its uid, capabilities and seccomp filter
//! alone, and the worker says so in its log.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::libc;

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("Landlock: creating the worker's ruleset")]
    Create(#[source] std::io::Error),
    #[error("Landlock: adding the rule for {path}")]
    AddRule {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Landlock: restricting the worker")]
    Restrict(#[source] std::io::Error),
    #[error("Landlock: the worker must take its domain with one thread, but it has {threads} (the others would stay outside it)")]
    Threaded { threads: usize },
    #[error("Landlock: counting the worker's threads in /proc/self/task")]
    CountThreads(#[source] std::io::Error),
    #[error("Landlock: asking the kernel for its Landlock ABI")]
    Query(#[source] std::io::Error),
}

/// What [`restrict`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The domain is in force, at this Landlock ABI version.
    Enforced { abi: i32 },
    /// The kernel offers no Landlock; why.
    Unavailable(String),
}

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;

const FS_EXECUTE: u64 = 1 << 0;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
/// Every file-system right of ABI 1 (execute ... make_sym).
const FS_ABI1: u64 = (1 << 13) - 1;
const FS_REFER: u64 = 1 << 13;
const FS_TRUNCATE: u64 = 1 << 14;
const FS_IOCTL_DEV: u64 = 1 << 15;
const NET_BIND_TCP: u64 = 1 << 0;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The rights handled (so denied unless a rule grants them) at `abi`.
fn handled(abi: i32) -> RulesetAttr {
    let mut fs = FS_ABI1;
    if abi >= 2 {
        fs |= FS_REFER;
    }
    if abi >= 3 {
        fs |= FS_TRUNCATE;
    }
    if abi >= 5 {
        fs |= FS_IOCTL_DEV;
    }
    RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: if abi >= 4 { NET_BIND_TCP } else { 0 },
        scoped: if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL } else { 0 },
    }
}

/// The kernel's Landlock ABI version, or why there is none. Any other
/// answer than "none" is an error: the worker does not serve without the
/// domain a kernel offers.
pub fn abi() -> Result<Result<i32, String>, LandlockError> {
    // SAFETY: a query with no attribute; the kernel reads nothing.
    let v = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<RulesetAttr>(), 0usize, CREATE_RULESET_VERSION) };
    if v >= 1 {
        return Ok(Ok(v as i32));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS) => Ok(Err("the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK), or a seccomp profile around the runtime refuses its system calls".into())),
        Some(libc::EOPNOTSUPP) => Ok(Err("Landlock is built in but not enabled (add landlock to the kernel's lsm= boot parameter)".into())),
        _ => Err(LandlockError::Query(e)),
    }
}

/// Takes the worker's domain (see the module docs) on the calling thread,
/// which must be the process's only one. `narrow_dir`: a directory, opened
/// before (the worker can no longer open its path), whose files stay
/// readable.
pub fn restrict(narrow_dir: Option<BorrowedFd<'_>>) -> Result<Outcome, LandlockError> {
    let threads = std::fs::read_dir("/proc/self/task").map_err(LandlockError::CountThreads)?.count();
    if threads != 1 {
        return Err(LandlockError::Threaded { threads });
    }
    restrict_this_thread(narrow_dir)
}

/// [`restrict`] for the calling thread (and the threads it starts) alone.
fn restrict_this_thread(narrow_dir: Option<BorrowedFd<'_>>) -> Result<Outcome, LandlockError> {
    let abi = match abi()? {
        Ok(abi) => abi,
        Err(why) => return Ok(Outcome::Unavailable(why)),
    };
    let attr = handled(abi);
    // SAFETY: `attr` is a valid ruleset attribute of the size given.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const RulesetAttr, std::mem::size_of::<RulesetAttr>(), 0u32) };
    if fd < 0 {
        return Err(LandlockError::Create(std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if let Some(dir) = narrow_dir {
        add_rule(&ruleset, dir.as_raw_fd(), "the narrowing directory", FS_READ_FILE | FS_READ_DIR)?;
    }
    // SAFETY: plain system call on a ruleset descriptor we own; the
    // process has no_new_privs (crate::privdrop).
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) } != 0 {
        return Err(LandlockError::Restrict(std::io::Error::last_os_error()));
    }
    Ok(Outcome::Enforced { abi })
}

/// Lets the domain have `access` (never `execute`) beneath the directory
/// `dir` (`path` names it in errors).
fn add_rule(ruleset: &OwnedFd, dir: std::os::fd::RawFd, path: &str, access: u64) -> Result<(), LandlockError> {
    let rule = PathBeneathAttr { allowed_access: access & !FS_EXECUTE, parent_fd: dir };
    // SAFETY: `rule` is a valid path-beneath attribute; both descriptors
    // are open for the call.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_add_rule, ruleset.as_raw_fd(), RULE_PATH_BENEATH, &rule as *const PathBeneathAttr, 0u32) };
    if rc != 0 {
        return Err(LandlockError::AddRule { path: path.into(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "BOUNDARY_LANDLOCK_TEST_CHILD";

    /// In a process of its own (this test binary again, running only the
    /// child half): the domain goes on, then each kind of access is tried
    /// for real, with a control that works before.
    #[test]
    fn the_domain_denies_files_signals_abstract_sockets_and_binds() {
        let abi = abi().unwrap().unwrap_or_else(|why| panic!("this test needs Landlock: {why}"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("narrow")).unwrap();
        std::fs::write(dir.path().join("narrow/set"), "rules").unwrap();
        std::fs::write(dir.path().join("outside"), "secret").unwrap();
        let text = crate::run_child_half("landlock::tests::child_half", CHILD, dir.path());
        assert!(text.contains(&format!("landlock child: enforced at ABI {abi}")), "the child half did not run:\n{text}");
    }

    #[test]
    #[ignore = "the child half of the_domain_denies_files_signals_abstract_sockets_and_binds"]
    fn child_half() {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
        let Some(narrow) = std::env::var_os(CHILD) else {
            return;
        };
        let base = std::path::PathBuf::from(narrow);
        let narrow = base.join("narrow");
        assert_eq!(std::fs::read_to_string(base.join("outside")).unwrap(), "secret", "control");
        let name = format!("boundary-landlock-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _listener = UnixListener::bind_addr(&addr).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Controls, before.
        assert!(UnixStream::connect_addr(&addr).is_ok());
        assert!(std::fs::read_to_string("/etc/hostname").is_ok() || std::fs::read_to_string("/proc/version").is_ok());
        let parent = nix::unistd::getppid();
        assert!(nix::sys::signal::kill(parent, None).is_ok(), "control: the parent can be signalled before");

        nix::sys::prctl::set_no_new_privs().unwrap();
        crate::resident::keep_smaps_open().unwrap();
        // The harness runs this on a thread of its own: the domain binds
        // it and what it starts (the worker uses `restrict`, which checks
        // that it is the only thread).
        let narrow_fd = std::fs::File::open(&narrow).unwrap();
        let abi = match restrict_this_thread(Some(std::os::fd::AsFd::as_fd(&narrow_fd))).unwrap() {
            Outcome::Enforced { abi } => abi,
            Outcome::Unavailable(why) => panic!("no Landlock: {why}"),
        };
        let denied = |what: &str, r: std::io::Result<String>| {
            let e = r.expect_err(what);
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{what}: {e}");
        };
        denied("/proc/version", std::fs::read_to_string("/proc/version"));
        denied("/etc/passwd", std::fs::read_to_string("/etc/passwd"));
        denied("a file beside the narrowing directory", std::fs::read_to_string(base.join("outside")));
        denied("/proc/self/smaps", std::fs::read_to_string("/proc/self/smaps"));
        let e = std::fs::write(narrow.join("new"), "x").expect_err("made a file in the narrowing directory");
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        // What stays allowed: smaps through the descriptor kept open, the
        // narrowing files, sockets it holds, threads, connecting out.
        assert!(crate::resident::release_startup_pages().is_ok(), "smaps through the kept descriptor");
        assert_eq!(std::fs::read_to_string(narrow.join("set")).unwrap(), "rules");
        assert_eq!(std::fs::read_dir(&narrow).unwrap().count(), 1);
        assert_eq!(std::thread::spawn(|| 7).join().unwrap(), 7);
        assert!(std::net::TcpStream::connect(tcp.local_addr().unwrap()).is_ok(), "connecting out must stay allowed");
        if abi >= 4 {
            let e = std::net::TcpListener::bind("127.0.0.1:0").expect_err("a TCP bind");
            assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        }
        if abi >= 6 {
            let e = UnixStream::connect_addr(&addr).expect_err("an abstract socket made outside the domain");
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
            assert_eq!(nix::sys::signal::kill(parent, None), Err(nix::errno::Errno::EPERM), "the parent, outside the domain");
            // This thread itself (tgkill: the process's main thread is the
            // harness's, outside the domain).
            // SAFETY: signal 0 to this very thread: a permission check only.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), 0) };
            assert_eq!(rc, 0, "signal 0 to itself: {}", std::io::Error::last_os_error());
        }
        #[allow(clippy::print_stdout)] // read by the parent test
        {
            println!("landlock child: enforced at ABI {abi}");
        }
    }
}
