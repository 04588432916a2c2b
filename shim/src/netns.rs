//! Network namespaces: create one bound to a file, run code inside one.
//!
//! This is the only module that calls `unshare`, `setns` and `mount`.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot {op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error("cannot {op} {path}")]
    Sys { op: &'static str, path: PathBuf, #[source] source: nix::Error },
    #[error("namespace worker thread panicked")]
    Panicked,
}

fn sys(op: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> NetnsError {
    let path = path.to_path_buf();
    move |source| NetnsError::Sys { op, path, source }
}

/// Makes `dir` a shared mount point, as `ip netns` does for /run/netns, so
/// that unmounting a namespace file also unmounts the copies other mount
/// namespaces took while it existed (otherwise they would keep it alive).
pub fn prepare_dir(dir: &Path) -> Result<(), NetnsError> {
    std::fs::create_dir_all(dir).map_err(|source| NetnsError::Io { op: "create", path: dir.to_path_buf(), source })?;
    // Concurrent creates would each bind the directory onto itself and
    // stack mounts; the first one does it, under a lock on the directory.
    let handle = File::open(dir).map_err(|source| NetnsError::Io { op: "open", path: dir.to_path_buf(), source })?;
    let _lock = nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| sys("lock", dir)(e))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, None::<&str>, shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(sys("bind-mount", dir))?;
            mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).map_err(sys("make shared", dir))
        }
        Err(e) => Err(sys("make shared", dir)(e)),
    }
}

/// Creates a new network namespace and binds it to `path`.
pub fn create(path: &Path) -> Result<(), NetnsError> {
    create_all(&[path])
}

/// Creates a network namespace bound to each of `paths`, all at once (a
/// new namespace costs the kernel a few milliseconds). unshare(CLONE_NEWNET)
/// only changes the calling thread, so each is made on a thread of its own
/// and the rest of the process is untouched. Returns the first error; a
/// namespace whose making failed leaves no file, the others stay for the
/// caller's teardown.
pub fn create_all(paths: &[&Path]) -> Result<(), NetnsError> {
    let threads: Vec<_> = paths
        .iter()
        .map(|p| {
            let path = p.to_path_buf();
            std::thread::spawn(move || make_on_this_thread(&path))
        })
        .collect();
    let mut first = Ok(());
    for t in threads {
        let res = t.join().unwrap_or(Err(NetnsError::Panicked));
        if first.is_ok() {
            first = res;
        }
    }
    first
}

/// Moves the calling thread into a new network namespace and binds it to
/// `path` (created here). Only for a thread of its own.
fn make_on_this_thread(path: &Path) -> Result<(), NetnsError> {
    File::create(path).map_err(|source| NetnsError::Io { op: "create", path: path.to_path_buf(), source })?;
    let res = unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare a network namespace for", path)).and_then(|()| {
        mount(Some("/proc/thread-self/ns/net"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(sys("bind-mount network namespace to", path))
    });
    if res.is_err() {
        let _ = std::fs::remove_file(path);
    }
    res
}

/// Unmounts and removes a namespace file; missing is fine.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys("unmount", path)(e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io { op: "remove", path: path.to_path_buf(), source }),
    }
}

/// Runs `f` on a thread that has entered the network namespace at `path`
/// (`None`: the caller's namespace). Sockets and child processes made by `f`
/// belong to that namespace.
pub fn run_in<R, F>(path: Option<&Path>, f: F) -> Result<R, NetnsError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let file = match path {
        Some(p) => Some(File::open(p).map_err(|source| NetnsError::Io { op: "open", path: p.to_path_buf(), source })?),
        None => None,
    };
    let owned = path.map(Path::to_path_buf);
    std::thread::spawn(move || -> Result<R, NetnsError> {
        if let (Some(file), Some(p)) = (&file, &owned) {
            setns(file, CloneFlags::CLONE_NEWNET).map_err(sys("enter network namespace", p))?;
        }
        Ok(f())
    })
    .join()
    .map_err(|_| NetnsError::Panicked)?
}

/// The inode of a namespace file, to tell namespaces apart.
pub fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}
