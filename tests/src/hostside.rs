//! The host side of a jail, where its veth's host end and nft table live:
//! the namespace `JailState` names (a private or Docker's dedicated one),
//! else the namespace the engine gave, else the host's own.

use std::path::{Path, PathBuf};
use std::process::Command;

use boundary_contract::{HostSide, JailState};

use crate::require::require_tool;

/// The host side's namespace file (`None`: the host's own namespace).
pub fn netns(jail: &JailState) -> Option<PathBuf> {
    jail.dedicated_host_netns.clone().or_else(|| match &jail.host_side {
        HostSide::Path { path } => Some(path.clone()),
        HostSide::Fresh | HostSide::Absent => None,
    })
}

/// Runs `f` on a thread inside `netns` (`None`: ours) and returns its result
/// (any namespace: a host side, a jail, an origin).
pub fn run_in<T: Send + 'static>(netns: Option<&Path>, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = netns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        if let Some(ns) = ns {
            let file = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("open {}: {e}", ns.display()));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {}: {e}", ns.display()));
        }
        f()
    })
    .join()
    .expect("thread in a network namespace panicked")
}

/// `program` run inside the jail's host side.
pub fn command(jail: &JailState, program: &str) -> Command {
    match netns(jail) {
        Some(ns) => {
            let mut c = Command::new(require_tool("nsenter"));
            c.arg(format!("--net={}", ns.display())).arg(require_tool(program));
            c
        }
        None => Command::new(require_tool(program)),
    }
}

/// Runs `ip ARGS` on the host side; panics with ip's message on failure.
pub fn ip(jail: &JailState, args: &[&str]) -> String {
    let out = command(jail, "ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?} on the host side: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// MAC address of the veth's host end.
pub fn host_mac(jail: &JailState) -> String {
    let out = ip(jail, &["-o", "link", "show", "dev", &jail.host_if]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "link/ether").and_then(|_| words.next()).unwrap_or_else(|| panic!("no MAC in {out}")).to_string()
}

/// Packets received by the veth's host end (from `/proc/net/dev`, which
/// shows the reading thread's namespace; `/sys/class/net` would not).
pub fn host_rx_packets(jail: &JailState) -> u64 {
    let (ns, name) = (netns(jail), jail.host_if.clone());
    run_in(ns.as_deref(), move || {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").expect("read /proc/thread-self/net/dev");
        dev.lines()
            .find_map(|l| {
                let (iface, stats) = l.trim_start().split_once(':')?;
                (iface == name).then(|| stats.split_whitespace().nth(1)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("{name} not in /proc/net/dev of its host side:\n{dev}"))
    })
}

/// Deletes the jail's nft table (control tests: the probes must then see
/// what the table stopped).
pub fn delete_table(jail: &JailState) {
    let st = command(jail, "nft").args(["delete", "table", "inet", &jail.nft_table]).status().expect("run nft");
    assert!(st.success(), "cannot delete {} on the host side", jail.nft_table);
}

/// Brings the host side's loopback up (control tests count there and send
/// their barrier packets over it). A private host side keeps it down.
pub fn loopback_up(jail: &JailState) {
    ip(jail, &["link", "set", "lo", "up"]);
}
