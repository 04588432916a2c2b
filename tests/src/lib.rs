//! Fixtures for the root end-to-end tests of boundary-runc.
//!
//! The tests in `tests/tests/` drive the real `boundary-runc` binary (built
//! by `cargo build --workspace --bins` into the same target directory as the
//! tests) over real runc/crun, network namespaces, veths and nftables.
//!
//! Every test that needs root calls [`require_root`] first: it panics, with
//! the `apt-get install` line to run, when a requirement is missing. Nothing
//! is skipped silently.
//!
//! Run them (as root) with
//! `cargo build --workspace --bins && cargo test --no-fail-fast -p boundary-tests -- --test-threads=2`
//! (`--no-fail-fast`: otherwise one failing test file hides the files after it).
//!
//! # Slots
//! Tests run in parallel, so each test that builds jails takes a *slot* `n`
//! (100..=199), unique across the whole crate, and with it:
//! - the jail address pool `10.213.n.0/24` ([`Settings::new`]),
//! - the origin link `10.231.n.0/30` and `fd00:231:n::/64` ([`Origin::start`]),
//! - the host sink port `20000 + n` ([`HostSink::bind`]),
//! - its own state root, CA dir, audit dir and runc root ([`Runtime::new`]).
//!
//! Slot 0 is for tests that never build a jail (`passthrough.rs`,
//! `policy_check.rs`).
//!
//! | slots | file |
//! |---|---|
//! | 100..=109 | `lifecycle.rs` |
//! | 110..=119 | `isolation.rs` |
//! | 120..=129 | `errors.rs` |
//! | 130..=139 | `boundary.rs` |
//! | 140..=149 | `errors.rs` (continued) |
//! | 150..=159 | `docker.rs` (Docker pools 10.213.150+, real dockerd) |
//! | 160..=164 | `pods.rs` (Kubernetes pods, CRI and CRI-O annotations) |
//! | 165..=169 | `docker_timing.rs` (Docker >= 28's timing, reproduced without dockerd) |
//! | 170..=179 | `containerd.rs` (170, 171), `podman.rs` (172, 173, 175, 176), `install_engines.rs` (174) |
//! | 220..=229 | `faults.rs` (223: Docker, restarts dockerd) |
//! | 230..=239 | `load.rs` |
//! | 200..=209, 210..=219 | `escapes.rs` (200..=209, 216, 217), `hostile_input.rs` (210..=215) (both share `tests/escape_world/`) |

pub mod binaries;
pub mod bundle;
pub mod deadline;
pub mod docker;
pub mod hostside;
pub mod hybrid_cgroups;
pub mod leaks;
pub mod oci_image;
pub mod origin;
pub mod probe;
pub mod require;
pub mod rootfs;
pub mod runtime;
pub mod settings;
pub mod sink;

pub use binaries::{binaries, Binaries};
pub use bundle::Bundle;
pub use deadline::poll_until;
pub use leaks::{unmount_below, LeakSnapshot};
pub use origin::{Counts, Origin};
pub use require::{require_root, require_tool};
pub use rootfs::shared_rootfs;
pub use runtime::{Outcome, Runtime};
pub use settings::Settings;
pub use sink::HostSink;
