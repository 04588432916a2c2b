//! Forking and exec'ing a child of the sidecar (the supervisor, from the
//! keeper; a worker, from the supervisor) with its descriptors at fixed
//! numbers.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;
use nix::unistd::{ForkResult, Pid};

use super::resources::WorkerFds;
use super::{SupervisorError, AUDIT_FD, DNS_TCP_FD, DNS_UDP_FD, LIFELINE_FD, PROXY_FD, WORKER_READY_FD};

/// Everything `execve` needs, prepared before `fork` so the child allocates
/// nothing.
#[derive(Debug)]
pub(super) struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    argv_with_ready: Vec<CString>,
    envp: Vec<CString>,
    /// The child dies with its parent (SIGKILL), set before `execve`.
    follow_parent: bool,
}

/// Forks and execs the child of `plan` with the descriptors mapped onto
/// 3..=8 (the readiness pipe only when given).
pub(super) fn spawn_child(plan: &ExecPlan, f: &WorkerFds, lifeline: &OwnedFd, ready: Option<&OwnedFd>) -> Result<Pid, SupervisorError> {
    let mut maps = vec![
        (f.proxy.as_raw_fd(), PROXY_FD),
        (f.dns_udp.as_raw_fd(), DNS_UDP_FD),
        (f.dns_tcp.as_raw_fd(), DNS_TCP_FD),
        (f.audit.as_raw_fd(), AUDIT_FD),
        (lifeline.as_raw_fd(), LIFELINE_FD),
    ];
    let args = match ready {
        Some(fd) => {
            maps.push((fd.as_raw_fd(), WORKER_READY_FD));
            &plan.argv_with_ready
        }
        None => &plan.argv,
    };
    let argv = null_terminated(args);
    let envp = null_terminated(&plan.envp);
    let path = plan.path.as_ptr();
    let parent = nix::unistd::getpid().as_raw();
    let follow = plan.follow_parent;
    // SAFETY: the keeper and the supervisor are single-threaded (no
    // runtime, no helper threads), so the child is a faithful copy with no
    // lock held by a vanished thread; the child runs only `exec_child`,
    // which makes async-signal-safe calls on data prepared before the fork.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => exec_child(&maps, follow.then_some(parent), path, &argv, &envp),
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(SupervisorError::Fork(e)),
    }
}

/// In the forked child: maps the descriptors, optionally ties its life to
/// `parent`'s, clears the signal mask and execs. Never returns.
fn exec_child(maps: &[(RawFd, RawFd)], parent: Option<i32>, path: *const libc::c_char, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> ! {
    // SAFETY: only async-signal-safe functions (dup2, prctl, getppid,
    // sigemptyset, sigprocmask, execve, _exit) on memory prepared before the
    // fork; `argv` and `envp` are NULL-terminated arrays of pointers into
    // CStrings that outlive this call. Every source descriptor is >= HIGH_FD
    // and every target is below it, so no mapping overwrites a later source;
    // dup2 leaves the target without FD_CLOEXEC, every other descriptor of
    // the parent has it. The parent-death signal survives execve of a binary
    // that is neither set-id nor file-capable (ours, run by root).
    unsafe {
        for &(src, dst) in maps {
            if libc::dup2(src, dst) < 0 {
                libc::_exit(126);
            }
        }
        if let Some(parent) = parent {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 || libc::getppid() != parent {
                libc::_exit(125);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::execve(path, argv.as_ptr(), envp.as_ptr());
        libc::_exit(127)
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

impl ExecPlan {
    /// `boundary-sidecar --worker --config FILE [--ready-fd 7]`.
    pub(super) fn worker(config_path: &Path) -> Result<Self, SupervisorError> {
        ExecPlan::new(config_path, "--worker", false)
    }

    /// `boundary-sidecar --supervisor --config FILE [--ready-fd 7]`, killed
    /// when the keeper dies.
    pub(super) fn supervisor(config_path: &Path) -> Result<Self, SupervisorError> {
        ExecPlan::new(config_path, "--supervisor", true)
    }

    fn new(config_path: &Path, mode: &'static str, follow_parent: bool) -> Result<Self, SupervisorError> {
        let c = |what: &'static str, bytes: &[u8]| {
            CString::new(bytes).map_err(|_| SupervisorError::NulInArgument { what })
        };
        let config = c("the config path", config_path.as_os_str().as_bytes())?;
        let base = vec![c("argv0", b"boundary-sidecar")?, c("flag", mode.as_bytes())?, c("flag", b"--config")?, config];
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
            follow_parent,
        })
    }
}
