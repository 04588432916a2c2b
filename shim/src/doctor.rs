//! `boundary-runc doctor [--clean]`: is this host ready to run jailed
//! containers, and did crashed containers leave anything behind?
//!
//! One line per check, `OK`, `WARN` or `FAIL`. Warnings (an engine that is
//! not registered, a CA not generated yet) do not make the exit status
//! non-zero; failures and leftovers do. `--clean` removes every leftover
//! (see [`leftovers`]) and checks again.

#![allow(clippy::print_stdout)] // this command prints for a person

pub mod leftovers;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::Config;
use crate::install::{self, Paths};
use crate::delegate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub detail: String,
}

impl Check {
    fn new(status: Status, what: &str, detail: impl Into<String>) -> Check {
        Check { status, what: what.to_string(), detail: detail.into() }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.what, self.detail)
    }
}

/// Runs every check (and the cleaning); returns the exit status.
pub fn run(cfg: &Config, clean: bool) -> i32 {
    let checks = host_checks(cfg, &Paths::from_env());
    for c in &checks {
        println!("{c}");
    }
    let runtime = delegate::find(cfg).ok();
    let mut found = leftovers::find(cfg, runtime.as_deref(), leftovers::IN_PROGRESS_GRACE);
    for c in found.checks() {
        println!("{c}");
    }
    if clean && !found.is_empty() {
        println!("cleaning:");
        for line in leftovers::clean(cfg, &found) {
            println!("  {line}");
        }
        println!("after cleaning:");
        found = leftovers::find(cfg, runtime.as_deref(), leftovers::IN_PROGRESS_GRACE);
        for c in found.checks() {
            println!("{c}");
        }
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail) || !found.is_empty();
    i32::from(failed)
}

/// Everything but leftovers.
pub fn host_checks(cfg: &Config, paths: &Paths) -> Vec<Check> {
    let mut v = vec![delegate_check(cfg)];
    v.extend(nft_checks());
    v.push(userns_check(std::fs::read_to_string("/proc/sys/user/max_user_namespaces").ok().as_deref()));
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    v.push(worker_ids_check(cfg, &HostIds { passwd: read("/etc/passwd"), group: read("/etc/group"), subuid: read("/etc/subuid"), subgid: read("/etc/subgid") }));
    v.push(state_root_check(&cfg.state_root, state_root_fs(&cfg.state_root)));
    v.extend(ca_checks(cfg));
    for (what, p) in [("boundary-hook", cfg.hook_binary()), ("boundary-sidecar", cfg.sidecar_binary())] {
        v.push(binary_check(what, &p));
    }
    v.push(docker_check(&paths.docker_config));
    v.push(containerd_check(&paths.containerd_config, &paths.containerd_dir));
    v.push(crio_check(&paths.crio_dir));
    v
}

/// Every jail needs a user namespace of its own (its container's
/// capabilities count there alone): the kernel must allow some.
fn userns_check(max: Option<&str>) -> Check {
    match max.map(str::trim).map(str::parse::<u64>) {
        Some(Ok(0)) => Check::new(Status::Fail, "user namespaces", "user.max_user_namespaces is 0: jails cannot be made (sysctl -w user.max_user_namespaces=15000)".to_string()),
        Some(Ok(n)) => Check::new(Status::Ok, "user namespaces", format!("up to {n} (one per jail)")),
        _ => Check::new(Status::Fail, "user namespaces", "/proc/sys/user/max_user_namespaces is missing: the kernel has no user namespaces, which every jail needs".to_string()),
    }
}

/// The host's id databases, as text.
struct HostIds {
    passwd: String,
    group: String,
    subuid: String,
    subgid: String,
}

/// Whether the sidecar workers' ids are their own: per jail (the
/// default) and clear of every user, group and subordinate range the host
/// lists, or one configured identity (a warning for `nobody`, which the
/// host's and many images' processes share).
fn worker_ids_check(cfg: &Config, ids: &HostIds) -> Check {
    const WHAT: &str = "sidecar worker ids";
    if let (Some(uid), Some(gid)) = (cfg.sidecar.uid, cfg.sidecar.gid) {
        let detail = format!("every jail's worker runs as uid {uid} gid {gid} (sidecar.uid, sidecar.gid): one jail's worker can signal another's; leave both unset to give each its own");
        let shared = uid == 65534 || gid == 65534;
        return Check::new(if shared { Status::Warn } else { Status::Ok }, WHAT, if shared { format!("{detail}; 65534 is nobody, which the host's and many images' processes run as") } else { detail });
    }
    let Ok(pool) = cfg.pool() else {
        return Check::new(Status::Fail, WHAT, "network.pool does not parse (see the config check)");
    };
    let first = u64::from(cfg.sidecar.worker_id_base);
    let end = first + u64::from(pool.blocks());
    let inside = |id: u64| (first..end).contains(&id);
    let mut clashes = Vec::new();
    // passwd: name:x:uid:gid:...; group: name:x:gid:...
    for (file, text, field) in [("/etc/passwd", &ids.passwd, 2), ("/etc/group", &ids.group, 2)] {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let parts: Vec<&str> = line.split(':').collect();
            if let Some(id) = parts.get(field).and_then(|f| f.trim().parse::<u64>().ok()).filter(|id| inside(*id)) {
                clashes.push(format!("{} ({id}) in {file}", parts[0]));
            }
        }
    }
    // subuid, subgid: owner:first:count
    for (file, text) in [("/etc/subuid", &ids.subuid), ("/etc/subgid", &ids.subgid)] {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let parts: Vec<&str> = line.split(':').collect();
            let (Some(start), Some(count)) = (parts.get(1).and_then(|f| f.trim().parse::<u64>().ok()), parts.get(2).and_then(|f| f.trim().parse::<u64>().ok())) else {
                continue;
            };
            if start < end && first < start.saturating_add(count) {
                clashes.push(format!("{}'s range {start}-{} in {file}", parts[0], start.saturating_add(count).saturating_sub(1)));
            }
        }
    }
    let range = format!("{first}-{} (sidecar.worker_id_base + lease index)", end - 1);
    if clashes.is_empty() {
        Check::new(Status::Ok, WHAT, format!("each jail's worker has its own, from {range}; no user, group or subordinate range here takes one"))
    } else {
        Check::new(Status::Warn, WHAT, format!("{range} overlaps {}: move sidecar.worker_id_base (with no jail running) or that range", clashes.join(", ")))
    }
}

/// The file system type (statfs's `f_type`) of `root`, or of its nearest
/// existing ancestor before the first `create` makes it.
#[allow(clippy::unnecessary_cast)] // f_type is a c_ulong on musl, an i64 on glibc
fn state_root_fs(root: &Path) -> Option<i64> {
    root.ancestors().find_map(|p| nix::sys::statfs::statfs(p).ok()).map(|s| s.filesystem_type().0 as i64)
}

/// The state root is runtime state (the namespaces bound there do not
/// outlive a reboot) and each container start writes about a dozen small
/// files there: on a tmpfs, as /run is on a standard host, they cost
/// nothing; on a disk, each costs an inode (on ext4 without a journal, a
/// scan past the recently freed ones: `run` measured 1.47x runc there
/// against 1.08x on a tmpfs, docs/benchmarks.md).
fn state_root_check(root: &Path, fs_type: Option<i64>) -> Check {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    match fs_type {
        Some(TMPFS_MAGIC | RAMFS_MAGIC) => Check::new(Status::Ok, "state root", format!("{} is on a tmpfs", root.display())),
        Some(t) => Check::new(
            Status::Warn,
            "state root",
            format!(
                "{} is on a disk file system (type {t:#x}), not a tmpfs as /run normally is: every container start \
                 writes its state files there (mount a tmpfs on it, or set state_root)",
                root.display()
            ),
        ),
        None => Check::new(Status::Warn, "state root", format!("cannot stat {} or any parent", root.display())),
    }
}

/// First line of `<bin> <args>`'s stdout, or why there is none.
fn first_line(bin: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin).args(args).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{} {}: {}", bin.display(), args.join(" "), err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_string())
}

fn delegate_check(cfg: &Config) -> Check {
    match delegate::find(cfg) {
        Ok(p) => match first_line(&p, &["--version"]) {
            Ok(v) => Check::new(Status::Ok, "delegate runtime", format!("{} ({v})", p.display())),
            Err(e) => Check::new(Status::Fail, "delegate runtime", format!("{} does not answer --version: {e}", p.display())),
        },
        Err(e) => Check::new(Status::Fail, "delegate runtime", e.to_string()),
    }
}

fn nft_checks() -> Vec<Check> {
    let nft = firewall_nft();
    match first_line(&nft, &["--version"]) {
        Err(e) => vec![Check::new(Status::Fail, "nftables", format!("cannot run nft ({e}); apt-get install nftables"))],
        Ok(v) => {
            let list = first_line(&nft, &["list", "tables"]);
            match list {
                Ok(_) => vec![Check::new(Status::Ok, "nftables", format!("{} ({v}), `nft list tables` works", nft.display()))],
                Err(e) => vec![Check::new(Status::Fail, "nftables", format!("{v} is installed but cannot list tables: {e}"))],
            }
        }
    }
}

/// The nft binary, at the paths `firewall` tries.
pub fn firewall_nft() -> PathBuf {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].into_iter().map(PathBuf::from).find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("nft"))
}

fn ca_checks(cfg: &Config) -> Vec<Check> {
    let (cert, key, configured) = match (&cfg.tls.ca_cert, &cfg.tls.ca_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), true),
        _ => (cfg.tls.ca_dir.join("ca.pem"), cfg.tls.ca_dir.join("ca.key"), false),
    };
    if !configured && !cert.exists() && !key.exists() {
        return vec![Check::new(Status::Warn, "host CA", format!("not generated yet: the first jailed container creates {}", cert.display()))];
    }
    let mut v = Vec::new();
    v.push(match std::fs::read(&cert) {
        Ok(pem) => cert_validity(&cert, &pem, now_unix()),
        Err(e) => Check::new(Status::Fail, "host CA", format!("cannot read {}: {e}", cert.display())),
    });
    v.push(key_mode_check(&key));
    v
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Whether the CA certificate parses and is within its validity period.
pub fn cert_validity(path: &Path, pem: &[u8], now: i64) -> Check {
    let parsed = x509_parser::pem::parse_x509_pem(pem).map_err(|e| e.to_string()).and_then(|(_, p)| {
        let cert = p.parse_x509().map_err(|e| e.to_string())?;
        Ok((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
    });
    match parsed {
        Err(e) => Check::new(Status::Fail, "host CA", format!("{} is not a PEM certificate: {e}", path.display())),
        Ok((_, after)) if after < now => Check::new(Status::Fail, "host CA", format!("{} expired; remove ca.pem and ca.key to have a new one generated", path.display())),
        Ok((before, _)) if before > now => Check::new(Status::Fail, "host CA", format!("{} is not valid yet (clock?)", path.display())),
        Ok((_, after)) if after - now < 30 * 86400 => Check::new(Status::Warn, "host CA", format!("{} expires in {} days", path.display(), (after - now) / 86400)),
        Ok((_, after)) => Check::new(Status::Ok, "host CA", format!("{} valid for {} more days", path.display(), (after - now) / 86400)),
    }
}

fn key_mode_check(key: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(key) {
        Ok(m) if m.permissions().mode() & 0o077 == 0 => Check::new(Status::Ok, "host CA key", format!("{} mode {:o}", key.display(), m.permissions().mode() & 0o777)),
        Ok(m) => Check::new(Status::Fail, "host CA key", format!("{} mode {:o}: others can read it (chmod 600)", key.display(), m.permissions().mode() & 0o777)),
        Err(e) => Check::new(Status::Fail, "host CA key", format!("cannot stat {}: {e}", key.display())),
    }
}

fn binary_check(what: &str, p: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Check::new(Status::Ok, what, p.display().to_string()),
        Ok(_) => Check::new(Status::Fail, what, format!("{} is not an executable file", p.display())),
        Err(_) => Check::new(Status::Fail, what, format!("not found at {} (install it beside boundary-runc)", p.display())),
    }
}

/// Whether a registered path runs boundary-runc.
fn is_boundary_runc(path: &str) -> bool {
    let p = Path::new(path);
    let me = std::env::current_exe().ok().and_then(|e| e.canonicalize().ok());
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("boundary-runc"))
        || (me.is_some() && p.canonicalize().ok() == me)
}

fn describe(entries: &[(String, String)], source: &Path) -> Option<String> {
    let ours: Vec<String> = entries.iter().filter(|(_, p)| is_boundary_runc(p)).map(|(n, p)| format!("{n} -> {p}")).collect();
    (!ours.is_empty()).then(|| format!("{} ({})", ours.join(", "), source.display()))
}

/// A runtime entry whose binary is gone is a failure, not a warning.
fn missing_binaries(entries: &[(String, String)]) -> Vec<String> {
    entries.iter().filter(|(_, p)| is_boundary_runc(p) && !Path::new(p).is_file()).map(|(_, p)| p.clone()).collect()
}

fn not_registered(engine: &str) -> Check {
    Check::new(Status::Warn, engine, format!("boundary-runc is not registered (boundary-runc install {engine})"))
}

fn registered_check(engine: &str, found: Vec<(Vec<(String, String)>, PathBuf)>) -> Check {
    let all: Vec<(String, String)> = found.iter().flat_map(|(e, _)| e.clone()).collect();
    let missing = missing_binaries(&all);
    if !missing.is_empty() {
        return Check::new(Status::Fail, engine, format!("registered binary missing: {}", missing.join(", ")));
    }
    let lines: Vec<String> = found.iter().filter_map(|(e, src)| describe(e, src)).collect();
    if lines.is_empty() { not_registered(engine) } else { Check::new(Status::Ok, engine, lines.join("; ")) }
}

fn docker_check(config: &Path) -> Check {
    match std::fs::read_to_string(config) {
        Ok(t) => registered_check("docker", vec![(install::docker::registered(&t), config.to_path_buf())]),
        Err(_) => not_registered("docker"),
    }
}

/// Files of a drop-in directory, in name order.
fn dir_files(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .collect();
    v.sort();
    v
}

fn containerd_check(main: &Path, dir: &Path) -> Check {
    let main_text = std::fs::read_to_string(main).unwrap_or_default();
    let mut found = vec![(install::containerd::registered(&main_text), main.to_path_buf())];
    let dropins: Vec<(Vec<(String, String)>, PathBuf)> = dir_files(dir, Some("toml"))
        .into_iter()
        .map(|p| (install::containerd::registered(&std::fs::read_to_string(&p).unwrap_or_default()), p))
        .collect();
    let in_dropin = dropins.iter().any(|(e, _)| e.iter().any(|(_, b)| is_boundary_runc(b)));
    found.extend(dropins);
    if let Some(name) = install::containerd::missing_default_runtime(&main_text) {
        return Check::new(Status::Fail, "containerd", format!("{} declares runtimes but not the default runtime {name:?}: containerd will not load its CRI plugin", main.display()));
    }
    let check = registered_check("containerd", found);
    let glob = dir.join("*.toml").display().to_string();
    let imported = install::containerd::imports(&main_text).iter().any(|i| *i == glob || Path::new(i).starts_with(dir));
    if check.status == Status::Ok && in_dropin && !imported {
        return Check::new(Status::Fail, "containerd", format!("{} is not in the imports of {}, so containerd never reads it (boundary-runc install containerd adds it)", glob, main.display()));
    }
    check
}

fn crio_check(dir: &Path) -> Check {
    let mut files = vec![PathBuf::from("/etc/crio/crio.conf")];
    files.extend(dir_files(dir, None));
    let found = files
        .into_iter()
        .filter_map(|p| Some((install::crio::registered(&std::fs::read_to_string(&p).ok()?), p)))
        .collect();
    registered_check("crio", found)
}

#[cfg(test)]
mod tests {

    #[test]
    fn worker_ids_clear_of_the_hosts_ids_or_a_warning() {
        let ids = |passwd: &str, subuid: &str| HostIds { passwd: passwd.into(), group: "root:x:0:\n".into(), subuid: subuid.into(), subgid: String::new() };
        let cfg = Config::parse("[network]\npool = \"10.213.0.0/24\"", Path::new("c.toml")).unwrap();
        let host = ids("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", "user1:100000:65536\n");
        let c = worker_ids_check(&cfg, &host);
        assert_eq!(c.status, Status::Ok, "{c}");
        assert!(c.detail.contains("2000000000-2000000063"), "{c}");
        // A kubelet range covering the workers' (kubelet's default without
        // one covers every id from 65536 up), and a user inside it.
        let c = worker_ids_check(&cfg, &ids("agent:x:2000000010:1::/:/bin/sh\n", "kubelet:65536:4294901760\n# kubelet:1:2\n"));
        assert_eq!(c.status, Status::Warn, "{c}");
        assert!(c.detail.contains("agent (2000000010) in /etc/passwd") && c.detail.contains("kubelet's range 65536-4294967295 in /etc/subuid"), "{c}");
        assert!(!c.detail.contains("kubelet:1:2"), "{c}");
        // Just below and just above the range: no clash.
        let c = worker_ids_check(&cfg, &ids("a:x:1999999999:1::/:/bin/sh\nb:x:2000000064:1::/:/bin/sh\n", "c:1999934464:65536\nd:2000000064:10\n"));
        assert_eq!(c.status, Status::Ok, "{c}");
        let fixed = Config::parse("[sidecar]\nuid = 65534\ngid = 65534", Path::new("c.toml")).unwrap();
        let c = worker_ids_check(&fixed, &host);
        assert_eq!(c.status, Status::Warn, "{c}");
        assert!(c.detail.contains("nobody") && c.detail.contains("leave both unset"), "{c}");
        let fixed = Config::parse("[sidecar]\nuid = 4000\ngid = 4000", Path::new("c.toml")).unwrap();
        assert_eq!(worker_ids_check(&fixed, &host).status, Status::Ok);
    }

    #[test]
    fn user_namespaces_must_be_allowed() {
        assert_eq!(userns_check(Some("63000\n")).status, Status::Ok);
        let off = userns_check(Some("0\n"));
        assert!(off.status == Status::Fail && off.to_string().contains("max_user_namespaces is 0"), "{off}");
        let tmpfs = state_root_check(Path::new("/run/boundary-runc"), Some(0x0102_1994));
        assert_eq!(tmpfs.status, Status::Ok, "{tmpfs}");
        let ext4 = state_root_check(Path::new("/run/boundary-runc"), Some(0xEF53));
        assert!(ext4.status == Status::Warn && ext4.to_string().contains("type 0xef53"), "{ext4}");
        assert_eq!(state_root_check(Path::new("/x"), None).status, Status::Warn);
        assert_eq!(userns_check(None).status, Status::Fail);
    }

    use super::*;

    #[test]
    fn ca_validity_is_judged_from_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let pem = params.self_signed(&key).unwrap().pem();
        let p = Path::new("ca.pem");
        let jan_2026 = 1_767_225_600;
        assert_eq!(cert_validity(p, pem.as_bytes(), jan_2026).status, Status::Ok);
        let dec_2029 = 1_891_000_000;
        assert_eq!(cert_validity(p, pem.as_bytes(), dec_2029).status, Status::Warn);
        let c = cert_validity(p, pem.as_bytes(), 1_900_000_000);
        assert!(c.status == Status::Fail && c.detail.contains("expired"), "{c}");
        assert_eq!(cert_validity(p, b"junk", jan_2026).status, Status::Fail);
    }

    #[test]
    fn key_mode_and_binaries() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("ca.key");
        std::fs::write(&k, "k").unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(key_mode_check(&k).status, Status::Ok);
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(key_mode_check(&k).status, Status::Fail);
        assert_eq!(binary_check("x", &k).status, Status::Fail);
        assert_eq!(binary_check("x", Path::new("/bin/sh")).status, Status::Ok);
        assert_eq!(binary_check("x", &d.path().join("none")).status, Status::Fail);
    }

    #[test]
    fn engine_registrations_are_found() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("boundary-runc");
        std::fs::write(&bin, "").unwrap();
        let b = bin.display().to_string();
        let daemon = d.path().join("daemon.json");
        assert_eq!(docker_check(&daemon).status, Status::Warn);
        std::fs::write(&daemon, format!(r#"{{"runtimes":{{"boundary-runc":{{"path":"{b}"}}}}}}"#)).unwrap();
        let c = docker_check(&daemon);
        assert!(c.status == Status::Ok && c.detail.contains(&b), "{c}");
        std::fs::write(&daemon, r#"{"runtimes":{"boundary-runc":{"path":"/gone/boundary-runc"}}}"#).unwrap();
        assert_eq!(docker_check(&daemon).status, Status::Fail);

        let reg = install::Registration::new("boundary-runc", bin.clone()).unwrap();
        let conf_d = d.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        let main = d.path().join("config.toml");
        std::fs::write(&main, "version = 2\n").unwrap();
        assert_eq!(containerd_check(&main, &conf_d).status, Status::Warn);
        let entry = install::containerd::with_runtime(&main, Some("version = 2\n"), &reg).unwrap();
        std::fs::write(conf_d.join("by-hand.toml"), &entry).unwrap();
        let c = containerd_check(&main, &conf_d);
        assert!(c.status == Status::Fail && c.detail.contains("imports"), "{c}");
        std::fs::remove_file(conf_d.join("by-hand.toml")).unwrap();
        std::fs::write(&main, &entry).unwrap();
        let c = containerd_check(&main, &conf_d);
        assert!(c.status == Status::Ok && c.detail.contains(&b), "{c}");

        let crio_d = d.path().join("crio.conf.d");
        assert_eq!(crio_check(&crio_d).status, Status::Warn);
        std::fs::create_dir(&crio_d).unwrap();
        std::fs::write(crio_d.join("99-boundary-runc.conf"), install::crio::dropin_text(&reg)).unwrap();
        assert_eq!(crio_check(&crio_d).status, Status::Ok);
    }
}
