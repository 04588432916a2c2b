//! Allow rules for boundary-runc: parse them, index them, evaluate requests.
//!
//! Plain data and pure functions: no I/O, no threads, no `unsafe`.
//!
//! # The rule language
//!
//! Compatible with Coder's `boundary --allow`. A rule is `key=value` fields
//! separated by spaces or tabs; each key at most once, in any order:
//!
//! - `method=GET,HEAD`: a comma list of HTTP method tokens, or `*`.
//! - `domain=github.com`: that host only. `domain=*.github.com`: one or more
//!   labels in front of `github.com`, not `github.com` itself. An inner `*`
//!   (`api.*.com`) is exactly one label. `domain=*` is any host. A pattern
//!   may not end in `*`, carry a port, or break hostname label syntax.
//! - `path=/api/*,/v2/x`: a comma list of path patterns matched segment by
//!   segment. `*` is one whole segment; a trailing `*` matches one or more
//!   remaining segments; `path=/api` does not match `/api/users`, and
//!   `path=*` is any path.
//!
//! A request is allowed when at least one rule matches every key that rule
//! names; a key that is absent matches anything. No rules: deny all. Text
//! holding several rules separates them with newlines or `;`
//! ([`parse_rules`], [`Policy::from_texts`]); blank entries are skipped. A
//! rule that does not parse is an error naming the rule and byte position
//! ([`ParseError`]), never dropped.
//!
//! # boundary-runc's own additions and stricter readings
//!
//! - **`port=443,8443`** (our extension, not in Coder's language): the
//!   destination port must be one of these. Absent or `port=*`: any port.
//!   A request with an unknown port matches no rule that lists ports.
//! - **A rule with no key is an error**, not a rule that allows
//!   everything; write `domain=*` for that. Text with no rules at all
//!   (empty, or only separators) is no rules: everything is denied.
//! - **`*` stands alone** in a list: `method=GET,*` is an error.
//! - **Only spaces and tabs separate fields**: other whitespace (a no-break
//!   space) is an error, and a path pattern is ASCII (percent-encode the
//!   rest as it is sent).
//! - **Methods** compare case-insensitively (Coder compares them exactly):
//!   `method=GET` allows a request sent as `get`, which is forwarded as
//!   `GET`.
//! - **Hosts** compare lowercase with one trailing dot removed. A request
//!   host must be a hostname (labels `a-z0-9-`, no leading or trailing
//!   hyphen, 1-63 characters, 253 in all) or a canonical dotted-quad IPv4
//!   address. A host ending in a numeric label that is not a canonical quad
//!   (`127.1`, `2130706433`, `0x7f.0.0.1`, `010.0.0.1`) is refused: resolvers
//!   read those as addresses. IPv6 literals are refused. Non-ASCII hosts are
//!   refused ([`DenyReason::NonAsciiHost`]); in a rule a non-ASCII domain is a
//!   parse error asking for punycode. `domain=169.254.169.254` allows that
//!   address explicitly; `*` labels never match an IPv4 address (only
//!   `domain=*` does).
//! - **Paths** (only looked at by rules with a `path=` list) have the query
//!   and fragment removed, are percent-decoded once and have `.`/`..`
//!   resolved. Patterns are decoded the same way, so `path=/a%20b` matches
//!   `/a b` and `/a%20b`, and `%2A` is a literal `*`. A path that can be read
//!   two ways matches no path pattern and is denied as
//!   [`DenyReason::UnsafePath`]: an encoded `/` (`%2F`), backslash (raw or
//!   `%5C`), NUL or control character, a malformed escape, invalid UTF-8, a
//!   doubly-encoded `/`, `\`, NUL or `.` (`%252F`), `..` above the root, a
//!   `.` or `..` segment with `;` parameters (`..;x`), a segment of dots and
//!   spaces other than `.` and `..` (`...`, `.. `), and
//!   an empty segment before the end: `/api//x` matches no pattern at all
//!   (servers disagree whether it is `/api/x`). A trailing `/` is a final
//!   empty segment: `/api/` does not match `path=/api` but does match
//!   `path=/api/` and `path=/api/*`. `path=/` matches only `/` (in Coder's
//!   implementation it matches every path). Rules without a `path=` key do
//!   not look at the path at all, so `domain=registry.npmjs.org` still
//!   allows `/@scope%2fname`.
//! - **Methods** are case-sensitive in HTTP, but rule tokens are stored
//!   uppercase and the request method is compared after uppercasing, so
//!   `method=get` and a request `get` both mean `GET`. `*` may only stand
//!   alone.
//! - **Newlines and `;` always separate rules.** In Coder a newline inside
//!   one `--allow` value separates fields of the same rule; here it starts a
//!   new rule, as the project's rule notes specify.
//!
//! # Evaluation
//!
//! [`Policy`] indexes rules by host: exact domains in a hash map, wildcard
//! domains under their literal suffix (the request host's label suffixes are
//! looked up in turn), and a list of rules that match any host (`domain=*`
//! or no `domain=`). Evaluation does not allocate unless the host or path
//! needs normalising or the request is denied, and an allow names the
//! lowest-index matching rule. [`evaluate_narrowed`] combines a base policy
//! with a narrowing one (both must allow; an empty narrowing does not
//! narrow).
#![forbid(unsafe_code)]

mod decision;
mod error;
mod host;
mod method;
mod path;
mod policy;
mod port;
mod rule;
mod suggest;

pub use decision::{Decision, Denial, DenyReason, Request};
pub use error::{LabelProblem, ParseError, ParseErrorKind};
pub use host::normalize_host;
pub use path::{forwarded_path, normalize_path, PathProblem};
pub use policy::{could_allow_host_narrowed, evaluate_narrowed, Policy};
pub use rule::{parse_rules, Rule};
pub use suggest::suggest_rule;
