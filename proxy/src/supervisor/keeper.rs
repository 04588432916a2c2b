//! The keeper: the top of the sidecar's process tree (see
//! [`crate::supervisor`]). It acquires everything that needs root and the
//! host-side namespace once, then only waits: it restarts a supervisor that
//! dies, passes SIGHUP on, stops the supervisor on SIGTERM, and runs the
//! orphan watch. Once the container's init (handed over by the gate hook
//! with SIGUSR1, its pid as the signal's value) has exited and no process
//! is left in the jail, it stops the supervisor (and so the worker, which
//! flushes the audit log) without waiting for the teardown, closes its
//! sockets, releases the jail's namespace and a private host side's
//! ([`orphan::release_netns`]), and stays, with nothing under it, until the
//! teardown's SIGTERM (see [`orphan::InitWatch`]).
//!
//! The keeper must stay single-threaded: it forks the supervisor without
//! `execve` (see [`super::spawn`]), which is only sound from a process with
//! one thread. It runs no async runtime and spawns no thread (the orphan
//! watch's teardown command is a child process); `fork_supervisor` checks
//! /proc/self/status before each fork and refuses otherwise.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boundary_contract::SidecarConfig;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, setsid, Pid};

use super::orphan;
use super::resources::{create_pid_dir, enter_netns, move_high, open_netns, return_to_netns, WorkerFds, OWN_NETNS};
use super::spawn::fork_supervisor;
use super::{
    await_ready, backoff, block_signal_set, duration_timeout, error_chain, handled_signals, remove_pid_file,
    serve_forked, stop_child, SupervisorError, QUICK_DEATH, STOP_GRACE, WORKER_READY_TIMEOUT,
};

/// How long the first supervisor may take (it waits for its worker first).
const SUPERVISOR_READY_TIMEOUT: Duration = Duration::from_secs(WORKER_READY_TIMEOUT.as_secs() + 2);
/// How long a dead supervisor's workers get to vanish before a new
/// supervisor starts anyway (they were sent SIGKILL when it died).
const LIFELINE_WAIT: Duration = Duration::from_secs(1);

/// A running supervisor and the read end of its lifeline.
#[derive(Debug)]
struct Child {
    pid: Pid,
    started: Instant,
    lifeline: OwnedFd,
}

/// A started keeper: sockets bound, first supervisor (and worker) ready.
#[derive(Debug)]
pub struct Keeper {
    cfg: SidecarConfig,
    /// Absolute; named in every sidecar process's command line.
    config_path: PathBuf,
    /// `None` once the proxy stopped with its container.
    fds: Option<WorkerFds>,
    signals: SignalFd,
    supervisor: Option<Child>,
    quick_deaths: u32,
    respawn_at: Option<Instant>,
    /// Watch on the shim/delegate while `create` may still fail.
    orphan: Option<orphan::Watch>,
    /// Watch on the container's init, once the gate hook handed it over.
    init: Option<orphan::InitWatch>,
    /// The supervisor was stopped because the container is gone: it is not
    /// restarted, and the keeper waits only for its own SIGTERM.
    stopped_early: bool,
}

/// Signals the keeper reads: the supervisor's set and the init hand-over.
fn keeper_signals() -> SigSet {
    let mut set = handled_signals();
    set.add(Signal::SIGUSR1);
    set
}

/// `SI_QUEUE`: the signal was sent by `sigqueue(3)`, with a value.
const SI_QUEUE: i32 = -1;

impl Keeper {
    /// Performs the whole start-up. On error nothing is left running.
    pub fn start(config_path: &Path) -> Result<Keeper, SupervisorError> {
        umask(Mode::from_bits_truncate(0o077));
        let signals = block_signal_set(keeper_signals())?;
        // Fails with EPERM when already a process group leader; the shim
        // normally starts us as a plain child, and either way we stay put.
        let _ = setsid();
        // Absolute (we chdir to "/") but otherwise as given: the shim finds
        // our processes by this argument in /proc/<pid>/cmdline.
        let config_path = std::path::absolute(config_path)
            .map_err(|source| SupervisorError::ConfigPath { path: config_path.to_owned(), source })?;
        let cfg = SidecarConfig::read(&config_path)?;
        // A private host side is only where the sockets live: the
        // supervisor and the worker run in the namespace we started in.
        let home = match cfg.bind_only_in_netns && cfg.netns.is_some() {
            true => Some(open_netns(Path::new(OWN_NETNS))?),
            false => None,
        };
        if let Some(netns) = &cfg.netns {
            enter_netns(netns)?;
        }
        let fds = WorkerFds::acquire(&cfg)?;
        if let Some(home) = home {
            return_to_netns(&home)?;
        }
        create_pid_dir(&cfg.pid_file)?;
        // Do not hold any mount busy.
        let _ = nix::unistd::chdir("/");
        let orphan = cfg.orphan_watch.as_ref().map(|w| orphan::Watch::new(w, &cfg.container_id));
        let mut keeper = Keeper {
            cfg,
            config_path,
            fds: Some(fds),
            signals,
            supervisor: None,
            quick_deaths: 0,
            respawn_at: None,
            orphan,
            init: None,
            stopped_early: false,
        };
        if let Err(e) = keeper.start_first() {
            remove_pid_file(&keeper.cfg.pid_file);
            return Err(e);
        }
        Ok(keeper)
    }

    fn start_first(&mut self) -> Result<(), SupervisorError> {
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(SupervisorError::Pipe)?;
        let write_end = move_high(write_end)?;
        let pid = self.spawn(Some(&write_end))?;
        drop(write_end);
        match await_ready(read_end, pid, "supervisor", SUPERVISOR_READY_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(message) => {
                self.supervisor = None;
                Err(match message {
                    Some(message) => SupervisorError::SupervisorFailed { message },
                    None => SupervisorError::ChildTimeout { what: "supervisor", timeout: SUPERVISOR_READY_TIMEOUT },
                })
            }
        }
    }

    /// Forks a supervisor (no exec, see [`fork_supervisor`]) with a fresh
    /// lifeline.
    fn spawn(&mut self, ready: Option<&OwnedFd>) -> Result<Pid, SupervisorError> {
        let (lifeline, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(SupervisorError::Pipe)?;
        let write_end = move_high(write_end)?;
        let (cfg, config_path) = (&self.cfg, &self.config_path);
        let body = || serve_forked(config_path, cfg.clone(), ready.is_some());
        let fds = self.fds.as_ref().ok_or(SupervisorError::SocketsReleased)?;
        let pid = fork_supervisor(fds, &write_end, ready, &handled_signals(), body)?;
        self.supervisor = Some(Child { pid, started: Instant::now(), lifeline });
        Ok(pid)
    }

    /// Waits until SIGTERM or SIGINT (then stops the supervisor) or until
    /// the supervisor stops by itself (exit status 0).
    pub fn run(mut self) -> Result<(), SupervisorError> {
        let mut release = crate::resident::StartupRelease::new();
        loop {
            if self.orphan.as_ref().is_some_and(orphan::Watch::creator_gone) {
                self.creator_exited();
            }
            if self.init.as_ref().is_some_and(orphan::InitWatch::exited) {
                self.init_exited();
            }
            let timeout = match crate::resident::earlier(self.respawn_at, release.due()) {
                Some(at) => duration_timeout(at.saturating_duration_since(Instant::now())),
                None => PollTimeout::NONE,
            };
            let mut pfd = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let orphan_at = self.orphan.as_ref().and_then(orphan::Watch::fd).map(|fd| {
                pfd.push(PollFd::new(fd, PollFlags::POLLIN));
                pfd.len() - 1
            });
            let init_at = self.init.as_ref().and_then(orphan::InitWatch::fd).map(|fd| {
                pfd.push(PollFd::new(fd, PollFlags::POLLIN));
                pfd.len() - 1
            });
            match poll(&mut pfd, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(SupervisorError::Poll(e)),
            }
            let fired = |at: Option<usize>| at.and_then(|i| pfd.get(i)).and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
            let (creator_exited, init_exited) = (fired(orphan_at), fired(init_at));
            drop(pfd);
            if creator_exited {
                self.creator_exited();
            }
            if init_exited && self.init_exited() {
                remove_pid_file(&self.cfg.pid_file);
                return Ok(());
            }
            while let Ok(Some(info)) = self.signals.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
                match sig {
                    Signal::SIGCHLD if self.reap() => {
                        remove_pid_file(&self.cfg.pid_file);
                        return Ok(());
                    }
                    Signal::SIGTERM | Signal::SIGINT => {
                        log::info!("keeper received {sig}, stopping");
                        if let Some(child) = self.supervisor.take() {
                            stop_child(&self.signals, child.pid, "supervisor", STOP_GRACE + Duration::from_secs(1));
                        }
                        remove_pid_file(&self.cfg.pid_file);
                        return Ok(());
                    }
                    Signal::SIGHUP => {
                        if let Some(child) = &self.supervisor {
                            let _ = kill(child.pid, Signal::SIGHUP);
                        }
                    }
                    Signal::SIGUSR1 if info.ssi_code == SI_QUEUE => self.watch_init(info.ssi_ptr),
                    _ => {}
                }
            }
            if self.respawn_at.is_some_and(|at| Instant::now() >= at) {
                self.respawn();
            }
            release.run_if_due("keeper");
        }
    }

    /// The creator (the delegate's `create` or `run`) exited: the orphan
    /// watch ends. A container exists when the init the gate hook handed
    /// over is still alive (it was in the jail then); only without one is
    /// the jail searched for processes (a scan of every process in /proc).
    fn creator_exited(&mut self) {
        let Some(w) = self.orphan.take() else { return };
        match &self.init {
            Some(init) if init.alive() => {
                log::debug!("the container's init {} is alive; the orphan watch ends", init.pid());
            }
            _ => w.creator_exited(),
        }
    }

    /// The gate hook handed over the container's init (`value`, its pid).
    fn watch_init(&mut self, value: u64) {
        let Some(w) = self.cfg.orphan_watch.as_ref() else { return };
        let Ok(pid) = i32::try_from(value) else { return };
        if self.stopped_early || self.init.is_some() {
            return;
        }
        match orphan::InitWatch::open(pid, &w.jail_netns) {
            Some(watch) => {
                log::debug!("watching the container's init {pid}");
                self.init = Some(watch);
            }
            None => log::warn!("pid {pid} handed over as the container's init is not in its jail; ignored"),
        }
    }

    /// The container's init exited: when no process is left in the jail,
    /// the supervisor (and its worker) stop now. Returns true when a SIGTERM
    /// came meanwhile (the keeper is to stop too).
    fn init_exited(&mut self) -> bool {
        let Some(init) = self.init.take() else { return false };
        if init.jail_in_use() {
            log::debug!("the container's init {} exited; other processes are still in the jail", init.pid());
            return false;
        }
        log::info!("the container's init {} exited and its jail is empty; stopping the proxy", init.pid());
        self.stopped_early = true;
        self.respawn_at = None;
        let sigterm = match self.supervisor.take() {
            Some(child) => stop_child(&self.signals, child.pid, "supervisor", STOP_GRACE + Duration::from_secs(1)),
            None => false,
        };
        // No proxy will serve again: its sockets go, and with them the last
        // hold on a private host side. Nothing can enter the jail again, so
        // its namespace and a private host side's go now, together, rather
        // than at the teardown (see [`orphan::release_netns`]). An engine's
        // namespace (podman's, a pod's) is never ours to release.
        self.fds = None;
        orphan::release_netns(init.jail_netns());
        if let Some(host) = self.cfg.netns.as_deref().filter(|_| self.cfg.bind_only_in_netns) {
            orphan::release_netns(host);
        }
        sigterm
    }

    /// Reaps every exited child. Returns true when the supervisor stopped
    /// on purpose (exit status 0); schedules a restart when it died.
    fn reap(&mut self) -> bool {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return false,
                Ok(status) => status,
            };
            if !matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                continue;
            }
            let Some(pid) = status.pid() else { continue };
            if self.supervisor.as_ref().is_none_or(|c| c.pid != pid) {
                continue;
            }
            let Some(child) = self.supervisor.take() else { continue };
            if matches!(status, WaitStatus::Exited(_, 0)) {
                log::info!("supervisor {pid} stopped; the keeper stops too");
                return true;
            }
            log::warn!("supervisor {pid} died ({status:?}); restarting");
            wait_for_hangup(&child.lifeline, LIFELINE_WAIT);
            self.quick_deaths = if child.started.elapsed() < QUICK_DEATH { self.quick_deaths + 1 } else { 0 };
            self.respawn_at = Some(Instant::now() + backoff(self.quick_deaths));
        }
    }

    fn respawn(&mut self) {
        self.respawn_at = None;
        if self.stopped_early {
            return;
        }
        match self.spawn(None) {
            Ok(pid) => log::info!("supervisor restarted as pid {pid}"),
            Err(e) => {
                log::error!("{}", error_chain(&e));
                self.quick_deaths += 1;
                self.respawn_at = Some(Instant::now() + backoff(self.quick_deaths).max(Duration::from_millis(100)));
            }
        }
    }
}

/// Waits up to `limit` until every write end of the lifeline is closed,
/// i.e. the dead supervisor's workers are gone too.
fn wait_for_hangup(lifeline: &OwnedFd, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!("a worker of the dead supervisor is still alive after {limit:?}; starting a new one anyway");
            return;
        }
        let mut pfd = [PollFd::new(lifeline.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, duration_timeout(left)) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => return,
            Err(e) => {
                log::warn!("waiting on the lifeline: {e}");
                return;
            }
        }
    }
}
