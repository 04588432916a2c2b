//! The shim against a recording fake runtime: pass-through keeps argv,
//! stdin/stdout, inherited fds, environment, pid and exit status; errors
//! reach the `--log` file as JSON lines. No root needed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SHIM: &str = env!("CARGO_BIN_EXE_boundary-runc");

/// A fake runtime: records its argv (one per line), pid, an env var, what
/// it reads on stdin and on fd 5, prints a marker on stdout, and exits with
/// the status in FAKE_EXIT.
const FAKE: &str = r#"#!/bin/sh
rec="$FAKE_RECORD"
: > "$rec.argv"
for a in "$@"; do printf '%s\n' "$a" >> "$rec.argv"; done
echo $$ > "$rec.pid"
printf '%s' "$FAKE_ENV_PROBE" > "$rec.env"
cat > "$rec.stdin"
if [ -e /proc/self/fd/5 ]; then cat <&5 > "$rec.fd5"; fi
if [ "$1" = "--version" ]; then echo "runc version 9.9.9"; echo "spec: 1.0.2"; exit 0; fi
echo "fake-stdout"
echo "fake-stderr" >&2
exit "${FAKE_EXIT:-0}"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(extra_config: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-runc");
        std::fs::write(&fake, FAKE).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = format!(
            "runtime = {:?}\nstate_root = {:?}\nhook_path = \"/bin/true\"\nsidecar_path = \"/bin/true\"\n{extra_config}",
            fake.display().to_string(),
            dir.path().join("state").display().to_string()
        );
        std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(SHIM);
        c.args(args)
            .env("BOUNDARY_RUNC_CONFIG", self.path("config.toml"))
            .env("FAKE_RECORD", self.path("rec"))
            .env("FAKE_ENV_PROBE", "kept")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn recorded(&self, what: &str) -> String {
        std::fs::read_to_string(self.path(&format!("rec.{what}"))).unwrap_or_default()
    }
}

#[test]
fn every_other_subcommand_is_one_execve_with_everything_kept() {
    let f = Fixture::new("");
    let argv = [
        "--root", "/run/x", "--unknown-global=1", "--debug", "--log", "/tmp/l.json", "--log-format", "json",
        "kill", "--all", "ctr-1", "SIGKILL",
    ];
    // An inherited fd 5 with content, to prove fds survive.
    let (rd, wr) = nix::unistd::pipe().unwrap();
    nix::unistd::write(&wr, b"through-fd5").unwrap();
    drop(wr);
    let mut cmd = f.cmd(&argv);
    cmd.env("FAKE_EXIT", "7");
    let rd_raw = std::os::fd::AsRawFd::as_raw_fd(&rd);
    // SAFETY: dup2 is async-signal-safe; it places the pipe at fd 5 in the child only.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc_dup2(rd_raw, 5) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    child.stdin.take().unwrap().write_all(b"stdin-bytes").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "exit status passes through");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fake-stdout\n", "stdout belongs to the runtime");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "fake-stderr\n");
    assert_eq!(f.recorded("argv").lines().collect::<Vec<_>>(), argv, "argv unchanged and in order");
    assert_eq!(f.recorded("pid").trim(), pid.to_string(), "same process: execve, not fork");
    assert_eq!(f.recorded("env"), "kept");
    assert_eq!(f.recorded("stdin"), "stdin-bytes");
    assert_eq!(f.recorded("fd5"), "through-fd5");
}

fn libc_dup2(old: i32, new: i32) -> i32 {
    // SAFETY: plain dup2 on fds owned by the caller.
    unsafe { nix::libc::dup2(old, new) }
}

#[test]
fn each_runc_subcommand_passes_through() {
    let f = Fixture::new("");
    for args in [
        &["start", "c"][..],
        &["state", "c"],
        &["exec", "--process", "/p.json", "--detach", "--pid-file", "/p", "c"],
        &["ps", "--format", "json", "c"],
        &["pause", "c"],
        &["resume", "c"],
        &["update", "--resources=-", "c"],
        &["events", "--stats", "c"],
        &["list", "--format", "json"],
        &["spec"],
    ] {
        let out = f.cmd(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(f.recorded("argv").lines().collect::<Vec<_>>(), args, "{args:?}");
        assert_eq!(out.stdout, b"fake-stdout\n", "{args:?}");
    }
}

#[test]
fn checkpoint_and_restore_are_refused_before_the_runtime_runs() {
    let f = Fixture::new("");
    let log = f.path("log.json");
    for args in [&["restore", "--bundle", "/b", "--image-path", "/img", "-no-subreaper", "c1"][..], &["checkpoint", "--image-path", "/img", "c1"]] {
        let mut all = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
        all.extend_from_slice(args);
        let out = f.cmd(&all).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!f.path("rec.argv").exists(), "{args:?} reached the runtime");
        let errors = log_errors(&log);
        let e = errors.last().unwrap();
        assert!(e.contains(&format!("does not {} containers ({} c1)", args[0], args[0])) && e.contains("outside its network jail"), "{errors:?}");
    }
}

#[test]
fn an_unknown_subcommand_or_a_create_after_a_misread_flag_is_refused() {
    let f = Fixture::new("");
    let log = f.path("log.json");
    for args in [&["--ro", "/r", "create", "c1"][..], &["frobnicate", "c1"]] {
        let mut all = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
        all.extend_from_slice(args);
        let out = f.cmd(&all).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!f.path("rec.argv").exists(), "{args:?} reached the runtime");
        assert!(log_errors(&log).last().unwrap().contains("unknown subcommand"), "{args:?}");
    }
}

#[test]
fn delete_under_another_runtime_root_leaves_the_jail_alone() {
    let f = Fixture::new("");
    let dir = f.path("state").join("c1");
    std::fs::create_dir_all(&dir).unwrap();
    let state = serde_json::json!({
        "container_id": "c1", "index": 0, "host_side": {"kind": "fresh"}, "netns_path": f.path("state/netns/c1"),
        "host_if": "bnd0", "host_addr": "10.0.0.1", "jail_addr": "10.0.0.2", "prefix_len": 30, "nft_table": "t",
        "sidecar_pid": null, "runtime_root": "/run/root-a"
    });
    std::fs::write(dir.join("jail.json"), state.to_string()).unwrap();
    let out = f.cmd(&["--root", "/run/root-b", "delete", "c1"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(f.recorded("argv").lines().collect::<Vec<_>>(), ["--root", "/run/root-b", "delete", "c1"]);
    assert!(dir.join("jail.json").exists(), "the jail of root A's c1 was torn down by root B's delete");
}

#[test]
fn delete_of_a_container_without_a_jail_is_a_plain_execve() {
    let f = Fixture::new("");
    let out = f.cmd(&["delete", "--force", "nojail"]).env("FAKE_EXIT", "3").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(f.recorded("argv").lines().collect::<Vec<_>>(), ["delete", "--force", "nojail"]);
}

#[test]
fn version_keeps_runcs_first_line_and_adds_ours() {
    let f = Fixture::new("");
    let out = f.cmd(&["--version"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "runc version 9.9.9");
    assert!(lines.iter().any(|l| l.starts_with("boundary-runc ")), "{text}");
    assert_eq!(lines.iter().filter(|l| l.contains("version")).count(), 1, "dockerd names the runtime after the last line holding \"version\": {text}");
}

fn log_errors(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("non-JSON log line {l:?}: {e}")))
        .filter(|v| v["level"] == "error")
        .map(|v| {
            assert!(v["time"].is_string());
            v["msg"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn hard_links_to_boundary_runc_named_runc_on_path_are_not_taken_for_runc() {
    // Two hard links, beside the binary (a hard link cannot cross file
    // systems): compared by path, each took the other for runc, and the
    // pass-through exec'd between them for ever.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dirs: Vec<PathBuf> = ["ours1", "ours2", "real"].iter().map(|d| dir.path().join(d)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::hard_link(SHIM, dirs[0].join("runc")).unwrap();
    std::fs::hard_link(SHIM, dirs[1].join("runc")).unwrap();
    std::fs::write(dirs[2].join("runc"), FAKE).unwrap();
    std::fs::set_permissions(dirs[2].join("runc"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = Fixture::new("");
    let cfg = format!("state_root = {:?}\n", f.path("state").display().to_string());
    std::fs::write(f.path("config.toml"), cfg).unwrap();
    let path = format!("{}:{}:{}:/usr/bin:/bin", dirs[0].display(), dirs[1].display(), dirs[2].display());
    let mut child = f.cmd(&["state", "c"]).env("PATH", path).env("FAKE_EXIT", "4").stdin(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the pass-through never reached the real runc (boundary-runc exec'd its own hard links)");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(4));
    assert_eq!(f.recorded("argv"), "state\nc\n", "the real runc ran");
}

#[test]
fn a_missing_runtime_is_reported_in_the_log() {
    let f = Fixture::new("");
    std::fs::write(f.path("config.toml"), "runtime = \"/nonexistent/runc\"\n").unwrap();
    let log = f.path("log.json");
    let out = f.cmd(&["--log", log.to_str().unwrap(), "--log-format", "json", "state", "c"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let errors = log_errors(&log);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("/nonexistent/runc") && errors[0].contains("not found"), "{errors:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/runc"));
}

#[test]
fn a_malformed_config_file_is_reported() {
    let f = Fixture::new("");
    std::fs::write(f.path("config.toml"), "runtime = [\n").unwrap();
    let log = f.path("log.json");
    let out = f.cmd(&["--log", log.to_str().unwrap(), "--log-format", "json", "state", "c"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let errors = log_errors(&log);
    assert!(errors[0].contains("malformed config file"), "{errors:?}");
}

fn bundle(f: &Fixture, config_json: &str) -> PathBuf {
    let b = f.path("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("config.json"), config_json).unwrap();
    b
}

fn create_errors(f: &Fixture, b: &Path, text_log: bool) -> (Option<i32>, Vec<String>, String) {
    let log = f.path("create.log");
    let mut args = vec!["--log", log.to_str().unwrap()];
    if !text_log {
        args.extend(["--log-format", "json"]);
    }
    args.extend(["create", "--bundle", b.to_str().unwrap(), "ctr"]);
    let out = f.cmd(&args).output().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let errors = if text_log { Vec::new() } else { log_errors(&log) };
    assert!(f.recorded("argv").is_empty(), "runc must not be called when create fails");
    (out.status.code(), errors, text)
}

#[test]
fn a_malformed_config_json_fails_create_with_a_clear_log_entry() {
    let f = Fixture::new("");
    let b = bundle(&f, "{\"ociVersion\": \"1.0.2\", \"process\": ");
    let (code, errors, _) = create_errors(&f, &b, false);
    assert_eq!(code, Some(1));
    assert!(errors[0].contains("malformed bundle config") && errors[0].contains("config.json"), "{errors:?}");
}

#[test]
fn an_unreadable_bundle_fails_create() {
    let f = Fixture::new("");
    let missing = f.path("no-such-bundle");
    let (code, errors, _) = create_errors(&f, &missing, false);
    assert_eq!(code, Some(1));
    assert!(errors[0].contains("cannot read bundle config") && errors[0].contains("no-such-bundle"), "{errors:?}");
}

#[test]
fn an_invalid_rule_fails_create_naming_the_rule() {
    let f = Fixture::new("");
    let spec = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","env":["BOUNDARY_ALLOW=domain=github.*"]},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"network"}]}}"#;
    let b = bundle(&f, spec);
    let (code, errors, _) = create_errors(&f, &b, false);
    assert_eq!(code, Some(1));
    assert!(errors[0].contains("BOUNDARY_ALLOW") && errors[0].contains("github.*"), "{errors:?}");
    let (_, _, text) = create_errors(&f, &b, true);
    assert!(text.contains("level=error") && text.contains("github.*"), "text log: {text}");
}

#[test]
fn the_host_pid_namespace_fails_create_naming_the_setting() {
    let f = Fixture::new("");
    for namespaces in [r#"[{"type":"network"}]"#, r#"[{"type":"pid","path":"/proc/self/ns/pid"},{"type":"network"}]"#] {
        let spec = format!(r#"{{"ociVersion":"1.0.2","process":{{"args":["sh"],"cwd":"/"}},"root":{{"path":"rootfs"}},"linux":{{"namespaces":{namespaces}}}}}"#);
        let b = bundle(&f, &spec);
        let (code, errors, _) = create_errors(&f, &b, false);
        assert_eq!(code, Some(1), "{namespaces}");
        let last = errors.last().expect("an error in the log");
        assert!(last.contains("pid namespace") && last.contains("allow_host_pid_namespace = true"), "{namespaces}: {errors:?}");
    }
}

#[test]
fn features_is_valid_json_or_the_delegates_own_failure() {
    let f = Fixture::new("");
    // The fake prints non-JSON: the shim answers with a minimal document.
    let out = f.cmd(&["features"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ociVersionMin"], "1.0.0");
    // A delegate with a features document is passed through verbatim.
    let fake = f.path("fake-runc");
    std::fs::write(&fake, "#!/bin/sh\necho '{\"ociVersionMin\":\"1.0.0\",\"ociVersionMax\":\"1.1.0\",\"hooks\":[\"prestart\"]}'\n").unwrap();
    let out = f.cmd(&["features"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ociVersionMax"], "1.1.0");
    assert_eq!(v["hooks"][0], "prestart");
    // A delegate without the subcommand (crun before 1.9): the minimal one.
    std::fs::write(&fake, "#!/bin/sh\necho 'unknown command features' >&2\nexit 1\n").unwrap();
    let out = f.cmd(&["features"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ociVersionMin"], "1.0.0");
    // Any other failure is the delegate's, passed on.
    std::fs::write(&fake, "#!/bin/sh\necho 'features: cannot read /proc/self/status' >&2\nexit 3\n").unwrap();
    let out = f.cmd(&["features"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "features: cannot read /proc/self/status\n");
}
