//! `boundary_runc::rewrite::read_config` on arbitrary bytes, then `rewrite`.
//!
//! Checks, beyond "never panics": when the rewrite succeeds, rewriting its
//! output once more with the same plan gives the same document and the same
//! host side (idempotence, as the module documents); the output, written as
//! JSON, is a config that `read_config` accepts, and reads back equal
//! unless it holds a non-integer number (see below). Run with both plans the
//! shim uses: with and without the CA bundle and resolv.conf mounts.
//!
//! Known, not a rewrite bug: serde_json without its `float_roundtrip`
//! feature parses some floats one ULP off (`1.3099999999999998e63` reads
//! back as `1.31e63`), so a float in a field the rewrite never touches can
//! change when the file is written and read again. OCI fields are all
//! integers; see docs/fuzzing.md.
#![no_main]

use boundary_runc::rewrite::{read_config, rewrite, JailPlan};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The golden tests' plans (shim/tests/golden.rs), so that the golden
/// `expected.json` files in the corpus are already-rewritten inputs.
fn plans() -> [JailPlan; 2] {
    let full = JailPlan {
        netns_path: "/run/boundary-runc/golden/netns".into(),
        hook_path: "/usr/local/bin/boundary-hook".into(),
        state_root: "/run/boundary-runc".into(),
        ca_bundle: Some("/run/boundary-runc/golden/ca-bundle.pem".into()),
        resolv_conf: Some("/run/boundary-runc/golden/resolv.conf".into()),
        userns: Some(boundary_runc::rewrite::OwnUserNs {
            path: "/run/boundary-runc/userns/golden".into(),
            uid_mappings: vec![boundary_runc::rewrite::IdMap::IDENTITY],
            gid_mappings: vec![boundary_runc::rewrite::IdMap::IDENTITY],
        }),
        no_net_admin: None,
    };
    let bare = JailPlan {
        ca_bundle: None,
        resolv_conf: None,
        ..full.clone()
    };
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
        let twice = rewrite(once.spec.clone(), &plan)
            .unwrap_or_else(|e| panic!("second rewrite fails: {e}"));
        assert_eq!(twice.spec, once.spec, "rewrite is not idempotent");
        assert_eq!(
            twice.host_side, once.host_side,
            "second rewrite lost the host side"
        );
        let bytes = serde_json::to_vec(&once.spec).expect("a Value serialises");
        let reread =
            read_config(&bytes).unwrap_or_else(|e| panic!("rewritten config is refused: {e}"));
        let again = rewrite(reread.clone(), &plan)
            .unwrap_or_else(|e| panic!("rewriting the written config fails: {e}"));
        assert_eq!(
            again.spec, reread,
            "rewriting the written config changes it"
        );
        if !has_float(&once.spec) {
            assert_eq!(
                reread, once.spec,
                "rewritten config does not read back equal"
            );
        }
    }
});

/// Whether `v` holds a number that is neither an i64 nor a u64.
fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}
