//! An app container's narrowing of its pod's policy.
//!
//! [`apply`] writes the container's canonical rules to
//! `<state_root>/<sandbox>/narrow/<container id>` (0644, renamed into
//! place), sends SIGHUP to the sandbox sidecar's worker, and waits until the
//! worker's record (`narrow/.applied`, one JSON line per load) lists the
//! container: only then is the narrowing in force, for requests and DNS
//! alike, and `create` goes on. The signal is repeated while waiting, so a
//! worker that was being restarted (it loads the directory at start anyway)
//! does not make it miss. [`lift`] removes the file and waits until the
//! record no longer lists the container. Connections stay open throughout.
//! [`restart_worker`] is for a changed sidecar config (a podman pod's rules,
//! see [`super::podman`]): it cuts the worker's connections.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boundary_contract::{
    NarrowingApplied, NARROWING_APPLIED_FILE, NARROW_DIR, SIDECAR_CONFIG_FILE,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::jail;

/// How long `create` waits for the narrowing to be in force.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long teardown waits for the narrowing to be lifted.
pub const LIFT_TIMEOUT: Duration = Duration::from_secs(2);
/// How far back from its end the record file is read for its last record.
const TAIL: u64 = 64 << 10;
/// Interval between stops of the worker while waiting for a restarted one.
const RESTART_RESIGNAL: Duration = Duration::from_secs(1);
/// Interval between repeated signals while waiting.
const RESIGNAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum NarrowError {
    #[error("container id {0:?} starts with '.', which the narrowing directory reserves; it cannot narrow the policy of the jail it joins")]
    HiddenId(String),
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the jail of {0} has no narrowing directory (an older boundary-runc made it), so a container joining it cannot narrow its rules: \
         recreate {0}, or start the joining container without BOUNDARY_ALLOW and io.boundary.allow"
    )]
    NoDirectory(String),
    #[error("the sidecar of the jail of {0} is not running")]
    NoSidecar(String),
    #[error("the sidecar of the jail of {sandbox} did not restart its worker with its new config within {timeout:?} (see {})", log.display())]
    RestartTimeout {
        sandbox: String,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("the sidecar of the jail of {sandbox} did not put the narrowing by {id} in force within {timeout:?} (see {})", log.display())]
    Timeout {
        sandbox: String,
        id: String,
        timeout: Duration,
        log: PathBuf,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NarrowError {
    let path = path.to_path_buf();
    move |source| NarrowError::Io { op, path, source }
}

/// The narrowing directory of jail `sandbox`.
pub fn dir(state_root: &Path, sandbox: &str) -> PathBuf {
    jail::state_dir(state_root, sandbox).join(NARROW_DIR)
}

/// Puts `rules` (canonical, non-empty) in force as `id`'s narrowing of
/// `sandbox`'s policy. On error the file is removed again.
pub fn apply(
    state_root: &Path,
    sandbox: &str,
    id: &str,
    rules: &[String],
) -> Result<(), NarrowError> {
    if id.starts_with('.') {
        return Err(NarrowError::HiddenId(id.to_string()));
    }
    let dir = dir(state_root, sandbox);
    // A jail made by a boundary-runc that gave only pod sandboxes a
    // narrowing directory: its sidecar reads none, so nothing put here
    // would count.
    if !dir.is_dir() {
        return Err(NarrowError::NoDirectory(sandbox.to_string()));
    }
    let file = dir.join(id);
    let start = applied_len(&dir);
    // 0644 whatever the umask: the worker reads as its own uid.
    crate::atomic::write(&file, (rules.join("\n") + "\n").as_bytes(), 0o644).map_err(io("write", &file))?;
    let waited = wait_until(state_root, sandbox, start, APPLY_TIMEOUT, RELOAD, |a| a.owners.iter().any(|o| o == id))
        .and_then(|done| done.then_some(()).ok_or_else(|| timeout(state_root, sandbox, id, APPLY_TIMEOUT)));
    if waited.is_err() {
        // The worker may still load the file after the deadline; with the
        // file gone, one more signal makes its next load drop the set, and
        // `lift` (which the failed create's delete runs) waits for that.
        let _ = std::fs::remove_file(&file);
        let _ = signal_worker(state_root, sandbox, Signal::SIGHUP);
    }
    waited
}

/// Lifts `id`'s narrowing of `sandbox`'s policy, if it has one. A sandbox
/// whose sidecar is gone has nothing to lift from.
pub fn lift(state_root: &Path, sandbox: &str, id: &str) -> Result<(), NarrowError> {
    let dir = dir(state_root, sandbox);
    let file = dir.join(id);
    let start = applied_len(&dir);
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        // No file, but the worker's last load may still list `id`: an
        // `apply` that timed out removed the file after the worker read it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !listed_in_last_load(&dir, id) {
                return Ok(());
            }
        }
        Err(e) => return Err(io("remove", &file)(e)),
    }
    match wait_until(state_root, sandbox, start, LIFT_TIMEOUT, RELOAD, |a| !a.owners.iter().any(|o| o == id)) {
        Ok(true) | Err(NarrowError::NoSidecar(_)) => Ok(()),
        Ok(false) => Err(timeout(state_root, sandbox, id, LIFT_TIMEOUT)),
        Err(e) => Err(e),
    }
}

/// Restarts the worker of `sandbox`'s sidecar, whose config now has
/// `generation`, and waits until a worker serves with it: its first record
/// says that generation (a worker reads the config, then loads the
/// narrowing directory, before it serves). The worker named in the pid
/// file is stopped, and again every [`RESTART_RESIGNAL`] until then: one
/// that a pid file not yet updated hid may have read the config before it
/// changed. Connections the stopped worker served are cut; new ones queue
/// in the keeper's sockets meanwhile.
pub fn restart_worker(state_root: &Path, sandbox: &str, generation: u64) -> Result<(), NarrowError> {
    let start = applied_len(&dir(state_root, sandbox));
    match wait_until(state_root, sandbox, start, APPLY_TIMEOUT, RESTART, |a| a.config_generation == generation)? {
        true => Ok(()),
        false => Err(NarrowError::RestartTimeout {
            sandbox: sandbox.to_string(),
            timeout: APPLY_TIMEOUT,
            log: jail::state_dir(state_root, sandbox).join(jail::SIDECAR_LOG_FILE),
        }),
    }
}

fn applied_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(NARROWING_APPLIED_FILE))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// How the worker is prodded while waiting for its record: SIGHUP makes it
/// reload the directory; SIGTERM makes the supervisor start a new one, which
/// reads the config again.
#[derive(Clone, Copy)]
struct Prod {
    signal: Signal,
    every: Duration,
}

const RELOAD: Prod = Prod { signal: Signal::SIGHUP, every: RESIGNAL };
const RESTART: Prod = Prod { signal: Signal::SIGTERM, every: RESTART_RESIGNAL };

/// Prods the worker (at once, then every `prod.every`) until the last
/// complete record written after byte `start` of the record file satisfies
/// `done`: `Ok(false)` when `timeout` passed first.
fn wait_until(
    state_root: &Path,
    sandbox: &str,
    start: u64,
    timeout: Duration,
    prod: Prod,
    done: impl Fn(&NarrowingApplied) -> bool,
) -> Result<bool, NarrowError> {
    let record = dir(state_root, sandbox).join(NARROWING_APPLIED_FILE);
    let deadline = Instant::now() + timeout;
    let mut next_signal = Instant::now();
    loop {
        if Instant::now() >= next_signal {
            signal_worker(state_root, sandbox, prod.signal)?;
            next_signal = Instant::now() + prod.every;
        }
        if last_applied(&record, start).is_some_and(|a| done(&a)) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn timeout(state_root: &Path, sandbox: &str, id: &str, timeout: Duration) -> NarrowError {
    NarrowError::Timeout {
        sandbox: sandbox.to_string(),
        id: id.to_string(),
        timeout,
        log: jail::state_dir(state_root, sandbox).join(jail::SIDECAR_LOG_FILE),
    }
}

/// `signal` to the sandbox sidecar's worker. A worker being restarted is
/// not an error (the new one loads the directory at start); a sidecar whose
/// supervisor is gone is.
fn signal_worker(state_root: &Path, sandbox: &str, signal: Signal) -> Result<(), NarrowError> {
    let dir = jail::state_dir(state_root, sandbox);
    let config = dir.join(SIDECAR_CONFIG_FILE);
    let pids = crate::sidecar::read_pids(&dir.join(jail::SIDECAR_PIDS_FILE));
    let Some(pids) = pids.filter(|p| crate::sidecar::is_our_sidecar(p.supervisor, &config)) else {
        return Err(NarrowError::NoSidecar(sandbox.to_string()));
    };
    if let Some(worker) = pids
        .worker
        .filter(|w| crate::sidecar::is_our_sidecar(*w, &config))
    {
        let _ = kill(Pid::from_raw(worker), signal);
    }
    Ok(())
}

/// Whether the worker's last recorded load of narrowing directory `dir`
/// lists `id`. The file is read from [`TAIL`] before its end, and from
/// further back (doubling) while that finds no complete record: a window
/// that starts inside the last record holds nothing that parses, so one
/// record larger than the window (a jail with thousands of joiners) is
/// still found, and a window that holds any complete record holds the last.
fn listed_in_last_load(dir: &Path, id: &str) -> bool {
    let path = dir.join(NARROWING_APPLIED_FILE);
    let len = applied_len(dir);
    let mut tail = TAIL;
    loop {
        let start = len.saturating_sub(tail);
        if let Some(a) = last_applied(&path, start) {
            return a.owners.iter().any(|o| o == id);
        }
        if start == 0 {
            return false;
        }
        tail = tail.saturating_mul(2);
    }
}

/// The last complete record after byte `start` of the record file (which
/// may fall inside a record: that one does not parse and is passed over).
fn last_applied(path: &Path, start: u64) -> Option<NarrowingApplied> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let complete = &text[..text.rfind('\n')? + 1];
    complete
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_complete_load_decides_whether_a_container_is_still_listed() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir(root.path(), "jail");
        std::fs::create_dir_all(&dir).unwrap();
        let record = |owners: &[&str]| {
            let mut line = serde_json::to_string(&serde_json::json!({ "owners": owners })).unwrap();
            line.push('\n');
            line
        };
        assert!(!listed_in_last_load(&dir, "a"), "no record file");
        // Much more than the tail that is read, so the read starts inside a
        // record; then a load that lists `a`, then a torn write.
        let mut text = record(&["old"]).repeat((TAIL as usize / 10) + 1);
        text += &record(&["b", "a"]);
        text += "{\"owners\":[";
        std::fs::write(dir.join(NARROWING_APPLIED_FILE), &text).unwrap();
        assert!(listed_in_last_load(&dir, "a"));
        assert!(!listed_in_last_load(&dir, "old"), "only the last load counts");
        text.truncate(text.rfind('\n').unwrap() + 1);
        text += &record(&["b"]);
        std::fs::write(dir.join(NARROWING_APPLIED_FILE), &text).unwrap();
        assert!(!listed_in_last_load(&dir, "a"), "lifted");
        // One record larger than the tail that is read first.
        let many: Vec<String> = (0..TAIL / 4).map(|i| format!("joiner-{i}")).collect();
        let mut big: Vec<&str> = many.iter().map(String::as_str).collect();
        big.push("a");
        text += &record(&big);
        std::fs::write(dir.join(NARROWING_APPLIED_FILE), &text).unwrap();
        assert!(record(&big).len() as u64 > 2 * TAIL);
        assert!(listed_in_last_load(&dir, "a"), "a record larger than the tail");
        assert!(!listed_in_last_load(&dir, "b"), "only the last load counts");
        // lift() of a container whose file is gone but is still listed, in
        // a jail whose sidecar is gone: nothing left to lift from.
        std::fs::write(dir.join(NARROWING_APPLIED_FILE), record(&["a"])).unwrap();
        lift(root.path(), "jail", "a").unwrap();
    }

    #[test]
    fn a_jail_without_a_narrowing_directory_is_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(jail::state_dir(root.path(), "old")).unwrap();
        let e = apply(root.path(), "old", "joiner", &["domain=a.test".into()]).unwrap_err();
        assert!(matches!(e, NarrowError::NoDirectory(ref j) if j == "old"), "{e}");
        assert!(e.to_string().contains("recreate old"), "{e}");
        assert!(!dir(root.path(), "old").exists(), "apply made the directory");
    }

    #[test]
    fn only_complete_records_after_the_start_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NARROWING_APPLIED_FILE);
        std::fs::write(
            &path,
            "{\"owners\":[\"a\"]}\n{\"owners\":[\"a\",\"b\"]}\n{\"owners\":[",
        )
        .unwrap();
        assert_eq!(last_applied(&path, 0).unwrap().owners, ["a", "b"]);
        let first = "{\"owners\":[\"a\"]}\n".len() as u64;
        assert_eq!(last_applied(&path, first).unwrap().owners, ["a", "b"]);
        let both = std::fs::metadata(&path).unwrap().len() - "{\"owners\":[".len() as u64;
        assert_eq!(last_applied(&path, both), None);
        assert_eq!(last_applied(&dir.path().join("none"), 0), None);
    }

    #[test]
    fn without_a_sidecar_apply_fails_and_leaves_nothing_and_lift_is_quiet() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir(root.path(), "sb")).unwrap();
        let e = apply(root.path(), "sb", "c1", &["domain=a.test".into()]).unwrap_err();
        assert!(matches!(e, NarrowError::NoSidecar(_)), "{e}");
        assert!(!dir(root.path(), "sb").join("c1").exists());
        assert!(matches!(
            apply(root.path(), "sb", ".c", &[]),
            Err(NarrowError::HiddenId(_))
        ));
        std::fs::write(dir(root.path(), "sb").join("c2"), "domain=a.test\n").unwrap();
        lift(root.path(), "sb", "c2").unwrap();
        assert!(!dir(root.path(), "sb").join("c2").exists());
        lift(root.path(), "sb", "c3").unwrap();
    }
}
