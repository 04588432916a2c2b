//! Where a container's allow rules come from.
//!
//! Host-wide default rules from the runtime config, plus the container's
//! own: `BOUNDARY_ALLOW` in the spec's `process.env` and the annotation
//! `io.boundary.allow`. Either holds one or more rules separated by newlines
//! or `;`. No rule at all means deny everything. A rule that does not parse
//! is an error naming where it came from, the rule and the position.

use serde_json::Value;

use crate::config::{Config, RuleSource};
use crate::rewrite;

pub const ALLOW_ENV: &str = "BOUNDARY_ALLOW";
pub const ALLOW_ANNOTATION: &str = "io.boundary.allow";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("invalid {source_name}: {error}")]
    Invalid { source_name: String, error: boundary_policy::ParseError },
    #[error("{source_name} is set, but this host forbids container rules (policy.allow_container_rules = false in {config})")]
    Forbidden { source_name: String, config: String },
    #[error("{source_name} is set, but this host takes container rules only from {allowed} (policy.container_rule_sources in {config}); an image's ENV lands in process.env too")]
    SourceForbidden { source_name: String, allowed: String, config: String },
    #[error(transparent)]
    Spec(#[from] rewrite::RewriteError),
}

/// The canonical text of every rule that applies, defaults first.
pub fn collect(cfg: &Config, spec: &Value) -> Result<Vec<String>, RulesError> {
    let mut out = Vec::new();
    for (i, text) in cfg.policy.default_rules.iter().enumerate() {
        push(&mut out, text, &format!("policy.default_rules[{i}] in {}", Config::path().display()))?;
    }
    let env = rewrite::env_value(spec, ALLOW_ENV)?;
    let ann = rewrite::annotation(spec, ALLOW_ANNOTATION)?;
    let sources = [(RuleSource::Env, format!("{ALLOW_ENV} (process.env)"), env), (RuleSource::Annotation, format!("annotation {ALLOW_ANNOTATION}"), ann)];
    for (source, name, text) in sources {
        let Some(text) = text else { continue };
        if !text.trim().is_empty() {
            if !cfg.policy.allow_container_rules {
                return Err(RulesError::Forbidden { source_name: name, config: Config::path().display().to_string() });
            }
            if !cfg.policy.container_rule_sources.contains(&source) {
                return Err(RulesError::SourceForbidden { source_name: name, allowed: sources_text(&cfg.policy.container_rule_sources), config: Config::path().display().to_string() });
            }
        }
        push(&mut out, text, &name)?;
    }
    Ok(out)
}

/// An app container's own rules (`BOUNDARY_ALLOW` in `process.env`), which
/// only narrow its pod's policy: canonical text, `None` when unset or blank.
/// Allowed even where container rules are forbidden: a narrowing can never
/// widen what the pod may do.
pub fn narrowing(spec: &Value) -> Result<Option<Vec<String>>, RulesError> {
    let Some(text) = rewrite::env_value(spec, ALLOW_ENV)? else { return Ok(None) };
    let mut out = Vec::new();
    push(&mut out, text, &format!("{ALLOW_ENV} (process.env)"))?;
    Ok((!out.is_empty()).then_some(out))
}

/// The canonical rules of the annotation `io.boundary.allow` (for a pod,
/// the pod annotation); `None` when it is not set.
pub fn annotation_rules(spec: &Value) -> Result<Option<Vec<String>>, RulesError> {
    let Some(text) = rewrite::annotation(spec, ALLOW_ANNOTATION)? else { return Ok(None) };
    let mut out = Vec::new();
    push(&mut out, text, &format!("annotation {ALLOW_ANNOTATION}"))?;
    Ok(Some(out))
}

/// `the annotation io.boundary.allow`, `BOUNDARY_ALLOW and ...`, `no source`.
fn sources_text(sources: &[RuleSource]) -> String {
    let names: Vec<String> = sources
        .iter()
        .map(|s| match s {
            RuleSource::Env => ALLOW_ENV.to_string(),
            RuleSource::Annotation => format!("the annotation {ALLOW_ANNOTATION}"),
        })
        .collect();
    if names.is_empty() { "no source".to_string() } else { names.join(" and ") }
}

fn push(out: &mut Vec<String>, text: &str, source_name: &str) -> Result<(), RulesError> {
    let rules = boundary_policy::parse_rules(text)
        .map_err(|error| RulesError::Invalid { source_name: source_name.to_string(), error })?;
    out.extend(rules.iter().map(ToString::to_string));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(env: &[&str], ann: Option<&str>) -> Value {
        let mut s = json!({"ociVersion":"1.0.2","process":{"env":env}});
        if let Some(a) = ann {
            s["annotations"] = json!({ALLOW_ANNOTATION: a});
        }
        s
    }

    #[test]
    fn env_annotation_and_defaults_combine() {
        let mut cfg = Config::default();
        cfg.policy.default_rules = vec!["domain=pypi.org".into()];
        let s = spec(&["PATH=/bin", "BOUNDARY_ALLOW=domain=github.com;method=GET domain=*.npmjs.org"], Some("domain=api.openai.com"));
        let rules = collect(&cfg, &s).unwrap();
        assert_eq!(rules.len(), 4, "{rules:?}");
        assert!(rules[0].contains("pypi.org"));
        assert!(rules[3].contains("api.openai.com"));
    }

    #[test]
    fn no_rules_means_an_empty_list() {
        assert!(collect(&Config::default(), &spec(&["PATH=/bin"], None)).unwrap().is_empty());
    }

    #[test]
    fn a_bad_rule_names_its_source() {
        let e = collect(&Config::default(), &spec(&["BOUNDARY_ALLOW=domain=github.*"], None)).unwrap_err().to_string();
        assert!(e.starts_with("invalid BOUNDARY_ALLOW (process.env): "), "{e}");
        assert!(e.contains("github.*"), "{e}");
    }

    #[test]
    fn narrowing_is_the_env_only_and_canonical() {
        let s = spec(&["BOUNDARY_ALLOW=domain=GitHub.com ; method=get domain=x.test"], Some("domain=*"));
        assert_eq!(narrowing(&s).unwrap(), Some(vec!["domain=github.com".to_string(), "method=GET domain=x.test".to_string()]));
        assert_eq!(narrowing(&spec(&["BOUNDARY_ALLOW= ; "], None)).unwrap(), None);
        assert_eq!(narrowing(&spec(&[], Some("domain=a.test"))).unwrap(), None);
        let e = narrowing(&spec(&["BOUNDARY_ALLOW=domain=github.*"], None)).unwrap_err().to_string();
        assert!(e.starts_with("invalid BOUNDARY_ALLOW (process.env): "), "{e}");
        assert_eq!(annotation_rules(&s).unwrap(), Some(vec!["domain=*".to_string()]));
        assert_eq!(annotation_rules(&spec(&[], None)).unwrap(), None);
    }

    #[test]
    fn container_rules_can_be_forbidden() {
        let mut cfg = Config::default();
        cfg.policy.allow_container_rules = false;
        let e = collect(&cfg, &spec(&[], Some("domain=x.test"))).unwrap_err().to_string();
        assert!(e.contains("forbids container rules"), "{e}");
    }

    /// `process.env` holds the image's `ENV` as well as `docker run -e`: a
    /// host can take rules from annotations alone.
    #[test]
    fn a_host_can_take_rules_from_annotations_only() {
        let mut cfg = Config::default();
        cfg.policy.container_rule_sources = vec![RuleSource::Annotation];
        let e = collect(&cfg, &spec(&["BOUNDARY_ALLOW=domain=*"], None)).unwrap_err().to_string();
        assert!(e.starts_with("BOUNDARY_ALLOW (process.env) is set, but this host takes container rules only from the annotation io.boundary.allow"), "{e}");
        assert_eq!(collect(&cfg, &spec(&["BOUNDARY_ALLOW= "], Some("domain=a.test"))).unwrap(), vec!["domain=a.test".to_string()]);
        cfg.policy.container_rule_sources = vec![];
        let e = collect(&cfg, &spec(&[], Some("domain=a.test"))).unwrap_err().to_string();
        assert!(e.contains("only from no source"), "{e}");
    }
}
