//! The embedded demo cluster, reproduced in the test API server so that the backend
//! conformance suite runs on the same data through the kube backend (`tests/conformance_kube.rs`).
//!
//! Everything is read from [`DemoCluster`] through the `ClusterBackend` trait (times already
//! resolved at load) and made the way a cluster makes it:
//!
//! - namespaces with their labels; nodes whose kubelet is the test [`Kubelet`] (only their
//!   addresses differ from the demo's: the API server must reach 127.0.0.1 to proxy logs);
//! - each Deployment rolled through its demo revisions in order, the controller-manager making
//!   every ReplicaSet and numbering it. The demo keeps only the newest revisions (payment-gateway
//!   4–7); the revisions before them are stood for by one placeholder ReplicaSet carrying the
//!   revision before the first, which the deployment controller adopts (so it numbers the first
//!   demo revision itself) and which is deleted once that revision exists. Revisions whose
//!   ReplicaSet ends with no pods are rolled at 0 replicas (the controller-manager writes at
//!   20 requests a second per controller; rolling every revision with pods would take several
//!   times as long); from the first ReplicaSet that keeps pods on, each rollout runs with the
//!   demo's replicas, its new pods patched Ready (no kubelet runs) so that the controller goes
//!   on. Only pods that stay are bound to a node (an unbound pod is deleted at once when the
//!   controller scales down; a bound one would stay Terminating without a kubelet), each to its
//!   demo pod's node, demo pod to real pod in the order the controller made them. A stalled rollout
//!   (recommendation-engine, search-indexer) stalls for real; search-indexer runs with a 1 s
//!   progress deadline until the controller marks it ProgressDeadlineExceeded, then gets the
//!   demo's deadline back (the condition stays, no progress follows);
//! - the pods' status patched to the demo pods' (phase, conditions, container states, restart
//!   counts, exit codes, times), demo names and uids in it replaced by the real ones;
//! - the demo events, re-targeted at the real objects, after the events the seeding itself
//!   made the controllers write are deleted;
//! - every container's current and previous log registered with the test kubelet under the
//!   real pod name, as `level=<LEVEL> logger=<logger> [trace_id=<id> ]<message>` lines with
//!   continuation lines indented (the kubelet prefixes the RFC 3339 timestamps); where the demo
//!   has no log, the kubelet refuses the way a real one does (a container waiting to start, no
//!   previous instance).
//!
//! What cannot be reproduced: creation timestamps (the API server sets them, so ReplicaSets and
//! pods are seconds old, not days), uids and generated names (pod-template hashes and pod
//! suffixes are the controller's), the old ReplicaSets' desired-replicas annotations (0: rolled
//! at 0 replicas), and the Deployments' own status times.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sre_mcp::cluster::demo::DemoCluster;
use sre_mcp::cluster::{ClusterBackend, ListQuery, LogQuery, REVISION_ANNOTATION, view};
use sre_mcp::util::logs::{LogEntry, parse_timestamped_log};

use super::Kubelet;

/// The field manager of everything the seeding applies.
const MANAGER: &str = "sre-mcp-demo-seed";
/// Revisions a ReplicaSet held before a rollback made it current again.
const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// Marks the placeholder ReplicaSet that stands for the revisions the demo trimmed.
const TRIMMED_ANNOTATION: &str = "sre-mcp.test/trimmed-history";
/// The progress deadline of a rollout the demo shows as ProgressDeadlineExceeded, until the
/// controller has marked it so.
const STALL_DEADLINE_SECONDS: i64 = 1;
const POLL: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(120);

/// What the seeding made.
pub struct DemoSeed {
    /// Demo names and uids and the real ones they became.
    pub renames: Renames,
    pub took: Duration,
    /// One line: what was seeded.
    pub summary: String,
}

/// Demo names and uids (pods, ReplicaSets, their owners) and the real ones, replaced in any
/// text the seeding copies (pod statuses, event messages, log lines).
#[derive(Default)]
pub struct Renames {
    map: HashMap<String, String>,
    pattern: Option<regex::Regex>,
}

impl Renames {
    fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Renames {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .filter(|(from, to)| !from.is_empty() && from != to)
            .collect();
        let mut keys: Vec<&String> = map.keys().collect();
        // Longest first: a pod's name contains its ReplicaSet's.
        keys.sort_by_key(|k| (Reverse(k.len()), k.as_str()));
        let pattern = (!keys.is_empty()).then(|| {
            let alternatives: Vec<String> = keys.iter().map(|k| regex::escape(k)).collect();
            regex::Regex::new(&alternatives.join("|")).expect("escaped names")
        });
        Renames { map, pattern }
    }

    /// The real name (or uid) of a demo one.
    pub fn real<'a>(&'a self, demo: &'a str) -> &'a str {
        self.map.get(demo).map_or(demo, String::as_str)
    }

    pub fn text(&self, text: &str) -> String {
        match &self.pattern {
            Some(pattern) => pattern
                .replace_all(text, |c: &regex::Captures| self.map[&c[0]].clone())
                .into_owned(),
            None => text.to_string(),
        }
    }

    fn value(&self, value: &mut Value) {
        match value {
            Value::String(text) => *text = self.text(text),
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.value(v)),
            _ => {}
        }
    }
}

/// The demo cluster's objects, read through the trait.
struct Demo {
    namespaces: Vec<Namespace>,
    nodes: Vec<Node>,
    deployments: Vec<Deployment>,
    replica_sets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    events: Vec<Event>,
}

async fn read(demo: &DemoCluster) -> Demo {
    let all = ListQuery::all();
    Demo {
        namespaces: demo.namespaces(&all).await.unwrap().items,
        nodes: demo.nodes(&all).await.unwrap().items,
        deployments: demo.deployments(&all).await.unwrap().items,
        replica_sets: demo.replica_sets(&all).await.unwrap().items,
        pods: demo.pods(&all).await.unwrap().items,
        events: demo.events(&all).await.unwrap().items,
    }
}

/// Seeds the demo cluster into the (freshly started) test API server.
pub async fn seed(admin: &kube::Client, kubelet: &Kubelet, cluster: &DemoCluster) -> DemoSeed {
    let started = Instant::now();
    let demo = read(cluster).await;
    let namespace_api = Api::<Namespace>::all(admin.clone());
    for ns in &demo.namespaces {
        let name = view::name(&ns.metadata);
        if namespace_api.get_opt(name).await.unwrap().is_some() {
            panic!(
                "the test API server already has namespace {name:?}: the demo cluster is seeded \
                 into fresh state only; restart it (bash tests/k8s/testenv.sh start)"
            );
        }
    }
    join_all(demo.namespaces.iter().map(|ns| create_namespace(admin, ns))).await;
    let node_uids = join_all(demo.nodes.iter().map(|n| create_node(admin, n, kubelet))).await;

    let rolled = join_all(
        demo.deployments
            .iter()
            .map(|d| Rollout::new(admin, d, &demo).run()),
    )
    .await;
    let renames = Renames::new(
        node_uids
            .into_iter()
            .chain(rolled.iter().flat_map(|r| r.renames.iter().cloned())),
    );
    let placed: Vec<&(&Pod, Pod)> = rolled.iter().flat_map(|r| r.pods.iter()).collect();

    let streams = register_logs(kubelet, cluster, &placed, &renames).await;
    let events = seed_events(admin, &demo, &renames).await;
    verify(admin, &demo, &renames).await;
    let took = started.elapsed();
    let summary = format!(
        "{} namespaces, {} nodes, {} deployments, {} ReplicaSets, {} pods, {} events, {} log streams",
        demo.namespaces.len(),
        demo.nodes.len(),
        demo.deployments.len(),
        demo.replica_sets.len(),
        placed.len(),
        events,
        streams
    );
    DemoSeed {
        renames,
        took,
        summary,
    }
}

async fn create_namespace(admin: &kube::Client, ns: &Namespace) {
    let name = view::name(&ns.metadata);
    let body: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": ns.metadata.labels,
                     "annotations": ns.metadata.annotations}
    }))
    .unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &body)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

/// Registers a demo node, its kubelet the test kubelet; returns (demo uid, real uid).
async fn create_node(admin: &kube::Client, node: &Node, kubelet: &Kubelet) -> (String, String) {
    let name = view::name(&node.metadata);
    let api = Api::<Node>::all(admin.clone());
    let body: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": node.metadata.labels,
                     "annotations": node.metadata.annotations},
        "spec": node.spec
    }))
    .unwrap();
    let created = api
        .create(&PostParams::default(), &body)
        .await
        .unwrap_or_else(|e| panic!("creating node {name}: {e}"));
    let mut status = serde_json::to_value(&node.status).unwrap();
    // The API server proxies logs to the first address of the preferred types (a hostname
    // first): only 127.0.0.1 reaches the test kubelet.
    status["addresses"] = json!([{"type": "InternalIP", "address": "127.0.0.1"}]);
    status["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": kubelet.port}});
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("node {name} status: {e}"));
    (
        node.metadata.uid.clone().unwrap_or_default(),
        created.metadata.uid.unwrap_or_default(),
    )
}

/// One Deployment's rollout history, replayed.
struct Rollout<'a> {
    admin: kube::Client,
    demo: &'a Deployment,
    namespace: String,
    name: String,
    /// The Deployment's pod selector, as a label selector string.
    selector: String,
    replicas: i32,
    deployments: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    pods: Api<Pod>,
    /// Each revision and the demo ReplicaSet that held it.
    held: BTreeMap<i64, &'a ReplicaSet>,
    /// Each demo ReplicaSet's pods, oldest first.
    demo_pods: HashMap<String, Vec<&'a Pod>>,
}

/// What a rollout left: renames, and demo pods with the real pods that stand for them.
struct Rolled<'a> {
    renames: Vec<(String, String)>,
    pods: Vec<(&'a Pod, Pod)>,
}

/// A rollout that must stall: the pods each ReplicaSet (by pod-template hash) keeps, and
/// whether the controller must mark it ProgressDeadlineExceeded.
struct Stall {
    pods_by_hash: Vec<(String, usize)>,
    deadline: bool,
}

fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Timestamp {
    meta.creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

fn template_hash(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .map_or("", String::as_str)
}

fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

fn progress_deadline_exceeded(deployment: &Deployment) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
}

fn observed(deployment: &Deployment) -> bool {
    let status = deployment.status.as_ref();
    status.and_then(|s| s.observed_generation) >= deployment.metadata.generation
}

/// A rollout the controller has finished: every replica updated and available, no old ones.
fn complete(deployment: &Deployment, replicas: i32) -> bool {
    let Some(status) = deployment.status.as_ref() else {
        return false;
    };
    observed(deployment)
        && status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether the ReplicaSets' and the Deployment's status agree with the pods, so that the
/// deployment controller sees no further change (which it would count as progress).
fn settled(deployment: &Deployment, new_hash: &str, owned: &[ReplicaSet], pods: &[Pod]) -> bool {
    let of = |hash: &str| -> (i32, i32) {
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| template_hash(&p.metadata) == hash)
            .collect();
        let ready = mine.iter().filter(|p| pod_ready(p)).count();
        (mine.len() as i32, ready as i32)
    };
    let replica_sets_settled = owned.iter().all(|rs| {
        let (count, ready) = of(template_hash(&rs.metadata));
        rs.status.as_ref().is_some_and(|s| {
            s.observed_generation == rs.metadata.generation
                && s.replicas == count
                && s.ready_replicas.unwrap_or(0) == ready
                && s.available_replicas.unwrap_or(0) == ready
        })
    });
    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i32;
    let status = deployment.status.as_ref();
    replica_sets_settled
        && status.is_some_and(|s| {
            s.replicas.unwrap_or(0) == pods.len() as i32
                && s.updated_replicas.unwrap_or(0) == of(new_hash).0
                && s.ready_replicas.unwrap_or(0) == ready
                && s.available_replicas.unwrap_or(0) == ready
        })
}

/// Kubernetes' time format (whole seconds).
fn k8s_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What a kubelet reports for a pod whose containers run and are ready.
fn ready_status(pod: &Pod) -> Value {
    let now = k8s_time(Timestamp::now());
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": "", "ready": true,
                   "started": true, "restartCount": 0,
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    json!({
        "phase": "Running",
        "startTime": now,
        "conditions": [condition("Initialized"), condition("Ready"),
                       condition("ContainersReady"), condition("PodScheduled")],
        "containerStatuses": containers
    })
}

impl<'a> Rollout<'a> {
    fn new(admin: &kube::Client, demo: &'a Deployment, all: &'a Demo) -> Rollout<'a> {
        let namespace = view::namespace(&demo.metadata).to_string();
        let name = view::name(&demo.metadata).to_string();
        let mut held = BTreeMap::new();
        let mut demo_pods: HashMap<String, Vec<&Pod>> = HashMap::new();
        for rs in view::owned_replica_sets(demo, &all.replica_sets) {
            let rs_name = view::name(&rs.metadata);
            let mut revisions: Vec<i64> =
                view::annotation(&rs.metadata, REVISION_HISTORY_ANNOTATION)
                    .into_iter()
                    .flat_map(|h| h.split(','))
                    .filter_map(|r| r.trim().parse().ok())
                    .collect();
            revisions.extend(view::revision(&rs.metadata));
            for revision in revisions {
                if let Some(other) = held.insert(revision, rs) {
                    panic!(
                        "{namespace}/{name}: revision {revision} held by both {} and {rs_name}",
                        view::name(&other.metadata)
                    );
                }
            }
            let mut pods: Vec<&Pod> = all
                .pods
                .iter()
                .filter(|p| {
                    view::namespace(&p.metadata) == namespace
                        && view::pod_replica_set(p) == Some(rs_name)
                })
                .collect();
            pods.sort_by_key(|p| (created(&p.metadata), view::name(&p.metadata).to_string()));
            demo_pods.insert(rs_name.to_string(), pods);
        }
        assert!(!held.is_empty(), "{namespace}/{name}: no demo ReplicaSets");
        let first = *held.keys().next().unwrap();
        let last = *held.keys().next_back().unwrap();
        if let Some(missing) = (first..=last).find(|r| !held.contains_key(r)) {
            panic!(
                "{namespace}/{name}: the demo history lacks revision {missing} between {first} and {last} (only the oldest revisions may be trimmed)"
            );
        }
        Rollout {
            admin: admin.clone(),
            demo,
            selector: view::deployment_selector(demo).to_string(),
            replicas: view::desired_replicas(demo),
            deployments: Api::namespaced(admin.clone(), &namespace),
            replica_sets: Api::namespaced(admin.clone(), &namespace),
            pods: Api::namespaced(admin.clone(), &namespace),
            namespace,
            name,
            held,
            demo_pods,
        }
    }

    fn pods_of_demo(&self, rs: &ReplicaSet) -> &[&'a Pod] {
        self.demo_pods
            .get(view::name(&rs.metadata))
            .map_or(&[], Vec::as_slice)
    }

    /// The last revision a demo ReplicaSet held (the step after which it keeps its pods).
    fn last_step_of(&self, rs: &ReplicaSet) -> i64 {
        let name = view::name(&rs.metadata);
        self.held
            .iter()
            .filter(|(_, held)| view::name(&held.metadata) == name)
            .map(|(revision, _)| *revision)
            .max()
            .unwrap()
    }

    /// A demo ReplicaSet's pod template as the Deployment's (without the pod-template hash).
    fn template(&self, rs: &ReplicaSet) -> Value {
        let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
        let mut template = serde_json::to_value(template).unwrap();
        if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
            labels.remove("pod-template-hash");
        }
        template
    }

    /// The Deployment's annotations while a revision rolls out: the demo Deployment's own and
    /// the revision's change-cause and deployer (the controller copies them to the new
    /// ReplicaSet), never the controller's `deployment.kubernetes.io/` ones.
    fn annotations(&self, rs: Option<&ReplicaSet>) -> BTreeMap<String, String> {
        let own = self.demo.metadata.annotations.iter().flatten();
        let revision = rs.and_then(|r| r.metadata.annotations.as_ref());
        own.chain(revision.into_iter().flatten())
            .filter(|(k, _)| !k.starts_with("deployment.kubernetes.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn body(
        &self,
        template: Value,
        replicas: i32,
        annotations: BTreeMap<String, String>,
        deadline: Option<i64>,
        paused: bool,
    ) -> Value {
        let mut spec = serde_json::to_value(self.demo.spec.as_ref().unwrap()).unwrap();
        spec["template"] = template;
        spec["replicas"] = json!(replicas);
        if let Some(seconds) = deadline {
            spec["progressDeadlineSeconds"] = json!(seconds);
        }
        if paused {
            spec["paused"] = json!(true);
        }
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "labels": self.demo.metadata.labels, "annotations": annotations},
            "spec": spec
        })
    }

    async fn apply(&self, body: &Value) -> Deployment {
        self.deployments
            .patch(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {}/{}: {e}", self.namespace, self.name))
    }

    /// Polls `check` until it gives a value, or fails after [`PATIENCE`] saying what it awaited.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let started = Instant::now();
        loop {
            match check().await {
                Ok(value) => return value,
                Err(state) if started.elapsed() > PATIENCE => panic!(
                    "{}/{}: timed out waiting for {what}; last seen: {state}",
                    self.namespace, self.name
                ),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The ReplicaSets the real Deployment owns.
    async fn owned(&self, uid: &str) -> Vec<ReplicaSet> {
        self.replica_sets
            .list(&ListParams::default().labels(&self.selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid)
            })
            .collect()
    }

    async fn wait_for_revision(&self, uid: &str, revision: i64) -> ReplicaSet {
        self.until(
            &format!("the ReplicaSet of revision {revision}"),
            move || async move {
                let owned = self.owned(uid).await;
                owned
                    .iter()
                    .find(|rs| view::revision(&rs.metadata) == Some(revision))
                    .cloned()
                    .ok_or_else(|| {
                        let revisions: Vec<Option<i64>> = owned
                            .iter()
                            .map(|rs| view::revision(&rs.metadata))
                            .collect();
                        format!("revisions {revisions:?}")
                    })
            },
        )
        .await
    }

    /// The Deployment's pods that are not being deleted, oldest first.
    async fn live_pods(&self) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .pods
            .list(&ListParams::default().labels(&self.selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        pods.sort_by_key(|p| (created(&p.metadata), view::name(&p.metadata).to_string()));
        pods
    }

    /// Marks a pod Ready; false when it is gone already (the controller scaled it away).
    async fn mark_ready(&self, pod: &Pod) -> bool {
        let name = view::name(&pod.metadata);
        let patch = json!({ "status": ready_status(pod) });
        match self
            .pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => true,
            Err(e) if not_found(&e) => false,
            Err(e) => panic!("marking {}/{name} ready: {e}", self.namespace),
        }
    }

    /// Drives one rollout with pods to `rs`: binds its first `bind` pods to their demo pods'
    /// nodes (in the order the controller made them) and, unless it must stall, marks every
    /// new pod Ready until the controller has finished. Returns demo pod and real pod pairs.
    async fn drive(
        &self,
        rs: &ReplicaSet,
        demo_pods: &[&'a Pod],
        bind: usize,
        stall: Option<&Stall>,
    ) -> Vec<(&'a Pod, Pod)> {
        let hash = template_hash(&rs.metadata).to_string();
        let mut seen = HashSet::new();
        let mut ready = HashSet::new();
        let mut placed: Vec<(&'a Pod, Pod)> = Vec::new();
        let what = match stall {
            Some(_) => format!("the rollout to {} to stall", view::name(&rs.metadata)),
            None => format!("the rollout to {} to finish", view::name(&rs.metadata)),
        };
        let started = Instant::now();
        loop {
            let pods = self.live_pods().await;
            for pod in pods.iter().filter(|p| template_hash(&p.metadata) == hash) {
                let name = view::name(&pod.metadata).to_string();
                if seen.insert(name.clone()) && placed.len() < bind {
                    let demo = demo_pods[placed.len()];
                    if let Some(node) = demo.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                        super::bind(&self.admin, &self.namespace, &name, node).await;
                    }
                    placed.push((demo, pod.clone()));
                }
                if stall.is_none() && !ready.contains(&name) && self.mark_ready(pod).await {
                    ready.insert(name);
                }
            }
            let deployment = self.deployments.get(&self.name).await.unwrap();
            let state = match stall {
                None => {
                    let done = complete(&deployment, self.replicas)
                        && pods.len() == self.replicas as usize
                        && placed.len() == bind.min(self.replicas as usize);
                    (
                        done,
                        format!("{:?}, {} pods", deployment.status, pods.len()),
                    )
                }
                Some(stall) => {
                    let counts: Vec<(String, usize)> = stall
                        .pods_by_hash
                        .iter()
                        .map(|(h, _)| {
                            let n = pods
                                .iter()
                                .filter(|p| template_hash(&p.metadata) == h)
                                .count();
                            (h.clone(), n)
                        })
                        .collect();
                    // The controllers' view must have caught up with the pods too: a
                    // status that changes after the deadline was marked counts as progress.
                    let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
                    let done = observed(&deployment)
                        && counts == stall.pods_by_hash
                        && pods.len() == counts.iter().map(|(_, n)| n).sum::<usize>()
                        && placed.len() == bind
                        && (!stall.deadline || progress_deadline_exceeded(&deployment))
                        && settled(&deployment, &hash, &self.owned(uid).await, &pods);
                    let state = format!(
                        "pods by template hash {counts:?}, want {:?}; {:?}",
                        stall.pods_by_hash, deployment.status
                    );
                    (done, state)
                }
            };
            match state {
                (true, _) => return placed,
                (false, state) if started.elapsed() > PATIENCE => panic!(
                    "{}/{}: timed out waiting for {what}; last seen: {state}",
                    self.namespace, self.name
                ),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn run(self) -> Rolled<'a> {
        let first = *self.held.keys().next().unwrap();
        let last = *self.held.keys().next_back().unwrap();
        let final_rs = self.held[&last];
        // From the first revision whose ReplicaSet keeps pods on, rollouts run with pods.
        let with_pods_from = self
            .held
            .values()
            .filter(|rs| !self.pods_of_demo(rs).is_empty())
            .map(|rs| self.last_step_of(rs))
            .min()
            .unwrap_or(last);
        let stalls = self.held.values().any(|rs| {
            view::name(&rs.metadata) != view::name(&final_rs.metadata)
                && !self.pods_of_demo(rs).is_empty()
        }) || self.pods_of_demo(final_rs).len() < self.replicas as usize;
        let deadline_exceeded = progress_deadline_exceeded(self.demo);
        let replicas_at = |revision: i64| {
            if revision >= with_pods_from {
                self.replicas
            } else {
                0
            }
        };

        // The revisions before the demo's first: one placeholder with the revision before it,
        // adopted by the (paused) Deployment before the first rollout.
        let placeholder = (first > 1).then(|| format!("{}-trimmed-history", self.name));
        let first_rs = self.held[&first];
        if let Some(placeholder) = &placeholder {
            self.create_placeholder(placeholder, first_rs, first - 1)
                .await;
            let paused = self.body(
                self.template(first_rs),
                0,
                self.annotations(Some(first_rs)),
                None,
                true,
            );
            let deployment = self.apply(&paused).await;
            let uid = deployment.metadata.uid.unwrap_or_default();
            let (this, uid) = (&self, uid.as_str());
            self.until(
                "the placeholder ReplicaSet's adoption",
                move || async move {
                    let rs = this.replica_sets.get(placeholder).await.unwrap();
                    let adopted = rs
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid);
                    adopted
                        .then_some(())
                        .ok_or_else(|| "not adopted".to_string())
                },
            )
            .await;
        }

        let mut real_rs: HashMap<String, ReplicaSet> = HashMap::new();
        let mut placed: Vec<(&'a Pod, Pod)> = Vec::new();
        let mut uid = String::new();
        for (&revision, &rs) in &self.held {
            let is_last = revision == last;
            let stalled = is_last && stalls;
            let body = self.body(
                self.template(rs),
                replicas_at(revision),
                self.annotations(Some(rs)),
                (stalled && deadline_exceeded).then_some(STALL_DEADLINE_SECONDS),
                false,
            );
            let deployment = self.apply(&body).await;
            uid = deployment.metadata.uid.clone().unwrap();
            let made = self.wait_for_revision(&uid, revision).await;
            if revision == first
                && let Some(placeholder) = &placeholder
            {
                match self
                    .replica_sets
                    .delete(placeholder, &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if not_found(&e) => {}
                    Err(e) => panic!("deleting {placeholder}: {e}"),
                }
            }
            real_rs.insert(view::name(&rs.metadata).to_string(), made.clone());
            if replicas_at(revision) == 0 {
                continue;
            }
            let demo_pods = self.pods_of_demo(rs);
            let bind = if self.last_step_of(rs) == revision {
                demo_pods.len()
            } else {
                0
            };
            let stall = stalled.then(|| Stall {
                pods_by_hash: self
                    .held
                    .values()
                    .filter(|held| !self.pods_of_demo(held).is_empty())
                    .map(|held| {
                        let real = &real_rs[view::name(&held.metadata)];
                        (
                            template_hash(&real.metadata).to_string(),
                            self.pods_of_demo(held).len(),
                        )
                    })
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
                deadline: deadline_exceeded,
            });
            placed.extend(self.drive(&made, demo_pods, bind, stall.as_ref()).await);
        }

        // The Deployment as the demo has it: its own annotations only, its own deadline (a
        // deadline that was exceeded stays so: no progress follows).
        let body = self.body(
            self.template(final_rs),
            self.replicas,
            self.annotations(None),
            None,
            false,
        );
        self.apply(&body).await;
        let this = &self;
        self.until("the final Deployment to be observed", move || async move {
            let d = this.deployments.get(&this.name).await.unwrap();
            let ok = observed(&d) && (!deadline_exceeded || progress_deadline_exceeded(&d));
            ok.then_some(()).ok_or_else(|| format!("{:?}", d.status))
        })
        .await;

        // Names and uids, then the demo pods' statuses on the real pods.
        let mut renames = vec![(
            self.demo.metadata.uid.clone().unwrap_or_default(),
            uid.clone(),
        )];
        for (demo_name, real) in &real_rs {
            let demo = self
                .held
                .values()
                .find(|rs| view::name(&rs.metadata) == demo_name)
                .unwrap();
            renames.push((demo_name.clone(), view::name(&real.metadata).to_string()));
            renames.push((
                demo.metadata.uid.clone().unwrap_or_default(),
                real.metadata.uid.clone().unwrap_or_default(),
            ));
        }
        for (demo, real) in &placed {
            renames.push((
                view::name(&demo.metadata).to_string(),
                view::name(&real.metadata).to_string(),
            ));
            renames.push((
                demo.metadata.uid.clone().unwrap_or_default(),
                real.metadata.uid.clone().unwrap_or_default(),
            ));
        }
        let local = &Renames::new(renames.clone());
        let this = &self;
        join_all(placed.iter().map(move |(demo, real)| async move {
            let mut status = serde_json::to_value(&demo.status).unwrap();
            local.value(&mut status);
            super::set_pod_status(
                &this.admin,
                &this.namespace,
                view::name(&real.metadata),
                status,
            )
            .await;
        }))
        .await;
        Rolled {
            renames,
            pods: placed,
        }
    }

    /// A ReplicaSet with 0 replicas and the revision before the demo's first, matching the
    /// Deployment's selector, for the deployment controller to adopt.
    async fn create_placeholder(&self, name: &str, like: &ReplicaSet, revision: i64) {
        let mut template = self.template(like);
        template["metadata"]["labels"]["pod-template-hash"] = json!("trimmed-history");
        template["metadata"]["annotations"][TRIMMED_ANNOTATION] = json!("true");
        let mut selector =
            serde_json::to_value(&self.demo.spec.as_ref().unwrap().selector).unwrap();
        selector["matchLabels"]["pod-template-hash"] = json!("trimmed-history");
        let body: ReplicaSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": self.namespace,
                "labels": template["metadata"]["labels"],
                "annotations": {
                    REVISION_ANNOTATION: revision.to_string(),
                    TRIMMED_ANNOTATION: format!("stands for revisions 1 to {revision}, which the demo does not keep"),
                }
            },
            "spec": {"replicas": 0, "selector": selector, "template": template}
        }))
        .unwrap();
        self.replica_sets
            .create(&PostParams::default(), &body)
            .await
            .unwrap_or_else(|e| panic!("creating {}/{name}: {e}", self.namespace));
    }
}

/// The log lines of demo entries, as a container would have written them: the level, logger
/// and trace id as fields before the message, continuation lines indented.
fn log_lines(entries: &[LogEntry], renames: &Renames) -> Vec<(Timestamp, String)> {
    let mut lines = Vec::new();
    for entry in entries {
        let trace = entry
            .trace_id
            .as_ref()
            .map(|t| format!("trace_id={t} "))
            .unwrap_or_default();
        lines.push((
            entry.timestamp,
            format!(
                "level={} logger={} {trace}{}",
                entry.level.as_str(),
                entry.logger,
                renames.text(&entry.message)
            ),
        ));
        for detail in &entry.detail {
            lines.push((entry.timestamp, format!("\t{}", renames.text(detail))));
        }
    }
    lines
}

/// Checks that the backend's parser reads `lines` (as the kubelet serves them, with
/// timestamps) back to the demo entries: time, level, trace id, continuation lines, and the
/// message at the end of the line.
fn check_round_trip(
    what: &str,
    entries: &[LogEntry],
    lines: &[(Timestamp, String)],
    renames: &Renames,
) {
    let text: String = lines
        .iter()
        .map(|(t, line)| format!("{} {line}\n", t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ")))
        .collect();
    let parsed = parse_timestamped_log(&text);
    assert_eq!(parsed.len(), entries.len(), "{what}: entries read back");
    for (got, want) in parsed.iter().zip(entries) {
        let detail: Vec<String> = want
            .detail
            .iter()
            .map(|d| renames.text(d).trim_start().to_string())
            .collect();
        let same = got.timestamp == want.timestamp
            && got.level == want.level
            && got.trace_id == want.trace_id
            && got.message.ends_with(&renames.text(&want.message))
            && got.detail == detail;
        assert!(same, "{what}: {want:?} read back as {got:?}");
    }
}

/// Why a kubelet refuses a container's log when there is none: the messages of the kubelet's
/// `validateContainerLogStatus`, which the API server passes on as a BadRequest.
fn kubelet_refusal(
    status: Option<&ContainerStatus>,
    previous: bool,
    pod: &str,
    container: &str,
) -> Option<String> {
    let state = status.and_then(|s| s.state.as_ref());
    let last_terminated = status
        .and_then(|s| s.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    if previous {
        return last_terminated.is_none().then(|| {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        });
    }
    if state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        || last_terminated.is_some()
    {
        return None;
    }
    let why = match state
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref())
    {
        Some("ErrImagePull") => ": image can't be pulled".to_string(),
        Some("ImagePullBackOff") => ": trying and failing to pull image".to_string(),
        Some(reason) => format!(": {reason}"),
        None => " - no logs yet".to_string(),
    };
    Some(format!(
        "container {container:?} in pod {pod:?} is waiting to start{why}"
    ))
}

/// Registers every container's current and previous log with the test kubelet; returns how
/// many streams it serves.
async fn register_logs(
    kubelet: &Kubelet,
    cluster: &DemoCluster,
    placed: &[&(&Pod, Pod)],
    renames: &Renames,
) -> usize {
    let mut streams = 0;
    for (demo, real) in placed {
        let namespace = view::namespace(&demo.metadata);
        let demo_name = view::name(&demo.metadata);
        let real_name = view::name(&real.metadata);
        for container in demo.spec.iter().flat_map(|s| &s.containers) {
            let status = demo
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == container.name));
            for previous in [false, true] {
                let query =
                    LogQuery::container(namespace, demo_name, &container.name).previous(previous);
                let entries = cluster.pod_logs(&query).await.unwrap();
                let entries = entries.entries();
                if entries.is_empty()
                    && let Some(message) =
                        kubelet_refusal(status, previous, real_name, &container.name)
                {
                    kubelet.refuse_log(namespace, real_name, &container.name, previous, &message);
                    continue;
                }
                let lines = log_lines(entries, renames);
                check_round_trip(
                    &format!(
                        "{namespace}/{demo_name}/{} previous={previous}",
                        container.name
                    ),
                    entries,
                    &lines,
                    renames,
                );
                kubelet.set_log(namespace, real_name, &container.name, previous, lines);
                streams += 1;
            }
        }
    }
    streams
}

/// Replaces the events the seeding made the controllers write with the demo's, re-targeted at
/// the real objects; returns how many.
async fn seed_events(admin: &kube::Client, demo: &Demo, renames: &Renames) -> usize {
    let namespaces: Vec<&str> = demo
        .namespaces
        .iter()
        .map(|n| view::name(&n.metadata))
        .collect();
    for ns in &namespaces {
        Api::<Event>::namespaced(admin.clone(), ns)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting the seeding's events in {ns}: {e}"));
    }
    let made: Vec<(String, String)> = join_all(demo.events.iter().map(move |event| async move {
        let ns = view::namespace(&event.metadata).to_string();
        let mut value = serde_json::to_value(event).unwrap();
        value["metadata"] = json!({"name": view::name(&event.metadata), "namespace": ns});
        if let Some(object) = value["involvedObject"].as_object_mut() {
            object.remove("resourceVersion");
        }
        renames.value(&mut value);
        let event: Event = serde_json::from_value(value).unwrap();
        let name = view::name(&event.metadata).to_string();
        Api::<Event>::namespaced(admin.clone(), &ns)
            .create(&PostParams::default(), &event)
            .await
            .unwrap_or_else(|e| panic!("creating event {ns}/{name}: {e}"));
        (ns, name)
    }))
    .await;
    // Any event a controller wrote late goes too.
    let ours: HashSet<&(String, String)> = made.iter().collect();
    for ns in &namespaces {
        let api = Api::<Event>::namespaced(admin.clone(), ns);
        for event in api.list(&ListParams::default()).await.unwrap().items {
            let key = (ns.to_string(), view::name(&event.metadata).to_string());
            if !ours.contains(&key) {
                match api.delete(&key.1, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if not_found(&e) => {}
                    Err(e) => panic!("deleting event {ns}/{}: {e}", key.1),
                }
            }
        }
    }
    made.len()
}

/// The seeded cluster against the demo: current revisions, rollout history, pods per
/// ReplicaSet, stuck rollouts.
async fn verify(admin: &kube::Client, demo: &Demo, renames: &Renames) {
    let real_deployments = Api::<Deployment>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let real_replica_sets = Api::<ReplicaSet>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let namespaces: HashSet<&str> = demo
        .namespaces
        .iter()
        .map(|n| view::name(&n.metadata))
        .collect();
    let real_pods: Vec<Pod> = Api::<Pod>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| namespaces.contains(view::namespace(&p.metadata)))
        .collect();
    let mut problems = Vec::new();
    for d in &demo.deployments {
        let key = (view::namespace(&d.metadata), view::name(&d.metadata));
        let Some(real) = real_deployments
            .iter()
            .find(|r| (view::namespace(&r.metadata), view::name(&r.metadata)) == key)
        else {
            problems.push(format!("{key:?}: no such Deployment"));
            continue;
        };
        let demo_history = view::owned_replica_sets(d, &demo.replica_sets);
        let want: BTreeMap<Option<i64>, (String, usize)> = demo_history
            .map(|rs| {
                let pods = demo
                    .pods
                    .iter()
                    .filter(|p| {
                        view::namespace(&p.metadata) == key.0
                            && view::pod_replica_set(p) == Some(view::name(&rs.metadata))
                    })
                    .count();
                let name = renames.real(view::name(&rs.metadata)).to_string();
                (view::revision(&rs.metadata), (name, pods))
            })
            .collect();
        let got: BTreeMap<Option<i64>, (String, usize)> =
            view::owned_replica_sets(real, &real_replica_sets)
                .map(|rs| {
                    let pods = real_pods
                        .iter()
                        .filter(|p| view::pod_replica_set(p) == Some(view::name(&rs.metadata)))
                        .count();
                    (
                        view::revision(&rs.metadata),
                        (view::name(&rs.metadata).to_string(), pods),
                    )
                })
                .collect();
        if got != want {
            problems.push(format!(
                "{key:?}: ReplicaSets by revision (name, pods) {got:?}, the demo's {want:?}"
            ));
        }
        if view::revision(&real.metadata) != view::revision(&d.metadata) {
            problems.push(format!(
                "{key:?}: revision {:?}, the demo's {:?}",
                view::revision(&real.metadata),
                view::revision(&d.metadata)
            ));
        }
        if progress_deadline_exceeded(d) != progress_deadline_exceeded(real) {
            problems.push(format!("{key:?}: conditions {:?}", real.status));
        }
    }
    if real_pods.len() != demo.pods.len() {
        problems.push(format!(
            "{} pods in the demo namespaces, the demo has {}",
            real_pods.len(),
            demo.pods.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "the seeded cluster differs from the demo:\n{}",
        problems.join("\n")
    );
}
