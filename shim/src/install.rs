//! `boundary-runc install|uninstall docker|containerd|crio`: register the
//! runtime with a container engine, and take it out again.
//!
//! Every engine's change is planned first as a list of [`FileChange`]s
//! (pure: old text in, new text out, in the per-engine modules) and then
//! applied: a file whose content would not change is left alone (so a
//! second `install` does nothing), a file that changes is first copied to
//! a backup, and `--dry-run` prints the change as a unified diff and
//! touches nothing. Settings that are not boundary-runc's are kept.

#![allow(clippy::print_stdout)] // these commands print for a person

pub mod containerd;
pub mod crio;
pub mod docker;

use std::io::Write;
use std::path::{Path, PathBuf};

/// The suffix of backups: `<file>.boundary-runc.bak`.
pub const BACKUP_SUFFIX: &str = ".boundary-runc.bak";
/// Default runtime name (and Kubernetes RuntimeClass handler).
pub const DEFAULT_NAME: &str = "boundary-runc";

pub const DOCKER_CONFIG_ENV: &str = "BOUNDARY_DOCKER_CONFIG";
pub const CONTAINERD_DIR_ENV: &str = "BOUNDARY_CONTAINERD_DIR";
pub const CONTAINERD_CONFIG_ENV: &str = "BOUNDARY_CONTAINERD_CONFIG";
pub const CRIO_DIR_ENV: &str = "BOUNDARY_CRIO_DIR";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot {op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("cannot edit {path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("invalid runtime name {0:?}: use letters, digits, '-', '_' and '.'")]
    Name(String),
    #[error("the runtime binary must be an absolute path, not {0}")]
    Binary(PathBuf),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { op, path, source }
}

/// The engines boundary-runc can register with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Docker,
    Containerd,
    Crio,
}

/// Where each engine's configuration lives; from the environment for tests
/// and unusual hosts, else the engines' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub docker_config: PathBuf,
    pub containerd_config: PathBuf,
    pub containerd_dir: PathBuf,
    pub crio_dir: PathBuf,
}

#[cfg(test)]
impl Paths {
    /// Every engine file under one directory (tests).
    pub(crate) fn under(dir: &std::path::Path) -> Paths {
        Paths {
            docker_config: dir.join("daemon.json"),
            containerd_config: dir.join("config.toml"),
            containerd_dir: dir.join("conf.d"),
            crio_dir: dir.join("crio.conf.d"),
        }
    }
}

impl Paths {
    pub fn from_env() -> Paths {
        let get = |var: &str, default: &str| std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
        Paths {
            docker_config: get(DOCKER_CONFIG_ENV, "/etc/docker/daemon.json"),
            containerd_config: get(CONTAINERD_CONFIG_ENV, "/etc/containerd/config.toml"),
            containerd_dir: get(CONTAINERD_DIR_ENV, "/etc/containerd/conf.d"),
            crio_dir: get(CRIO_DIR_ENV, "/etc/crio/crio.conf.d"),
        }
    }

    pub fn crio_dropin(&self) -> PathBuf {
        self.crio_dir.join("99-boundary-runc.conf")
    }
}

/// What to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub binary: PathBuf,
}

impl Registration {
    pub fn new(name: &str, binary: PathBuf) -> Result<Registration, InstallError> {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(InstallError::Name(name.to_string()));
        }
        if !binary.is_absolute() {
            return Err(InstallError::Binary(binary));
        }
        Ok(Registration { name: name.to_string(), binary })
    }

    pub fn binary_str(&self) -> String {
        self.binary.display().to_string()
    }
}

/// One file's planned content. `after == None` removes the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: Option<String>,
    /// Where the old content is kept when the file changes.
    pub backup: PathBuf,
}

impl FileChange {
    /// A change whose backup sits beside the file.
    pub fn new(path: PathBuf, before: Option<String>, after: Option<String>) -> FileChange {
        let backup = backup_beside(&path);
        FileChange { path, before, after, backup }
    }

    /// A change to a file in a drop-in directory: its backup goes next to
    /// the directory, where the engine never reads it as configuration
    /// (CRI-O loads every file in its drop-in directory).
    pub fn dropin(path: PathBuf, before: Option<String>, after: Option<String>) -> FileChange {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = path.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
        let backup = parent.join(format!("{name}{BACKUP_SUFFIX}"));
        FileChange { path, before, after, backup }
    }

    pub fn changes(&self) -> bool {
        self.before != self.after
    }

    /// The change as a unified diff (empty when nothing changes).
    pub fn diff(&self) -> String {
        if !self.changes() {
            return String::new();
        }
        let (a, b) = (self.before.as_deref().unwrap_or(""), self.after.as_deref().unwrap_or(""));
        let old = if self.before.is_some() { self.path.display().to_string() } else { "/dev/null".into() };
        let new = if self.after.is_some() { self.path.display().to_string() } else { "/dev/null".into() };
        similar::TextDiff::from_lines(a, b).unified_diff().context_radius(3).header(&old, &new).to_string()
    }
}

fn backup_beside(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Reads a file that may not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, InstallError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Written,
    Removed,
    /// Dry run: it would have changed.
    WouldChange,
}

/// Applies one change: backup of the old content, then an atomic write
/// (or removal). Nothing at all happens when the content is the same.
pub fn apply(change: &FileChange, dry_run: bool) -> Result<Outcome, InstallError> {
    if !change.changes() {
        return Ok(Outcome::Unchanged);
    }
    if dry_run {
        return Ok(Outcome::WouldChange);
    }
    if let Some(old) = &change.before {
        std::fs::write(&change.backup, old).map_err(io("write backup", &change.backup))?;
    }
    match &change.after {
        Some(text) => {
            write_atomically(&change.path, text)?;
            Ok(Outcome::Written)
        }
        None => {
            match std::fs::remove_file(&change.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &change.path)(e)),
            }
            Ok(Outcome::Removed)
        }
    }
}

/// Writes `text` to a temporary file beside `path` and renames it over,
/// keeping the old file's permissions (0644 for a new file).
fn write_atomically(path: &Path, text: &str) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    }
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    crate::atomic::write(path, text.as_bytes(), mode).map_err(io("replace", path))
}

/// Applies (or, dry, shows) every change and says what happened.
pub fn apply_all(changes: &[FileChange], dry_run: bool, out: &mut dyn Write) -> Result<bool, InstallError> {
    let mut changed = false;
    for c in changes {
        let outcome = apply(c, dry_run)?;
        changed |= outcome != Outcome::Unchanged;
        let p = c.path.display();
        let line = match outcome {
            Outcome::Unchanged => format!("{p}: already up to date"),
            Outcome::WouldChange => format!("{p}: would change (dry run, nothing written):\n{}", c.diff()),
            Outcome::Written if c.before.is_some() => format!("{p}: updated (previous content saved to {})", c.backup.display()),
            Outcome::Written => format!("{p}: created"),
            Outcome::Removed => format!("{p}: removed (previous content saved to {})", c.backup.display()),
        };
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(changed)
}

/// The whole command: plan, apply, then whatever the engine needs to
/// notice (a signal, or advice to restart it).
pub fn run(engine: Engine, install: bool, reg: &Registration, paths: &Paths, dry_run: bool, out: &mut dyn Write) -> Result<(), InstallError> {
    let changes = match (engine, install) {
        (Engine::Docker, true) => docker::plan_install(paths, reg)?,
        (Engine::Docker, false) => docker::plan_uninstall(paths, &reg.name)?,
        (Engine::Containerd, true) => containerd::plan_install(paths, reg)?,
        (Engine::Containerd, false) => containerd::plan_uninstall(paths, &reg.name)?,
        (Engine::Crio, true) => crio::plan_install(paths, reg)?,
        (Engine::Crio, false) => crio::plan_uninstall(paths)?,
    };
    let changed = apply_all(&changes, dry_run, out)?;
    if dry_run || !changed {
        return Ok(());
    }
    match engine {
        Engine::Docker => docker::reload(&paths.docker_config, out),
        Engine::Containerd => {
            let _ = writeln!(out, "restart containerd to apply the change (systemctl restart containerd); running containers keep running");
        }
        Engine::Crio => {
            let _ = writeln!(out, "restart CRI-O to apply the change (systemctl restart crio)");
        }
    }
    if install && engine != Engine::Docker {
        let _ = writeln!(out, "Kubernetes pods select it with a RuntimeClass whose handler is {:?}", reg.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_binaries_are_checked() {
        assert!(Registration::new("boundary-runc", "/usr/local/bin/boundary-runc".into()).is_ok());
        assert!(Registration::new("a b", "/x".into()).is_err());
        assert!(Registration::new("x\"]", "/x".into()).is_err());
        assert!(Registration::new("", "/x".into()).is_err());
        assert!(Registration::new("x", "relative/x".into()).is_err());
    }

    #[test]
    fn backups_only_on_change_and_dry_run_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.json");
        std::fs::write(&f, "old\n").unwrap();
        let same = FileChange::new(f.clone(), Some("old\n".into()), Some("old\n".into()));
        assert_eq!(apply(&same, false).unwrap(), Outcome::Unchanged);
        assert!(!same.backup.exists());
        let change = FileChange::new(f.clone(), Some("old\n".into()), Some("new\n".into()));
        assert_eq!(apply(&change, true).unwrap(), Outcome::WouldChange);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "old\n");
        assert!(!change.backup.exists());
        assert!(change.diff().contains("-old\n+new\n"), "{}", change.diff());
        assert_eq!(apply(&change, false).unwrap(), Outcome::Written);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new\n");
        assert_eq!(std::fs::read_to_string(d.path().join("c.json.boundary-runc.bak")).unwrap(), "old\n");
    }

    #[test]
    fn dropin_backups_live_outside_the_dropin_directory() {
        let c = FileChange::dropin("/etc/crio/crio.conf.d/99-boundary-runc.conf".into(), None, None);
        assert_eq!(c.backup, PathBuf::from("/etc/crio/99-boundary-runc.conf.boundary-runc.bak"));
    }

    #[test]
    fn removal_keeps_a_backup() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("conf.d");
        std::fs::create_dir(&dir).unwrap();
        let f = dir.join("x.toml");
        std::fs::write(&f, "a = 1\n").unwrap();
        let c = FileChange::dropin(f.clone(), Some("a = 1\n".into()), None);
        assert_eq!(apply(&c, false).unwrap(), Outcome::Removed);
        assert!(!f.exists());
        assert_eq!(std::fs::read_to_string(d.path().join("x.toml.boundary-runc.bak")).unwrap(), "a = 1\n");
    }
}
