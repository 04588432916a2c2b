//! The spec rewrite on the `create` path: parse `config.json`, rewrite it,
//! serialise it, and the atomic write (temporary file + rename), on `runc spec`'s
//! config and on the config.json Docker 20.10 writes (default seccomp
//! profile, the larger case). Inputs are the golden test files.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use boundary_runc::rewrite::{read_config, rewrite, write_config_atomically, JailPlan};
use boundary_runc::seccomp::patch_seccomp;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::Value;

const CASES: [&str; 2] = ["runc-spec", "docker-20.10-default"];

fn golden(case: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(case)
        .join("config.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn plan() -> JailPlan {
    JailPlan {
        netns_path: PathBuf::from("/run/boundary-runc/netns/bench"),
        hook_path: PathBuf::from("/usr/local/bin/boundary-hook"),
        state_root: PathBuf::from("/run/boundary-runc"),
        ca_bundle: Some(PathBuf::from("/var/lib/boundary-runc/ca-bundle.pem")),
        resolv_conf: Some(PathBuf::from("/run/boundary-runc/bench/resolv.conf")),
        userns: Some(boundary_runc::rewrite::OwnUserNs {
            path: "/run/boundary-runc/userns/bench".into(),
            uid_mappings: vec![boundary_runc::rewrite::IdMap::IDENTITY],
            gid_mappings: vec![boundary_runc::rewrite::IdMap::IDENTITY],
        }),
        no_net_admin: None,
    }
}

fn pure(c: &mut Criterion) {
    let plan = plan();
    for case in CASES {
        let bytes = golden(case);
        let spec = read_config(&bytes).unwrap();
        c.bench_function(&format!("rewrite/{case}/parse"), |b| {
            b.iter(|| read_config(black_box(&bytes)).unwrap())
        });
        c.bench_function(&format!("rewrite/{case}/rewrite"), |b| {
            b.iter_batched(
                || spec.clone(),
                |s| rewrite(s, black_box(&plan)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        c.bench_function(&format!("rewrite/{case}/parse+rewrite+serialise"), |b| {
            b.iter(|| {
                let s = read_config(black_box(&bytes)).unwrap();
                let out = rewrite(s, &plan).unwrap();
                serde_json::to_vec(&out.spec).unwrap()
            })
        });
    }
    let docker = read_config(&golden("docker-20.10-default")).unwrap();
    let profile: Value = docker["linux"]["seccomp"].clone();
    c.bench_function("seccomp/docker default profile/patch", |b| {
        b.iter_batched(
            || profile.clone(),
            |mut p| patch_seccomp(&mut p).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

/// The atomic write: a temporary file beside it, renamed over it (no fsync
/// since 2026-11-22; with the file and directory fsyncs it cost 6.32 ms).
fn write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let spec = rewrite(
        read_config(&golden("docker-20.10-default")).unwrap(),
        &plan(),
    )
    .unwrap()
    .spec;
    std::fs::write(&path, b"{}").unwrap();
    c.bench_function(
        "rewrite/docker-20.10-default/write atomically",
        |b| b.iter(|| write_config_atomically(black_box(&path), black_box(&spec)).unwrap()),
    );
}

criterion_group!(benches, pure, write);
criterion_main!(benches);
