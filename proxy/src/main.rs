//! `boundary-sidecar`: the per-container network boundary.
//!
//! ```text
//! boundary-sidecar --config FILE [--ready-fd N]          keeper (run as root by the shim)
//! boundary-sidecar --worker --config FILE [--parent PID] [--ready-fd N]  worker (exec'd by the supervisor)
//! ```
//!
//! The supervisor has no mode of its own: the keeper forks it without
//! `execve`, so it runs the keeper's image and shows the keeper's command
//! line (see `boundary_proxy::supervisor`).
//!
//! With `--ready-fd N` the process writes `ok\n` to descriptor N once it is
//! serving, or `error: <message>\n` before exiting 1. Logs go to stderr; the
//! level comes from `BOUNDARY_LOG` (`error`, `warn`, `info`, `debug`,
//! `trace`; default `info`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use boundary_proxy::supervisor::keeper::Keeper;
use boundary_proxy::supervisor::{error_chain, report_start, Readiness};
use boundary_proxy::worker;

const USAGE: &str = "usage: boundary-sidecar [--worker] --config FILE [--parent PID] [--ready-fd N]";

#[derive(Debug)]
struct Args {
    worker: bool,
    config: PathBuf,
    ready_fd: Option<i32>,
    /// The worker's supervisor, as it said (`--parent`).
    parent: Option<i32>,
}

fn parse_args(mut args: impl Iterator<Item = std::ffi::OsString>) -> Result<Args, String> {
    let (mut worker, mut config, mut ready_fd, mut parent) = (false, None, None, None);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--worker") => worker = true,
            Some("--config") => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            Some("--ready-fd") => {
                let n = args.next().ok_or("--ready-fd needs a number")?;
                let n = n.to_str().and_then(|s| s.parse().ok()).ok_or("--ready-fd needs a number")?;
                ready_fd = Some(n);
            }
            Some("--parent") => {
                let n = args.next().ok_or("--parent needs a pid")?;
                parent = Some(n.to_str().and_then(|s| s.parse().ok()).ok_or("--parent needs a pid")?);
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let config = config.ok_or("--config is required")?;
    Ok(Args { worker, config, ready_fd, parent })
}

fn main() -> ExitCode {
    StderrLogger::install();
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            log::error!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let ready = match args.ready_fd.map(Readiness::from_fd).transpose() {
        Ok(ready) => ready,
        Err(e) => {
            log::error!("{}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let result = if args.worker {
        run_worker(&args, ready)
    } else {
        run_keeper(&args, ready)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run_worker(args: &Args, ready: Option<Readiness>) -> Result<(), String> {
    worker::run(&args.config, args.parent.map(nix::unistd::Pid::from_raw), ready).map_err(|e| error_chain(&e))
}

fn run_keeper(args: &Args, ready: Option<Readiness>) -> Result<(), String> {
    report_start(Keeper::start(&args.config), ready)?.run().map_err(|e| error_chain(&e))
}

/// A minimal `log` implementation: one line per record on stderr with the
/// time, pid, level and target.
struct StderrLogger {
    level: log::LevelFilter,
}

impl StderrLogger {
    fn install() {
        let level = std::env::var("BOUNDARY_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(log::LevelFilter::Info);
        let logger = Box::leak(Box::new(StderrLogger { level }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let time = boundary_proxy::audit::rfc3339(std::time::SystemTime::now());
        let line = format!(
            "{time} boundary-sidecar[{}] {} {}: {}\n",
            std::process::id(),
            record.level(),
            record.target(),
            record.args()
        );
        // One write per line, so lines of the supervisor and the worker
        // sharing a log file do not interleave mid-line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn parses_both_modes() {
        let a = parse(&["--config", "/c.json", "--ready-fd", "5"]).unwrap();
        assert!(!a.worker && a.ready_fd == Some(5) && a.config.as_os_str() == "/c.json");
        assert!(parse(&["--worker", "--config", "/c.json"]).unwrap().worker);
        let w = parse(&["--worker", "--config", "/c.json", "--parent", "42", "--ready-fd", "7"]).unwrap();
        assert_eq!((w.worker, w.parent, w.ready_fd), (true, Some(42), Some(7)));
        assert!(parse(&["--worker", "--config", "/c.json", "--parent", "x"]).is_err());
        assert!(parse(&["--supervisor", "--config", "/c.json"]).is_err(), "the supervisor is forked, not exec'd");
        assert!(parse(&[]).is_err());
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["--config", "x", "--ready-fd", "x"]).is_err());
        assert!(parse(&["--config", "x", "--bogus"]).is_err());
    }
}
