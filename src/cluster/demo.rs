//! The embedded demo cluster: a production-like cluster in trouble, loaded from the YAML and
//! log fixtures compiled into the binary (`fixtures/demo`). Relative times in the fixtures
//! ("-14m") are resolved at load so the demo never looks stale; the data is validated for
//! consistency (owners, event targets, logs) before the server starts.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use include_dir::{Dir, include_dir};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use serde::Deserialize;

use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    Alert, BackendInfo, ClusterBackend, ClusterError, ClusterResult, HealthStatus, ListQuery,
    LogLines, LogQuery, ObjectList, ServiceMetrics,
};
use crate::util::logs::{LogEntry, parse_fixture_log};
use crate::util::timefmt::resolve_relative;

static DEMO_FIXTURES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/fixtures/demo");

/// One namespace file of the fixtures.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceFile {
    namespace: Namespace,
    #[serde(default)]
    deployments: Vec<Deployment>,
    #[serde(default)]
    replicasets: Vec<ReplicaSet>,
    #[serde(default)]
    pods: Vec<Pod>,
    #[serde(default)]
    events: Vec<Event>,
    #[serde(default)]
    metrics: Vec<MetricsFixture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFixture {
    service: String,
    status: HealthStatus,
    error_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    rps: f64,
    #[serde(default)]
    alerts: Vec<Alert>,
}

type LogKey = (String, String, String, bool);

/// One fixture file: its path relative to the fixtures root ('/'-separated) and contents.
struct FixtureFile {
    path: String,
    contents: std::borrow::Cow<'static, [u8]>,
}

/// The demo cluster, fully in memory.
pub struct DemoCluster {
    namespaces: Vec<Namespace>,
    nodes: Vec<Node>,
    deployments: Vec<Deployment>,
    replica_sets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    events: Vec<Event>,
    metrics: Vec<ServiceMetrics>,
    logs: HashMap<LogKey, Arc<Vec<LogEntry>>>,
}

/// Replaces every relative time string (`-14m`) in a YAML tree with an RFC 3339 time.
fn resolve_times(value: &mut serde_yaml_ng::Value, now: Timestamp) {
    use serde_yaml_ng::Value;
    match value {
        Value::String(text) => {
            if let Some(ts) = resolve_relative(text, now) {
                *text = ts.to_string();
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| resolve_times(v, now)),
        Value::Mapping(map) => map.iter_mut().for_each(|(_, v)| resolve_times(v, now)),
        Value::Tagged(tagged) => resolve_times(&mut tagged.value, now),
        _ => {}
    }
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(
    path: &str,
    text: &str,
    now: Timestamp,
) -> anyhow::Result<T> {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).with_context(|| format!("fixture {path}: invalid YAML"))?;
    resolve_times(&mut value, now);
    serde_yaml_ng::from_value(value).with_context(|| format!("fixture {path}: unexpected shape"))
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

impl DemoCluster {
    /// Loads the fixtures compiled into the binary, resolving relative times against `now`.
    pub fn load(now: Timestamp) -> anyhow::Result<Self> {
        fn walk(dir: &Dir<'static>, out: &mut Vec<FixtureFile>) {
            for file in dir.files() {
                out.push(FixtureFile {
                    path: file.path().to_string_lossy().replace('\\', "/"),
                    contents: std::borrow::Cow::Borrowed(file.contents()),
                });
            }
            dir.dirs().for_each(|d| walk(d, out));
        }
        let mut files = Vec::new();
        walk(&DEMO_FIXTURES, &mut files);
        Self::from_files(files, now)
    }

    /// Loads fixtures with the same layout from a directory (a user's own demo scenario).
    pub fn load_dir(root: &std::path::Path, now: Timestamp) -> anyhow::Result<Self> {
        fn walk(
            root: &std::path::Path,
            dir: &std::path::Path,
            out: &mut Vec<FixtureFile>,
        ) -> anyhow::Result<()> {
            let entries =
                std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    walk(root, &path, out)?;
                    continue;
                }
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let relative = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                if !(relative.ends_with(".yaml") || relative.starts_with("logs/")) {
                    continue;
                }
                let contents =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                out.push(FixtureFile {
                    path: relative,
                    contents: std::borrow::Cow::Owned(contents),
                });
            }
            Ok(())
        }
        if !root.is_dir() {
            bail!(
                "{} is not a directory (expected <namespace>.yaml files and logs/<ns>/<pod>/<container>.log)",
                root.display()
            );
        }
        let mut files = Vec::new();
        walk(root, root, &mut files)?;
        Self::from_files(files, now)
    }

    fn from_files(mut files: Vec<FixtureFile>, now: Timestamp) -> anyhow::Result<Self> {
        let mut cluster = DemoCluster {
            namespaces: Vec::new(),
            nodes: Vec::new(),
            deployments: Vec::new(),
            replica_sets: Vec::new(),
            pods: Vec::new(),
            events: Vec::new(),
            metrics: Vec::new(),
            logs: HashMap::new(),
        };
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let (logs, manifests): (Vec<_>, Vec<_>) =
            files.into_iter().partition(|f| f.path.starts_with("logs/"));
        for file in &manifests {
            let path = file.path.clone();
            if !path.ends_with(".yaml") || path.contains('/') {
                continue;
            }
            let text = std::str::from_utf8(&file.contents)
                .map_err(|_| anyhow!("fixture {path} is not UTF-8"))?;
            if path == "nodes.yaml" {
                cluster.nodes = parse_yaml(&path, text, now)?;
                continue;
            }
            let ns: NamespaceFile = parse_yaml(&path, text, now)?;
            let ns_name = name_of(&ns.namespace.metadata).to_string();
            if format!("{ns_name}.yaml") != path {
                bail!(
                    "fixture {path} declares namespace {ns_name:?}; the file must be named {ns_name}.yaml"
                );
            }
            cluster.namespaces.push(ns.namespace);
            cluster.deployments.extend(ns.deployments);
            cluster.replica_sets.extend(ns.replicasets);
            cluster.pods.extend(ns.pods);
            cluster.events.extend(ns.events);
            for m in ns.metrics {
                let metrics = ServiceMetrics {
                    service: m.service,
                    namespace: ns_name.clone(),
                    error_rate: Some(m.error_rate),
                    p50_ms: Some(m.p50_ms),
                    p99_ms: Some(m.p99_ms),
                    rps: Some(m.rps),
                    alerts: m.alerts,
                };
                // The fixture states the status it means to show; the one definition of a
                // status from metrics must agree, or the data would say two things.
                if metrics.status() != m.status {
                    bail!(
                        "fixture {path}: metrics of {} say status {}, but error rate {} and alerts {:?} make it {} (see ServiceMetrics::status)",
                        metrics.service,
                        m.status.as_str(),
                        m.error_rate,
                        metrics.alerts.iter().map(|a| &a.name).collect::<Vec<_>>(),
                        metrics.status().as_str()
                    );
                }
                cluster.metrics.push(metrics);
            }
        }
        cluster.load_logs(&logs, now)?;
        let problems = cluster.consistency_problems();
        if !problems.is_empty() {
            bail!(
                "demo fixtures are inconsistent ({} problems):\n  {}",
                problems.len(),
                problems.join("\n  ")
            );
        }
        Ok(cluster)
    }

    fn load_logs(&mut self, logs: &[FixtureFile], now: Timestamp) -> anyhow::Result<()> {
        for file in logs {
            let full = file.path.clone();
            // logs/<namespace>/<pod>/<container>.log | <container>.previous.log
            let parts: Vec<&str> = full.split('/').collect();
            let [_, namespace, pod, file_name] = parts[..] else {
                bail!("fixture {full}: expected logs/<namespace>/<pod>/<container>.log");
            };
            let (container, previous) = if let Some(c) = file_name.strip_suffix(".previous.log") {
                (c, true)
            } else if let Some(c) = file_name.strip_suffix(".log") {
                (c, false)
            } else {
                bail!("fixture {full}: log files end in .log or .previous.log");
            };
            let text = std::str::from_utf8(&file.contents)
                .map_err(|_| anyhow!("fixture {full} is not UTF-8"))?;
            let entries =
                parse_fixture_log(text, now).map_err(|e| anyhow!("fixture {full}: {e}"))?;
            self.logs.insert(
                (namespace.into(), pod.into(), container.into(), previous),
                Arc::new(entries),
            );
        }
        Ok(())
    }

    /// Every cross-reference in the fixtures, checked. Empty when consistent.
    pub fn consistency_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let namespaces: BTreeSet<&str> = self
            .namespaces
            .iter()
            .map(|n| name_of(&n.metadata))
            .collect();
        let key = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            (
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
            )
        };
        let deployments: BTreeSet<_> = self.deployments.iter().map(|d| key(&d.metadata)).collect();
        let replica_sets: BTreeSet<_> =
            self.replica_sets.iter().map(|r| key(&r.metadata)).collect();
        let pods: BTreeSet<_> = self.pods.iter().map(|p| key(&p.metadata)).collect();
        for (kind, items) in [
            ("Deployment", &deployments),
            ("ReplicaSet", &replica_sets),
            ("Pod", &pods),
        ] {
            for (ns, name) in items.iter() {
                if !namespaces.contains(ns.as_str()) {
                    problems.push(format!("{kind} {ns}/{name}: unknown namespace"));
                }
            }
        }
        let owner_of =
            |refs: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
             kind: &str| {
                refs.iter()
                    .flatten()
                    .find(|o| o.kind == kind)
                    .map(|o| o.name.clone())
            };
        for rs in &self.replica_sets {
            let (ns, name) = key(&rs.metadata);
            match owner_of(&rs.metadata.owner_references, "Deployment") {
                Some(owner) if deployments.contains(&(ns.clone(), owner.clone())) => {}
                Some(owner) => problems.push(format!(
                    "ReplicaSet {ns}/{name}: owner Deployment {owner} does not exist"
                )),
                None => problems.push(format!("ReplicaSet {ns}/{name}: no owner Deployment")),
            }
        }
        for pod in &self.pods {
            let (ns, name) = key(&pod.metadata);
            match owner_of(&pod.metadata.owner_references, "ReplicaSet") {
                Some(owner) if replica_sets.contains(&(ns.clone(), owner.clone())) => {
                    let hash = pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("pod-template-hash"));
                    if hash.is_none_or(|h| !owner.ends_with(&format!("-{h}"))) {
                        problems.push(format!("Pod {ns}/{name}: pod-template-hash label does not match ReplicaSet {owner}"));
                    }
                }
                Some(owner) => problems.push(format!(
                    "Pod {ns}/{name}: owner ReplicaSet {owner} does not exist"
                )),
                None => problems.push(format!("Pod {ns}/{name}: no owner ReplicaSet")),
            }
        }
        let nodes: BTreeSet<&str> = self.nodes.iter().map(|n| name_of(&n.metadata)).collect();
        for event in &self.events {
            let ns = event.metadata.namespace.clone().unwrap_or_default();
            let obj = &event.involved_object;
            let target = (
                obj.namespace.clone().unwrap_or_else(|| ns.clone()),
                obj.name.clone().unwrap_or_default(),
            );
            let exists = match obj.kind.as_deref() {
                Some("Pod") => pods.contains(&target),
                Some("ReplicaSet") => replica_sets.contains(&target),
                Some("Deployment") => deployments.contains(&target),
                Some("Node") => nodes.contains(target.1.as_str()),
                _ => false,
            };
            if !exists {
                problems.push(format!(
                    "Event {ns}/{}: involved object {}/{} does not exist",
                    name_of(&event.metadata),
                    obj.kind.as_deref().unwrap_or("?"),
                    target.1
                ));
            }
        }
        for (ns, pod, container, _) in self.logs.keys() {
            let found = self
                .pods
                .iter()
                .find(|p| key(&p.metadata) == (ns.clone(), pod.clone()));
            let has_container = found
                .and_then(|p| p.spec.as_ref())
                .is_some_and(|s| s.containers.iter().any(|c| &c.name == container));
            if !has_container {
                problems.push(format!(
                    "logs for {ns}/{pod}/{container}: no such pod container"
                ));
            }
        }
        for metrics in &self.metrics {
            if !deployments.contains(&(metrics.namespace.clone(), metrics.service.clone())) {
                problems.push(format!(
                    "metrics for {}/{}: no such deployment",
                    metrics.namespace, metrics.service
                ));
            }
        }
        problems
    }

    /// Sum of log entries over all containers (for the health resource and tests).
    pub fn log_entry_count(&self) -> usize {
        self.logs.values().map(|l| l.len()).sum()
    }
}

/// Field paths the demo backend supports per kind: those the API server supports for the same
/// kind (`kubectl get --field-selector`), so a query behaves the same on both backends.
trait FieldPaths {
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
fn get<T: Metadata<Ty = ObjectMeta> + Clone>(
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
fn list<T: Metadata<Ty = ObjectMeta> + FieldPaths + Clone>(
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

#[async_trait]
impl ClusterBackend for DemoCluster {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "demo",
            description: format!(
                "embedded demo cluster: {} namespaces, {} deployments, {} pods, {} log entries",
                self.namespaces.len(),
                self.deployments.len(),
                self.pods.len(),
                self.log_entry_count()
            ),
            context: None,
            read_only: true,
            metrics: "demo fixtures (simulated Prometheus)".into(),
            selected_because: None,
        }
    }

    async fn namespace(&self, name: &str) -> ClusterResult<Namespace> {
        get(&self.namespaces, "namespace", None, name)
    }

    async fn namespaces(&self, query: &ListQuery) -> ClusterResult<ObjectList<Namespace>> {
        list(
            &self.namespaces,
            &ListQuery {
                namespace: None,
                ..query.clone()
            },
        )
    }

    async fn nodes(&self, query: &ListQuery) -> ClusterResult<ObjectList<Node>> {
        list(
            &self.nodes,
            &ListQuery {
                namespace: None,
                ..query.clone()
            },
        )
    }

    async fn deployment(&self, namespace: &str, name: &str) -> ClusterResult<Deployment> {
        get(&self.deployments, "deployment", Some(namespace), name)
    }

    async fn deployments(&self, query: &ListQuery) -> ClusterResult<ObjectList<Deployment>> {
        list(&self.deployments, query)
    }

    async fn replica_sets(&self, query: &ListQuery) -> ClusterResult<ObjectList<ReplicaSet>> {
        list(&self.replica_sets, query)
    }

    async fn pod(&self, namespace: &str, name: &str) -> ClusterResult<Pod> {
        get(&self.pods, "pod", Some(namespace), name)
    }

    async fn pods(&self, query: &ListQuery) -> ClusterResult<ObjectList<Pod>> {
        list(&self.pods, query)
    }

    async fn events(&self, query: &ListQuery) -> ClusterResult<ObjectList<Event>> {
        list(&self.events, query)
    }

    async fn pod_logs(&self, query: &LogQuery) -> ClusterResult<LogLines> {
        let pod = self.pod(&query.namespace, &query.pod).await?;
        let has_container = pod
            .spec
            .as_ref()
            .is_some_and(|s| s.containers.iter().any(|c| c.name == query.container));
        if !has_container {
            return Err(ClusterError::NotFound {
                kind: "container",
                name: query.container.clone(),
                namespace: Some(query.namespace.clone()),
                existing: Some(
                    pod.spec
                        .iter()
                        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
                        .collect(),
                ),
            });
        }
        let key = (
            query.namespace.clone(),
            query.pod.clone(),
            query.container.clone(),
            query.previous,
        );
        // A pod that never started (Pending) or a container that never crashed has no such
        // stream; the API server answers that with an empty body or a 400.
        let stream = self.logs.get(&key).cloned().unwrap_or_default();
        Ok(LogLines::window_of(stream, query))
    }

    async fn service_metrics(&self, namespace: Option<&str>) -> ClusterResult<Vec<ServiceMetrics>> {
        Ok(self
            .metrics
            .iter()
            .filter(|m| namespace.is_none_or(|ns| m.namespace == ns))
            .cloned()
            .collect())
    }
}
