//! `boundary_runc::rewrite::read_config` on arbitrary bytes, then `rewrite`.
//!
//! Checks, beyond "never panics": when the rewrite succeeds, its output is a
//! config that `read_config` accepts again, and rewriting it once more with
//! the same plan gives the same document and the same host side
//! (idempotence, as the module documents). Run with both plans the shim
//! uses: with and without the CA bundle and resolv.conf mounts.
#![no_main]

use boundary_runc::rewrite::{read_config, rewrite, JailPlan};
use libfuzzer_sys::fuzz_target;

/// The golden tests' plans (shim/tests/golden.rs), so that the golden
/// `expected.json` files in the corpus are already-rewritten inputs.
fn plans() -> [JailPlan; 2] {
    let full = JailPlan {
        netns_path: "/run/boundary-runc/golden/netns".into(),
        hook_path: "/usr/local/bin/boundary-hook".into(),
        state_root: "/run/boundary-runc".into(),
        ca_bundle: Some("/run/boundary-runc/golden/ca-bundle.pem".into()),
        resolv_conf: Some("/run/boundary-runc/golden/resolv.conf".into()),
    };
    let bare = JailPlan { ca_bundle: None, resolv_conf: None, ..full.clone() };
    [full, bare]
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = read_config(data) else {
        return;
    };
    for plan in plans() {
        let Ok(once) = rewrite(spec.clone(), &plan) else {
            continue;
        };
        let bytes = serde_json::to_vec(&once.spec).expect("a Value serialises");
        let reread = read_config(&bytes).unwrap_or_else(|e| panic!("rewritten config is refused: {e}"));
        assert_eq!(reread, once.spec, "rewritten config does not read back equal");
        let twice = rewrite(reread, &plan).unwrap_or_else(|e| panic!("second rewrite fails: {e}"));
        assert_eq!(twice.spec, once.spec, "rewrite is not idempotent");
        assert_eq!(twice.host_side, once.host_side, "second rewrite lost the host side");
    }
});
