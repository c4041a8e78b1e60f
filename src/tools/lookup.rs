//! Argument validation and name resolution shared by the tools: DNS-1123 names, clamped
//! limits, and "not found" errors that list the closest valid names first.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

use super::{ToolError, ToolResult};
use crate::app::App;
use crate::cluster::view;

/// Checks a Kubernetes name: DNS-1123 label (namespaces, services) or subdomain (pods).
pub fn validate_name(kind: &str, name: &str, subdomain: bool) -> ToolResult<()> {
    let max = if subdomain { 253 } else { 63 };
    let valid_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (subdomain && c == '.')
    };
    let ok = !name.is_empty()
        && name.len() <= max
        && name.chars().all(valid_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ToolError::InvalidArgument(format!(
            "invalid {kind} name {name:?}: Kubernetes names are at most {max} characters of lowercase letters, digits and '-'{}, starting and ending with a letter or digit",
            if subdomain { " or '.'" } else { "" }
        )))
    }
}

/// Names from `candidates` ordered by similarity to `wanted`, as a comma-separated list
/// (closest first, at most 8, with a count of the rest).
pub fn suggest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| {
            let mut score = strsim::jaro_winkler(wanted, c);
            if c.contains(wanted) || wanted.contains(c) {
                score += 0.5;
            }
            (score, c)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    let total = scored.len();
    if total == 0 {
        return "(none)".into();
    }
    let shown: Vec<&str> = scored.iter().take(8).map(|(_, c)| *c).collect();
    let mut text = shown.join(", ");
    if total > shown.len() {
        text.push_str(&format!(" (and {} more)", total - shown.len()));
    }
    text
}

/// Clamps a numeric argument and records a note when it had to.
pub fn clamp(
    name: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
    notes: &mut Vec<String>,
) -> i64 {
    let Some(value) = value else { return default };
    if value < min {
        notes.push(format!("{name}={value} was raised to the minimum {min}"));
        min
    } else if value > max {
        notes.push(format!("{name}={value} was lowered to the maximum {max}"));
        max
    } else {
        value
    }
}

/// Checks that a namespace exists.
pub async fn require_namespace(app: &App, namespace: &str) -> ToolResult<()> {
    validate_name("namespace", namespace, false)?;
    let namespaces = app.backend.namespaces().await?;
    if namespaces
        .iter()
        .any(|n| view::name(&n.metadata) == namespace)
    {
        return Ok(());
    }
    Err(ToolError::NotFound(format!(
        "namespace {namespace:?} not found; valid namespaces: {}",
        suggest(
            namespace,
            namespaces.iter().map(|n| view::name(&n.metadata))
        )
    )))
}

/// Finds a service (Deployment) by `name` or `namespace/name`.
pub async fn find_service(app: &App, service: &str) -> ToolResult<Deployment> {
    let (namespace, name) = match service.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, service),
    };
    if let Some(ns) = namespace {
        validate_name("namespace", ns, false)?;
    }
    validate_name("service", name, false)?;
    let deployments = app.backend.deployments(namespace).await?;
    let mut matches: Vec<Deployment> = deployments
        .iter()
        .filter(|d| view::name(&d.metadata) == name)
        .cloned()
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => {
            let all = app.backend.deployments(None).await?;
            let names: Vec<String> = all
                .iter()
                .map(|d| view::name(&d.metadata).to_string())
                .collect();
            Err(ToolError::NotFound(format!(
                "service {service:?} not found; valid services: {}",
                suggest(name, names.iter().map(String::as_str))
            )))
        }
        _ => Err(ToolError::InvalidArgument(format!(
            "service {name:?} exists in several namespaces ({}); name it as namespace/{name}",
            matches
                .iter()
                .map(|d| view::namespace(&d.metadata))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Finds a pod in a namespace.
pub async fn find_pod(app: &App, namespace: &str, pod: &str) -> ToolResult<Pod> {
    require_namespace(app, namespace).await?;
    validate_name("pod", pod, true)?;
    let pods = app.backend.pods(Some(namespace)).await?;
    if let Some(found) = pods.iter().find(|p| view::name(&p.metadata) == pod) {
        return Ok(found.clone());
    }
    Err(ToolError::NotFound(format!(
        "pod {pod:?} not found in namespace {namespace:?}; pods there: {}",
        suggest(pod, pods.iter().map(|p| view::name(&p.metadata)))
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("namespace", "payments", false).is_ok());
        assert!(validate_name("namespace", "Payments", false).is_err());
        assert!(validate_name("namespace", "-x", false).is_err());
        assert!(validate_name("namespace", "", false).is_err());
        assert!(validate_name("pod", "a.b-c", true).is_ok());
        assert!(validate_name("namespace", "a.b", false).is_err());
        assert!(validate_name("namespace", &"a".repeat(64), false).is_err());
    }

    #[test]
    fn suggestions_put_closest_first() {
        let list = suggest("paymnts", ["edge", "payments", "identity"]);
        assert!(list.starts_with("payments"), "{list}");
    }

    #[test]
    fn clamping_is_reported() {
        let mut notes = Vec::new();
        assert_eq!(clamp("limit", Some(10_000), 50, 1, 500, &mut notes), 500);
        assert_eq!(clamp("limit", None, 50, 1, 500, &mut notes), 50);
        assert_eq!(notes.len(), 1);
    }
}
