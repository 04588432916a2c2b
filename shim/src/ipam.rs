//! Jail link addresses from a configurable pool, collision-free across
//! concurrent creates.
//!
//! Each container takes one /30 block: `.1` is the host end of the veth (and
//! the sidecar's address), `.2` the jail end. A lease is a file
//! `<state_root>/ipam/<index>` holding the container id. It appears with its
//! content in one step: the id is written to a claim file
//! `ipam/.claim.<id>` first, which is then hard-linked to the index (a link
//! fails if the name exists, like `O_EXCL`), so two concurrent creates can
//! never take the same block, and a create killed at any point never
//! leaves a lease without its holder (teardown removes the claim file).
//! Taking a block and freeing one hold an exclusive `flock` on
//! `ipam/.lock`: a release reads the holder and then removes the lease, and
//! several teardowns of one container may run at once (its poststop hook,
//! `delete`, the orphan watch); without the lock, one could remove the
//! lease a create took in between, once another had freed it.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::Pool;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("address pool {pool} is full: all {blocks} jail links are in use (run `boundary-runc doctor --clean` to free leases of crashed containers, or widen network.pool)")]
    Full { pool: String, blocks: u32 },
    #[error("cannot {op} lease directory {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: std::io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub index: u32,
    pub host_addr: Ipv4Addr,
    pub jail_addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Lease {
    pub fn for_index(pool: Pool, index: u32) -> Lease {
        let block = u32::from(pool.base) + index * 4;
        Lease { index, host_addr: Ipv4Addr::from(block + 1), jail_addr: Ipv4Addr::from(block + 2), prefix_len: 30 }
    }
}

fn dir(state_root: &Path) -> PathBuf {
    state_root.join("ipam")
}

/// Takes the lowest free block for `id`.
pub fn allocate(state_root: &Path, pool: Pool, id: &str) -> Result<Lease, IpamError> {
    let d = dir(state_root);
    std::fs::create_dir_all(&d).map_err(|source| IpamError::Io { op: "create", path: d.clone(), source })?;
    let claim = claim_path(state_root, id);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&claim)
        .and_then(|mut f| f.write_all(id.as_bytes()));
    written.map_err(|source| IpamError::Io { op: "write", path: claim.clone(), source })?;
    let result = locked(state_root).and_then(|_lock| claim_block(&d, &claim, pool));
    let _ = std::fs::remove_file(&claim);
    result
}

fn claim_block(d: &Path, claim: &Path, pool: Pool) -> Result<Lease, IpamError> {
    for index in 0..pool.blocks() {
        let path = d.join(index.to_string());
        match std::fs::hard_link(claim, &path) {
            Ok(()) => return Ok(Lease::for_index(pool, index)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(IpamError::Io { op: "write", path, source }),
        }
    }
    Err(IpamError::Full { pool: format!("{}/{}", pool.base, pool.prefix_len), blocks: pool.blocks() })
}

fn claim_path(state_root: &Path, id: &str) -> PathBuf {
    dir(state_root).join(format!(".claim.{id}"))
}

/// Removes the claim file a create killed inside [`allocate`] left.
pub fn remove_claim(state_root: &Path, id: &str) -> Result<(), IpamError> {
    let path = claim_path(state_root, id);
    std::fs::remove_file(&path).or_else(ignore_missing).map_err(|source| IpamError::Io { op: "remove", path, source })
}

/// Frees `index` if it is still held by `id` (never another container's).
pub fn release(state_root: &Path, index: u32, id: &str) -> Result<(), IpamError> {
    let path = dir(state_root).join(index.to_string());
    let _lock = match locked(state_root) {
        Ok(l) => l,
        // No lease directory: no lease to free.
        Err(IpamError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match std::fs::read_to_string(&path) {
        Ok(holder) if holder == id => {
            std::fs::remove_file(&path).or_else(ignore_missing).map_err(|source| IpamError::Io { op: "remove", path, source })
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(IpamError::Io { op: "read", path, source }),
    }
}

/// The pool's lock (see the module's documentation), held while the
/// returned value lives.
fn locked(state_root: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, IpamError> {
    let path = dir(state_root).join(".lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| IpamError::Io { op: "open", path: path.clone(), source })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| IpamError::Io { op: "lock", path, source: e.into() })
}

/// All leases as (index, holder id).
pub fn leases(state_root: &Path) -> Vec<(u32, String)> {
    let Ok(rd) = std::fs::read_dir(dir(state_root)) else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| {
            let index = e.file_name().to_str()?.parse().ok()?;
            Some((index, std::fs::read_to_string(e.path()).ok()?))
        })
        .collect()
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(len: u8) -> Pool {
        Pool { base: Ipv4Addr::new(10, 213, 0, 0), prefix_len: len }
    }

    #[test]
    fn blocks_are_distinct_and_reused_after_release() {
        let d = tempfile::tempdir().unwrap();
        let a = allocate(d.path(), pool(16), "a").unwrap();
        let b = allocate(d.path(), pool(16), "b").unwrap();
        assert_eq!(a.host_addr, Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(a.jail_addr, Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(b.host_addr, Ipv4Addr::new(10, 213, 0, 5));
        release(d.path(), a.index, "someone-else").unwrap();
        assert_eq!(leases(d.path()).len(), 2, "release by a non-holder must not free the lease");
        release(d.path(), a.index, "a").unwrap();
        assert_eq!(allocate(d.path(), pool(16), "c").unwrap().index, 0);
    }

    #[test]
    fn a_lease_always_names_its_holder_and_no_claim_stays() {
        let d = tempfile::tempdir().unwrap();
        allocate(d.path(), pool(16), "a").unwrap();
        assert_eq!(leases(d.path()), [(0, "a".to_string())]);
        // A claim left by a create killed before its link: a new allocation
        // of the same id overwrites it, and remove_claim deletes it.
        std::fs::write(claim_path(d.path(), "b"), "stale").unwrap();
        allocate(d.path(), pool(16), "b").unwrap();
        let mut all = leases(d.path());
        all.sort();
        assert_eq!(all, [(0, "a".to_string()), (1, "b".to_string())]);
        std::fs::write(claim_path(d.path(), "c"), "c").unwrap();
        remove_claim(d.path(), "c").unwrap();
        remove_claim(d.path(), "c").unwrap();
        let names: Vec<String> = std::fs::read_dir(dir(d.path())).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|n| !n.starts_with('.') || n == ".lock"), "{names:?}");
    }

    #[test]
    fn a_full_pool_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..4 {
            allocate(d.path(), pool(28), &format!("c{i}")).unwrap();
        }
        let e = allocate(d.path(), pool(28), "c4").unwrap_err().to_string();
        assert!(e.contains("10.213.0.0/28 is full") && e.contains("4 jail links"), "{e}");
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || allocate(&root, pool(16), &format!("c{i}")).unwrap().index)
            })
            .collect();
        let mut got: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..16).collect::<Vec<_>>());
    }
}
