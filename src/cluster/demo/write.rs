//! Writes to a Deployment's spec: validated as the API server would (with the valid values in
//! the error), refused on a stale resourceVersion with what changed since, answered as the
//! object would be for a dry run, else stored with a new generation, revision and ReplicaSet
//! (reused when the template is an earlier revision's, as on a rollback) for the controllers
//! to roll out.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

use super::controller::{self, unhashed};
use super::names;
use super::registry::{Behaviour, Profile, Pull, parse_image};
use super::state::{State, Track};
use crate::cluster::{
    CHANGE_CAUSE_ANNOTATION, ClusterError, ClusterResult, DEPLOYED_BY_ANNOTATION, DeploymentChange,
    DeploymentWrite, RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION, view,
};
use crate::util::timefmt::rfc3339;

/// The replica counts a write may set.
pub const REPLICAS: std::ops::RangeInclusive<i32> = 0..=50;
const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";

/// What a write changes.
enum Target {
    /// Nothing: the spec already is what was asked.
    Unchanged,
    Scale,
    /// A new revision: an existing ReplicaSet with this template, or a new one.
    Rollout {
        revision: i64,
        reuse: Option<usize>,
        template: Box<PodTemplateSpec>,
    },
}

struct Plan {
    deployment: Deployment,
    target: Target,
    what: String,
}

fn invalid(message: String) -> ClusterError {
    ClusterError::Invalid(message)
}

fn check_image(image: &str) -> ClusterResult<()> {
    parse_image(image).map(|_| ()).map_err(|reason| {
        invalid(format!(
            "image {image:?} is not a valid image reference: {reason} (expected [registry/]repository[:tag][@sha256:digest], e.g. registry.acme.internal/payments/payment-gateway:2.13.2)"
        ))
    })
}

fn plan(state: &State, index: usize, write: &DeploymentWrite) -> ClusterResult<Plan> {
    let current = &state.deployments[index];
    let full = format!("{}/{}", write.namespace, write.name);
    let spec = current
        .spec
        .as_ref()
        .ok_or_else(|| invalid(format!("deployment {full} has no spec")))?;
    let mut deployment = current.clone();
    let mut template = spec.template.clone();
    let what = match &write.change {
        DeploymentChange::Replicas(n) => {
            if !REPLICAS.contains(n) {
                return Err(invalid(format!(
                    "replicas must be between {} and {} (got {n})",
                    REPLICAS.start(),
                    REPLICAS.end()
                )));
            }
            let before = view::desired_replicas(current);
            if *n == before {
                return Ok(Plan {
                    deployment,
                    target: Target::Unchanged,
                    what: String::new(),
                });
            }
            if let Some(spec) = deployment.spec.as_mut() {
                spec.replicas = Some(*n);
            }
            deployment.metadata.generation = Some(current.metadata.generation.unwrap_or(1) + 1);
            return Ok(Plan {
                deployment,
                target: Target::Scale,
                what: format!("spec: replicas {before} -> {n}"),
            });
        }
        DeploymentChange::Image { container, image } => {
            check_image(image)?;
            let containers = template.spec.as_mut().map(|s| &mut s.containers);
            let names: Vec<String> = containers
                .as_ref()
                .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            let target = containers
                .and_then(|cs| cs.iter_mut().find(|c| &c.name == container))
                .ok_or_else(|| {
                    invalid(format!(
                        "deployment {full} has no container {container:?}; its containers: {}",
                        names.join(", ")
                    ))
                })?;
            target.image = Some(image.clone());
            format!("spec: image of container {container} -> {image}")
        }
        DeploymentChange::Restart { at } => {
            let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(RESTARTED_AT_ANNOTATION.into(), rfc3339(*at));
            format!("spec: restart at {}", rfc3339(*at))
        }
        DeploymentChange::Template {
            revision,
            template: wanted,
        } => {
            let owned = state.owned_replica_sets(&write.namespace, &write.name);
            let mut revisions: Vec<i64> = owned
                .iter()
                .filter_map(|&i| view::revision(&state.replica_sets[i].metadata))
                .collect();
            revisions.sort_unstable();
            if !revisions.contains(revision) {
                return Err(invalid(format!(
                    "deployment {full} has no revision {revision}; its revisions: {}",
                    revisions
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let wanted = unhashed(wanted);
            let containers = wanted
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or_default();
            if containers.is_empty() {
                return Err(invalid(format!(
                    "the template of revision {revision} has no containers"
                )));
            }
            for c in containers {
                check_image(c.image.as_deref().unwrap_or_default())?;
            }
            template = wanted;
            format!("spec: template of revision {revision}")
        }
    };
    if template == spec.template {
        return Ok(Plan {
            deployment,
            target: Target::Unchanged,
            what: String::new(),
        });
    }
    let owned = state.owned_replica_sets(&write.namespace, &write.name);
    let revision = owned
        .iter()
        .filter_map(|&i| view::revision(&state.replica_sets[i].metadata))
        .chain(view::revision(&current.metadata))
        .max()
        .unwrap_or(0)
        + 1;
    let reuse = owned.iter().copied().find(|&i| {
        state.replica_sets[i]
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| unhashed(t) == template)
    });
    if let Some(spec) = deployment.spec.as_mut() {
        spec.template = template.clone();
    }
    deployment.metadata.generation = Some(current.metadata.generation.unwrap_or(1) + 1);
    let annotations = deployment
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(REVISION_ANNOTATION.into(), revision.to_string());
    if !write.change_cause.is_empty() {
        annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), write.change_cause.clone());
    }
    if !write.deployed_by.is_empty() {
        annotations.insert(DEPLOYED_BY_ANNOTATION.into(), write.deployed_by.clone());
    }
    Ok(Plan {
        deployment,
        target: Target::Rollout {
            revision,
            reuse,
            template: Box::new(template),
        },
        what: format!("{what} (revision {revision}{})", by(write)),
    })
}

fn by(write: &DeploymentWrite) -> String {
    if write.deployed_by.is_empty() {
        String::new()
    } else {
        format!(", by {}", write.deployed_by)
    }
}

/// Refuses a write made against an older version of the Deployment, saying what changed.
fn check_version(state: &State, index: usize, write: &DeploymentWrite) -> ClusterResult<()> {
    let Some(expected) = &write.resource_version else {
        return Ok(());
    };
    let meta = &state.deployments[index].metadata;
    let current = meta.resource_version.clone().unwrap_or_default();
    if *expected == current {
        return Ok(());
    }
    let full = format!("{}/{}", write.namespace, write.name);
    let Some(since) = expected
        .parse::<u64>()
        .ok()
        .filter(|v| current.parse::<u64>().is_ok_and(|c| *v < c))
    else {
        return Err(ClusterError::Conflict {
            message: format!(
                "deployment {full}: resourceVersion {expected:?} is not one it had (now {current}); read it again"
            ),
        });
    };
    let key = (write.namespace.clone(), write.name.clone());
    let changes: Vec<_> = state
        .changes
        .get(&key)
        .into_iter()
        .flatten()
        .filter(|c| c.resource_version > since)
        .collect();
    let mut parts: Vec<String> = changes
        .iter()
        .filter(|c| c.spec)
        .map(|c| c.what.clone())
        .collect();
    let status: Vec<_> = changes.iter().filter(|c| !c.spec).collect();
    if let Some(last) = status.last() {
        parts.push(format!(
            "{} status update{} by the controllers (latest: {})",
            status.len(),
            if status.len() == 1 { "" } else { "s" },
            last.what.trim_start_matches("status: ")
        ));
    }
    if parts.is_empty() {
        parts.push("changed by another writer".into());
    }
    Err(ClusterError::Conflict {
        message: format!(
            "deployment {full} changed since resourceVersion {expected} (now {current}): {}; the write was not made, read it again and review the change",
            parts.join("; ")
        ),
    })
}

/// The healthy profile of the deployment's main container's image (the container named
/// like the deployment, else the first), when its tag serves.
fn profile(state: &State, deployment: &Deployment) -> Option<Profile> {
    let spec = deployment.spec.as_ref()?.template.spec.as_ref()?;
    let name = view::name(&deployment.metadata);
    let main = spec
        .containers
        .iter()
        .find(|c| c.name == name)
        .or(spec.containers.first())?;
    match state.registry.pull(main.image.as_deref()?) {
        Pull::Found {
            behaviour: Behaviour::Healthy(profile),
            ..
        } => Some(*profile),
        _ => None,
    }
}

/// A ReplicaSet for a template no ReplicaSet has: named after a hash of the template.
fn new_replica_set(
    state: &State,
    deployment: &Deployment,
    template: &PodTemplateSpec,
    revision: i64,
    write: &DeploymentWrite,
    t: Timestamp,
) -> ReplicaSet {
    let serialized = serde_json::to_string(template).unwrap_or_default();
    let name_of = |collisions: u32| {
        let hash = names::suffix(&[&serialized, &collisions.to_string()], 10);
        (format!("{}-{hash}", write.name), hash)
    };
    let mut collisions = 0;
    let (name, hash) = loop {
        let (name, hash) = name_of(collisions);
        let taken = state.replica_sets.iter().any(|rs| {
            view::namespace(&rs.metadata) == write.namespace && view::name(&rs.metadata) == name
        });
        if !taken {
            break (name, hash);
        }
        collisions += 1;
    };
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert("pod-template-hash".into(), hash.clone());
    let mut selector = deployment
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert("pod-template-hash".into(), hash);
    let mut annotations = BTreeMap::new();
    annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
    if !write.change_cause.is_empty() {
        annotations.insert(
            CHANGE_CAUSE_ANNOTATION.to_string(),
            write.change_cause.clone(),
        );
    }
    if !write.deployed_by.is_empty() {
        annotations.insert(
            DEPLOYED_BY_ANNOTATION.to_string(),
            write.deployed_by.clone(),
        );
    }
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(write.namespace.clone()),
            uid: Some(names::uid(&["replicaset", &write.namespace, &name])),
            generation: Some(1),
            creation_timestamp: Some(Time(t)),
            labels: meta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: write.name.clone(),
                uid: deployment.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            selector: LabelSelector {
                match_labels: selector.match_labels,
                match_expressions: selector.match_expressions,
            },
            template: Some(template),
            min_ready_seconds: None,
        }),
        status: Some(ReplicaSetStatus {
            replicas: 0,
            fully_labeled_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            observed_generation: Some(1),
            ..ReplicaSetStatus::default()
        }),
    }
}

/// Makes (or with `dry_run` only answers) one write at `t`; the controllers act on it at once.
pub fn write(
    state: &mut State,
    write: &DeploymentWrite,
    t: Timestamp,
) -> ClusterResult<Deployment> {
    let Some(index) = state.deployment_index(&write.namespace, &write.name) else {
        let existing = state
            .deployments
            .iter()
            .filter(|d| view::namespace(&d.metadata) == write.namespace)
            .map(|d| view::name(&d.metadata).to_string())
            .collect();
        return Err(ClusterError::NotFound {
            kind: "deployment",
            name: write.name.clone(),
            namespace: Some(write.namespace.clone()),
            existing: Some(existing),
        });
    };
    let plan = plan(state, index, write)?;
    check_version(state, index, write)?;
    if write.dry_run {
        return Ok(plan.deployment);
    }
    let key = (write.namespace.clone(), write.name.clone());
    match plan.target {
        Target::Unchanged => return Ok(plan.deployment),
        Target::Scale => {
            state.managed.entry(key).or_default();
        }
        Target::Rollout {
            revision,
            reuse,
            template,
        } => {
            let pending = match reuse {
                Some(i) => {
                    let rs = &mut state.replica_sets[i];
                    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
                    if let Some(old) = annotations.get(REVISION_ANNOTATION).cloned() {
                        let history = match annotations.get(REVISION_HISTORY_ANNOTATION) {
                            Some(h) if !h.is_empty() => format!("{h},{old}"),
                            _ => old,
                        };
                        annotations.insert(REVISION_HISTORY_ANNOTATION.into(), history);
                    }
                    annotations.insert(REVISION_ANNOTATION.into(), revision.to_string());
                    if !write.change_cause.is_empty() {
                        annotations
                            .insert(CHANGE_CAUSE_ANNOTATION.into(), write.change_cause.clone());
                    }
                    if !write.deployed_by.is_empty() {
                        annotations
                            .insert(DEPLOYED_BY_ANNOTATION.into(), write.deployed_by.clone());
                    }
                    let name = view::name(&rs.metadata);
                    (
                        "FoundNewReplicaSet",
                        format!("Found new replica set \"{name}\""),
                    )
                }
                None => {
                    let rs =
                        new_replica_set(state, &plan.deployment, &template, revision, write, t);
                    let message =
                        format!("Created new replica set \"{}\"", view::name(&rs.metadata));
                    state.replica_sets.push(rs);
                    ("NewReplicaSetCreated", message)
                }
            };
            let track = Track {
                revision: Some(revision),
                profile: profile(state, &plan.deployment),
                pending: Some((pending.0.to_string(), pending.1)),
            };
            state.managed.insert(key, track);
        }
    }
    state.deployments[index] = plan.deployment;
    state.bump(index, true, plan.what);
    let stored = state.deployments[index].clone();
    controller::step(state, t);
    Ok(stored)
}
