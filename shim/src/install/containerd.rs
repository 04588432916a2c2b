//! containerd: a CRI runtime entry in the main config
//! (`/etc/containerd/config.toml`).
//!
//! Not a drop-in: containerd 1.x merges `imports` one plugin section at a
//! time, so a drop-in that names the CRI plugin *replaces* the main
//! config's whole CRI section (its runc runtime, sandbox image, registry
//! settings: containerd 1.6 then refuses to load CRI at all, "no
//! corresponding runtime configured ... default_runtime_name"). See
//! containerd issue 5837. Editing the main config works with every
//! version. (doctor still recognises an entry placed in a drop-in by hand.)
//!
//! The entry uses runc's shim (`io.containerd.runc.v2`) with `BinaryName`
//! set to boundary-runc and the main config's runc options copied
//! (`SystemdCgroup` above all: a runtime with another cgroup driver than
//! the kubelet's breaks pods). `pod_annotations` lets `io.boundary.*` pod
//! annotations reach the OCI spec. The main config is edited with
//! `toml_edit`, so its comments and layout stay as they were.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, Value};

use super::{read_optional, FileChange, InstallError, Registration};

/// The CRI plugin's id in each config version containerd reads.
fn cri_plugin(version: i64) -> Option<&'static str> {
    match version {
        2 => Some("io.containerd.grpc.v1.cri"),
        3 => Some("io.containerd.cri.v1.runtime"),
        _ => None,
    }
}

/// Pod annotations containerd passes on to the runtime.
pub const POD_ANNOTATIONS: &str = "io.boundary.*";

fn malformed(path: &Path, message: impl Into<String>) -> InstallError {
    InstallError::Malformed { path: path.to_path_buf(), message: message.into() }
}

fn parse(path: &Path, text: &str) -> Result<DocumentMut, InstallError> {
    text.parse::<DocumentMut>().map_err(|e| malformed(path, e.to_string().trim().to_string()))
}

/// The main config's version (containerd reads a file without one as 1).
fn version(path: &Path, doc: &DocumentMut) -> Result<i64, InstallError> {
    let v = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
    if cri_plugin(v).is_none() {
        return Err(malformed(path, format!("config version {v}: convert it first with `containerd config migrate` (boundary-runc writes version 2 or 3 entries)")));
    }
    Ok(v)
}

/// The runc entry's options, without `BinaryName`.
fn runc_options(doc: &DocumentMut, plugin: &str) -> Vec<(String, Value)> {
    let opts = doc
        .get("plugins")
        .and_then(|i| i.get(plugin))
        .and_then(|i| i.get("containerd"))
        .and_then(|i| i.get("runtimes"))
        .and_then(|i| i.get("runc"))
        .and_then(|i| i.get("options"))
        .and_then(Item::as_table_like);
    let Some(opts) = opts else { return Vec::new() };
    opts.iter()
        .filter(|(k, _)| *k != "BinaryName")
        .filter_map(|(k, item)| Some((k.to_string(), item.as_value()?.clone().decorated(" ", ""))))
        .collect()
}

/// An existing table, or a new implicit one (not printed while empty).
fn child<'a>(path: &Path, t: &'a mut Table, key: &str) -> Result<&'a mut Table, InstallError> {
    let item = t.entry(key).or_insert_with(|| {
        let mut n = Table::new();
        n.set_implicit(true);
        Item::Table(n)
    });
    item.as_table_mut().ok_or_else(|| malformed(path, format!("`{key}` is not a table in standard [table] form")))
}

fn runtimes_table<'a>(path: &Path, doc: &'a mut DocumentMut, plugin: &str) -> Result<&'a mut Table, InstallError> {
    let plugins = child(path, doc.as_table_mut(), "plugins")?;
    let cri = child(path, plugins, plugin)?;
    let containerd = child(path, cri, "containerd")?;
    child(path, containerd, "runtimes")
}

/// The runtime entry: runc's shim with BinaryName, runc's options copied.
/// Placed at the end of the file, where a person looks for an addition.
fn runtime_entry(reg: &Registration, runc_options: Vec<(String, Value)>) -> Table {
    let mut entry = Table::new();
    entry.set_position(Some(isize::MAX - 1));
    entry.insert("runtime_type", toml_edit::value("io.containerd.runc.v2"));
    let mut ann = toml_edit::Array::new();
    ann.push(POD_ANNOTATIONS);
    entry.insert("pod_annotations", toml_edit::value(ann));
    let mut options = Table::new();
    options.set_position(Some(isize::MAX));
    options.insert("BinaryName", toml_edit::value(reg.binary_str()));
    for (k, v) in runc_options {
        options.insert(&k, Item::Value(v));
    }
    entry.insert("options", Item::Table(options));
    entry
}

/// Comment on a runc entry that `install` had to write (see [`keep_default_runc`]).
const RUNC_MARKER: &str = "# Added by `boundary-runc install containerd`: containerd's built-in runc entry";

/// containerd's CRI defaults hold one runtime, `runc`; a config that
/// declares any runtime replaces that whole map, and without the default
/// runtime the CRI plugin does not load at all ("no corresponding runtime
/// configured ... default_runtime_name"). So when the config relies on the
/// built-in runc entry, it is written out, marked, before ours is added.
fn keep_default_runc(doc: &DocumentMut, plugin: &str, runtimes: &mut Table) {
    let default = doc
        .get("plugins")
        .and_then(|i| i.get(plugin))
        .and_then(|i| i.get("containerd"))
        .and_then(|i| i.get("default_runtime_name"))
        .and_then(Item::as_str)
        .unwrap_or("runc");
    if default != "runc" || runtimes.contains_key("runc") {
        return;
    }
    let mut runc = Table::new();
    runc.set_position(Some(isize::MAX - 2));
    runc.decor_mut().set_prefix(format!("\n{RUNC_MARKER}\n"));
    runc.insert("runtime_type", toml_edit::value("io.containerd.runc.v2"));
    runtimes.insert("runc", Item::Table(runc));
}

/// Whether two config texts mean the same.
fn same_meaning(a: &str, b: &str) -> bool {
    matches!((toml::from_str::<toml::Value>(a), toml::from_str::<toml::Value>(b)), (Ok(x), Ok(y)) if x == y)
}

/// The main config with the runtime entry (a missing file becomes a
/// minimal version 2 config). An entry that is already right leaves the
/// text as it is.
pub fn with_runtime(path: &Path, text: Option<&str>, reg: &Registration) -> Result<String, InstallError> {
    let original = text.unwrap_or("version = 2\n");
    let mut doc = parse(path, original)?;
    let plugin = cri_plugin(version(path, &doc)?).unwrap_or_default();
    let options = runc_options(&doc, plugin);
    let snapshot = doc.clone();
    let runtimes = runtimes_table(path, &mut doc, plugin)?;
    keep_default_runc(&snapshot, plugin, runtimes);
    runtimes.insert(&reg.name, Item::Table(runtime_entry(reg, options)));
    let new = doc.to_string();
    Ok(if text.is_some() && same_meaning(original, &new) { original.to_string() } else { new })
}

/// The main config without the runtime entry.
pub fn without_runtime(path: &Path, text: Option<&str>, name: &str) -> Result<Option<String>, InstallError> {
    let Some(original) = text else { return Ok(None) };
    let mut doc = parse(path, original)?;
    let plugin = cri_plugin(version(path, &doc)?).unwrap_or_default();
    let runtimes = doc
        .get_mut("plugins")
        .and_then(|i| i.get_mut(plugin))
        .and_then(|i| i.get_mut("containerd"))
        .and_then(|i| i.get_mut("runtimes"))
        .and_then(Item::as_table_like_mut);
    let Some(runtimes) = runtimes else { return Ok(Some(original.to_string())) };
    if runtimes.remove(name).is_none() {
        return Ok(Some(original.to_string()));
    }
    // The runc entry install wrote goes too, unless other runtimes came since.
    let ours = runtimes.get("runc").and_then(Item::as_table).is_some_and(|t| {
        t.decor().prefix().and_then(|p| p.as_str()).is_some_and(|p| p.contains(RUNC_MARKER))
    });
    if ours && runtimes.len() == 1 {
        runtimes.remove("runc");
    }
    Ok(Some(doc.to_string()))
}

/// The CRI runtimes a containerd config file (main or drop-in) declares,
/// as (name, BinaryName); an entry without BinaryName runs plain runc.
pub fn registered(text: &str) -> Vec<(String, String)> {
    let Ok(doc) = text.parse::<DocumentMut>() else { return Vec::new() };
    let mut found = Vec::new();
    for plugin in ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"] {
        let runtimes = doc.get("plugins").and_then(|i| i.get(plugin)).and_then(|i| i.get("containerd")).and_then(|i| i.get("runtimes"));
        let Some(runtimes) = runtimes.and_then(Item::as_table_like) else { continue };
        for (name, entry) in runtimes.iter() {
            let bin = entry.get("options").and_then(|o| o.get("BinaryName")).and_then(Item::as_str).unwrap_or_default();
            found.push((name.to_string(), bin.to_string()));
        }
    }
    found
}

/// The default runtime a config names but does not declare, when it
/// declares other runtimes (containerd's CRI plugin then does not load).
pub fn missing_default_runtime(text: &str) -> Option<String> {
    let doc = text.parse::<DocumentMut>().ok()?;
    let plugin = cri_plugin(doc.get("version").and_then(Item::as_integer).unwrap_or(1))?;
    let containerd = doc.get("plugins")?.get(plugin)?.get("containerd")?;
    let runtimes = containerd.get("runtimes")?.as_table_like()?;
    let default = containerd.get("default_runtime_name").and_then(Item::as_str).unwrap_or("runc");
    (!runtimes.is_empty() && !runtimes.contains_key(default)).then(|| default.to_string())
}

/// The `imports` of a main config.
pub fn imports(text: &str) -> Vec<String> {
    let Ok(doc) = text.parse::<DocumentMut>() else { return Vec::new() };
    let Some(arr) = doc.get("imports").and_then(Item::as_array) else { return Vec::new() };
    arr.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

pub fn plan_install(paths: &super::Paths, reg: &Registration) -> Result<Vec<FileChange>, InstallError> {
    let path = &paths.containerd_config;
    let before = read_optional(path)?;
    let after = with_runtime(path, before.as_deref(), reg)?;
    Ok(vec![FileChange::new(path.clone(), before, Some(after))])
}

pub fn plan_uninstall(paths: &super::Paths, name: &str) -> Result<Vec<FileChange>, InstallError> {
    let path = &paths.containerd_config;
    let before = read_optional(path)?;
    let after = without_runtime(path, before.as_deref(), name)?;
    Ok(vec![FileChange::new(path.clone(), before, after)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n";
    const SYSTEMD: &str = "# my comment\nversion = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true # keep\n    BinaryName = \"/usr/sbin/runc\"\n";

    fn reg() -> Registration {
        Registration::new("boundary-runc", "/usr/local/bin/boundary-runc".into()).unwrap()
    }

    fn value(text: &str) -> toml::Value {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn entry_has_the_binary_and_the_runc_options_and_the_rest_is_kept() {
        let p = Path::new("config.toml");
        let text = with_runtime(p, Some(SYSTEMD), &reg()).unwrap();
        assert!(text.starts_with("# my comment\n") && text.contains("SystemdCgroup = true # keep"), "{text}");
        let v = value(&text);
        let rts = &v["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert_eq!(rts["runc"]["options"]["BinaryName"].as_str(), Some("/usr/sbin/runc"));
        let rt = &rts["boundary-runc"];
        assert_eq!(rt["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(rt["pod_annotations"][0].as_str(), Some("io.boundary.*"));
        assert_eq!(rt["options"]["BinaryName"].as_str(), Some("/usr/local/bin/boundary-runc"));
        assert_eq!(rt["options"]["SystemdCgroup"].as_bool(), Some(true));
        assert_eq!(registered(&text)[1], ("boundary-runc".to_string(), "/usr/local/bin/boundary-runc".to_string()));
        assert_eq!(with_runtime(p, Some(&text), &reg()).unwrap(), text, "install twice = same file");
    }

    #[test]
    fn the_builtin_runc_entry_is_kept_and_removed_again() {
        let p = Path::new("config.toml");
        let text = with_runtime(p, Some(DEBIAN), &reg()).unwrap();
        let v = value(&text);
        let rts = &v["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert_eq!(rts["runc"]["runtime_type"].as_str(), Some("io.containerd.runc.v2"), "{text}");
        assert!(text.contains(RUNC_MARKER));
        assert_eq!(missing_default_runtime(&text), None);
        assert_eq!(missing_default_runtime(DEBIAN), None);
        let broken = text.replace("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]", "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.old]");
        assert_eq!(missing_default_runtime(&broken).as_deref(), Some("runc"), "{broken}");
        let removed = without_runtime(p, Some(&text), "boundary-runc").unwrap().unwrap();
        assert_eq!(value(&removed), value(DEBIAN), "{removed}");
        // Another runtime added after install keeps the runc entry alive.
        let mut doc: DocumentMut = text.parse().unwrap();
        doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["nvidia"]["runtime_type"] = toml_edit::value("io.containerd.runc.v2");
        let removed = without_runtime(p, Some(&doc.to_string()), "boundary-runc").unwrap().unwrap();
        assert!(value(&removed)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"].is_table(), "{removed}");
        // Another default runtime: nothing added.
        let other = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"crun\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        assert!(!with_runtime(p, Some(other), &reg()).unwrap().contains(RUNC_MARKER));
    }

    #[test]
    fn missing_and_version_3_configs() {
        let p = Path::new("config.toml");
        let fresh = value(&with_runtime(p, None, &reg()).unwrap());
        assert_eq!(fresh["version"].as_integer(), Some(2));
        assert!(fresh["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["boundary-runc"].is_table());
        let v3 = value(&with_runtime(p, Some("version = 3\n"), &reg()).unwrap());
        assert!(v3["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["boundary-runc"].is_table());
        let e = with_runtime(p, Some("[plugins.cri]\n"), &reg()).unwrap_err().to_string();
        assert!(e.contains("config version 1"), "{e}");
    }

    #[test]
    fn uninstall_restores_the_original_semantically() {
        let p = Path::new("config.toml");
        for original in [DEBIAN, SYSTEMD] {
            let installed = with_runtime(p, Some(original), &reg()).unwrap();
            let removed = without_runtime(p, Some(&installed), "boundary-runc").unwrap().unwrap();
            assert_eq!(value(&removed), value(original), "{removed}");
            assert_eq!(without_runtime(p, Some(original), "boundary-runc").unwrap().as_deref(), Some(original));
        }
    }

    #[test]
    fn install_twice_then_uninstall_with_backups() {
        let d = tempfile::tempdir().unwrap();
        let p = crate::install::Paths::under(d.path());
        std::fs::write(&p.containerd_config, DEBIAN).unwrap();
        let mut out = Vec::new();
        assert!(crate::install::apply_all(&plan_install(&p, &reg()).unwrap(), false, &mut out).unwrap());
        let backup = d.path().join("config.toml.boundary-runc.bak");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), DEBIAN);
        std::fs::remove_file(&backup).unwrap();
        assert!(!crate::install::apply_all(&plan_install(&p, &reg()).unwrap(), false, &mut out).unwrap());
        assert!(!backup.exists(), "no backup without a change");
        assert!(crate::install::apply_all(&plan_uninstall(&p, "boundary-runc").unwrap(), false, &mut out).unwrap());
        assert_eq!(value(&std::fs::read_to_string(&p.containerd_config).unwrap()), value(DEBIAN));
    }
}
