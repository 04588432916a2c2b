//! Rules that narrow the sidecar's policy, and their reload.
//!
//! The containers that share a jail (a Kubernetes or podman pod, Docker's
//! `--network container:X`) share one network identity (one namespace, one
//! sidecar) and can relay for each other over localhost, so the sidecar
//! cannot tell which of them made a request. Each container that joins
//! may *narrow* the jail's policy with its own rules: a request is allowed
//! only when the jail's rules allow it and every narrowing set does. A
//! denial by a narrowing set names its owner (the container), and the rule
//! it suggests belongs in that owner's rules.
//!
//! Sets come from the config's `narrowing_rules` (fixed, owned by the
//! sidecar config) and from [`SidecarConfig::narrow_dir`]: one file per
//! container, written by the shim, read again on SIGHUP. The worker opens
//! the directory as root and keeps the descriptor; after the privilege drop
//! it reads through it (`openat`), while the directory's parent stays closed
//! to its uid. After each load it appends a [`NarrowingApplied`] line to
//! [`NARROWING_APPLIED_FILE`] (opened as root, written through the
//! descriptor), so the shim can wait until its change is in force.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use boundary_contract::{NarrowingApplied, SidecarConfig, NARROWING_APPLIED_FILE};
use boundary_policy::{
    could_allow_host_narrowed, evaluate_narrowed, Decision, ParseError, Policy, Request,
};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

/// Owner named for the config's own `narrowing_rules`.
pub const CONFIG_OWNER: &str = "the sidecar config";
/// The reason of a denial by `owner`'s narrowing set (requests, CONNECT,
/// DNS alike).
pub fn narrowed_reason(reason: &str, owner: &str) -> String {
    format!("{reason} in the rules of {owner}, which narrow the policy of every container in this jail while it runs")
}

/// Where the rule that would allow a denied request is given, as the 403
/// says it: the jail's `rules_in`, or, for a denial by `narrowed_by`'s
/// narrowing set, that owner's rules.
pub fn rules_in<'a>(narrowed_by: Option<&str>, jail: &'a str) -> std::borrow::Cow<'a, str> {
    match narrowed_by {
        None => jail.into(),
        Some(CONFIG_OWNER) => "the narrowing_rules of the sidecar config".into(),
        Some(owner) => format!(
            "the rules of container {owner} (BOUNDARY_ALLOW in its environment; outside a Kubernetes pod, whose annotation is the pod's, also its io.boundary.allow annotation)"
        )
        .into(),
    }
}
/// Largest narrowing file read (a rule set, not data).
const MAX_FILE: u64 = 1 << 20;

/// Errors loading narrowing sets.
#[derive(Debug, thiserror::Error)]
pub enum NarrowingError {
    #[error("opening the narrowing directory {path}")]
    OpenDir {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("opening {NARROWING_APPLIED_FILE} in the narrowing directory")]
    OpenApplied(#[source] Errno),
    #[error("listing the narrowing directory")]
    List(#[source] Errno),
    #[error("reading narrowing set {owner}")]
    Read {
        owner: String,
        #[source]
        source: io::Error,
    },
    #[error("narrowing set {owner} is larger than {MAX_FILE} bytes")]
    TooLarge { owner: String },
    #[error("parsing narrowing set {owner}")]
    Parse {
        owner: String,
        #[source]
        source: ParseError,
    },
    #[error("recording the applied narrowing sets")]
    Record(#[source] io::Error),
}

/// One container's narrowing rules.
#[derive(Debug, Clone)]
pub struct NarrowSet {
    pub owner: String,
    pub policy: Policy,
}

/// The narrowing sets in force at one moment.
#[derive(Debug, Clone, Default)]
pub struct NarrowSets {
    sets: Vec<NarrowSet>,
}

impl NarrowSets {
    pub fn new(sets: Vec<NarrowSet>) -> NarrowSets {
        NarrowSets { sets }
    }

    pub fn sets(&self) -> &[NarrowSet] {
        &self.sets
    }

    /// `base` narrowed by every set: allowed only when `base` and each
    /// non-empty set allow. The second value names the set that denied a
    /// request `base` allows.
    pub fn evaluate(&self, base: &Policy, req: &Request<'_>) -> (Decision, Option<&str>) {
        let decision = base.evaluate(req);
        if !decision.is_allowed() {
            return (decision, None);
        }
        for set in &self.sets {
            let narrowed = evaluate_narrowed(base, &set.policy, req);
            if !narrowed.is_allowed() {
                return (narrowed, Some(&set.owner));
            }
        }
        (decision, None)
    }

    /// The set that keeps a name `base` could allow from resolving.
    pub fn host_narrowed_by(&self, base: &Policy, host: &str) -> Option<&str> {
        if !base.could_allow_host(host) {
            return None;
        }
        self.sets
            .iter()
            .find(|s| !could_allow_host_narrowed(base, &s.policy, host))
            .map(|s| s.owner.as_str())
    }

    /// [`Policy::could_allow_host`] of `base` narrowed by every set.
    pub fn could_allow_host(&self, base: &Policy, host: &str) -> bool {
        base.could_allow_host(host)
            && self
                .sets
                .iter()
                .all(|s| could_allow_host_narrowed(base, &s.policy, host))
    }
}

/// The directory a worker reloads from.
#[derive(Debug)]
struct Source {
    dir: OwnedFd,
    applied: Mutex<File>,
    /// The config's generation, said in every record.
    generation: u64,
}

/// The narrowing of one sidecar: fixed sets plus, when configured, the sets
/// of a directory that [`Narrowing::reload`] reads again.
#[derive(Debug)]
pub struct Narrowing {
    fixed: Vec<NarrowSet>,
    source: Option<Source>,
    current: RwLock<Arc<NarrowSets>>,
}

impl Narrowing {
    /// Only `fixed` sets, never reloaded.
    pub fn fixed(fixed: Vec<NarrowSet>) -> Narrowing {
        let current = RwLock::new(Arc::new(NarrowSets::new(fixed.clone())));
        Narrowing {
            fixed,
            source: None,
            current,
        }
    }

    /// From the config: `narrowing_rules` as a fixed set and, when
    /// `narrow_dir` is set, the directory, opened and loaded now (call as
    /// root, before the privilege drop).
    pub fn from_config(cfg: &SidecarConfig) -> Result<Narrowing, NarrowingError> {
        let mut fixed = Vec::new();
        if !cfg.narrowing_rules.is_empty() {
            let policy = parse(CONFIG_OWNER, cfg.narrowing_rules.iter().map(String::as_str))?;
            fixed.push(NarrowSet {
                owner: CONFIG_OWNER.to_owned(),
                policy,
            });
        }
        let mut narrowing = Narrowing::fixed(fixed);
        if let Some(dir) = &cfg.narrow_dir {
            narrowing.source = Some(Source { generation: cfg.config_generation, ..open_source(dir)? });
            narrowing.reload()?;
        }
        Ok(narrowing)
    }

    /// The directory [`Narrowing::reload`] reads, opened as root at the
    /// start: `None` without one.
    pub fn dir(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.source.as_ref().map(|s| s.dir.as_fd())
    }

    /// The sets in force now.
    pub fn current(&self) -> Arc<NarrowSets> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the directory again and puts its sets in force, then records
    /// their owners. Reloads are serialised, so the last record always
    /// describes the sets in force. On error the previous sets stay.
    /// Returns the number of directory sets; 0 without a directory.
    pub fn reload(&self) -> Result<usize, NarrowingError> {
        let Some(source) = &self.source else {
            return Ok(0);
        };
        let mut applied = source.applied.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = read_sets(&source.dir)?;
        let owners: Vec<String> = loaded.iter().map(|s| s.owner.clone()).collect();
        let sets = NarrowSets::new(self.fixed.iter().cloned().chain(loaded).collect());
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(sets),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(sets),
        }
        let mut line = serde_json::to_vec(&NarrowingApplied {
            owners: owners.clone(),
            config_generation: source.generation,
        })
        .map_err(|e| NarrowingError::Record(e.into()))?;
        line.push(b'\n');
        applied.write_all(&line).map_err(NarrowingError::Record)?;
        Ok(owners.len())
    }
}

fn parse<'a>(
    owner: &str,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Policy, NarrowingError> {
    Policy::from_texts(texts).map_err(|source| NarrowingError::Parse {
        owner: owner.to_owned(),
        source,
    })
}

fn open_source(dir: &Path) -> Result<Source, NarrowingError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd =
        nix::fcntl::open(dir, flags, Mode::empty()).map_err(|source| NarrowingError::OpenDir {
            path: dir.to_owned(),
            source,
        })?;
    let flags =
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let applied = openat(
        &fd,
        NARROWING_APPLIED_FILE,
        flags,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(NarrowingError::OpenApplied)?;
    Ok(Source {
        dir: fd,
        applied: Mutex::new(File::from(applied)),
        generation: 0,
    })
}

/// Every set in the directory, sorted by owner.
fn read_sets(dir: &OwnedFd) -> Result<Vec<NarrowSet>, NarrowingError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut listing =
        nix::dir::Dir::openat(dir, ".", flags, Mode::empty()).map_err(NarrowingError::List)?;
    let mut owners = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(NarrowingError::List)?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if !name.starts_with('.') && !name.is_empty() {
            owners.push(name.to_owned());
        }
    }
    owners.sort();
    owners
        .into_iter()
        .map(|owner| read_set(dir, owner))
        .collect()
}

fn read_set(dir: &OwnedFd, owner: String) -> Result<NarrowSet, NarrowingError> {
    let read_err = |owner: &str, source: io::Error| NarrowingError::Read {
        owner: owner.to_owned(),
        source,
    };
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let fd = openat(dir, owner.as_str(), flags, Mode::empty())
        .map_err(|e| read_err(&owner, e.into()))?;
    let mut text = String::new();
    File::from(fd)
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| read_err(&owner, e))?;
    if text.len() as u64 > MAX_FILE {
        return Err(NarrowingError::TooLarge { owner });
    }
    let policy = parse(&owner, [text.as_str()])?;
    Ok(NarrowSet { owner, policy })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(owner: &str, rules: &str) -> NarrowSet {
        NarrowSet {
            owner: owner.into(),
            policy: Policy::from_texts([rules]).unwrap(),
        }
    }

    fn get<'a>(host: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            host,
            path,
            port: Some(443),
        }
    }

    #[test]
    fn every_set_must_allow_and_a_denial_names_its_owner() {
        let base = Policy::from_texts(["domain=a.test;domain=b.test"]).unwrap();
        let sets = NarrowSets::new(vec![
            set("c1", "domain=a.test;domain=b.test path=/x"),
            set("c2", "domain=*.test"),
        ]);
        assert!(sets.evaluate(&base, &get("a.test", "/")).0.is_allowed());
        assert!(sets.evaluate(&base, &get("b.test", "/x")).0.is_allowed());
        let (d, by) = sets.evaluate(&base, &get("b.test", "/y"));
        assert!(!d.is_allowed());
        assert_eq!(by, Some("c1"));
        // c1's suggestion: a rule for c1's set, which would allow it.
        let rule = d.denial().unwrap().suggestion.clone().expect("a rule for c1's set");
        let c1 = NarrowSets::new(vec![set("c1", &format!("domain=a.test;domain=b.test path=/x;{rule}"))]);
        assert!(c1.evaluate(&base, &get("b.test", "/y")).0.is_allowed(), "{rule}");
        // The base denies: no owner, the base's suggestion.
        let (d, by) = sets.evaluate(&base, &get("c.test", "/"));
        assert_eq!(by, None);
        assert!(d.denial().unwrap().suggestion.is_some());
        // A set can never widen.
        let wide = NarrowSets::new(vec![set("w", "domain=*")]);
        assert!(!wide.evaluate(&base, &get("c.test", "/")).0.is_allowed());
        assert!(sets.could_allow_host(&base, "b.test"));
        let only_a = NarrowSets::new(vec![set("c1", "domain=a.test"), set("c2", "domain=*")]);
        assert!(!only_a.could_allow_host(&base, "b.test"));
        assert_eq!(only_a.host_narrowed_by(&base, "b.test"), Some("c1"));
        assert_eq!(only_a.host_narrowed_by(&base, "a.test"), None);
        assert_eq!(only_a.host_narrowed_by(&base, "z.test"), None);
        assert!(!wide.could_allow_host(&base, "c.test"));
        assert!(NarrowSets::default().could_allow_host(&base, "a.test"));
    }

    #[test]
    fn the_directory_is_read_at_start_and_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c1"), "domain=a.test").unwrap();
        std::fs::write(dir.path().join(".tmp.c2"), "garbage ===").unwrap();
        let cfg_dir = Some(dir.path().to_path_buf());
        let n = Narrowing {
            fixed: Vec::new(),
            source: Some(open_source(cfg_dir.as_deref().unwrap()).unwrap()),
            current: RwLock::default(),
        };
        assert_eq!(n.reload().unwrap(), 1);
        let base = Policy::from_texts(["domain=a.test;domain=b.test"]).unwrap();
        assert!(!n
            .current()
            .evaluate(&base, &get("b.test", "/"))
            .0
            .is_allowed());
        std::fs::write(dir.path().join("c2"), "domain=b.test").unwrap();
        assert_eq!(n.reload().unwrap(), 2);
        assert!(!n.current().could_allow_host(&base, "a.test"));
        std::fs::remove_file(dir.path().join("c1")).unwrap();
        std::fs::remove_file(dir.path().join("c2")).unwrap();
        assert_eq!(n.reload().unwrap(), 0);
        assert!(n
            .current()
            .evaluate(&base, &get("b.test", "/"))
            .0
            .is_allowed());
        // A set that does not parse keeps the previous sets in force.
        std::fs::write(dir.path().join("bad"), "domain=github.*").unwrap();
        assert!(matches!(n.reload(), Err(NarrowingError::Parse { .. })));
        assert!(n
            .current()
            .evaluate(&base, &get("b.test", "/"))
            .0
            .is_allowed());
        let applied = std::fs::read_to_string(dir.path().join(NARROWING_APPLIED_FILE)).unwrap();
        let lines: Vec<NarrowingApplied> = applied
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let owners: Vec<Vec<String>> = lines.into_iter().map(|l| l.owners).collect();
        assert_eq!(
            owners,
            vec![
                vec!["c1".to_string()],
                vec!["c1".into(), "c2".into()],
                vec![]
            ]
        );
    }

    #[test]
    fn fixed_sets_stay_across_reloads() {
        let n = Narrowing::fixed(vec![set(CONFIG_OWNER, "method=GET")]);
        assert_eq!(n.reload().unwrap(), 0);
        let base = Policy::from_texts(["domain=a.test"]).unwrap();
        let post = Request {
            method: "POST",
            ..get("a.test", "/")
        };
        assert_eq!(n.current().evaluate(&base, &post).1, Some(CONFIG_OWNER));
    }
}
