//! (As root.) Which user namespace holds capabilities over a network
//! namespace: the check that keeps CAP_NET_ADMIN from a container whose
//! own user namespace (named by path in its spec) also owns the jail's
//! host side. Fails loudly when not root.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use boundary_runc::netns::userns_reaches;

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (it makes user and network namespaces)");
}

/// A process in a new user namespace (every id mapped to itself) and,
/// with `net`, a network namespace it owns; killed on drop.
struct Holder(Child);

impl Holder {
    fn start(net: bool) -> Holder {
        let mut cmd = Command::new("unshare");
        cmd.arg("--user");
        if net {
            cmd.arg("--net");
        }
        let child = cmd.args(["sleep", "60"]).stdin(Stdio::null()).spawn().expect("run unshare");
        let pid = child.id();
        for _ in 0..200 {
            let own = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
            if own.is_some() && own != std::fs::read_link("/proc/self/ns/user").ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for map in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{map}"), "0 0 4294967295\n").expect("write map");
        }
        Holder(child)
    }

    fn ns(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.0.id())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_user_namespace_reaches_the_network_namespaces_it_or_its_children_own() {
    require_root();
    let a = Holder::start(true);
    let b = Holder::start(false);
    // A's user namespace owns A's network namespace; B's does not.
    assert!(userns_reaches(Path::new(&a.ns("user")), Path::new(&a.ns("net"))));
    assert!(!userns_reaches(Path::new(&b.ns("user")), Path::new(&a.ns("net"))));
    // The host's user namespace is above every other: it reaches A's, and
    // A's does not reach the host's network namespace.
    assert!(userns_reaches(Path::new("/proc/self/ns/user"), Path::new(&a.ns("net"))));
    assert!(!userns_reaches(Path::new(&a.ns("user")), Path::new("/proc/self/ns/net")));
    // What cannot be read counts as reached (the safe reading).
    assert!(userns_reaches(Path::new("/nonexistent"), Path::new(&a.ns("net"))));
}
