//! The boundary-runc binaries under test, found beside the test executable.
//!
//! `cargo test` puts test executables in `target/<profile>/deps/`; the
//! workspace binaries are in `target/<profile>/`. `cargo test -p
//! boundary-tests` does not build them, so a missing one is a failure that
//! says to run `cargo build --workspace --bins` first.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Paths of the three binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `boundary-runc`, the runtime (shim).
    pub runtime: PathBuf,
    /// `boundary-hook`, the OCI poststop hook (found by the shim beside itself).
    pub hook: PathBuf,
    /// `boundary-sidecar`, the proxy (found by the shim beside itself).
    pub sidecar: PathBuf,
}

/// The directory the workspace binaries are built into.
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
    let deps = exe.parent().ok_or("the test executable has no parent directory")?;
    let dir = if deps.file_name().is_some_and(|n| n == "deps") { deps.parent().unwrap_or(deps) } else { deps };
    Ok(dir.to_path_buf())
}

/// Finds the binaries; the error names what is missing and how to build it.
pub fn locate() -> Result<Binaries, String> {
    let dir = target_dir()?;
    let b = Binaries {
        runtime: dir.join("boundary-runc"),
        hook: dir.join("boundary-hook"),
        sidecar: dir.join("boundary-sidecar"),
    };
    let missing: Vec<String> = [&b.runtime, &b.hook, &b.sidecar]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        Ok(b)
    } else {
        Err(format!(
            "binaries not built: {} — run `cargo build --workspace --bins` (with the same CARGO_TARGET_DIR and profile as the tests) first",
            missing.join(", ")
        ))
    }
}

/// The binaries; panics with the build command when one is missing.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Result<Binaries, String>> = OnceLock::new();
    match BINS.get_or_init(locate) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

