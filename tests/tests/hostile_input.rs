//! Bad input (issue 5 §4): hostile `config.json` through `create`,
//! invalid rules from each source, and hostile bytes from inside a jail
//! (malformed DNS, malformed TLS ClientHellos, oversized heads, broken
//! chunked bodies). Each gets a clear refusal, no panic, nothing left
//! behind, an audit record where the sidecar saw it, and the sidecar goes
//! on serving. Slots 210..=219.

mod escape_world;

use std::time::Duration;

use boundary_tests::probe::nslookup_answers;
use boundary_tests::{poll_until, require_root, Bundle, Outcome, Runtime, Settings};
use escape_world::World;
use serde_json::{json, Value};

type Edit = Box<dyn Fn(&mut Value)>;

/// Nested arrays `depth` deep, as JSON text.
fn deep(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn cases() -> Vec<(&'static str, Edit, &'static [&'static str])> {
    let set = |path: &'static [&'static str], v: Value| -> Edit {
        Box::new(move |s: &mut Value| {
            let mut cur = s;
            for k in &path[..path.len() - 1] {
                cur = &mut cur[*k];
            }
            cur[path[path.len() - 1]] = v.clone();
        })
    };
    vec![
        ("env is a string", set(&["process", "env"], json!("BOUNDARY_ALLOW=domain=x.test")), &["env"]),
        ("env entries are numbers", set(&["process", "env"], json!([1, 2])), &["env"]),
        ("process is null", set(&["process"], Value::Null), &["process"]),
        ("capabilities is a number", set(&["process", "capabilities"], json!(5)), &["capabilit"]),
        ("bounding set is a string", set(&["process", "capabilities", "bounding"], json!("CAP_NET_ADMIN")), &["capabilit", "bounding"]),
        ("namespaces is an object", set(&["linux", "namespaces"], json!({})), &["namespace"]),
        ("namespace type is a number", set(&["linux", "namespaces"], json!([{"type": 5}])), &["namespace", "type"]),
        ("network namespace path is a number", set(&["linux", "namespaces"], json!([{"type": "network", "path": 7}])), &["namespace", "path"]),
        ("linux is an array", set(&["linux"], json!([])), &["linux"]),
        ("mounts is an object", set(&["mounts"], json!({})), &["mount"]),
        ("a mount is a number", set(&["mounts"], json!([5])), &["mount"]),
        ("hooks is an array", set(&["hooks"], json!([])), &["hook"]),
        ("poststop is an object", set(&["hooks"], json!({"poststop": {}})), &["hook", "poststop"]),
        ("annotations is an array", set(&["annotations"], json!([])), &["annotation"]),
        ("the allow annotation is a number", set(&["annotations"], json!({"io.boundary.allow": 5})), &["annotation", "io.boundary.allow"]),
        ("seccomp is a string", set(&["linux", "seccomp"], json!("default")), &["seccomp"]),
        (
            "seccomp with unknown syscalls and arches",
            set(
                &["linux", "seccomp"],
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_BOGUS"],
                       "syscalls": [{"names": ["no_such_syscall", "clone"], "action": "SCMP_ACT_ERRNO"}]}),
            ),
            &["seccomp", "arch", "BOGUS", "syscall"],
        ),
        ("seccomp syscalls is an object", set(&["linux", "seccomp"], json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}})), &["seccomp", "syscall"]),
        ("ociVersion is a number", set(&["ociVersion"], json!(5)), &["ociVersion", "version"]),
        ("ociVersion unknown", set(&["ociVersion"], json!("99.0.0")), &["ociVersion", "version"]),
        ("root is a string", set(&["root"], json!("/")), &["root"]),
    ]
}

/// Either a correct rewrite (then the container runs jailed and is
/// deleted), or a failure whose `--log` error names the problem; never a
/// panic; nothing left behind either way.
fn judge(rt: &Runtime, what: &str, out: &Outcome, words: &[&str], bundle: &Bundle, id: &str) {
    let all = format!("{}\n{}", out.stderr, out.log_errors().join("\n"));
    assert!(!all.contains("panicked") && !all.contains("RUST_BACKTRACE"), "{what}: the runtime panicked:\n{out}");
    if out.success() {
        let spec = bundle.on_disk();
        let ns = spec["linux"]["namespaces"].as_array().cloned().unwrap_or_default();
        let net = ns.iter().find(|n| n["type"] == "network");
        assert!(net.is_some_and(|n| n["path"].is_string()), "{what}: created, but the rewrite has no jail namespace:\n{spec:#}");
        rt.delete_force(id).ok();
    } else {
        let errors = out.log_errors();
        let last = errors.last().unwrap_or_else(|| panic!("{what}: failed with no error in the --log file:\n{out}"));
        let lower = last.to_lowercase();
        assert!(
            words.iter().any(|w| lower.contains(&w.to_lowercase())),
            "{what}: the error does not name the problem (expected one of {words:?}):\n{last}"
        );
    }
}

#[test]
fn hostile_config_json_gets_a_clear_error_or_a_correct_rewrite_and_leaves_nothing() {
    require_root();
    let rt = Runtime::new(Settings::new(210));
    let before = rt.leaks();
    for (i, (what, edit, words)) in cases().into_iter().enumerate() {
        let bundle = Bundle::sleeper().edit(|s| edit(s));
        let id = format!("hostile-{i}");
        let out = rt.create(&bundle, &id);
        judge(&rt, what, &out, words, &bundle, &id);
        settled(&rt, &before);
    }
    // Huge arrays: the shim's own work (parse, rewrite, jail) with a
    // delegate that does nothing (`false`), since runc itself takes minutes
    // over a million environment entries. The rewrite must be correct and
    // complete, and the refused create leaves nothing behind.
    let quick = Runtime::new(Settings::new(214).runtime("/bin/false"));
    let quick_before = quick.leaks();
    let huge: [(&str, Edit, &str); 2] = [
        (
            "a million env entries",
            Box::new(|s: &mut Value| {
                let env = s["process"]["env"].as_array_mut().expect("env");
                env.extend((0..1_000_000).map(|i| json!(format!("K{i}=v"))));
            }),
            "env",
        ),
        (
            "a hundred thousand mounts",
            Box::new(|s: &mut Value| {
                let mounts = s["mounts"].as_array_mut().expect("mounts");
                mounts.extend((0..100_000).map(|i| json!({"destination": format!("/m{i}"), "type": "tmpfs", "source": "tmpfs"})));
            }),
            "mounts",
        ),
    ];
    for (i, (what, edit, field)) in huge.into_iter().enumerate() {
        let bundle = Bundle::sleeper().edit(|s| edit(s));
        let len = |v: &Value| if field == "env" { v["process"]["env"].as_array().map_or(0, Vec::len) } else { v["mounts"].as_array().map_or(0, Vec::len) };
        let want = len(bundle.spec());
        let started = std::time::Instant::now();
        let id = format!("huge-{i}");
        let out = quick.create(&bundle, &id).failed();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(30), "{what}: create took {took:?}");
        let all = format!("{}\n{}", out.stderr, out.log_errors().join("\n"));
        assert!(!all.contains("panicked"), "{what}: the runtime panicked:\n{out}");
        let spec = bundle.on_disk();
        let ns = spec["linux"]["namespaces"].as_array().cloned().unwrap_or_default();
        assert!(ns.iter().any(|n| n["type"] == "network" && n["path"].is_string()), "{what}: no jail in the rewrite");
        assert!(len(&spec) >= want, "{what}: the rewrite lost {field} entries ({} < {want})", len(&spec));
        settled(&quick, &quick_before);
    }

    // Not JSON the way a spec is: wrong top-level types, nesting deeper
    // than any parser should follow, truncation, bytes that are not UTF-8.
    let raw: [(&str, Vec<u8>); 6] = [
        ("top level is an array", b"[]".to_vec()),
        ("top level is a string", b"\"spec\"".to_vec()),
        ("top level is null", b"null".to_vec()),
        ("nesting 100000 deep", format!("{{\"ociVersion\": \"1.0.2\", \"x\": {}}}", deep(100_000)).into_bytes()),
        ("truncated", b"{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sle".to_vec()),
        ("not UTF-8", b"{\"ociVersion\": \"\xff\xfe\"}".to_vec()),
    ];
    for (i, (what, bytes)) in raw.into_iter().enumerate() {
        let bundle = Bundle::sleeper();
        bundle.overwrite_config(&bytes);
        let id = format!("raw-{i}");
        let out = rt.create(&bundle, &id).failed();
        judge(&rt, what, &out, &["config.json"], &bundle, &id);
        settled(&rt, &before);
    }
}

#[test]
fn invalid_rules_are_named_by_where_they_came_from() {
    require_root();
    let rt = Runtime::new(Settings::new(211));
    let before = rt.leaks();
    let cases = [
        (Bundle::sleeper().env("BOUNDARY_ALLOW", "domain="), "BOUNDARY_ALLOW"),
        (Bundle::sleeper().env("BOUNDARY_ALLOW", "domain=ok.test;method=GET domain=bad..test"), "BOUNDARY_ALLOW"),
        (Bundle::sleeper().annotation("io.boundary.allow", "method=GET domain=github.*"), "io.boundary.allow"),
        (Bundle::sleeper().annotation("io.boundary.allow", "path=/x nonsense=1"), "io.boundary.allow"),
    ];
    for (i, (bundle, source)) in cases.iter().enumerate() {
        let out = rt.create(bundle, &format!("rules-{i}")).failed();
        let errors = out.log_errors();
        assert!(errors.last().is_some_and(|e| e.contains(source)), "the error must name {source}:\n{out}");
        settled(&rt, &before);
    }
    let rt = Runtime::new(Settings::new(212).default_rule("domain=fine.test").default_rule("port=99999 domain=x.test"));
    let before = rt.leaks();
    let out = rt.create(&Bundle::sleeper(), "rules-config").failed();
    let last = out.log_errors().last().cloned().unwrap_or_default();
    assert!(last.contains("default_rules") || last.contains("config.toml"), "the error must name the config's rules:\n{out}");
    assert!(last.contains("99999"), "the error must quote the rule:\n{out}");
    settled(&rt, &before);
}

/// A create the delegate refused is torn down by the sidecar's orphan
/// watch shortly after `create` returns (no engine sends `delete`).
fn settled(rt: &Runtime, before: &boundary_tests::LeakSnapshot) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while rt.leaks() != *before && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.leaks().assert_same_as(before);
}

fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

fn hello(extensions: &[u8]) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&[7u8; 32]);
    b.extend_from_slice(&[0, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    b.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    b.extend_from_slice(extensions);
    let mut hs = vec![1, 0, (b.len() >> 8) as u8, b.len() as u8];
    hs.extend_from_slice(&b);
    let mut r = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    r.extend_from_slice(&hs);
    r
}

#[test]
fn hostile_bytes_from_inside_are_refused_audited_and_the_sidecar_serves_on() {
    let w = World::start(213, "hostile-bytes");
    let (h, o) = (w.sidecar(), w.origin.addr());
    let count = |f: &dyn Fn(&boundary_contract::AuditRecord) -> bool| w.rt.audit_records(w.id).iter().filter(|r| f(r)).count();

    // Malformed DNS, to the sidecar and to any other address (redirected).
    let long_label = format!("abcd01000001000000000000ff{}0000010001", "41".repeat(255));
    let dns = [
        "".to_string(),
        "00".into(),
        "0102030405060708090a0b".into(),
        "abcd81800001000000000000036f6e65000001000".into(), // a response
        "abcd01000002000000000000036f6e650000010001".into(), // two questions, one present
        "abcd01000000000000000000".into(),                   // no question
        "abcd0100000100000000000000c00c0001".into(),         // compression loop
        long_label,
        format!("abcd01000001000000000000{}", "3f".repeat(700)),
    ];
    for d in &dns {
        w.probe(&format!("udp {h} 53 '{d}'"));
        w.probe(&format!("udp {o} 53 '{d}'"));
    }
    let out = w.exec("nslookup origin.test");
    assert_eq!(nslookup_answers(&out.stdout), [o.to_string()], "the DNS filter stopped serving:\n{out}");
    let refused = poll_until(Duration::from_secs(5), "malformed DNS to be audited", || {
        let n = count(&|r| r.kind == "dns" && r.decision == "deny" && r.reason.as_deref().is_some_and(|x| x.contains("malformed") || x.contains("not a query")));
        (n >= 2 * (dns.len() - 2)).then_some(n)
    });
    assert!(refused > 0);
    assert_eq!(w.origin.counts_after_barrier().dns_queries, 0, "malformed DNS reached the origin's resolver");

    // Malformed ClientHellos.
    let good = hello(&[]);
    let mut sni = vec![0, 0, 0, 16, 0, 14, 0, 0, 11];
    sni.extend_from_slice(b"origin.test");
    let mut lying = sni.clone();
    lying[8] = 200; // name length beyond the extension
    let hellos: Vec<Vec<u8>> = vec![
        hello(&sni)[..30].to_vec(),
        good.clone(),
        hello(&lying),
        { let mut r = hello(&sni); r[3] = 0xff; r[4] = 0xff; r.truncate(200); r },
        vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00],
    ];
    for hb in &hellos {
        let reply = w.probe(&format!("tcp {o} 443 '{}'", escaped(hb)));
        assert!(!reply.contains("origin saw"), "{reply}");
    }
    // An oversized head and a broken chunked body.
    let big = format!("GET /allowed/big HTTP/1.1\\r\\nHost: origin.test\\r\\nX-Big: {}\\r\\n\\r\\n", "a".repeat(70 * 1024));
    let reply = w.probe(&format!("tcp {o} 80 '{big}'"));
    assert!(reply.starts_with("reply: HTTP/1.1 400"), "{reply}");
    let chunked = "POST /allowed/c HTTP/1.1\\r\\nHost: origin.test\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\nzz\\r\\nhello\\r\\n0\\r\\n\\r\\nGET /private/smuggled HTTP/1.1\\r\\nHost: origin.test\\r\\n\\r\\n";
    let reply = w.probe(&format!("tcp {o} 80 '{chunked}'"));
    assert!(!reply.contains("origin saw GET /private"), "{reply}");

    let out = w.exec("curl -sS --max-time 10 https://origin.test/allowed/after").ok();
    assert_eq!(out.stdout, "origin saw GET /allowed/after\n", "the proxy stopped serving:\n{out}");
    assert!(count(&|r| r.kind == "tls" && r.decision == "deny") >= hellos.len() - 1, "{:#?}", w.rt.audit_records(w.id));
    assert!(count(&|r| r.status == Some(400)) >= 1, "{:#?}", w.rt.audit_records(w.id));
    assert!(w.origin.requests().iter().all(|r| !r.contains("/private")), "{:?}", w.origin.requests());
}

/// A container that floods the sidecar with DNS questions (each one an
/// audit record) cannot grow its audit log past `[audit] max_bytes`: the
/// log gets one notice, then counts, and every answered question is in it
/// either as a record or in a count, written when the container stops.
#[test]
fn a_dns_flood_cannot_grow_the_audit_log_past_its_limit() {
    const LIMIT: u64 = 64 * 1024;
    const QUERIES: u32 = 3000;
    let w = World::start_with(215, "hostile-flood", |s| s.audit_max_bytes(LIMIT), |b| b);
    let line = w.probe(&format!("dns-flood {} {QUERIES}", w.sidecar()));
    let answered: u32 = line
        .strip_prefix("answered ")
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("probe: {line}"));
    assert!(answered > QUERIES / 2, "the sidecar answered too few to fill the log: {line}");
    // Enough records to fill the limit several times over: ~150 bytes each.
    assert!(u64::from(answered) * 100 > 4 * LIMIT, "{line}");

    assert!(w.rt.kill(w.id, "KILL").success());
    w.rt.wait_stopped(w.id);
    // The worker writes the counts as it stops with its container.
    let summarised = |recs: &[boundary_contract::AuditRecord]| {
        recs.iter().any(|r| r.kind == "audit" && r.reason.as_deref().is_some_and(|t| t.contains(" decisions since ")))
    };
    let recs = poll_until(Duration::from_secs(10), "the audit log's closing counts", || {
        let recs = w.rt.audit_records(w.id);
        summarised(&recs).then_some(recs)
    });
    let size = std::fs::metadata(w.rt.audit_path(w.id)).expect("audit log").len();
    assert!(size <= LIMIT + 1024, "{size} bytes for a limit of {LIMIT}");
    let notices = recs.iter().filter(|r| r.kind == "audit" && r.reason.as_deref().is_some_and(|t| t.contains("reached its size limit"))).count();
    assert_eq!(notices, 1, "{recs:#?}");
    assert!(recs.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1), "seq runs on without gaps");
    let written = recs.iter().filter(|r| r.kind == "dns" && r.host.as_deref().is_some_and(|h| h.contains("flood.denied.example"))).count() as u64;
    let counted: u64 = recs
        .iter()
        .filter(|r| r.kind == "audit" && r.decision == "deny")
        .filter_map(|r| r.reason.as_deref()?.split_once(": ")?.1.strip_prefix("dns ")?.split(',').next()?.parse::<u64>().ok())
        .sum();
    let total = written + counted;
    assert!(
        total >= u64::from(answered) && total <= u64::from(QUERIES),
        "{written} written + {counted} counted, {answered} answered of {QUERIES}"
    );
    assert!(w.rt.delete(w.id).success());
}
