//! The real runtime boundary-runc hands every call to.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum DelegateError {
    #[error("delegate runtime {name:?} not found (looked for it {where_})")]
    NotFound { name: String, where_: String },
    #[error("no delegate runtime found: neither runc nor crun is on PATH; install runc (apt-get install runc) or set `runtime` in {config}")]
    NoneFound { config: String },
    #[error("cannot execute delegate runtime {path}")]
    Exec { path: PathBuf, #[source] source: nix::Error },
    #[error("argument contains a NUL byte")]
    Nul,
}

/// Finds the delegate: the configured path or name, else `runc`, else `crun`.
pub fn find(cfg: &Config) -> Result<PathBuf, DelegateError> {
    match &cfg.runtime {
        Some(r) if r.contains('/') => {
            let p = PathBuf::from(r);
            if is_executable(&p) {
                Ok(p)
            } else {
                Err(DelegateError::NotFound { name: r.clone(), where_: "at that path".into() })
            }
        }
        Some(name) => search_path(name)
            .ok_or_else(|| DelegateError::NotFound { name: name.clone(), where_: "on PATH".into() }),
        None => search_path("runc")
            .or_else(|| search_path("crun"))
            .ok_or_else(|| DelegateError::NoneFound { config: Config::path().display().to_string() }),
    }
}

fn is_executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
}

/// PATH lookup that never returns boundary-runc itself (it may be
/// installed under the name `runc`, by a symbolic or a hard link): a
/// candidate is compared with this process's executable by device and
/// inode. Our own identity is read only once a candidate is found, keeping
/// the pass-through path short.
fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    let mut me: Option<Option<(u64, u64)>> = None;
    std::env::split_paths(&path).map(|d| d.join(name)).filter(|p| is_executable(p)).find(|p| {
        let me = me.get_or_insert_with(|| file_id(Path::new("/proc/self/exe")));
        me.is_none() || file_id(p) != *me
    })
}

/// A file's (device, inode), following symbolic links.
fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

fn cstring(s: &OsStr) -> Result<CString, DelegateError> {
    CString::new(s.as_bytes()).map_err(|_| DelegateError::Nul)
}

/// Replaces this process with the delegate, with exactly `args` after
/// argv[0]: same order, environment, stdio, inherited fds, pid. Returns only
/// on failure.
pub fn exec(path: &Path, args: &[OsString]) -> DelegateError {
    let argv: Result<Vec<CString>, _> =
        std::iter::once(path.as_os_str()).chain(args.iter().map(|a| a.as_os_str())).map(cstring).collect();
    let argv = match argv {
        Ok(a) => a,
        Err(e) => return e,
    };
    let prog = &argv[0];
    match nix::unistd::execv(prog, &argv) {
        Err(source) => DelegateError::Exec { path: path.to_path_buf(), source },
        Ok(never) => match never {},
    }
}
