//! The worker's seccomp filter: what a worker taken over through a bug in
//! the code that reads container bytes could still ask of the kernel.
//!
//! The worker serves with sockets, memory, timers and its threads; it
//! never starts a process, makes a namespace, mounts, traces or loads
//! anything into the kernel. Once it has dropped its privileges
//! ([`crate::privdrop`], which also sets `no_new_privs`, without which an
//! unprivileged process may not install a filter) it installs this filter
//! on every thread at once (`SECCOMP_FILTER_FLAG_TSYNC`), and threads made
//! later inherit it. The filter refuses, with `EPERM`:
//! - a new process or program: `fork`, `vfork`, `execve`, `execveat`, and
//!   `clone` without `CLONE_THREAD`, so nothing it starts could outlive it
//!   under its uid (its parent-death signal covers only itself);
//! - namespaces: `unshare`, `setns`, and `clone` with any `CLONE_NEW*`
//!   flag, so no user namespace hands it capabilities over new objects,
//!   the kernel surface most local exploits start from;
//! - another process's memory: `ptrace`, `process_vm_readv`/`writev`;
//! - mounts (old and new API), `chroot`, `pivot_root`, `bpf`,
//!   `perf_event_open`, `userfaultfd`, `io_uring_*`, keyrings, module and
//!   `kexec` loading, `open_by_handle_at`, `reboot`, swap, clock setting,
//!   `acct`, `quotactl`.
//!
//! - sockets of any family but IPv4 and IPv6 (`socket`'s first
//!   argument): no Unix socket to reach the host's services (D-Bus,
//!   journald, an engine's API) and no netlink to read or change the
//!   host side's links, routes and sockets (`socketpair`, which tokio's
//!   signal handling uses, is another call, and stays).
//!
//! `clone3` answers `ENOSYS`: its flags sit in memory a filter cannot read,
//! and glibc's `pthread_create` then falls back to `clone`, whose flags it
//! can. System calls of another ABI (x32's numbers on x86-64) are refused,
//! and a call made with another architecture's convention ends the
//! process. Everything else is allowed: this is a deny list for what the
//! worker has no use for, not a list of what it uses, so a library update
//! cannot break serving.
//!
//! A kernel without seccomp filters (`ENOSYS`, also what valgrind answers)
//! leaves the worker without this layer, with a warning in the sidecar's
//! log, as a kernel without Landlock does; any other refusal stops it.

use nix::libc;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("installing the worker's seccomp filter (seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC))")]
    Install(#[source] std::io::Error),
    #[error("thread {tid} could not take the worker's seccomp filter (SECCOMP_FILTER_FLAG_TSYNC)")]
    Sync { tid: libc::c_long },
    #[error("no seccomp filter is built for this CPU architecture")]
    Unsupported,
}

/// Namespace flags of `clone`. (`CLONE_NEWTIME`, 0x80, is not one: in
/// `clone`'s flags the low byte is the exit signal; a time namespace
/// comes only from `unshare`, `setns` or `clone3`, all refused.)
const CLONE_NEW_ANY: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

#[cfg(target_arch = "x86_64")]
mod arch {
    use nix::libc;
    /// AUDIT_ARCH_X86_64.
    pub const AUDIT_ARCH: u32 = 0xC000_003E;
    /// x32 system calls are these numbers with this bit set.
    pub const X32_BIT: Option<u32> = Some(0x4000_0000);
    /// Numbers 512-547 are x32's compat entry points (`execve` at 520,
    /// `ptrace` at 521, ...), which kernels before 5.4 with x32 support
    /// also took from 64-bit callers without the x32 bit: refused as a
    /// range, which the kernel keeps reserved.
    pub const X32_COMPAT: Option<(u32, u32)> = Some((512, 548));
    pub const ONLY_HERE: &[libc::c_long] = &[libc::SYS_fork, libc::SYS_vfork, libc::SYS_umount2, libc::SYS_chroot];
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use nix::libc;
    /// AUDIT_ARCH_AARCH64.
    pub const AUDIT_ARCH: u32 = 0xC000_00B7;
    pub const X32_BIT: Option<u32> = None;
    pub const X32_COMPAT: Option<(u32, u32)> = None;
    pub const ONLY_HERE: &[libc::c_long] = &[libc::SYS_umount2, libc::SYS_chroot];
}

/// Allowed at once, before the deny list: the calls a proxied request
/// makes (its socket reads and writes, the event loop, locks, memory), so
/// they run through a few comparisons instead of the whole list.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const HOT: &[libc::c_long] = &[
    libc::SYS_recvfrom,
    libc::SYS_writev,
    libc::SYS_epoll_pwait,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_wait,
    libc::SYS_futex,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_sendto,
    libc::SYS_epoll_ctl,
];

/// Refused with `EPERM` (besides `clone` by its flags).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn denied() -> Vec<libc::c_long> {
    let mut v = vec![
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_pivot_root,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_open_by_handle_at,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_acct,
        libc::SYS_quotactl,
    ];
    v.extend_from_slice(arch::ONLY_HERE);
    v
}

// Classic BPF, as seccomp runs it.
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of the first argument (little-endian on both arches).
const ARG0_LOW: u32 = 16;

/// Where a jump goes: the next instruction, or a labelled one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum To {
    Next,
    /// Over the next instruction.
    SkipOne,
    Allow,
    Eperm,
    Enosys,
    Kill,
    CloneFlags,
    SocketFamily,
}

struct Insn {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, k, jt: To::Next, jf: To::Next }
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Insn {
    Insn { code, k, jt, jf }
}

/// The filter program for this architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn program() -> Vec<libc::sock_filter> {
    program_refusing_with(libc::EPERM)
}

/// The program, with `errno` for what it refuses (`ENOSYS` for `clone3`
/// stays). Tests use an errno no kernel path gives these calls.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn program_refusing_with(errno: i32) -> Vec<libc::sock_filter> {
    let mut p = vec![stmt(LD_W_ABS, ARCH), jump(JEQ_K, arch::AUDIT_ARCH, To::Next, To::Kill), stmt(LD_W_ABS, NR)];
    if let Some(bit) = arch::X32_BIT {
        p.push(jump(JGE_K, bit, To::Eperm, To::Next));
    }
    for nr in HOT {
        p.push(jump(JEQ_K, *nr as u32, To::Allow, To::Next));
    }
    if let Some((first, end)) = arch::X32_COMPAT {
        p.push(jump(JGE_K, end, To::SkipOne, To::Next));
        p.push(jump(JGE_K, first, To::Eperm, To::Next));
    }
    for nr in denied() {
        p.push(jump(JEQ_K, nr as u32, To::Eperm, To::Next));
    }
    p.push(jump(JEQ_K, libc::SYS_clone3 as u32, To::Enosys, To::Next));
    p.push(jump(JEQ_K, libc::SYS_socket as u32, To::SocketFamily, To::Next));
    p.push(jump(JEQ_K, libc::SYS_clone as u32, To::CloneFlags, To::Allow));
    let labels = [
        // CloneFlags: a thread of this process, in its namespaces.
        (To::CloneFlags, vec![
            stmt(LD_W_ABS, ARG0_LOW),
            jump(JSET_K, libc::CLONE_THREAD as u32, To::Next, To::Eperm),
            jump(JSET_K, CLONE_NEW_ANY, To::Eperm, To::Allow),
        ]),
        // SocketFamily: IPv4 or IPv6.
        (To::SocketFamily, vec![
            stmt(LD_W_ABS, ARG0_LOW),
            jump(JEQ_K, libc::AF_INET as u32, To::Allow, To::Next),
            jump(JEQ_K, libc::AF_INET6 as u32, To::Allow, To::Eperm),
        ]),
        (To::Allow, vec![stmt(RET_K, libc::SECCOMP_RET_ALLOW)]),
        (To::Eperm, vec![stmt(RET_K, libc::SECCOMP_RET_ERRNO | errno as u32)]),
        (To::Enosys, vec![stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32)]),
        (To::Kill, vec![stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS)]),
    ];
    let mut at = Vec::new();
    for (label, block) in labels {
        at.push((label, p.len()));
        p.extend(block);
    }
    let target = |i: usize, to: To| -> u8 {
        match to {
            To::Next => return 0,
            To::SkipOne => return 1,
            _ => {}
        }
        let (_, pos) = at.iter().find(|(l, _)| *l == to).expect("every label is placed");
        u8::try_from(pos - i - 1).expect("the program is short enough for classic BPF's 8-bit jumps")
    };
    p.iter()
        .enumerate()
        .map(|(i, insn)| libc::sock_filter { code: insn.code, jt: target(i, insn.jt), jf: target(i, insn.jf), k: insn.k })
        .collect()
}

/// What [`install`] achieved short of an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Installed,
    /// The kernel has no seccomp filters (`seccomp(2)` answers `ENOSYS`:
    /// built without `CONFIG_SECCOMP_FILTER`, or run under an emulator such
    /// as valgrind). As with Landlock, the worker then goes on without this
    /// layer and says so; any other refusal stops it.
    Unavailable(&'static str),
}

/// Installs the filter on every thread of the process. Needs
/// `no_new_privs` (or `CAP_SYS_ADMIN`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn install() -> Result<Outcome, SeccompError> {
    install_program(&program())
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn install_program(filter: &[libc::sock_filter]) -> Result<Outcome, SeccompError> {
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(Outcome::Installed),
        rc if rc > 0 => Err(SeccompError::Sync { tid: rc }),
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOSYS) => Ok(Outcome::Unavailable(
                "the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER), or the worker runs under an emulator that has none",
            )),
            e => Err(SeccompError::Install(e)),
        },
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn install() -> Result<Outcome, SeccompError> {
    Err(SeccompError::Unsupported)
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;

    /// Marks the child process the test below starts.
    const CHILD: &str = "BOUNDARY_SECCOMP_TEST_CHILD";

    fn errno_of(rc: libc::c_long) -> Option<i32> {
        (rc == -1).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// In a process of its own (this test binary again, running only the
    /// child half below): the filter goes on, then every refused call is
    /// tried for real and threads still start.
    #[test]
    fn the_filter_refuses_processes_namespaces_and_exec_but_not_threads() {
        let text = crate::run_child_half("seccomp::tests::child_half", CHILD, "1");
        assert!(text.contains("seccomp child: all refused, threads work"), "the child half did not run:\n{text}");
    }

    /// What the filter's refusals carry in the child: no kernel path gives
    /// these calls this errno, so a refusal by the kernel itself (no
    /// privilege, `unprivileged_bpf_disabled`, Yama, an outer filter)
    /// cannot pass for the filter's.
    const SENTINEL: i32 = libc::ENOTRECOVERABLE;

    #[test]
    #[ignore = "the child half of the_filter_refuses_processes_namespaces_and_exec_but_not_threads"]
    fn child_half() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        nix::sys::prctl::set_no_new_privs().unwrap();
        assert_eq!(install_program(&program_refusing_with(SENTINEL)).unwrap(), Outcome::Installed);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.lines().any(|l| l == "Seccomp:\t2"), "{status}");
        // A thread: clone(CLONE_THREAD | ...), after clone3's ENOSYS.
        assert_eq!(std::thread::spawn(|| 7).join().unwrap(), 7);
        let eperm = Some(SENTINEL);
        // SAFETY (all below): system calls the filter refuses before they
        // do anything; were one let through, fork-like calls return 0 in a
        // child, which exits at once.
        unsafe {
            let forked = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize);
            if forked == 0 {
                libc::_exit(99);
            }
            assert_eq!(errno_of(forked), eperm, "clone without CLONE_THREAD (fork)");
            #[cfg(target_arch = "x86_64")]
            {
                let forked = libc::syscall(libc::SYS_fork);
                if forked == 0 {
                    libc::_exit(99);
                }
                assert_eq!(errno_of(forked), eperm, "fork");
            }
            let flags = (libc::CLONE_THREAD | libc::CLONE_SIGHAND | libc::CLONE_VM | libc::CLONE_NEWUSER) as libc::c_ulong;
            assert_eq!(errno_of(libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize)), eperm, "a thread in a new user namespace");
            assert_eq!(errno_of(libc::syscall(libc::SYS_clone3, 0usize, 0usize)), Some(libc::ENOSYS), "clone3");
            assert_eq!(errno_of(libc::unshare(libc::CLONE_NEWUSER) as libc::c_long), eperm, "unshare(CLONE_NEWUSER)");
            assert_eq!(errno_of(libc::unshare(libc::CLONE_NEWNET) as libc::c_long), eperm, "unshare(CLONE_NEWNET)");
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            assert_eq!(errno_of(libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) as libc::c_long), eperm, "execve");
            assert_eq!(errno_of(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0)), eperm, "ptrace");
            assert_eq!(errno_of(libc::syscall(libc::SYS_bpf, 0usize, 0usize, 0usize)), eperm, "bpf");
            assert_eq!(errno_of(libc::syscall(libc::SYS_io_uring_setup, 1usize, 0usize)), eperm, "io_uring_setup");
            #[cfg(target_arch = "x86_64")]
            {
                assert_eq!(errno_of(libc::syscall(0x4000_0000 | libc::SYS_getpid)), eperm, "an x32 system call");
                assert_eq!(errno_of(libc::syscall(520, 0usize, 0usize, 0usize)), eperm, "x32's compat execve number");
                assert_eq!(errno_of(libc::syscall(547, 0usize)), eperm, "the last compat number");
                // Just past the compat range: the kernel's own answer.
                assert_eq!(errno_of(libc::syscall(548, 0usize)), Some(libc::ENOSYS), "548, past the compat range");
            }
        }
        for family in [libc::AF_UNIX, libc::AF_NETLINK, libc::AF_PACKET] {
            // SAFETY: socket(2) refused before it makes anything.
            let rc = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            assert_eq!(errno_of(rc as libc::c_long), eperm, "a socket of family {family}");
        }
        // What serving needs still works: IP sockets, socketpair.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(std::net::TcpStream::connect(tcp.local_addr().unwrap()).is_ok());
        assert!(std::net::UdpSocket::bind("[::1]:0").is_ok() || std::net::UdpSocket::bind("127.0.0.1:0").is_ok());
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let mut buf = [0u8; 1];
        std::io::Read::read_exact(&mut &b, &mut buf).unwrap();
        assert_eq!(std::fs::read_to_string("/proc/self/status").map(|s| s.is_empty()).ok(), Some(false));
        #[allow(clippy::print_stdout)] // read by the parent test
        {
            println!("seccomp child: all refused, threads work");
        }
    }

    #[test]
    fn no_hot_call_is_one_the_filter_refuses() {
        let refused = denied();
        for nr in HOT {
            assert!(!refused.contains(nr) && ![libc::SYS_clone, libc::SYS_clone3, libc::SYS_socket].contains(nr), "{nr}");
        }
    }

    #[test]
    fn every_jump_lands_inside_the_program() {
        let p = program();
        assert!(p.len() < 255, "{}", p.len());
        for (i, insn) in p.iter().enumerate().filter(|(_, insn)| u32::from(insn.code) & 0x07 == libc::BPF_JMP) {
            assert!(i + 1 + (insn.jt as usize) < p.len() && i + 1 + (insn.jf as usize) < p.len(), "instruction {i}");
        }
        assert_eq!(p.last().map(|i| i.k), Some(libc::SECCOMP_RET_KILL_PROCESS));
        // The worker's program refuses with EPERM (the child test above
        // uses another errno to tell the filter from the kernel).
        let rets: Vec<u32> = p.iter().filter(|i| u32::from(i.code) == libc::BPF_RET | libc::BPF_K).map(|i| i.k).collect();
        assert!(rets.contains(&(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32)), "{rets:x?}");
        assert!(!rets.contains(&(libc::SECCOMP_RET_ERRNO | SENTINEL as u32)), "{rets:x?}");
    }
}
