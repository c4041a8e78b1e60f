//! The kube backend's test harness: the real API server that `tests/k8s/testenv.sh` starts (the
//! test command starts it once per run and names its kubeconfig in `SRE_MCP_TEST_KUBECONFIG`),
//! a small HTTPS "kubelet" that serves container logs (the API server proxies
//! `pods/NAME/log` to it), and seeding of incidents: Deployments whose ReplicaSet history the
//! controller-manager makes, pods bound to the test node and patched to the states a kubelet
//! would report, warning events attached to their objects.
#![allow(dead_code)]

pub mod demo_seed;
pub mod prometheus;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set by the test command: the kubeconfig of the running test API server.
pub const KUBECONFIG_VAR: &str = "SRE_MCP_TEST_KUBECONFIG";
/// Set (to 1) by CI: tests that need the API server fail instead of skipping.
pub const REQUIRE_VAR: &str = "SRE_MCP_REQUIRE_K8S";

/// The test API server's kubeconfig, or `None` with one line saying what was skipped.
pub fn kubeconfig(what: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from)
        && path.is_file()
    {
        return Some(path);
    }
    let line = format!(
        "skipped: {what} needs the test Kubernetes API server ({KUBECONFIG_VAR} unset; `bash tests/run-all.sh` builds and starts it with tests/k8s/testenv.sh)"
    );
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{line}; {REQUIRE_VAR}=1 requires it");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    None
}

/// The PKI folder beside the kubeconfig (the kubelet certificate is there).
pub fn pki_dir(kubeconfig: &Path) -> PathBuf {
    kubeconfig.parent().unwrap().join("pki")
}

pub async fn client(kubeconfig: &Path, context: &str) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).unwrap(),
        &KubeConfigOptions {
            context: Some(context.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A namespace of its own for one test, named `<prefix>-<pid>`. (Deleting one is no way to
/// start clean: with no kubelet to confirm, bound pods stay Terminating and so does their
/// namespace. The test command starts the API server with empty storage instead.)
pub async fn fresh_namespace(client: &kube::Client, prefix: &str) -> String {
    let api = Api::<Namespace>::all(client.clone());
    let name = &format!("{prefix}-{}", std::process::id());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": "payments-sre"}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    name.to_string()
}

type LogKey = (String, String, String, bool);
/// Timestamped lines of one container instance's log.
type LogText = Vec<(Timestamp, String)>;

/// Container logs served the way a kubelet serves them, and the queries it received.
#[derive(Clone, Default)]
pub struct Kubelet {
    pub port: u16,
    logs: Arc<Mutex<HashMap<LogKey, LogText>>>,
    /// Log requests refused with 400 and the kubelet's message, as a kubelet refuses a
    /// container that is waiting to start or has no previous instance.
    refusals: Arc<Mutex<HashMap<LogKey, String>>>,
    /// Query strings of every `containerLogs` request, for checking what was pushed down.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Kubelet {
    /// Starts serving on an ephemeral port with the test PKI's kubelet certificate.
    pub async fn start(pki: &Path) -> Kubelet {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.join("kubelet.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(pki.join("kubelet.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kubelet = Kubelet {
            port: listener.local_addr().unwrap().port(),
            ..Kubelet::default()
        };
        let served = kubelet.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = served.answer(&mut tls).await;
                    }
                });
            }
        });
        kubelet
    }

    /// Sets the lines of one container's log (current or previous instance).
    pub fn set_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
        lines: Vec<(Timestamp, String)>,
    ) {
        self.logs.lock().unwrap().insert(
            (namespace.into(), pod.into(), container.into(), previous),
            lines,
        );
    }

    /// Refuses one container's log (current or previous instance) with 400 and `message`, the
    /// way a kubelet answers for a container with no such log (the API server passes the message
    /// on as a BadRequest).
    pub fn refuse_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
        message: &str,
    ) {
        self.refusals.lock().unwrap().insert(
            (namespace.into(), pod.into(), container.into(), previous),
            message.into(),
        );
    }

    async fn answer<S>(&self, stream: &mut S) -> std::io::Result<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            request.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&request);
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: HashMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (status, body) = match parts.as_slice() {
            ["containerLogs", namespace, pod, container] => {
                self.requests.lock().unwrap().push(query.to_string());
                let previous = params.get("previous") == Some(&"true");
                let key = (
                    namespace.to_string(),
                    pod.to_string(),
                    container.to_string(),
                    previous,
                );
                let refusal = self.refusals.lock().unwrap().get(&key).cloned();
                match (refusal, self.logs.lock().unwrap().get(&key)) {
                    (Some(message), _) => ("400 Bad Request", message),
                    (None, Some(lines)) => ("200 OK", render(lines, &params)),
                    (None, None) => (
                        "404 Not Found",
                        format!("no log for {namespace}/{pod}/{container} previous={previous}"),
                    ),
                }
            }
            _ => ("404 Not Found", "not found".to_string()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    }
}

/// The kubelet's answer: `sinceSeconds`, then `tailLines`, then `limitBytes`, with timestamps
/// when asked.
fn render(lines: &[(Timestamp, String)], params: &HashMap<&str, &str>) -> String {
    let now = Timestamp::now();
    let since = params
        .get("sinceSeconds")
        .and_then(|s| s.parse::<i64>().ok())
        .map(|s| now - SignedDuration::from_secs(s));
    let mut kept: Vec<&(Timestamp, String)> = lines
        .iter()
        .filter(|(t, _)| since.is_none_or(|s| *t >= s))
        .collect();
    if let Some(tail) = params
        .get("tailLines")
        .and_then(|t| t.parse::<usize>().ok())
    {
        kept = kept.split_off(kept.len().saturating_sub(tail));
    }
    let timestamps = params.get("timestamps") == Some(&"true");
    let mut out = String::new();
    for (t, line) in kept {
        if timestamps {
            out.push_str(&format!("{} ", t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ")));
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(limit) = params
        .get("limitBytes")
        .and_then(|l| l.parse::<usize>().ok())
        && out.len() > limit
    {
        let mut cut = limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Registers a Node whose kubelet is `kubelet` (its daemon endpoint), Ready.
pub async fn ensure_node(client: &kube::Client, kubelet: &Kubelet) -> String {
    let name = format!("test-node-{}", kubelet.port);
    let api = Api::<Node>::all(client.clone());
    if api.get_opt(&name).await.unwrap().is_none() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &node).await.unwrap();
    }
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "test kubelet", "lastHeartbeatTime": Timestamp::now().to_string(),
            "lastTransitionTime": Timestamp::now().to_string()}],
        "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    name
}

/// Waits until `check` returns `Some`, up to 60 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(60), check).await
}

/// Waits until `check` returns `Some`, up to `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Creates a Deployment at `images[0]` and rolls it through the rest, one revision each, as
/// `kubectl set image` would; the controller-manager makes the ReplicaSets. Returns the
/// ReplicaSets by revision (oldest first).
pub async fn deploy_revisions(
    client: &kube::Client,
    namespace: &str,
    app: &str,
    replicas: i32,
    images: &[(&str, &str)],
) -> Vec<ReplicaSet> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace);
    for (revision, (image, cause)) in images.iter().enumerate() {
        let body = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": app, "labels": {"app": app},
                "annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{
                        "name": app, "image": image,
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"memory": "512Mi"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                          "periodSeconds": 10},
                        // A secret by reference (never read) and a credential typed into
                        // the spec (masked on the way out).
                        "env": [
                            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef":
                                {"name": format!("{app}-db"), "key": "password"}}},
                            {"name": "DB_URL", "value": "postgres://app:spec-pw-4711@db:5432/app"}
                        ]
                    }]}
                }
            }
        });
        let params = PatchParams::apply("sre-mcp-tests").force();
        deployments
            .patch(app, &params, &Patch::Apply(&body))
            .await
            .unwrap();
        let want = (revision + 1).to_string();
        eventually(&format!("{app} revision {want}"), || {
            let replica_sets = replica_sets.clone();
            let want = want.clone();
            async move {
                let list = replica_sets
                    .list(&ListParams::default().labels(&format!("app={app}")))
                    .await
                    .ok()?;
                list.items
                    .iter()
                    .any(|rs| revision_of(rs) == want)
                    .then_some(())
            }
        })
        .await;
    }
    let mut all = replica_sets
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items;
    all.sort_by_key(|rs| revision_of(rs).parse::<u32>().unwrap_or(0));
    all
}

pub fn revision_of(rs: &ReplicaSet) -> String {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned()
        .unwrap_or_default()
}

/// The pods a ReplicaSet owns, once the controller has made `count` of them.
pub async fn pods_of(
    client: &kube::Client,
    namespace: &str,
    replica_set: &ReplicaSet,
    count: usize,
) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let uid = replica_set.metadata.uid.clone().unwrap();
    let mut found = eventually("the ReplicaSet's pods", || {
        let pods = pods.clone();
        let uid = uid.clone();
        async move {
            let owned: Vec<Pod> = pods
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid)
                })
                .collect();
            (owned.len() >= count).then_some(owned)
        }
    })
    .await;
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    found
}

/// Binds a pod to a node, as the scheduler would.
pub async fn bind(client: &kube::Client, namespace: &str, pod: &str, node: &str) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    });
    let _: Value = pods
        .create_subresource("binding", pod, &PostParams::default(), &binding)
        .await
        .unwrap();
}

/// Patches a pod's status the way a kubelet reports it.
pub async fn set_pod_status(client: &kube::Client, namespace: &str, pod: &str, status: Value) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    pods.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// A running, ready container status.
pub fn running(container: &str, image: &str, started: Timestamp) -> Value {
    json!({
        "phase": "Running",
        "podIP": "10.1.0.10",
        "startTime": started.to_string(),
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"},
                       {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": container, "image": image, "imageID": "", "ready": true,
            "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": started.to_string()}}}]
    })
}

/// A container in CrashLoopBackOff whose last instance was OOMKilled.
pub fn crash_looping_oom(container: &str, image: &str, restarts: i32, started: Timestamp) -> Value {
    json!({
        "phase": "Running",
        "startTime": started.to_string(),
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                       {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": container, "image": image, "imageID": "", "ready": false,
            "started": false, "restartCount": restarts,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off 5m0s restarting failed container={container}")}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                "startedAt": (Timestamp::now() - SignedDuration::from_secs(120)).to_string(),
                "finishedAt": (Timestamp::now() - SignedDuration::from_secs(60)).to_string()}}}]
    })
}

/// The object a seeded event is about.
pub struct Involved<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// A warning event about an object.
pub async fn warn_event(
    client: &kube::Client,
    namespace: &str,
    involved: Involved<'_>,
    reason: &str,
    message: &str,
    count: i32,
) {
    let Involved {
        kind,
        name: object,
        uid,
    } = involved;
    let events = Api::<Event>::namespaced(client.clone(), namespace);
    let now = Timestamp::now();
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": format!("{object}.{}", now.as_nanosecond())},
        "involvedObject": {"kind": kind, "name": object, "namespace": namespace, "uid": uid,
                           "apiVersion": "v1"},
        "reason": reason, "message": message, "type": "Warning", "count": count,
        "source": {"component": "kubelet"},
        "firstTimestamp": (now - SignedDuration::from_secs(600)).to_string(),
        "lastTimestamp": now.to_string()
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
}

/// Applies a Deployment `app` whose pod template has these `containers` (a JSON array), as
/// `kubectl apply` would, with `cause` as its change-cause. The controller-manager makes a new
/// ReplicaSet revision whenever the template differs from the last; see
/// [`replica_set_of_revision`] to wait for it.
pub async fn apply_deployment(
    client: &kube::Client,
    namespace: &str,
    app: &str,
    replicas: i32,
    containers: Value,
    cause: &str,
) -> Deployment {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "labels": {"app": app},
            "annotations": {"kubernetes.io/change-cause": cause}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": containers}
            }
        }
    });
    deployments
        .patch(
            app,
            &PatchParams::apply("sre-mcp-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap()
}

/// The ReplicaSets of `app` (by its `app` label), oldest revision first.
pub async fn replica_sets_of(client: &kube::Client, namespace: &str, app: &str) -> Vec<ReplicaSet> {
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace);
    let mut all = replica_sets
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items;
    all.sort_by_key(|rs| revision_of(rs).parse::<u32>().unwrap_or(0));
    all
}

/// The ReplicaSet of `app` at `revision`, once the controller-manager has made (or, for a
/// rollback, renumbered) it.
pub async fn replica_set_of_revision(
    client: &kube::Client,
    namespace: &str,
    app: &str,
    revision: u32,
) -> ReplicaSet {
    let want = revision.to_string();
    eventually(&format!("{app} revision {want}"), || {
        let want = want.clone();
        async move {
            replica_sets_of(client, namespace, app)
                .await
                .into_iter()
                .find(|rs| revision_of(rs) == want)
        }
    })
    .await
}

/// Lets `group` get and list Deployments and ReplicaSets in one namespace (what the README's
/// read-only role gives there), through a Role and RoleBinding of that namespace only.
pub async fn grant_deployment_reads(client: &kube::Client, namespace: &str, group: &str) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let name = format!("{group}-deployment-reads");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
                   "verbs": ["get", "list"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// `app` once the deployment controller has caught up with its spec and stopped updating its
/// status for a second (no kubelet runs, so no pod becomes ready and nothing changes after
/// that): a `resourceVersion` read now stays current until someone writes.
pub async fn settled_deployment(client: &kube::Client, namespace: &str, app: &str) -> Deployment {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    eventually(&format!("{app} to settle"), || {
        let deployments = deployments.clone();
        async move {
            let first = deployments.get(app).await.ok()?;
            if first.status.as_ref()?.observed_generation != first.metadata.generation {
                return None;
            }
            // The ReplicaSets' pods are made and counted within this (a rollout that cannot
            // finish, with no pod ever ready, stays as it is).
            tokio::time::sleep(Duration::from_secs(1)).await;
            let second = deployments.get(app).await.ok()?;
            (second.metadata.resource_version == first.metadata.resource_version).then_some(second)
        }
    })
    .await
}
