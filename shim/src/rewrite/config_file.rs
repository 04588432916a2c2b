//! Reading and replacing a bundle's `config.json`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::access::{field, obj, opt_arr, opt_obj, string, Loc};
use super::{RewriteError, DOC};

/// Mode of a config.json written where none existed (what `runc spec`
/// gives under the usual umask).
const NEW_FILE_MODE: u32 = 0o644;

/// Parse `config.json` and check the shapes the rewrite relies on: an
/// object with a string `ociVersion`; `process`, `root` and `linux` objects
/// when present; `root.path` a string; `process.env`, `process.args` and
/// `linux.namespaces` arrays when present.
pub fn read_config(bytes: &[u8]) -> Result<Value, RewriteError> {
    let spec: Value = serde_json::from_slice(bytes).map_err(RewriteError::Parse)?;
    let top_loc = Loc::root(DOC);
    let top = obj(&spec, &top_loc)?;
    let version = field(top, "ociVersion").ok_or_else(|| top_loc.key("ociVersion").missing())?;
    string(version, &top_loc.key("ociVersion"))?;
    if let Some(process) = opt_obj(top, "process", &top_loc)? {
        let loc = top_loc.key("process");
        opt_arr(process, "env", &loc)?;
        opt_arr(process, "args", &loc)?;
        opt_obj(process, "capabilities", &loc)?;
    }
    if let Some(root) = opt_obj(top, "root", &top_loc)? {
        let loc = top_loc.key("root");
        string(
            field(root, "path").ok_or_else(|| loc.key("path").missing())?,
            &loc.key("path"),
        )?;
    }
    if let Some(linux) = opt_obj(top, "linux", &top_loc)? {
        opt_arr(linux, "namespaces", &top_loc.key("linux"))?;
    }
    check_spellings(&spec)?;
    Ok(spec)
}

/// The OCI fields (runtime-spec `config.go`) of the objects whose contents
/// decide the jail: the top level, `process`, its capabilities, `root`,
/// `hooks` and each hook, `linux`, each namespace entry and each mount.
const SPEC_FIELDS: &[&str] = &["ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks", "annotations", "linux", "solaris", "windows", "vm", "zos"];
const PROCESS_FIELDS: &[&str] = &[
    "terminal", "consoleSize", "user", "args", "commandLine", "env", "cwd", "capabilities", "rlimits", "noNewPrivileges",
    "apparmorProfile", "oomScoreAdj", "scheduler", "selinuxLabel", "ioPriority", "execCPUAffinity",
];
const CAPABILITY_FIELDS: &[&str] = &["bounding", "effective", "inheritable", "permitted", "ambient"];
const ROOT_FIELDS: &[&str] = &["path", "readonly"];
const HOOKS_FIELDS: &[&str] = &["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];
const HOOK_FIELDS: &[&str] = &["path", "args", "env", "timeout"];
const LINUX_FIELDS: &[&str] = &[
    "uidMappings", "gidMappings", "sysctl", "resources", "cgroupsPath", "namespaces", "devices", "seccomp", "rootfsPropagation",
    "maskedPaths", "readonlyPaths", "mountLabel", "intelRdt", "personality", "timeOffsets", "netDevices", "memoryPolicy",
];
const NAMESPACE_FIELDS: &[&str] = &["type", "path"];
const MOUNT_FIELDS: &[&str] = &["destination", "type", "source", "options", "uidMappings", "gidMappings"];

/// Go's `encoding/json`, which runc uses, matches a key to a field without
/// regard to case (the Kelvin sign and the long s count as `k` and `s`),
/// and decodes every matching key into the one field in turn: next to
/// `linux`, a `LINUX` member would be read as `linux` too, and what it
/// holds would reach runc around the rewrite. A key that folds to an OCI
/// field of its object but is spelled otherwise is refused.
fn check_spellings(spec: &Value) -> Result<(), RewriteError> {
    let top = Loc::root(DOC);
    check_object(spec, &top, SPEC_FIELDS)?;
    if let Some(process) = member(spec, "process") {
        let loc = top.key("process");
        check_object(process, &loc, PROCESS_FIELDS)?;
        if let Some(caps) = member(process, "capabilities") {
            check_object(caps, &loc.key("capabilities"), CAPABILITY_FIELDS)?;
        }
    }
    if let Some(root) = member(spec, "root") {
        check_object(root, &top.key("root"), ROOT_FIELDS)?;
    }
    if let Some(hooks) = member(spec, "hooks") {
        let loc = top.key("hooks");
        check_object(hooks, &loc, HOOKS_FIELDS)?;
        for (name, list) in hooks.as_object().into_iter().flatten() {
            for (i, hook) in list.as_array().into_iter().flatten().enumerate() {
                check_object(hook, &loc.key(name).idx(i), HOOK_FIELDS)?;
            }
        }
    }
    if let Some(linux) = member(spec, "linux") {
        let loc = top.key("linux");
        check_object(linux, &loc, LINUX_FIELDS)?;
        for (i, ns) in linux.get("namespaces").and_then(Value::as_array).into_iter().flatten().enumerate() {
            check_object(ns, &loc.key("namespaces").idx(i), NAMESPACE_FIELDS)?;
        }
    }
    for (i, mount) in spec.get("mounts").and_then(Value::as_array).into_iter().flatten().enumerate() {
        check_object(mount, &top.key("mounts").idx(i), MOUNT_FIELDS)?;
    }
    Ok(())
}

/// [`check_spellings`] for the process file of `exec --process` (a
/// process object at the top level), which runc decodes the same way.
pub fn check_process_spellings(process: &Value) -> Result<(), RewriteError> {
    let top = Loc::root("the exec process file");
    check_object(process, &top, PROCESS_FIELDS)?;
    match member(process, "capabilities") {
        Some(caps) => check_object(caps, &top.key("capabilities"), CAPABILITY_FIELDS),
        None => Ok(()),
    }
}

fn member<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| v.is_object())
}

fn check_object(v: &Value, loc: &Loc, fields: &[&str]) -> Result<(), RewriteError> {
    let Some(map) = v.as_object() else { return Ok(()) };
    for key in map.keys() {
        if let Some(field) = fields.iter().find(|f| **f != key.as_str() && go_fold_eq(key, f)) {
            return Err(RewriteError::Misspelled { at: loc.key(key).describe(), field: (*field).to_string() });
        }
    }
    Ok(())
}

/// Whether Go's case-insensitive match takes `a` and `b` for one name.
fn go_fold_eq(a: &str, b: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    a.chars().map(fold).eq(b.chars().map(fold))
}

/// Replace `path` with `spec` (compact JSON) so a reader sees the old or the
/// new file, never a part: write a temporary file in the same directory,
/// give it the original's mode and owner, rename it over `path`.
///
/// No fsync: the file is as transient as the engines make it (containerd,
/// Docker and `runc spec` write config.json without one), the rewrite is
/// re-applied (idempotently) at every `create`, and after a power loss the
/// container is gone anyway. The two fsyncs cost 0.3-15 ms per `create`
/// on a disk-backed bundle.
pub fn write_config_atomically(path: &Path, spec: &Value) -> io::Result<()> {
    replace_config(path, spec).map(drop)
}

/// [`write_config_atomically`], returning the replaced file still open
/// (`O_PATH`). Its inode, and the blocks a file system frees with it, are
/// released by whoever closes the last descriptor: on ext4 mounted with
/// `discard` that is a synchronous discard (0.1-0.9 ms, at times several
/// ms, measured on `create`) which a caller can hand to a process off the
/// critical path by keeping this open across a `fork`.
pub fn replace_config(path: &Path, spec: &Value) -> io::Result<Option<fs::File>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "config path has no file name")
    })?;
    // O_PATH: no read access needed, and never blocks (a FIFO, a device).
    let original = match OpenOptions::new().read(true).custom_flags(nix::libc::O_PATH).open(path) {
        Ok(f) => {
            let meta = f.metadata()?;
            Some((f, meta))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mode = original
        .as_ref()
        .map_or(NEW_FILE_MODE, |(_, m)| m.mode() & 0o7777);
    let tmp = temp_name(dir, name);
    let result = write_temp(&tmp, spec, mode, original.as_ref().map(|(_, m)| m))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| original.map(|(f, _)| f))
}

fn temp_name(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".boundary-runc.{}.{nanos}.tmp", std::process::id()));
    dir.join(tmp)
}

fn write_temp(
    tmp: &Path,
    spec: &Value,
    mode: u32,
    original: Option<&fs::Metadata>,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    if let Some(meta) = original {
        let mine = file.metadata()?;
        if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        }
    }
    // Set after chown: chown clears set-id bits.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    let mut out = io::BufWriter::new(&mut file);
    serde_json::to_writer(&mut out, spec)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_runc_would_fold_onto_an_oci_field_are_refused() {
        let base = json!({"ociVersion": "1.0.2", "process": {"args": ["sh"], "capabilities": {"bounding": []}},
            "root": {"path": "rootfs"}, "hooks": {"poststop": [{"path": "/h"}]},
            "linux": {"namespaces": [{"type": "pid"}]}, "mounts": [{"destination": "/x", "type": "bind"}], "x-other": 1});
        read_config(base.to_string().as_bytes()).unwrap();
        let cases: [(&str, Value, &str); 9] = [
            ("/LINUX", json!({"namespaces": []}), "config.json: LINUX"),
            ("/Hooks", json!({}), "config.json: Hooks"),
            ("/process/Capabilities", json!({}), "config.json: process.Capabilities"),
            ("/process/capabilities/Bounding", json!(["CAP_NET_ADMIN"]), "process.capabilities.Bounding"),
            ("/linux/NAMESPACES", json!([]), "linux.NAMESPACES"),
            ("/linux/namespaces/0/Path", json!("/proc/1/ns/net"), "linux.namespaces[0].Path"),
            ("/linux/netdevices", json!({}), "linux.netdevices"),
            ("/hooks/poststop/0/PATH", json!("/x"), "hooks.poststop[0].PATH"),
            ("/hoo\u{212A}\u{017F}", json!({}), "hoo\u{212A}\u{017F}"),
        ];
        for (at, value, want) in cases {
            let mut spec = base.clone();
            let (parent, key) = at.rsplit_once('/').unwrap();
            let key = key.to_string();
            spec.pointer_mut(if parent.is_empty() { "" } else { parent }).unwrap().as_object_mut().unwrap().insert(key, value);
            let e = read_config(spec.to_string().as_bytes()).unwrap_err().to_string();
            assert!(e.contains("OCI field") && e.contains(want.trim_start_matches('/')), "{at}: {e}");
        }
    }

    #[test]
    fn read_config_checks_the_shapes_it_promises() {
        let ok =
            br#"{"ociVersion":"1.0.2","process":{"args":["sh"]},"root":{"path":"rootfs"},"x":1}"#;
        assert_eq!(read_config(ok).unwrap()["x"], 1);
        let cases: [(&[u8], &str); 7] = [
            (b"{", "config.json: not valid JSON"),
            (b"[]", "config.json: the top level must be an object"),
            (b"{}", "config.json: ociVersion is missing"),
            (
                br#"{"ociVersion":1}"#,
                "config.json: ociVersion must be a string",
            ),
            (
                br#"{"ociVersion":"1","process":[]}"#,
                "config.json: process must be an object",
            ),
            (
                br#"{"ociVersion":"1","root":{}}"#,
                "config.json: root.path is missing",
            ),
            (
                br#"{"ociVersion":"1","linux":{"namespaces":{}}}"#,
                "config.json: linux.namespaces must be an array",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(read_config(input).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let spec = json!({"ociVersion": "1.0.2", "b": [1, 2], "a": null});
        write_config_atomically(&path, &spec).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            r#"{"ociVersion":"1.0.2","b":[1,2],"a":null}"#
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
    }

    #[test]
    fn the_replaced_file_stays_open_until_its_holder_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, br#"{"old":true}"#).unwrap();
        let old_ino = fs::metadata(&path).unwrap().ino();
        let held = replace_config(&path, &json!({"new": true})).unwrap().expect("the old file");
        assert_eq!(held.metadata().unwrap().ino(), old_ino);
        assert_eq!(held.metadata().unwrap().nlink(), 0, "unlinked, alive only through the descriptor");
        assert_ne!(fs::metadata(&path).unwrap().ino(), old_ino);
        assert_eq!(fs::read_to_string(&path).unwrap(), r#"{"new":true}"#);
        assert!(replace_config(&dir.path().join("absent.json"), &json!({})).unwrap().is_none());
    }

    #[test]
    fn atomic_write_creates_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        write_config_atomically(&path, &json!({})).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, NEW_FILE_MODE);
    }
}
