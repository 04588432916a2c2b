//! `boundary-hook`: the OCI hooks boundary-runc adds to a jailed
//! container's config.json.
//!
//! `boundary-hook docker-setkey --state-root DIR [--gate-timeout-ms N] --
//! PATH ARGV0 [ARGS...]` wraps Docker's `libnetwork-setkey` prestart hook:
//! it runs Docker's hook (`execve`) with the OCI state's `pid` replaced by
//! the jail's sidecar keeper, so dockerd configures the jail's dedicated
//! host side instead of the jail (see `boundary_runc::docker`). With
//! `--gate-timeout-ms` it is the gate as well (first, as `gate` would be):
//! one hook process instead of two.
//!
//! `boundary-hook gate --state-root DIR --timeout-ms N` is the first
//! prestart hook of a jailed container: it waits until the jail is built
//! and fails the create with the reason when it could not be, then hands
//! the container's init to the sidecar keeper (see `boundary_runc::gate`).
//!
//! `boundary-hook poststop --state-root DIR` reads the OCI state from stdin
//! (runtime-spec "State": `{"ociVersion","id","status",...}`) and removes
//! the container's jail: sidecar, nft table, veth, namespace, lease and
//! state files. It runs when runc destroys the container, so `runc run` and
//! `runc delete` clean up even though the shim has already exec'd runc; it
//! is also the orphan watch's teardown command.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use boundary_runc::gate;
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("boundary-hook: {e:#}");
        let gate = e.chain().find_map(|c| {
            c.downcast_ref::<gate::GateError>().or(match c.downcast_ref::<boundary_runc::docker::DockerError>() {
                Some(boundary_runc::docker::DockerError::Gate(g)) => Some(g),
                _ => None,
            })
        });
        std::process::exit(gate.map_or(1, gate::GateError::exit_code));
    }
}

fn run() -> anyhow::Result<()> {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if raw.first().is_some_and(|a| a == boundary_runc::docker::WRAP_SUBCOMMAND) {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).context("cannot read the OCI state from stdin")?;
        return Err(boundary_runc::docker::setkey(&raw[1..], &input).into());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (hook, rest) = args.split_first().context("usage: boundary-hook poststop --state-root DIR")?;
    let mut token = None;
    let (state_root, timeout) = match rest {
        [flag, dir] if flag == "--state-root" => (PathBuf::from(dir), None),
        // The keeper's orphan watch: tear down only the jail of its create.
        [flag, dir, t, n] if flag == "--state-root" && t == "--if-create-token" => {
            token = Some(n.parse::<u64>().with_context(|| format!("--if-create-token {n:?} is not a number"))?);
            (PathBuf::from(dir), None)
        }
        [flag, dir, t, ms] if flag == "--state-root" && t == "--timeout-ms" => {
            let ms: u64 = ms.parse().with_context(|| format!("--timeout-ms {ms:?} is not a number of milliseconds"))?;
            (PathBuf::from(dir), Some(Duration::from_millis(ms)))
        }
        _ => bail!("usage: boundary-hook {hook} --state-root DIR [--timeout-ms N | --if-create-token N]"),
    };
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("cannot read the OCI state from stdin")?;
    let state: serde_json::Value = serde_json::from_str(&input).context("the OCI state on stdin is not JSON")?;
    let id = state.get("id").and_then(|v| v.as_str()).context("the OCI state on stdin has no \"id\"")?;
    boundary_runc::args::validate_id(id)?;
    match hook.as_str() {
        "poststop" => {
            let errors = match token {
                Some(t) => boundary_runc::jail::teardown_if_same(&state_root, id, t).unwrap_or_default(),
                None => boundary_runc::jail::teardown(&state_root, id),
            };
            if !errors.is_empty() {
                bail!("teardown of {id}: {}", errors.join("; "));
            }
            Ok(())
        }
        gate::SUBCOMMAND => {
            let timeout = timeout.context("usage: boundary-hook gate --state-root DIR --timeout-ms N")?;
            Ok(gate::pass_as_hook(&state_root, id, state.get("pid").and_then(serde_json::Value::as_i64), timeout)?)
        }
        other => bail!("unknown hook {other:?} (expected poststop, gate or docker-setkey)"),
    }
}
