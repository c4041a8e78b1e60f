//! The ReplicaSet controller (and the scheduler's binding) for the demo's deployments: as
//! many pods as each ReplicaSet wants, created from its template and placed on a node, or
//! deleted (the least useful first) with the kubelet stopping their containers.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSetStatus;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::events::{self, EventSpec, container_path, reference};
use super::kubelet::{Binding, Fate, SimContainer, SimPod, after};
use super::names;
use super::registry::{Behaviour, Pull, parse_image};
use super::scheduler::{self, Placed};
use super::state::{Deleting, PodEntry, State};
use crate::cluster::view;

/// How long after a pod turns ready the controllers see it (informer latency).
const REACT: f64 = 0.20;
/// A stopped pod is gone after this long.
const TERMINATION: f64 = 0.5;
/// The scheduler binds a new pod this long after it is created.
const BIND: f64 = 0.01;

pub fn spec_replicas(state: &State, rs: usize) -> i32 {
    state.replica_sets[rs]
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0)
}

/// Pods of ReplicaSet `rs` (its namespace and name), not being deleted.
fn active_pods(state: &State, rs: usize) -> Vec<usize> {
    let meta = &state.replica_sets[rs].metadata;
    let (namespace, name) = (view::namespace(meta), view::name(meta));
    (0..state.pods.len())
        .filter(|&i| {
            let p = &state.pods[i];
            p.active() && p.namespace() == namespace && p.owner() == Some(name)
        })
        .collect()
}

pub fn available(state: &State, rs: usize, t: Timestamp) -> i32 {
    active_pods(state, rs)
        .into_iter()
        .filter(|&i| state.pods[i].ready(t))
        .count() as i32
}

/// Which of a ReplicaSet's pods goes first on a scale-down (lowest first): unscheduled,
/// pending, not ready, most restarted, newest; the name last, for determinism.
type DeleteRank = (bool, u8, bool, i64, i64, String);

/// The ReplicaSet controller: as many pods as the ReplicaSet wants.
pub fn sync_replica_set(state: &mut State, rs: usize, t: Timestamp) {
    let want = spec_replicas(state, rs);
    let active = active_pods(state, rs);
    let have = active.len() as i32;
    if have < want {
        for _ in have..want {
            create_pod(state, rs, t);
        }
    } else if have > want {
        // Which pods go first: unscheduled, pending, not ready, most restarted, newest.
        let mut ranked: Vec<(usize, DeleteRank)> = active
            .into_iter()
            .map(|i| {
                let entry = &state.pods[i];
                let pod = entry.render(t);
                let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                    Some("Pending") => 0,
                    Some("Running") => 2,
                    _ => 1,
                };
                let created = pod
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(0, |c| c.0.as_millisecond());
                (
                    i,
                    (
                        entry.node().is_some(),
                        phase,
                        entry.ready(t),
                        -view::pod_restarts(&pod),
                        -created,
                        entry.name().to_string(),
                    ),
                )
            })
            .collect();
        ranked.sort_by(|a, b| a.1.cmp(&b.1));
        let doomed: Vec<usize> = ranked
            .iter()
            .take((have - want) as usize)
            .map(|r| r.0)
            .collect();
        for i in doomed {
            delete_pod(state, rs, i, t);
        }
    }
    let set = &mut state.replica_sets[rs];
    let generation = set.metadata.generation;
    set.status
        .get_or_insert_with(Default::default)
        .observed_generation = generation;
}

pub fn update_replica_set_status(state: &mut State, rs: usize, t: Timestamp) {
    let active = active_pods(state, rs);
    let ready = active.iter().filter(|&&i| state.pods[i].ready(t)).count() as i32;
    let count = active.len() as i32;
    let set = &mut state.replica_sets[rs];
    let observed = set.metadata.generation;
    set.status = Some(ReplicaSetStatus {
        replicas: count,
        fully_labeled_replicas: Some(count),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        observed_generation: observed,
        ..ReplicaSetStatus::default()
    });
}

/// Kubernetes' quality-of-service class from the containers' resources.
fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let r = c.resources.clone().unwrap_or_default();
        let (requests, limits) = (r.requests.unwrap_or_default(), r.limits.unwrap_or_default());
        any |= !requests.is_empty() || !limits.is_empty();
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Where a pod of this template can go now, and the scheduler's words when nowhere.
fn placement(
    state: &State,
    namespace: &str,
    app: &str,
    spec: &PodSpec,
) -> Result<(String, String), String> {
    let memory = scheduler::memory_request(spec);
    // Pods being deleted no longer count against a node: the demo keeps rollouts free of
    // scheduling hiccups while an old pod drains.
    let placed: Vec<Placed<'_>> = state
        .pods
        .iter()
        .filter(|p| p.active())
        .filter_map(|p| {
            Some(Placed {
                node: p.node()?,
                memory: p.pod.spec.as_ref().map_or(0.0, scheduler::memory_request),
                sibling: p.namespace() == namespace
                    && p.owner()
                        .is_some_and(|o| o.strip_prefix(app).is_some_and(|r| r.starts_with('-'))),
            })
        })
        .collect();
    scheduler::place(&state.nodes, &placed, memory)
}

fn bind(
    state: &mut State,
    namespace: &str,
    name: &str,
    node: String,
    host_ip: String,
    t: Timestamp,
) -> Binding {
    let used = state
        .pods
        .iter()
        .filter_map(|p| {
            let pod = &p.pod;
            match &p.sim {
                Some(sim) => sim.binding.as_ref().map(|b| b.pod_ip.clone()),
                None => pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
            }
        })
        .collect();
    let pod_ip = scheduler::pod_ip(&host_ip, &used, &format!("{namespace}/{name}"));
    Binding {
        at: after(t, BIND),
        node,
        host_ip,
        pod_ip,
    }
}

/// What each container's image does on `node`, per the registry; the node then has the
/// images it pulled.
fn containers(
    state: &mut State,
    spec: &PodSpec,
    pod_name: &str,
    node: Option<&str>,
) -> Vec<SimContainer> {
    let mut out = Vec::new();
    for c in &spec.containers {
        let image = c.image.clone().unwrap_or_default();
        let reference = parse_image(&image).ok();
        let repository = reference.as_ref().map(|r| r.repository.clone());
        let canonical = reference.as_ref().map_or(image.clone(), |r| r.canonical());
        let tag = reference
            .as_ref()
            .map_or("latest".to_string(), |r| r.tag_or_latest().to_string());
        let (fate, size, known) = match state.registry.pull(&image) {
            Pull::Found {
                repository: repo,
                behaviour,
            } => {
                let fate = match behaviour {
                    Behaviour::CrashLoop(crash) => Fate::CrashLoops(crash.clone()),
                    _ => Fate::Serves,
                };
                (fate, repo.image_size, true)
            }
            Pull::NoSuchTag => (
                Fate::PullFails {
                    message: format!(
                        "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{canonical}\": failed to resolve reference \"{canonical}\": {canonical}: not found"
                    ),
                },
                0,
                false,
            ),
            Pull::NoSuchRepository => (
                Fate::PullFails {
                    message: format!(
                        "Failed to pull image \"{image}\": rpc error: code = Unknown desc = failed to pull and unpack image \"{canonical}\": failed to resolve reference \"{canonical}\": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
                    ),
                },
                0,
                false,
            ),
        };
        let cached =
            node.is_some_and(|n| state.image_cache.contains(&(n.to_string(), image.clone())));
        if known && let Some(n) = node {
            state.image_cache.insert((n.to_string(), image.clone()));
        }
        let image_id = state.image_ids.get(&image).cloned().unwrap_or_else(|| {
            let repo = repository.clone().unwrap_or_else(|| image.clone());
            format!("{repo}@sha256:{}", names::hex(&["image", &image], 64))
        });
        out.push(SimContainer {
            name: c.name.clone(),
            image,
            fate,
            repository: repository.filter(|r| state.registry.repositories.contains_key(r)),
            tag,
            cached,
            pull_secs: 0.35 + 0.3 * names::unit(&[pod_name, &c.name, "pull"]),
            image_id,
            image_size: size,
        });
    }
    out
}

fn app_of(rs_name: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    match labels.get("pod-template-hash") {
        Some(hash) => rs_name
            .strip_suffix(&format!("-{hash}"))
            .unwrap_or(rs_name)
            .to_string(),
        None => rs_name.to_string(),
    }
}

/// The ReplicaSet controller creates a pod from its template; the scheduler places it.
fn create_pod(state: &mut State, rs: usize, t: Timestamp) {
    let set = state.replica_sets[rs].clone();
    let rs_name = view::name(&set.metadata).to_string();
    let namespace = view::namespace(&set.metadata).to_string();
    let Some(template) = set.spec.as_ref().and_then(|s| s.template.clone()) else {
        return;
    };
    let Some(spec) = template.spec.clone() else {
        return;
    };
    let template_meta = template.metadata.unwrap_or_default();
    let labels = template_meta.labels.clone().unwrap_or_default();
    let name = loop {
        let seq = state.pods_created.entry(rs_name.clone()).or_insert(0);
        *seq += 1;
        let candidate = format!(
            "{rs_name}-{}",
            names::suffix(&[&rs_name, &seq.to_string()], 5)
        );
        let key = (namespace.clone(), candidate.clone());
        if !state.departed.contains(&key)
            && !state
                .pods
                .iter()
                .any(|p| p.namespace() == namespace && p.name() == candidate)
        {
            break candidate;
        }
    };
    let app = app_of(&rs_name, &labels);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            generate_name: Some(format!("{rs_name}-")),
            namespace: Some(namespace.clone()),
            uid: Some(names::uid(&["pod", &namespace, &name])),
            creation_timestamp: Some(Time(t)),
            labels: template_meta.labels.clone(),
            annotations: template_meta.annotations.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: rs_name.clone(),
                uid: set.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec.clone()),
        status: None,
    };
    let (binding, unschedulable) = match placement(state, &namespace, &app, &spec) {
        Ok((node, host_ip)) => (Some(bind(state, &namespace, &name, node, host_ip, t)), None),
        Err(message) => (None, Some(message)),
    };
    let containers = containers(
        state,
        &spec,
        &name,
        binding.as_ref().map(|b| b.node.as_str()),
    );
    let sim = SimPod {
        created: t,
        unschedulable,
        binding,
        containers,
        qos: qos_class(&spec).into(),
    };
    if let Some(ready) = sim.ready_at() {
        state.wake(after(ready, REACT));
    }
    events::record(
        &mut state.events,
        EventSpec::once(
            reference("ReplicaSet", &set.metadata, None),
            false,
            "SuccessfulCreate",
            format!("Created pod: {name}"),
            "replicaset-controller",
            t,
        ),
    );
    state.pods.push(PodEntry {
        pod,
        sim: Some(sim),
        deleting: None,
    });
}

/// Places pods the scheduler could not fit before, when a node has room now.
pub fn bind_waiting(state: &mut State, t: Timestamp) {
    for i in 0..state.pods.len() {
        let entry = &state.pods[i];
        let Some(sim) = &entry.sim else { continue };
        if sim.binding.is_some() || !entry.active() {
            continue;
        }
        let (namespace, name) = (entry.namespace().to_string(), entry.name().to_string());
        let app = entry
            .owner()
            .map(|o| {
                app_of(
                    o,
                    entry
                        .pod
                        .metadata
                        .labels
                        .as_ref()
                        .unwrap_or(&Default::default()),
                )
            })
            .unwrap_or_default();
        let Some(spec) = entry.pod.spec.clone() else {
            continue;
        };
        let Ok((node, host_ip)) = placement(state, &namespace, &app, &spec) else {
            continue;
        };
        let binding = bind(state, &namespace, &name, node.clone(), host_ip, t);
        let containers = containers(state, &spec, &name, Some(&node));
        let sim = state.pods[i].sim.as_mut().expect("checked above");
        sim.binding = Some(binding);
        sim.containers = containers;
        if let Some(ready) = sim.ready_at() {
            state.wake(after(ready, REACT));
        }
    }
}

/// The ReplicaSet controller deletes a pod: the kubelet stops its running containers, and
/// the pod is gone shortly after.
fn delete_pod(state: &mut State, rs: usize, index: usize, t: Timestamp) {
    let entry = &state.pods[index];
    let running: Vec<String> = match &entry.sim {
        Some(sim) => sim.running_containers(t),
        None => entry
            .pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            .map(|c| c.name.clone())
            .collect(),
    };
    let host = entry.node().map(str::to_string);
    let meta = entry.pod.metadata.clone();
    let name = entry.name().to_string();
    for container in running {
        events::record(
            &mut state.events,
            EventSpec::once(
                reference("Pod", &meta, container_path(&container)),
                false,
                "Killing",
                format!("Stopping container {container}"),
                "kubelet",
                t,
            )
            .on_host(host.clone()),
        );
    }
    events::record(
        &mut state.events,
        EventSpec::once(
            reference("ReplicaSet", &state.replica_sets[rs].metadata, None),
            false,
            "SuccessfulDelete",
            format!("Deleted pod: {name}"),
            "replicaset-controller",
            t,
        ),
    );
    let gone = after(t, TERMINATION);
    state.pods[index].deleting = Some(Deleting { at: t, gone });
    state.wake(gone);
}
