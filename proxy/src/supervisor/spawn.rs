//! Starting a child of the sidecar with its descriptors at fixed numbers:
//! the supervisor is forked from the keeper without `execve`
//! ([`fork_supervisor`]); a worker is forked and exec'd from the
//! supervisor ([`spawn_child`]), for a fresh address space before it drops
//! privileges.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::panic::AssertUnwindSafe;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::{ForkResult, Pid};

use super::resources::WorkerFds;
use super::{SupervisorError, AUDIT_FD, DNS_TCP_FD, DNS_UDP_FD, LIFELINE_FD, PROXY_FD, WORKER_READY_FD};

/// Exit status of a forked child whose set-up failed before it could run.
const SETUP_FAILED: i32 = 126;
/// Exit status of a forked supervisor whose keeper died before it could
/// tie its life to the keeper's.
const ORPHANED: i32 = 125;

/// Everything `execve` needs, prepared before `fork` so the child allocates
/// nothing.
#[derive(Debug)]
pub(super) struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    argv_with_ready: Vec<CString>,
    envp: Vec<CString>,
}

/// Forks and execs the child of `plan` with the descriptors mapped onto
/// 3..=8 (the readiness pipe only when given).
pub(super) fn spawn_child(plan: &ExecPlan, f: &WorkerFds, lifeline: &OwnedFd, ready: Option<&OwnedFd>) -> Result<Pid, SupervisorError> {
    let maps = fd_maps(f, lifeline, ready);
    let args = if ready.is_some() { &plan.argv_with_ready } else { &plan.argv };
    let argv = null_terminated(args);
    let envp = null_terminated(&plan.envp);
    let path = plan.path.as_ptr();
    // SAFETY: the supervisor is single-threaded (no runtime, no helper
    // threads), so the child is a faithful copy with no lock held by a
    // vanished thread; the child runs only `exec_child`, which makes
    // async-signal-safe calls on data prepared before the fork.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => exec_child(&maps, path, &argv, &envp),
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(SupervisorError::Fork(e)),
    }
}

/// In the forked child: maps the descriptors, sets the signal mask to
/// SIGHUP alone and execs (the worker sets its own parent-death signal).
/// Never returns. SIGHUP stays blocked across the exec until the worker
/// ignores it (`worker::ignore_hangup_until_served`): a shim's narrowing
/// signal that comes while the worker starts must not kill it (its default
/// action); the worker loads the narrowing directory at start anyway.
fn exec_child(maps: &[(RawFd, RawFd)], path: *const libc::c_char, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> ! {
    // SAFETY: only async-signal-safe functions (dup2, sigemptyset,
    // sigaddset, sigprocmask, execve, _exit) on memory prepared before the fork;
    // `argv` and `envp` are NULL-terminated arrays of pointers into
    // CStrings that outlive this call. Every source descriptor is >= HIGH_FD
    // and every target is below it, so no mapping overwrites a later source;
    // dup2 leaves the target without FD_CLOEXEC, every other descriptor of
    // the parent has it.
    unsafe {
        for &(src, dst) in maps {
            if libc::dup2(src, dst) < 0 {
                libc::_exit(SETUP_FAILED);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::execve(path, argv.as_ptr(), envp.as_ptr());
        libc::_exit(127)
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// The descriptors a child gets, as `(source, fixed number)`; the
/// readiness pipe only when given.
fn fd_maps(f: &WorkerFds, lifeline: &OwnedFd, ready: Option<&OwnedFd>) -> Vec<(RawFd, RawFd)> {
    let mut maps = vec![
        (f.proxy.as_raw_fd(), PROXY_FD),
        (f.dns_udp.as_raw_fd(), DNS_UDP_FD),
        (f.dns_tcp.as_raw_fd(), DNS_TCP_FD),
        (f.audit.as_raw_fd(), AUDIT_FD),
        (lifeline.as_raw_fd(), LIFELINE_FD),
    ];
    if let Some(fd) = ready {
        maps.push((fd.as_raw_fd(), WORKER_READY_FD));
    }
    maps
}

/// Forks the supervisor from the keeper WITHOUT `execve`: the child shares
/// the keeper's pages copy-on-write instead of loading the binary again.
///
/// In the child, before `body` runs: the descriptors sit at 3..=8 as for
/// [`spawn_child`] (the readiness pipe at [`WORKER_READY_FD`] only when
/// given), every other descriptor above 2 is closed (the keeper's signalfd,
/// its orphan-watch pidfd, the other ends of pipes, the keeper's own
/// readiness pipe), the keeper's death sends it SIGKILL, and exactly
/// `mask` is blocked. `body`'s value is the exit status; the child never
/// returns into the caller's frames (it `_exit`s), so none of the keeper's
/// state copied into it is used or dropped there.
///
/// Invariant: the calling process is single-threaded (checked first, from
/// /proc/self/status), so the child is a faithful copy and may allocate.
pub(super) fn fork_supervisor(
    f: &WorkerFds,
    lifeline: &OwnedFd,
    ready: Option<&OwnedFd>,
    mask: &SigSet,
    body: impl FnOnce() -> i32,
) -> Result<Pid, SupervisorError> {
    ensure_single_threaded()?;
    let maps = fd_maps(f, lifeline, ready);
    let keeper = nix::unistd::getpid();
    // SAFETY: the process has exactly one thread (checked just above; the
    // keeper never starts one), so no lock (malloc's, stdio's) can be held
    // by a thread that does not exist in the child. The child never returns
    // from this function: it runs `body` and `_exit`s.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let code = match prepare_forked(&maps, ready.is_some(), keeper, mask) {
                Ok(()) => std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(SETUP_FAILED),
                Err(code) => code,
            };
            // SAFETY: _exit ends the process without unwinding, destructors
            // or atexit handlers: the keeper's values copied into this child
            // (descriptors now closed here) must never be dropped in it.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(SupervisorError::Fork(e)),
    }
}

/// In the forked supervisor: parent-death signal, descriptors, signal mask.
/// `Err` holds the exit status.
fn prepare_forked(maps: &[(RawFd, RawFd)], has_ready: bool, keeper: Pid, mask: &SigSet) -> Result<(), i32> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } < 0 {
        return Err(SETUP_FAILED);
    }
    // Set after the fork: a keeper that died before the prctl sent nothing.
    if nix::unistd::getppid() != keeper {
        return Err(ORPHANED);
    }
    for &(src, dst) in maps {
        // SAFETY: every source is >= HIGH_FD and every target below it, so
        // no mapping overwrites a later source; dup2 on numbers only.
        if unsafe { libc::dup2(src, dst) } < 0 {
            return Err(SETUP_FAILED);
        }
    }
    if !has_ready {
        // SAFETY: closes whatever the keeper had at this number (nothing of
        // the supervisor's yet); EBADF when nothing is harmless.
        unsafe { libc::close(WORKER_READY_FD) };
    }
    close_from(LIFELINE_FD + 1).map_err(|_| SETUP_FAILED)?;
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None).map_err(|_| SETUP_FAILED)
}

/// Closes every descriptor from `first` up.
fn close_from(first: RawFd) -> Result<(), Errno> {
    // SAFETY: close_range takes two descriptor numbers and flags; the
    // keeper's values owning these numbers are never used or dropped in
    // this process (see `fork_supervisor`).
    if unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint) } == 0 {
        return Ok(());
    }
    // Kernels before 5.9: close up to the descriptor limit.
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?.0.min(1 << 20);
    for fd in first..limit as RawFd {
        // SAFETY: as above; EBADF on numbers not open is harmless.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Fails unless the calling process has exactly one thread: forking
/// without `execve` is only safe then.
fn ensure_single_threaded() -> Result<(), SupervisorError> {
    let status = fs::read_to_string("/proc/self/status").map_err(SupervisorError::ThreadCount)?;
    match thread_count(&status) {
        Some(1) => Ok(()),
        Some(threads) => Err(SupervisorError::NotSingleThreaded { threads }),
        None => Err(SupervisorError::ThreadCount(io::Error::other("no Threads: line"))),
    }
}

/// The `Threads:` field of /proc/<pid>/status.
fn thread_count(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

impl ExecPlan {
    /// `boundary-sidecar --worker --config FILE --parent PID [--ready-fd
    /// 7]`, PID being the caller's (the supervisor's): the worker checks it
    /// is still its parent once it follows the parent's death, so a
    /// supervisor that died between the fork and that point is noticed.
    pub(super) fn worker(config_path: &Path) -> Result<Self, SupervisorError> {
        let mode = "--worker";
        let c = |what: &'static str, bytes: &[u8]| {
            CString::new(bytes).map_err(|_| SupervisorError::NulInArgument { what })
        };
        let config = c("the config path", config_path.as_os_str().as_bytes())?;
        let parent = nix::unistd::getpid().to_string();
        let base = vec![c("argv0", b"boundary-sidecar")?, c("flag", mode.as_bytes())?, c("flag", b"--config")?, config, c("flag", b"--parent")?, c("flag", parent.as_bytes())?];
        let mut with_ready = base.clone();
        with_ready.push(c("flag", b"--ready-fd")?);
        with_ready.push(c("flag", WORKER_READY_FD.to_string().as_bytes())?);
        // A clean environment: only the log level and backtrace switch pass.
        let mut envp = Vec::new();
        for key in ["BOUNDARY_LOG", "RUST_BACKTRACE"] {
            if let Some(value) = std::env::var_os(key) {
                let mut kv = OsStr::new(key).as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(value.as_bytes());
                envp.push(c("an environment variable", &kv)?);
            }
        }
        Ok(ExecPlan {
            path: c("the executable path", b"/proc/self/exe")?,
            argv: base,
            argv_with_ready: with_ready,
            envp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_reads_the_status_field() {
        assert_eq!(thread_count("Name:\tx\nThreads:\t1\nSigQ:\t0/1\n"), Some(1));
        assert_eq!(thread_count("Threads:\t12\n"), Some(12));
        assert_eq!(thread_count("Name:\tx\n"), None);
    }

    #[test]
    fn forking_without_exec_is_refused_with_a_second_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || rx.recv());
        let outcome = ensure_single_threaded();
        drop(tx);
        helper.join().unwrap().unwrap_err();
        match outcome {
            Err(SupervisorError::NotSingleThreaded { threads }) => assert!(threads >= 2),
            other => panic!("expected NotSingleThreaded, got {other:?}"),
        }
    }
}
