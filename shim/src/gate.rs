//! The gate between building a jail and running its container.
//!
//! `create` makes the jail's state and namespaces, rewrites the spec, hands
//! the rest of the building (nft table, veth, sidecar: ~10 ms) to a detached
//! builder ([`crate::builder`]) and `execve`s the delegate at once. The
//! builder starts once the delegate has started the container's init
//! (runc's CPU-bound start-up is over by then); the delegate spends ~30 ms
//! before it runs any hook, most of it after that point; the spec's first
//! prestart hook, `boundary-hook gate`, then waits for the builder's word
//! and fails the create with the builder's error. Prestart hooks run before
//! the container's process exists, so nothing runs in the jail before the
//! gate has passed, and `create` still returns only once the whole jail
//! (table, link, serving sidecar) is in place.
//!
//! The word: the builder holds an exclusive `flock` on `<dir>/gate.lock`
//! from before the delegate is exec'd until it has written `<dir>/gate`
//! (`ok`, or `error: ` and the reason). A builder that dies releases the
//! lock without a word, which fails the gate too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Value};

/// The hook's subcommand.
pub const SUBCOMMAND: &str = "gate";
pub const LOCK_FILE: &str = "gate.lock";
pub const WORD_FILE: &str = "gate";

/// How often the hook looks at the lock while the builder still holds it.
const POLL: Duration = Duration::from_micros(250);

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot {op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("cannot lock {path}")]
    Lock { path: PathBuf, #[source] source: nix::Error },
    #[error("the jail of {id} was not built within {timeout:?} (see the runtime log)")]
    Timeout { id: String, timeout: Duration },
    #[error("the jail of {id} could not be built: {reason}")]
    Failed { id: String, reason: String },
    #[error("the builder of {id}'s jail exited without a word (see the runtime log)")]
    Silent { id: String },
}

impl GateError {
    /// The gate hook's exit status: crun's error for a failed hook names
    /// only the status (runc's also carries the hook's stderr), so each
    /// way the jail can fail to be ready has its own.
    pub fn exit_code(&self) -> i32 {
        match self {
            GateError::Failed { .. } => EXIT_BUILD_FAILED,
            GateError::Silent { .. } => EXIT_BUILDER_SILENT,
            GateError::Timeout { .. } => EXIT_TIMEOUT,
            GateError::Io { .. } | GateError::Lock { .. } => 1,
        }
    }
}

/// The jail could not be built: the reason is the runtime log's error
/// line before the runtime's own.
pub const EXIT_BUILD_FAILED: i32 = 10;
/// The builder died without a word.
pub const EXIT_BUILDER_SILENT: i32 = 11;
/// The jail was not ready within the gate's timeout.
pub const EXIT_TIMEOUT: i32 = 12;

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GateError {
    let path = path.to_path_buf();
    move |source| GateError::Io { op, path, source }
}

/// A closed gate: the exclusive lock is held (by the builder, once forked).
#[derive(Debug)]
pub struct Closed {
    lock: Flock<File>,
    dir: PathBuf,
}

/// Closes the gate of the jail in `dir`. The lock's descriptor is
/// close-on-exec: after the delegate's `execve` only the builder holds it.
pub fn close(dir: &Path) -> Result<Closed, GateError> {
    let path = dir.join(LOCK_FILE);
    let _ = std::fs::remove_file(dir.join(WORD_FILE));
    let file = File::create(&path).map_err(io("create", &path))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, source)| GateError::Lock { path, source })?;
    Ok(Closed { lock, dir: dir.to_path_buf() })
}

impl Closed {
    /// Writes the word (`Ok`, or the reason the jail could not be built)
    /// and opens the gate.
    pub fn open(self, word: Result<(), &str>) -> Result<(), GateError> {
        let text = match word {
            Ok(()) => "ok\n".to_string(),
            Err(reason) => format!("error: {}\n", reason.replace('\n', " ")),
        };
        let path = self.dir.join(WORD_FILE);
        crate::atomic::write(&path, text.as_bytes(), 0o644).map_err(io("write", &path))?;
        drop(self.lock);
        Ok(())
    }
}

/// The hook's side: waits up to `timeout` for the builder of `id`'s jail
/// (in `dir`) to open the gate, and returns its word.
pub fn pass(dir: &Path, id: &str, timeout: Duration) -> Result<(), GateError> {
    let path = dir.join(LOCK_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        // No jail was built for this container (a bundle rewritten for a
        // jail before, now run joining another's): nothing to wait for.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.join(boundary_contract::JAIL_STATE_FILE).exists() => return Ok(()),
        Err(e) => return Err(io("open", &path)(e)),
    };
    let deadline = Instant::now() + timeout;
    // Polled rather than blocking: a blocking flock cannot time out. The
    // builder is normally done before the delegate gets here; when it is
    // not, a short period keeps the wait from adding more than a fraction
    // of a millisecond (each look is one flock call).
    loop {
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_shared) => break,
            Err((f, nix::Error::EWOULDBLOCK | nix::Error::EINTR)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(POLL);
            }
            Err((_, nix::Error::EWOULDBLOCK)) => return Err(GateError::Timeout { id: id.to_string(), timeout }),
            Err((_, source)) => return Err(GateError::Lock { path, source }),
        }
    }
    let word_path = dir.join(WORD_FILE);
    let word = match std::fs::read_to_string(&word_path) {
        Ok(w) => w,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(GateError::Silent { id: id.to_string() }),
        Err(e) => return Err(io("read", &word_path)(e)),
    };
    match word.trim_end().strip_prefix("error: ") {
        None if word.trim_end() == "ok" => Ok(()),
        Some(reason) => Err(GateError::Failed { id: id.to_string(), reason: reason.to_string() }),
        None => Err(GateError::Failed { id: id.to_string(), reason: format!("unreadable word {:?} in {}", word.trim_end(), word_path.display()) }),
    }
}

/// How long a teardown waits at most for a builder still at work.
pub const TEARDOWN_WAIT: Duration = Duration::from_secs(10);

/// Waits, up to `max`, until no builder holds the gate lock in `dir`, so
/// that a teardown removes what the builder made instead of racing it: a
/// teardown that ran meanwhile (runc's poststop hooks after its init failed
/// early, an engine's `delete --force`) would leave what the builder added
/// afterwards, such as a table in an engine's namespace, with no state left
/// to find it by. Returns whether the builder was still at work at `max`.
/// No lock file (no builder, or a joined container): nothing to wait for.
pub fn await_builder(dir: &Path, max: Duration) -> bool {
    let Ok(mut file) = File::open(dir.join(LOCK_FILE)) else { return false };
    let deadline = Instant::now() + max;
    loop {
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_shared) => return false,
            Err((f, nix::Error::EWOULDBLOCK | nix::Error::EINTR)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((_, nix::Error::EWOULDBLOCK)) => return true,
            Err(_) => return false,
        }
    }
}

/// The gate as a hook runs it (`boundary-hook gate`, or Docker's wrapped
/// setkey hook, which gates first): waits for the builder's word; on a
/// failure the jail goes at once (the builder is done or dead, and the
/// delegate, which has joined its namespace, waits); on success the init
/// (`init`, the OCI state's pid) is handed to the sidecar keeper.
pub fn pass_as_hook(state_root: &Path, id: &str, init: Option<i64>, timeout: Duration) -> Result<(), GateError> {
    match pass(&crate::jail::state_dir(state_root, id), id, timeout) {
        Ok(()) => {
            if let Some(init) = init.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
                if let Err(e) = hand_over_init(state_root, id, init) {
                    eprintln!("boundary-hook: warning: {e}; the proxy stops at the teardown instead");
                }
            }
            Ok(())
        }
        Err(e @ (GateError::Failed { .. } | GateError::Silent { .. })) => {
            crate::jail::teardown(state_root, id);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// After the gate passed: hands the container's init (`init`, the OCI
/// state's pid) to the jail's sidecar keeper, which stops its proxy once
/// the container is gone ([`crate::sidecar::hand_over_init`]). Best effort:
/// without it the proxy stops at the teardown, as it always may.
pub fn hand_over_init(state_root: &Path, id: &str, init: i32) -> Result<(), String> {
    let Some(state) = crate::jail::read_state(state_root, id).map_err(|e| e.to_string())? else { return Ok(()) };
    let keeper = state.sidecar_pid.ok_or_else(|| format!("the jail of {id} records no sidecar"))?;
    let config = crate::jail::state_dir(state_root, id).join(boundary_contract::SIDECAR_CONFIG_FILE);
    crate::sidecar::hand_over_init(keeper, &config, init).map_err(|e| format!("handing the init {init} of {id} to its sidecar {keeper}: {e}"))
}

/// Puts `boundary-hook gate` first among the spec's prestart hooks (once:
/// a gate hook of an earlier rewrite is replaced). Prestart hooks run
/// before createRuntime ones, Docker's `libnetwork-setkey` among them,
/// which needs the sidecar running.
pub fn add_hook(spec: &mut Value, hook: &Path, state_root: &Path, timeout: Duration) {
    let gate = json!({
        "path": hook.display().to_string(),
        "args": ["boundary-hook", SUBCOMMAND, "--state-root", state_root.display().to_string(), "--timeout-ms", timeout.as_millis().to_string()],
    });
    let Some(top) = spec.as_object_mut() else { return };
    let hooks = top.entry("hooks").or_insert_with(|| json!({}));
    let Some(hooks) = hooks.as_object_mut() else { return };
    let prestart = hooks.entry("prestart").or_insert_with(|| json!([]));
    let Some(list) = prestart.as_array_mut() else { return };
    list.retain(|h| !is_gate_hook(h));
    list.insert(0, gate);
}

fn is_gate_hook(h: &Value) -> bool {
    let args = h.get("args").and_then(Value::as_array);
    args.is_some_and(|a| a.first().and_then(Value::as_str) == Some("boundary-hook") && a.get(1).and_then(Value::as_str) == Some(SUBCOMMAND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_teardown_waits_for_the_builder_to_open_the_gate() {
        let d = tempfile::tempdir().unwrap();
        assert!(!await_builder(d.path(), Duration::from_secs(5)), "no lock file: nothing to wait for");
        let closed = close(d.path()).unwrap();
        assert!(await_builder(d.path(), Duration::from_millis(20)), "the builder still holds the gate");
        let builder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            closed.open(Err("no")).unwrap();
        });
        let start = Instant::now();
        assert!(!await_builder(d.path(), Duration::from_secs(5)));
        assert!(start.elapsed() >= Duration::from_millis(90), "returned before the gate opened: {:?}", start.elapsed());
        builder.join().unwrap();
    }

    #[test]
    fn the_word_passes_the_gate_once_written() {
        let d = tempfile::tempdir().unwrap();
        let closed = close(d.path()).unwrap();
        let err = pass(d.path(), "c", Duration::from_millis(20)).unwrap_err();
        assert!(matches!(err, GateError::Timeout { .. }), "{err}");
        closed.open(Ok(())).unwrap();
        pass(d.path(), "c", Duration::from_millis(20)).unwrap();
    }

    #[test]
    fn a_failure_and_a_silent_builder_fail_the_gate() {
        let d = tempfile::tempdir().unwrap();
        close(d.path()).unwrap().open(Err("nft: no such table\nsecond line")).unwrap();
        let err = pass(d.path(), "c", Duration::from_millis(20)).unwrap_err();
        assert_eq!(err.to_string(), "the jail of c could not be built: nft: no such table second line");
        // A builder that dies holding the lock (here: the lock dropped
        // without a word).
        drop(close(d.path()).unwrap());
        let err = pass(d.path(), "c", Duration::from_millis(20)).unwrap_err();
        assert!(matches!(err, GateError::Silent { .. }), "{err}");
    }

    #[test]
    fn a_container_without_a_jail_of_its_own_passes_and_a_jail_without_a_lock_does_not() {
        let d = tempfile::tempdir().unwrap();
        pass(d.path(), "joined", Duration::from_millis(20)).unwrap();
        std::fs::write(d.path().join(boundary_contract::JAIL_STATE_FILE), "{}").unwrap();
        let err = pass(d.path(), "odd", Duration::from_millis(20)).unwrap_err();
        assert!(matches!(err, GateError::Io { op: "open", .. }), "{err}");
    }

    #[test]
    fn the_hook_comes_first_and_only_once() {
        let mut spec = json!({"hooks": {"prestart": [{"path": "/usr/bin/setkey"}]}});
        for _ in 0..2 {
            add_hook(&mut spec, Path::new("/usr/local/bin/boundary-hook"), Path::new("/run/b"), Duration::from_millis(5000));
        }
        let list = spec["hooks"]["prestart"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["args"], json!(["boundary-hook", "gate", "--state-root", "/run/b", "--timeout-ms", "5000"]));
        assert_eq!(list[1]["path"], "/usr/bin/setkey");
        let mut bare = json!({});
        add_hook(&mut bare, Path::new("/h"), Path::new("/r"), Duration::from_secs(1));
        assert_eq!(bare["hooks"]["prestart"][0]["path"], "/h");
    }
}
