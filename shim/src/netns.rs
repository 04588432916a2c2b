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

/// The user namespace that owns a jail's network namespace.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// A new one with these maps (`/proc/<pid>/uid_map` lines), bound to
    /// `path`.
    New { path: &'a Path, uid_map: &'a str, gid_map: &'a str },
    /// An existing one (the spec's own `user` entry with a path).
    Join(&'a Path),
}

/// Creates the jail's network namespace *owned by a user namespace other
/// than the host's*, and binds it (and a new user namespace) to files.
///
/// Why: the container's processes run in that user namespace, so their
/// CAP_NET_ADMIN counts in it alone. With capabilities in the host's user
/// namespace, CAP_NET_ADMIN in the jail would also be CAP_NET_ADMIN over
/// the veth's host side: rtnetlink takes `IFLA_LINK_NETNSID` or
/// `IFLA_TARGET_NETNSID` (the id the kernel gives the peer's namespace
/// when the jail lists its links) and checks the capability against the
/// *owner* of that namespace, so a macvlan on the host side's uplink, made
/// from inside the jail, would leave by that uplink and never meet the
/// nft table or the sidecar.
///
/// A new user namespace: [`start_owned`] then [`Pending::finish`]. An
/// existing one (`Join`): a forked child (single-threaded, as `setns` into
/// a user namespace requires) joins it and unshares the network namespace,
/// which the kernel gives to that user namespace. The child only makes raw
/// system calls.
pub fn create_owned(netns: &Path, owner: Owner<'_>) -> Result<(), NetnsError> {
    use nix::unistd::{fork, read, write, ForkResult};
    let user = match owner {
        Owner::Join(p) => File::open(p).map_err(|source| NetnsError::Io { op: "open", path: p.to_path_buf(), source })?,
        Owner::New { .. } => return start_owned(netns)?.finish(netns, owner),
    };
    let (ready_r, ready_w) = cloexec_pipe(netns)?;
    let (go_r, go_w) = cloexec_pipe(netns)?;
    // SAFETY: the child makes only async-signal-safe system calls (setns,
    // unshare, write, read) and leaves by _exit, touching no lock or heap
    // state another thread of this process may have held at the fork.
    match unsafe { fork() }.map_err(sys("fork to create", netns))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            let made = setns(&user, CloneFlags::CLONE_NEWUSER).and_then(|()| unshare(CloneFlags::CLONE_NEWNET));
            let code = [match made {
                Ok(()) => 0u8,
                Err(e) => (e as i32).clamp(1, 255) as u8,
            }];
            let _ = write(&ready_w, &code);
            let mut buf = [0u8; 1];
            let _ = read(&go_r, &mut buf);
            // SAFETY: leaves without running exit handlers or destructors.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(go_r);
            Pending { child, ready: ready_r, go: Some(go_w), _stack: Vec::new(), _fds: None, reaped: false }.finish(netns, owner)
        }
    }
}

/// A pipe whose ends no exec'd process inherits (one that kept `go` open
/// would keep the holding child, and so `create`, waiting).
fn cloexec_pipe(netns: &Path) -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), NetnsError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create a pipe for", netns))
}

/// What the child of [`start_owned`] holds: its ends of the two pipes,
/// and the parent's ends, which its copy of the descriptor table also has
/// and closes first (else the parent's close of `go` would not end its
/// wait).
struct HoldFds {
    ready_w: std::os::fd::RawFd,
    go_r: std::os::fd::RawFd,
    parents: [std::os::fd::RawFd; 2],
}

/// `unshare(flags)` as a bare system call: the negated errno on failure,
/// and the caller's `errno` untouched (the child of [`start_owned`]
/// shares the parent thread's TLS, and so its `errno`).
#[cfg(target_arch = "x86_64")]
fn raw_unshare(flags: nix::libc::c_int) -> isize {
    let ret: isize;
    // SAFETY: the unshare system call; it takes one register argument and
    // clobbers rcx and r11 (the `syscall` instruction), nothing in memory.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nix::libc::SYS_unshare as isize => ret, in("rdi") flags as isize,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

#[cfg(target_arch = "aarch64")]
fn raw_unshare(flags: nix::libc::c_int) -> isize {
    let ret: isize;
    // SAFETY: the unshare system call (number in x8, argument and result
    // in x0); `svc 0` clobbers nothing else.
    unsafe {
        std::arch::asm!("svc 0", in("x8") nix::libc::SYS_unshare as isize, inlateout("x0") flags as isize => ret, options(nostack));
    }
    ret
}

/// Elsewhere the network namespace is made by `clone` itself (see
/// [`start_owned`]): nothing to do here.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn raw_unshare(_flags: nix::libc::c_int) -> isize {
    0
}

/// Whether [`start_owned`]'s child makes the network namespace itself.
const CHILD_UNSHARES_NET: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The child of [`start_owned`]: makes its network namespace (in the user
/// namespace `clone` made), says so, with the errno when that failed,
/// then holds both until the parent has bound them. Runs on its own stack
/// in the parent's memory: raw system calls only. It shares the calling
/// thread's TLS (no CLONE_SETTLS), so a failing libc call would set that
/// thread's errno: `unshare` is a bare system call, and the pipe calls do
/// not fail but by the parent's death.
extern "C" fn hold(data: *mut nix::libc::c_void) -> nix::libc::c_int {
    // SAFETY: `data` is the HoldFds the parent keeps alive (boxed in the
    // Pending) until this child has been reaped.
    let fds = unsafe { &*(data as *const HoldFds) };
    let mut go = [0u8; 1];
    // SAFETY: plain close/write/read on descriptors of this child's table.
    unsafe {
        for fd in fds.parents {
            nix::libc::close(fd);
        }
    }
    let made = if CHILD_UNSHARES_NET { raw_unshare(nix::libc::CLONE_NEWNET) } else { 0 };
    // An errno is below 256 (the kernel's MAX_ERRNO is 4095, but every
    // errno unshare returns is small); 0 says the namespaces exist.
    let ready = [u8::try_from(-made).unwrap_or(u8::MAX)];
    // SAFETY: as above.
    unsafe {
        nix::libc::write(fds.ready_w, ready.as_ptr().cast(), 1);
        if made == 0 {
            nix::libc::read(fds.go_r, go.as_mut_ptr().cast(), 1);
        }
    }
    0
}

/// A child in a new user namespace and a new network namespace owned by
/// it, waiting for [`Pending::finish`] to write the maps and bind both. It
/// is made with `clone(CLONE_VM | CLONE_NEWUSER)`, no copy of the shim's
/// page tables, and makes the network namespace itself with `unshare`: the
/// kernel's work on a network namespace (the slow part, ~0.7 ms: the
/// loopback device, sysctl tables, per-protocol state) is done by the
/// thread that asks for it, so in the child it runs on another core while
/// the shim rewrites the spec, instead of inside the shim's `clone`.
pub fn start_owned(netns: &Path) -> Result<Pending, NetnsError> {
    use std::os::fd::AsRawFd;
    let (ready_r, ready_w) = cloexec_pipe(netns)?;
    let (go_r, go_w) = cloexec_pipe(netns)?;
    let fds = Box::new(HoldFds { ready_w: ready_w.as_raw_fd(), go_r: go_r.as_raw_fd(), parents: [ready_r.as_raw_fd(), go_w.as_raw_fd()] });
    let mut stack = vec![0u8; 64 * 1024];
    let net = if CHILD_UNSHARES_NET { 0 } else { nix::libc::CLONE_NEWNET };
    let flags = nix::libc::CLONE_VM | nix::libc::CLONE_NEWUSER | net | nix::libc::SIGCHLD;
    // SAFETY: the child runs `hold` on `stack` (16-byte aligned top) with a
    // pointer to `fds`; both live in the Pending until the child is
    // reaped. Without CLONE_FILES the child has its own descriptor table.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.len());
        let top = top.sub(top as usize % 16);
        nix::libc::clone(hold, top.cast(), flags, &*fds as *const HoldFds as *mut nix::libc::c_void)
    };
    if pid < 0 {
        return Err(sys("make a user and a network namespace for", netns)(nix::Error::last()));
    }
    drop(ready_w);
    drop(go_r);
    Ok(Pending { child: nix::unistd::Pid::from_raw(pid), ready: ready_r, go: Some(go_w), _stack: stack, _fds: Some(fds), reaped: false })
}

/// A child holding a jail's namespaces until they are bound to files.
/// Dropped unfinished, the child is let go and reaped (its namespaces go).
pub struct Pending {
    child: nix::unistd::Pid,
    ready: std::os::fd::OwnedFd,
    go: Option<std::os::fd::OwnedFd>,
    _stack: Vec<u8>,
    _fds: Option<Box<HoldFds>>,
    reaped: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("child", &self.child).finish_non_exhaustive()
    }
}

impl Pending {
    /// Waits for the child, writes the maps of a new user namespace, binds
    /// the network namespace to `netns` (and the user namespace to its
    /// path), then lets the child go and reaps it.
    pub fn finish(mut self, netns: &Path, owner: Owner<'_>) -> Result<(), NetnsError> {
        let mut code = [0u8; 1];
        let res = match nix::unistd::read(&self.ready, &mut code) {
            Ok(1) if code[0] == 0 => bind_owned(self.child.as_raw(), netns, owner),
            Ok(1) => Err(sys("make the jail's namespaces for", netns)(nix::Error::from_raw(i32::from(code[0])))),
            Ok(_) => Err(sys("make the jail's namespaces for", netns)(nix::Error::ECHILD)),
            Err(e) => Err(sys("make the jail's namespaces for", netns)(e)),
        };
        self.release();
        res
    }

    /// Lets the child go and reaps it; only then may its stack be freed
    /// (a CLONE_VM child runs on it), so an interrupted wait is retried.
    fn release(&mut self) {
        drop(self.go.take());
        while !self.reaped {
            match nix::sys::wait::waitpid(self.child, None) {
                Err(nix::Error::EINTR) => continue,
                _ => self.reaped = true,
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.release();
    }
}

/// The parent's half of [`create_owned`]: the maps, then the bind mounts.
/// A file whose bind failed is removed again; the caller's teardown
/// removes the others.
fn bind_owned(pid: i32, netns: &Path, owner: Owner<'_>) -> Result<(), NetnsError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let mut binds = vec![(proc.join("ns/net"), netns)];
    if let Owner::New { path, uid_map, gid_map } = owner {
        for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let at = proc.join(file);
            std::fs::write(&at, map).map_err(|source| NetnsError::Io { op: "write", path: at.clone(), source })?;
        }
        binds.push((proc.join("ns/user"), path));
    }
    for (from, to) in binds {
        File::create(to).map_err(|source| NetnsError::Io { op: "create", path: to.to_path_buf(), source })?;
        if let Err(e) = mount(Some(from.as_path()), to, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
            let _ = std::fs::remove_file(to);
            return Err(sys("bind-mount a namespace to", to)(e));
        }
    }
    Ok(())
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

const NS_GET_USERNS: nix::libc::c_ulong = 0xb701;
const NS_GET_PARENT: nix::libc::c_ulong = 0xb702;

/// One of the namespace ioctls that return a namespace (`NS_GET_USERNS`:
/// the owner; `NS_GET_PARENT`: a user namespace's parent, an error above
/// the top this process can see).
fn ns_ioctl(ns: &File, op: nix::libc::c_ulong) -> std::io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: the ioctl takes no argument and returns a new descriptor.
    let raw = unsafe { nix::libc::ioctl(ns.as_raw_fd(), op as _) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// (device, inode): what tells two namespaces apart.
fn ns_key(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Whether the namespace at `path` is owned by this process's user
/// namespace (the host's, for the shim).
pub fn owned_by_our_userns(path: &Path) -> Result<bool, NetnsError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| NetnsError::Io { op, path, source }
    };
    let ns = File::open(path).map_err(io("open", path))?;
    let owner = ns_ioctl(&ns, NS_GET_USERNS).and_then(|o| o.metadata()).map_err(io("find the owner of", path))?;
    let ours = Path::new("/proc/self/ns/user");
    let ours = std::fs::metadata(ours).map_err(io("stat", ours))?;
    Ok(ns_key(&owner) == ns_key(&ours))
}

/// Whether a process in the user namespace at `user` holds capabilities
/// over the network namespace at `net`: its owner is `user` or a user
/// namespace below it (`NS_GET_USERNS`, then `NS_GET_PARENT` up to the
/// top this process can see). What cannot be read counts as reached.
pub fn userns_reaches(user: &Path, net: &Path) -> bool {
    let (Ok(user), Ok(net)) = (std::fs::metadata(user), File::open(net)) else { return true };
    let Ok(mut owner) = ns_ioctl(&net, NS_GET_USERNS) else { return true };
    for _ in 0..64 {
        match owner.metadata() {
            Ok(m) if ns_key(&m) == ns_key(&user) => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
        match ns_ioctl(&owner, NS_GET_PARENT) {
            Ok(parent) => owner = parent,
            Err(_) => return false,
        }
    }
    true
}

/// The inode of a namespace file, to tell namespaces apart.
pub fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Whether no process has the network namespace at `path` as its own: an
/// engine made it for this container (podman, CNI, a pod), rather than it
/// being another container's or the host's, which processes use. Unsure
/// (an unreadable namespace file or /proc) counts as in use.
pub fn holds_no_process(path: &Path) -> bool {
    let Some(ino) = inode(path) else { return false };
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    let want = format!("net:[{ino}]");
    !procs.flatten().filter(|e| e.file_name().as_encoded_bytes().iter().all(u8::is_ascii_digit)).any(|e| {
        std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.as_os_str() == want.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_namespace_holds_a_process() {
        assert!(!holds_no_process(Path::new("/proc/self/ns/net")));
        assert!(!holds_no_process(Path::new("/nonexistent")));
    }
}
