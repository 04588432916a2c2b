//! `boundary-runc install docker` against the REAL running dockerd and its
//! real `/etc/docker/daemon.json`: install edits the file and SIGHUPs
//! dockerd, `docker info` lists the runtime, `docker run --runtime=<name>`
//! is jailed; `uninstall docker` takes it out again and keeps every other
//! setting. daemon.json (and any backup file) is restored byte for byte at
//! the end, whatever happens, under the lock the Docker tests use. Slot 174.
//!
//! (`install containerd` against a real containerd is in containerd.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use boundary_tests::docker::{self, docker};
use boundary_tests::probe::HttpReply;
use boundary_tests::{binaries, poll_until, require_root, LeakSnapshot, Origin, Runtime, Settings};
use serde_json::Value;

const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const RULES: &str = "domain=origin.test path=/allowed/*";

/// A file's bytes (or its absence), put back on drop.
struct Saved {
    path: PathBuf,
    bytes: Option<Vec<u8>>,
}

impl Saved {
    fn take(path: &Path) -> Saved {
        Saved {
            path: path.to_path_buf(),
            bytes: std::fs::read(path).ok(),
        }
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        match &self.bytes {
            Some(b) => std::fs::write(&self.path, b)
                .unwrap_or_else(|e| eprintln!("cannot restore {}: {e}", self.path.display())),
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Files as they were, put back on drop; then dockerd rereads daemon.json.
struct Restore {
    files: Vec<Saved>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        self.files.clear();
        let pid = Command::new("pidof")
            .arg("dockerd")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for p in pid.split_whitespace() {
            let _ = Command::new("kill").args(["-HUP", p]).status();
        }
    }
}

fn runtimes() -> Value {
    let out = docker(&["info", "--format", "{{json .Runtimes}}"]).ok();
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("docker info runtimes are not JSON ({e}): {out}"))
}

fn boundary_runc(args: &[&str]) -> String {
    let out = Command::new(&binaries().runtime)
        .args(args)
        .env_remove("BOUNDARY_DOCKER_CONFIG")
        .output()
        .expect("run boundary-runc");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "boundary-runc {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn daemon_json_value() -> Value {
    serde_json::from_slice(&std::fs::read(DAEMON_JSON).expect("read daemon.json"))
        .expect("daemon.json is JSON")
}

#[test]
fn install_docker_registers_with_the_running_dockerd_and_uninstall_removes_it() {
    require_root();
    let image = docker::image();
    let slot = 174;
    let origin = Origin::start(slot);
    let rt = Runtime::new(
        Settings::new(slot)
            .pin("origin.test", origin.addr())
            .upstream_ca(&origin.ca_file()),
    );
    // dockerd passes no environment to runtimes: a wrapper sets the config.
    let wrapper = rt.config_file.with_file_name("installed-runtime.sh");
    let script = format!(
        "#!/bin/sh\nexport BOUNDARY_RUNC_CONFIG='{}'\nexec '{}' \"$@\"\n",
        rt.config_file.display(),
        binaries().runtime.display()
    );
    std::fs::write(&wrapper, script).expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("chmod wrapper");
    let name = format!("boundary-e2e-install-{slot}");
    let keep = format!("boundary-e2e-keep-{slot}");

    let _lock = docker::lock_daemon_json();
    let backup_path = PathBuf::from(format!("{DAEMON_JSON}.boundary-runc.bak"));
    let _restore = Restore {
        files: vec![
            Saved::take(Path::new(DAEMON_JSON)),
            Saved::take(&backup_path),
        ],
    };
    // Someone else's settings, which install and uninstall must keep.
    let mut before = std::fs::read(DAEMON_JSON)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    before
        .as_object_mut()
        .expect("daemon.json is an object")
        .entry("runtimes")
        .or_insert_with(|| serde_json::json!({}))[&keep] =
        serde_json::json!({"path": "/usr/sbin/runc"});
    std::fs::write(
        DAEMON_JSON,
        serde_json::to_vec_pretty(&before).expect("json"),
    )
    .expect("write daemon.json");

    let out = boundary_runc(&[
        "install",
        "docker",
        "--name",
        &name,
        "--binary",
        &wrapper.display().to_string(),
    ]);
    assert!(
        out.contains("sent SIGHUP to dockerd (pid "),
        "install signals the running dockerd: {out}"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&std::fs::read(&backup_path).expect("backup"))
            .expect("json"),
        before,
        "the backup holds the previous file"
    );
    let installed = daemon_json_value();
    assert_eq!(
        installed["runtimes"][&name]["path"],
        wrapper.display().to_string()
    );
    assert_eq!(installed["runtimes"][&keep], before["runtimes"][&keep]);
    poll_until(
        Duration::from_secs(20),
        "dockerd to list the installed runtime",
        || runtimes().get(&name).map(|_| ()),
    );
    assert!(runtimes().get(&keep).is_some(), "the other runtime stays");

    let allow = format!("BOUNDARY_ALLOW={RULES}");
    let probe = "curl -sS --max-time 10 -D - http://origin.test/allowed/a; echo @@@; curl -sS --max-time 10 -D - http://origin.test/private";
    let run = docker(&[
        "run",
        "--rm",
        "--runtime",
        &name,
        "-e",
        &allow,
        image,
        "sh",
        "-c",
        probe,
    ])
    .ok();
    let parts: Vec<&str> = run.stdout.split("@@@\n").collect();
    let allowed = HttpReply::parse(parts[0]).unwrap_or_else(|| panic!("not an HTTP reply:\n{run}"));
    assert_eq!(
        (allowed.status, allowed.body.as_str()),
        (200, "origin saw GET /allowed/a\n"),
        "{run}"
    );
    let denied = parts
        .get(1)
        .and_then(|p| HttpReply::parse(p))
        .unwrap_or_else(|| panic!("not an HTTP reply:\n{run}"));
    assert_eq!(
        (denied.status, denied.header("x-boundary-decision")),
        (403, Some("deny")),
        "{run}"
    );
    assert!(
        denied.body.contains("domain=origin.test"),
        "the 403 names a rule: {:?}",
        denied.body
    );
    assert_eq!(
        origin.requests(),
        ["http GET /allowed/a host=origin.test".to_string()]
    );
    rt.leaks().assert_same_as(&LeakSnapshot::default());

    let out = boundary_runc(&["uninstall", "docker", "--name", &name]);
    assert!(
        out.contains("sent SIGHUP to dockerd (pid "),
        "uninstall signals the running dockerd: {out}"
    );
    assert_eq!(
        daemon_json_value(),
        before,
        "uninstall restores every other setting"
    );
    poll_until(
        Duration::from_secs(20),
        "dockerd to drop the runtime",
        || runtimes().get(&name).is_none().then_some(()),
    );
    assert!(runtimes().get(&keep).is_some(), "the other runtime stays");
    let refused = docker(&["run", "--rm", "--runtime", &name, image, "true"]).failed();
    assert!(refused.all().contains(&name), "{refused}");
}
