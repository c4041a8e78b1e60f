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

use super::{
    Alert, BackendInfo, ClusterBackend, ClusterError, ClusterResult, HealthStatus, LogStream,
    ServiceMetrics,
};
use crate::logs::{LogEntry, parse_fixture_log};
use crate::timefmt::resolve_relative;

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
            cluster
                .metrics
                .extend(ns.metrics.into_iter().map(|m| ServiceMetrics {
                    service: m.service,
                    namespace: ns_name.clone(),
                    status: m.status,
                    error_rate: m.error_rate,
                    p50_ms: m.p50_ms,
                    p99_ms: m.p99_ms,
                    rps: m.rps,
                    alerts: m.alerts,
                }));
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

fn in_ns<
    'a,
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + Clone
        + 'a,
>(
    items: &'a [T],
    namespace: Option<&str>,
) -> Vec<T> {
    items
        .iter()
        .filter(|item| namespace.is_none_or(|ns| item.metadata().namespace.as_deref() == Some(ns)))
        .cloned()
        .collect()
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
            read_only: true,
        }
    }

    async fn namespaces(&self) -> ClusterResult<Vec<Namespace>> {
        Ok(self.namespaces.clone())
    }

    async fn nodes(&self) -> ClusterResult<Vec<Node>> {
        Ok(self.nodes.clone())
    }

    async fn deployments(&self, namespace: Option<&str>) -> ClusterResult<Vec<Deployment>> {
        Ok(in_ns(&self.deployments, namespace))
    }

    async fn replica_sets(&self, namespace: Option<&str>) -> ClusterResult<Vec<ReplicaSet>> {
        Ok(in_ns(&self.replica_sets, namespace))
    }

    async fn pods(&self, namespace: Option<&str>) -> ClusterResult<Vec<Pod>> {
        Ok(in_ns(&self.pods, namespace))
    }

    async fn events(&self, namespace: Option<&str>) -> ClusterResult<Vec<Event>> {
        Ok(in_ns(&self.events, namespace))
    }

    async fn pod_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        stream: LogStream,
    ) -> ClusterResult<Arc<Vec<LogEntry>>> {
        let key = (
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
            stream == LogStream::Previous,
        );
        match self.logs.get(&key) {
            Some(entries) => Ok(entries.clone()),
            None => {
                let pod_exists = self.pods.iter().any(|p| {
                    p.metadata.namespace.as_deref() == Some(namespace)
                        && name_of(&p.metadata) == pod
                });
                if !pod_exists {
                    return Err(ClusterError::NotFound {
                        kind: "pod",
                        name: pod.to_string(),
                        namespace: Some(namespace.to_string()),
                    });
                }
                // A pod that never started (Pending) or a container that never crashed has no
                // such stream; the API server answers that with an empty body or a 400.
                Ok(Arc::new(Vec::new()))
            }
        }
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
