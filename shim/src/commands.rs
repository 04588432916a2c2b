//! boundary-runc's own subcommands, for a person at a terminal:
//! `policy check`, `audit`, `doctor`, `install` and `uninstall`. (runc has
//! no subcommands of these names.)

#![allow(clippy::print_stdout)] // these commands print for a person

use std::ffi::OsString;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use boundary_contract::AuditRecord;
use boundary_policy::{Decision, Policy, Request};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::install;

#[derive(Debug, Parser)]
#[command(name = "boundary-runc", about = "boundary-runc's own commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
    /// Print a container's audit log for a person.
    Audit {
        /// Container id.
        id: String,
        /// Keep printing as new decisions arrive.
        #[arg(long, short)]
        follow: bool,
        /// Runtime config file (default: BOUNDARY_RUNC_CONFIG or /etc/boundary-runc/config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check the host: delegate runtime, nftables, CA, binaries, engine
    /// registrations, and leftovers of crashed containers. Exit status 0 when
    /// all is well, 1 otherwise.
    Doctor {
        /// Remove every leftover found, then check again.
        #[arg(long)]
        clean: bool,
        /// Runtime config file (default: BOUNDARY_RUNC_CONFIG or /etc/boundary-runc/config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Register boundary-runc with a container engine (idempotent; backs up what it changes).
    Install {
        #[arg(value_enum)]
        engine: install::Engine,
        /// Show the change as a diff and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The boundary-runc binary to register (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Runtime name (the Kubernetes RuntimeClass handler).
        #[arg(long, default_value = install::DEFAULT_NAME)]
        name: String,
    },
    /// Take out what `install` added.
    Uninstall {
        #[arg(value_enum)]
        engine: install::Engine,
        /// Show the change as a diff and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Runtime name given to `install`.
        #[arg(long, default_value = install::DEFAULT_NAME)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Decide one request. Exit status: 0 allowed, 1 denied, 2 invalid input.
    Check {
        /// An allow rule (repeatable; each may hold several rules separated by ';').
        #[arg(long = "allow", value_name = "RULE")]
        allow: Vec<String>,
        /// Runtime config file whose default rules also apply.
        #[arg(long)]
        config: Option<PathBuf>,
        /// HTTP method, e.g. GET.
        method: String,
        /// Full URL, e.g. https://api.github.com/repos.
        url: String,
    },
}

/// Runs an own subcommand; returns the exit status.
pub fn run(args: &[OsString]) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once(OsString::from("boundary-runc")).chain(args.iter().cloned())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let res = match cli.command {
        Cmd::Policy { command: PolicyCmd::Check { allow, config, method, url } } => policy_check(&allow, config, &method, &url),
        Cmd::Audit { id, follow, config } => audit(&id, follow, config),
        Cmd::Doctor { clean, config } => load_config(config).map(|cfg| crate::doctor::run(&cfg, clean)),
        Cmd::Install { engine, dry_run, binary, name } => register(engine, true, binary, &name, dry_run),
        Cmd::Uninstall { engine, dry_run, name } => register(engine, false, None, &name, dry_run),
    };
    res.unwrap_or_else(|e| {
        eprintln!("boundary-runc: {e:#}");
        2
    })
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load_from(&p)?,
        None => Config::load()?,
    })
}

fn register(engine: install::Engine, add: bool, binary: Option<PathBuf>, name: &str, dry_run: bool) -> anyhow::Result<i32> {
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find this binary's path (give --binary): {e}"))?,
    };
    let reg = install::Registration::new(name, binary)?;
    install::run(engine, add, &reg, &install::Paths::from_env(), dry_run, &mut std::io::stdout().lock())?;
    Ok(0)
}

/// The parts of a URL the policy looks at.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| anyhow::anyhow!("invalid URL {url:?}: expected scheme://host/path"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => anyhow::bail!("invalid URL {url:?}: scheme must be http or https"),
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.is_empty() || path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    if authority.contains('@') {
        anyhow::bail!("invalid URL {url:?}: user info is not allowed");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => {
            (h.to_string(), p.parse::<u16>().map_err(|_| anyhow::anyhow!("invalid URL {url:?}: bad port {p:?}"))?)
        }
        _ => (authority.to_string(), default_port),
    };
    if host.is_empty() {
        anyhow::bail!("invalid URL {url:?}: no host");
    }
    Ok(Target { scheme, host, port, path })
}

fn policy_check(allow: &[String], config: Option<PathBuf>, method: &str, url: &str) -> anyhow::Result<i32> {
    let cfg = load_config(config)?;
    let texts = cfg.policy.default_rules.iter().chain(allow.iter()).map(String::as_str);
    let policy = Policy::from_texts(texts)?;
    let t = parse_url(url)?;
    let req = Request { method, host: &t.host, path: &t.path, port: Some(t.port) };
    match policy.evaluate(&req) {
        Decision::Allow { rule } => {
            println!("allow {method} {url}");
            println!("  matched rule: {}", policy.rules()[rule]);
            Ok(0)
        }
        Decision::Deny(d) => {
            println!("deny {method} {url}");
            println!("  reason: {}", d.reason);
            if let Some(s) = d.suggestion {
                println!("  to allow it, add the rule: {s}");
            }
            Ok(1)
        }
    }
}

fn describe(r: &AuditRecord) -> String {
    let mut s = format!("{} #{} {:5} {}", r.time, r.seq, r.decision, r.kind);
    for v in [&r.method, &r.url].into_iter().flatten() {
        s.push(' ');
        s.push_str(v);
    }
    if r.url.is_none() {
        if let Some(h) = &r.host {
            s.push(' ');
            s.push_str(h);
        }
    }
    if let Some(st) = r.status {
        s.push_str(&format!(" -> {st}"));
    }
    if let Some(b) = r.bytes {
        s.push_str(&format!(" {b}B"));
    }
    if let Some(rule) = &r.rule {
        s.push_str(&format!(" [rule: {rule}]"));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!(" [{reason}]"));
    }
    s
}

fn audit(id: &str, follow: bool, config: Option<PathBuf>) -> anyhow::Result<i32> {
    crate::args::validate_id(id)?;
    let cfg = load_config(config)?;
    let path = cfg.audit.dir.join(format!("{id}.jsonl"));
    let file = std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("cannot open audit log {}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            if !follow {
                return Ok(0);
            }
            // A partial line is re-read once it is complete.
            let back = line.len() as i64;
            reader.seek_relative(-back)?;
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        match serde_json::from_str::<AuditRecord>(line.trim_end()) {
            Ok(r) => println!("{}", describe(&r)),
            Err(_) => println!("(unreadable line) {}", line.trim_end()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("https://API.github.com/repos?x=1").unwrap();
        assert_eq!(t, Target { scheme: "https".into(), host: "API.github.com".into(), port: 443, path: "/repos?x=1".into() });
        assert_eq!(parse_url("http://h:8080").unwrap().port, 8080);
        assert_eq!(parse_url("http://h").unwrap().path, "/");
        assert!(parse_url("ftp://h/").is_err());
        assert!(parse_url("https://u:p@h/").is_err());
        assert!(parse_url("github.com").is_err());
    }
}
