//! Golden tests of the OCI spec rewrite and the seccomp patch.
//!
//! Each directory under `shim/testdata/golden/` holds an input
//! `config.json` and the `expected.json` the rewrite must produce,
//! byte-compared after pretty-printing. After a deliberate change to the
//! rewrite, regenerate the expected files (and
//! `seccomp-profiles/docker-default-boundary.json`) with
//!
//!     BOUNDARY_BLESS=1 cargo test -p boundary-runc --test golden
//!
//! and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use boundary_contract::HostSide;
use boundary_runc::rewrite::{
    annotation, env_value, host_side, read_config, rewrite, JailPlan, RewriteError, CA_BUNDLE_DEST,
    CA_ENV_VARS, HOST_SIDE_ANNOTATION,
};
use boundary_runc::seccomp::{patch_seccomp, NAMESPACE_SYSCALLS};
use serde_json::{json, Value};

const NETNS: &str = "/run/boundary-runc/golden/netns";

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn profiles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../seccomp-profiles")
}

fn blessing() -> bool {
    std::env::var_os("BOUNDARY_BLESS").is_some_and(|v| v != "0")
}

fn full_plan() -> JailPlan {
    JailPlan {
        netns_path: NETNS.into(),
        hook_path: "/usr/local/bin/boundary-hook".into(),
        state_root: "/run/boundary-runc".into(),
        ca_bundle: Some("/run/boundary-runc/golden/ca-bundle.pem".into()),
        resolv_conf: Some("/run/boundary-runc/golden/resolv.conf".into()),
        userns: Some(boundary_contract::OwnUserNs {
            path: "/run/boundary-runc/userns/golden".into(),
            uid_mappings: vec![boundary_contract::IdMap::IDENTITY],
            gid_mappings: vec![boundary_contract::IdMap::IDENTITY],
        }),
        no_net_admin: None,
    }
}

fn bare_plan() -> JailPlan {
    JailPlan {
        ca_bundle: None,
        resolv_conf: None,
        ..full_plan()
    }
}

struct Case {
    name: &'static str,
    plan: JailPlan,
    host_side: HostSide,
    warnings: usize,
}

fn cases() -> Vec<Case> {
    let path = |p: &str| HostSide::Path { path: p.into() };
    vec![
        Case {
            name: "runc-spec",
            plan: full_plan(),
            host_side: HostSide::Fresh,
            warnings: 0,
        },
        Case {
            name: "no-network",
            plan: full_plan(),
            host_side: HostSide::Absent,
            warnings: 0,
        },
        Case {
            name: "netns-path-cri",
            plan: full_plan(),
            host_side: path("/var/run/netns/cni-3c1f2b9e-7d4a-4f61-9a8e-2f0d6c5b1a77"),
            warnings: 0,
        },
        Case {
            name: "no-seccomp-minimal",
            plan: full_plan(),
            host_side: HostSide::Absent,
            warnings: 0,
        },
        Case {
            name: "docker-20.10-default",
            plan: full_plan(),
            host_side: HostSide::Fresh,
            warnings: 0,
        },
        Case {
            name: "docker-20.10-host-network",
            plan: bare_plan(),
            host_side: path("/var/run/docker/netns/default"),
            warnings: 0,
        },
    ]
}

fn input(name: &str) -> Value {
    let bytes = fs::read(testdata().join("golden").join(name).join("config.json")).unwrap();
    read_config(&bytes).unwrap()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

/// Compare `actual` with the file, or write it when blessing.
fn golden_compare(path: &Path, actual: &str) {
    if blessing() {
        fs::write(path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with BOUNDARY_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the rewrite's output (BOUNDARY_BLESS=1 regenerates it)\n--- actual ---\n{actual}",
        path.display()
    );
}

#[test]
fn golden_outputs_match() {
    for case in cases() {
        let out = rewrite(input(case.name), &case.plan).unwrap();
        golden_compare(
            &testdata()
                .join("golden")
                .join(case.name)
                .join("expected.json"),
            &pretty(&out.spec),
        );
        assert_eq!(out.host_side, case.host_side, "{}", case.name);
        assert_eq!(
            out.warnings.len(),
            case.warnings,
            "{}: {:?}",
            case.name,
            out.warnings
        );
        let recorded = annotation(&out.spec, HOST_SIDE_ANNOTATION)
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<HostSide>(recorded).unwrap(),
            case.host_side
        );
        assert_eq!(
            host_side(&out.spec).unwrap(),
            HostSide::Path { path: NETNS.into() }
        );
    }
}

#[test]
fn rewrite_is_idempotent_on_every_golden_input() {
    for case in cases() {
        let once = rewrite(input(case.name), &case.plan).unwrap();
        let twice = rewrite(once.spec.clone(), &case.plan).unwrap();
        assert_eq!(pretty(&twice.spec), pretty(&once.spec), "{}", case.name);
        assert_eq!(twice.host_side, once.host_side, "{}", case.name);
        assert_eq!(twice.warnings, once.warnings, "{}", case.name);
        if let Some(change) = twice.seccomp {
            assert!(
                change.is_empty(),
                "{}: second seccomp patch changed {change:?}",
                case.name
            );
        }
    }
}

/// Where the rewrite may change what it finds.
#[derive(PartialEq)]
enum Mode {
    Exact,
    /// The input must be a prefix of the output.
    AppendOnly,
    /// Checked by a dedicated test.
    Elsewhere,
}

fn mode(path: &str) -> Mode {
    match path {
        "process.env"
        | "mounts"
        | "hooks.poststop"
        | "process.capabilities.bounding"
        | "process.capabilities.effective"
        | "process.capabilities.permitted" => Mode::AppendOnly,
        // uidMappings / gidMappings: the jail's user namespace's maps
        // (the spec's own when it had a user entry, see rewrite's tests).
        "linux.namespaces" | "linux.seccomp.syscalls" | "linux.uidMappings" | "linux.gidMappings" => Mode::Elsewhere,
        _ => Mode::Exact,
    }
}

/// Keys the rewrite may create.
const CREATED: [&str; 14] = [
    "annotations",
    "annotations.run.boundary-runc.host-side",
    "hooks",
    "hooks.poststop",
    "linux",
    "linux.namespaces",
    "linux.uidMappings",
    "linux.gidMappings",
    "mounts",
    "process.env",
    "process.capabilities",
    "process.capabilities.bounding",
    "process.capabilities.effective",
    "process.capabilities.permitted",
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Every value of `inp` is in `out`, in the same place and key order, except
/// where [`mode`] allows a change.
fn assert_lossless(path: &str, inp: &Value, out: &Value) {
    match mode(path) {
        Mode::Elsewhere => {}
        Mode::AppendOnly => {
            let (i, o) = (inp.as_array().unwrap(), out.as_array().unwrap());
            assert!(
                o.len() >= i.len() && o[..i.len()] == i[..],
                "{path}: not an append"
            );
        }
        Mode::Exact => match (inp, out) {
            (Value::Object(i), Value::Object(o)) => {
                let order: Vec<_> = o.keys().filter(|k| i.contains_key(*k)).collect();
                assert!(
                    order.iter().copied().eq(i.keys()),
                    "{path}: key order changed"
                );
                for (k, v) in i {
                    assert_lossless(&join(path, k), v, &o[k]);
                }
                for k in o.keys().filter(|k| !i.contains_key(*k)) {
                    let p = join(path, k);
                    assert!(CREATED.contains(&p.as_str()), "{p}: added");
                }
            }
            (Value::Array(i), Value::Array(o)) => {
                assert_eq!(i.len(), o.len(), "{path}: length changed");
                for (a, b) in i.iter().zip(o) {
                    assert_lossless(&format!("{path}[]"), a, b);
                }
            }
            _ => assert_eq!(inp, out, "{path}: changed"),
        },
    }
}

#[test]
fn rewrite_keeps_everything_it_does_not_own() {
    for case in cases() {
        let inp = input(case.name);
        let out = rewrite(inp.clone(), &case.plan).unwrap().spec;
        assert_lossless("", &inp, &out);
        // Namespaces: every entry but the network and user ones unchanged,
        // in order; the user entry is the plan's.
        let others = |v: &Value| -> Vec<Value> {
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["type"] != "network" && n["type"] != "user")
                .cloned()
                .collect()
        };
        assert_eq!(others(&inp), others(&out), "{}", case.name);
        if let Some(own) = &case.plan.userns {
            let users: Vec<_> = out["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] == "user").collect();
            assert_eq!(users, [&json!({"type": "user", "path": own.path})], "{}", case.name);
            assert_eq!(out["linux"]["uidMappings"], json!([{"containerID": 0, "hostID": 0, "size": 4294967295u32}]), "{}", case.name);
        }
        let nets: Vec<_> = out["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(
            nets,
            [&json!({"type": "network", "path": NETNS})],
            "{}",
            case.name
        );
    }
}

#[test]
fn unknown_fields_survive_at_every_level() {
    let mut spec = input("netns-path-cri");
    spec["x-top"] = json!({"nested": [1, 2.5, null]});
    spec["process"]["x-process"] = json!("p");
    spec["process"]["capabilities"]["x-caps"] = json!(true);
    spec["linux"]["x-linux"] = json!({"a": "b"});
    spec["linux"]["namespaces"][0]["x-ns"] = json!(1);
    spec["linux"]["seccomp"]["x-seccomp"] = json!([]);
    spec["linux"]["seccomp"]["syscalls"][1]["x-rule"] = json!("kept");
    spec["mounts"][0]["x-mount"] = json!(0);
    let out = rewrite(spec.clone(), &full_plan()).unwrap().spec;
    assert_eq!(out["x-top"], json!({"nested": [1, 2.5, null]}));
    assert_eq!(out["process"]["x-process"], "p");
    assert_eq!(out["process"]["capabilities"]["x-caps"], true);
    assert_eq!(out["linux"]["x-linux"], json!({"a": "b"}));
    assert_eq!(out["linux"]["namespaces"][0]["x-ns"], 1);
    assert_eq!(out["linux"]["seccomp"]["x-seccomp"], json!([]));
    assert_eq!(out["linux"]["seccomp"]["syscalls"][1]["x-rule"], "kept");
    assert_eq!(out["mounts"][0]["x-mount"], 0);
    assert_lossless("", &spec, &out);
}

/// The four syscalls end allowed: no rule that could stop them is left, and
/// an unconditional allow rule names them all when the default denies.
fn assert_namespace_syscalls_allowed(profile: &Value) {
    let rules = profile["syscalls"].as_array().unwrap();
    for rule in rules {
        let names: Vec<&str> = rule["names"]
            .as_array()
            .map_or(vec![], |n| n.iter().map(|s| s.as_str().unwrap()).collect());
        if names.iter().any(|n| NAMESPACE_SYSCALLS.contains(n)) {
            assert_eq!(rule["action"], "SCMP_ACT_ALLOW", "{rule}");
            assert!(
                rule["args"].as_array().is_none_or(|a| a.is_empty()),
                "{rule}"
            );
        }
    }
    if profile["defaultAction"] != "SCMP_ACT_ALLOW" {
        let ours = json!({"names": NAMESPACE_SYSCALLS, "action": "SCMP_ACT_ALLOW"});
        assert_eq!(rules.iter().filter(|r| **r == ours).count(), 1);
    }
}

#[test]
fn docker_config_seccomp_ends_allowing_nested_namespaces() {
    let inp = input("docker-20.10-default");
    let before = &inp["linux"]["seccomp"];
    let find = |p: &Value, name: &str| -> Vec<Value> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().contains(&json!(name)))
            .cloned()
            .collect()
    };
    // What Docker 20.10 hands over, as the runtime contract describes it.
    assert_eq!(
        find(before, "clone")[0]["args"][0],
        json!({"index": 0, "value": 0x7E02_0000u64, "op": "SCMP_CMP_MASKED_EQ"})
    );
    assert_eq!(find(before, "clone3")[0]["errnoRet"], 38);
    assert!(find(before, "unshare").is_empty() && find(before, "setns").is_empty());
    assert_eq!(before["defaultAction"], "SCMP_ACT_ERRNO");

    let out = rewrite(inp.clone(), &full_plan()).unwrap();
    let after = &out.spec["linux"]["seccomp"];
    assert_namespace_syscalls_allowed(after);
    // Only the two rules about clone/clone3 went; the rest is untouched.
    let rules_before = before["syscalls"].as_array().unwrap();
    let rules_after = after["syscalls"].as_array().unwrap();
    let kept: Vec<_> = rules_before
        .iter()
        .filter(|r| {
            find(&json!({"syscalls": [r]}), "clone").is_empty()
                && find(&json!({"syscalls": [r]}), "clone3").is_empty()
        })
        .collect();
    assert_eq!(rules_after.len(), kept.len() + 1);
    assert!(rules_after[..kept.len()].iter().eq(kept.iter().copied()));
    assert_eq!(out.seccomp.unwrap().edits.len(), 2);
    // Docker's libnetwork prestart hook stays first and unchanged.
    assert_eq!(out.spec["hooks"]["prestart"], inp["hooks"]["prestart"]);
    // Docker already mounts /etc/resolv.conf: the plan's is not added.
    let resolv = out.spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/etc/resolv.conf")
        .count();
    assert_eq!(resolv, 1);
}

#[test]
fn ca_bundle_mount_and_environment() {
    let out = rewrite(input("runc-spec"), &full_plan()).unwrap().spec;
    let ca: Vec<_> = out["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == CA_BUNDLE_DEST)
        .collect();
    assert_eq!(ca.len(), 1);
    assert_eq!(ca[0]["source"], "/run/boundary-runc/golden/ca-bundle.pem");
    assert_eq!(
        ca[0]["options"],
        json!(["rbind", "ro", "nosuid", "nodev", "noexec"])
    );
    for var in CA_ENV_VARS {
        assert_eq!(env_value(&out, var).unwrap(), Some(CA_BUNDLE_DEST));
    }
    // A variable the spec sets already is left to the spec.
    let mut spec = input("runc-spec");
    spec["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("SSL_CERT_FILE=/etc/ssl/mine.pem"));
    let out = rewrite(spec, &full_plan()).unwrap().spec;
    assert_eq!(
        env_value(&out, "SSL_CERT_FILE").unwrap(),
        Some("/etc/ssl/mine.pem")
    );
    assert_eq!(out["process"]["env"].as_array().unwrap().len(), 2 + 1 + 4);
}

#[test]
fn sys_admin_and_missing_pid_namespace_warn() {
    let mut spec = input("runc-spec");
    spec["process"]["capabilities"]["permitted"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_SYS_ADMIN"));
    let out = rewrite(spec, &full_plan()).unwrap();
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains("process.capabilities.permitted holds CAP_SYS_ADMIN"),
        "{:?}",
        out.warnings
    );

    let mut spec = input("runc-spec");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    let out = rewrite(spec, &full_plan()).unwrap();
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains("no pid entry"),
        "{:?}",
        out.warnings
    );
}

/// Set the value at JSON pointer `ptr`; a missing last member is added.
fn set(spec: &mut Value, ptr: &str, v: Value) {
    if let Some(slot) = spec.pointer_mut(ptr) {
        *slot = v;
        return;
    }
    let (parent, key) = ptr.rsplit_once('/').unwrap();
    let parent = spec.pointer_mut(parent).and_then(Value::as_object_mut);
    parent
        .unwrap_or_else(|| panic!("{ptr}: no such parent object"))
        .insert(key.to_owned(), v);
}

#[test]
fn malformed_specs_name_the_path() {
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "runc-spec",
            "",
            json!([]),
            "the top level must be an object",
        ),
        ("runc-spec", "/linux", json!(5), "linux must be an object"),
        (
            "runc-spec",
            "/linux/namespaces",
            json!({}),
            "linux.namespaces must be an array",
        ),
        (
            "runc-spec",
            "/linux/namespaces/2",
            json!("network"),
            "linux.namespaces[2] must be an object",
        ),
        (
            "runc-spec",
            "/linux/namespaces/2/type",
            json!(7),
            "linux.namespaces[2].type must be a string",
        ),
        (
            "runc-spec",
            "/linux/namespaces/2/type",
            json!(null),
            "linux.namespaces[2].type is missing",
        ),
        (
            "runc-spec",
            "/linux/namespaces/1",
            json!({"type": "network", "path": 3}),
            "linux.namespaces[1].path must be a string",
        ),
        (
            "runc-spec",
            "/process",
            json!("sh"),
            "process must be an object",
        ),
        ("runc-spec", "/process", json!(null), "process is missing"),
        (
            "runc-spec",
            "/process/capabilities",
            json!([]),
            "process.capabilities must be an object",
        ),
        (
            "runc-spec",
            "/process/capabilities/bounding",
            json!("CAP_KILL"),
            "process.capabilities.bounding must be an array",
        ),
        (
            "runc-spec",
            "/process/capabilities/ambient/1",
            json!(1),
            "process.capabilities.ambient[1] must be a string",
        ),
        (
            "runc-spec",
            "/process/env",
            json!({}),
            "process.env must be an array",
        ),
        (
            "runc-spec",
            "/process/env/0",
            json!(1),
            "process.env[0] must be a string",
        ),
        ("runc-spec", "/mounts", json!({}), "mounts must be an array"),
        (
            "runc-spec",
            "/mounts/3",
            json!("/dev/shm"),
            "mounts[3] must be an object",
        ),
        (
            "runc-spec",
            "/mounts/3/destination",
            json!(1),
            "mounts[3].destination must be a string",
        ),
        ("runc-spec", "/hostname", json!(1), ""),
        ("runc-spec", "/root", json!(1), ""),
        (
            "netns-path-cri",
            "/annotations",
            json!([]),
            "annotations must be an object",
        ),
        (
            "docker-20.10-default",
            "/hooks",
            json!([]),
            "hooks must be an object",
        ),
        ("docker-20.10-default", "/hooks/prestart", json!(1), ""),
        (
            "netns-path-cri",
            "/linux/seccomp",
            json!("unconfined"),
            "linux.seccomp must be an object",
        ),
        (
            "netns-path-cri",
            "/linux/seccomp/defaultAction",
            json!(0),
            "linux.seccomp.defaultAction must be a string",
        ),
        (
            "netns-path-cri",
            "/linux/seccomp/syscalls",
            json!({}),
            "linux.seccomp.syscalls must be an array",
        ),
        (
            "netns-path-cri",
            "/linux/seccomp/syscalls/0",
            json!(0),
            "linux.seccomp.syscalls[0] must be an object",
        ),
        (
            "netns-path-cri",
            "/linux/seccomp/syscalls/1/names",
            json!("unshare"),
            "linux.seccomp.syscalls[1].names must be an array",
        ),
        (
            "netns-path-cri",
            "/linux/seccomp/syscalls/1/names/2",
            json!(2),
            "linux.seccomp.syscalls[1].names[2] must be a string",
        ),
        (
            "netns-path-cri",
            "/linux/seccomp/syscalls/1/action",
            json!(1),
            "linux.seccomp.syscalls[1].action must be a string",
        ),
        (
            "netns-path-cri",
            "/linux/seccomp/syscalls/2/args",
            json!({}),
            "linux.seccomp.syscalls[2].args must be an array",
        ),
    ];
    for (base, ptr, value, want) in cases {
        let mut spec = input(base);
        set(&mut spec, ptr, value);
        let got = rewrite(spec, &full_plan());
        match (want, got) {
            ("", Ok(_)) => {} // a field the rewrite never reads
            ("", Err(e)) => panic!("{base} {ptr}: unexpected error {e}"),
            (want, Ok(_)) => panic!("{base} {ptr}: accepted, wanted {want}"),
            (want, Err(e)) => assert_eq!(
                e.to_string(),
                format!("config.json: {want}"),
                "{base} {ptr}"
            ),
        }
    }
    let mut spec = input("runc-spec");
    set(&mut spec, "/hooks", json!({"poststop": {}}));
    assert_eq!(
        rewrite(spec, &full_plan()).unwrap_err().to_string(),
        "config.json: hooks.poststop must be an array"
    );
}

#[test]
fn the_host_side_record_is_checked_on_rerun() {
    let once = rewrite(input("runc-spec"), &full_plan()).unwrap().spec;
    let mut missing = once.clone();
    missing["annotations"]
        .as_object_mut()
        .unwrap()
        .shift_remove(HOST_SIDE_ANNOTATION);
    assert!(matches!(
        rewrite(missing, &full_plan()),
        Err(RewriteError::HostSideAnnotationMissing { .. })
    ));
    let mut garbled = once.clone();
    garbled["annotations"][HOST_SIDE_ANNOTATION] = json!("{\"kind\":\"nowhere\"}");
    assert!(matches!(
        rewrite(garbled, &full_plan()),
        Err(RewriteError::HostSideAnnotationGarbled(_))
    ));
    let mut not_string = once;
    not_string["annotations"][HOST_SIDE_ANNOTATION] = json!({"kind": "fresh"});
    assert_eq!(
        rewrite(not_string, &full_plan()).unwrap_err().to_string(),
        r#"config.json: annotations["run.boundary-runc.host-side"] must be a string"#
    );
}

/// Every node of every golden input replaced by every JSON type: the rewrite
/// returns a result (either), never panics, and what it accepts it accepts
/// idempotently.
#[test]
fn no_mutation_of_any_field_panics() {
    let replacements = [
        json!(null),
        json!(0),
        json!("s"),
        json!([]),
        json!({}),
        json!(true),
        json!([1]),
        json!({"type": 1}),
    ];
    for case in cases() {
        let base = input(case.name);
        let mut pointers = Vec::new();
        collect_pointers(&base, String::new(), &mut pointers);
        for ptr in &pointers {
            for r in &replacements {
                let mut spec = base.clone();
                set(&mut spec, ptr, r.clone());
                if let Ok(out) = rewrite(spec, &case.plan) {
                    let again = rewrite(out.spec.clone(), &case.plan)
                        .unwrap_or_else(|e| panic!("{} {ptr}={r}: {e}", case.name));
                    assert_eq!(again.spec, out.spec, "{} {ptr}={r}", case.name);
                }
            }
        }
    }
}

fn collect_pointers(v: &Value, here: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                collect_pointers(
                    child,
                    format!("{here}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                collect_pointers(child, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(here);
}

fn tab_pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn docker_default_profile_file_matches_its_patched_copy() {
    let original = fs::read_to_string(profiles().join("docker-default.json")).unwrap();
    let mut profile: Value = serde_json::from_str(&original).unwrap();
    // The file is Docker's, byte for byte, in Docker's own formatting.
    assert_eq!(tab_pretty(&profile), original);
    let change = patch_seccomp(&mut profile).unwrap();
    assert!(change.added_allow_rule);
    golden_compare(
        &profiles().join("docker-default-boundary.json"),
        &tab_pretty(&profile),
    );
    assert_namespace_syscalls_allowed(&profile);
    // The CAP_SYS_ADMIN rule that already allows them unconditionally stays.
    let sys_admin = profile["syscalls"].as_array().unwrap().iter().find(|r| {
        r["includes"]["caps"] == json!(["CAP_SYS_ADMIN"])
            && r["names"].as_array().unwrap().contains(&json!("unshare"))
    });
    assert!(sys_admin.is_some());
    // Idempotent on the file too.
    let again = patch_seccomp(&mut profile).unwrap();
    assert!(again.is_empty(), "{again:?}");
}
