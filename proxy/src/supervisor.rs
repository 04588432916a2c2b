//! The sidecar supervisor: a small root process (std and nix only, no async
//! runtime) that owns the listening sockets and keeps one worker alive.
//!
//! Start-up, in order: block the signals it handles and open a signalfd for
//! them; `setsid`; read the config; enter the container's host-side network
//! namespace; bind the proxy socket (TCP) and the DNS sockets (UDP and TCP);
//! open the audit log; spawn the worker and wait until it says it dropped
//! privileges and is serving; write the pid file. Only then is the shim told
//! `ok`.
//!
//! The sockets stay open here for the supervisor's whole life. When the
//! worker dies the kernel keeps queueing the container's connections in the
//! listen backlog (and its DNS datagrams in the socket buffer) until the next
//! worker accepts them: nothing leaks past the boundary and nothing is
//! refused for long (fail closed, recover fast).
//!
//! The worker gets the sockets at fixed descriptors ([`PROXY_FD`],
//! [`DNS_UDP_FD`], [`DNS_TCP_FD`]), the audit log at [`AUDIT_FD`] and, the
//! first time only, a readiness pipe at [`WORKER_READY_FD`].

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boundary_contract::{SidecarConfig, SidecarPids};
use nix::errno::Errno;
use nix::libc;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, setsid, ForkResult, Pid};

/// Descriptor of the proxy's listening TCP socket in the worker.
pub const PROXY_FD: RawFd = 3;
/// Descriptor of the DNS UDP socket in the worker.
pub const DNS_UDP_FD: RawFd = 4;
/// Descriptor of the DNS listening TCP socket in the worker.
pub const DNS_TCP_FD: RawFd = 5;
/// Descriptor of the audit log (append, read-write) in the worker.
pub const AUDIT_FD: RawFd = 6;
/// Descriptor of the first worker's readiness pipe.
pub const WORKER_READY_FD: RawFd = 7;

/// Listen backlog: connections wait here while a worker restarts.
const BACKLOG: i32 = 1024;
/// How long the first worker may take to read its files and drop privileges.
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping worker gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// A worker that dies sooner than this after start counts as crash-looping.
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// Upper bound of the restart back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Source descriptors are kept at or above this number, so mapping them onto
/// 3..=7 in the child can never overwrite one that is still to be mapped.
const HIGH_FD: RawFd = 10;

/// Errors of the supervisor. Each names the step and the object.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("readiness descriptor {fd} is not usable (must be an open descriptor above 2)")]
    ReadyFd {
        fd: RawFd,
        #[source]
        source: Errno,
    },
    #[error("blocking signals and opening the signalfd")]
    Signals(#[source] Errno),
    #[error("reading config {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing config {path}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
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
    #[error("preparing the worker's command line: {what} contains a NUL byte")]
    NulInArgument { what: &'static str },
    #[error("moving a descriptor above {HIGH_FD}")]
    MoveFd(#[source] Errno),
    #[error("creating the worker's readiness pipe")]
    Pipe(#[source] Errno),
    #[error("forking the worker")]
    Fork(#[source] Errno),
    #[error("waiting for the worker to become ready")]
    WaitReady(#[source] Errno),
    #[error("the worker failed to start: {message}")]
    WorkerFailed { message: String },
    #[error("the worker did not become ready within {0:?}")]
    WorkerTimeout(Duration),
    #[error("writing pid file {path}")]
    WritePidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waiting for signals")]
    Poll(#[source] Errno),
}

/// The pipe on which a starting process reports `ok` or `error: ...` to
/// whoever started it (the shim for the supervisor, the supervisor for the
/// first worker).
#[derive(Debug)]
pub struct Readiness(File);

impl Readiness {
    /// Takes ownership of inherited descriptor `fd` and marks it
    /// close-on-exec, so no child inherits it and the reader sees EOF as
    /// soon as this process reports or exits.
    pub fn from_fd(fd: RawFd) -> Result<Self, SupervisorError> {
        let bad = |source| SupervisorError::ReadyFd { fd, source };
        if fd <= 2 {
            return Err(bad(Errno::EBADF));
        }
        // SAFETY: `fd` is only borrowed for this one fcntl call, which fails
        // with EBADF (and has no effect) when the number is not open.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(bad)?;
        // SAFETY: the descriptor is open (checked above) and was handed to
        // this process for readiness reporting only; nothing else in the
        // process refers to it, so taking sole ownership is sound.
        Ok(Readiness(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Reports success and closes the pipe.
    pub fn ok(mut self) -> io::Result<()> {
        self.0.write_all(b"ok\n")
    }

    /// Reports failure (one line) and closes the pipe.
    pub fn error(mut self, message: &str) -> io::Result<()> {
        let line = message.replace(['\n', '\r'], " ");
        self.0.write_all(format!("error: {line}\n").as_bytes())
    }
}

/// Formats an error with its chain of causes on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The descriptors handed to every worker, kept at or above [`HIGH_FD`].
#[derive(Debug)]
struct WorkerFds {
    proxy: OwnedFd,
    dns_udp: OwnedFd,
    dns_tcp: OwnedFd,
    audit: OwnedFd,
}

/// Everything `execve` needs, prepared before `fork` so the child allocates
/// nothing.
#[derive(Debug)]
struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    argv_with_ready: Vec<CString>,
    envp: Vec<CString>,
}

#[derive(Debug, Clone, Copy)]
struct Worker {
    pid: Pid,
    started: Instant,
}

/// A started supervisor: sockets bound, first worker ready, pid file written.
#[derive(Debug)]
pub struct Supervisor {
    cfg: SidecarConfig,
    fds: WorkerFds,
    signals: SignalFd,
    plan: ExecPlan,
    worker: Option<Worker>,
    quick_deaths: u32,
    respawn_at: Option<Instant>,
}

impl Supervisor {
    /// Performs the whole start-up (see the module documentation). On error
    /// nothing is left running.
    pub fn start(config_path: &Path) -> Result<Self, SupervisorError> {
        umask(Mode::from_bits_truncate(0o077));
        let signals = block_signals()?;
        // Fails with EPERM when already a process group leader; the shim
        // normally starts us as a plain child, and either way we stay put.
        let _ = setsid();
        let config_path = fs::canonicalize(config_path)
            .map_err(|source| SupervisorError::ReadConfig { path: config_path.to_owned(), source })?;
        let cfg = read_config(&config_path)?;
        if let Some(netns) = &cfg.netns {
            enter_netns(netns)?;
        }
        let fds = WorkerFds {
            proxy: bind_tcp("proxy", cfg.listen_addr, cfg.proxy_port)?,
            dns_udp: bind_udp(cfg.listen_addr, cfg.dns_port)?,
            dns_tcp: bind_tcp("DNS TCP", cfg.listen_addr, cfg.dns_port)?,
            audit: open_audit(&cfg.audit_log)?,
        };
        // Do not hold any mount busy.
        let _ = nix::unistd::chdir("/");
        let plan = ExecPlan::new(&config_path)?;
        let mut sup = Supervisor { cfg, fds, signals, plan, worker: None, quick_deaths: 0, respawn_at: None };
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
        loop {
            let timeout = match self.respawn_at {
                Some(at) => duration_timeout(at.saturating_duration_since(Instant::now())),
                None => PollTimeout::NONE,
            };
            let mut pfd = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            match poll(&mut pfd, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(SupervisorError::Poll(e)),
            }
            while let Some(sig) = self.next_signal() {
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
        }
    }

    fn next_signal(&self) -> Option<Signal> {
        match self.signals.read_signal() {
            Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
            Ok(None) => None,
            Err(e) => {
                log::warn!("reading the signalfd: {e}");
                None
            }
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
        match self.spawn_with(None) {
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
            let _ = kill(worker.pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            let mut exited = false;
            while !exited && Instant::now() < deadline {
                let left = duration_timeout(deadline.saturating_duration_since(Instant::now()));
                let mut pfd = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut pfd, left);
                while self.next_signal().is_some() {}
                exited = !matches!(waitpid(worker.pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive));
            }
            if !exited {
                log::warn!("worker {} ignored SIGTERM for {STOP_GRACE:?}; killing it", worker.pid);
                let _ = kill(worker.pid, Signal::SIGKILL);
                let _ = waitpid(worker.pid, None);
            }
        }
        if let Err(e) = fs::remove_file(&self.cfg.pid_file) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("removing pid file {}: {e}", self.cfg.pid_file.display());
            }
        }
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
        let pid = self.spawn_with(Some(&write_end))?;
        drop(write_end);
        let worker = Worker { pid, started: Instant::now() };
        match read_ready_line(read_end, WORKER_READY_TIMEOUT) {
            Ok(line) if line == "ok" => Ok(worker),
            outcome => {
                let _ = kill(pid, Signal::SIGKILL);
                let status = waitpid(pid, None);
                Err(match outcome {
                    Ok(line) => {
                        let message = match line.strip_prefix("error: ") {
                            Some(m) => m.to_owned(),
                            None if line.is_empty() => format!("worker exited without reporting ({status:?})"),
                            None => format!("unexpected readiness line {line:?}"),
                        };
                        SupervisorError::WorkerFailed { message }
                    }
                    Err(e) => e,
                })
            }
        }
    }

    /// Forks and execs the worker with the descriptors mapped onto 3..=7.
    fn spawn_with(&self, ready: Option<&OwnedFd>) -> Result<Pid, SupervisorError> {
        let f = &self.fds;
        let mut maps = vec![
            (f.proxy.as_raw_fd(), PROXY_FD),
            (f.dns_udp.as_raw_fd(), DNS_UDP_FD),
            (f.dns_tcp.as_raw_fd(), DNS_TCP_FD),
            (f.audit.as_raw_fd(), AUDIT_FD),
        ];
        let args = match ready {
            Some(fd) => {
                maps.push((fd.as_raw_fd(), WORKER_READY_FD));
                &self.plan.argv_with_ready
            }
            None => &self.plan.argv,
        };
        let argv = null_terminated(args);
        let envp = null_terminated(&self.plan.envp);
        let path = self.plan.path.as_ptr();
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

    fn write_pid_file(&self) -> Result<(), SupervisorError> {
        let pids = SidecarPids {
            supervisor: std::process::id() as i32,
            worker: self.worker.map(|w| w.pid.as_raw()),
        };
        write_pid_file(&self.cfg.pid_file, &pids)
    }
}

/// In the forked child: maps the descriptors, clears the signal mask and
/// execs the worker. Never returns.
fn exec_child(maps: &[(RawFd, RawFd)], path: *const libc::c_char, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> ! {
    // SAFETY: only async-signal-safe functions (dup2, sigemptyset,
    // sigprocmask, execve, _exit) on memory prepared before the fork;
    // `argv` and `envp` are NULL-terminated arrays of pointers into CStrings
    // that outlive this call. Every source descriptor is >= HIGH_FD and every
    // target is below it, so no mapping overwrites a later source; dup2
    // leaves the target without FD_CLOEXEC, every other descriptor of the
    // supervisor has it.
    unsafe {
        for &(src, dst) in maps {
            if libc::dup2(src, dst) < 0 {
                libc::_exit(126);
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
    fn new(config_path: &Path) -> Result<Self, SupervisorError> {
        let c = |what: &'static str, bytes: &[u8]| {
            CString::new(bytes).map_err(|_| SupervisorError::NulInArgument { what })
        };
        let config = c("the config path", config_path.as_os_str().as_bytes())?;
        let base = vec![c("argv0", b"boundary-sidecar")?, c("flag", b"--worker")?, c("flag", b"--config")?, config];
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
        Ok(ExecPlan { path: c("the executable path", b"/proc/self/exe")?, argv: base, argv_with_ready: with_ready, envp })
    }
}

/// Blocks SIGCHLD, SIGTERM and SIGINT and returns a signalfd for them.
fn block_signals() -> Result<SignalFd, SupervisorError> {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(sig);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(SupervisorError::Signals)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(SupervisorError::Signals)
}

fn read_config(path: &Path) -> Result<SidecarConfig, SupervisorError> {
    let text = fs::read(path).map_err(|source| SupervisorError::ReadConfig { path: path.to_owned(), source })?;
    serde_json::from_slice(&text).map_err(|source| SupervisorError::ParseConfig { path: path.to_owned(), source })
}

fn enter_netns(path: &Path) -> Result<(), SupervisorError> {
    let file = File::open(path).map_err(|source| SupervisorError::OpenNetns { path: path.to_owned(), source })?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| SupervisorError::EnterNetns { path: path.to_owned(), source })
}

fn bind_tcp(what: &'static str, ip: Ipv4Addr, port: u16) -> Result<OwnedFd, SupervisorError> {
    let addr = SocketAddrV4::new(ip, port);
    let err = |source| SupervisorError::Bind { what, addr, source };
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(err)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(err)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(err)?;
    socket::listen(&fd, Backlog::new(BACKLOG).map_err(err)?).map_err(err)?;
    move_high(fd)
}

fn bind_udp(ip: Ipv4Addr, port: u16) -> Result<OwnedFd, SupervisorError> {
    let addr = SocketAddrV4::new(ip, port);
    let err = |source| SupervisorError::Bind { what: "DNS UDP", addr, source };
    let fd = socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(err)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(err)?;
    move_high(fd)
}

/// Opens the audit log for appending (and reading, so a new worker can find
/// the last sequence number), creating it 0600 and its directories 0700.
fn open_audit(path: &Path) -> Result<OwnedFd, SupervisorError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SupervisorError::CreateDir { path: path.to_owned(), source })?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| SupervisorError::OpenAudit { path: path.to_owned(), source })?;
    move_high(file.into())
}

/// Duplicates `fd` to a number >= [`HIGH_FD`] (close-on-exec) and closes
/// the original.
fn move_high(fd: OwnedFd) -> Result<OwnedFd, SupervisorError> {
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD)).map_err(SupervisorError::MoveFd)?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Reads one line (without the newline) from the worker's readiness pipe;
/// an empty string means EOF without a line.
fn read_ready_line(pipe: OwnedFd, timeout: Duration) -> Result<String, SupervisorError> {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(pipe);
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SupervisorError::WorkerTimeout(timeout));
        }
        let mut pfd = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, duration_timeout(left)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(SupervisorError::WaitReady(e)),
        }
        let mut chunk = [0u8; 512];
        let n = file.read(&mut chunk).map_err(|e| SupervisorError::WaitReady(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || buf.contains(&b'\n') || buf.len() > 4096 {
            let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            return Ok(String::from_utf8_lossy(line).into_owned());
        }
    }
}

/// Writes the pid file atomically (temporary file in the same directory,
/// then rename).
pub fn write_pid_file(path: &Path, pids: &SidecarPids) -> Result<(), SupervisorError> {
    let err = |source| SupervisorError::WritePidFile { path: path.to_owned(), source };
    let json = serde_json::to_vec(pids).map_err(|e| err(io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    }
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp).map_err(err)?;
    file.write_all(&json).and_then(|()| file.sync_all()).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
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
        let path = dir.path().join("sub/sidecar.pid");
        let pids = SidecarPids { supervisor: 10, worker: Some(11) };
        write_pid_file(&path, &pids).unwrap();
        let back: SidecarPids = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, pids);
        assert!(!dir.path().join("sub/sidecar.pid.tmp").exists());
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
        let e = SupervisorError::ReadConfig { path: "/x".into(), source: io::Error::other("gone") };
        assert_eq!(error_chain(&e), "reading config /x: gone");
    }
}
