//! Docker: `runtimes.NAME = {"path": BINARY}` in `/etc/docker/daemon.json`,
//! then SIGHUP to dockerd (it reloads runtimes without a restart).
//!
//! The rest of daemon.json is kept, key order included (serde_json's
//! `preserve_order`). When the entry is already what it should be, the file
//! is left byte for byte as it is.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{read_optional, FileChange, InstallError, Registration};

fn malformed(path: &Path, message: impl Into<String>) -> InstallError {
    InstallError::Malformed { path: path.to_path_buf(), message: message.into() }
}

/// Parses daemon.json (missing or blank: an empty object).
fn parse(path: &Path, text: Option<&str>) -> Result<Map<String, Value>, InstallError> {
    match text {
        None => Ok(Map::new()),
        Some(t) if t.trim().is_empty() => Ok(Map::new()),
        Some(t) => match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(malformed(path, "the top level is not a JSON object")),
            Err(e) => Err(malformed(path, e.to_string())),
        },
    }
}

fn render(doc: Map<String, Value>) -> String {
    let mut s = serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default();
    s.push('\n');
    s
}

/// The new daemon.json text with the runtime registered.
pub fn with_runtime(path: &Path, text: Option<&str>, reg: &Registration) -> Result<Option<String>, InstallError> {
    let mut doc = parse(path, text)?;
    let before = doc.clone();
    let runtimes = doc.entry("runtimes").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(runtimes) = runtimes else {
        return Err(malformed(path, "\"runtimes\" is not an object"));
    };
    let mut entry = Map::new();
    entry.insert("path".into(), Value::String(reg.binary_str()));
    runtimes.insert(reg.name.clone(), Value::Object(entry));
    if text.is_some() && doc == before {
        return Ok(text.map(str::to_string));
    }
    Ok(Some(render(doc)))
}

/// The new daemon.json text without the runtime (and without an empty
/// `runtimes` object left behind).
pub fn without_runtime(path: &Path, text: Option<&str>, name: &str) -> Result<Option<String>, InstallError> {
    let Some(t) = text else { return Ok(None) };
    let mut doc = parse(path, text)?;
    let Some(Value::Object(runtimes)) = doc.get_mut("runtimes") else { return Ok(Some(t.to_string())) };
    if runtimes.shift_remove(name).is_none() {
        return Ok(Some(t.to_string()));
    }
    if runtimes.is_empty() {
        doc.shift_remove("runtimes");
    }
    Ok(Some(render(doc)))
}

pub fn plan_install(paths: &super::Paths, reg: &Registration) -> Result<Vec<FileChange>, InstallError> {
    let path = &paths.docker_config;
    let before = read_optional(path)?;
    let after = with_runtime(path, before.as_deref(), reg)?;
    Ok(vec![FileChange::new(path.clone(), before, after)])
}

pub fn plan_uninstall(paths: &super::Paths, name: &str) -> Result<Vec<FileChange>, InstallError> {
    let path = &paths.docker_config;
    let before = read_optional(path)?;
    let after = without_runtime(path, before.as_deref(), name)?;
    Ok(vec![FileChange::new(path.clone(), before, after)])
}

/// The runtimes daemon.json registers, as (name, path).
pub fn registered(text: &str) -> Vec<(String, String)> {
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    let Some(Value::Object(runtimes)) = doc.get("runtimes") else { return Vec::new() };
    runtimes
        .iter()
        .filter_map(|(name, v)| Some((name.clone(), v.get("path")?.as_str()?.to_string())))
        .collect()
}

/// The config file a dockerd command line reads.
pub fn config_file_of(cmdline: &[String]) -> PathBuf {
    let mut it = cmdline.iter().skip(1);
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--config-file=") {
            return PathBuf::from(v);
        }
        if a == "--config-file" {
            if let Some(v) = it.next() {
                return PathBuf::from(v);
            }
        }
    }
    PathBuf::from("/etc/docker/daemon.json")
}

/// Running dockerd processes whose config file is `config`.
pub fn dockerd_pids(config: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    let want = config.canonicalize().unwrap_or_else(|_| config.to_path_buf());
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dockerd"))
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let f = config_file_of(&args);
            f.canonicalize().unwrap_or(f) == want
        })
        .collect()
}

/// Makes dockerd reread its runtimes (SIGHUP), if one runs with this file.
pub fn reload(config: &Path, out: &mut dyn Write) {
    let pids = dockerd_pids(config);
    if pids.is_empty() {
        let _ = writeln!(out, "dockerd is not running with {}; it reads the runtime when it starts", config.display());
    }
    for pid in pids {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP) {
            Ok(()) => {
                let _ = writeln!(out, "sent SIGHUP to dockerd (pid {pid}): it reloads its runtimes now");
            }
            Err(e) => {
                let _ = writeln!(out, "could not signal dockerd (pid {pid}): {e}; restart it to apply the change");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration::new("boundary-runc", "/usr/local/bin/boundary-runc".into()).unwrap()
    }

    const ORIGINAL: &str = "{\n  \"log-driver\": \"journald\",\n  \"runtimes\": {\n    \"nvidia\": {\"path\": \"/usr/bin/nvidia-container-runtime\"}\n  },\n  \"debug\": true\n}\n";

    #[test]
    fn install_keeps_other_keys_in_order_and_is_idempotent() {
        let p = Path::new("daemon.json");
        let once = with_runtime(p, Some(ORIGINAL), &reg()).unwrap().unwrap();
        let v: Value = serde_json::from_str(&once).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["log-driver", "runtimes", "debug"]);
        assert_eq!(v["runtimes"]["nvidia"]["path"], "/usr/bin/nvidia-container-runtime");
        assert_eq!(v["runtimes"]["boundary-runc"]["path"], "/usr/local/bin/boundary-runc");
        let twice = with_runtime(p, Some(&once), &reg()).unwrap().unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn install_into_a_missing_file_and_replace_an_old_path() {
        let p = Path::new("daemon.json");
        let created = with_runtime(p, None, &reg()).unwrap().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&created).unwrap(), serde_json::json!({"runtimes": {"boundary-runc": {"path": "/usr/local/bin/boundary-runc"}}}));
        let other = Registration::new("boundary-runc", "/opt/b/boundary-runc".into()).unwrap();
        let moved = with_runtime(p, Some(&created), &other).unwrap().unwrap();
        assert!(moved.contains("/opt/b/boundary-runc") && !moved.contains("/usr/local/bin"), "{moved}");
    }

    #[test]
    fn uninstall_restores_the_original_semantically() {
        let p = Path::new("daemon.json");
        let installed = with_runtime(p, Some(ORIGINAL), &reg()).unwrap().unwrap();
        let removed = without_runtime(p, Some(&installed), "boundary-runc").unwrap().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&removed).unwrap(), serde_json::from_str::<Value>(ORIGINAL).unwrap());
        let plain = "{\"debug\": true}\n";
        let installed = with_runtime(p, Some(plain), &reg()).unwrap().unwrap();
        let removed = without_runtime(p, Some(&installed), "boundary-runc").unwrap().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&removed).unwrap(), serde_json::json!({"debug": true}));
        assert_eq!(without_runtime(p, Some(plain), "boundary-runc").unwrap().as_deref(), Some(plain));
        assert_eq!(without_runtime(p, None, "boundary-runc").unwrap(), None);
    }

    #[test]
    fn malformed_files_are_refused_not_overwritten() {
        let p = Path::new("/etc/docker/daemon.json");
        let e = with_runtime(p, Some("{not json"), &reg()).unwrap_err().to_string();
        assert!(e.starts_with("cannot edit /etc/docker/daemon.json"), "{e}");
        assert!(with_runtime(p, Some("[]"), &reg()).is_err());
        assert!(with_runtime(p, Some("{\"runtimes\": 3}"), &reg()).is_err());
    }

    #[test]
    fn registered_runtimes_are_listed() {
        let installed = with_runtime(Path::new("d"), Some(ORIGINAL), &reg()).unwrap().unwrap();
        let r = registered(&installed);
        assert_eq!(r[1], ("boundary-runc".to_string(), "/usr/local/bin/boundary-runc".to_string()));
        assert_eq!(r.len(), 2);
        assert!(registered("{").is_empty());
    }

    #[test]
    fn dockerd_config_file_from_its_command_line() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(config_file_of(&a(&["dockerd"])), PathBuf::from("/etc/docker/daemon.json"));
        assert_eq!(config_file_of(&a(&["dockerd", "--config-file", "/x.json"])), PathBuf::from("/x.json"));
        assert_eq!(config_file_of(&a(&["dockerd", "--config-file=/y.json", "-D"])), PathBuf::from("/y.json"));
    }
}
