//! Reads with the API server's semantics over objects held in memory: get by name (with the
//! names that exist, for "did you mean") and lists filtered by namespace, label and field
//! selectors, then paged.

use k8s_openapi::Metadata;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cluster::{ClusterError, ClusterResult, ListQuery, ObjectList};

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Field paths the demo backend supports per kind: those the API server supports for the same
/// kind (`kubectl get --field-selector`), so a query behaves the same on both backends.
pub trait FieldPaths {
    const RESOURCE: &'static str;
    /// The value at `path` (`Some(None)` for an unset field), `None` for an unsupported path.
    fn field(&self, path: &str) -> Option<Option<String>>;
}

fn meta_field(meta: &ObjectMeta, path: &str) -> Option<Option<String>> {
    match path {
        "metadata.name" => Some(meta.name.clone()),
        "metadata.namespace" => Some(meta.namespace.clone()),
        _ => None,
    }
}

impl FieldPaths for Namespace {
    const RESOURCE: &'static str = "namespaces";
    fn field(&self, path: &str) -> Option<Option<String>> {
        match path {
            "status.phase" => Some(self.status.as_ref().and_then(|s| s.phase.clone())),
            _ => meta_field(&self.metadata, path),
        }
    }
}

impl FieldPaths for Node {
    const RESOURCE: &'static str = "nodes";
    fn field(&self, path: &str) -> Option<Option<String>> {
        match path {
            "spec.unschedulable" => Some(Some(
                self.spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false)
                    .to_string(),
            )),
            _ => meta_field(&self.metadata, path),
        }
    }
}

impl FieldPaths for Deployment {
    const RESOURCE: &'static str = "deployments";
    fn field(&self, path: &str) -> Option<Option<String>> {
        meta_field(&self.metadata, path)
    }
}

impl FieldPaths for ReplicaSet {
    const RESOURCE: &'static str = "replicasets";
    fn field(&self, path: &str) -> Option<Option<String>> {
        match path {
            "status.replicas" => Some(self.status.as_ref().map(|s| s.replicas.to_string())),
            _ => meta_field(&self.metadata, path),
        }
    }
}

impl FieldPaths for Pod {
    const RESOURCE: &'static str = "pods";
    fn field(&self, path: &str) -> Option<Option<String>> {
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        match path {
            "spec.nodeName" => Some(spec.and_then(|s| s.node_name.clone())),
            "spec.restartPolicy" => Some(spec.and_then(|s| s.restart_policy.clone())),
            "spec.schedulerName" => Some(spec.and_then(|s| s.scheduler_name.clone())),
            "spec.serviceAccountName" => Some(spec.and_then(|s| s.service_account_name.clone())),
            "status.phase" => Some(status.and_then(|s| s.phase.clone())),
            "status.podIP" => Some(status.and_then(|s| s.pod_ip.clone())),
            "status.nominatedNodeName" => Some(status.and_then(|s| s.nominated_node_name.clone())),
            _ => meta_field(&self.metadata, path),
        }
    }
}

impl FieldPaths for Event {
    const RESOURCE: &'static str = "events";
    fn field(&self, path: &str) -> Option<Option<String>> {
        let object = &self.involved_object;
        match path {
            "involvedObject.kind" => Some(object.kind.clone()),
            "involvedObject.name" => Some(object.name.clone()),
            "involvedObject.namespace" => Some(object.namespace.clone()),
            "involvedObject.uid" => Some(object.uid.clone()),
            "involvedObject.apiVersion" => Some(object.api_version.clone()),
            "involvedObject.fieldPath" => Some(object.field_path.clone()),
            "reason" => Some(self.reason.clone()),
            "reportingComponent" => Some(self.reporting_component.clone()),
            "source" => Some(self.source.as_ref().and_then(|s| s.component.clone())),
            "type" => Some(self.type_.clone()),
            _ => meta_field(&self.metadata, path),
        }
    }
}

/// Names of the objects of a kind in a namespace (or cluster-wide), for "did you mean".
fn names_in<T: Metadata<Ty = ObjectMeta>>(items: &[T], namespace: Option<&str>) -> Vec<String> {
    items
        .iter()
        .filter(|i| namespace.is_none_or(|ns| i.metadata().namespace.as_deref() == Some(ns)))
        .map(|i| name_of(i.metadata()).to_string())
        .collect()
}

/// A get by name, with the names that exist when it is not found.
pub fn get<T: Metadata<Ty = ObjectMeta> + Clone>(
    items: &[T],
    kind: &'static str,
    namespace: Option<&str>,
    name: &str,
) -> ClusterResult<T> {
    items
        .iter()
        .find(|i| {
            name_of(i.metadata()) == name
                && namespace.is_none_or(|ns| i.metadata().namespace.as_deref() == Some(ns))
        })
        .cloned()
        .ok_or_else(|| ClusterError::NotFound {
            kind,
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
            existing: Some(names_in(items, namespace)),
        })
}

/// A list with the API server's semantics: namespace, label and field selectors, then a page
/// of `limit` items; the continue token is the offset of the next page.
pub fn list<T: Metadata<Ty = ObjectMeta> + FieldPaths + Clone>(
    items: &[T],
    query: &ListQuery,
) -> ClusterResult<ObjectList<T>> {
    let offset = match &query.continue_token {
        Some(token) => token
            .strip_prefix("demo:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ClusterError::Invalid(format!(
                    "continue token {token:?} was not issued by this backend"
                ))
            })?,
        None => 0,
    };
    let mut matching = Vec::new();
    for item in items {
        let meta = item.metadata();
        if query
            .namespace
            .as_deref()
            .is_some_and(|ns| meta.namespace.as_deref() != Some(ns))
        {
            continue;
        }
        if query
            .labels
            .as_ref()
            .is_some_and(|l| !l.matches(meta.labels.as_ref()))
        {
            continue;
        }
        if let Some(fields) = &query.fields {
            match fields.matches(|path| item.field(path)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(path) => {
                    return Err(ClusterError::Invalid(format!(
                        "field selector path {path:?} is not supported for {}",
                        T::RESOURCE
                    )));
                }
            }
        }
        matching.push(item);
    }
    let total = matching.len();
    let start = offset.min(total);
    let end = query.limit.map_or(total, |l| (start + l.max(1)).min(total));
    Ok(ObjectList {
        items: matching[start..end].iter().map(|i| (*i).clone()).collect(),
        continue_token: (end < total).then(|| format!("demo:{end}")),
        remaining: Some(total - end),
    })
}
