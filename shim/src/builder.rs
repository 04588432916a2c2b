//! Finishing a jail in a detached process while the delegate starts (see
//! [`crate::gate`] for why, and for how the container waits for it).

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use crate::args::Globals;
use crate::config::Config;
use crate::gate::{self, Closed};
use crate::jail::{self, Begun};
use crate::runtime_log::{self, Level};

/// How long the builder of a failed jail waits for the delegate to exit
/// before it tears the jail down itself.
const CREATOR_WAIT: Duration = Duration::from_secs(60);

/// Finishes `begun` behind its gate. Normally in a detached builder process,
/// returning at once so the caller can `execve` the delegate; when this
/// process has other threads (fork would copy only this one, with whatever
/// locks the others hold), it is finished here instead and a failure is
/// returned as usual (the jail is then torn down already).
pub fn finish_detached(cfg: &Config, globals: &Globals, begun: Begun) -> anyhow::Result<()> {
    let gate = gate::close(begun.dir())?;
    let creator = std::process::id() as i32;
    if !single_threaded() {
        let id = begun.id().to_string();
        if let Err(e) = jail::finish(cfg, begun, creator) {
            jail::teardown(&cfg.state_root, &id);
            return Err(e.into());
        }
        return Ok(gate.open(Ok(()))?);
    }
    // SAFETY: this process has one thread (checked above), so the child
    // inherits no lock held by another thread and may run any code.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            // The lock belongs to the builder now: dropping our handle
            // would unlock it (flock's LOCK_UN acts on the open file
            // description the builder shares), closing it does not. It is
            // closed by the delegate's execve (close-on-exec).
            std::mem::forget(gate);
            // The intermediate exits at once; the builder is reparented to
            // the nearest subreaper or init, never left to the delegate
            // (crun waits for all its children before the poststop hooks).
            let _ = waitpid(child, None);
            Ok(())
        }
        ForkResult::Child => {
            // SAFETY: as above; the child is still single-threaded.
            if let Ok(ForkResult::Child) = unsafe { fork() } {
                build(cfg, globals, begun, gate, creator);
            }
            // SAFETY: _exit ends the intermediate without running exit
            // handlers or flushing buffers that belong to the parent.
            unsafe { nix::libc::_exit(0) }
        }
    }
}

/// The builder: finishes the jail, writes the word and opens the gate. A
/// failure is also written to the runtime log; the jail is then torn down
/// by the gate hook that reads the word or, when the delegate exits without
/// running it (it refused the spec), by the builder once the delegate is gone.
fn build(cfg: &Config, globals: &Globals, begun: Begun, gate: Closed, creator: i32) -> ! {
    // Out of the caller's session (a terminal's ^C is not for us) and off
    // its stdio (an engine waits for the container's pipes to close).
    let _ = nix::unistd::setsid();
    detach_stdio();
    close_inherited();
    let id = begun.id().to_string();
    match jail::finish(cfg, begun, creator) {
        Ok(()) => match gate.open(Ok(())) {
            Ok(()) => std::process::exit(0),
            Err(e) => runtime_log::write(globals, Level::Error, &format!("boundary-runc: {:#}", anyhow::Error::from(e))),
        },
        Err(e) => {
            // Into the log before the gate opens: ours is the first error
            // line there, ahead of runc's about the failed hook.
            let reason = format!("{:#}", anyhow::Error::from(e));
            runtime_log::write(globals, Level::Error, &format!("boundary-runc: {reason}"));
            let _ = gate.open(Err(&reason));
        }
    }
    await_exit(creator);
    // A gate hook that read the failure tore the jail down before the
    // delegate exited; a jail still here never met its hook.
    if jail::exists(&cfg.state_root, &id) {
        for e in jail::teardown(&cfg.state_root, &id) {
            runtime_log::write(globals, Level::Warning, &format!("boundary-runc: teardown of {id}: {e}"));
        }
    }
    std::process::exit(1)
}

/// Waits until `pid` has exited (up to [`CREATOR_WAIT`]).
fn await_exit(pid: i32) {
    let Some(fd) = crate::sidecar::pidfd_open(pid) else { return };
    let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut pfd, PollTimeout::try_from(CREATOR_WAIT.as_millis() as i32).unwrap_or(PollTimeout::MAX));
}

fn detach_stdio() {
    let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open(Path::new("/dev/null")) else { return };
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process
        // owns; nothing holds a Rust handle that assumes their identity.
        unsafe {
            nix::libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target);
        }
    }
}

/// Closes every descriptor above stderr without close-on-exec: those came
/// from the engine for the container (`--preserve-fds`, sockets, pipes whose
/// other end waits for EOF); everything this process opened itself is
/// close-on-exec (Rust's default), the gate's lock among them.
fn close_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter(|fd| *fd > 2).collect();
    for fd in fds {
        // SAFETY: F_GETFD and close on descriptors of this process; the
        // ones closed were opened by no Rust handle here (no close-on-exec).
        unsafe {
            let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
            if flags >= 0 && flags & nix::libc::FD_CLOEXEC == 0 {
                nix::libc::close(fd);
            }
        }
    }
}

/// Whether this process has exactly one thread.
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim() == "1")))
        .unwrap_or(false)
}
