//! Finishing a jail in a detached process while the delegate starts (see
//! [`crate::gate`] for why, and for how the container waits for it).

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::args::Globals;
use crate::config::Config;
use crate::gate::{self, Closed};
use crate::jail::{self, Begun};
use crate::runtime_log::{self, Level};

/// How long the builder of a failed jail waits for the delegate to exit
/// before it tears the jail down itself.
const CREATOR_WAIT: Duration = Duration::from_secs(60);

/// How long the builder waits at most for the delegate to start its
/// container's init before it builds anyway (see [`await_delegate_start`]).
const DEFER_MAX: Duration = Duration::from_millis(30);

/// How often the builder looks for the delegate's first child meanwhile.
const DEFER_POLL: Duration = Duration::from_millis(1);

/// Finishes `begun` behind its gate. Normally in a detached builder process,
/// returning at once so the caller can `execve` the delegate; when this
/// process has other threads (fork would copy only this one, with whatever
/// locks the others hold), it is finished here instead and a failure is
/// returned as usual (the jail is then torn down already).
pub fn finish_detached(cfg: &Config, globals: &Globals, mut begun: Begun) -> anyhow::Result<()> {
    begun.bind_namespaces()?;
    let gate = gate::close(begun.dir())?;
    let creator = std::process::id() as i32;
    if !single_threaded() {
        let id = begun.id().to_string();
        if let Err(e) = jail::finish(cfg, begun, creator) {
            // The teardown waits for whoever holds the gate: not us.
            drop(gate);
            jail::teardown(&cfg.state_root, &id);
            return Err(e.into());
        }
        return Ok(gate.open(Ok(()))?);
    }
    // SAFETY: this process has one thread (checked above), so the child
    // inherits no lock held by another thread and may run any code.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            // The intermediate exits at once; the builder is reparented to
            // the nearest subreaper or init, never left to the delegate
            // (crun waits for all its children before the poststop hooks).
            // It exits non-zero when it could not fork the builder: then
            // nobody would finish the jail, nor watch for a delegate that
            // refuses the spec before its hooks.
            // (ECHILD: SIGCHLD is ignored, so the kernel reaped it and its
            // status is gone; it counts as done.)
            let status = waitpid(child, None);
            if !matches!(status, Ok(WaitStatus::Exited(_, 0)) | Err(nix::errno::Errno::ECHILD)) {
                anyhow::bail!("cannot start the jail's builder (the process forking it ended with {status:?})");
            }
            // The lock belongs to the builder now: dropping our handle
            // would unlock it (flock's LOCK_UN acts on the open file
            // description the builder shares), closing it does not. It is
            // closed by the delegate's execve (close-on-exec).
            std::mem::forget(gate);
            Ok(())
        }
        ForkResult::Child => {
            let intermediate = std::process::id() as i32;
            // SAFETY: as above; the child is still single-threaded.
            let code = match unsafe { fork() } {
                Ok(ForkResult::Child) => build(cfg, globals, begun, gate, creator, intermediate),
                Ok(ForkResult::Parent { .. }) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit ends the intermediate without running exit
            // handlers or flushing buffers that belong to the parent.
            unsafe { nix::libc::_exit(code) }
        }
    }
}

/// The builder: finishes the jail, writes the word and opens the gate. A
/// failure is also written to the runtime log; the jail is then torn down
/// by the gate hook that reads the word or, when the delegate exits without
/// running it (it refused the spec), by the builder once the delegate is gone.
fn build(cfg: &Config, globals: &Globals, begun: Begun, gate: Closed, creator: i32, intermediate: i32) -> ! {
    // Out of the caller's session (a terminal's ^C is not for us) and off
    // its stdio (an engine waits for the container's pipes to close).
    let _ = nix::unistd::setsid();
    detach_stdio();
    close_inherited();
    await_delegate_start(creator, intermediate, DEFER_MAX);
    let id = begun.id().to_string();
    let token = begun.create_token();
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
    // delegate exited; a jail still here never met its hook. Only this
    // create's: the id may already be another create's.
    let errors = jail::teardown_if_same(&cfg.state_root, &id, token).unwrap_or_default();
    for e in errors {
        runtime_log::write(globals, Level::Warning, &format!("boundary-runc: teardown of {id}: {e}"));
    }
    std::process::exit(1)
}

/// Waits until the delegate (`creator`, the runtime the shim `execve`d)
/// has a child process other than `intermediate` (the builder's own
/// parent, which the shim reaps), or has exited, or `max` has passed.
///
/// Why: a delegate's start is CPU-bound until it has started its
/// container's init (runc: ~13 ms of Go start-up, config and cgroup work),
/// and then mostly asleep (runc waits ~13 ms for an RCU grace period when
/// it moves the init into its cgroup, then the namespaces and mounts) until
/// it runs the prestart hooks, the gate among them. The builder's work is
/// mostly kernel work (two network namespaces, the veth, nft, three process
/// starts), which a kernel without preemption (`PREEMPT_NONE`, the server
/// default) does not interrupt for the delegate, whatever its nice value:
/// started at once it slowed runc's CPU-bound part by ~6 ms on two cores;
/// started when the init exists it runs on the cores runc leaves idle, and
/// is done before the gate (docs/benchmarks.md, session 9).
///
/// Looked for in `/proc/<creator>/task/*/children` every [`DEFER_POLL`];
/// a kernel without those files (CONFIG_PROC_CHILDREN) is not waited for.
fn await_delegate_start(creator: i32, intermediate: i32, max: Duration) {
    let deadline = Instant::now() + max;
    let tasks = Path::new("/proc").join(creator.to_string()).join("task");
    while let Some(false) = has_child(&tasks, intermediate) {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(DEFER_POLL);
    }
}

/// Whether any thread of the process whose `/proc/<pid>/task` is `tasks`
/// has a child other than `except`: `Some(true)` also when the process is
/// gone (nothing more to wait for), `None` when the kernel does not list
/// children.
fn has_child(tasks: &Path, except: i32) -> Option<bool> {
    let Ok(dir) = std::fs::read_dir(tasks) else { return Some(true) };
    let mut listed = false;
    for task in dir.flatten() {
        match std::fs::read_to_string(task.path().join("children")) {
            Ok(children) => {
                listed = true;
                if children.split_ascii_whitespace().any(|c| c.parse::<i32>().is_ok_and(|c| c != except)) {
                    return Some(true);
                }
            }
            // The thread exited meanwhile, or no such file on this kernel.
            Err(_) => continue,
        }
    }
    listed.then_some(false)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    fn tasks_of(child: &Child) -> std::path::PathBuf {
        Path::new("/proc").join(child.id().to_string()).join("task")
    }

    /// The children of the process whose task directory is `tasks`.
    fn children(tasks: &Path) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir(tasks) else { return Vec::new() };
        dir.flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_ascii_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
            .collect()
    }

    /// A shell that starts `sleep 5` in the background once it reads a line.
    fn shell_told_to_start_a_child() -> Child {
        Command::new("sh").args(["-c", "read x; sleep 5 & wait"]).stdin(Stdio::piped()).spawn().unwrap()
    }

    fn tell(shell: &mut Child) {
        std::io::Write::write_all(shell.stdin.as_mut().unwrap(), b"go\n").unwrap();
    }

    /// Kills the shell's children, then the shell, and reaps it.
    fn end(mut shell: Child) {
        for c in children(&tasks_of(&shell)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = shell.kill();
        shell.wait().unwrap();
    }

    #[test]
    fn a_child_is_seen_and_the_excepted_one_is_not() {
        let mut sh = shell_told_to_start_a_child();
        let tasks = tasks_of(&sh);
        assert_eq!(has_child(&tasks, 0), Some(false), "the shell has no child yet");
        tell(&mut sh);
        let deadline = Instant::now() + Duration::from_secs(5);
        let child = loop {
            if let Some(c) = children(&tasks).first() {
                break *c;
            }
            assert!(Instant::now() < deadline, "the shell never started its child");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(has_child(&tasks, 0), Some(true));
        assert_eq!(has_child(&tasks, child), Some(false), "the excepted child does not count");
        end(sh);
        assert_eq!(has_child(&tasks, 0), Some(true), "a process that is gone is not waited for");
    }

    #[test]
    fn the_wait_ends_when_the_delegate_starts_a_child_and_is_bounded_otherwise() {
        let idle = shell_told_to_start_a_child();
        let t = Instant::now();
        await_delegate_start(idle.id() as i32, 0, Duration::from_millis(50));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50), "returned after {waited:?} though the shell has no child");
        end(idle);

        let mut starter = shell_told_to_start_a_child();
        let pid = starter.id() as i32;
        let t = Instant::now();
        let waiting = std::thread::spawn(move || {
            await_delegate_start(pid, 0, Duration::from_secs(20));
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(100));
        tell(&mut starter);
        let waited = waiting.join().unwrap() - t;
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(10), "waited {waited:?} for a child started after 0.1 s");
        end(starter);
    }
}
