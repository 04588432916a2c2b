//! The one-line readiness protocol: a starting process writes `ok` or
//! `error: <message>` to a pipe its starter gave it, then closes the pipe.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags};

use super::{duration_timeout, SupervisorError};

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

/// Reports a start-up's outcome on the readiness pipe (when there is one):
/// the error chain on failure, `ok` on success. Returns the started value
/// or the error chain.
pub fn report_start<T, E: std::error::Error>(res: Result<T, E>, ready: Option<Readiness>) -> Result<T, String> {
    match res {
        Ok(value) => {
            if let Some(Err(e)) = ready.map(Readiness::ok) {
                log::warn!("reporting readiness: {e}");
            }
            Ok(value)
        }
        Err(e) => {
            let message = error_chain(&e);
            if let Some(ready) = ready {
                let _ = ready.error(&message);
            }
            Err(message)
        }
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

/// Reads one line (without the newline) from the worker's readiness pipe;
/// an empty string means EOF without a line.
pub(super) fn read_ready_line(pipe: OwnedFd, timeout: Duration) -> Result<String, SupervisorError> {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(pipe);
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SupervisorError::ChildTimeout { what: "child", timeout });
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

