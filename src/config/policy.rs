//! `[policy]`: `default` and the ordered `[[policy.rules]]` that say who may reach what.
//!
//! The rule this module keeps: a rule that can never decide is refused at start-up (and by
//! `check-config`), naming the rule and the key: no paths, an empty method or allow list, a word
//! outside the vocabulary, or a rule that an earlier one (or `auth.public_paths`) covers entirely.

use http::Method;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::policy::{Fallback, Policy, Rule, Subject};
use crate::routes::{ApiPaths, PublicPaths};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// `authenticated` (any signed-in caller; the behaviour without policies) or `deny`.
    pub default: String,
    pub rules: Vec<RawRule>,
}

impl Default for RawPolicy {
    fn default() -> Self {
        RawPolicy {
            default: "authenticated".into(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRule {
    /// Absent: every method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    pub paths: Vec<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

const FIX_SUBJECT: &str = "use public, authenticated, role:admin, role:user, group:<name>, user:<id> or scope:<name> (a name of 1 to 64 of a-z 0-9 _ . : -)";

/// How a rule is named in an error: its number (1-based) and description.
fn name(i: usize, r: &RawRule) -> String {
    match &r.description {
        Some(d) => format!("rule {} ({d:?})", i + 1),
        None => format!("rule {}", i + 1),
    }
}

/// The metric's and access line's label: the description (at most 64 bytes, on a character
/// boundary), or `#<n>`.
fn label(i: usize, r: &RawRule) -> Box<str> {
    match r.description.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => {
            let mut end = d.len().min(64);
            while !d.is_char_boundary(end) {
                end -= 1;
            }
            d[..end].into()
        }
        None => format!("#{}", i + 1).into(),
    }
}

fn subjects(i: usize, r: &RawRule, key: &'static str, list: &[String]) -> Result<Vec<Subject>, ConfigError> {
    list.iter()
        .map(|s| {
            Subject::parse(s.trim()).ok_or_else(|| {
                ConfigError::invalid(key, format!("{}: {s:?} is not a subject", name(i, r)), FIX_SUBJECT)
            })
        })
        .collect()
}

pub(super) fn validate(raw: &RawPolicy, api: &ApiPaths, public_paths: &PublicPaths) -> Result<Policy, ConfigError> {
    let default = match raw.default.trim() {
        "authenticated" => Fallback::Authenticated,
        "deny" => Fallback::Deny,
        other => {
            return Err(ConfigError::invalid(
                "policy.default",
                format!("{other:?} is not a default"),
                "use \"authenticated\" (any signed-in caller) or \"deny\"",
            ));
        }
    };
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.iter().enumerate() {
        let methods = match &r.methods {
            None => None,
            Some(m) if m.is_empty() => {
                return Err(ConfigError::invalid(
                    "policy.rules.methods",
                    format!("{}: the list is empty, so the rule never matches", name(i, r)),
                    "list methods such as [\"GET\", \"HEAD\"], or leave `methods` out for every method",
                ));
            }
            Some(m) => {
                let mut out = Vec::with_capacity(m.len());
                for text in m {
                    let method = Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
                        .ok()
                        .filter(|_| !text.trim().is_empty())
                        .ok_or_else(|| {
                            ConfigError::invalid(
                                "policy.rules.methods",
                                format!("{}: {text:?} is not a method", name(i, r)),
                                "list methods such as [\"GET\", \"POST\"]",
                            )
                        })?;
                    out.push(method);
                }
                Some(out)
            }
        };
        if r.paths.is_empty() {
            return Err(ConfigError::invalid(
                "policy.rules.paths",
                format!("{}: no paths, so the rule never matches", name(i, r)),
                "list exact paths like \"/api/health\" or prefixes like \"/api/admin/*\"",
            ));
        }
        let paths = PublicPaths::parse(&r.paths).and_then(|p| api.check_outside(&p).map(|()| p));
        let paths = paths.map_err(|problem| {
            ConfigError::invalid(
                "policy.rules.paths",
                format!("{}: {problem}", name(i, r)),
                "list exact paths like \"/api/health\" or prefixes like \"/api/admin/*\"",
            )
        })?;
        if r.allow.is_empty() {
            return Err(ConfigError::invalid(
                "policy.rules.allow",
                format!("{}: the list is empty, so the rule allows no one", name(i, r)),
                "name who may, e.g. [\"role:admin\"]; to refuse everyone, use [\"authenticated\"] with deny = [\"authenticated\"]",
            ));
        }
        let allow = subjects(i, r, "policy.rules.allow", &r.allow)?;
        let deny = subjects(i, r, "policy.rules.deny", &r.deny)?;
        if allow.contains(&Subject::Public) && (allow.len() > 1 || !deny.is_empty()) {
            return Err(ConfigError::invalid(
                "policy.rules.allow",
                format!(
                    "{}: `public` lets anyone through without a credential, so it stands alone",
                    name(i, r)
                ),
                "write allow = [\"public\"] with no other subject and no deny, or drop `public`",
            ));
        }
        if deny.contains(&Subject::Public) {
            return Err(ConfigError::invalid(
                "policy.rules.deny",
                format!("{}: `public` cannot be denied", name(i, r)),
                "to refuse everyone, deny \"authenticated\"",
            ));
        }
        let rule = Rule {
            methods,
            paths,
            allow,
            deny,
            label: label(i, r),
        };
        if !public_paths.is_empty() && rule.shadowed_by(None, public_paths) {
            return Err(ConfigError::invalid(
                "policy.rules.paths",
                format!(
                    "{}: every path it names is in auth.public_paths, which is tried first",
                    name(i, r)
                ),
                "remove the rule, or the paths from auth.public_paths",
            ));
        }
        if let Some((j, _)) = rules
            .iter()
            .enumerate()
            .find(|(_, e)| rule.shadowed_by(e.methods.as_deref(), &e.paths))
        {
            return Err(ConfigError::invalid(
                "policy.rules",
                format!(
                    "{} is shadowed by {}: its methods and paths cover it entirely, and the first match wins",
                    name(i, r),
                    name(j, &raw.rules[j])
                ),
                "move the narrower rule first, or remove it",
            ));
        }
        rules.push(rule);
    }
    Ok(Policy::new(rules, default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_rules: &str, public: &[&str]) -> Result<Policy, String> {
        let raw: RawPolicy = toml::from_str(toml_rules).map_err(|e| e.to_string())?;
        let public = PublicPaths::parse(&public.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        validate(&raw, &ApiPaths::default(), &public).map_err(|e| e.to_string())
    }

    #[test]
    fn good_rules_validate_in_order() {
        let p = check(
            "default = \"deny\"\n[[rules]]\nmethods = [\"get\"]\npaths = [\"/api/admin/*\"]\nallow = [\"role:admin\"]\ndescription = \"admins\"\n[[rules]]\npaths = [\"/api/*\"]\nallow = [\"authenticated\"]\ndeny = [\"group:contractors\"]\n",
            &["/health"],
        )
        .unwrap();
        assert_eq!(p.default, Fallback::Deny);
        assert_eq!(p.rules().len(), 2);
        assert_eq!(p.rules()[0].methods.as_deref(), Some(&[Method::GET][..]));
        assert_eq!(&*p.rules()[0].label, "admins");
        assert_eq!(&*p.rules()[1].label, "#2");
    }

    #[test]
    fn rules_that_can_never_decide_are_refused_by_name() {
        for (rules, public, needles) in [
            (
                "[[rules]]\npaths = []\nallow = [\"authenticated\"]\n",
                &[][..],
                &["policy.rules.paths", "rule 1", "never"][..],
            ),
            (
                "[[rules]]\npaths = [\"/a\"]\nallow = []\n",
                &[],
                &["policy.rules.allow", "rule 1"],
            ),
            (
                "[[rules]]\nmethods = []\npaths = [\"/a\"]\nallow = [\"authenticated\"]\n",
                &[],
                &["policy.rules.methods"],
            ),
            (
                "[[rules]]\nmethods = [\"GE T\"]\npaths = [\"/a\"]\nallow = [\"authenticated\"]\n",
                &[],
                &["policy.rules.methods", "GE T"],
            ),
            (
                "[[rules]]\npaths = [\"a\"]\nallow = [\"authenticated\"]\n",
                &[],
                &["policy.rules.paths"],
            ),
            (
                "[[rules]]\npaths = [\"/api/auth/*\"]\nallow = [\"authenticated\"]\n",
                &[],
                &["policy.rules.paths", "/api/auth"],
            ),
            (
                "[[rules]]\npaths = [\"/a\"]\nallow = [\"role:root\"]\ndescription = \"x\"\n",
                &[],
                &["policy.rules.allow", "rule 1 (\"x\")", "role:root"],
            ),
            (
                "[[rules]]\npaths = [\"/a\"]\nallow = [\"authenticated\"]\ndeny = [\"everyone\"]\n",
                &[],
                &["policy.rules.deny", "everyone"],
            ),
            (
                "[[rules]]\npaths = [\"/a\"]\nallow = [\"public\", \"role:admin\"]\n",
                &[],
                &["policy.rules.allow", "public"],
            ),
            (
                "[[rules]]\npaths = [\"/docs/a\"]\nallow = [\"role:admin\"]\n",
                &["/docs/*"],
                &["auth.public_paths", "rule 1"],
            ),
            (
                "[[rules]]\npaths = [\"/api/*\"]\nallow = [\"authenticated\"]\ndescription = \"all api\"\n[[rules]]\nmethods = [\"DELETE\"]\npaths = [\"/api/admin/*\"]\nallow = [\"role:admin\"]\ndescription = \"admin deletes\"\n",
                &[],
                &[
                    "policy.rules",
                    "rule 2 (\"admin deletes\") is shadowed by rule 1 (\"all api\")",
                ],
            ),
            ("default = \"allow\"\n", &[], &["policy.default"]),
        ] {
            let err = match check(rules, public) {
                Err(e) => e,
                Ok(_) => panic!("accepted: {rules}"),
            };
            for n in needles {
                assert!(err.contains(n), "{rules}: {err} lacks {n}");
            }
        }
        // A narrower rule first is fine, and so is one that differs by method.
        check(
            "[[rules]]\nmethods = [\"DELETE\"]\npaths = [\"/api/admin/*\"]\nallow = [\"role:admin\"]\n[[rules]]\nmethods = [\"GET\"]\npaths = [\"/api/*\"]\nallow = [\"authenticated\"]\n[[rules]]\npaths = [\"/api/*\"]\nallow = [\"role:admin\"]\n",
            &[],
        )
        .unwrap();
    }
}
