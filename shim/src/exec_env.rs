//! `exec` into a jailed container: the new process trusts the host CA too,
//! and, in a container given no CAP_NET_ADMIN, gets none either.
//!
//! `create` puts the CA variables (`SSL_CERT_FILE`, ...) into the spec's
//! `process.env`, but `docker exec`, `kubectl exec` and `ctr task exec`
//! start processes from a process description of their own, without them:
//! `curl` in `docker exec` would then fail on the sidecar's certificates.
//! So for a container with jail state, `exec` gets each variable its
//! process does not set already, pointing at the mounted bundle, and is
//! then handed to the delegate with one `execve` like any other
//! subcommand. Containers without jail state are not touched at all.
//!
//! Two forms (runc-exec(8)): `--process FILE` (what containerd's shim
//! sends for `docker exec` and `kubectl exec`) describes the whole process,
//! so its JSON `env` array is amended in place, atomically. The command-line
//! form starts from the spec's own process, whose env the rewrite already
//! gave the variables, and is passed on untouched: adding `--env` there
//! would even be harmful, since crun (before 2026) replaces the spec's env,
//! `PATH` included, by the `--env` list.
//!
//! A container that could not have a user namespace of its own was given
//! no CAP_NET_ADMIN (in the host's user namespace it would reach the
//! jail's host side), and its state directory says why
//! ([`crate::jail::NO_NET_ADMIN_FILE`]). An `exec` process there would
//! otherwise get what its process file or `--cap` flags ask for (`docker
//! exec --privileged` asks for every capability): CAP_NET_ADMIN is taken
//! out of both, and the runtime log says so.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::args::{validate_id, ArgsError, Invocation};
use crate::rewrite::{self, is_net_admin, write_config_atomically, CA_BUNDLE_DEST, CA_ENV_VARS};

/// `runc exec` flags that take a value (runc-exec(8), crun(1);
/// `pidfd-socket` since runc 1.2).
const EXEC_VALUE_FLAGS: &[&str] = &[
    "console-socket", "cwd", "env", "e", "pid-file", "process", "p", "process-label", "apparmor", "cap", "c",
    "preserve-fds", "user", "u", "additional-gids", "g", "cgroup", "pidfd-socket",
];

/// The boolean `exec` flags. Any other flag is an error: one we cannot
/// read (crun's unique prefix `--ca`, an attached short value `-cVALUE`)
/// might ask for a capability we would not see.
const EXEC_BOOL_FLAGS: &[&str] = &["tty", "t", "detach", "d", "no-new-privs", "ignore-paused", "help", "h"];

#[derive(Debug, thiserror::Error)]
pub enum ExecEnvError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error("cannot read the exec process description {path}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("the exec process description {path} is not valid JSON: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the exec process description {path} has a non-array `env`")]
    EnvType { path: PathBuf },
    #[error("the exec process description {path} is malformed")]
    Shape { path: PathBuf, #[source] source: rewrite::RewriteError },
    #[error("cannot write the exec process description {path}")]
    Write { path: PathBuf, #[source] source: std::io::Error },
}

/// What `exec` was asked: the container id, the `--process` file, and
/// where `--cap` asks for CAP_NET_ADMIN.
#[derive(Debug, PartialEq, Eq)]
pub struct ExecArgs {
    pub id: String,
    pub process: Option<PathBuf>,
    /// Ranges, in [`Invocation::command_args`], of each `--cap` flag (with
    /// its value) that names CAP_NET_ADMIN.
    pub net_admin_caps: Vec<std::ops::Range<usize>>,
    /// The value of every `--cap` flag.
    pub caps: Vec<String>,
}

/// Reads `exec`'s flags with Go `flag` rules: flags up to the first
/// positional, which is the id.
pub fn exec_args(inv: &Invocation) -> Result<ExecArgs, ArgsError> {
    let args = inv.command_args();
    let mut process = None;
    let mut net_admin_caps = Vec::new();
    let mut caps = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let start = i;
        let s = args[i].to_string_lossy();
        if s == "--" {
            i += 1;
            break;
        }
        let Some(body) = s.strip_prefix("--").or_else(|| s.strip_prefix('-')).filter(|b| !b.is_empty()) else { break };
        crate::args::check_dash_form("exec", &args[i])?;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if !EXEC_VALUE_FLAGS.contains(&name) && !EXEC_BOOL_FLAGS.contains(&name) {
            return Err(ArgsError::UnknownFlag { command: "exec".into(), flag: name.to_string() });
        }
        let mut value = inline;
        if value.is_none() && EXEC_VALUE_FLAGS.contains(&name) {
            i += 1;
            let v = args.get(i).ok_or_else(|| ArgsError::MissingValue { command: "exec".into(), flag: name.to_string() })?;
            value = Some(v.to_string_lossy().into_owned());
        }
        match name {
            "process" | "p" => process = value.map(PathBuf::from),
            "cap" | "c" => {
                if value.as_deref().is_some_and(is_net_admin) {
                    net_admin_caps.push(start..i + 1);
                }
                caps.extend(value);
            }
            _ => {}
        }
        i += 1;
    }
    let id = args.get(i).ok_or_else(|| ArgsError::MissingId { command: "exec".into() })?;
    let id = id.to_str().ok_or_else(|| ArgsError::NotUtf8 { arg: id.to_string_lossy().into_owned() })?;
    validate_id(id)?;
    Ok(ExecArgs { id: id.to_string(), process, net_admin_caps, caps })
}

/// The `VAR=VALUE` entries `env` lacks (the last entry of a name wins, as
/// in runc, so any entry of the name counts as set).
fn missing_ca_env(env: &[Value]) -> Vec<String> {
    CA_ENV_VARS
        .iter()
        .filter(|var| {
            !env.iter().filter_map(Value::as_str).any(|e| e.split_once('=').is_some_and(|(k, _)| k == **var))
        })
        .map(|var| format!("{var}={CA_BUNDLE_DEST}"))
        .collect()
}

/// Adds the missing CA variables to a process description (`env` at the
/// top level). Returns whether anything changed.
pub fn amend_process(process: &mut Value, path: &Path) -> Result<bool, ExecEnvError> {
    let Some(obj) = process.as_object_mut() else {
        return Err(ExecEnvError::Parse { path: path.to_path_buf(), message: "not a JSON object".into() });
    };
    let env = obj.entry("env").or_insert_with(|| Value::Array(Vec::new()));
    if env.is_null() {
        *env = Value::Array(Vec::new());
    }
    let Some(list) = env.as_array_mut() else { return Err(ExecEnvError::EnvType { path: path.to_path_buf() }) };
    let missing = missing_ca_env(list);
    let changed = !missing.is_empty();
    list.extend(missing.into_iter().map(Value::String));
    Ok(changed)
}

/// What to hand the delegate for `exec` into a jailed container.
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    pub args: Vec<OsString>,
    /// What was taken away, for the runtime log.
    pub warnings: Vec<String>,
}

/// The argument list to hand the delegate for `exec` into a jailed
/// container, after amending a `--process` file in place. `no_net_admin`
/// (the reason the container was given no CAP_NET_ADMIN, see
/// [`crate::jail::no_net_admin`]): the new process gets none either,
/// whether its process file or a `--cap` flag asks for it (`docker exec
/// --privileged`, `runc exec --cap CAP_NET_ADMIN`).
pub fn prepare(inv: &Invocation, a: &ExecArgs, no_net_admin: Option<&str>) -> Result<Prepared, ExecEnvError> {
    let mut warnings = Vec::new();
    let mut dropped = false;
    let mut sys_admin = a.caps.iter().any(|c| is_sys_admin(c));
    if let Some(path) = &a.process {
        let bytes = std::fs::read(path).map_err(|source| ExecEnvError::Read { path: path.clone(), source })?;
        let mut process: Value =
            serde_json::from_slice(&bytes).map_err(|e| ExecEnvError::Parse { path: path.clone(), message: e.to_string() })?;
        sys_admin |= file_asks_for_sys_admin(&process);
        let mut changed = amend_process(&mut process, path)?;
        if no_net_admin.is_some() {
            // runc would read `Capabilities` as `capabilities`: only the
            // exact spelling may carry them, or the strip would miss them.
            rewrite::check_process_spellings(&process).map_err(|source| ExecEnvError::Shape { path: path.clone(), source })?;
            let removed = rewrite::exec_process_without_net_admin(&mut process)
                .map_err(|source| ExecEnvError::Shape { path: path.clone(), source })?;
            changed |= removed;
            dropped |= removed;
        }
        // Into a container given no CAP_NET_ADMIN the file is always
        // written back from what was read and checked: runc's Go decoder
        // merges a key given twice (two `capabilities` objects), which
        // this parse keeps only the last of, so the file as sent could
        // still carry what was stripped here.
        if changed || no_net_admin.is_some() {
            write_config_atomically(path, &process).map_err(|source| ExecEnvError::Write { path: path.clone(), source })?;
        }
    }
    let mut args = inv.args.clone();
    if let (Some(_), Some(at)) = (no_net_admin, inv.command_index) {
        for range in a.net_admin_caps.iter().rev() {
            args.drain(at + 1 + range.start..at + 1 + range.end);
            dropped = true;
        }
    }
    if let (true, Some(reason)) = (dropped, no_net_admin) {
        warnings.push(format!(
            "exec into {}: the new process gets no CAP_NET_ADMIN, as the container got none: {reason}",
            a.id
        ));
    }
    if no_net_admin.is_some() && sys_admin {
        warnings.push(format!(
            "exec into {}: the new process holds CAP_SYS_ADMIN in the host's user namespace (the container has no \
             user namespace of its own): it can mount, unshare and setns with it and may leave the network jail",
            a.id
        ));
    }
    Ok(Prepared { args, warnings })
}

/// Whether `name` is CAP_SYS_ADMIN's.
fn is_sys_admin(name: &str) -> bool {
    rewrite::is_capability(name, "SYS_ADMIN")
}

/// Whether a process file asks for CAP_SYS_ADMIN in its effective or
/// permitted set.
fn file_asks_for_sys_admin(process: &Value) -> bool {
    ["effective", "permitted"]
        .iter()
        .any(|set| process["capabilities"][set].as_array().is_some_and(|l| l.iter().filter_map(Value::as_str).any(is_sys_admin)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inv(s: &[&str]) -> Invocation {
        Invocation::parse(s.iter().map(OsString::from).collect())
    }

    #[test]
    fn reads_the_id_and_process_file_in_both_forms() {
        let i = inv(&["--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "--pid-file", "/p", "c1"]);
        let a = exec_args(&i).unwrap();
        assert_eq!((a.id.as_str(), a.process.as_deref()), ("c1", Some(Path::new("/tmp/p.json"))));
        let i = inv(&["exec", "-t", "-e", "A=1", "--user=0:0", "c2", "sh", "-c", "x"]);
        let a = exec_args(&i).unwrap();
        assert_eq!((a.id.as_str(), a.process), ("c2", None));
        assert!(matches!(exec_args(&inv(&["exec", "--cwd"])), Err(ArgsError::MissingValue { .. })));
        assert!(matches!(exec_args(&inv(&["exec", "../x"])), Err(ArgsError::InvalidId { .. })));
    }

    #[test]
    fn command_form_is_passed_on_untouched() {
        let i = inv(&["--log", "/l", "exec", "-t", "-e", "A=1", "c2", "curl", "https://x"]);
        let a = exec_args(&i).unwrap();
        assert_eq!(prepare(&i, &a, None).unwrap().args, i.args);
    }

    #[test]
    fn process_file_is_amended_once_and_keeps_the_users_own_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("process.json");
        let own = format!("{}=/mine.pem", CA_ENV_VARS[0]);
        std::fs::write(&path, json!({"args":["sh"],"env":["PATH=/bin", own],"cwd":"/"}).to_string()).unwrap();
        let i = inv(&["exec", "--process", path.to_str().unwrap(), "c"]);
        let a = exec_args(&i).unwrap();
        assert_eq!(prepare(&i, &a, None).unwrap().args, i.args);
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let env: Vec<&str> = v["env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert_eq!(env[..2], ["PATH=/bin", own.as_str()]);
        assert_eq!(env.len(), 1 + CA_ENV_VARS.len());
        assert_eq!(v["args"], json!(["sh"]));
        let before = std::fs::read(&path).unwrap();
        prepare(&i, &a, None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before, "second pass changes nothing");
    }

    #[test]
    fn without_net_admin_the_cap_flags_that_ask_for_it_are_dropped() {
        let argv = [
            "--log", "/l", "exec", "--cap", "CAP_NET_ADMIN", "-c", "CAP_NET_RAW", "--cap=net_admin", "-c", "cap_net_admin",
            "-t", "c1", "ip", "--cap", "CAP_NET_ADMIN",
        ];
        let i = inv(&argv);
        let a = exec_args(&i).unwrap();
        assert_eq!(a.net_admin_caps, [0..2, 4..5, 5..7]);
        let want: Vec<OsString> =
            ["--log", "/l", "exec", "-c", "CAP_NET_RAW", "-t", "c1", "ip", "--cap", "CAP_NET_ADMIN"].iter().map(OsString::from).collect();
        let p = prepare(&i, &a, Some("it shares the host's pid namespace")).unwrap();
        assert_eq!(p.args, want, "the command's own arguments are the command's");
        assert!(p.warnings[0].contains("no CAP_NET_ADMIN") && p.warnings[0].contains("host's pid namespace"), "{:?}", p.warnings);
        let p = prepare(&i, &a, None).unwrap();
        assert_eq!((p.args, p.warnings), (i.args.clone(), vec![]), "a container with its own user namespace keeps them");
    }

    #[test]
    fn flags_exec_cannot_read_are_errors_and_new_ones_are_read() {
        // crun reads `-p=f` as the file `=f`, `-process f` as `-p rocess`.
        for args in [&["exec", "-p=f.json", "c"][..], &["exec", "-process", "f.json", "c"], &["exec", "-c=CAP_NET_ADMIN", "c", "sh"], &["exec", "-cap", "CAP_NET_ADMIN", "c"]] {
            assert!(matches!(exec_args(&inv(args)), Err(ArgsError::DashForm { .. })), "{args:?}");
        }
        for args in [&["exec", "--ca", "CAP_NET_ADMIN", "c", "sh"][..], &["exec", "-cCAP_NET_ADMIN", "c", "sh"], &["exec", "-pfile.json", "c"]] {
            assert!(matches!(exec_args(&inv(args)), Err(ArgsError::UnknownFlag { .. } | ArgsError::DashForm { .. })), "{args:?}");
        }
        let a = exec_args(&inv(&["exec", "--pidfd-socket", "/s", "--cap", "CAP_NET_ADMIN", "-c", "CAP_SYS_ADMIN", "c", "sh"])).unwrap();
        assert_eq!((a.id.as_str(), a.net_admin_caps.len(), a.caps.len()), ("c", 1, 2));
        let i = inv(&["exec", "--cap=cap_sys_admin", "c", "sh"]);
        let p = prepare(&i, &exec_args(&i).unwrap(), Some("reason")).unwrap();
        assert!(p.warnings.iter().any(|w| w.contains("holds CAP_SYS_ADMIN")), "{:?}", p.warnings);
        assert!(prepare(&i, &exec_args(&i).unwrap(), None).unwrap().warnings.is_empty());
    }

    #[test]
    fn without_net_admin_the_process_file_loses_it_from_every_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("process.json");
        let all = json!(["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "net_admin"]);
        let caps = json!({"bounding": all, "effective": all, "permitted": all, "inheritable": all, "ambient": all});
        std::fs::write(&path, json!({"args":["sh"],"env":[],"capabilities": caps}).to_string()).unwrap();
        let i = inv(&["exec", "--process", path.to_str().unwrap(), "--detach", "c"]);
        let a = exec_args(&i).unwrap();
        let p = prepare(&i, &a, Some("reason")).unwrap();
        assert_eq!(p.args, i.args);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings[1].contains("holds CAP_SYS_ADMIN"), "{:?}", p.warnings);
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for set in ["bounding", "effective", "permitted", "inheritable", "ambient"] {
            assert_eq!(v["capabilities"][set], json!(["CAP_CHOWN", "CAP_SYS_ADMIN"]), "{set}");
        }
        let p = prepare(&i, &a, Some("reason")).unwrap();
        assert!(!p.warnings.iter().any(|w| w.contains("no CAP_NET_ADMIN")), "nothing left to take: {:?}", p.warnings);
        for folded in [json!({"args":["sh"],"Capabilities": {"bounding": ["CAP_NET_ADMIN"]}}), json!({"args":["sh"],"capabilities": {"Effective": ["CAP_NET_ADMIN"]}})] {
            std::fs::write(&path, folded.to_string()).unwrap();
            let e = format!("{:#}", anyhow::Error::from(prepare(&i, &a, Some("reason")).unwrap_err()));
            assert!(e.contains("OCI field"), "{e}");
        }
        // A key given twice: runc's decoder merges both objects, serde keeps
        // the last. The file already has every CA variable, so nothing else
        // would make it be written: it must be, without the first object.
        let env: Vec<String> = CA_ENV_VARS.iter().map(|v| format!("{v}={CA_BUNDLE_DEST}")).collect();
        let twice = format!(
            r#"{{"args":["sh"],"env":{},"capabilities":{{"bounding":["CAP_NET_ADMIN"],"effective":["CAP_NET_ADMIN"],"permitted":["CAP_NET_ADMIN"]}},"capabilities":{{"ambient":[]}}}}"#,
            serde_json::to_string(&env).unwrap()
        );
        std::fs::write(&path, &twice).unwrap();
        prepare(&i, &a, Some("reason")).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(!written.contains("NET_ADMIN") && written.matches("capabilities").count() == 1, "{written}");
        std::fs::write(&path, json!({"args":["sh"],"capabilities": {"bounding": "x"}}).to_string()).unwrap();
        let e = prepare(&i, &a, Some("reason")).unwrap_err();
        assert!(format!("{:#}", anyhow::Error::from(e)).contains("capabilities.bounding"));
    }

    #[test]
    fn bad_process_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        for (text, want) in [("{", "not valid JSON"), (r#"{"env":"x"}"#, "non-array `env`"), ("[1]", "not valid JSON")] {
            std::fs::write(&path, text).unwrap();
            let i = inv(&["exec", "-p", path.to_str().unwrap(), "c"]);
            let e = prepare(&i, &exec_args(&i).unwrap(), None).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("p.json"), "{e}");
        }
        let i = inv(&["exec", "-p", "/nonexistent/p.json", "c"]);
        assert!(prepare(&i, &exec_args(&i).unwrap(), None).unwrap_err().to_string().contains("cannot read"));
    }
}
