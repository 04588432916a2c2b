//! The boundary itself: allowed requests reach the origin, denied ones get
//! an explanation, names and non-HTTP traffic do not leak, every decision
//! is audited. Slots 130..=139.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use boundary_tests::hostside;
use boundary_tests::probe::{nslookup_answers, ping_counts, HttpReply};
use boundary_tests::origin::{UPSTREAM_LOOPBACK_NAME, UPSTREAM_METADATA_NAME, UPSTREAM_ORIGIN_NAME};
use boundary_tests::{poll_until, require_root, require_tool, Bundle, Counts, HostSink, LeakSnapshot, Origin, Outcome, Runtime, Settings};

const RULES: &str = "domain=origin.test path=/allowed/*";

/// A jailed container (`sleep`, Docker's capabilities, [`RULES`]) whose
/// runtime pins `origin.test` and `denied.test` to the origin, asks the
/// origin's DNS server for anything else, and trusts the origin's CA.
/// Fields drop in order: the container goes before the origin.
struct World {
    rt: Runtime,
    _bundle: Bundle,
    origin: Origin,
    id: &'static str,
}

impl World {
    fn start(slot: u8, id: &'static str) -> World {
        World::start_with(slot, id, |s| s, |b| b.env("BOUNDARY_ALLOW", RULES))
    }

    /// Like [`World::start`], with changes to the settings and the bundle.
    fn start_with(slot: u8, id: &'static str, settings: impl FnOnce(Settings) -> Settings, bundle: impl FnOnce(Bundle) -> Bundle) -> World {
        require_root();
        let origin = Origin::start(slot);
        let rt = Runtime::new(settings(World::settings(slot, &origin)));
        let bundle = bundle(Bundle::sleeper().docker_capabilities());
        rt.create_and_start(&bundle, id);
        World { rt, _bundle: bundle, origin, id }
    }

    fn settings(slot: u8, origin: &Origin) -> Settings {
        Settings::new(slot)
            .pin("origin.test", origin.addr())
            .pin("denied.test", origin.addr())
            .nameserver(origin.addr())
            .upstream_ca(&origin.ca_file())
    }

    fn exec(&self, script: &str) -> Outcome {
        self.rt.exec(self.id, script)
    }

    /// The sidecar's address: the host end of the jail's veth.
    fn sidecar(&self) -> Ipv4Addr {
        self.rt.jail(self.id).host_addr
    }

    /// `curl -sS -D - URL` inside (no -k: HTTPS is verified against the
    /// mounted CA bundle), parsed.
    fn get(&self, url: &str) -> HttpReply {
        let out = self.exec(&format!("curl -sS --max-time 10 -D - '{url}'")).ok();
        HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"))
    }

    /// `http://NAME/PATH` with curl told where NAME is (the origin's
    /// address, which the container's own lookup may not give): the
    /// sidecar still resolves NAME itself.
    fn get_by_name_at_origin(&self, name: &str, path: &str) -> HttpReply {
        let at = self.origin.addr();
        let out = self.exec(&format!("curl -sS --max-time 10 -D - --resolve {name}:80:{at} 'http://{name}{path}'")).ok();
        HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("not an HTTP reply:\n{out}"))
    }

    /// The addresses `nslookup NAME` printed (none when it failed).
    fn lookup(&self, name: &str) -> Vec<String> {
        nslookup_answers(&self.exec(&format!("nslookup {name}")).stdout)
    }
}

#[test]
fn allowed_http_and_https_reach_the_origin() {
    // Rules from all three places: the host's defaults, BOUNDARY_ALLOW and
    // the annotation.
    let w = World::start_with(
        130,
        "allow",
        |s| s.default_rule("domain=origin.test path=/default/*"),
        |b| b.env("BOUNDARY_ALLOW", RULES).annotation("io.boundary.allow", "method=GET domain=origin.test path=/annotated/*"),
    );
    let env = w.exec("echo $CURL_CA_BUNDLE; echo $SSL_CERT_FILE; cat /etc/resolv.conf").ok();
    let bundle = "/etc/ssl/boundary-runc/ca-bundle.pem";
    assert!(env.stdout.starts_with(&format!("{bundle}\n{bundle}\n")), "{env}");
    assert!(env.stdout.contains(&format!("nameserver {}", w.sidecar())), "{env}");

    let r = w.get("http://origin.test/allowed/a?x=1");
    assert_eq!((r.status, r.body.as_str()), (200, "origin saw GET /allowed/a?x=1\n"), "{r:?}");
    let r = w.get("https://origin.test/allowed/b");
    assert_eq!((r.status, r.body.as_str()), (200, "origin saw GET /allowed/b\n"), "{r:?}");

    for path in ["/default/c", "/annotated/d"] {
        let r = w.get(&format!("https://origin.test{path}"));
        assert_eq!((r.status, r.body.as_str()), (200, format!("origin saw GET {path}\n").as_str()), "{r:?}");
    }
    let r = w.get("http://origin.test/elsewhere");
    assert_eq!(r.status, 403, "{r:?}");

    assert_eq!(
        w.origin.requests(),
        [
            "http GET /allowed/a?x=1 host=origin.test",
            "https GET /allowed/b host=origin.test",
            "https GET /default/c host=origin.test",
            "https GET /annotated/d host=origin.test"
        ],
        "the origin must see exactly the allowed requests"
    );
}

#[test]
fn a_host_that_forbids_container_rules_refuses_them_and_applies_its_own() {
    let w = World::start_with(137, "host-rules", |s| s.default_rule("domain=origin.test").container_rules(false), |b| b);
    assert_eq!(w.get("https://origin.test/any/path").status, 200);
    // A denial's advice names where rules go on this host: its config.
    let r = w.get("https://denied.test/x");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("To allow it, add this rule to policy.default_rules in ") && r.body.contains("config.toml:\n  domain=denied.test"), "{r:?}");
    let bundle = Bundle::sleeper().env("BOUNDARY_ALLOW", "domain=denied.test");
    let during = w.rt.leaks();
    let out = w.rt.create(&bundle, "sneaky").failed();
    w.rt.leaks().assert_same_as(&during);
    let errors = out.log_errors();
    assert!(errors.last().is_some_and(|e| e.contains("BOUNDARY_ALLOW") && e.contains("forbids container rules")), "{out}");
}

#[test]
fn a_host_that_refuses_private_destinations_keeps_domain_star_off_its_networks() {
    // The origin is at a private address (10.231.138.2), which `domain=*`
    // reaches by IP by default. With `refuse_private_destinations` the
    // sidecar refuses it before connecting, naming the setting; the pinned
    // name, the operator's own word, still reaches it.
    let w = World::start_with(138, "private", |s| s.refuse_private(true), |b| b.env("BOUNDARY_ALLOW", "domain=*"));
    assert!(w.rt.config_text().contains("refuse_private_destinations = true"));
    let r = w.get(&format!("http://{}/allowed/by-ip", w.origin.addr()));
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("refuse_private_destinations") && r.body.contains(&w.origin.addr().to_string()), "{r:?}");
    let r = w.get("https://origin.test/allowed/by-name");
    assert_eq!((r.status, r.body.as_str()), (200, "origin saw GET /allowed/by-name\n"), "{r:?}");
    assert_eq!(w.origin.requests(), ["https GET /allowed/by-name host=origin.test"], "nothing reached the origin by IP");
    let denied = w.rt.audit_records(w.id).into_iter().find(|r| r.url.as_deref().is_some_and(|u| u.contains("/allowed/by-ip")));
    assert!(denied.is_some_and(|r| r.reason.as_deref().is_some_and(|why| why.contains("refuse_private_destinations"))), "the refusal is audited with its reason");
    // Rebinding by name: a name the upstream resolver answers with the
    // origin's private address is refused too, in DNS and in HTTP.
    assert_eq!(w.lookup(UPSTREAM_ORIGIN_NAME), Vec::<String>::new(), "SERVFAIL for {UPSTREAM_ORIGIN_NAME}");
    let r = w.get_by_name_at_origin(UPSTREAM_ORIGIN_NAME, "/allowed/by-upstream-name");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("refuse_private_destinations"), "{r:?}");
    assert_eq!(w.origin.requests().len(), 1, "still only the pinned name's request reached the origin");
}

#[test]
fn names_resolved_upstream_are_reached_unless_they_lead_to_refused_addresses() {
    // Not pinned: the sidecar asks the origin's DNS server, which answers
    // the origin's address for one name, 127.0.0.1 and 169.254.169.254 for
    // two others. Only the first is reached; the others are SERVFAIL to
    // the container's lookups and 502 to its requests, whatever address
    // the container itself connects to.
    let w = World::start_with(139, "upstream-names", |s| s, |b| b.env("BOUNDARY_ALLOW", "domain=*.upstream.test"));
    let origin = w.origin.addr().to_string();
    assert_eq!(w.lookup(UPSTREAM_ORIGIN_NAME), [origin], "an allowed name resolved upstream");
    let r = w.get(&format!("http://{UPSTREAM_ORIGIN_NAME}/allowed/a"));
    assert_eq!((r.status, r.body.as_str()), (200, "origin saw GET /allowed/a\n"), "{r:?}");
    for (name, class) in [(UPSTREAM_LOOPBACK_NAME, "loopback"), (UPSTREAM_METADATA_NAME, "link-local")] {
        assert_eq!(w.lookup(name), Vec::<String>::new(), "SERVFAIL for {name}");
        let r = w.get_by_name_at_origin(name, "/allowed/b");
        assert_eq!(r.status, 502, "{name}: {r:?}");
        assert!(r.body.contains("refused addresses") && r.body.contains(class), "{name}: {r:?}");
    }
    assert_eq!(w.origin.requests(), [format!("http GET /allowed/a host={UPSTREAM_ORIGIN_NAME}")], "the refused names reached nothing");
}

/// The rule a 403 names, checked with `boundary-runc policy check` to
/// really allow the request.
fn assert_names_a_working_rule(w: &World, r: &HttpReply, method: &str, url: &str) {
    w.rt.assert_403_names_a_working_rule(r, method, url);
}

#[test]
fn denied_requests_get_403_naming_the_rule_that_would_allow_them() {
    let w = World::start(131, "deny");
    for url in ["http://origin.test/private/x", "https://origin.test/private/y", "http://denied.test/z", "https://denied.test/z"] {
        let r = w.get(url);
        assert_names_a_working_rule(&w, &r, "GET", url);
    }
    let out = w.exec("curl -sS -D - -X POST --data x http://origin.test/private/p").ok();
    let r = HttpReply::parse(&out.stdout).unwrap_or_else(|| panic!("{out}"));
    assert_names_a_working_rule(&w, &r, "POST", "http://origin.test/private/p");
    // An address instead of a name: no rule names it.
    let url = format!("http://{}/allowed/ip", w.origin.addr());
    let r = w.get(&url);
    assert_eq!((r.status, r.header("x-boundary-decision")), (403, Some("deny")), "{r:?}");
    assert_eq!(w.origin.requests(), Vec::<String>::new(), "denied requests must not reach the origin");
}

#[test]
fn denied_names_resolve_to_the_sidecar_and_never_reach_a_resolver() {
    let w = World::start(132, "dns");
    let sidecar = w.sidecar().to_string();
    let origin = w.origin.addr().to_string();
    for query in ["denied.example", "denied.test", "x.y.denied.example", &format!("denied.example {origin}")] {
        let out = w.exec(&format!("nslookup {query}"));
        let answers = nslookup_answers(&out.stdout);
        assert!(!answers.is_empty() && answers.iter().all(|a| *a == sidecar), "nslookup {query} must answer only {sidecar}:\n{out}");
    }
    let out = w.exec("nslookup origin.test");
    assert_eq!(nslookup_answers(&out.stdout), std::slice::from_ref(&origin), "an allowed name resolves to its address:\n{out}");

    // A container with its own resolv.conf (as Docker mounts one) that
    // names the origin as its resolver: still answered by the sidecar.
    let resolv = tempfile::NamedTempFile::new().expect("resolv.conf");
    std::fs::write(resolv.path(), format!("nameserver {origin}\n")).expect("write resolv.conf");
    let source = resolv.path().display().to_string();
    let own = Bundle::sleeper().env("BOUNDARY_ALLOW", RULES).edit(|s| {
        let mount = serde_json::json!({"destination": "/etc/resolv.conf", "type": "bind", "source": source, "options": ["rbind", "ro"]});
        s["mounts"].as_array_mut().expect("mounts").push(mount);
    });
    w.rt.create_and_start(&own, "dns-own");
    let out = w.rt.exec("dns-own", "cat /etc/resolv.conf; nslookup denied.example").ok();
    assert!(out.stdout.starts_with(&format!("nameserver {origin}\n")), "the container's own resolv.conf is kept:\n{out}");
    let own_sidecar = w.rt.jail("dns-own").host_addr.to_string();
    assert_eq!(nslookup_answers(&out.stdout), [own_sidecar], "{out}");

    assert_eq!(w.origin.counts_after_barrier().dns_queries, 0, "a query reached the origin's DNS server");
}

/// IPv6 on both ends of the jail's link, set up from outside the way the
/// container itself could (it holds CAP_NET_ADMIN): addresses, a default
/// route and a static neighbour, so packets really reach the host side.
fn give_the_jail_ipv6(w: &World, slot: u8) -> (String, String) {
    let jail = w.rt.jail(w.id);
    let (host6, jail6) = (format!("fd00:213:{slot}::1"), format!("fd00:213:{slot}::2"));
    // Inside the jail from outside with nsenter (busybox `ip` has no `nodad`).
    let in_jail = |args: &[&str]| {
        let out = Command::new(require_tool("nsenter")).arg(format!("--net={}", jail.netns_path.display())).arg(require_tool("ip")).args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {args:?} in the jail: {}", String::from_utf8_lossy(&out.stderr));
    };
    hostside::ip(&jail, &["-6", "addr", "add", &format!("{host6}/64"), "dev", &jail.host_if, "nodad"]);
    let mac = hostside::host_mac(&jail);
    in_jail(&["-6", "addr", "add", &format!("{jail6}/64"), "dev", "eth0", "nodad"]);
    in_jail(&["-6", "route", "add", "default", "via", &host6, "dev", "eth0"]);
    in_jail(&["-6", "neigh", "replace", &host6, "lladdr", mac.trim(), "dev", "eth0", "nud", "permanent"]);
    (host6, jail6)
}

#[test]
fn udp_icmp_and_ipv6_do_not_leave() {
    let w = World::start(133, "leaky");
    let mut sink = HostSink::bind(20133);
    let (host6, _) = give_the_jail_ipv6(&w, 133);
    let (o, o6, p) = (w.origin.addr(), w.origin.addr6(), sink.port);
    let jail = w.rt.jail(w.id);
    let rx_before = hostside::host_rx_packets(&jail);

    let udp = [
        format!("{o}:7000"),
        format!("{o}:443"),
        format!("[{o6}]:7000"),
        format!("[{o6}]:53"),
        format!("[{o6}]:443"),
        format!("[{host6}]:{p}"),
    ];
    let mut script: String = udp.iter().map(|t| format!("curl -s --max-time 1 tftp://{t}/probe & ")).collect();
    for (addr, port) in [(o6.to_string(), 7000), (host6.clone(), p), (o6.to_string(), 80)] {
        script += &format!("echo hello | timeout 2 nc -w 1 {addr} {port} & ");
    }
    script += &format!("nslookup denied.example {host6} & wait");
    w.exec(&script);
    for (cmd, target) in [("ping", o.to_string()), ("ping6", o6.to_string()), ("ping6", host6.clone())] {
        let out = w.exec(&format!("{cmd} -c 1 -W 1 {target}"));
        assert_eq!(ping_counts(&out.stdout), Some((1, 0)), "{cmd} {target} must send one echo request and get nothing back:\n{out}");
    }

    assert!(hostside::host_rx_packets(&jail) >= rx_before + 10, "the probes did not even reach the host side of the jail's veth");
    assert_eq!(w.origin.counts_after_barrier(), Counts::default(), "something from the jail reached the origin");
    assert_eq!(sink.counts_after_barrier(), (0, 0), "something from the jail reached the host sink");
    assert_eq!(w.origin.requests(), Vec::<String>::new());
}

#[test]
fn the_audit_log_holds_every_decision_in_order() {
    let w = World::start(134, "audited");
    let requests = [
        ("http://origin.test/allowed/1", "allow", 200),
        ("https://origin.test/allowed/2", "allow", 200),
        ("http://origin.test/private/3", "deny", 403),
        ("http://denied.test/4", "deny", 403),
    ];
    for (url, _, status) in requests {
        assert_eq!(w.get(url).status, status, "{url}");
    }
    let records = poll_until(Duration::from_secs(5), "the audit log to hold the four requests", || {
        let r = w.rt.audit_records(w.id);
        (r.iter().filter(|r| r.kind == "http" || r.kind == "https").count() >= requests.len()).then_some(r)
    });
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "seq must count 1, 2, 3, ... in file order: {records:#?}");
        assert_eq!(r.container_id, w.id);
    }
    let http: Vec<_> = records.iter().filter(|r| r.kind == "http" || r.kind == "https").collect();
    assert_eq!(http.len(), requests.len(), "{records:#?}");
    for (r, (url, decision, status)) in http.iter().zip(requests) {
        let host = url.split('/').nth(2).unwrap_or_default();
        assert_eq!(r.decision, decision, "{r:?}");
        assert_eq!(r.method.as_deref(), Some("GET"), "{r:?}");
        assert_eq!(r.url.as_deref(), Some(url), "{r:?}");
        assert_eq!(r.host.as_deref(), Some(host), "{r:?}");
        assert_eq!(r.status, Some(status), "{r:?}");
        assert_eq!(r.kind, url.split(':').next().unwrap_or_default(), "{r:?}");
    }

    let out = w.rt.raw(&["audit", w.id]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), records.len(), "one line per decision:\n{out}");
    for (line, r) in lines.iter().zip(&records) {
        assert!(line.contains(&format!("#{} ", r.seq)) && line.contains(&r.decision), "{line:?} does not show {r:?}");
        if let Some(url) = &r.url {
            assert!(line.contains(url.as_str()), "{line:?} does not show {url}");
        }
    }
}

#[test]
fn a_dead_sidecar_fails_closed() {
    let w = World::start(135, "orphan");
    assert_eq!(w.get("http://origin.test/allowed/before").status, 200);
    let sidecars = w.rt.leaks().sidecars;
    assert!(!sidecars.is_empty(), "no sidecar to kill");
    for s in &sidecars {
        let pid: i32 = s.split_whitespace().next().and_then(|p| p.parse().ok()).expect("sidecar pid");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    poll_until(Duration::from_secs(5), "the sidecar to be gone", || w.rt.leaks().sidecars.is_empty().then_some(()));

    let o = w.origin.addr();
    let out = w.exec(&format!("curl -sS --max-time 3 --resolve origin.test:80:{o} http://origin.test/allowed/after"));
    assert!(!out.success(), "with the sidecar dead, nothing may get through:\n{out}");
    let out = w.exec(&format!("curl -sS --max-time 3 --resolve origin.test:443:{o} https://origin.test/allowed/after"));
    assert!(!out.success(), "with the sidecar dead, nothing may get through:\n{out}");
    w.exec(&format!("curl -s --max-time 1 tftp://{o}:7000/probe; nslookup -timeout=1 origin.test {o}"));
    assert_eq!(w.origin.requests(), ["http GET /allowed/before host=origin.test"]);
    assert_eq!(w.origin.counts_after_barrier(), Counts { http_requests: 1, ..Counts::default() });

    w.rt.delete_force(w.id).ok();
    w.rt.leaks().assert_same_as(&LeakSnapshot::default());
}

#[test]
fn the_container_cannot_see_or_touch_the_boundary() {
    let w = World::start(136, "tamper");
    let out = w.exec("ps -o pid,args").ok();
    assert!(!out.stdout.contains("boundary-sidecar"), "the sidecar is visible inside:\n{out}");
    let mountinfo = w.exec("cat /proc/self/mountinfo").ok().stdout;
    for secret in ["ca.key", "sidecar.json", "jail.json", &w.rt.dirs.audit_dir.display().to_string()] {
        assert!(!mountinfo.contains(secret), "{secret} is mounted inside:\n{mountinfo}");
    }
    let bundle = w.exec("cat /etc/ssl/boundary-runc/ca-bundle.pem").ok().stdout;
    assert!(bundle.contains("BEGIN CERTIFICATE") && !bundle.contains("PRIVATE KEY"), "{bundle}");
    for file in ["/etc/ssl/boundary-runc/ca-bundle.pem", "/etc/resolv.conf"] {
        let out = w.exec(&format!("echo nameserver 192.0.2.1 >> {file}"));
        assert!(!out.success(), "{file} is writable inside:\n{out}");
    }
    let out = w.exec("cat /etc/resolv.conf").ok();
    assert_eq!(out.stdout.trim(), format!("nameserver {}", w.sidecar()));
}
