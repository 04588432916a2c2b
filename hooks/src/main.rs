//! `boundary-hook`: the OCI hooks boundary-runc adds to a jailed
//! container's config.json.
//!
//! `boundary-hook poststop --state-root DIR` reads the OCI state from stdin
//! (runtime-spec "State": `{"ociVersion","id","status",...}`) and removes
//! the container's jail: sidecar, nft table, veth, namespace, lease and
//! state files. It runs when runc destroys the container, so `runc run` and
//! `runc delete` clean up even though the shim has already exec'd runc.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};

fn main() {
    if let Err(e) = run() {
        eprintln!("boundary-hook: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (hook, rest) = args.split_first().context("usage: boundary-hook poststop --state-root DIR")?;
    let state_root = match rest {
        [flag, dir] if flag == "--state-root" => PathBuf::from(dir),
        _ => bail!("usage: boundary-hook {hook} --state-root DIR"),
    };
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("cannot read the OCI state from stdin")?;
    let state: serde_json::Value = serde_json::from_str(&input).context("the OCI state on stdin is not JSON")?;
    let id = state.get("id").and_then(|v| v.as_str()).context("the OCI state on stdin has no \"id\"")?;
    boundary_runc::args::validate_id(id)?;
    match hook.as_str() {
        "poststop" => {
            let errors = boundary_runc::jail::teardown(&state_root, id);
            if !errors.is_empty() {
                bail!("teardown of {id}: {}", errors.join("; "));
            }
            Ok(())
        }
        other => bail!("unknown hook {other:?} (expected poststop)"),
    }
}
