//! The cluster model: one async trait that every backend (the embedded demo cluster, a real
//! Kubernetes API server) implements, so tools never know which backend answers.
//!
//! Objects are k8s-openapi types wherever Kubernetes has one; service metrics and parsed log
//! entries are our own types because Kubernetes has none.

pub mod deferred;
pub mod demo;
pub mod view;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use serde::{Deserialize, Serialize};

use crate::logs::LogEntry;

/// Errors a backend reports. `NotFound` carries what exists so tools can suggest names.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{kind} {name:?} not found{}", in_namespace(.namespace))]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: Option<String>,
    },
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

fn in_namespace(namespace: &Option<String>) -> String {
    namespace
        .as_ref()
        .map(|ns| format!(" in namespace {ns:?}"))
        .unwrap_or_default()
}

pub type ClusterResult<T> = Result<T, ClusterError>;

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

/// Golden signals for one service, as a metrics system would report them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceMetrics {
    pub service: String,
    pub namespace: String,
    pub status: HealthStatus,
    /// Fraction of requests failing, 0.0–1.0.
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rps: f64,
    pub alerts: Vec<Alert>,
}

/// Which log stream of a container to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Current,
    /// The previous (crashed) instance of the container, as `kubectl logs --previous`.
    Previous,
}

/// Facts about the backend itself, for `system://health`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    /// "demo" or "kubernetes".
    pub kind: &'static str,
    /// Human-readable description: fixture set, or API server URL and context.
    pub description: String,
    pub read_only: bool,
}

/// One cluster, read-only view. Namespaced listings take `None` for all namespaces.
#[async_trait]
pub trait ClusterBackend: Send + Sync {
    fn info(&self) -> BackendInfo;
    async fn namespaces(&self) -> ClusterResult<Vec<Namespace>>;
    async fn nodes(&self) -> ClusterResult<Vec<Node>>;
    async fn deployments(&self, namespace: Option<&str>) -> ClusterResult<Vec<Deployment>>;
    /// ReplicaSets carry the rollout history (revision and change-cause annotations).
    async fn replica_sets(&self, namespace: Option<&str>) -> ClusterResult<Vec<ReplicaSet>>;
    async fn pods(&self, namespace: Option<&str>) -> ClusterResult<Vec<Pod>>;
    async fn events(&self, namespace: Option<&str>) -> ClusterResult<Vec<Event>>;
    /// Parsed log entries of one container, oldest first.
    async fn pod_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        stream: LogStream,
    ) -> ClusterResult<Arc<Vec<LogEntry>>>;
    /// Service metrics, where the backend has a metrics source; empty otherwise.
    async fn service_metrics(&self, namespace: Option<&str>) -> ClusterResult<Vec<ServiceMetrics>>;
}

/// Annotation that records who made a rollout (ours; Kubernetes has no such field).
pub const DEPLOYED_BY_ANNOTATION: &str = "sre-mcp/deployed-by";
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
