//! The sidecar worker: the process that talks to the container.
//!
//! Spawned by the supervisor with the listening sockets and the audit log
//! at fixed descriptors (see [`crate::supervisor`]). As root it restricts
//! itself (no_new_privs, empty bounding set) while single-threaded, opens
//! the audit log, builds the [`ProxyContext`] (reads the CA key, the policy,
//! the resolver configuration), then drops to the configured uid/gid with no
//! capabilities and only then starts the async runtime and serves the proxy
//! and DNS until SIGTERM.

use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use boundary_contract::SidecarConfig;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};

use crate::audit::AuditLog;
use crate::dns::{serve_dns, DnsFilter};
use crate::privdrop::{self, PrivDropError};
use crate::supervisor::{error_chain, Readiness, AUDIT_FD, DNS_TCP_FD, DNS_UDP_FD, PROXY_FD};
use crate::{serve_proxy, BuildError, ProxyContext};

/// glibc malloc arenas: one per thread by default, each keeping freed
/// memory of its own; the worker serves one container, so two suffice.
#[cfg(target_env = "gnu")]
const MALLOC_ARENAS: nix::libc::c_int = 2;
/// Time given to the runtime's tasks after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Errors of the worker, each naming the step.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("restricting the process before it starts threads")]
    Restrict(#[source] PrivDropError),
    #[error(transparent)]
    Config(#[from] boundary_contract::ConfigReadError),
    #[error("descriptor {fd} ({what}) was not passed by the supervisor")]
    MissingFd {
        fd: RawFd,
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("opening the audit log")]
    Audit(#[source] io::Error),
    #[error("building the proxy")]
    Build(#[source] BuildError),
    #[error("dropping privileges")]
    PrivDrop(#[source] PrivDropError),
    #[error("setting the parent-death signal")]
    ParentDeathSignal(#[source] Errno),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Landlock(#[from] crate::landlock::LandlockError),
    #[error("the supervisor is gone")]
    Orphaned,
    #[error("starting the async runtime")]
    Runtime(#[source] io::Error),
    #[error("adopting the {what} socket")]
    Socket {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("installing the signal handlers")]
    Signals(#[source] io::Error),
    #[error("serving {what}")]
    Serve {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The inherited descriptors, owned.
struct Inherited {
    proxy: OwnedFd,
    dns_udp: OwnedFd,
    dns_tcp: OwnedFd,
}

/// Runs the worker until SIGTERM/SIGINT. `ready`, when given, receives
/// `ok` once privileges are dropped and the sockets are served, or the
/// error that stopped the start.
pub fn run(config_path: &Path, parent: Option<Pid>, mut ready: Option<Readiness>) -> Result<(), WorkerError> {
    let prepared = start(config_path, parent).and_then(|(ctx, fds)| {
        // One thread serves one container: a current-thread runtime costs
        // no worker threads (stacks, malloc arenas) and starts at once.
        // Its records wake the audit writer once per round of ready work,
        // as it parks (not once per request).
        let audit = ctx.audit.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("sidecar-worker")
            .enable_io()
            .enable_time()
            .on_thread_park(move || audit.wake_deferred())
            .build()
            .map_err(WorkerError::Runtime)?;
        Ok((ctx, fds, runtime))
    });
    let (ctx, fds, runtime) = prepared.inspect_err(|e| report_failure(&mut ready, e))?;
    let audit = ctx.audit.clone();
    // block_on runs the runtime on this thread.
    AuditLog::defer_wakes_here();
    let result = runtime.block_on(serve(ctx, fds, ready));
    // Connections still open are cut; the supervisor allows 2 s in all.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    audit.flush();
    result
}

fn report_failure(ready: &mut Option<Readiness>, e: &WorkerError) {
    if let Some(ready) = ready.take() {
        if let Err(write) = ready.error(&error_chain(e)) {
            log::warn!("reporting the failure to the supervisor: {write}");
        }
    }
}

/// Everything done as root: restrict, read, open, build; then drop.
/// `parent`: the supervisor's pid as it said when it started us; without
/// it, our parent when we started (a supervisor that died before then
/// would go unnoticed).
fn start(config_path: &Path, parent: Option<Pid>) -> Result<(Arc<ProxyContext>, Inherited), WorkerError> {
    // Still one thread: whatever is created from here on is born with no
    // bounding set and no_new_privs.
    privdrop::restrict_before_threads().map_err(WorkerError::Restrict)?;
    limit_malloc_arenas();
    ignore_hangup_until_served()?;
    let parent = parent.unwrap_or_else(nix::unistd::getppid);
    let cfg = SidecarConfig::read(config_path)?;
    let fds = Inherited {
        proxy: adopt(PROXY_FD, "proxy socket")?,
        dns_udp: adopt(DNS_UDP_FD, "DNS UDP socket")?,
        dns_tcp: adopt(DNS_TCP_FD, "DNS TCP socket")?,
    };
    let audit_file = File::from(adopt(AUDIT_FD, "audit log")?);
    let (audit, writer) = AuditLog::open_unstarted_limited(audit_file, &cfg.container_id, cfg.audit_max_bytes).map_err(WorkerError::Audit)?;
    let ctx = ProxyContext::from_config(&cfg, audit).map_err(WorkerError::Build)?;
    privdrop::drop_privileges(cfg.uid, cfg.gid).map_err(WorkerError::PrivDrop)?;
    // Still one thread: the Landlock domain binds it and every thread it
    // starts (crate::landlock). In it no file opens: smaps is read through
    // a descriptor kept from now on.
    if let Err(e) = crate::resident::keep_smaps_open() {
        log::warn!("opening /proc/self/smaps (for giving back start-up pages): {e}");
    }
    match crate::landlock::restrict(ctx.narrowing.dir())? {
        crate::landlock::Outcome::Enforced { abi } => log::info!("worker in its Landlock domain (ABI {abi})"),
        crate::landlock::Outcome::Unavailable(why) => log::warn!("the worker runs without a Landlock domain: {why}"),
    }
    // Only now: a credential change with other threads alive waits until
    // each of them has been scheduled to change its own.
    writer.start().map_err(WorkerError::Audit)?;
    // The supervisor is our parent; if it dies nobody restarts us and the
    // container's host side must go quiet, so follow it. (Set after the
    // credential change, which would clear it.) The supervisor itself does
    // not use this: it must outlive the shim.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(WorkerError::ParentDeathSignal)?;
    if nix::unistd::getppid() != parent {
        return Err(WorkerError::Orphaned);
    }
    // Last, on every thread (the audit writer's too): no process, program
    // or namespace from here on (crate::seccomp).
    if let crate::seccomp::Outcome::Unavailable(why) = crate::seccomp::install()? {
        log::warn!("the worker runs without its seccomp filter: {why}");
    }
    log::info!("worker for {} running as uid {} gid {}", cfg.container_id, cfg.uid, cfg.gid);
    Ok((Arc::new(ctx), fds))
}

/// Caps glibc's malloc arenas before any thread exists (each thread would
/// otherwise get an arena of its own that keeps the memory it freed).
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; it is called while
    // the process has one thread, before any other thread could allocate.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// The sockets and signal streams of a running worker.
struct Serving {
    proxy: tokio::net::TcpListener,
    dns_udp: tokio::net::UdpSocket,
    dns_tcp: tokio::net::TcpListener,
    term: SignalStream,
    int: SignalStream,
    hup: SignalStream,
}

/// Must run inside the runtime.
fn adopt_in_runtime(fds: Inherited) -> Result<Serving, WorkerError> {
    let sock = |what, source| WorkerError::Socket { what, source };
    let proxy = tcp_listener(fds.proxy).map_err(|e| sock("proxy", e))?;
    let dns_tcp = tcp_listener(fds.dns_tcp).map_err(|e| sock("DNS TCP", e))?;
    let dns_udp = {
        let std_sock = std::net::UdpSocket::from(fds.dns_udp);
        std_sock.set_nonblocking(true).map_err(|e| sock("DNS UDP", e))?;
        tokio::net::UdpSocket::from_std(std_sock).map_err(|e| sock("DNS UDP", e))?
    };
    let term = signal(SignalKind::terminate()).map_err(WorkerError::Signals)?;
    let int = signal(SignalKind::interrupt()).map_err(WorkerError::Signals)?;
    let hup = signal(SignalKind::hangup()).map_err(WorkerError::Signals)?;
    Ok(Serving { proxy, dns_udp, dns_tcp, term, int, hup })
}

async fn serve(ctx: Arc<ProxyContext>, fds: Inherited, mut ready: Option<Readiness>) -> Result<(), WorkerError> {
    let Serving { proxy, dns_udp, dns_tcp, mut term, mut int, hup } =
        adopt_in_runtime(fds).inspect_err(|e| report_failure(&mut ready, e))?;
    tokio::spawn(reload_on_hangup(ctx.clone(), hup));
    tokio::spawn(give_back_pages_when_idle(ctx.audit.clone()));
    let filter = Arc::new(DnsFilter::from_proxy(&ctx));
    if let Some(ready) = ready {
        if let Err(e) = ready.ok() {
            log::warn!("reporting readiness to the supervisor: {e}");
        }
    }
    // The upstream TLS roots are parsed on a thread of their own once the
    // container first shows it may go out (its first proxy connection, or
    // an allowed name resolved), not here: see Upstream::warm_in_background.
    tokio::select! {
        r = serve_proxy(proxy, ctx) => r.map_err(|source| WorkerError::Serve { what: "the proxy", source }),
        r = serve_dns(dns_udp, dns_tcp, filter) => r.map_err(|source| WorkerError::Serve { what: "DNS", source }),
        _ = term.recv() => { log::info!("SIGTERM: stopping"); Ok(()) }
        _ = int.recv() => { log::info!("SIGINT: stopping"); Ok(()) }
    }
}

/// SIGHUP (sent by the shim when a joiner's narrowing changes) makes the
/// worker read its narrowing sets again; connections stay open. The first
/// reload runs at once: a SIGHUP that came while the signal was ignored
/// (before this handler existed) is not lost.
async fn reload_on_hangup(ctx: Arc<ProxyContext>, mut hup: SignalStream) {
    loop {
        // A few small files: read in place rather than on a blocking thread.
        match ctx.narrowing.reload() {
            Ok(n) => log::info!("narrowing reloaded: {n} container sets"),
            Err(e) => log::error!("narrowing reload failed, previous sets stay in force: {}", error_chain(&e)),
        }
        if hup.recv().await.is_none() {
            return;
        }
    }
}

/// The worker gives back the pages start-up mapped once the container's
/// runtime is likely done starting, and then, whenever it served requests
/// and went quiet, the pages serving mapped (crate::resident): an agent
/// that fetched its packages and now thinks costs an idle sidecar's memory
/// again.
async fn give_back_pages_when_idle(audit: AuditLog) {
    tokio::time::sleep(crate::resident::START_DELAY).await;
    crate::resident::release_startup_pages_of("worker");
    let mut watch = crate::resident::IdleWatch::new(audit.recorded());
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + crate::resident::IDLE_CHECK, crate::resident::IDLE_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if watch.check(audit.recorded()) {
            crate::resident::release_startup_pages_of("worker (idle)");
        }
    }
}

/// SIGHUP would kill the worker until [`reload_on_hangup`] handles it. The
/// supervisor starts the worker with SIGHUP blocked; once it is ignored
/// (which discards one pending) it is unblocked, so the tokio handler
/// installed later receives it.
fn ignore_hangup_until_served() -> Result<(), WorkerError> {
    // SAFETY: SIG_IGN installs no handler code; the process is still
    // single-threaded, and the tokio handler that replaces it later is
    // installed through tokio's own registry.
    unsafe { nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn) }
        .map(drop)
        .map_err(|e| WorkerError::Signals(e.into()))?;
    let mut hup = nix::sys::signal::SigSet::empty();
    hup.add(Signal::SIGHUP);
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(&hup), None).map_err(|e| WorkerError::Signals(e.into()))
}

fn tcp_listener(fd: OwnedFd) -> io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Takes ownership of descriptor `fd`, inherited from the supervisor, and
/// marks it close-on-exec.
fn adopt(fd: RawFd, what: &'static str) -> Result<OwnedFd, WorkerError> {
    // SAFETY: borrowed for one fcntl call only; on a closed number it fails
    // with EBADF and changes nothing.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|source| WorkerError::MissingFd { fd, what, source })?;
    // SAFETY: the descriptor is open (checked above) and was placed at this
    // number by the supervisor for this purpose; nothing else in this
    // process refers to it, and it is adopted exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

