//! runc's command line, as far as boundary-runc needs to understand it.
//!
//! The engines call `BIN [global flags] SUBCMD [subcommand flags] ID [ARGS]`
//! (see `shared/notes/runtime-contract.md`). runc parses it with urfave/cli
//! v1, which uses Go's `flag` package: `-flag` and `--flag` are the same,
//! a value is given as `--flag=v` or `--flag v`, boolean flags take no
//! separate value, and flag parsing stops at the first positional argument.
//! We only *read* the command line: the delegate always receives it
//! byte-for-byte, so flags we do not know are carried along untouched.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// runc global flags that take a value (runc(8) "GLOBAL OPTIONS"; crun(1)
/// adds `--cgroup-manager`). Every other global flag is boolean.
const GLOBAL_VALUE_FLAGS: &[&str] = &["root", "log", "log-format", "log-level", "criu", "rootless", "cgroup-manager"];

/// crun's global long options (crun(1)). crun parses with argp, which
/// takes any unique prefix of a long option for it (`--rootl V` is
/// `--rootless V`); runc's Go flags take none, and refuse them.
const CRUN_GLOBAL_FLAGS: &[&str] =
    &["debug", "cgroup-manager", "systemd-cgroup", "log", "log-format", "log-level", "root", "rootless", "version", "help", "usage"];

/// The global flag `--name` stands for: itself if runc or crun knows it by
/// that name, else the one crun option it is a unique prefix of.
fn global_flag(name: &str) -> &str {
    if GLOBAL_VALUE_FLAGS.contains(&name) || CRUN_GLOBAL_FLAGS.contains(&name) {
        return name;
    }
    let mut matches = CRUN_GLOBAL_FLAGS.iter().filter(|f| f.starts_with(name));
    match (matches.next(), matches.next()) {
        (Some(only), None) => only,
        _ => name,
    }
}

/// `runc create` / `runc run` flags that take a value (runc-create(8),
/// runc-run(8); `pidfd-socket` since runc 1.2).
const CREATE_VALUE_FLAGS: &[&str] = &["bundle", "b", "console-socket", "pid-file", "preserve-fds", "pidfd-socket", "config", "f"];

/// Every other `create` / `run` flag runc and crun know (all boolean).
/// `create` must understand its whole command line: a flag it does not
/// know might name the bundle another way (crun takes unique prefixes,
/// `--bun=B`), and then the delegate would run a config.json that was
/// never rewritten. So any other flag is refused.
const CREATE_BOOL_FLAGS: &[&str] = &["detach", "d", "keep", "no-pivot", "no-new-keyring", "no-subreaper", "systemd-cgroup", "help", "h"];

/// The subcommands engines call, and the rest of runc's and crun's. One
/// not in this list is refused rather than handed on: with a global flag
/// read the wrong way (crun takes unique prefixes of long options, so
/// `--ro /r` is `--root /r`) its "name" could be that flag's value, and
/// the real subcommand, `create` say, would reach the delegate unseen.
pub const KNOWN_COMMANDS: &[&str] = &[
    "create", "run", "start", "delete", "exec", "state", "kill", "list", "ps", "pause", "resume", "update", "events",
    "spec", "features", "checkpoint", "restore", "help", "h", "init", "mounts",
];

/// The global flags boundary-runc reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Globals {
    /// `--log FILE`: where the engine reads errors from.
    pub log: Option<PathBuf>,
    /// `--log-format json`.
    pub log_json: bool,
    /// `--root DIR`: the delegate's state root.
    pub root: Option<PathBuf>,
    /// `--version` / `-v` given before any subcommand (as true).
    pub version: bool,
    /// `--help` / `-h` given before any subcommand (as true).
    pub help: bool,
}

/// A Go boolean flag's value: absent is true; `strconv.ParseBool`'s true
/// spellings are true; anything else (its false spellings, or a value Go
/// refuses) is not.
fn go_true(value: Option<&OsString>) -> bool {
    value.is_none_or(|v| matches!(v.to_str(), Some("1" | "t" | "T" | "TRUE" | "true" | "True")))
}

/// A parsed invocation. `args` is everything after argv[0], untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub args: Vec<OsString>,
    pub globals: Globals,
    /// Index into `args` of the subcommand, if there is one.
    pub command_index: Option<usize>,
}

/// What `create`/`run` were asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateArgs {
    pub bundle: Option<PathBuf>,
    pub id: String,
}

/// What `delete` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteArgs {
    pub force: bool,
    pub id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("{command}: missing container id")]
    MissingId { command: String },
    #[error("{command}: flag --{flag} needs a value")]
    MissingValue { command: String, flag: String },
    #[error("invalid container id {id:?}: only letters, digits, '_', '+', '-' and '.' are allowed")]
    InvalidId { id: String },
    #[error("argument {arg:?} is not valid UTF-8")]
    NotUtf8 { arg: String },
    #[error("{command}: {arg:?} after the container id: refused (runc would read flags there, such as another --bundle)")]
    AfterId { command: String, arg: String },
    #[error("container id {id:?} is reserved: boundary-runc keeps a directory of that name beside its jails")]
    ReservedId { id: String },
    #[error("{command}: unknown flag {flag:?} (boundary-runc must understand every {command} flag: one it cannot read might change what it checks, the bundle or the capabilities)")]
    UnknownFlag { command: String, flag: String },
    #[error("{command}: --{flag} is not supported: boundary-runc rewrites the bundle's config.json and no other file")]
    ConfigFlag { command: String, flag: String },
    #[error("{command}: {arg:?}: runc and crun read this spelling differently (runc takes `-name=value` whole, crun a one-letter option with the rest as its value): give it as --name value")]
    DashForm { command: String, arg: String },
}

/// Refuses a single-dash flag that runc (Go's flag package: `-bundle=/x` is
/// `--bundle=/x`) and crun (argp: `-bundle=/x` is `-b` with `undle=/x`,
/// `-b=/x` is `-b` with `=/x`) read differently.
pub fn check_dash_form(command: &str, arg: &OsStr) -> Result<(), ArgsError> {
    let Some(s) = arg.to_str() else { return Ok(()) };
    let Some(body) = s.strip_prefix('-').filter(|b| !b.starts_with('-') && !b.is_empty()) else { return Ok(()) };
    let name = body.split_once('=').map_or(body, |(n, _)| n);
    if name.chars().count() > 1 || body.contains('=') {
        return Err(ArgsError::DashForm { command: command.to_string(), arg: s.to_string() });
    }
    Ok(())
}

/// Splits `-x`, `--x`, `--x=v` into (`x`, Some(`v`)). `None` for positionals
/// and for a lone `-` or `--`.
fn flag_name(arg: &OsStr) -> Option<(&str, Option<&str>)> {
    let s = arg.to_str()?;
    let body = s.strip_prefix("--").or_else(|| s.strip_prefix('-'))?;
    if body.is_empty() || body.starts_with('-') {
        return None;
    }
    Some(match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    })
}

impl Invocation {
    pub fn parse(args: Vec<OsString>) -> Invocation {
        let mut globals = Globals::default();
        let mut i = 0;
        let mut command_index = None;
        while i < args.len() {
            let Some((name, inline)) = flag_name(&args[i]) else {
                // `--` ends the global flags (Go's flag package and argp
                // alike): the subcommand follows it.
                let at = if args[i] == "--" { i + 1 } else { i };
                command_index = (at < args.len()).then_some(at);
                break;
            };
            let long = args[i].to_str().is_some_and(|a| a.starts_with("--"));
            let name = if long { global_flag(name) } else { name };
            let mut value = inline.map(OsString::from);
            if value.is_none() && GLOBAL_VALUE_FLAGS.contains(&name) && i + 1 < args.len() {
                i += 1;
                value = Some(args[i].clone());
            }
            match (name, value) {
                ("log", Some(v)) => globals.log = Some(PathBuf::from(v)),
                ("log-format", Some(v)) => globals.log_json = v == "json",
                ("root", Some(v)) => globals.root = Some(PathBuf::from(v)),
                ("version" | "v", v) => globals.version = go_true(v.as_ref()),
                ("help" | "h", v) => globals.help = go_true(v.as_ref()),
                _ => {}
            }
            i += 1;
        }
        Invocation { args, globals, command_index }
    }

    /// The subcommand name (`create`, `delete`, ...), if any.
    pub fn command(&self) -> Option<&str> {
        self.command_index.and_then(|i| self.args[i].to_str())
    }

    /// Arguments after the subcommand.
    pub fn command_args(&self) -> &[OsString] {
        match self.command_index {
            Some(i) => &self.args[i + 1..],
            None => &[],
        }
    }

    pub fn create_args(&self) -> Result<CreateArgs, ArgsError> {
        let command = self.command().unwrap_or("create").to_string();
        let args = self.command_args();
        for arg in args.iter().take_while(|a| flag_name(a).is_some()) {
            check_dash_form(&command, arg)?;
        }
        let (flags, id) = split_flags(args, CREATE_VALUE_FLAGS, &command)?;
        // runc's create and run take exactly one argument, the id, and read
        // flags after it too (urfave/cli moves them in front): anything
        // after the id could be a --bundle we would not see.
        if let Some(at) = id.and_then(|id| args.iter().position(|a| std::ptr::eq(a, id))) {
            if at + 1 < args.len() {
                return Err(ArgsError::AfterId { command, arg: args[at + 1].to_string_lossy().into_owned() });
            }
        }
        for (name, _) in &flags {
            if matches!(*name, "config" | "f") {
                return Err(ArgsError::ConfigFlag { command, flag: (*name).to_string() });
            }
            if !CREATE_VALUE_FLAGS.contains(name) && !CREATE_BOOL_FLAGS.contains(name) {
                return Err(ArgsError::UnknownFlag { command, flag: (*name).to_string() });
            }
        }
        // The last of several wins, in Go's flag package and in argp.
        let bundle = flags
            .iter()
            .rev()
            .find(|(n, _)| *n == "bundle" || *n == "b")
            .and_then(|(_, v)| v.as_ref())
            .map(PathBuf::from);
        Ok(CreateArgs { bundle, id: checked_id(id, &command)? })
    }

    pub fn delete_args(&self) -> Result<DeleteArgs, ArgsError> {
        let command = self.command().unwrap_or("delete").to_string();
        let (flags, id) = split_flags(self.command_args(), &[], &command)?;
        let force = flags.iter().any(|(n, v)| {
            (*n == "force" || *n == "f") && v.as_deref().is_none_or(|v| v == "true" || v == "1")
        });
        Ok(DeleteArgs { force, id: checked_id(id, &command)? })
    }

    /// The container id of a subcommand whose first positional is the id
    /// (`start`, `state`, ...).
    pub fn plain_id(&self) -> Result<String, ArgsError> {
        let command = self.command().unwrap_or_default().to_string();
        let (_, id) = split_flags(self.command_args(), &[], &command)?;
        checked_id(id, &command)
    }
}

type Flags<'a> = Vec<(&'a str, Option<String>)>;

/// Go `flag` semantics: flags until the first positional, which is returned.
fn split_flags<'a>(
    args: &'a [OsString],
    value_flags: &[&str],
    command: &str,
) -> Result<(Flags<'a>, Option<&'a OsString>), ArgsError> {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--" {
            return Ok((flags, args.get(i + 1)));
        }
        let Some((name, inline)) = flag_name(&args[i]) else {
            return Ok((flags, Some(&args[i])));
        };
        let mut value = inline.map(str::to_string);
        if value.is_none() && value_flags.contains(&name) {
            i += 1;
            let v = args.get(i).ok_or_else(|| ArgsError::MissingValue {
                command: command.to_string(),
                flag: name.to_string(),
            })?;
            value = Some(v.to_string_lossy().into_owned());
        }
        flags.push((name, value));
        i += 1;
    }
    Ok((flags, None))
}

/// Names of the state root's shared directories (`jail::state_dir` is
/// `<state root>/<id>`): no container may have one as its id, or its
/// teardown would remove the directory every jail shares.
pub const RESERVED_IDS: &[&str] = &["netns", "userns", "ipam"];

/// runc accepts ids matching `^[\w+-\.]+$`; we check the same before the id
/// is used in any path, and refuse [`RESERVED_IDS`].
pub fn validate_id(id: &str) -> Result<(), ArgsError> {
    if RESERVED_IDS.contains(&id) {
        return Err(ArgsError::ReservedId { id: id.to_string() });
    }
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ArgsError::InvalidId { id: id.to_string() })
    }
}

fn checked_id(id: Option<&OsString>, command: &str) -> Result<String, ArgsError> {
    let id = id.ok_or_else(|| ArgsError::MissingId { command: command.to_string() })?;
    let id = id
        .to_str()
        .ok_or_else(|| ArgsError::NotUtf8 { arg: id.to_string_lossy().into_owned() })?;
    validate_id(id)?;
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(s: &[&str]) -> Invocation {
        Invocation::parse(s.iter().map(OsString::from).collect())
    }

    #[test]
    fn dockerd_create_line_is_understood() {
        let i = inv(&[
            "--root", "/var/run/docker/runtime-runc/moby", "--log", "/b/log.json", "--log-format", "json",
            "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "abc",
        ]);
        assert_eq!(i.command(), Some("create"));
        assert_eq!(i.globals.log.as_deref(), Some(std::path::Path::new("/b/log.json")));
        assert!(i.globals.log_json);
        assert_eq!(i.globals.root.as_deref(), Some(std::path::Path::new("/var/run/docker/runtime-runc/moby")));
        let c = i.create_args().unwrap();
        assert_eq!(c, CreateArgs { bundle: Some("/b".into()), id: "abc".into() });
    }

    #[test]
    fn go_flag_forms_single_dash_and_equals() {
        let i = inv(&["-root=/r", "-debug", "--systemd-cgroup", "--rootless=false", "run", "-b", "/x", "-d", "id1"]);
        assert_eq!(i.command(), Some("run"));
        assert_eq!(i.globals.root.as_deref(), Some(std::path::Path::new("/r")));
        assert_eq!(i.create_args().unwrap().bundle.as_deref(), Some(std::path::Path::new("/x")));
        // Spellings crun reads another way are refused: `-b=/x` is the
        // bundle `=/x` to crun, `-bundle=/x` the bundle `undle=/x`.
        for flags in [&["-b=/x"][..], &["-bundle=/x"], &["-bundle", "/x"], &["-pid-file", "/p", "-b", "/x"], &["-d", "-b=/x"]] {
            let mut line = vec!["create"];
            line.extend_from_slice(flags);
            line.push("id1");
            let e = inv(&line).create_args().unwrap_err();
            assert!(matches!(e, ArgsError::DashForm { .. }), "{line:?}: {e}");
        }
    }

    #[test]
    fn crun_prefixes_of_global_options_are_read_as_crun_reads_them() {
        // `--rootl V` is `--rootless V` to crun: the subcommand is the
        // `create` after it, not `kill`.
        let i = inv(&["--rootl", "kill", "create", "--bundle", "/b", "id"]);
        assert_eq!(i.command(), Some("create"));
        let i = inv(&["--rootle=x", "--log-f", "json", "--ro", "restore", "id"]);
        assert!(i.globals.log_json, "--log-f is --log-format");
        assert_eq!(i.command(), Some("restore"), "--ro is ambiguous (root, rootless): crun refuses it, nothing is hidden");
        assert_eq!(inv(&["--cg", "systemd", "state", "id"]).command(), Some("state"));
        // Ambiguous: crun refuses it; read as a flag of no value, its value
        // is the "subcommand", which is unknown and so refused.
        let i = inv(&["--roo", "/r", "state", "id"]);
        assert!(!KNOWN_COMMANDS.contains(&i.command().unwrap()));
        assert_eq!(inv(&["--some-new-flag", "delete", "c1"]).command(), Some("delete"));
    }

    #[test]
    fn unknown_global_flags_do_not_hide_the_subcommand() {
        let i = inv(&["--some-new-flag", "--other=1", "delete", "--force", "c1"]);
        assert_eq!(i.command(), Some("delete"));
        assert_eq!(i.delete_args().unwrap(), DeleteArgs { force: true, id: "c1".into() });
        let i = inv(&["delete", "-f=false", "c1"]);
        assert!(!i.delete_args().unwrap().force);
    }

    #[test]
    fn version_and_no_subcommand() {
        let i = inv(&["--version"]);
        assert!(i.globals.version);
        assert_eq!(i.command(), None);
        assert_eq!(inv(&[]).command(), None);
        // runc prints its version or help and runs no subcommand when the
        // flag is true; `=false` is not.
        let i = inv(&["-v", "create", "c"]);
        assert!(i.globals.version && i.command() == Some("create"));
        assert!(!inv(&["--version=false", "create", "c"]).globals.version);
        assert!(inv(&["--version=T", "create", "c"]).globals.version);
        assert!(inv(&["-h", "run", "c"]).globals.help);
        assert!(!inv(&["--help=0", "run", "c"]).globals.help);
    }

    #[test]
    fn create_without_bundle_and_with_console_socket() {
        let i = inv(&["create", "--console-socket", "/s.sock", "--no-pivot", "c"]);
        assert_eq!(i.create_args().unwrap(), CreateArgs { bundle: None, id: "c".into() });
    }

    #[test]
    fn bad_ids_and_missing_values_are_errors() {
        assert_eq!(inv(&["create"]).create_args(), Err(ArgsError::MissingId { command: "create".into() }));
        assert!(matches!(inv(&["create", "--bundle"]).create_args(), Err(ArgsError::MissingValue { .. })));
        for bad in ["../x", "a/b", "..", "a b", ""] {
            assert!(matches!(inv(&["delete", bad]).delete_args(), Err(ArgsError::InvalidId { .. } | ArgsError::MissingId { .. })), "{bad}");
        }
        assert!(validate_id("moby-1.2_3+x").is_ok());
    }

    #[test]
    fn create_is_read_the_way_the_delegate_reads_it_or_refused() {
        let i = inv(&["--root", "/r", "--", "create", "--bundle", "/b", "c1"]);
        assert_eq!(i.command(), Some("create"), "`--` ends the global flags");
        assert_eq!(i.create_args().unwrap().bundle.as_deref(), Some(std::path::Path::new("/b")));
        let i = inv(&["--log-level", "debug", "create", "c2"]);
        assert_eq!(i.command(), Some("create"), "crun's --log-level takes a value");
        let i = inv(&["create", "--bundle", "/decoy", "-b", "/real", "c3"]);
        assert_eq!(i.create_args().unwrap().bundle.as_deref(), Some(std::path::Path::new("/real")), "the last --bundle wins");
        for args in [&["create", "--bun=/real", "c4"][..], &["create", "--no-such-flag", "c4"]] {
            assert!(matches!(inv(args).create_args(), Err(ArgsError::UnknownFlag { .. })), "{args:?}");
        }
        assert!(matches!(inv(&["run", "-b/real", "c4"]).create_args(), Err(ArgsError::DashForm { .. })));
        for args in [&["create", "--config", "other.json", "c5"][..], &["create", "-f", "other.json", "c5"]] {
            assert!(matches!(inv(args).create_args(), Err(ArgsError::ConfigFlag { .. })), "{args:?}");
        }
        for args in [&["create", "c8", "--bundle", "/real"][..], &["create", "--bundle", "/decoy", "c8", "-b", "/real"], &["run", "c8", "--", "x"]] {
            assert!(matches!(inv(args).create_args(), Err(ArgsError::AfterId { .. })), "{args:?}");
        }
        let i = inv(&["run", "-d", "--keep", "--pidfd-socket", "/s", "--pid-file=/p", "c6"]);
        assert_eq!(i.create_args().unwrap().id, "c6");
        // crun reads `--ro` as `--root`; we cannot, and the "subcommand" we
        // see is no subcommand at all.
        let i = inv(&["--ro", "/r", "create", "c7"]);
        assert!(!KNOWN_COMMANDS.contains(&i.command().unwrap()));
        for id in RESERVED_IDS {
            assert!(matches!(inv(&["create", id]).create_args(), Err(ArgsError::ReservedId { .. })), "{id}");
        }
    }
}
