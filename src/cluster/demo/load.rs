//! Loading the fixtures (`<namespace>.yaml`, `nodes.yaml`, `registry.yaml`, `logs/**`) into the
//! demo's state, with relative times resolved against the load time, and the consistency
//! checks that keep them honest: owners, event targets, logs, metrics, and the registry
//! against what the pods show.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Deserialize;

use super::controller::unhashed;
use super::names;
use super::registry::{self, Behaviour, Crash, Profile, Registry, Repository};
use super::state::{PodEntry, State};
use crate::cluster::{Alert, HealthStatus, ServiceMetrics, view};
use crate::util::logs::parse_fixture_log;
use crate::util::timefmt::resolve_relative;

/// The registry file's name at the fixtures' root.
pub const REGISTRY_FILE: &str = "registry.yaml";

/// One fixture file: its path relative to the fixtures root ('/'-separated) and contents.
pub struct FixtureFile {
    pub path: String,
    pub contents: std::borrow::Cow<'static, [u8]>,
}

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

fn text(file: &FixtureFile) -> anyhow::Result<&str> {
    std::str::from_utf8(&file.contents).map_err(|_| anyhow!("fixture {} is not UTF-8", file.path))
}

/// The state the fixtures describe, validated.
pub fn from_files(mut files: Vec<FixtureFile>, now: Timestamp) -> anyhow::Result<State> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let (logs, manifests): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|f| f.path.starts_with("logs/"));
    let mut state = State::empty(now, Registry::default());
    let mut registry = None;
    for file in &manifests {
        let path = file.path.as_str();
        if !path.ends_with(".yaml") || path.contains('/') {
            continue;
        }
        if path == REGISTRY_FILE {
            registry = Some(registry::parse(path, text(file)?)?);
            continue;
        }
        if path == "nodes.yaml" {
            state.nodes = parse_yaml(path, text(file)?, now)?;
            continue;
        }
        let ns: NamespaceFile = parse_yaml(path, text(file)?, now)?;
        let ns_name = view::name(&ns.namespace.metadata).to_string();
        if format!("{ns_name}.yaml") != path {
            bail!(
                "fixture {path} declares namespace {ns_name:?}; the file must be named {ns_name}.yaml"
            );
        }
        state.namespaces.push(ns.namespace);
        state.deployments.extend(ns.deployments);
        state.replica_sets.extend(ns.replicasets);
        state.pods.extend(ns.pods.into_iter().map(|pod| PodEntry {
            pod,
            sim: None,
            deleting: None,
        }));
        state.events.extend(ns.events);
        for m in ns.metrics {
            let metrics = ServiceMetrics {
                service: m.service,
                namespace: ns_name.clone(),
                error_rate: Some(m.error_rate),
                p50_ms: Some(m.p50_ms),
                p99_ms: Some(m.p99_ms),
                rps: Some(m.rps),
                alerts: m.alerts,
            };
            // The fixture states the status it means to show; the one definition of a
            // status from metrics must agree, or the data would say two things.
            if metrics.status() != m.status {
                bail!(
                    "fixture {path}: metrics of {} say status {}, but error rate {} and alerts {:?} make it {} (see ServiceMetrics::status)",
                    metrics.service,
                    m.status.as_str(),
                    m.error_rate,
                    metrics.alerts.iter().map(|a| &a.name).collect::<Vec<_>>(),
                    metrics.status().as_str()
                );
            }
            state.metrics.push(metrics);
        }
    }
    load_logs(&mut state, &logs, now)?;
    state.registry = match registry {
        Some(r) => r,
        None => derived_registry(&state),
    };
    // Versions as an API server would have handed them out, in load order.
    for i in 0..state.deployments.len() {
        state.resource_version += 1;
        state.deployments[i].metadata.resource_version = Some(state.resource_version.to_string());
    }
    for entry in &state.pods {
        let Some(node) = entry.node() else { continue };
        for status in entry
            .pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
        {
            if !status.image_id.is_empty() {
                state
                    .image_cache
                    .insert((node.to_string(), status.image.clone()));
                state
                    .image_ids
                    .insert(status.image.clone(), status.image_id.clone());
            }
        }
    }
    let problems = consistency_problems(&state);
    if !problems.is_empty() {
        bail!(
            "demo fixtures are inconsistent ({} problems):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(state)
}

fn load_logs(state: &mut State, logs: &[FixtureFile], now: Timestamp) -> anyhow::Result<()> {
    for file in logs {
        let full = file.path.as_str();
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
        let entries =
            parse_fixture_log(text(file)?, now).map_err(|e| anyhow!("fixture {full}: {e}"))?;
        state.logs.insert(
            (namespace.into(), pod.into(), container.into(), previous),
            Arc::new(entries),
        );
    }
    Ok(())
}

fn containers(spec: Option<&PodSpec>) -> impl Iterator<Item = (&str, &str)> {
    spec.into_iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or_default()))
}

/// Every image the fixtures mention, with where.
fn images(state: &State) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut add = |image: &str, at: String| {
        out.entry(image.to_string()).or_insert(at);
    };
    for d in &state.deployments {
        let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        for (_, image) in containers(spec) {
            add(
                image,
                format!(
                    "Deployment {}/{}",
                    view::namespace(&d.metadata),
                    view::name(&d.metadata)
                ),
            );
        }
    }
    for rs in &state.replica_sets {
        let spec = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref());
        for (_, image) in containers(spec) {
            add(
                image,
                format!(
                    "ReplicaSet {}/{}",
                    view::namespace(&rs.metadata),
                    view::name(&rs.metadata)
                ),
            );
        }
    }
    for p in &state.pods {
        let at = || format!("Pod {}/{}", p.namespace(), p.name());
        for (_, image) in containers(p.pod.spec.as_ref()) {
            add(image, at());
        }
        for s in p
            .pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
        {
            add(&s.image, at());
        }
    }
    out
}

/// What a fixture pod's container shows of its image.
enum Evidence {
    PullFails,
    CrashLoop(String, i32),
    Ready,
    Other,
}

fn evidence(pod: &Pod) -> Vec<(String, Evidence)> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| {
            let waiting = c
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref());
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let evidence = match waiting {
                Some("ErrImagePull" | "ImagePullBackOff") => Evidence::PullFails,
                Some("CrashLoopBackOff") => Evidence::CrashLoop(
                    last.and_then(|t| t.reason.clone())
                        .unwrap_or_else(|| "Error".into()),
                    last.map_or(1, |t| t.exit_code),
                ),
                _ if c.ready => Evidence::Ready,
                _ => Evidence::Other,
            };
            (c.image.clone(), evidence)
        })
        .collect()
}

/// A registry for fixtures that bring none: every image they use, behaving as their pods
/// show (a crash loop, a failed pull), else serving with the service's metrics when healthy.
fn derived_registry(state: &State) -> Registry {
    let mut behaviours: BTreeMap<String, Behaviour> = BTreeMap::new();
    for p in &state.pods {
        for (image, evidence) in evidence(&p.pod) {
            let behaviour = match evidence {
                Evidence::PullFails => Behaviour::Missing,
                Evidence::CrashLoop(reason, exit_code) => Behaviour::CrashLoop(Crash {
                    reason,
                    exit_code,
                    runs_for: 6.0,
                    log: Vec::new(),
                    startup: true,
                }),
                _ => continue,
            };
            behaviours.insert(image, behaviour);
        }
    }
    let healthy_profile = |image: &str| {
        let owner = state
            .pods
            .iter()
            .find(|p| containers(p.pod.spec.as_ref()).any(|(_, i)| i == image));
        let service = owner
            .and_then(|p| view::pod_deployment(&p.pod).map(|d| (p.namespace().to_string(), d)));
        let metrics = service.and_then(|(ns, d)| {
            state.metrics.iter().find(|m| {
                m.namespace == ns && m.service == d && m.status() == HealthStatus::Healthy
            })
        });
        Profile {
            error_rate: metrics.and_then(|m| m.error_rate).unwrap_or(0.001),
            p50_ms: metrics.and_then(|m| m.p50_ms).unwrap_or(20.0),
            p99_ms: metrics.and_then(|m| m.p99_ms).unwrap_or(120.0),
        }
    };
    let mut registry = Registry::default();
    for image in images(state).into_keys() {
        let Ok(reference) = registry::parse_image(&image) else {
            continue;
        };
        let Some(tag) = reference.tag.clone() else {
            continue;
        };
        let behaviour = behaviours
            .remove(&image)
            .unwrap_or_else(|| Behaviour::Healthy(healthy_profile(&image)));
        registry
            .repositories
            .entry(reference.repository.clone())
            .or_insert_with(|| Repository {
                image_size: 100_000_000
                    + u64::from(names::between(&[&reference.repository], 0, 150_000_000)),
                logs: registry::generic_logs(),
                tags: BTreeMap::new(),
            })
            .tags
            .insert(tag, behaviour);
    }
    registry
}

fn key(m: &ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn owner_of(refs: &Option<Vec<OwnerReference>>, kind: &str) -> Option<String> {
    refs.iter()
        .flatten()
        .find(|o| o.kind == kind)
        .map(|o| o.name.clone())
}

/// Every cross-reference in the cluster, checked. Empty when consistent.
pub fn consistency_problems(state: &State) -> Vec<String> {
    let mut problems = Vec::new();
    let namespaces: BTreeSet<&str> = state
        .namespaces
        .iter()
        .map(|n| view::name(&n.metadata))
        .collect();
    let deployments: BTreeSet<_> = state.deployments.iter().map(|d| key(&d.metadata)).collect();
    let replica_sets: BTreeSet<_> = state
        .replica_sets
        .iter()
        .map(|r| key(&r.metadata))
        .collect();
    let pods: BTreeSet<_> = state.pods.iter().map(|p| key(&p.pod.metadata)).collect();
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
    for rs in &state.replica_sets {
        let (ns, name) = key(&rs.metadata);
        match owner_of(&rs.metadata.owner_references, "Deployment") {
            Some(owner) if deployments.contains(&(ns.clone(), owner.clone())) => {}
            Some(owner) => problems.push(format!(
                "ReplicaSet {ns}/{name}: owner Deployment {owner} does not exist"
            )),
            None => problems.push(format!("ReplicaSet {ns}/{name}: no owner Deployment")),
        }
    }
    for entry in &state.pods {
        let pod = &entry.pod;
        let (ns, name) = key(&pod.metadata);
        match owner_of(&pod.metadata.owner_references, "ReplicaSet") {
            Some(owner) if replica_sets.contains(&(ns.clone(), owner.clone())) => {
                let hash = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("pod-template-hash"));
                if hash.is_none_or(|h| !owner.ends_with(&format!("-{h}"))) {
                    problems.push(format!(
                        "Pod {ns}/{name}: pod-template-hash label does not match ReplicaSet {owner}"
                    ));
                }
            }
            Some(owner) => problems.push(format!(
                "Pod {ns}/{name}: owner ReplicaSet {owner} does not exist"
            )),
            None => problems.push(format!("Pod {ns}/{name}: no owner ReplicaSet")),
        }
    }
    let nodes: BTreeSet<&str> = state
        .nodes
        .iter()
        .map(|n| view::name(&n.metadata))
        .collect();
    for event in &state.events {
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        let obj = &event.involved_object;
        let target = (
            obj.namespace.clone().unwrap_or_else(|| ns.clone()),
            obj.name.clone().unwrap_or_default(),
        );
        let exists = match obj.kind.as_deref() {
            // Events outlive the pods the demo deleted, as on a real cluster.
            Some("Pod") => pods.contains(&target) || state.departed.contains(&target),
            Some("ReplicaSet") => {
                replica_sets.contains(&target) || state.departed.contains(&target)
            }
            Some("Deployment") => deployments.contains(&target),
            Some("Node") => nodes.contains(target.1.as_str()),
            _ => false,
        };
        if !exists {
            problems.push(format!(
                "Event {ns}/{}: involved object {}/{} does not exist",
                view::name(&event.metadata),
                obj.kind.as_deref().unwrap_or("?"),
                target.1
            ));
        }
    }
    for (ns, pod, container, _) in state.logs.keys() {
        let found = state
            .pods
            .iter()
            .find(|p| p.namespace() == ns && p.name() == pod);
        let has_container = found
            .and_then(|p| p.pod.spec.as_ref())
            .is_some_and(|s| s.containers.iter().any(|c| &c.name == container));
        if !has_container {
            problems.push(format!(
                "logs for {ns}/{pod}/{container}: no such pod container"
            ));
        }
    }
    for metrics in &state.metrics {
        if !deployments.contains(&(metrics.namespace.clone(), metrics.service.clone())) {
            problems.push(format!(
                "metrics for {}/{}: no such deployment",
                metrics.namespace, metrics.service
            ));
        }
    }
    if state.registry.from_file {
        registry_problems(state, &mut problems);
    }
    problems
}

/// What fixtures that bring a registry promise for writes: the registry lists every image they
/// use and says of each what its pods show, and each Deployment's template is its current
/// ReplicaSet's.
fn registry_problems(state: &State, problems: &mut Vec<String>) {
    // The controllers find a deployment's ReplicaSet by its template (fixture sets that do not
    // prepare for writes are not held to it: the controllers fall back to the revision).
    for d in &state.deployments {
        let Some(revision) = view::revision(&d.metadata) else {
            continue;
        };
        let current = state.replica_sets.iter().find(|rs| {
            view::namespace(&rs.metadata) == view::namespace(&d.metadata)
                && view::replica_set_deployment(rs) == Some(view::name(&d.metadata))
                && view::revision(&rs.metadata) == Some(revision)
        });
        let same = current
            .and_then(|rs| rs.spec.as_ref()?.template.as_ref())
            .zip(d.spec.as_ref())
            .is_some_and(|(t, s)| unhashed(t) == s.template);
        if !same {
            problems.push(format!(
                "Deployment {}/{}: its template is not the template of its revision-{revision} ReplicaSet",
                view::namespace(&d.metadata),
                view::name(&d.metadata)
            ));
        }
    }
    for (image, at) in images(state) {
        if state.registry.listed(&image).is_none() {
            problems.push(format!("image {image} ({at}) is not in {REGISTRY_FILE}"));
        }
    }
    for entry in state.pods.iter().filter(|p| p.sim.is_none()) {
        let at = format!("Pod {}/{}", entry.namespace(), entry.name());
        for (image, evidence) in evidence(&entry.pod) {
            let Some(behaviour) = state.registry.listed(&image) else {
                continue;
            };
            let contradiction = match (&evidence, behaviour) {
                (Evidence::PullFails, Behaviour::Missing) => None,
                (Evidence::PullFails, _) => {
                    Some("fails to pull it, but the registry has it".to_string())
                }
                (_, Behaviour::Missing) => {
                    Some("runs it, but the registry says it is missing".into())
                }
                (Evidence::CrashLoop(reason, _), Behaviour::CrashLoop(c))
                    if *reason != c.reason =>
                {
                    Some(format!(
                        "crash-loops with {reason}, the registry says {}",
                        c.reason
                    ))
                }
                (Evidence::CrashLoop(..), Behaviour::Healthy(_)) => {
                    Some("crash-loops, but the registry says the tag is healthy".into())
                }
                (Evidence::Ready, Behaviour::CrashLoop(_)) => {
                    Some("is ready, but the registry says the tag crash-loops".into())
                }
                _ => None,
            };
            if let Some(c) = contradiction {
                problems.push(format!("{at} {c} ({image})"));
            }
        }
    }
}
