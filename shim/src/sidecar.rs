//! Starting and stopping a jail's sidecar (`boundary-sidecar`).
//!
//! The builder (the process the shim forks to finish the jail) starts the
//! sidecar's keeper and waits until it says it has bound its sockets (`ok`
//! on a pipe) or why it could not (`error: ...`). The sidecar outlives the
//! shim, which has gone on to `execve` runc.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boundary_contract::SidecarPids;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("cannot start sidecar {binary}")]
    Spawn { binary: PathBuf, #[source] source: std::io::Error },
    #[error("sidecar failed to start: {0}")]
    Failed(String),
    #[error("sidecar did not become ready within {0:?} (see {1})")]
    Timeout(Duration, PathBuf),
    #[error("sidecar pipe")]
    Pipe(#[source] nix::Error),
}

/// Starts the supervisor; returns its pid once it is serving.
///
/// The supervisor is detached (double fork): it must not stay a child of
/// this process, which becomes the delegate runtime by `execve`. `crun run`
/// waits until it has no child left before it runs the poststop hooks, so a
/// sidecar child kept it (and the hook that stops the sidecar) waiting
/// forever; runc reaped it as if it were its own. Detached, it is
/// reparented to the nearest subreaper (the engine's shim) or init.
pub fn start(binary: &Path, config: &Path, log: &Path, timeout: Duration) -> Result<i32, SidecarError> {
    spawn(binary, config, log)?.wait(timeout)
}

/// A sidecar that was started and has not yet said whether it is ready.
/// Dropping it without [`Starting::wait`] kills it.
#[derive(Debug)]
pub struct Starting {
    pid: i32,
    answer: Option<OwnedFd>,
    log: PathBuf,
}

/// Starts the supervisor detached (see [`start`]) and returns at once, so
/// the caller can build the rest of the jail while the sidecar starts.
pub fn spawn(binary: &Path, config: &Path, log: &Path) -> Result<Starting, SidecarError> {
    let spawn_err = |source| SidecarError::Spawn { binary: binary.to_path_buf(), source };
    let (rd, wr): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SidecarError::Pipe)?;
    let (pid_rd, pid_wr): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SidecarError::Pipe)?;
    let logf = OpenOptions::new().create(true).append(true).open(log).map_err(spawn_err)?;
    let (wr_fd, pid_wr_fd) = (wr.as_raw_fd(), pid_wr.as_raw_fd());
    let mut cmd = Command::new(binary);
    cmd.arg("--config").arg(config).arg("--ready-fd").arg(wr_fd.to_string());
    cmd.stdin(Stdio::null()).stdout(logf.try_clone().map_err(spawn_err)?).stderr(logf);
    // SAFETY: between fork and exec only fcntl, fork, write and _exit are
    // called, all async-signal-safe. The ready pipe's write end survives
    // exec; the forked child goes on to exec the supervisor while its parent
    // reports the child's pid and exits at once (without running any Rust
    // or libc exit handlers).
    unsafe {
        cmd.pre_exec(move || {
            let borrowed = std::os::fd::BorrowedFd::borrow_raw(wr_fd);
            fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
            // A raw clone(SIGCHLD) rather than libc's fork(): fork() runs
            // the atfork handlers (malloc's locks among them), which is not
            // safe in the child of a possibly multithreaded process.
            let child = nix::libc::syscall(nix::libc::SYS_clone, nix::libc::SIGCHLD as nix::libc::c_long, 0, 0, 0, 0);
            match child {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                child => {
                    let pid_wr = std::os::fd::BorrowedFd::borrow_raw(pid_wr_fd);
                    let _ = nix::unistd::write(pid_wr, &(child as i32).to_ne_bytes());
                    nix::libc::_exit(0)
                }
            }
        });
    }
    let mut intermediate = cmd.spawn().map_err(spawn_err)?;
    drop(wr);
    drop(pid_wr);
    let _ = intermediate.wait();
    let pid = read_pid(pid_rd).ok_or_else(|| SidecarError::Failed("it could not be detached from boundary-runc".into()))?;
    Ok(Starting { pid, answer: Some(rd), log: log.to_path_buf() })
}

impl Starting {
    /// The supervisor's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the sidecar's answer; returns its pid once it is serving.
    /// On failure the sidecar is killed.
    pub fn wait(mut self, timeout: Duration) -> Result<i32, SidecarError> {
        let Some(rd) = self.answer.take() else { return Err(SidecarError::Failed("already waited for".into())) };
        let answer = read_answer(rd, timeout);
        let failure = match answer {
            Ok(Some(line)) if line.trim() == "ok" => return Ok(self.pid),
            Ok(Some(line)) => SidecarError::Failed(line.trim().trim_start_matches("error:").trim().to_string()),
            Ok(None) => SidecarError::Failed(format!("it exited before it was ready; its log is {}", self.log.display())),
            Err(e) => e.unwrap_or(SidecarError::Timeout(timeout, self.log.clone())),
        };
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        Err(failure)
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if self.answer.is_some() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

/// The supervisor's pid, as the intermediate process reported it.
fn read_pid(rd: OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    std::fs::File::from(rd).read_exact(&mut buf).ok()?;
    Some(i32::from_ne_bytes(buf))
}

/// Reads one answer line; `Ok(None)` on EOF, `Err(None)` on timeout.
fn read_answer(rd: OwnedFd, timeout: Duration) -> Result<Option<String>, Option<SidecarError>> {
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(rd);
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(None);
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&file), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Some(SidecarError::Pipe(e))),
        }
        let mut chunk = [0u8; 512];
        match file.read(&mut chunk) {
            Ok(0) => return Ok(if buf.is_empty() { None } else { Some(String::from_utf8_lossy(&buf).into_owned()) }),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Some(SidecarError::Pipe(nix::Error::from_raw(e.raw_os_error().unwrap_or(5))))),
        }
    }
}

/// Whether `pid` is a live (not zombie) boundary-sidecar serving `config`.
pub fn is_our_sidecar(pid: i32, config: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let named = args.first().is_some_and(|a| a.ends_with(b"boundary-sidecar"));
    let conf = config.as_os_str().as_encoded_bytes();
    named && args.contains(&conf) && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Every live boundary-sidecar process serving `config`, whatever its
/// place in the tree (keeper, supervisor, worker); also finds one whose pid
/// was never recorded (a `create` killed while its sidecar started).
fn serving(config: &Path) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).filter(|p| is_our_sidecar(*p, config)).collect()
}

/// A pidfd for `pid` (readable once the process has exited), opened only
/// while `pid` is still the sidecar serving `config`, so a reused pid is
/// never waited for. `None` when it is already gone or pidfds are missing.
fn pidfd_of(pid: i32, config: &Path) -> Option<OwnedFd> {
    let fd = pidfd_open(pid)?;
    is_our_sidecar(pid, config).then_some(fd)
}

/// A pidfd for `pid` (readable once it has exited); `None` when it is gone
/// or the kernel has no pidfds (< 5.3).
pub(crate) fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (or -1); the descriptor is owned by nothing else.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open and is ours alone.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Hands the container's init (`init`, a pid in our namespace) to the
/// sidecar keeper `keeper` serving `config`: SIGUSR1 queued with the pid as
/// its value, sent through a pidfd opened while `keeper` is that sidecar,
/// so a reused pid never gets it. The keeper then stops its proxy as soon as
/// the init has exited and the jail is empty (see the keeper's
/// `InitWatch`), instead of when the teardown comes.
pub fn hand_over_init(keeper: i32, config: &Path, init: i32) -> std::io::Result<()> {
    let Some(fd) = pidfd_of(keeper, config) else {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no sidecar keeper {keeper} serving {}", config.display())));
    };
    // A keeper that does not read SIGUSR1 (one of a build before the
    // hand-over existed) would be killed by it.
    if !blocks_signal(keeper, nix::libc::SIGUSR1) {
        return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, format!("sidecar keeper {keeper} does not take the init hand-over (an older build)")));
    }
    /// `siginfo_t` as `rt_sigqueueinfo(2)` and `pidfd_send_signal(2)` take
    /// it on 64-bit Linux: signo, errno, code, then the `_rt` member
    /// (pid, uid, sigval) at offset 16; 128 bytes in all.
    #[repr(C)]
    struct Queued {
        signo: i32,
        errno: i32,
        code: i32,
        pad: i32,
        pid: i32,
        uid: u32,
        value: u64,
        rest: [u64; 12],
    }
    const _: () = assert!(std::mem::size_of::<Queued>() == 128);
    let info = Queued {
        signo: nix::libc::SIGUSR1,
        errno: 0,
        code: nix::libc::SI_QUEUE,
        pad: 0,
        pid: std::process::id() as i32,
        uid: nix::unistd::getuid().as_raw(),
        value: u64::try_from(init).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?,
        rest: [0; 12],
    };
    // SAFETY: pidfd_send_signal reads a siginfo_t (128 bytes, laid out as
    // above) from the pointer, which lives until the call returns.
    let rc = unsafe {
        nix::libc::syscall(nix::libc::SYS_pidfd_send_signal, std::os::fd::AsRawFd::as_raw_fd(&fd), nix::libc::SIGUSR1, &info as *const Queued, 0)
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Whether `pid` blocks `signal` (its `SigBlk` in /proc/<pid>/status).
fn blocks_signal(pid: i32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    sig_blocked(&status, signal)
}

fn sig_blocked(status: &str, signal: i32) -> bool {
    let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).and_then(|m| u64::from_str_radix(m.trim(), 16).ok());
    signal >= 1 && mask.is_some_and(|m| m & (1u64 << (signal - 1)) != 0)
}

/// Waits until none of `pids` is a live sidecar serving `config`, or until
/// `deadline`. The exits are waited for on pidfds, so the wait ends when the
/// last one exits; without pidfds (kernel < 5.3) it polls every 2 ms.
/// Returns whether they all exited.
fn await_exit(pids: &[i32], config: &Path, deadline: Instant) -> bool {
    let mut fds = Vec::new();
    for p in pids {
        match pidfd_of(*p, config) {
            Some(fd) => fds.push(fd),
            None if is_our_sidecar(*p, config) => {
                while pids.iter().any(|p| is_our_sidecar(*p, config)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                return !pids.iter().any(|p| is_our_sidecar(*p, config));
            }
            None => {}
        }
    }
    while !fds.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = PollTimeout::try_from(left.as_millis().saturating_add(1).min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut polled: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(std::os::fd::AsFd::as_fd(f), PollFlags::POLLIN)).collect();
        match poll(&mut polled, ms) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return false,
        }
        let exited: Vec<bool> = polled.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        fds = fds.into_iter().zip(exited).filter(|(_, gone)| !gone).map(|(fd, _)| fd).collect();
    }
    true
}

/// The sidecar's pid file, when it exists and parses.
pub fn read_pids(pids_file: &Path) -> Option<SidecarPids> {
    std::fs::read(pids_file).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Stops the sidecar serving `config`: SIGTERM to the keeper, the
/// supervisor and the worker (`recorded` from its pid file, see
/// [`read_pids`], given, or found serving `config`), SIGKILL to whatever
/// is left after `grace`.
pub fn stop(recorded: Option<SidecarPids>, keeper: Option<i32>, config: &Path, grace: Duration) {
    let keeper = keeper.or(recorded.as_ref().and_then(|r| r.keeper));
    let mut pids: Vec<i32> = keeper.into_iter().collect();
    if let Some(r) = recorded {
        pids.push(r.supervisor);
        pids.extend(r.worker);
        pids.extend(r.keeper);
    }
    let deadline = Instant::now() + grace;
    let mut live: Vec<i32> = pids.into_iter().filter(|p| is_our_sidecar(*p, config)).collect();
    live.sort_unstable();
    live.dedup();
    for p in &live {
        let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
    }
    // The keeper exits only once it has reaped the supervisor, and the
    // supervisor only once it has reaped its worker: a live keeper that
    // exits leaves no sidecar process behind, and /proc (~1 ms per hundred
    // processes) is not searched. Otherwise (no keeper known or alive, or
    // one that does not stop in time) any process serving `config` is.
    let keeper_alive = keeper.is_some_and(|k| live.contains(&k));
    if keeper_alive && await_exit(&live, config, deadline) {
        return;
    }
    for p in serving(config) {
        if !live.contains(&p) {
            let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
            live.push(p);
        }
    }
    await_exit(&live, config, deadline);
    for p in live.iter().filter(|p| is_our_sidecar(**p, config)) {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocked_mask_is_read_bit_by_signal() {
        // SIGHUP (1), SIGUSR1 (10 on Linux), SIGTERM (15), SIGCHLD (17).
        let status = "Name:\tboundary-sidecar\nSigBlk:\t0000000000014201\nSigIgn:\t0000000000000000\n";
        for sig in [nix::libc::SIGHUP, nix::libc::SIGUSR1, nix::libc::SIGTERM, nix::libc::SIGCHLD] {
            assert!(sig_blocked(status, sig), "{sig}");
        }
        assert!(!sig_blocked(status, nix::libc::SIGUSR2));
        assert!(!sig_blocked("SigBlk:\t0000000000014001\n", nix::libc::SIGUSR1), "an older keeper");
        assert!(!sig_blocked("Name:\tx\n", nix::libc::SIGUSR1));
        assert!(!sig_blocked(status, 0));
    }
}
