//! Running `boundary-runc` the way an engine does.
//!
//! A [`Runtime`] owns one test's world: a config file, a state root, a CA
//! directory, an audit directory, a runc `--root` and a `--log` file, all in
//! one temporary directory. Every call runs the real binary with
//! `BOUNDARY_RUNC_CONFIG` set and `--root R --log L --log-format json`, with
//! stdout/stderr in files (a detached container inherits them, so pipes
//! would never close) and a deadline. Containers the test leaves behind are
//! force-deleted on drop, and any jail piece still left is removed, so one
//! failing test does not break the next run.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boundary_contract::{AuditRecord, JailState, JAIL_STATE_FILE};
use serde_json::Value;
use tempfile::TempDir;

use crate::binaries::binaries;
use crate::bundle::Bundle;
use crate::deadline::poll_until;
use crate::leaks::LeakSnapshot;
use crate::settings::{Dirs, Settings};

/// How long one runtime call may take before the test fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// PATH for the runtime (cargo may run tests without the sbin directories).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What one call did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Entries appended to the `--log` file during the call (each line is
    /// checked to be a JSON object).
    pub log: Vec<Value>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with everything known unless the call succeeded.
    #[track_caller]
    pub fn ok(self) -> Outcome {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panics unless the call failed (non-zero exit).
    #[track_caller]
    pub fn failed(self) -> Outcome {
        assert!(matches!(self.code, Some(c) if c != 0), "command was expected to fail:\n{self}");
        self
    }

    /// The `msg` of every `level: error` entry in the log.
    pub fn log_errors(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|e| e["level"] == "error")
            .map(|e| e["msg"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.cmdline)?;
        writeln!(f, "exit: {:?}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout)?;
        writeln!(f, "stderr:\n{}", self.stderr)?;
        writeln!(f, "log:")?;
        for e in &self.log {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// One test's boundary-runc installation.
#[derive(Debug)]
pub struct Runtime {
    dir: TempDir,
    pub settings: Settings,
    pub dirs: Dirs,
    pub runc_root: PathBuf,
    pub log_file: PathBuf,
    pub config_file: PathBuf,
    containers: Mutex<BTreeSet<String>>,
    io_seq: AtomicU64,
}

impl Runtime {
    /// Writes the config for `settings` into a fresh directory.
    pub fn new(settings: Settings) -> Runtime {
        let dir = tempfile::Builder::new().prefix("boundary-e2e-rt.").tempdir().expect("create runtime dir");
        use std::os::unix::fs::PermissionsExt;
        // Like /run and /var/lib: traversable by the sidecar's unprivileged worker.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod runtime dir");
        let d = dir.path();
        let dirs = Dirs { state_root: d.join("state"), ca_dir: d.join("ca"), audit_dir: d.join("audit") };
        let rt = Runtime {
            runc_root: d.join("runc-root"),
            log_file: d.join("log.json"),
            config_file: d.join("config.toml"),
            io_seq: AtomicU64::new(0),
            containers: Mutex::new(BTreeSet::new()),
            settings,
            dirs,
            dir,
        };
        std::fs::create_dir_all(rt.dir.path().join("io")).expect("create io dir");
        std::fs::write(&rt.config_file, rt.settings.to_toml(&rt.dirs)).expect("write config.toml");
        rt
    }

    /// The config file's text (for failure messages).
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_file).unwrap_or_default()
    }

    /// `boundary-runc ARGS` with no global flags added.
    pub fn raw(&self, args: &[&str]) -> Outcome {
        self.call(args, false)
    }

    /// `boundary-runc --root R --log L --log-format json ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Outcome {
        self.call(args, true)
    }

    fn call(&self, args: &[&str], globals: bool) -> Outcome {
        let mut all: Vec<String> = Vec::new();
        if globals {
            all.extend(["--root".into(), self.runc_root.display().to_string()]);
            all.extend(["--log".into(), self.log_file.display().to_string(), "--log-format".into(), "json".into()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let mut cmd = Command::new(&binaries().runtime);
        cmd.args(&all).env("BOUNDARY_RUNC_CONFIG", &self.config_file).env("PATH", PATH);
        let cmdline = format!("BOUNDARY_RUNC_CONFIG={} boundary-runc {}", self.config_file.display(), all.join(" "));
        self.execute(cmd, cmdline)
    }

    /// Runs `cmd` with stdout/stderr in files, stdin empty, and a deadline.
    fn execute(&self, mut cmd: Command, cmdline: String) -> Outcome {
        let n = self.io_seq.fetch_add(1, Ordering::SeqCst);
        let io = self.dir.path().join("io");
        let (out_path, err_path) = (io.join(format!("{n}.out")), io.join(format!("{n}.err")));
        let out = std::fs::File::create(&out_path).expect("create stdout file");
        let err = std::fs::File::create(&err_path).expect("create stderr file");
        let log_start = std::fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for boundary-runc") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmdline} did not finish within {CALL_TIMEOUT:?}; stderr so far:\n{}", read_lossy(&err_path));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Outcome { code: status.code(), stdout: read_lossy(&out_path), stderr: read_lossy(&err_path), log: self.log_since(log_start), cmdline }
    }

    fn log_since(&self, start: u64) -> Vec<Value> {
        let bytes = std::fs::read(&self.log_file).unwrap_or_default();
        let tail = bytes.get(start as usize..).unwrap_or_default();
        parse_log(&String::from_utf8_lossy(tail), &self.log_file)
    }

    /// Every entry of the `--log` file; panics at a line that is not a JSON
    /// object (containerd could not decode the file).
    pub fn log_entries(&self) -> Vec<Value> {
        self.log_since(0)
    }

    fn track(&self, id: &str) {
        self.containers.lock().expect("containers lock").insert(id.to_string());
    }

    fn untrack(&self, id: &str) {
        self.containers.lock().expect("containers lock").remove(id);
    }

    /// `create --bundle B ID` (the container's stdio goes to files).
    pub fn create(&self, bundle: &Bundle, id: &str) -> Outcome {
        self.track(id);
        self.cmd(&["create", "--bundle", &bundle.path().to_string_lossy(), id])
    }

    /// `create` then `start`; panics unless both succeed.
    pub fn create_and_start(&self, bundle: &Bundle, id: &str) {
        self.create(bundle, id).ok();
        self.start(id).ok();
    }

    /// `run --bundle B ID` in the foreground: returns when the container exits.
    pub fn run(&self, bundle: &Bundle, id: &str) -> Outcome {
        self.track(id);
        self.cmd(&["run", "--bundle", &bundle.path().to_string_lossy(), id])
    }

    pub fn start(&self, id: &str) -> Outcome {
        self.cmd(&["start", id])
    }

    pub fn state(&self, id: &str) -> Outcome {
        self.cmd(&["state", id])
    }

    /// `state ID` parsed; panics unless it succeeds with JSON.
    pub fn state_json(&self, id: &str) -> Value {
        let out = self.state(id).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"))
    }

    /// `exec ID sh -c SCRIPT`.
    pub fn exec(&self, id: &str, script: &str) -> Outcome {
        self.cmd(&["exec", id, "sh", "-c", script])
    }

    pub fn kill(&self, id: &str, signal: &str) -> Outcome {
        self.cmd(&["kill", id, signal])
    }

    /// Waits until `state ID` says `stopped`.
    pub fn wait_stopped(&self, id: &str) {
        poll_until(Duration::from_secs(10), &format!("container {id} to stop"), || {
            (self.state_json(id)["status"] == "stopped").then_some(())
        });
    }

    pub fn delete(&self, id: &str) -> Outcome {
        let out = self.cmd(&["delete", id]);
        if out.success() {
            self.untrack(id);
        }
        out
    }

    pub fn delete_force(&self, id: &str) -> Outcome {
        let out = self.cmd(&["delete", "--force", id]);
        if out.success() {
            self.untrack(id);
        }
        out
    }

    /// The jail record boundary-runc wrote for `id`.
    pub fn jail(&self, id: &str) -> JailState {
        let path = self.dirs.state_root.join(id).join(JAIL_STATE_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not a JailState: {e}", path.display()))
    }

    /// The sidecar worker of `id`'s jail: its pid (from the jail's
    /// `sidecar.pids`) and its uid and gid (from `/proc`), after checking
    /// that its real, effective, saved and file-system ids agree.
    pub fn sidecar_worker(&self, id: &str) -> (i32, u32, u32) {
        let path = self.dirs.state_root.join(id).join("sidecar.pids"); // shim::jail::SIDECAR_PIDS_FILE
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let pids: boundary_contract::SidecarPids = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let pid = pids.worker.unwrap_or_else(|| panic!("{id}: no worker in {text}"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("{id}'s worker {pid}: {e}"));
        let ids = |key: &str| -> Vec<u32> {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in\n{status}"));
            line.split_whitespace().skip(1).map(|n| n.parse().expect("an id")).collect()
        };
        let (uids, gids) = (ids("Uid:"), ids("Gid:"));
        assert!(
            uids.iter().all(|u| *u == uids[0]) && gids.iter().all(|g| *g == gids[0]),
            "{id}'s worker: real, effective, saved and file-system ids differ:\n{status}"
        );
        (pid, uids[0], gids[0])
    }

    pub fn audit_path(&self, id: &str) -> PathBuf {
        self.dirs.audit_dir.join(format!("{id}.jsonl"))
    }

    /// The audit log of `id`; panics at a line that is not an AuditRecord.
    pub fn audit_records(&self, id: &str) -> Vec<AuditRecord> {
        let path = self.audit_path(id);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not an audit record ({e}): {l}", path.display())))
            .collect()
    }

    /// Everything of this runtime's jails that exists now.
    pub fn leaks(&self) -> LeakSnapshot {
        LeakSnapshot::take(&self.dirs.state_root, &self.settings)
    }
}

impl Runtime {
    /// `r` is the sidecar's 403, and the rule its body suggests ("add this
    /// rule") does allow `method url` by `boundary-runc policy check`.
    pub fn assert_403_names_a_working_rule(&self, r: &crate::probe::HttpReply, method: &str, url: &str) {
        assert_eq!(r.status, 403, "{r:?}");
        assert_eq!(r.header("x-boundary-decision"), Some("deny"), "{r:?}");
        let rule = r
            .body
            .lines()
            .skip_while(|l| !l.contains("add this rule"))
            .nth(1)
            .map(str::trim)
            .unwrap_or_else(|| panic!("the 403 for {url} names no rule: {:?}", r.body));
        let check = self.raw(&["policy", "check", "--allow", rule, method, url]);
        assert_eq!(check.code, Some(0), "the rule {rule:?} named by the 403 does not allow {method} {url}:\n{check}");
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let left: Vec<String> = self.containers.lock().map(|c| c.iter().cloned().collect()).unwrap_or_default();
        for id in left {
            let _ = self.cmd(&["delete", "--force", &id]);
        }
        if !self.dirs.state_root.exists() {
            return; // no jail was ever started here
        }
        let snap = self.leaks();
        if !snap.is_empty() {
            eprintln!("boundary-tests: removing jail pieces left behind under {}:\n{snap}", self.dirs.state_root.display());
            snap.remove_all();
        }
        for dir in ["netns", "userns"] {
            let _ = nix::mount::umount2(&self.dirs.state_root.join(dir), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

fn parse_log(text: &str, file: &Path) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => v,
            _ => panic!("{}: a line that is not a JSON object (containerd cannot decode this log): {l:?}", file.display()),
        })
        .collect()
}
