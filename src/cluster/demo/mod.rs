//! The embedded demo cluster: a production-like cluster in trouble, loaded from the YAML and
//! log fixtures compiled into the binary (`fixtures/demo`). Relative times in the fixtures
//! ("-14m") are resolved at load so the demo never looks stale; the data is validated for
//! consistency (owners, event targets, logs, the image registry) before the server starts.
//!
//! It also answers the one write, [`ClusterBackend::write_deployment`]: a new revision, a
//! rollout that progresses over a few seconds, pods that behave as the demo registry says their
//! image does (serve, crash-loop, fail to pull), and health, events, logs and metrics that
//! follow. The simulation is driven by time: every read and write first advances the state to
//! the clock's "now" (see [`state`]), so nothing runs in the background and a test can step an
//! injected [`Clock`] instantly.
//!
//! | module | owns |
//! |---|---|
//! | [`load`] | fixture files → state; consistency checks |
//! | [`registry`] | `registry.yaml`: tags, behaviours, log templates; image references |
//! | [`state`] | the mutable state, advancing it in time, what reads see |
//! | [`write`] | validating and storing a write (revision, ReplicaSet, dry run, conflicts) |
//! | [`controller`] | the deployment controller: rollouts, status, conditions, metrics |
//! | [`replicaset`] | the ReplicaSet controller: creating, placing and deleting pods |
//! | [`kubelet`] | a demo pod's status and kubelet events as functions of time |
//! | [`scheduler`] | placing new pods by memory |
//! | [`podlogs`] | demo pods' log streams |
//! | [`events`] | events as the controllers write them |
//! | [`names`] | deterministic names and ids |
//! | [`query`] | get and list with the API server's semantics |

mod controller;
mod events;
mod kubelet;
mod load;
mod names;
mod podlogs;
mod query;
mod registry;
mod replicaset;
mod scheduler;
mod state;
mod write;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, bail};
use async_trait::async_trait;
use include_dir::{Dir, include_dir};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};

use super::{
    BackendInfo, ClusterBackend, ClusterError, ClusterResult, DeploymentWrite, ListQuery, LogLines,
    LogQuery, ObjectList, ServiceMetrics,
};
use load::FixtureFile;
use query::{get, list};
use state::State;

static DEMO_FIXTURES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/fixtures/demo");

/// The fixture files compiled into the binary.
fn embedded_files() -> Vec<FixtureFile> {
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
    files
}

/// Where the demo's time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock: what the server uses.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to, for tests that step a rollout in milliseconds.
/// Clones share the same time.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.checked_add(by).unwrap_or(*now);
    }

    /// Moves forward by `secs` seconds.
    pub fn advance_secs(&self, secs: f64) {
        self.advance(SignedDuration::from_secs_f64(secs));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The demo cluster: in memory, changed only by writes and the time that passes after them.
pub struct DemoCluster {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl DemoCluster {
    /// Loads the fixtures compiled into the binary, resolving relative times against `now`.
    pub fn load(now: Timestamp) -> anyhow::Result<Self> {
        Self::from_files(embedded_files(), now)
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

    fn from_files(files: Vec<FixtureFile>, now: Timestamp) -> anyhow::Result<Self> {
        Ok(DemoCluster {
            state: Mutex::new(load::from_files(files, now)?),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same cluster on another clock (a [`ManualClock`] in tests). Time starts where the
    /// fixtures were loaded; a clock behind that is taken as that moment.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The state, advanced to the clock's now.
    fn current(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.advance(self.clock.now());
        state
    }

    /// Every cross-reference in the cluster (and the registry against the fixtures), checked.
    /// Empty when consistent.
    pub fn consistency_problems(&self) -> Vec<String> {
        load::consistency_problems(&self.current())
    }

    /// Sum of log entries over all containers (for the health resource and tests).
    pub fn log_entry_count(&self) -> usize {
        self.current().log_entry_count()
    }
}

#[async_trait]
impl ClusterBackend for DemoCluster {
    fn info(&self) -> BackendInfo {
        let state = self.current();
        BackendInfo {
            kind: "demo",
            description: format!(
                "embedded demo cluster: {} namespaces, {} deployments, {} pods, {} log entries",
                state.namespaces.len(),
                state.deployments.len(),
                state.pods.len(),
                state.log_entry_count()
            ),
            context: None,
            // It answers writes: rollouts, rollbacks and scaling run in the simulation.
            read_only: false,
            metrics: "demo fixtures (simulated Prometheus)".into(),
            selected_because: None,
        }
    }

    async fn namespace(&self, name: &str) -> ClusterResult<Namespace> {
        get(&self.current().namespaces, "namespace", None, name)
    }

    async fn namespaces(&self, query: &ListQuery) -> ClusterResult<ObjectList<Namespace>> {
        list(
            &self.current().namespaces,
            &ListQuery {
                namespace: None,
                ..query.clone()
            },
        )
    }

    async fn nodes(&self, query: &ListQuery) -> ClusterResult<ObjectList<Node>> {
        list(
            &self.current().nodes,
            &ListQuery {
                namespace: None,
                ..query.clone()
            },
        )
    }

    async fn deployment(&self, namespace: &str, name: &str) -> ClusterResult<Deployment> {
        get(
            &self.current().deployments,
            "deployment",
            Some(namespace),
            name,
        )
    }

    async fn deployments(&self, query: &ListQuery) -> ClusterResult<ObjectList<Deployment>> {
        list(&self.current().deployments, query)
    }

    async fn replica_sets(&self, query: &ListQuery) -> ClusterResult<ObjectList<ReplicaSet>> {
        list(&self.current().replica_sets, query)
    }

    async fn pod(&self, namespace: &str, name: &str) -> ClusterResult<Pod> {
        let state = self.current();
        match state.pod_now(namespace, name) {
            Some(pod) => Ok(pod),
            None => get(&state.pods_now(), "pod", Some(namespace), name),
        }
    }

    async fn pods(&self, query: &ListQuery) -> ClusterResult<ObjectList<Pod>> {
        list(&self.current().pods_now(), query)
    }

    async fn events(&self, query: &ListQuery) -> ClusterResult<ObjectList<Event>> {
        list(&self.current().events_now(), query)
    }

    async fn pod_logs(&self, query: &LogQuery) -> ClusterResult<LogLines> {
        let state = self.current();
        let pod = match state.pod_now(&query.namespace, &query.pod) {
            Some(pod) => pod,
            None => get(&state.pods_now(), "pod", Some(&query.namespace), &query.pod)?,
        };
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
        // A pod that never started (Pending) or a container that never crashed has no such
        // stream; the API server answers that with an empty body or a 400.
        let stream = state.log_stream(&(
            query.namespace.clone(),
            query.pod.clone(),
            query.container.clone(),
            query.previous,
        ));
        Ok(LogLines::window_of(stream, query))
    }

    async fn service_metrics(&self, namespace: Option<&str>) -> ClusterResult<Vec<ServiceMetrics>> {
        Ok(self
            .current()
            .metrics
            .iter()
            .filter(|m| namespace.is_none_or(|ns| m.namespace == ns))
            .cloned()
            .collect())
    }

    async fn write_deployment(&self, change: &DeploymentWrite) -> ClusterResult<Deployment> {
        let mut state = self.current();
        let now = state.now;
        write::write(&mut state, change, now)
    }
}
