//! OCI bundles as `runc spec` makes them, adjusted for a test.
//!
//! Each bundle is a fresh temporary directory holding `config.json` from
//! `runc spec` (not `--rootless`: the network entry stays
//! `{"type":"network"}` with no path), with the shared read-only rootfs,
//! `terminal: false` and the test's process. Every change is written to
//! `config.json` at once, so the file on disk always matches.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::require::require_tool;
use crate::rootfs::shared_rootfs;

/// Docker's default capabilities for a container without `--cap-add`.
pub const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A bundle directory with its `config.json`.
#[derive(Debug)]
pub struct Bundle {
    dir: TempDir,
    spec: Value,
}

impl Bundle {
    /// A bundle whose process runs `args`.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new().prefix("boundary-e2e-bundle.").tempdir().expect("create bundle dir");
        let out = Command::new(require_tool("runc")).arg("spec").arg("--bundle").arg(dir.path()).output().expect("run runc spec");
        assert!(out.status.success(), "runc spec failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(dir.path().join("config.json")).expect("read config.json from runc spec");
        let mut spec: Value = serde_json::from_str(&text).expect("runc spec wrote JSON");
        spec["root"] = json!({"path": shared_rootfs(), "readonly": true});
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        let b = Bundle { dir, spec };
        b.write();
        b
    }

    /// A bundle for a detached container: `sleep 3600`, probed with `exec`.
    pub fn sleeper() -> Bundle {
        Bundle::new(&["sleep", "3600"])
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// The spec as the test built it (before any rewrite).
    pub fn spec(&self) -> &Value {
        &self.spec
    }

    /// `config.json` as it is on disk now (after `create`, the rewritten one).
    pub fn on_disk(&self) -> Value {
        let text = std::fs::read_to_string(self.config_path()).expect("read config.json");
        serde_json::from_str(&text).expect("config.json is JSON")
    }

    fn write(&self) {
        let text = serde_json::to_string_pretty(&self.spec).expect("serialise spec");
        std::fs::write(self.config_path(), text).expect("write config.json");
    }

    /// Sets `KEY=value` in `process.env` (replacing an entry for KEY).
    pub fn env(mut self, key: &str, value: &str) -> Bundle {
        let env = self.spec["process"]["env"].as_array_mut().expect("runc spec has process.env");
        let prefix = format!("{key}=");
        env.retain(|e| !e.as_str().is_some_and(|e| e.starts_with(&prefix)));
        env.push(json!(format!("{key}={value}")));
        self.write();
        self
    }

    /// Sets an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Bundle {
        if !self.spec["annotations"].is_object() {
            self.spec["annotations"] = json!({});
        }
        self.spec["annotations"][key] = json!(value);
        self.write();
        self
    }

    /// Adds a capability (`CAP_NET_RAW`, ...) to the bounding, effective and
    /// permitted sets.
    pub fn capability(mut self, cap: &str) -> Bundle {
        for set in ["bounding", "effective", "permitted"] {
            let list = self.spec["process"]["capabilities"][set].as_array_mut().expect("runc spec has capability sets");
            if !list.iter().any(|c| c == cap) {
                list.push(json!(cap));
            }
        }
        self.write();
        self
    }

    /// Docker 20.10's default capability set (see
    /// shared/notes/runtime-contract.md), which `runc spec`'s minimal one
    /// lacks: NET_RAW for ping, SETFCAP for `unshare -r` as uid 0, ...
    pub fn docker_capabilities(self) -> Bundle {
        DOCKER_CAPS.iter().fold(self, |b, c| b.capability(c))
    }

    /// Any other change to the spec.
    pub fn edit(mut self, f: impl FnOnce(&mut Value)) -> Bundle {
        f(&mut self.spec);
        self.write();
        self
    }

    /// Replaces `config.json` with arbitrary bytes (for malformed-config tests).
    pub fn overwrite_config(&self, bytes: &[u8]) {
        std::fs::write(self.config_path(), bytes).expect("write config.json");
    }
}
