//! Giving back the pages start-up mapped.
//!
//! Each sidecar process runs a lot of code once, while it starts (config
//! parsing, socket set-up, the TLS configuration, the resolver), and then
//! idles in a loop that touches a few pages. The kernel maps file pages 64
//! KiB at a time around each fault (fault-around), so after start-up a
//! process keeps several MiB of the binary's and libc's pages mapped, which
//! it will never run again: most of an idle sidecar's resident set
//! (`VmRSS`), three times over (keeper, supervisor, worker), for every
//! jailed container.
//!
//! [`release_startup_pages`] unmaps them: `madvise(MADV_DONTNEED)` over every
//! mapping of a file that is not writable and holds no private (copied)
//! page. For such a mapping the call only drops this process's page-table
//! entries; the next access maps the same page-cache page again, so the
//! contents cannot change (a mapping with copied pages, such as the
//! relocated RELRO segment, is never touched: dropping those would read the
//! file's unrelocated bytes back). The page cache itself is shared with
//! every other sidecar and stays; what changes is that pages no process
//! maps can be reclaimed under memory pressure, and that the resident set
//! of an idle sidecar is what it runs while idle.
//!
//! The worker does the same again once it has gone quiet after serving
//! ([`IdleWatch`]: a whole [`IDLE_CHECK`] period with no decision in the
//! audit log after some): TLS, HTTP and upstream code mapped while serving
//! is given back too, and faults in again with the next request.

use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, MmapAdvise};

/// What [`release_startup_pages`] unmapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings advised.
    pub mappings: usize,
    /// Their resident size before the call, KiB.
    pub kib: u64,
}

/// `/proc/self/smaps`, opened once by [`keep_smaps_open`].
static SMAPS: std::sync::OnceLock<std::sync::Mutex<fs::File>> = std::sync::OnceLock::new();

/// Opens `/proc/self/smaps` now and reads it through that descriptor from
/// then on: the worker does so before its Landlock domain, in which it can
/// open no file (crate::landlock).
pub fn keep_smaps_open() -> io::Result<()> {
    let f = fs::File::open("/proc/self/smaps")?;
    let _ = SMAPS.set(std::sync::Mutex::new(f));
    Ok(())
}

fn read_smaps() -> io::Result<String> {
    use std::io::{Read, Seek};
    let Some(kept) = SMAPS.get() else {
        return fs::read_to_string("/proc/self/smaps");
    };
    let mut f = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f.seek(io::SeekFrom::Start(0))?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    Ok(text)
}

/// A mapping of `/proc/self/smaps` that may be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clean {
    start: usize,
    len: usize,
    rss_kib: u64,
}

/// Unmaps this process's clean, read-only file pages (see the module
/// documentation). Safe to call from any thread at any time; a mapping the
/// call fails on is left as it is.
pub fn release_startup_pages() -> io::Result<Released> {
    let smaps = read_smaps()?;
    let mut released = Released::default();
    for m in clean_mappings(&smaps) {
        let (Some(addr), Some(len)) = (NonNull::new(m.start as *mut std::ffi::c_void), NonZeroUsize::new(m.len)) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process that is
        // read-only, backed by a file and holds no private page (checked
        // from smaps); MADV_DONTNEED on it drops page-table entries only, and
        // any later access faults the same file contents back in. No Rust
        // object's value changes.
        if unsafe { madvise(addr, len.get(), MmapAdvise::MADV_DONTNEED) }.is_ok() {
            released.mappings += 1;
            released.kib += m.rss_kib;
        }
    }
    Ok(released)
}

/// [`release_startup_pages`], logged: `who` names the process.
pub fn release_startup_pages_of(who: &str) {
    match release_startup_pages() {
        Ok(r) => log::debug!("{who}: unmapped {} KiB of start-up pages in {} mappings", r.kib, r.mappings),
        Err(e) => log::debug!("{who}: reading /proc/self/smaps to unmap start-up pages: {e}"),
    }
}

/// How long after its start a process gives back its start-up pages: not
/// at once, while the container's runtime is still starting on the same
/// cores (reading `/proc/self/smaps` walks the page tables, ~0.5 ms of CPU
/// per process).
pub const START_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// A pending [`release_startup_pages`] at [`START_DELAY`] after start, for
/// the poll loops of the keeper and the supervisor (single-threaded: the
/// keeper forks).
#[derive(Debug, Clone, Copy)]
pub struct StartupRelease {
    at: Option<std::time::Instant>,
}

impl StartupRelease {
    /// Due [`START_DELAY`] from now.
    pub fn new() -> StartupRelease {
        StartupRelease { at: Some(std::time::Instant::now() + START_DELAY) }
    }

    /// When it is due; `None` once done.
    pub fn due(&self) -> Option<std::time::Instant> {
        self.at
    }

    /// Gives the pages back if due (once).
    pub fn run_if_due(&mut self, who: &str) {
        if self.at.is_some_and(|at| std::time::Instant::now() >= at) {
            self.at = None;
            release_startup_pages_of(who);
        }
    }
}

impl Default for StartupRelease {
    fn default() -> Self {
        StartupRelease::new()
    }
}

/// The earlier of two optional deadlines.
pub fn earlier(a: Option<std::time::Instant>, b: Option<std::time::Instant>) -> Option<std::time::Instant> {
    a.into_iter().chain(b).min()
}

/// When a worker that served requests goes quiet, it gives back the pages
/// that serving mapped too: checked every [`IDLE_CHECK`], released when a
/// whole period passed with no decision and some were made since the last
/// release.
pub const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Tracks the decision count between idle checks (see [`IDLE_CHECK`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleWatch {
    /// The count at the previous check.
    seen: u64,
    /// The count at the last release.
    released_at: u64,
}

impl IdleWatch {
    /// Starts from `count`, with the start-up pages already given back.
    pub fn new(count: u64) -> IdleWatch {
        IdleWatch { seen: count, released_at: count }
    }

    /// One check with the current count: true when the pages should be
    /// given back now (quiet for a whole period, busy since the last
    /// release).
    pub fn check(&mut self, count: u64) -> bool {
        let release = count == self.seen && count != self.released_at;
        if release {
            self.released_at = count;
        }
        self.seen = count;
        release
    }
}

/// The mappings of an smaps listing that are file-backed, private, not
/// writable, have resident pages and no anonymous (copied-on-write) one.
fn clean_mappings(smaps: &str) -> Vec<Clean> {
    struct Current {
        start: usize,
        len: usize,
        eligible: bool,
        rss: Option<u64>,
        anonymous: Option<u64>,
    }
    fn finish(cur: Option<Current>, out: &mut Vec<Clean>) {
        if let Some(c) = cur {
            if let (true, Some(rss), Some(0)) = (c.eligible, c.rss, c.anonymous) {
                if rss > 0 {
                    out.push(Clean { start: c.start, len: c.len, rss_kib: rss });
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut cur: Option<Current> = None;
    for line in smaps.lines() {
        if let Some(header) = parse_header(line) {
            finish(cur.take(), &mut out);
            cur = Some(Current { start: header.0, len: header.1, eligible: header.2, rss: None, anonymous: None });
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        let Some((key, rest)) = line.split_once(':') else { continue };
        let kib = || rest.trim().strip_suffix("kB").and_then(|v| v.trim().parse::<u64>().ok());
        match key {
            "Rss" => c.rss = kib(),
            "Anonymous" => c.anonymous = kib(),
            _ => {}
        }
    }
    finish(cur, &mut out);
    out
}

/// `start-end perms offset dev inode [path]` → (start, len, eligible).
/// Field lines (`Key:   value`) never parse: their first word has no '-'
/// range of hex numbers.
fn parse_header(line: &str) -> Option<(usize, usize, bool)> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?.as_bytes();
    let (_offset, _dev, _inode) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next();
    if perms.len() != 4 || end <= start {
        return None;
    }
    let eligible = perms[0] == b'r' && perms[1] == b'-' && perms[3] == b'p' && path.is_some_and(|p| p.starts_with('/'));
    Some((start, end - start, eligible))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 123 /usr/bin/boundary-sidecar
Size:               1024 kB
Rss:                 200 kB
Anonymous:             0 kB
55d0a0100000-55d0a0500000 r-xp 00100000 fd:01 123 /usr/bin/boundary-sidecar
Size:               4096 kB
Rss:                3456 kB
Anonymous:             0 kB
55d0a0500000-55d0a0540000 r--p 00500000 fd:01 123 /usr/bin/boundary-sidecar
Size:                256 kB
Rss:                 256 kB
Anonymous:           256 kB
55d0a0540000-55d0a0544000 rw-p 00540000 fd:01 123 /usr/bin/boundary-sidecar
Size:                 16 kB
Rss:                  16 kB
Anonymous:            16 kB
55d0a1000000-55d0a1100000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Rss:                 380 kB
Anonymous:           380 kB
7f0000000000-7f0000010000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libm.so.6
Size:                 64 kB
Rss:                   0 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r-xp 00000000 fd:01 789 /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1024 kB
Rss:                 952 kB
Anonymous:             0 kB
7f0000300000-7f0000301000 r--s 00000000 fd:01 999 /dev/shm/shared
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
7fff00000000-7fff00002000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn picks_clean_read_only_private_file_mappings_only() {
        let got = clean_mappings(SMAPS);
        assert_eq!(
            got,
            vec![
                Clean { start: 0x55d0a0000000, len: 0x100000, rss_kib: 200 },
                Clean { start: 0x55d0a0100000, len: 0x400000, rss_kib: 3456 },
                Clean { start: 0x7f0000100000, len: 0x100000, rss_kib: 952 },
            ],
            "not RELRO (copied pages), writable data, the heap, an unmapped library, a shared mapping or the vdso"
        );
    }

    #[test]
    fn idle_watch_releases_once_per_quiet_spell_after_work() {
        let mut w = IdleWatch::new(5);
        assert!(!w.check(5), "nothing happened since start-up's release");
        assert!(!w.check(9), "busy during this period");
        assert!(!w.check(12), "still busy");
        assert!(w.check(12), "a quiet period after work");
        assert!(!w.check(12), "already given back, still quiet");
        assert!(!w.check(13), "busy again");
        assert!(w.check(13));
    }

    #[test]
    fn a_mapping_without_an_anonymous_line_is_left_alone() {
        let smaps = "7f0000100000-7f0000200000 r-xp 00000000 fd:01 789 /lib/x.so\nRss: 8 kB\n";
        assert!(clean_mappings(smaps).is_empty());
    }

    #[test]
    fn releasing_keeps_the_process_running_and_lowers_its_file_pages() {
        fn rss_file_kib() -> u64 {
            let status = fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
            line.split_ascii_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let before = rss_file_kib();
        let released = release_startup_pages().unwrap();
        assert!(released.mappings > 0 && released.kib > 0, "{released:?}");
        // Code and read-only data fault back in as they are used: the test
        // (and the harness's other threads) keep running, with the same
        // constants.
        let after = rss_file_kib();
        assert!(after < before, "RssFile {before} KiB before, {after} KiB after");
        assert_eq!(format!("{:x}", 0xdead_beef_u32), "deadbeef");
    }
}
