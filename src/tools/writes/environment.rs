//! Which environment a namespace is, and so which approvals a write there needs. Explicit
//! mappings (`--environment payments=production`) win; otherwise a namespace whose name, or
//! the value of its `environment`/`env`/`tier` label, contains "prod" is production, and any
//! other namespace is named by that label or "non-production".

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::view;

/// Namespace labels read for an environment name, in order.
pub const ENVIRONMENT_LABELS: &[&str] = &["environment", "env", "tier"];

/// The environment of one namespace, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Environment {
    /// `production`, `staging`…
    pub name: String,
    /// Writes here need a human's approval.
    pub production: bool,
    /// Where the answer comes from (`--environment`, `namespace label env=production`…).
    pub source: String,
}

/// The configured namespace → environment names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentMap {
    explicit: BTreeMap<String, String>,
}

fn is_production(name: &str) -> bool {
    name.to_ascii_lowercase().contains("prod")
}

impl EnvironmentMap {
    /// Parses `namespace=environment` pairs (comma-separated, repeatable).
    pub fn parse(pairs: &[String]) -> Result<EnvironmentMap, String> {
        let mut explicit = BTreeMap::new();
        for pair in pairs.iter().flat_map(|p| p.split(',')) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let Some((namespace, environment)) = pair.split_once('=') else {
                return Err(format!(
                    "environment mapping {pair:?} is not namespace=environment (e.g. payments=production,payments-staging=staging)"
                ));
            };
            let (namespace, environment) = (namespace.trim(), environment.trim());
            if namespace.is_empty() || environment.is_empty() {
                return Err(format!(
                    "environment mapping {pair:?} has an empty side; write namespace=environment"
                ));
            }
            explicit.insert(namespace.to_string(), environment.to_string());
        }
        Ok(EnvironmentMap { explicit })
    }

    /// The environment of `namespace`.
    pub fn of(&self, namespace: &Namespace) -> Environment {
        let name = view::name(&namespace.metadata);
        if let Some(environment) = self.explicit.get(name) {
            return Environment {
                name: environment.clone(),
                production: is_production(environment),
                source: format!("--environment {name}={environment}"),
            };
        }
        let labels = namespace.metadata.labels.as_ref();
        let label = ENVIRONMENT_LABELS.iter().find_map(|key| {
            labels
                .and_then(|l| l.get(*key))
                .map(|value| (*key, value.as_str()))
        });
        if is_production(name) {
            return Environment {
                name: "production".into(),
                production: true,
                source: format!("namespace name {name:?} contains \"prod\""),
            };
        }
        match label {
            Some((key, value)) => Environment {
                name: if is_production(value) {
                    "production".into()
                } else {
                    value.to_string()
                },
                production: is_production(value),
                source: format!("namespace label {key}={value}"),
            },
            None => Environment {
                name: "non-production".into(),
                production: false,
                source: format!(
                    "namespace {name:?} has no name or label saying production ({})",
                    ENVIRONMENT_LABELS.join(", ")
                ),
            },
        }
    }

    /// Whether any namespace is mapped explicitly.
    pub fn is_empty(&self) -> bool {
        self.explicit.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()}
        }))
        .unwrap()
    }

    #[test]
    fn production_is_named_labelled_or_mapped() {
        let map = EnvironmentMap::default();
        assert!(map.of(&namespace("payments-prod", &[])).production);
        let labelled = map.of(&namespace("payments", &[("env", "production")]));
        assert!(labelled.production);
        assert_eq!(labelled.source, "namespace label env=production");
        let staging = map.of(&namespace("payments-stg", &[("environment", "staging")]));
        assert_eq!(
            (staging.name.as_str(), staging.production),
            ("staging", false)
        );
        assert!(!map.of(&namespace("sandbox", &[])).production);
        let map = EnvironmentMap::parse(&["payments=staging, edge=prod-eu".into()]).unwrap();
        let mapped = map.of(&namespace("payments", &[("env", "production")]));
        assert_eq!(
            (mapped.name.as_str(), mapped.production),
            ("staging", false)
        );
        assert!(map.of(&namespace("edge", &[])).production);
        assert!(
            EnvironmentMap::parse(&["payments".into()])
                .unwrap_err()
                .contains("namespace=environment")
        );
    }
}
