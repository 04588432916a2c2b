//! What crashed containers leave behind, and removing it.
//!
//! A jail (`<state_root>/<id>/`) is a leftover when the delegate no longer
//! knows its container (`<runtime> [--root R] state <id>` fails) or it has
//! no readable `jail.json`. Everything else is a leftover when nothing
//! owns it: a lease whose holder has no state directory, a namespace file
//! under `<state_root>/netns/` or `<state_root>/userns/` without one, a `bnd*`/`bnj*` link or a
//! `boundary_*` nft table in the host namespace that no `jail.json` names,
//! a `boundary-sidecar` whose config file under the state root is gone, a
//! narrowing file (`<state_root>/<jail>/narrow/<id>`) whose container has
//! no state directory. A container that joined another's jail is a
//! leftover when that jail is gone or the delegate no longer knows it.
//!
//! Only links and tables whose name encodes an address in *this* config's
//! pool are considered: another state root (a second engine, a test) with
//! its own pool owns the others. A jail younger than
//! [`IN_PROGRESS_GRACE`] may be a `create` in progress and is left alone.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use boundary_contract::{JailState, JAIL_STATE_FILE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Check, Status};
use crate::config::{Config, Pool};
use crate::pod::narrow;
use crate::{args, firewall, ipam, jail, link, netns};

/// How old a jail must be before doctor judges it.
pub const IN_PROGRESS_GRACE: Duration = Duration::from_secs(30);

/// Directories under the state root that are not containers.
const SHARED_DIRS: [&str; 3] = ["netns", "userns", "ipam"];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// (container id, why)
    pub jails: Vec<(String, String)>,
    /// (index, holder)
    pub leases: Vec<(u32, String)>,
    pub netns: Vec<PathBuf>,
    pub links: Vec<String>,
    pub tables: Vec<String>,
    /// (pid, config path)
    pub sidecars: Vec<(i32, PathBuf)>,
    /// (jail id, container id): a narrowing of a jail's rules by a
    /// container that has no state directory.
    pub narrowings: Vec<(String, String)>,
    /// Things doctor could not judge.
    pub notes: Vec<Check>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.jails.is_empty() && self.leases.is_empty() && self.netns.is_empty() && self.links.is_empty() && self.tables.is_empty() && self.sidecars.is_empty() && self.narrowings.is_empty()
    }

    /// One line per leftover (or one OK line).
    pub fn checks(&self) -> Vec<Check> {
        let fail = |what: &str, detail: String| Check::new(Status::Fail, what, detail);
        let mut v: Vec<Check> = Vec::new();
        v.extend(self.jails.iter().map(|(id, why)| fail("leftover jail", format!("{id}: {why}"))));
        v.extend(self.leases.iter().map(|(i, h)| fail("leftover lease", format!("{i} held by {h:?}, which has no state directory"))));
        v.extend(self.netns.iter().map(|p| fail("leftover namespace", format!("{} has no state directory", p.display()))));
        v.extend(self.links.iter().map(|l| fail("leftover link", format!("{l} belongs to no jail"))));
        v.extend(self.tables.iter().map(|t| fail("leftover nft table", format!("inet {t} belongs to no jail"))));
        v.extend(self.sidecars.iter().map(|(pid, c)| fail("leftover sidecar", format!("pid {pid} serves {}, which is gone", c.display()))));
        v.extend(self.narrowings.iter().map(|(j, id)| fail("leftover narrowing", format!("{id}, which has no state directory, still narrows the rules of the jail of {j}"))));
        if v.is_empty() {
            v.push(Check::new(Status::Ok, "leftovers", "none"));
        }
        v.extend(self.notes.iter().cloned());
        v
    }
}

/// Looks for leftovers under `cfg.state_root` and in the host namespace.
pub fn find(cfg: &Config, runtime: Option<&Path>, grace: Duration) -> Leftovers {
    let root = &cfg.state_root;
    let mut out = Leftovers::default();
    let mut owned: HashSet<String> = HashSet::new();
    for id in state_ids(root) {
        let dir = jail::state_dir(root, &id);
        let state = jail::read_state(root, &id);
        if let Ok(Some(s)) = &state {
            owned.extend(owned_names(s));
        }
        if age(&dir.join(JAIL_STATE_FILE)).or_else(|| age(&dir)).is_some_and(|a| a < grace) {
            continue;
        }
        // A container that joined another's jail (`--network container:X`)
        // has only a marker naming that jail; it is a leftover once the
        // jail it joined is gone.
        // It is one too when the delegate no longer knows it while the
        // jail lives: its narrowing of the jail's rules stays in force
        // until its state goes. (A joiner runs under the same engine, and
        // so the same runtime root, as the jail's container.)
        if let Ok(joined) = std::fs::read_to_string(dir.join(crate::docker::JOINED_FILE)) {
            let jail_id = joined.trim();
            if !jail::state_dir(root, jail_id).join(JAIL_STATE_FILE).exists() {
                out.jails.push((id, format!("joined the jail of {jail_id}, which is gone")));
                continue;
            }
            // (An unreadable jail state is the jail's leftover, judged on its own.)
            if let Ok(Some(jail_state)) = jail::read_state(root, jail_id) {
                if let Some(rt) = runtime.filter(|rt| !container_exists(rt, jail_state.runtime_root.as_deref(), &id)) {
                    let narrows = narrow::dir(root, jail_id).join(&id).exists();
                    out.jails.push((
                        id,
                        format!(
                            "joined the jail of {jail_id}, but the container is gone ({} state fails){}",
                            rt.display(),
                            if narrows { "; its rules still narrow that jail's" } else { "" }
                        ),
                    ));
                }
            }
            continue;
        }
        match state {
            Ok(Some(s)) => match runtime {
                Some(rt) if !container_exists(rt, s.runtime_root.as_deref(), &id) => {
                    out.jails.push((id, format!("the container is gone ({} state {} fails)", rt.display(), s.container_id)));
                }
                Some(_) => {}
                None => out.notes.push(Check::new(Status::Warn, "jail", format!("{id}: cannot tell whether its container exists (no delegate runtime)"))),
            },
            Ok(None) => out.jails.push((id, format!("no {JAIL_STATE_FILE} (its create never finished)"))),
            Err(e) => out.jails.push((id, e.to_string())),
        }
    }
    let has_dir = |id: &str| args::validate_id(id).is_ok() && jail::state_dir(root, id).is_dir();
    // A narrowing whose container has no state directory any more (its
    // teardown removes the file before the directory, so none is made or
    // removed in between).
    for jail_id in state_ids(root) {
        let dir = narrow::dir(root, &jail_id);
        for id in file_names(&dir).into_iter().filter(|n| !n.starts_with('.')) {
            let young = age(&dir.join(&id)).is_some_and(|a| a < grace);
            if !young && !has_dir(&id) {
                out.narrowings.push((jail_id.clone(), id));
            }
        }
    }
    out.leases = ipam::leases(root).into_iter().filter(|(_, holder)| !has_dir(holder)).collect();
    out.leases.sort();
    for dir in ["netns", jail::USERNS_DIR] {
        out.netns.extend(file_names(&root.join(dir)).into_iter().filter(|n| !has_dir(n)).map(|n| root.join(dir).join(n)));
    }
    if let Ok(pool) = cfg.pool() {
        out.links = host_links().into_iter().filter(|l| in_pool(l, &["bnd", "bnj"], pool) && !owned.contains(l)).collect();
        match nft_tables() {
            Ok(tables) => out.tables = tables.into_iter().filter(|t| in_pool(t, &["boundary_"], pool) && !owned.contains(t)).collect(),
            Err(e) => out.notes.push(Check::new(Status::Warn, "nft tables", format!("cannot list them: {e}"))),
        }
    }
    out.sidecars = sidecars().into_iter().filter(|(_, c)| c.starts_with(root) && !c.exists()).collect();
    out
}

/// Removes everything `found` lists; returns what was done, one line each.
pub fn clean(cfg: &Config, found: &Leftovers) -> Vec<String> {
    let root = &cfg.state_root;
    let mut log = Vec::new();
    let mut report = |what: String, errors: Vec<String>| {
        if errors.is_empty() {
            log.push(format!("removed {what}"));
        } else {
            log.push(format!("could not fully remove {what}: {}", errors.join("; ")));
        }
    };
    for (id, _) in &found.jails {
        report(format!("jail {id}"), jail::teardown(root, id));
    }
    for (index, holder) in &found.leases {
        report(format!("lease {index}"), ipam::release(root, *index, holder).err().map(|e| format!("{:#}", anyhow::Error::from(e))).into_iter().collect());
    }
    for p in &found.netns {
        report(format!("namespace {}", p.display()), netns::remove(p).err().map(|e| format!("{:#}", anyhow::Error::from(e))).into_iter().collect());
    }
    for l in &found.links {
        report(format!("link {l}"), link::remove(None, l).err().map(|e| format!("{:#}", anyhow::Error::from(e))).into_iter().collect());
    }
    for t in &found.tables {
        report(format!("nft table inet {t}"), firewall::remove(None, t).err().map(|e| format!("{e:#}")).into_iter().collect());
    }
    for (pid, conf) in &found.sidecars {
        report(format!("sidecar pid {pid}"), stop_sidecar(*pid, conf));
    }
    for (jail_id, id) in &found.narrowings {
        report(format!("the narrowing of {jail_id}'s rules by {id}"), narrow::lift(root, jail_id, id).err().map(|e| e.to_string()).into_iter().collect());
    }
    log
}

/// Names a jail owns in its host-side namespace. (`bnj<hex>` was the jail
/// end's temporary name on the host side before 2026-11-22, when the veth
/// began to be created with that end already in the jail; a crash of an
/// older version can still have left one.)
fn owned_names(s: &JailState) -> [String; 3] {
    [s.host_if.clone(), format!("bnj{}", jail::addr_tag(s.host_addr)), s.nft_table.clone()]
}

fn age(p: &Path) -> Option<Duration> {
    let m = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

fn file_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> = rd.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
    v.sort();
    v
}

/// Container ids with a state directory.
fn state_ids(root: &Path) -> Vec<String> {
    file_names(root).into_iter().filter(|n| !SHARED_DIRS.contains(&n.as_str()) && root.join(n).is_dir()).collect()
}

fn container_exists(runtime: &Path, runtime_root: Option<&Path>, id: &str) -> bool {
    let mut cmd = Command::new(runtime);
    if let Some(r) = runtime_root {
        cmd.arg("--root").arg(r);
    }
    cmd.arg("state").arg(id).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.status().is_ok_and(|s| s.success())
}

/// Whether `name` is `<prefix><8 hex digits>` for an address in `pool`.
pub fn in_pool(name: &str, prefixes: &[&str], pool: Pool) -> bool {
    let Some(hex) = prefixes.iter().find_map(|p| name.strip_prefix(p)) else { return false };
    if hex.len() != 8 {
        return false;
    }
    let Ok(addr) = u32::from_str_radix(hex, 16) else { return false };
    let mask = u32::MAX.checked_shl(32 - u32::from(pool.prefix_len)).unwrap_or(0);
    addr & mask == u32::from(pool.base) & mask && Ipv4Addr::from(addr) != pool.base
}

/// Interfaces of the host namespace.
fn host_links() -> Vec<String> {
    file_names(Path::new("/sys/class/net"))
}

/// Names of the `inet` tables in the host namespace.
fn nft_tables() -> Result<Vec<String>, String> {
    let out = Command::new(super::firewall_nft()).args(["-j", "list", "tables"]).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(parse_nft_tables(&out.stdout))
}

pub fn parse_nft_tables(json: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else { return Vec::new() };
    let Some(items) = v.get("nftables").and_then(|n| n.as_array()) else { return Vec::new() };
    items
        .iter()
        .filter_map(|i| i.get("table"))
        .filter(|t| t.get("family").and_then(|f| f.as_str()) == Some("inet"))
        .filter_map(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_string))
        .collect()
}

/// Running `boundary-sidecar` processes (supervisors and workers) and the
/// config file each was given.
fn sidecars() -> Vec<(i32, PathBuf)> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, sidecar_config_arg(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)?)))
        .collect()
}

/// The `--config` of a boundary-sidecar command line (NUL-separated).
pub fn sidecar_config_arg(cmdline: &[u8]) -> Option<PathBuf> {
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if !args.first()?.ends_with("boundary-sidecar") {
        return None;
    }
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
    }
    None
}

/// SIGTERM, then SIGKILL after two seconds, to a sidecar still serving `conf`.
fn stop_sidecar(pid: i32, conf: &Path) -> Vec<String> {
    let same = || std::fs::read(format!("/proc/{pid}/cmdline")).ok().and_then(|c| sidecar_config_arg(&c)).as_deref() == Some(conf);
    if !same() {
        return Vec::new();
    }
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        return vec![format!("cannot signal pid {pid}: {e}")];
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while same() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if same() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joiner_is_kept_while_its_jail_exists_and_listed_once_it_is_gone() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config { state_root: d.path().to_path_buf(), ..Config::default() };
        crate::docker::record_joined(d.path(), "joiner", "owner").unwrap();
        std::fs::create_dir_all(d.path().join("owner")).unwrap();
        std::fs::write(d.path().join("owner").join(JAIL_STATE_FILE), "{}").unwrap();
        let found = find(&cfg, None, Duration::ZERO);
        assert!(found.jails.iter().all(|(id, _)| id != "joiner"), "{:?}", found.jails);
        std::fs::remove_dir_all(d.path().join("owner")).unwrap();
        let found = find(&cfg, None, Duration::ZERO);
        assert!(found.jails.iter().any(|(id, why)| id == "joiner" && why.contains("owner")), "{:?}", found.jails);
    }

    #[test]
    fn a_joiner_whose_container_is_gone_and_an_orphaned_narrowing_are_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config { state_root: d.path().to_path_buf(), ..Config::default() };
        let owner = jail::state_dir(d.path(), "owner");
        std::fs::create_dir_all(owner.join(boundary_contract::NARROW_DIR)).unwrap();
        let state = JailState {
            container_id: "owner".into(),
            index: 0,
            host_side: boundary_contract::HostSide::Absent,
            netns_path: d.path().join("netns/owner"),
            host_if: "bnd0ad50001".into(),
            host_addr: Ipv4Addr::new(10, 213, 0, 1),
            jail_addr: Ipv4Addr::new(10, 213, 0, 2),
            prefix_len: 30,
            nft_table: "boundary_0ad50001".into(),
            sidecar_pid: None,
            runtime_root: None,
            dedicated_host_netns: None,
            engine_handover: None,
            private_host: false,
            userns: None,
            create_token: 1,
            forwarding_turned_on: false,
        };
        std::fs::write(owner.join(JAIL_STATE_FILE), serde_json::to_vec(&state).unwrap()).unwrap();
        crate::docker::record_joined(d.path(), "joiner", "owner").unwrap();
        std::fs::write(narrow::dir(d.path(), "owner").join("joiner"), "domain=a.test\n").unwrap();
        // The delegate knows every container: nothing is left over.
        let found = find(&cfg, Some(Path::new("/bin/true")), Duration::ZERO);
        assert!(found.jails.iter().all(|(id, _)| id != "joiner") && found.narrowings.is_empty(), "{found:?}");
        // It knows none: the joiner is, and says its rules still narrow.
        let found = find(&cfg, Some(Path::new("/bin/false")), Duration::ZERO);
        assert!(found.jails.iter().any(|(id, why)| id == "joiner" && why.contains("container is gone") && why.contains("still narrow")), "{found:?}");
        // A narrowing file whose container has no state directory.
        std::fs::remove_dir_all(jail::state_dir(d.path(), "joiner")).unwrap();
        let found = find(&cfg, Some(Path::new("/bin/true")), Duration::ZERO);
        assert_eq!(found.narrowings, [("owner".to_string(), "joiner".to_string())]);
        assert!(found.checks().iter().any(|c| c.status == Status::Fail && c.to_string().contains("leftover narrowing")));
        assert!(find(&cfg, Some(Path::new("/bin/true")), IN_PROGRESS_GRACE).narrowings.is_empty(), "a young one is left alone");
        // Cleaning lifts it (the jail's sidecar is not running here).
        let log = clean(&cfg, &found);
        assert!(log.iter().any(|l| l.starts_with("removed the narrowing")), "{log:?}");
        assert!(!narrow::dir(d.path(), "owner").join("joiner").exists());
    }

    #[test]
    fn pool_membership_of_names() {
        let pool = Pool { base: Ipv4Addr::new(10, 213, 0, 0), prefix_len: 16 };
        assert!(in_pool("bnd0ad50001", &["bnd", "bnj"], pool));
        assert!(in_pool("bnj0ad5ff05", &["bnd", "bnj"], pool));
        assert!(in_pool("boundary_0ad50001", &["boundary_"], pool));
        assert!(!in_pool("bnd0ad60001", &["bnd"], pool), "another pool");
        assert!(!in_pool("bnd0ad5001", &["bnd"], pool), "7 digits");
        assert!(!in_pool("bndzzzzzzzz", &["bnd"], pool));
        assert!(!in_pool("eth0", &["bnd"], pool));
        assert!(!in_pool("boundary_x", &["boundary_"], pool));
    }

    #[test]
    fn nft_table_list_is_parsed() {
        let json = br#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"table":{"family":"inet","name":"boundary_0ad50001","handle":3}},{"table":{"family":"ip","name":"nat","handle":1}}]}"#;
        assert_eq!(parse_nft_tables(json), ["boundary_0ad50001"]);
        assert!(parse_nft_tables(b"").is_empty());
    }

    #[test]
    fn sidecar_command_lines() {
        assert_eq!(sidecar_config_arg(b"/usr/local/bin/boundary-sidecar\0--config\0/run/b/x/sidecar.json\0--ready-fd\x005\x00"), Some(PathBuf::from("/run/b/x/sidecar.json")));
        assert_eq!(sidecar_config_arg(b"boundary-sidecar\0--config=/c\0"), Some(PathBuf::from("/c")));
        assert_eq!(sidecar_config_arg(b"/bin/sleep\0--config\0/c\0"), None);
    }

    #[test]
    fn orphans_in_the_state_root_are_found() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config { state_root: d.path().to_path_buf(), network: crate::config::NetworkConfig { pool: "10.250.0.0/24".into(), ..Default::default() }, ..Default::default() };
        let pool = cfg.pool().unwrap();
        ipam::allocate(d.path(), pool, "gone").unwrap();
        ipam::allocate(d.path(), pool, "young").unwrap();
        std::fs::create_dir(d.path().join("young")).unwrap();
        std::fs::create_dir(d.path().join("netns")).unwrap();
        std::fs::write(d.path().join("netns/gone"), "").unwrap();
        std::fs::create_dir(d.path().join("userns")).unwrap();
        std::fs::write(d.path().join("userns/gone"), "").unwrap();
        let found = find(&cfg, Some(Path::new("/bin/false")), IN_PROGRESS_GRACE);
        assert_eq!(found.leases, [(0, "gone".to_string())]);
        assert_eq!(found.netns, [d.path().join("netns/gone"), d.path().join("userns/gone")]);
        assert!(found.jails.is_empty(), "a young state directory may be a create in progress");
        let found = find(&cfg, Some(Path::new("/bin/false")), Duration::ZERO);
        assert_eq!(found.jails.len(), 1, "{found:?}");
        assert!(found.jails[0].1.contains("never finished"));
        assert!(found.checks().iter().all(|c| c.status == Status::Fail));
    }
}
