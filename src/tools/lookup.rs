//! Argument validation and name resolution shared by the tools: DNS-1123 names, clamped
//! limits, and "not found" errors that list the closest valid names first.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

use super::{Context, ToolError, ToolResult, limits};
use std::future::Future;

use crate::cluster::{ClusterError, ClusterResult, FieldSelector, ListQuery, view};
use crate::util::quote::short;
use crate::util::suggest::suggest;

/// Checks a Kubernetes name: DNS-1123 label (namespaces, services) or subdomain (pods).
pub fn validate_name(kind: &str, name: &str, subdomain: bool) -> ToolResult<()> {
    let max = if subdomain { limits::NAME } else { 63 };
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
            "invalid {kind} name {}: Kubernetes names are at most {max} characters of lowercase letters, digits and '-'{}, starting and ending with a letter or digit",
            short(name),
            if subdomain { " or '.'" } else { "" }
        )))
    }
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

/// The names a not-found error reported, or, when the backend did not say, those a list
/// gives (listed only on this error path).
async fn existing_names(
    existing: Option<Vec<String>>,
    list: impl Future<Output = ClusterResult<Vec<String>>>,
) -> ToolResult<Vec<String>> {
    match existing {
        Some(names) => Ok(names),
        None => Ok(list.await?),
    }
}

/// Checks that a namespace exists (one get, not a list).
pub async fn require_namespace(ctx: &Context, namespace: &str) -> ToolResult<()> {
    validate_name("namespace", namespace, false)?;
    match ctx.backend.namespace(namespace).await {
        Ok(_) => Ok(()),
        Err(ClusterError::NotFound { existing, .. }) => {
            let existing = existing_names(existing, async {
                Ok(view::names(
                    &ctx.backend.namespaces(&ListQuery::all()).await?.items,
                ))
            })
            .await?;
            Err(ToolError::NotFound(format!(
                "namespace {} not found; valid namespaces: {}",
                short(namespace),
                suggest(namespace, existing.iter().map(String::as_str))
            )))
        }
        Err(other) => Err(other.into()),
    }
}

/// Finds a service (Deployment) by `name` or `namespace/name`: a get when the namespace is
/// given, otherwise a list selected by name across namespaces; every deployment is listed only
/// to suggest names when there is no match.
pub async fn find_service(ctx: &Context, service: &str) -> ToolResult<Deployment> {
    let (namespace, name) = match service.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, service),
    };
    if let Some(ns) = namespace {
        validate_name("namespace", ns, false)?;
    }
    validate_name("service", name, false)?;
    let mut matches = match namespace {
        Some(ns) => match ctx.backend.deployment(ns, name).await {
            Ok(found) => vec![found],
            Err(ClusterError::NotFound { .. }) => Vec::new(),
            Err(other) => return Err(other.into()),
        },
        None => {
            ctx.backend
                .deployments(
                    &ListQuery::all().with_fields(FieldSelector::equals("metadata.name", name)),
                )
                .await?
                .items
        }
    };
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => {
            let names = view::names(&ctx.backend.deployments(&ListQuery::all()).await?.items);
            Err(ToolError::NotFound(format!(
                "service {} not found; valid services: {}",
                short(service),
                suggest(name, names.iter().map(String::as_str))
            )))
        }
        _ => Err(ToolError::InvalidArgument(format!(
            "service {} exists in several namespaces ({}); name it as namespace/{name}",
            short(name),
            matches
                .iter()
                .map(|d| view::namespace(&d.metadata))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The deployments a call is about — one service (by name or `namespace/name`) or every one —
/// and the list scope that holds their pods and ReplicaSets.
pub async fn service_scope(
    ctx: &Context,
    service: Option<&str>,
) -> ToolResult<(Vec<Deployment>, ListQuery)> {
    Ok(match service {
        Some(service) => {
            let deployment = find_service(ctx, service).await?;
            let scope = ListQuery::for_deployment(&deployment);
            (vec![deployment], scope)
        }
        None => (
            ctx.backend.deployments(&ListQuery::all()).await?.items,
            ListQuery::all(),
        ),
    })
}

/// Finds a pod in a namespace (one get; the namespace is checked only when the pod is missing,
/// so the error names what is wrong).
pub async fn find_pod(ctx: &Context, namespace: &str, pod: &str) -> ToolResult<Pod> {
    validate_name("namespace", namespace, false)?;
    validate_name("pod", pod, true)?;
    match ctx.backend.pod(namespace, pod).await {
        Ok(found) => Ok(found),
        Err(ClusterError::NotFound { existing, .. }) => {
            require_namespace(ctx, namespace).await?;
            let existing = existing_names(existing, async {
                Ok(view::names(
                    &ctx.backend
                        .pods(&ListQuery::in_namespace(namespace))
                        .await?
                        .items,
                ))
            })
            .await?;
            Err(ToolError::NotFound(format!(
                "pod {} not found in namespace {}; pods there: {}",
                short(pod),
                short(namespace),
                suggest(pod, existing.iter().map(String::as_str))
            )))
        }
        Err(other) => Err(other.into()),
    }
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
    fn clamping_is_reported() {
        let mut notes = Vec::new();
        assert_eq!(clamp("limit", Some(10_000), 50, 1, 500, &mut notes), 500);
        assert_eq!(clamp("limit", None, 50, 1, 500, &mut notes), 50);
        assert_eq!(notes.len(), 1);
    }
}
