//! Label and field selectors with Kubernetes' syntax and meaning: parsed once from the user's
//! text, rendered back for the API server (so a real backend pushes them down), and matched in
//! memory by backends that filter themselves (the demo cluster).

use std::collections::BTreeMap;
use std::fmt;

use crate::util::quote::short;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl LabelRequirement {
    fn key(&self) -> &str {
        match self {
            LabelRequirement::Equals(k, _)
            | LabelRequirement::NotEquals(k, _)
            | LabelRequirement::In(k, _)
            | LabelRequirement::NotIn(k, _)
            | LabelRequirement::Exists(k)
            | LabelRequirement::NotExists(k) => k,
        }
    }

    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        match self {
            LabelRequirement::Equals(k, v) => get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v),
            LabelRequirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            LabelRequirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::NotExists(k) => get(k).is_none(),
        }
    }
}

/// A label selector: every requirement must hold (equality- and set-based, as `kubectl -l`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<LabelRequirement>,
}

/// A selector the user wrote could not be parsed; the message says what is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

/// Splits on commas that are not inside parentheses.
fn split_terms(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
}

impl LabelSelector {
    /// Parses `key=value, key!=value, key in (a,b), key notin (a,b), key, !key`.
    pub fn parse(selector: &str) -> Result<LabelSelector, SelectorError> {
        let bad = |part: &str| {
            SelectorError(format!(
                "invalid label_selector term {}; use key=value, key!=value, key in (a,b), key notin (a,b), key or !key",
                short(part)
            ))
        };
        let mut requirements = Vec::new();
        for part in split_terms(selector).iter().map(|p| p.trim()) {
            if part.is_empty() {
                return Err(bad(part));
            }
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                LabelRequirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                LabelRequirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part
                .split_once(" notin ")
                .or_else(|| part.split_once(" in "))
            {
                let values = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad(part))?
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if part.contains(" notin ") {
                    LabelRequirement::NotIn(k.trim().into(), values)
                } else {
                    LabelRequirement::In(k.trim().into(), values)
                }
            } else if let Some(k) = part.strip_prefix('!') {
                LabelRequirement::NotExists(k.trim().into())
            } else {
                LabelRequirement::Exists(part.into())
            };
            if !valid_label_key(requirement.key()) {
                return Err(bad(part));
            }
            requirements.push(requirement);
        }
        Ok(LabelSelector { requirements })
    }

    /// `key=value` for each pair (a Deployment's `matchLabels`).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> LabelSelector {
        LabelSelector {
            requirements: labels
                .iter()
                .map(|(k, v)| LabelRequirement::Equals(k.clone(), v.clone()))
                .collect(),
        }
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// The API server's syntax (`labelSelector=` query parameter).
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                LabelRequirement::Equals(k, v) => format!("{k}={v}"),
                LabelRequirement::NotEquals(k, v) => format!("{k}!={v}"),
                LabelRequirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                LabelRequirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                LabelRequirement::Exists(k) => k.clone(),
                LabelRequirement::NotExists(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

/// One field requirement: `path=value` or `path!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub path: String,
    pub value: String,
    pub negated: bool,
}

/// A field selector (`metadata.name=x,status.phase!=Running`); which paths a kind supports is
/// the API server's (and the demo backend's) business.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(selector: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for part in selector.split(',').map(str::trim) {
            let (path, value, negated) = if let Some((p, v)) = part.split_once("!=") {
                (p, v, true)
            } else if let Some((p, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (p, v, false)
            } else {
                return Err(SelectorError(format!(
                    "invalid field selector term {}; use path=value or path!=value (e.g. status.phase=Running)",
                    short(part)
                )));
            };
            let path = path.trim();
            if path.is_empty()
                || !path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            {
                return Err(SelectorError(format!(
                    "invalid field path {} in field selector term {}",
                    short(path),
                    short(part)
                )));
            }
            requirements.push(FieldRequirement {
                path: path.to_string(),
                value: value.trim().to_string(),
                negated,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// `path=value`.
    pub fn equals(path: &str, value: &str) -> FieldSelector {
        FieldSelector::default().and(path, value)
    }

    /// Adds `path=value`.
    pub fn and(mut self, path: &str, value: &str) -> FieldSelector {
        self.requirements.push(FieldRequirement {
            path: path.to_string(),
            value: value.to_string(),
            negated: false,
        });
        self
    }

    /// Matches with `field(path)` giving an object's value for a path, or `Err(path)` for a
    /// path the kind does not support.
    pub fn matches(&self, field: impl Fn(&str) -> Option<Option<String>>) -> Result<bool, &str> {
        for r in &self.requirements {
            let Some(value) = field(&r.path) else {
                return Err(&r.path);
            };
            let equal = value.as_deref().unwrap_or("") == r.value;
            if equal == r.negated {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.path,
                    if r.negated { "!=" } else { "=" },
                    r.value
                )
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_parse_match_and_render() {
        let s = LabelSelector::parse("app=web, tier in (a,b),!canary,env!=dev,team").unwrap();
        assert_eq!(s.requirements.len(), 5);
        let l = labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("env", "prod"),
            ("team", "x"),
        ]);
        assert!(s.matches(Some(&l)));
        let l2 = labels(&[("app", "web"), ("tier", "c"), ("team", "x")]);
        assert!(!s.matches(Some(&l2)));
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
        assert!(LabelSelector::parse("app in x").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
        assert!(LabelSelector::parse("bad key=1").is_err());
    }

    #[test]
    fn field_selectors_match_and_report_unsupported_paths() {
        let s = FieldSelector::parse("status.phase!=Running,metadata.name=x").unwrap();
        let field = |p: &str| match p {
            "status.phase" => Some(Some("Pending".to_string())),
            "metadata.name" => Some(Some("x".to_string())),
            _ => None,
        };
        assert_eq!(s.matches(field), Ok(true));
        let other = FieldSelector::equals("spec.bogus", "1");
        assert_eq!(other.matches(field), Err("spec.bogus"));
        assert!(FieldSelector::parse("nonsense").is_err());
        assert_eq!(s.to_string(), "status.phase!=Running,metadata.name=x");
    }

    #[test]
    fn selector_forms_kubectl_accepts() {
        let labels = labels(&[("app", "web"), ("env", "prod")]);
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(ok("app=web"));
        assert!(ok("app==web,env in (prod, staging)"));
        assert!(!ok("app!=web"));
        assert!(ok("env notin (dev)"));
        assert!(ok("app,!canary"));
        assert!(!ok("canary"));
        assert!(LabelSelector::parse("app=web,").is_err());
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
    }
}
