//! The sidecar's process tree: a keeper, a supervisor, a worker.
//!
//! The **keeper** ([`keeper`], the process the shim starts) blocks the
//! signals it handles, calls `setsid`, reads the config, enters the
//! container's host-side network namespace, binds the proxy socket (TCP)
//! and the DNS sockets (UDP and TCP) and opens the audit log. It holds these
//! for its whole life and runs one supervisor, restarting it at once when
//! it dies; it also runs the orphan watch. It handles no container bytes.
//!
//! The **supervisor** (this module) is forked from the keeper WITHOUT
//! `execve` ([`spawn::fork_supervisor`]): it shares the keeper's pages
//! copy-on-write instead of loading the binary again (faster start, a
//! fraction of the resident memory), and keeps the keeper's command line,
//! which names the config file as the shim's teardown expects. It gets the
//! sockets from the keeper, keeps one worker alive and writes the pid file.
//! It dies with the keeper (parent-death signal SIGKILL, set in the child
//! right after the fork, then the keeper checked still alive). This needs a
//! single-threaded keeper (see [`keeper`]), asserted before every fork.
//!
//! The **worker** ([`crate::worker`], `--worker`) is forked AND exec'd by
//! the supervisor: a fresh address space holding no copy of the keeper's
//! memory, before it drops privileges and serves. It dies with the
//! supervisor.
//!
//! The sockets stay open in the keeper whatever else dies: the kernel keeps
//! queueing the container's connections in the listen backlog (and its DNS
//! datagrams in the socket buffer) until the next worker accepts them;
//! connections the dead worker had accepted are cut. Nothing leaks past the
//! boundary and nothing is refused for long (fail closed, recover fast).
//!
//! Children get the sockets at fixed descriptors ([`PROXY_FD`],
//! [`DNS_UDP_FD`], [`DNS_TCP_FD`]), the audit log at [`AUDIT_FD`], the write
//! end of the keeper's lifeline pipe at [`LIFELINE_FD`] (it reads EOF once a
//! supervisor and all its workers are gone, so a new worker never appends
//! to the audit log next to a dying one) and, for the first start only, a
//! readiness pipe at [`WORKER_READY_FD`].

pub mod keeper;
mod orphan;
mod readiness;
mod resources;
mod spawn;

use std::fs;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boundary_contract::{SidecarConfig, SidecarPids};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};

pub use readiness::{error_chain, report_start, Readiness};
use readiness::read_ready_line;
pub use resources::write_pid_file;
use resources::{adopt_high, move_high, WorkerFds, HIGH_FD};
use spawn::{spawn_child, ExecPlan};

/// Descriptor of the proxy's listening TCP socket in the worker.
pub const PROXY_FD: RawFd = 3;
/// Descriptor of the DNS UDP socket in the worker.
pub const DNS_UDP_FD: RawFd = 4;
/// Descriptor of the DNS listening TCP socket in the worker.
pub const DNS_TCP_FD: RawFd = 5;
/// Descriptor of the audit log (append, read-write) in the worker.
pub const AUDIT_FD: RawFd = 6;
/// Descriptor of the first worker's (or supervisor's) readiness pipe.
pub const WORKER_READY_FD: RawFd = 7;
/// Descriptor of the keeper's lifeline pipe (write end) in the supervisor
/// and the worker; nobody writes to it.
pub const LIFELINE_FD: RawFd = 8;

/// How long the first worker may take to read its files and drop privileges.
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping worker gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// A worker that dies sooner than this after start counts as crash-looping.
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// Upper bound of the restart back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Errors of the supervisor. Each names the step and the object.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the keeper released its sockets when the container stopped; no supervisor is started again")]
    SocketsReleased,
    #[error("readiness descriptor {fd} is not usable (must be an open descriptor above 2)")]
    ReadyFd {
        fd: RawFd,
        #[source]
        source: Errno,
    },
    #[error("descriptor {fd} was not passed by the keeper")]
    MissingFd {
        fd: RawFd,
        #[source]
        source: Errno,
    },
    #[error("blocking signals and opening the signalfd")]
    Signals(#[source] Errno),
    #[error("resolving the config path {path}")]
    ConfigPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Config(#[from] boundary_contract::ConfigReadError),
    #[error("opening network namespace {path}")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entering network namespace {path}")]
    EnterNetns {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("binding the {what} socket on {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddrV4,
        #[source]
        source: Errno,
    },
    #[error("creating the directory of {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening audit log {path}")]
    OpenAudit {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("preparing a child's command line: {what} contains a NUL byte")]
    NulInArgument { what: &'static str },
    #[error("moving a descriptor above {HIGH_FD}")]
    MoveFd(#[source] Errno),
    #[error("creating a pipe for a child")]
    Pipe(#[source] Errno),
    #[error("forking a child")]
    Fork(#[source] Errno),
    #[error("reading the keeper's thread count from /proc/self/status")]
    ThreadCount(#[source] io::Error),
    #[error("the keeper has {threads} threads; forking the supervisor without exec needs exactly one")]
    NotSingleThreaded { threads: u32 },
    #[error("waiting for a child to become ready")]
    WaitReady(#[source] Errno),
    #[error("the worker failed to start: {message}")]
    WorkerFailed { message: String },
    /// The supervisor's own report, passed on as it is.
    #[error("{message}")]
    SupervisorFailed { message: String },
    #[error("the {what} did not become ready within {timeout:?}")]
    ChildTimeout { what: &'static str, timeout: Duration },
    #[error("writing pid file {path}")]
    WritePidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waiting for signals")]
    Poll(#[source] Errno),
}

#[derive(Debug, Clone, Copy)]
struct Worker {
    pid: Pid,
    started: Instant,
}

/// A started supervisor: first worker ready, pid file written.
#[derive(Debug)]
pub struct Supervisor {
    cfg: SidecarConfig,
    fds: WorkerFds,
    lifeline: OwnedFd,
    signals: SignalFd,
    plan: ExecPlan,
    keeper: Pid,
    worker: Option<Worker>,
    quick_deaths: u32,
    respawn_at: Option<Instant>,
}

impl Supervisor {
    /// Takes over the keeper's descriptors, starts the first worker and
    /// writes the pid file. On error nothing is left running.
    /// `config_path` is the keeper's (absolute): the shim finds the worker
    /// by this argument in /proc/<pid>/cmdline; `cfg` is what it holds.
    fn start(config_path: &Path, cfg: SidecarConfig) -> Result<Self, SupervisorError> {
        umask(Mode::from_bits_truncate(0o077));
        let signals = block_signals()?;
        let keeper = nix::unistd::getppid();
        let fds = WorkerFds::inherited()?;
        let lifeline = adopt_high(LIFELINE_FD)?;
        let plan = ExecPlan::worker(config_path)?;
        let mut sup = Supervisor { cfg, fds, lifeline, signals, plan, keeper, worker: None, quick_deaths: 0, respawn_at: None };
        let worker = sup.spawn_first_worker()?;
        sup.worker = Some(worker);
        if let Err(e) = sup.write_pid_file() {
            sup.kill_worker_now();
            return Err(e);
        }
        log::info!("sidecar for {} serving, worker pid {}", sup.cfg.container_id, worker.pid);
        Ok(sup)
    }

    /// Supervises the worker until SIGTERM or SIGINT, then stops it, removes
    /// the pid file and returns.
    pub fn run(mut self) -> Result<(), SupervisorError> {
        let mut release = crate::resident::StartupRelease::new();
        loop {
            let timeout = match crate::resident::earlier(self.respawn_at, release.due()) {
                Some(at) => duration_timeout(at.saturating_duration_since(Instant::now())),
                None => PollTimeout::NONE,
            };
            let mut pfd = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            match poll(&mut pfd, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(SupervisorError::Poll(e)),
            }
            while let Some(sig) = next_signal(&self.signals) {
                match sig {
                    Signal::SIGCHLD => self.reap(),
                    Signal::SIGTERM | Signal::SIGINT => {
                        log::info!("received {sig}, stopping");
                        self.stop();
                        return Ok(());
                    }
                    _ => {}
                }
            }
            if self.respawn_at.is_some_and(|at| Instant::now() >= at) {
                self.respawn();
            }
            release.run_if_due("supervisor");
        }
    }

    /// Reaps every exited child; schedules a respawn when it was the worker.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let Some(pid) = status.pid() else { continue };
            let Some(worker) = self.worker.filter(|w| w.pid == pid) else { continue };
            if !matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                continue;
            }
            log::warn!("worker {pid} died ({status:?}); restarting");
            self.worker = None;
            let lived = worker.started.elapsed();
            self.quick_deaths = if lived < QUICK_DEATH { self.quick_deaths + 1 } else { 0 };
            self.respawn_at = Some(Instant::now() + backoff(self.quick_deaths));
        }
    }

    fn respawn(&mut self) {
        self.respawn_at = None;
        match spawn_child(&self.plan, &self.fds, &self.lifeline, None) {
            Ok(pid) => {
                self.worker = Some(Worker { pid, started: Instant::now() });
                log::info!("worker restarted as pid {pid}");
                if let Err(e) = self.write_pid_file() {
                    log::error!("{}", error_chain(&e));
                }
            }
            Err(e) => {
                log::error!("{}", error_chain(&e));
                self.quick_deaths += 1;
                self.respawn_at = Some(Instant::now() + backoff(self.quick_deaths).max(Duration::from_millis(100)));
            }
        }
    }

    /// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL; removes the pid
    /// file.
    fn stop(&mut self) {
        if let Some(worker) = self.worker.take() {
            let _ = stop_child(&self.signals, worker.pid, "worker", STOP_GRACE);
        }
        remove_pid_file(&self.cfg.pid_file);
    }

    fn kill_worker_now(&mut self) {
        if let Some(worker) = self.worker.take() {
            let _ = kill(worker.pid, Signal::SIGKILL);
            let _ = waitpid(worker.pid, None);
        }
    }

    /// Spawns the first worker with a readiness pipe and waits for its line.
    fn spawn_first_worker(&mut self) -> Result<Worker, SupervisorError> {
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(SupervisorError::Pipe)?;
        let write_end = move_high(write_end)?;
        let pid = spawn_child(&self.plan, &self.fds, &self.lifeline, Some(&write_end))?;
        drop(write_end);
        let worker = Worker { pid, started: Instant::now() };
        match await_ready(read_end, pid, "worker", WORKER_READY_TIMEOUT) {
            Ok(()) => Ok(worker),
            Err(message) => Err(message.map_or(SupervisorError::ChildTimeout { what: "worker", timeout: WORKER_READY_TIMEOUT }, |message| {
                SupervisorError::WorkerFailed { message }
            })),
        }
    }

    fn write_pid_file(&self) -> Result<(), SupervisorError> {
        let pids = SidecarPids {
            supervisor: std::process::id() as i32,
            worker: self.worker.map(|w| w.pid.as_raw()),
            keeper: Some(self.keeper.as_raw()),
        };
        write_pid_file(&self.cfg.pid_file, &pids)
    }
}

/// The forked supervisor's whole life (see [`spawn::fork_supervisor`]):
/// start, report on the readiness pipe at [`WORKER_READY_FD`] when
/// `ready`, run until stopped. Returns the exit status: 0 when stopped on
/// SIGTERM/SIGINT (the keeper then stops too), 1 on error.
fn serve_forked(config_path: &Path, cfg: SidecarConfig, ready: bool) -> i32 {
    let ready = match ready.then(|| Readiness::from_fd(WORKER_READY_FD)).transpose() {
        Ok(ready) => ready,
        Err(e) => {
            log::error!("{}", error_chain(&e));
            return 1;
        }
    };
    let outcome = report_start(Supervisor::start(config_path, cfg), ready).and_then(|sup| sup.run().map_err(|e| error_chain(&e)));
    match outcome {
        Ok(()) => 0,
        Err(message) => {
            log::error!("{message}");
            1
        }
    }
}

/// Waits for `pid`'s readiness line on `read_end`. `Err(None)`: no answer
/// in time; `Err(Some(message))`: it failed (and is killed and reaped).
fn await_ready(read_end: OwnedFd, pid: Pid, what: &str, timeout: Duration) -> Result<(), Option<String>> {
    let outcome = read_ready_line(read_end, timeout);
    if matches!(&outcome, Ok(line) if line == "ok") {
        return Ok(());
    }
    let _ = kill(pid, Signal::SIGKILL);
    let status = waitpid(pid, None);
    match outcome {
        Ok(line) => Err(Some(match line.strip_prefix("error: ") {
            Some(m) => m.to_owned(),
            None if line.is_empty() => format!("{what} exited without reporting ({status:?})"),
            None => format!("unexpected readiness line {line:?}"),
        })),
        Err(_) => Err(None),
    }
}

/// SIGTERM to `pid`, up to `grace` for it to exit (reaped), then SIGKILL.
/// Stops `pid` (SIGTERM, then SIGKILL after `grace`) and reaps it. Signals
/// that arrive meanwhile are consumed; returns whether SIGTERM or SIGINT
/// was among them (the caller was asked to stop as well).
fn stop_child(signals: &SignalFd, pid: Pid, what: &str, grace: Duration) -> bool {
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut exited = false;
    let mut asked_to_stop = false;
    while !exited && Instant::now() < deadline {
        let left = duration_timeout(deadline.saturating_duration_since(Instant::now()));
        let mut pfd = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut pfd, left);
        while let Some(sig) = next_signal(signals) {
            asked_to_stop |= matches!(sig, Signal::SIGTERM | Signal::SIGINT);
        }
        exited = !matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive));
    }
    if !exited {
        log::warn!("{what} {pid} ignored SIGTERM for {grace:?}; killing it");
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    asked_to_stop
}

fn remove_pid_file(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("removing pid file {}: {e}", path.display());
        }
    }
}

fn next_signal(signals: &SignalFd) -> Option<Signal> {
    match signals.read_signal() {
        Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
        Ok(None) => None,
        Err(e) => {
            log::warn!("reading the signalfd: {e}");
            None
        }
    }
}

/// SIGCHLD, SIGTERM, SIGINT and SIGHUP: what the keeper and the supervisor
/// block and read from a signalfd (and all a forked supervisor has blocked).
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(sig);
    }
    set
}

/// Blocks [`handled_signals`] and returns a signalfd for them.
fn block_signals() -> Result<SignalFd, SupervisorError> {
    block_signal_set(handled_signals())
}

/// Blocks `set` and returns a signalfd for it.
fn block_signal_set(set: SigSet) -> Result<SignalFd, SupervisorError> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(SupervisorError::Signals)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(SupervisorError::Signals)
}

/// Restart delay after `quick_deaths` consecutive deaths within
/// [`QUICK_DEATH`] of start: immediate for the first, then 100 ms doubling
/// up to [`MAX_BACKOFF`].
fn backoff(quick_deaths: u32) -> Duration {
    match quick_deaths {
        0 | 1 => Duration::ZERO,
        n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 2)).min(MAX_BACKOFF),
    }
}

/// A poll timeout for `d`, rounded up to whole milliseconds.
fn duration_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn backoff_is_immediate_then_bounded() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(200));
        assert_eq!(backoff(6), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn pid_file_is_written_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidecar.pid");
        let pids = SidecarPids { supervisor: 10, worker: Some(11), keeper: Some(9) };
        write_pid_file(&path, &pids).unwrap();
        assert!(write_pid_file(&dir.path().join("gone/sidecar.pid"), &pids).is_err(), "a vanished state directory is not re-created");
        let back: SidecarPids = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, pids);
        assert!(!dir.path().join("sidecar.pid.tmp").exists());
    }

    #[test]
    fn readiness_refuses_stdio_and_closed_descriptors() {
        assert!(matches!(Readiness::from_fd(1), Err(SupervisorError::ReadyFd { .. })));
        assert!(matches!(Readiness::from_fd(987_654), Err(SupervisorError::ReadyFd { .. })));
    }

    #[test]
    fn readiness_writes_one_line() {
        let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let fd = w.as_raw_fd();
        std::mem::forget(w);
        Readiness::from_fd(fd).unwrap().error("bad\nthing").unwrap();
        let mut s = String::new();
        File::from(r).read_to_string(&mut s).unwrap();
        assert_eq!(s, "error: bad thing\n");
    }

    #[test]
    fn error_chain_joins_causes() {
        let e = SupervisorError::ConfigPath { path: "/x".into(), source: io::Error::other("gone") };
        assert_eq!(error_chain(&e), "resolving the config path /x: gone");
    }
}
