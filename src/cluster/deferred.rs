//! A backend that is built on a background thread: the server answers `initialize` and
//! `tools/list` at once, and the first call that needs the cluster waits for it.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use tokio::sync::watch;

use super::{BackendInfo, ClusterBackend, ClusterError, ClusterResult, LogStream, ServiceMetrics};
use crate::logs::LogEntry;

type Loaded = Result<Arc<dyn ClusterBackend>, String>;

/// Background loading must not compete with answering requests on a small machine: this
/// thread runs at a lower scheduling priority (Linux schedules threads individually).
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's id changes only its nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

pub struct DeferredBackend {
    kind: &'static str,
    ready: watch::Receiver<bool>,
    backend: Arc<OnceLock<Loaded>>,
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
                lower_thread_priority();
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
        }
    }

    async fn get(&self) -> ClusterResult<Arc<dyn ClusterBackend>> {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
        match self.backend.get() {
            Some(Ok(b)) => Ok(b.clone()),
            Some(Err(e)) => Err(ClusterError::Backend(anyhow::anyhow!(
                "the {} cluster backend failed to load: {e}",
                self.kind
            ))),
            None => Err(ClusterError::Backend(anyhow::anyhow!(
                "the {} cluster backend loader stopped",
                self.kind
            ))),
        }
    }
}

#[async_trait]
impl ClusterBackend for DeferredBackend {
    fn info(&self) -> BackendInfo {
        match self.backend.get() {
            Some(Ok(b)) => b.info(),
            Some(Err(e)) => BackendInfo {
                kind: self.kind,
                description: format!("failed to load: {e}"),
                read_only: true,
            },
            None => BackendInfo {
                kind: self.kind,
                description: "loading".into(),
                read_only: true,
            },
        }
    }

    async fn namespaces(&self) -> ClusterResult<Vec<Namespace>> {
        self.get().await?.namespaces().await
    }

    async fn nodes(&self) -> ClusterResult<Vec<Node>> {
        self.get().await?.nodes().await
    }

    async fn deployments(&self, namespace: Option<&str>) -> ClusterResult<Vec<Deployment>> {
        self.get().await?.deployments(namespace).await
    }

    async fn replica_sets(&self, namespace: Option<&str>) -> ClusterResult<Vec<ReplicaSet>> {
        self.get().await?.replica_sets(namespace).await
    }

    async fn pods(&self, namespace: Option<&str>) -> ClusterResult<Vec<Pod>> {
        self.get().await?.pods(namespace).await
    }

    async fn events(&self, namespace: Option<&str>) -> ClusterResult<Vec<Event>> {
        self.get().await?.events(namespace).await
    }

    async fn pod_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        stream: LogStream,
    ) -> ClusterResult<Arc<Vec<LogEntry>>> {
        self.get()
            .await?
            .pod_logs(namespace, pod, container, stream)
            .await
    }

    async fn service_metrics(&self, namespace: Option<&str>) -> ClusterResult<Vec<ServiceMetrics>> {
        self.get().await?.service_metrics(namespace).await
    }
}
