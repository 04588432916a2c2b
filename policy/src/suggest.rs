//! Rule text that would allow a denied request.

use crate::decision::Request;
use crate::host::normalize_host_cow;
use crate::method::is_method_token;
use crate::path::{exact_pattern_text, normalize_path_cow};

/// The rule a person would add to allow this request to its host:
/// `domain=api.github.com`. It always parses.
///
/// Without a policy to consult this is always the host-wide form;
/// [`crate::Policy::suggest_rule`] gives the narrow form
/// (`method=POST domain=h path=/x`) when the policy already allows the
/// host for other methods, paths or ports. No rule can allow a host that
/// does not normalise (see [`crate::normalize_host`]); for such a host this
/// returns `domain=invalid`, a rule for the reserved `invalid` name
/// (RFC 2606) that matches nothing real, and evaluation gives no suggestion.
pub fn suggest_rule(req: &Request<'_>) -> String {
    match normalize_host_cow(req.host) {
        Ok((host, _)) => format!("domain={host}"),
        Err(_) => "domain=invalid".to_owned(),
    }
}

/// The narrow form for a host the policy already knows: exactly this
/// method, host and path, and the port when `with_port`. A method that is not
/// an HTTP token, a path that does not normalise or port 0 (no `port=` rule
/// can name it) is left out (that key then matches anything).
pub(crate) fn narrow_rule(req: &Request<'_>, host: &str, with_port: bool) -> Option<String> {
    let mut rule = String::new();
    if is_method_token(req.method) {
        rule.push_str("method=");
        rule.push_str(&req.method.to_ascii_uppercase());
        rule.push(' ');
    }
    rule.push_str("domain=");
    rule.push_str(host);
    // A path that does not normalise gets no suggestion: without `path=`
    // the rule would allow the method on every path of the host.
    let path = normalize_path_cow(req.path).ok()?;
    rule.push_str(" path=");
    rule.push_str(&exact_pattern_text(&path));
    if let (true, Some(port @ 1..)) = (with_port, req.port) {
        rule.push_str(&format!(" port={port}"));
    }
    Some(rule)
}

#[cfg(test)]
mod tests {
    use crate::{Policy, Request, Rule};

    /// Found by the `policy_request` fuzz target: a request to port 0 (a
    /// `Host: h:0` header) on a host whose rules restrict ports was given
    /// the suggestion `... port=0`, which does not parse.
    #[test]
    fn port_zero_is_left_out_of_a_suggestion() {
        let policy = Policy::from_texts(["domain=h port=443"]).unwrap();
        let req = Request {
            method: "GET",
            host: "h",
            path: "/",
            port: Some(0),
        };
        let denial = policy.evaluate(&req).denial().cloned().unwrap();
        let suggestion = denial.suggestion.unwrap();
        assert_eq!(suggestion, "method=GET domain=h path=/");
        let rule: Rule = suggestion.parse().unwrap();
        let grown = Policy::new([policy.rules(), &[rule]].concat());
        assert!(grown.evaluate(&req).is_allowed());
    }
}
