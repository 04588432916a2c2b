//! What the supervisor acquires as root and keeps for its whole life: the
//! network namespace, the listening sockets, the audit log; and the pid file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use boundary_contract::{SidecarConfig, SidecarPids};
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};

use super::{SupervisorError, AUDIT_FD, DNS_TCP_FD, DNS_UDP_FD, PROXY_FD};

/// Listen backlog: connections wait here while a worker restarts.
const BACKLOG: i32 = 1024;
/// Source descriptors are kept at or above this number, so mapping them onto
/// 3..=7 in the child can never overwrite one that is still to be mapped.
pub(super) const HIGH_FD: RawFd = 10;

/// The descriptors handed to every worker, kept at or above [`HIGH_FD`].
#[derive(Debug)]
pub(super) struct WorkerFds {
    pub(super) proxy: OwnedFd,
    pub(super) dns_udp: OwnedFd,
    pub(super) dns_tcp: OwnedFd,
    pub(super) audit: OwnedFd,
}

impl WorkerFds {
    /// Binds the proxy socket (TCP) and the DNS sockets (UDP and TCP) on
    /// `listen_addr` and opens the audit log.
    pub(super) fn acquire(cfg: &SidecarConfig) -> Result<WorkerFds, SupervisorError> {
        Ok(WorkerFds {
            proxy: bind_tcp("proxy", cfg.listen_addr, cfg.proxy_port)?,
            dns_udp: bind_udp(cfg.listen_addr, cfg.dns_port)?,
            dns_tcp: bind_tcp("DNS TCP", cfg.listen_addr, cfg.dns_port)?,
            audit: open_audit(&cfg.audit_log)?,
        })
    }
}

impl WorkerFds {
    /// Takes over the descriptors the keeper placed at [`PROXY_FD`],
    /// [`DNS_UDP_FD`], [`DNS_TCP_FD`] and [`AUDIT_FD`] (supervisor mode),
    /// moved above [`HIGH_FD`].
    pub(super) fn inherited() -> Result<WorkerFds, SupervisorError> {
        Ok(WorkerFds {
            proxy: adopt_high(PROXY_FD)?,
            dns_udp: adopt_high(DNS_UDP_FD)?,
            dns_tcp: adopt_high(DNS_TCP_FD)?,
            audit: adopt_high(AUDIT_FD)?,
        })
    }
}

/// Takes ownership of inherited descriptor `fd` and moves it above
/// [`HIGH_FD`] (close-on-exec).
pub(super) fn adopt_high(fd: RawFd) -> Result<OwnedFd, SupervisorError> {
    // SAFETY: borrowed for one fcntl call only; on a closed number it fails
    // with EBADF and changes nothing.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD).map_err(|source| SupervisorError::MissingFd { fd, source })?;
    // SAFETY: the descriptor is open (checked above) and was placed at this
    // number by the keeper for this purpose; nothing else in this process
    // refers to it, and it is adopted exactly once.
    move_high(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The calling thread's own network namespace.
pub(super) const OWN_NETNS: &str = "/proc/thread-self/ns/net";

pub(super) fn open_netns(path: &Path) -> Result<File, SupervisorError> {
    File::open(path).map_err(|source| SupervisorError::OpenNetns { path: path.to_owned(), source })
}

pub(super) fn enter_netns(path: &Path) -> Result<(), SupervisorError> {
    let file = open_netns(path)?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| SupervisorError::EnterNetns { path: path.to_owned(), source })
}

/// Goes back to a namespace opened with [`open_netns`] before leaving it.
pub(super) fn return_to_netns(home: &File) -> Result<(), SupervisorError> {
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| SupervisorError::EnterNetns { path: OWN_NETNS.into(), source })
}

fn bind_tcp(what: &'static str, ip: Ipv4Addr, port: u16) -> Result<OwnedFd, SupervisorError> {
    let addr = SocketAddrV4::new(ip, port);
    let err = |source| SupervisorError::Bind { what, addr, source };
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(err)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(err)?;
    // The shim starts the sidecar while it still builds the veth: the
    // address may not exist yet when we bind (it does before any packet
    // can come, the shim waits for both).
    socket::setsockopt(&fd, sockopt::IpFreebind, &true).map_err(err)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(err)?;
    socket::listen(&fd, Backlog::new(BACKLOG).map_err(err)?).map_err(err)?;
    move_high(fd)
}

fn bind_udp(ip: Ipv4Addr, port: u16) -> Result<OwnedFd, SupervisorError> {
    let addr = SocketAddrV4::new(ip, port);
    let err = |source| SupervisorError::Bind { what: "DNS UDP", addr, source };
    let fd = socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(err)?;
    socket::setsockopt(&fd, sockopt::IpFreebind, &true).map_err(err)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(err)?;
    move_high(fd)
}

/// Opens the audit log for appending (and reading, so a new worker can find
/// the last sequence number), creating it 0600 and its directories 0700.
fn open_audit(path: &Path) -> Result<OwnedFd, SupervisorError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SupervisorError::CreateDir { path: path.to_owned(), source })?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| SupervisorError::OpenAudit { path: path.to_owned(), source })?;
    move_high(file.into())
}

/// Duplicates `fd` to a number >= [`HIGH_FD`] (close-on-exec) and closes
/// the original.
pub(super) fn move_high(fd: OwnedFd) -> Result<OwnedFd, SupervisorError> {
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD)).map_err(SupervisorError::MoveFd)?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Creates the pid file's directory (0700) if missing; done once, by the
/// keeper at its start.
pub(super) fn create_pid_dir(path: &Path) -> Result<(), SupervisorError> {
    let err = |source| SupervisorError::WritePidFile { path: path.to_owned(), source };
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err),
        None => Ok(()),
    }
}

/// Writes the pid file atomically (temporary file in the same directory,
/// then rename). The directory is not created again (see
/// [`create_pid_dir`]): it is the jail's state directory, and when it is
/// gone the jail is being torn down.
pub fn write_pid_file(path: &Path, pids: &SidecarPids) -> Result<(), SupervisorError> {
    let err = |source| SupervisorError::WritePidFile { path: path.to_owned(), source };
    let json = serde_json::to_vec(pids).map_err(|e| err(io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp).map_err(err)?;
    // No fsync: the file lives under the runtime state root (/run), which
    // does not outlive a reboot; the rename alone makes it appear whole.
    // (An fsync here cost up to tens of ms on `create`'s path.)
    file.write_all(&json).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

