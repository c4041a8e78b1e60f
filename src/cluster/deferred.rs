//! A backend that is built on a background thread: the server answers `initialize` and
//! `tools/list` at once, and the first call that needs the cluster waits for it.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use tokio::sync::watch;

use super::{
    BackendInfo, ClusterBackend, ClusterError, ClusterResult, DeploymentWrite, ListQuery, LogLines,
    LogQuery, ObjectList, ServiceMetrics,
};

type Loaded = Result<Arc<dyn ClusterBackend>, String>;

pub struct DeferredBackend {
    kind: &'static str,
    ready: watch::Receiver<bool>,
    backend: Arc<OnceLock<Loaded>>,
    /// Why this backend was chosen, for `system://health`.
    reason: Option<String>,
}

impl DeferredBackend {
    /// Starts `load` on its own thread.
    pub fn start<F>(kind: &'static str, load: F) -> DeferredBackend
    where
        F: FnOnce() -> anyhow::Result<Arc<dyn ClusterBackend>> + Send + 'static,
    {
        let (sender, ready) = watch::channel(false);
        let backend: Arc<OnceLock<Loaded>> = Arc::new(OnceLock::new());
        let slot = backend.clone();
        std::thread::Builder::new()
            .name(format!("{kind}-backend"))
            .spawn(move || {
                crate::util::thread::lower_thread_priority();
                let started = std::time::Instant::now();
                let loaded = load().map_err(|e| format!("{e:#}"));
                match &loaded {
                    Ok(b) => tracing::info!(backend = %b.info().description, ms = started.elapsed().as_millis() as u64, "cluster backend ready"),
                    Err(e) => tracing::error!("cluster backend failed to load: {e}"),
                }
                let _ = slot.set(loaded);
                let _ = sender.send(true);
            })
            .expect("spawn the backend loader");
        DeferredBackend {
            kind,
            ready,
            backend,
            reason: None,
        }
    }

    /// Starts `load` as a task on the current Tokio runtime (a client that must live on the
    /// runtime, like kube's, is built there).
    pub fn start_task<F>(kind: &'static str, load: F) -> DeferredBackend
    where
        F: Future<Output = anyhow::Result<Arc<dyn ClusterBackend>>> + Send + 'static,
    {
        let (sender, ready) = watch::channel(false);
        let backend: Arc<OnceLock<Loaded>> = Arc::new(OnceLock::new());
        let slot = backend.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let loaded = load.await.map_err(|e| format!("{e:#}"));
            match &loaded {
                Ok(b) => {
                    tracing::info!(backend = %b.info().description, ms = started.elapsed().as_millis() as u64, "cluster backend ready")
                }
                Err(e) => tracing::error!("cluster backend failed to load: {e}"),
            }
            let _ = slot.set(loaded);
            let _ = sender.send(true);
        });
        DeferredBackend {
            kind,
            ready,
            backend,
            reason: None,
        }
    }

    /// Records why this backend was chosen; its `info()` says it.
    pub fn because(mut self, reason: String) -> DeferredBackend {
        self.reason = Some(reason);
        self
    }

    async fn get(&self) -> ClusterResult<Arc<dyn ClusterBackend>> {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
        match self.backend.get() {
            Some(Ok(b)) => Ok(b.clone()),
            Some(Err(e)) => Err(ClusterError::Unavailable {
                message: format!("the {} cluster backend failed to load: {e}", self.kind),
                cause: None,
            }),
            None => Err(ClusterError::Unavailable {
                message: format!("the {} cluster backend loader stopped", self.kind),
                cause: None,
            }),
        }
    }
}

#[async_trait]
impl ClusterBackend for DeferredBackend {
    fn info(&self) -> BackendInfo {
        let info = match self.backend.get() {
            Some(Ok(b)) => b.info(),
            Some(Err(e)) => BackendInfo {
                kind: self.kind,
                description: format!("failed to load: {e}"),
                context: None,
                read_only: true,
                metrics: "unknown until the backend has loaded".into(),
                selected_because: None,
            },
            None => BackendInfo {
                kind: self.kind,
                description: "loading".into(),
                context: None,
                read_only: true,
                metrics: "unknown until the backend has loaded".into(),
                selected_because: None,
            },
        };
        BackendInfo {
            selected_because: self.reason.clone().or(info.selected_because),
            ..info
        }
    }

    async fn namespace(&self, name: &str) -> ClusterResult<Namespace> {
        self.get().await?.namespace(name).await
    }

    async fn namespaces(&self, query: &ListQuery) -> ClusterResult<ObjectList<Namespace>> {
        self.get().await?.namespaces(query).await
    }

    async fn nodes(&self, query: &ListQuery) -> ClusterResult<ObjectList<Node>> {
        self.get().await?.nodes(query).await
    }

    async fn deployment(&self, namespace: &str, name: &str) -> ClusterResult<Deployment> {
        self.get().await?.deployment(namespace, name).await
    }

    async fn deployments(&self, query: &ListQuery) -> ClusterResult<ObjectList<Deployment>> {
        self.get().await?.deployments(query).await
    }

    async fn replica_sets(&self, query: &ListQuery) -> ClusterResult<ObjectList<ReplicaSet>> {
        self.get().await?.replica_sets(query).await
    }

    async fn pod(&self, namespace: &str, name: &str) -> ClusterResult<Pod> {
        self.get().await?.pod(namespace, name).await
    }

    async fn pods(&self, query: &ListQuery) -> ClusterResult<ObjectList<Pod>> {
        self.get().await?.pods(query).await
    }

    async fn events(&self, query: &ListQuery) -> ClusterResult<ObjectList<Event>> {
        self.get().await?.events(query).await
    }

    async fn pod_logs(&self, query: &LogQuery) -> ClusterResult<LogLines> {
        self.get().await?.pod_logs(query).await
    }

    async fn service_metrics(&self, namespace: Option<&str>) -> ClusterResult<Vec<ServiceMetrics>> {
        self.get().await?.service_metrics(namespace).await
    }

    async fn write_deployment(&self, write: &DeploymentWrite) -> ClusterResult<Deployment> {
        self.get().await?.write_deployment(write).await
    }

    async fn for_context(&self, context: &str) -> ClusterResult<Arc<dyn ClusterBackend>> {
        self.get().await?.for_context(context).await
    }
}
