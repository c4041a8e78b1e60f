//! The Kubernetes backend: every read of [`ClusterBackend`] through a real API server with
//! kube-rs, typed with k8s-openapi. Selectors, page sizes and log parameters (`tailLines`,
//! `sinceSeconds`, `previous`, `limitBytes`) go to the API server; logs are read as a stream
//! and parsed line by line, so no whole log text is held. Every request is bounded by
//! `--api-timeout`, and a `--namespaces` allowlist is checked before any request is made. The one
//! write, a Deployment patch, is in [`write`].

pub mod config;
pub mod error;
mod write;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;

use self::config::{KubeSettings, KubeSource};
use self::error::Request;
use super::prometheus::Scope;
use super::{
    BackendInfo, ClusterBackend, ClusterError, ClusterResult, DeploymentWrite, ListQuery, LogLines,
    LogQuery, ObjectList, ServiceMetrics,
};
use crate::util::logs::TimestampedLogParser;

/// Page size when a caller asks for every match: the API server is asked page by page.
const PAGE: u32 = 500;
/// Bytes of one container's log read when the caller sets neither a tail nor a byte limit.
pub const DEFAULT_LOG_BYTES: usize = 16 << 20;
/// Extra raw lines asked for beyond a tail of N entries (at most N more), so that entries
/// spanning several lines (stack traces) still give N whole entries.
const TAIL_SLACK: usize = 1000;
/// Seconds added to `sinceSeconds`: the request's own latency must not lose the first line.
const SINCE_MARGIN_SECS: i64 = 5;
/// Names listed for "did you mean" after a 404.
const NEARBY_NAMES: u32 = 500;

/// A Kubernetes API server, through one kubeconfig context (or the in-cluster account).
pub struct KubeBackend {
    client: kube::Client,
    context: String,
    server: String,
    settings: KubeSettings,
    /// Backends for the other contexts of the same kubeconfig, built on first use and shared
    /// by all of them.
    others: Arc<tokio::sync::Mutex<HashMap<String, Arc<KubeBackend>>>>,
}

impl KubeBackend {
    /// Builds the client for the configured context. Reads the kubeconfig (and runs no
    /// request): a wrong context or an unreadable file fails here, an unreachable server
    /// fails each call later, with a bounded error.
    pub async fn connect(settings: KubeSettings) -> anyhow::Result<KubeBackend> {
        let (mut config, context) = match &settings.source {
            KubeSource::Kubeconfig(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
                let names: Vec<String> =
                    kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
                let context = match settings
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone())
                {
                    Some(context) if names.contains(&context) => context,
                    Some(context) => anyhow::bail!(
                        "context {context:?} is not in kubeconfig {}; its contexts: {}",
                        path.display(),
                        names.join(", ")
                    ),
                    None => anyhow::bail!(
                        "kubeconfig {} has no current-context; pass --context (its contexts: {})",
                        path.display(),
                        names.join(", ")
                    ),
                };
                let options = KubeConfigOptions {
                    context: Some(context.clone()),
                    ..KubeConfigOptions::default()
                };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "loading context {context:?} from kubeconfig {}: {e}",
                            path.display()
                        )
                    })?;
                (config, context)
            }
            KubeSource::InCluster => (
                kube::Config::incluster()
                    .map_err(|e| anyhow::anyhow!("loading the in-cluster configuration: {e}"))?,
                "in-cluster".to_string(),
            ),
        };
        config.connect_timeout = Some(settings.api_timeout);
        config.read_timeout = Some(settings.api_timeout);
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config)
            .map_err(|e| anyhow::anyhow!("creating the Kubernetes client: {e}"))?;
        Ok(KubeBackend::with_client(client, context, server, settings))
    }

    /// A backend over a client built elsewhere (tests use kube's mock service).
    pub fn with_client(
        client: kube::Client,
        context: String,
        server: String,
        settings: KubeSettings,
    ) -> KubeBackend {
        KubeBackend {
            client,
            context,
            server,
            settings,
            others: Arc::default(),
        }
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    /// Refuses a namespace outside `--namespaces`, before any request.
    fn check_namespace(&self, namespace: &str) -> ClusterResult<()> {
        match &self.settings.namespaces {
            Some(allowed) if !allowed.iter().any(|a| a == namespace) => {
                Err(ClusterError::NotAllowed {
                    namespace: namespace.to_string(),
                    allowed: allowed.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    fn request<'a>(
        &'a self,
        verb: &'static str,
        resource: &'static str,
        kind: &'static str,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            verb,
            resource,
            kind,
            namespace,
            name,
            context: &self.context,
        }
    }

    /// Runs one API request within `--api-timeout`.
    async fn bounded<T>(
        &self,
        request: &Request<'_>,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> ClusterResult<T> {
        match tokio::time::timeout(self.settings.api_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(error::from_kube(request, e)),
            Err(_) => Err(error::timeout(request, self.settings.api_timeout)),
        }
    }

    /// Gets one object; a 404 lists the names that do exist, for "did you mean".
    async fn get<K>(&self, api: Api<K>, name: &str, request: Request<'_>) -> ClusterResult<K>
    where
        K: Clone + DeserializeOwned + Debug,
    {
        match self.bounded(&request, api.get(name)).await {
            Err(ClusterError::NotFound {
                kind,
                name,
                namespace,
                ..
            }) => {
                let list = ListParams::default().limit(NEARBY_NAMES);
                let listing = Request {
                    verb: "list",
                    name: None,
                    ..request
                };
                let existing = self
                    .bounded(&listing, api.list_metadata(&list))
                    .await
                    .ok()
                    .map(|l| {
                        l.items
                            .into_iter()
                            .filter_map(|o| o.metadata.name)
                            .collect::<Vec<_>>()
                    });
                Err(ClusterError::NotFound {
                    kind,
                    name,
                    namespace,
                    existing,
                })
            }
            other => other,
        }
    }

    /// Lists one page, or every page when the query sets no limit.
    async fn list_pages<K>(
        &self,
        api: &Api<K>,
        query: &ListQuery,
        request: &Request<'_>,
    ) -> ClusterResult<ObjectList<K>>
    where
        K: Clone + DeserializeOwned + Debug,
    {
        let mut params = ListParams {
            label_selector: query.labels.as_ref().map(ToString::to_string),
            field_selector: query.fields.as_ref().map(ToString::to_string),
            continue_token: query.continue_token.clone(),
            ..ListParams::default()
        };
        match query.limit {
            Some(limit) => {
                params.limit = Some(u32::try_from(limit.max(1)).unwrap_or(u32::MAX));
                let page = self.bounded(request, api.list(&params)).await?;
                Ok(ObjectList {
                    continue_token: page.metadata.continue_.filter(|t| !t.is_empty()),
                    remaining: page
                        .metadata
                        .remaining_item_count
                        .and_then(|r| usize::try_from(r).ok()),
                    items: page.items,
                })
            }
            None => {
                let mut items = Vec::new();
                params.limit = Some(PAGE);
                loop {
                    let page = self.bounded(request, api.list(&params)).await?;
                    items.extend(page.items);
                    match page.metadata.continue_.filter(|t| !t.is_empty()) {
                        Some(token) => params.continue_token = Some(token),
                        None => break,
                    }
                }
                Ok(ObjectList {
                    items,
                    continue_token: None,
                    remaining: Some(0),
                })
            }
        }
    }

    /// Lists a namespaced kind: in one namespace, in every namespace, or — with an allowlist
    /// and no namespace — in each allowed namespace in turn.
    async fn list_namespaced<K>(
        &self,
        query: &ListQuery,
        resource: &'static str,
        kind: &'static str,
    ) -> ClusterResult<ObjectList<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        match (&query.namespace, &self.settings.namespaces) {
            (Some(namespace), _) => {
                self.check_namespace(namespace)?;
                let api = Api::<K>::namespaced(self.client.clone(), namespace);
                let request = self.request("list", resource, kind, Some(namespace), None);
                self.list_pages(&api, query, &request).await
            }
            (None, None) => {
                let api = Api::<K>::all(self.client.clone());
                let request = self.request("list", resource, kind, None, None);
                self.list_pages(&api, query, &request).await
            }
            (None, Some(allowed)) => {
                // No continue token spans namespaces: each is listed up to the limit left.
                let mut items = Vec::new();
                let mut more = false;
                for namespace in allowed {
                    let left = query.limit.map(|l| l.saturating_sub(items.len()));
                    if left == Some(0) {
                        more = true;
                        break;
                    }
                    let page_query = ListQuery {
                        namespace: Some(namespace.clone()),
                        limit: left,
                        continue_token: None,
                        ..query.clone()
                    };
                    let api = Api::<K>::namespaced(self.client.clone(), namespace);
                    let request = self.request("list", resource, kind, Some(namespace), None);
                    let page = self.list_pages(&api, &page_query, &request).await?;
                    more |= page.continue_token.is_some();
                    items.extend(page.items);
                }
                Ok(ObjectList {
                    items,
                    continue_token: None,
                    remaining: (!more).then_some(0),
                })
            }
        }
    }
}

#[async_trait]
impl ClusterBackend for KubeBackend {
    fn info(&self) -> BackendInfo {
        let scope = match &self.settings.namespaces {
            Some(allowed) => format!(", namespaces {}", allowed.join(",")),
            None => String::new(),
        };
        BackendInfo {
            kind: "kubernetes",
            description: format!(
                "Kubernetes API server {} (context {}{scope})",
                self.server.trim_end_matches('/'),
                self.context
            ),
            context: Some(self.context.clone()),
            read_only: false,
            metrics: match &self.settings.prometheus {
                Some(prometheus) => prometheus.describe(),
                None => "none (start with --prometheus URL for error rate, latency and alerts; they read unknown)".into(),
            },
            selected_because: None,
        }
    }

    async fn namespace(&self, name: &str) -> ClusterResult<Namespace> {
        self.check_namespace(name)?;
        let api = Api::<Namespace>::all(self.client.clone());
        let request = self.request("get", "namespaces", "namespace", None, Some(name));
        self.get(api, name, request).await
    }

    async fn namespaces(&self, query: &ListQuery) -> ClusterResult<ObjectList<Namespace>> {
        if let Some(allowed) = &self.settings.namespaces {
            // Only the allowed ones, each read by name: a user allowed some namespaces may
            // well not be allowed to list them all.
            let mut items = Vec::new();
            for name in allowed {
                match self.namespace(name).await {
                    Ok(ns) => items.push(ns),
                    Err(ClusterError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(labels) = &query.labels {
                items.retain(|ns| labels.matches(ns.metadata.labels.as_ref()));
            }
            return Ok(ObjectList {
                items,
                continue_token: None,
                remaining: Some(0),
            });
        }
        let api = Api::<Namespace>::all(self.client.clone());
        let request = self.request("list", "namespaces", "namespace", None, None);
        self.list_pages(&api, query, &request).await
    }

    async fn nodes(&self, query: &ListQuery) -> ClusterResult<ObjectList<Node>> {
        let api = Api::<Node>::all(self.client.clone());
        let request = self.request("list", "nodes", "node", None, None);
        self.list_pages(&api, query, &request).await
    }

    async fn deployment(&self, namespace: &str, name: &str) -> ClusterResult<Deployment> {
        self.check_namespace(namespace)?;
        let api = Api::<Deployment>::namespaced(self.client.clone(), namespace);
        let request = self.request(
            "get",
            "deployments",
            "deployment",
            Some(namespace),
            Some(name),
        );
        self.get(api, name, request).await
    }

    async fn deployments(&self, query: &ListQuery) -> ClusterResult<ObjectList<Deployment>> {
        self.list_namespaced(query, "deployments", "deployment")
            .await
    }

    async fn replica_sets(&self, query: &ListQuery) -> ClusterResult<ObjectList<ReplicaSet>> {
        self.list_namespaced(query, "replicasets", "replicaset")
            .await
    }

    async fn pod(&self, namespace: &str, name: &str) -> ClusterResult<Pod> {
        self.check_namespace(namespace)?;
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let request = self.request("get", "pods", "pod", Some(namespace), Some(name));
        self.get(api, name, request).await
    }

    async fn pods(&self, query: &ListQuery) -> ClusterResult<ObjectList<Pod>> {
        self.list_namespaced(query, "pods", "pod").await
    }

    async fn events(&self, query: &ListQuery) -> ClusterResult<ObjectList<Event>> {
        self.list_namespaced(query, "events", "event").await
    }

    async fn pod_logs(&self, query: &LogQuery) -> ClusterResult<LogLines> {
        self.check_namespace(&query.namespace)?;
        let api = Api::<Pod>::namespaced(self.client.clone(), &query.namespace);
        let request = self.request(
            "get",
            "pods/log",
            "pod",
            Some(&query.namespace),
            Some(&query.pod),
        );
        let limit_bytes = match (query.limit_bytes, query.tail_lines) {
            (Some(limit), _) => Some(limit),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_LOG_BYTES),
        };
        let params = LogParams {
            container: Some(query.container.clone()),
            previous: query.previous,
            // The API counts raw lines; a tail counts entries (a stack trace is one). Ask for
            // more lines and keep the newest entries below.
            tail_lines: query
                .tail_lines
                .map(|t| t.saturating_add(t.min(TAIL_SLACK)).min(i64::MAX as usize) as i64),
            // Whole seconds with a margin for the time the request takes (the kubelet counts
            // from its own clock); lines before `since` are dropped below.
            since_seconds: query.since.map(|since| {
                let ago = jiff::Timestamp::now().duration_since(since);
                ago.as_secs().max(0) + SINCE_MARGIN_SECS
            }),
            limit_bytes: limit_bytes.map(|l| l.min(i64::MAX as usize) as i64),
            timestamps: true,
            ..LogParams::default()
        };
        let stream = match self
            .bounded(&request, api.log_stream(&query.pod, &params))
            .await
        {
            Ok(stream) => stream,
            // No previous instance, or a container that has not started: no lines.
            Err(ClusterError::Invalid(message))
                if message.contains("previous terminated container")
                    || message.contains("waiting to start")
                    || message.contains("ContainerCreating") =>
            {
                return Ok(LogLines::read(Vec::new(), false));
            }
            // A container the pod does not have: not found, with the ones it has.
            Err(ClusterError::Invalid(message)) if message.contains("is not valid for pod") => {
                let existing = self
                    .pod(&query.namespace, &query.pod)
                    .await
                    .ok()
                    .and_then(|pod| pod.spec)
                    .map(|spec| {
                        spec.init_containers
                            .iter()
                            .flatten()
                            .chain(&spec.containers)
                            .map(|c| c.name.clone())
                            .collect()
                    });
                return Err(ClusterError::NotFound {
                    kind: "container",
                    name: query.container.clone(),
                    namespace: Some(query.namespace.clone()),
                    existing,
                });
            }
            Err(e) => return Err(e),
        };
        let mut parser = TimestampedLogParser::default();
        let mut bytes = 0usize;
        let mut lines = stream.lines();
        // Each line is parsed once the next one arrives: the kubelet cuts its answer at
        // `limitBytes` exactly, mid-line, and that last fragment is no entry.
        let mut pending: Option<String> = None;
        let read = async {
            while let Some(line) = lines.next().await {
                let line = line.map_err(|e| ClusterError::Unavailable {
                    message: format!(
                        "reading the log of {}/{} ({}) broke off: {e}",
                        query.namespace, query.pod, query.container
                    ),
                    cause: Some(Box::new(e)),
                })?;
                bytes += line.len() + 1;
                if let Some(previous) = pending.replace(line) {
                    parser.push_line(&previous);
                }
            }
            Ok::<(), ClusterError>(())
        };
        match tokio::time::timeout(self.settings.api_timeout * 3, read).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(error::timeout(&request, self.settings.api_timeout * 3));
            }
        }
        // Counting a newline after every line, a last line that had none makes the count
        // pass the limit by one: that line was cut.
        let cut_line = limit_bytes.is_some_and(|limit| bytes > limit);
        if let Some(last) = pending.take()
            && !cut_line
        {
            parser.push_line(&last);
        }
        let mut entries = parser.finish();
        if let Some(since) = query.since {
            entries.retain(|e| e.timestamp >= since);
        }
        if let Some(tail) = query.tail_lines {
            let excess = entries.len().saturating_sub(tail);
            entries.drain(..excess);
        }
        let cut_by_bytes = limit_bytes.is_some_and(|limit| bytes >= limit);
        Ok(LogLines::read(entries, cut_by_bytes))
    }

    async fn service_metrics(&self, namespace: Option<&str>) -> ClusterResult<Vec<ServiceMetrics>> {
        // No metrics source configured: callers report "unknown", never a made-up number.
        let Some(prometheus) = &self.settings.prometheus else {
            return Ok(Vec::new());
        };
        let scope = match (namespace, &self.settings.namespaces) {
            (Some(namespace), _) => {
                self.check_namespace(namespace)?;
                Scope::Namespace(namespace.to_string())
            }
            (None, Some(allowed)) => Scope::Namespaces(allowed.clone()),
            (None, None) => Scope::All,
        };
        prometheus.service_metrics(&scope).await
    }

    async fn write_deployment(&self, write: &DeploymentWrite) -> ClusterResult<Deployment> {
        self.patch_deployment(write).await
    }

    async fn for_context(&self, context: &str) -> ClusterResult<Arc<dyn ClusterBackend>> {
        if !matches!(self.settings.source, KubeSource::Kubeconfig(_)) {
            return Err(ClusterError::Invalid(format!(
                "context {context:?}: the server runs with the in-cluster service account, which has no other contexts"
            )));
        }
        let mut others = self.others.lock().await;
        if let Some(backend) = others.get(context) {
            return Ok(backend.clone());
        }
        let settings = KubeSettings {
            context: Some(context.to_string()),
            // --prometheus watches the cluster of the configured context, not this one.
            prometheus: None,
            ..self.settings.clone()
        };
        let backend = KubeBackend::connect(settings)
            .await
            .map_err(|e| ClusterError::Invalid(format!("{e:#}")))?;
        let backend = Arc::new(KubeBackend {
            others: self.others.clone(),
            ..backend
        });
        others.insert(context.to_string(), backend.clone());
        Ok(backend)
    }
}
