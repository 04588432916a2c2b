//! Patching a seccomp profile so nested sandboxes work in a jailed
//! container, widening nothing else.
//!
//! Tools that sandbox their own children (bubblewrap, Chromium, nested
//! containers, `unshare -r`) need to create and enter namespaces. Docker's
//! default profile forbids that for every container without CAP_SYS_ADMIN,
//! whatever the kernel would say:
//! - `clone` is allowed only when `flags & 0x7E020000 == 0`
//!   (`SCMP_CMP_MASKED_EQ`; the mask is CLONE_NEWNS | CLONE_NEWCGROUP |
//!   CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
//!   CLONE_NEWNET). On s390 the flags are argument 1, hence a second rule.
//! - `clone3` answers ENOSYS (errno 38) so that libc falls back to `clone`:
//!   seccomp cannot look into clone3's flag struct, so it cannot be filtered
//!   by flags and Docker refuses it outright.
//! - `unshare` and `setns` are not listed, so the default action denies them.
//!
//! The patch lets the kernel decide instead: the four syscalls are allowed,
//! and the kernel's own permission checks stay. Without CAP_SYS_ADMIN a
//! container can then create a user namespace (if the host allows
//! unprivileged user namespaces) and further namespaces inside it; it still
//! cannot enter a namespace it holds no capability over. The boundary does
//! not rely on seccomp: enforcement sits on the host side of the veth.
//!
//! Method, the same for the OCI form (`linux.seccomp` in config.json) and for
//! Docker's profile format (`archMap`, per-rule `includes`/`excludes`, which
//! are left as they are):
//! 1. Remove the four names from every rule that would stop them: a rule
//!    whose action is not `SCMP_ACT_ALLOW`, or an allow rule with `args`
//!    conditions (which allows only some calls). Rules whose names become
//!    empty are dropped. A rule that allows one of them unconditionally is
//!    kept as is. Both `names` and the older singular `name` are handled.
//!    Removing them from conditional rules also avoids libseccomp's conflict
//!    between an unconditional and a conditional rule for one syscall.
//! 2. When the default action is not `SCMP_ACT_ALLOW`, add one unconditional
//!    allow rule for the four names (once; a re-run finds it).

use serde_json::{json, Map, Value};

use crate::rewrite::access::{field, obj_mut, opt_str, opt_str_list, string, Loc};
use crate::rewrite::RewriteError;

/// The syscalls a nested sandbox needs, in the order of the added rule.
pub const NAMESPACE_SYSCALLS: [&str; 4] = ["clone", "clone3", "setns", "unshare"];
const ALLOW: &str = "SCMP_ACT_ALLOW";

/// What [`patch_seccomp`] changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeccompChange {
    /// One line per rule edited, e.g.
    /// `syscalls[12] (SCMP_ACT_ERRNO): removed clone3; rule dropped`.
    pub edits: Vec<String>,
    /// Whether the unconditional allow rule was added.
    pub added_allow_rule: bool,
}

impl SeccompChange {
    /// True when the profile was left as it was (already patched, or
    /// nothing in it concerned these syscalls and the default allows them).
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty() && !self.added_allow_rule
    }
}

/// Patch a seccomp profile in place: OCI `linux.seccomp` or Docker's
/// profile format. See the module documentation.
pub fn patch_seccomp(profile: &mut Value) -> Result<SeccompChange, RewriteError> {
    patch_seccomp_at(profile, &Loc::root("seccomp profile"))
}

/// [`patch_seccomp`] with errors located at `loc` (`linux.seccomp` in a spec).
pub(crate) fn patch_seccomp_at(
    profile: &mut Value,
    loc: &Loc,
) -> Result<SeccompChange, RewriteError> {
    let map = obj_mut(profile, loc)?;
    let default = field(map, "defaultAction").ok_or_else(|| loc.key("defaultAction").missing())?;
    let default_allows = string(default, &loc.key("defaultAction"))? == ALLOW;
    let rules_loc = loc.key("syscalls");
    let mut change = SeccompChange::default();

    if let Some(rules) = rules_mut(map, &rules_loc)? {
        let mut kept = Vec::with_capacity(rules.len());
        for (i, mut rule) in std::mem::take(rules).into_iter().enumerate() {
            if let Some(edit) = narrow_rule(&mut rule, &rules_loc.idx(i))? {
                let dropped = edit.emptied;
                change.edits.push(format!(
                    "syscalls[{i}] ({}): removed {}{}",
                    edit.why,
                    edit.removed.join(", "),
                    if dropped { "; rule dropped" } else { "" }
                ));
                if dropped {
                    continue;
                }
            }
            kept.push(rule);
        }
        *rules = kept;
    }

    if !default_allows {
        let ours = allow_rule();
        let rules = crate::rewrite::access::arr_entry(map, "syscalls", loc)?;
        if !rules.contains(&ours) {
            rules.push(ours);
            change.added_allow_rule = true;
        }
    }
    Ok(change)
}

/// The unconditional allow rule the patch adds.
fn allow_rule() -> Value {
    json!({"names": NAMESPACE_SYSCALLS, "action": ALLOW})
}

fn rules_mut<'a>(
    map: &'a mut Map<String, Value>,
    loc: &Loc,
) -> Result<Option<&'a mut Vec<Value>>, RewriteError> {
    match map.get_mut("syscalls") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(rules)) => Ok(Some(rules)),
        Some(_) => Err(loc.wrong("an array")),
    }
}

struct RuleEdit {
    removed: Vec<String>,
    why: String,
    /// The rule names no syscall any more.
    emptied: bool,
}

fn is_namespace_syscall(name: &str) -> bool {
    NAMESPACE_SYSCALLS.contains(&name)
}

/// Remove the namespace syscalls from `rule` if it would stop them.
fn narrow_rule(rule: &mut Value, loc: &Loc) -> Result<Option<RuleEdit>, RewriteError> {
    let map = obj_mut(rule, loc)?;
    let names = opt_str_list(map, "names", loc)?;
    let name = opt_str(map, "name", loc)?;
    let hit_names = names.iter().any(|n| is_namespace_syscall(n));
    let hit_name = name.is_some_and(is_namespace_syscall);
    if !hit_names && !hit_name {
        return Ok(None);
    }
    let action = string(
        field(map, "action").ok_or_else(|| loc.key("action").missing())?,
        &loc.key("action"),
    )?;
    let conditions = match field(map, "args") {
        None => 0,
        Some(Value::Array(args)) => args.len(),
        Some(_) => return Err(loc.key("args").wrong("an array")),
    };
    if action == ALLOW && conditions == 0 {
        return Ok(None);
    }
    let why = if action == ALLOW {
        format!("{action} with {conditions} argument condition(s)")
    } else {
        action.to_owned()
    };

    let mut removed: Vec<String> = Vec::new();
    let mut remaining: Vec<Value> = Vec::new();
    for n in &names {
        if is_namespace_syscall(n) {
            removed.push((*n).to_owned());
        } else {
            remaining.push(Value::from(*n));
        }
    }
    let name_remains = name.is_some() && !hit_name;
    if hit_name {
        removed.extend(name.map(str::to_owned));
    }
    let emptied = remaining.is_empty() && !name_remains;
    if hit_names {
        map.insert("names".to_owned(), Value::Array(remaining));
    }
    if hit_name {
        map.shift_remove("name");
    }
    Ok(Some(RuleEdit {
        removed,
        why,
        emptied,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Value {
        allow_rule()
    }

    #[test]
    fn docker_format_rules_are_narrowed_in_place() {
        let mut profile = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read", "clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "comment": "", "includes": {}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["setns", "unshare"], "action": "SCMP_ACT_ALLOW", "args": [],
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"name": "clone3", "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "args": "not read"}
            ]
        });
        let change = patch_seccomp(&mut profile).unwrap();
        assert_eq!(change.edits.len(), 2, "{change:?}");
        assert!(change.added_allow_rule);
        assert_eq!(
            profile["syscalls"],
            json!([
                {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "comment": "", "includes": {}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["setns", "unshare"], "action": "SCMP_ACT_ALLOW", "args": [],
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "args": "not read"},
                ours()
            ])
        );
        // Key order of the narrowed rule is kept.
        let keys: Vec<_> = profile["syscalls"][0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["names", "action", "args", "comment", "includes", "excludes"]
        );
        assert!(patch_seccomp(&mut profile).unwrap().is_empty());
    }

    #[test]
    fn allow_by_default_needs_no_rule_but_loses_the_denials() {
        let mut profile = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare", "mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        let change = patch_seccomp(&mut profile).unwrap();
        assert!(!change.added_allow_rule);
        assert_eq!(
            change.edits,
            ["syscalls[0] (SCMP_ACT_ERRNO): removed unshare"]
        );
        assert_eq!(
            profile["syscalls"],
            json!([{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
        );
    }

    #[test]
    fn a_profile_without_rules_gets_the_one_rule() {
        let mut profile = json!({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": null});
        assert!(patch_seccomp(&mut profile).unwrap().added_allow_rule);
        assert_eq!(profile["syscalls"], json!([ours()]));
        let mut profile = json!({"defaultAction": "SCMP_ACT_ERRNO"});
        patch_seccomp(&mut profile).unwrap();
        assert_eq!(
            profile,
            json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [ours()]})
        );
    }

    #[test]
    fn malformed_profiles_are_errors() {
        let cases = [
            (
                json!([]),
                "seccomp profile: the top level must be an object",
            ),
            (json!({}), "seccomp profile: defaultAction is missing"),
            (
                json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["clone"]}]}),
                "seccomp profile: syscalls[0].action is missing",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": 5}]}),
                "seccomp profile: syscalls[0].name must be a string",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["setns"], "action": "SCMP_ACT_ALLOW", "args": 1}]}),
                "seccomp profile: syscalls[0].args must be an array",
            ),
        ];
        for (mut profile, want) in cases {
            assert_eq!(patch_seccomp(&mut profile).unwrap_err().to_string(), want);
        }
    }
}
