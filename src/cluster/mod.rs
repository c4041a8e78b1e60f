//! The cluster model: one async trait that every backend (the embedded demo cluster, a real
//! Kubernetes API server) implements, so tools never know which backend answers.
//!
//! The trait is shaped like the Kubernetes API so a real backend can push work down to the
//! API server: get-by-name, lists with label/field selectors and a page size, and log queries
//! with tail, since, previous and a byte limit. Errors are typed and keep their cause, so a
//! 403, a timeout and a missing object read differently to the user.
//!
//! Objects are k8s-openapi types wherever Kubernetes has one; service metrics and parsed log
//! entries are our own types because Kubernetes has none.

pub mod deferred;
pub mod demo;
pub mod kubernetes;
pub mod prometheus;
pub mod selector;
pub mod view;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, PodTemplateSpec};
use serde::{Deserialize, Serialize};

pub use selector::{FieldSelector, LabelSelector, SelectorError};

use crate::util::logs::LogEntry;

/// The underlying cause of a backend failure (an HTTP or I/O error, say), kept for logs and
/// `{:#}` rendering.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors a backend reports, by kind, each with what the user needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The object does not exist. `existing` lists names that do (in the same namespace, for
    /// namespaced kinds), when the backend could tell cheaply, for "did you mean".
    #[error("{kind} {name:?} not found{}", in_namespace(.namespace))]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: Option<String>,
        existing: Option<Vec<String>>,
    },
    /// The credentials may not do this (HTTP 403).
    #[error("forbidden: the credentials in use may not {verb} {resource}{}{}", in_namespace(.namespace), message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: Option<String>,
        message: Option<String>,
    },
    /// No answer within the time allowed.
    #[error("timed out after {}s: {operation}", after.as_secs_f32())]
    Timeout { operation: String, after: Duration },
    /// The cluster cannot be reached or is not ready (connection refused, 5xx, still loading).
    #[error("cluster unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The namespace is outside the server's `--namespaces` allowlist (refused before any
    /// request is made).
    #[error("namespace {namespace:?} is outside this server's --namespaces allowlist (allowed: {})", allowed.join(", "))]
    NotAllowed {
        namespace: String,
        allowed: Vec<String>,
    },
    /// The request itself is wrong (a selector the API does not support, a bad query).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The object changed since it was read (HTTP 409): the write was not made; read it again
    /// and review the change anew.
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// This backend does not change the cluster (read-only by construction or by flag).
    #[error("{0}")]
    ReadOnly(String),
    /// Anything else the backend reports.
    #[error("{message}")]
    Other {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

fn in_namespace(namespace: &Option<String>) -> String {
    namespace
        .as_ref()
        .map(|ns| format!(" in namespace {ns:?}"))
        .unwrap_or_default()
}

pub type ClusterResult<T> = Result<T, ClusterError>;

/// Which objects to list: a namespace (or all), label and field selectors, and a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// `None` lists every namespace.
    pub namespace: Option<String>,
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    /// Most items in this page; `None` returns every match (a backend pages internally).
    pub limit: Option<usize>,
    /// Where the previous page ended (from [`ObjectList::continue_token`]).
    pub continue_token: Option<String>,
}

impl ListQuery {
    /// Everything, in every namespace.
    pub fn all() -> ListQuery {
        ListQuery::default()
    }

    /// Everything in one namespace, or in every namespace for `None`.
    pub fn namespace(namespace: Option<&str>) -> ListQuery {
        ListQuery {
            namespace: namespace.map(str::to_string),
            ..ListQuery::default()
        }
    }

    pub fn in_namespace(namespace: &str) -> ListQuery {
        ListQuery::namespace(Some(namespace))
    }

    /// What a Deployment owns: its namespace, selected by its pod selector (its pods and
    /// ReplicaSets; callers that need ownership exactly also check owner references).
    pub fn for_deployment(deployment: &Deployment) -> ListQuery {
        ListQuery::in_namespace(view::namespace(&deployment.metadata))
            .with_labels(view::deployment_selector(deployment))
    }

    pub fn with_labels(mut self, labels: LabelSelector) -> ListQuery {
        self.labels = (!labels.is_empty()).then_some(labels);
        self
    }

    pub fn with_fields(mut self, fields: FieldSelector) -> ListQuery {
        self.fields = Some(fields);
        self
    }

    pub fn with_limit(mut self, limit: usize) -> ListQuery {
        self.limit = Some(limit);
        self
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ObjectList<T> {
    pub items: Vec<T>,
    /// Set when more items match than this page holds: pass it back for the next page.
    pub continue_token: Option<String>,
    /// How many matching items follow this page, when the backend knows.
    pub remaining: Option<usize>,
}

impl<T> ObjectList<T> {
    /// Items in this page plus those that follow, when known.
    pub fn total(&self) -> Option<usize> {
        self.remaining.map(|r| r + self.items.len())
    }
}

/// Which log lines of one container to read, pushed down to the backend (the API server's
/// log subresource takes the same parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The previous (crashed) instance of the container, as `kubectl logs --previous`.
    pub previous: bool,
    /// Only the newest N lines.
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after about this many bytes of log text (counted from the first line returned).
    pub limit_bytes: Option<usize>,
}

impl LogQuery {
    /// The whole current stream of a container.
    pub fn container(namespace: &str, pod: &str, container: &str) -> LogQuery {
        LogQuery {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: container.to_string(),
            previous: false,
            tail_lines: None,
            since: None,
            limit_bytes: None,
        }
    }

    pub fn previous(mut self, previous: bool) -> LogQuery {
        self.previous = previous;
        self
    }
}

/// Parsed log entries of one container, oldest first: a window onto a shared stream, so a
/// backend that holds the stream in memory answers without copying it.
#[derive(Debug, Clone)]
pub struct LogLines {
    stream: Arc<Vec<LogEntry>>,
    window: Range<usize>,
    /// Entries in the whole stream (before `tail_lines`, `since`, `limit_bytes`), when known.
    pub stream_entries: Option<usize>,
    /// Entries at or after `since`, before `tail_lines` kept the newest, when known.
    pub since_entries: Option<usize>,
    /// True when `limit_bytes` cut the answer short.
    pub cut_by_bytes: bool,
}

impl LogLines {
    /// Applies a query's since, tail and byte limit to a whole stream held in memory.
    pub fn window_of(stream: Arc<Vec<LogEntry>>, query: &LogQuery) -> LogLines {
        let total = stream.len();
        let mut start = match query.since {
            Some(since) => stream.partition_point(|e| e.timestamp < since),
            None => 0,
        };
        let since_entries = total - start;
        if let Some(tail) = query.tail_lines {
            start = start.max(total.saturating_sub(tail));
        }
        let mut end = total;
        let mut cut_by_bytes = false;
        if let Some(limit) = query.limit_bytes {
            let mut bytes = 0;
            for (i, entry) in stream[start..].iter().enumerate() {
                bytes += entry.approximate_bytes();
                if bytes > limit {
                    end = start + i;
                    cut_by_bytes = true;
                    break;
                }
            }
        }
        LogLines {
            stream,
            window: start..end,
            stream_entries: Some(total),
            since_entries: Some(since_entries),
            cut_by_bytes,
        }
    }

    /// Entries a backend read for exactly this query (it applied since, tail and byte limit
    /// itself); the size of the whole stream is unknown.
    pub fn read(entries: Vec<LogEntry>, cut_by_bytes: bool) -> LogLines {
        let window = 0..entries.len();
        LogLines {
            stream: Arc::new(entries),
            window,
            stream_entries: None,
            since_entries: None,
            cut_by_bytes,
        }
    }

    pub fn entries(&self) -> &[LogEntry] {
        &self.stream[self.window.clone()]
    }

    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }
}

/// Health as a monitoring system reports it for one service (a Deployment).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Down,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Down => "down",
        }
    }
}

/// A firing alert attached to a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub name: String,
    pub severity: String,
    pub since: Timestamp,
    pub summary: String,
}

/// Golden signals for one service, as a metrics system reports them. A signal the source has
/// no series for is `None` ("unknown"), never a made-up number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceMetrics {
    pub service: String,
    pub namespace: String,
    /// Fraction of requests failing, 0.0–1.0.
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub rps: Option<f64>,
    /// Firing alerts that name the service.
    pub alerts: Vec<Alert>,
}

/// Error rate from which a service counts as degraded.
pub const ERROR_RATE_DEGRADED: f64 = 0.05;
/// Error rate from which a service counts as down: most requests fail.
pub const ERROR_RATE_DOWN: f64 = 0.5;

impl ServiceMetrics {
    /// What the metrics alone say about a service (its pods are judged apart, by
    /// `check_service_health`): down when at least [`ERROR_RATE_DOWN`] of requests fail;
    /// degraded from [`ERROR_RATE_DEGRADED`] or while an alert of severity warning or worse
    /// fires; healthy otherwise, including when the signals are unknown.
    pub fn status(&self) -> HealthStatus {
        let error_rate = self.error_rate.unwrap_or(0.0);
        let alerting = self
            .alerts
            .iter()
            .any(|a| !matches!(a.severity.as_str(), "none" | "info"));
        if error_rate >= ERROR_RATE_DOWN {
            HealthStatus::Down
        } else if error_rate >= ERROR_RATE_DEGRADED || alerting {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        }
    }
}

/// Facts about the backend itself, for `system://health`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    /// "demo" or "kubernetes".
    pub kind: &'static str,
    /// Human-readable description: fixture set, or API server URL and context.
    pub description: String,
    /// The kubeconfig context it reads through (a Kubernetes backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub read_only: bool,
    /// Where service metrics (error rate, latency, alerts) come from, or why there are none.
    pub metrics: String,
    /// Why this backend serves (`--backend auto` found a kubeconfig, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected_because: Option<String>,
}

/// A change to one Deployment's spec: what the write tools ask a backend to make.
#[derive(Debug, Clone, PartialEq)]
pub enum DeploymentChange {
    /// Set one container's image (a rollout to a new ReplicaSet revision).
    Image { container: String, image: String },
    /// Set `spec.replicas` (no new revision).
    Replicas(i32),
    /// Restart every pod, as `kubectl rollout restart`: the pod template gains the annotation
    /// [`RESTARTED_AT_ANNOTATION`] with this time (a new revision).
    Restart { at: Timestamp },
    /// Replace the pod template with an earlier revision's, as `kubectl rollout undo`: the
    /// template of that revision's ReplicaSet without its `pod-template-hash` label.
    Template {
        revision: i64,
        template: Box<PodTemplateSpec>,
    },
}

/// One write to a Deployment, made with field manager [`FIELD_MANAGER`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentWrite {
    pub namespace: String,
    pub name: String,
    pub change: DeploymentChange,
    /// Recorded as the change-cause annotation (what `kubectl rollout history` shows) for
    /// changes that make a new revision.
    pub change_cause: String,
    /// Recorded in [`DEPLOYED_BY_ANNOTATION`] for changes that make a new revision.
    pub deployed_by: String,
    /// Only ask the backend what the object would become (the API server's `dryRun=All`):
    /// nothing is stored.
    pub dry_run: bool,
    /// The `resourceVersion` the review read: the write is refused with
    /// [`ClusterError::Conflict`] when the Deployment changed since.
    pub resource_version: Option<String>,
}

/// One cluster. Reads are the bulk of the trait: lists take a [`ListQuery`]; a backend that
/// talks to an API server passes its selectors and page size on, one that holds objects in
/// memory filters them itself with the same meaning. The one write,
/// [`ClusterBackend::write_deployment`], changes a Deployment's spec; the rollout that follows
/// is read back through the same reads (the Deployment's status, its ReplicaSets and pods).
#[async_trait]
pub trait ClusterBackend: Send + Sync {
    fn info(&self) -> BackendInfo;
    async fn namespace(&self, name: &str) -> ClusterResult<Namespace>;
    async fn namespaces(&self, query: &ListQuery) -> ClusterResult<ObjectList<Namespace>>;
    async fn nodes(&self, query: &ListQuery) -> ClusterResult<ObjectList<Node>>;
    async fn deployment(&self, namespace: &str, name: &str) -> ClusterResult<Deployment>;
    async fn deployments(&self, query: &ListQuery) -> ClusterResult<ObjectList<Deployment>>;
    /// ReplicaSets carry the rollout history (revision and change-cause annotations).
    async fn replica_sets(&self, query: &ListQuery) -> ClusterResult<ObjectList<ReplicaSet>>;
    async fn pod(&self, namespace: &str, name: &str) -> ClusterResult<Pod>;
    async fn pods(&self, query: &ListQuery) -> ClusterResult<ObjectList<Pod>>;
    async fn events(&self, query: &ListQuery) -> ClusterResult<ObjectList<Event>>;
    /// Parsed log entries of one container, oldest first. A container that never started or
    /// never crashed (for `previous`) gives an empty answer, not an error.
    async fn pod_logs(&self, query: &LogQuery) -> ClusterResult<LogLines>;
    /// Service metrics, where the backend has a metrics source; empty otherwise.
    async fn service_metrics(&self, namespace: Option<&str>) -> ClusterResult<Vec<ServiceMetrics>>;
    /// Makes (or, with `dry_run`, validates) one change to a Deployment and returns the
    /// Deployment as stored (or as it would be). Backends that do not write refuse with
    /// [`ClusterError::ReadOnly`].
    async fn write_deployment(&self, write: &DeploymentWrite) -> ClusterResult<Deployment> {
        Err(ClusterError::ReadOnly(format!(
            "the {} backend does not change the cluster (deployment {}/{} left as it is)",
            self.info().kind,
            write.namespace,
            write.name
        )))
    }

    /// The same cluster source through another kubeconfig context (a tool's `context`
    /// argument). Backends without contexts refuse.
    async fn for_context(&self, context: &str) -> ClusterResult<Arc<dyn ClusterBackend>> {
        Err(ClusterError::Invalid(format!(
            "context {context:?}: the {} backend has no kubeconfig contexts; `context` needs --backend kube with a kubeconfig",
            self.info().kind
        )))
    }
}

/// Annotation that records who made a rollout (ours; Kubernetes has no such field).
pub const DEPLOYED_BY_ANNOTATION: &str = "sre-mcp/deployed-by";
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The pod-template annotation `kubectl rollout restart` sets (the same one, so either tool
/// reads the other's restarts).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The field manager of every write this server makes (server-side apply / patch).
pub const FIELD_MANAGER: &str = "sre-mcp";
