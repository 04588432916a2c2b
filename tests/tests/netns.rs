//! Network namespace creation, as root: the namespace is bound to its file
//! and the caller's thread (and what it starts next) stays where it was.

use std::path::Path;
use std::process::Command;

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (it creates network namespaces)");
}

fn own_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

#[test]
fn a_namespace_made_on_the_calling_thread_leaves_the_thread_in_its_own() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("netns");
    boundary_runc::netns::prepare_dir(&dir).unwrap();
    let before = own_netns();
    let made = dir.join("jail");
    boundary_runc::netns::create(&made).unwrap();
    assert_eq!(own_netns(), before, "the calling thread is back in its namespace");
    // A process started now runs where the thread is, not in the new one.
    let here = Command::new("readlink").arg("/proc/self/ns/net").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&here.stdout).trim(), before.to_string_lossy());
    // The file is a namespace of its own, holding only lo.
    let inside = Command::new("nsenter").arg(format!("--net={}", made.display())).args(["ip", "-o", "link"]).output().unwrap();
    assert!(inside.status.success(), "{}", String::from_utf8_lossy(&inside.stderr));
    let links: Vec<_> = String::from_utf8_lossy(&inside.stdout).lines().map(str::to_owned).collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].contains(": lo:"), "{links:?}");
    assert_ne!(boundary_runc::netns::inode(&made), boundary_runc::netns::inode(Path::new("/proc/thread-self/ns/net")));
    boundary_runc::netns::remove(&made).unwrap();
    assert!(!made.exists());
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
}

#[test]
fn a_failed_making_leaves_no_file_and_the_thread_at_home() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let before = own_netns();
    // The directory does not exist: creating the mount point fails.
    let made = t.path().join("missing-dir/jail");
    let err = boundary_runc::netns::create(&made).unwrap_err().to_string();
    assert!(err.contains("missing-dir/jail"), "{err}");
    assert!(!made.exists());
    assert_eq!(own_netns(), before);
}
