//! Container images built locally from the shared rootfs, for engines that
//! import archives (no registry): a plain rootfs tarball (`podman import`)
//! and an OCI image layout tar (`ctr images import`).
//!
//! The OCI archive holds one uncompressed layer (the rootfs tar), an image
//! config for the host's platform with `PATH` and `sleep 1000` as its
//! command, a manifest and an `index.json` whose manifest carries the image
//! name (`io.containerd.image.name`, which containerd's importer uses as
//! is, and `org.opencontainers.image.ref.name`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::require::require_tool;
use crate::rootfs::shared_rootfs;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The image's environment (ctr and podman take it from the image config).
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `tar -cf DEST` of the shared rootfs (numeric owner root, sorted names).
/// Returns `dest`.
pub fn rootfs_tar(dest: &Path) -> PathBuf {
    let out = Command::new(require_tool("tar"))
        .args([
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-C",
        ])
        .arg(shared_rootfs())
        .arg("-cf")
        .arg(dest)
        .arg(".")
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar of the rootfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest.to_path_buf()
}

/// `sha256:<hex>` of a file.
fn digest(file: &Path) -> String {
    let out = Command::new(require_tool("sha256sum"))
        .arg(file)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("sha256sum printed nothing for {}", file.display()));
    format!("sha256:{hex}")
}

/// The host's platform in OCI terms.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes `value` as a blob of `layout`; returns its descriptor.
fn blob(layout: &Path, media_type: &str, value: &Value) -> Value {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, serde_json::to_vec(value).expect("json")).expect("write blob");
    move_blob(layout, &tmp, media_type)
}

/// Moves `file` into `layout/blobs/sha256/`; returns its descriptor.
fn move_blob(layout: &Path, file: &Path, media_type: &str) -> Value {
    let d = digest(file);
    let size = std::fs::metadata(file).expect("blob size").len();
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("blobs dir");
    std::fs::rename(file, dir.join(d.trim_start_matches("sha256:"))).expect("move blob");
    json!({"mediaType": media_type, "digest": d, "size": size})
}

/// An OCI image layout tar of the shared rootfs named `name` (a full
/// reference, e.g. `localhost/boundary-e2e-busybox:latest`), built in
/// `dir`. Returns the archive's path.
pub fn oci_archive(dir: &Path, name: &str) -> PathBuf {
    let layout = dir.join("oci-layout-dir");
    std::fs::create_dir_all(&layout).expect("layout dir");
    let layer_tar = rootfs_tar(&dir.join("layer.tar"));
    let diff_id = digest(&layer_tar);
    let layer = move_blob(&layout, &layer_tar, LAYER_MEDIA_TYPE);
    let config = json!({
        "architecture": architecture(),
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": ["/bin/sleep", "1000"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = blob(&layout, CONFIG_MEDIA_TYPE, &config);
    let manifest = json!({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config, "layers": [layer]});
    let mut manifest = blob(&layout, MANIFEST_MEDIA_TYPE, &manifest);
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    manifest["annotations"] =
        json!({"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag});
    manifest["platform"] = json!({"architecture": architecture(), "os": "linux"});
    let index = json!({"schemaVersion": 2, "manifests": [manifest]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index.json");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let archive = dir.join("image.oci.tar");
    let out = Command::new(require_tool("tar"))
        .args([
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-C",
        ])
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar of the OCI layout failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    archive
}
