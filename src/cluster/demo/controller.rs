//! The deployment controller, for deployments the demo was asked to change: a rolling update
//! as Kubernetes makes it (maxSurge / maxUnavailable from the Deployment, unavailable old pods
//! scaled away first, one scaling move per sync), its status and conditions as the controller
//! writes them, the progress deadline, and the service's metrics once a rollout completes.
//! Untouched deployments keep their fixture state. One [`step`] runs every controller.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::events::{self, EventSpec, reference};
use super::kubelet::after;
use super::replicaset::{
    available, bind_waiting, spec_replicas, sync_replica_set, update_replica_set_status,
};
use super::state::State;
use crate::cluster::{Alert, view};

/// Between two syncs of one deployment: each sync makes one scaling move.
const SYNC: f64 = 0.05;
/// progressDeadlineSeconds is divided by this, so a stalled demo rollout times out in seconds
/// (the default 600 s becomes 20 s).
pub const DEADLINE_SCALE: f64 = 30.0;
/// The alert that fires while a rollout has timed out.
const STUCK_ALERT: &str = "KubeDeploymentRolloutStuck";

/// One controller pass at `t`: departed pods leave, waiting pods are placed, every written-to
/// deployment is synced.
pub fn step(state: &mut State, t: Timestamp) {
    state.now = t;
    state.remove_departed(t);
    bind_waiting(state, t);
    let managed: Vec<(String, String)> = state.managed.keys().cloned().collect();
    for (namespace, name) in managed {
        sync_deployment(state, &namespace, &name, t);
    }
}

/// maxSurge and maxUnavailable resolved against the desired count, as the controller does.
#[derive(Debug, Clone, Copy)]
struct Strategy {
    recreate: bool,
    surge: i32,
    unavailable: i32,
}

fn resolve(value: Option<&IntOrString>, desired: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let percent: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let exact = f64::from(desired) * percent / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
        None => {
            let exact = f64::from(desired) * 0.25;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

impl Strategy {
    fn of(deployment: &Deployment, desired: i32) -> Strategy {
        let strategy = deployment.spec.as_ref().and_then(|s| s.strategy.as_ref());
        let recreate = strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
        let mut unavailable = resolve(
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            desired,
            false,
        );
        // Both zero would deadlock; the controller lets one pod be unavailable then.
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Strategy {
            recreate,
            surge,
            unavailable: unavailable.min(desired),
        }
    }
}

/// The progress deadline in demo seconds.
pub fn deadline_secs(deployment: &Deployment) -> f64 {
    let seconds = deployment
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    f64::from(seconds) / DEADLINE_SCALE
}

/// The template without the `pod-template-hash` label: what decides which ReplicaSet a
/// template belongs to.
pub fn unhashed(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove("pod-template-hash");
    }
    t
}

/// The ReplicaSet running the deployment's current template.
fn new_replica_set(state: &State, deployment: &Deployment, owned: &[usize]) -> Option<usize> {
    let template = &deployment.spec.as_ref()?.template;
    owned
        .iter()
        .copied()
        .find(|&i| {
            state.replica_sets[i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| unhashed(t) == *template)
        })
        .or_else(|| {
            let revision = view::revision(&deployment.metadata)?;
            owned
                .iter()
                .copied()
                .find(|&i| view::revision(&state.replica_sets[i].metadata) == Some(revision))
        })
}

fn sync_deployment(state: &mut State, namespace: &str, name: &str, t: Timestamp) {
    let Some(di) = state.deployment_index(namespace, name) else {
        return;
    };
    let deployment = state.deployments[di].clone();
    let desired = view::desired_replicas(&deployment);
    let strategy = Strategy::of(&deployment, desired);
    let owned = state.owned_replica_sets(namespace, name);
    let Some(new) = new_replica_set(state, &deployment, &owned) else {
        return;
    };
    let mut olds: Vec<usize> = owned.iter().copied().filter(|&i| i != new).collect();
    // Oldest first, as the controller scales them down.
    olds.sort_by_key(|&i| {
        let m = &state.replica_sets[i].metadata;
        (
            m.creation_timestamp.as_ref().map(|c| c.0),
            view::name(m).to_string(),
        )
    });
    let scaled = if strategy.recreate {
        recreate(state, di, new, &olds, desired, t)
    } else {
        rolling(state, di, new, &olds, desired, strategy, t)
    };
    for &rs in &owned {
        sync_replica_set(state, rs, t);
    }
    for &rs in &owned {
        update_replica_set_status(state, rs, t);
    }
    update_status(state, di, new, &owned, strategy, t);
    if scaled {
        state.wake(after(t, SYNC));
    }
    clean_up_history(state, di, new, &olds);
}

/// Sets a ReplicaSet's replicas as the deployment controller does, with its event.
fn scale(state: &mut State, di: usize, rs: usize, to: i32, desired: i32, surge: i32, t: Timestamp) {
    let from = spec_replicas(state, rs);
    if from == to {
        return;
    }
    let set = &mut state.replica_sets[rs];
    if let Some(spec) = set.spec.as_mut() {
        spec.replicas = Some(to);
    }
    set.metadata.generation = Some(set.metadata.generation.unwrap_or(1) + 1);
    let annotations = set
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(
        "deployment.kubernetes.io/desired-replicas".into(),
        desired.to_string(),
    );
    annotations.insert(
        "deployment.kubernetes.io/max-replicas".into(),
        (desired + surge).to_string(),
    );
    let rs_name = view::name(&set.metadata).to_string();
    let direction = if to > from { "up" } else { "down" };
    let spec = EventSpec::once(
        reference("Deployment", &state.deployments[di].metadata, None),
        false,
        "ScalingReplicaSet",
        format!("Scaled {direction} replica set {rs_name} to {to} from {from}"),
        "deployment-controller",
        t,
    );
    events::record(&mut state.events, spec);
}

/// One move of a rolling update: scale the new ReplicaSet up within maxSurge, else scale old
/// ones down within maxUnavailable (unhealthy pods first). True when something was scaled.
fn rolling(
    state: &mut State,
    di: usize,
    new: usize,
    olds: &[usize],
    desired: i32,
    strategy: Strategy,
    t: Timestamp,
) -> bool {
    let surge = strategy.surge;
    let new_spec = spec_replicas(state, new);
    let all: i32 = new_spec + olds.iter().map(|&i| spec_replicas(state, i)).sum::<i32>();
    if new_spec > desired {
        scale(state, di, new, desired, desired, surge, t);
        return true;
    }
    if new_spec < desired {
        let room = (desired + surge - all).min(desired - new_spec);
        if room > 0 {
            scale(state, di, new, new_spec + room, desired, surge, t);
            return true;
        }
    }
    if olds.iter().all(|&i| spec_replicas(state, i) == 0) {
        return false;
    }
    let min_available = desired - strategy.unavailable;
    let new_unavailable = new_spec - available(state, new, t);
    let max_down = all - min_available - new_unavailable;
    if max_down <= 0 {
        return false;
    }
    let mut scaled = false;
    // Old pods that are not available anyway go first.
    let mut down = 0;
    for &rs in olds {
        if down >= max_down {
            break;
        }
        let (spec, ready) = (spec_replicas(state, rs), available(state, rs, t));
        if spec == 0 || spec <= ready {
            continue;
        }
        let by = (max_down - down).min(spec - ready);
        scale(state, di, rs, spec - by, desired, surge, t);
        down += by;
        scaled = true;
    }
    // Then available ones, keeping the minimum available.
    let available_all: i32 =
        available(state, new, t) + olds.iter().map(|&i| available(state, i, t)).sum::<i32>();
    let max_down = available_all - min_available;
    let mut down = 0;
    for &rs in olds {
        if down >= max_down {
            break;
        }
        let spec = spec_replicas(state, rs);
        if spec == 0 {
            continue;
        }
        let by = spec.min(max_down - down);
        scale(state, di, rs, spec - by, desired, surge, t);
        down += by;
        scaled = true;
    }
    scaled
}

/// Recreate: every old pod goes, then the new ReplicaSet scales up.
fn recreate(
    state: &mut State,
    di: usize,
    new: usize,
    olds: &[usize],
    desired: i32,
    t: Timestamp,
) -> bool {
    let mut scaled = false;
    for &rs in olds {
        if spec_replicas(state, rs) > 0 {
            scale(state, di, rs, 0, desired, 0, t);
            scaled = true;
        }
    }
    if scaled {
        return true;
    }
    let old_names: Vec<String> = olds
        .iter()
        .map(|&i| view::name(&state.replica_sets[i].metadata).to_string())
        .collect();
    let old_pods_left = state
        .pods
        .iter()
        .any(|p| p.owner().is_some_and(|o| old_names.iter().any(|n| n == o)));
    if old_pods_left || spec_replicas(state, new) == desired {
        return false;
    }
    scale(state, di, new, desired, desired, 0, t);
    true
}

/// Sets a condition the way the controller's SetDeploymentCondition does: unchanged when the
/// status and reason are; the transition time kept when only the reason changes.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    mut condition: DeploymentCondition,
    force: bool,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if !force && existing.status == condition.status && existing.reason == condition.reason
            {
                return false;
            }
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
    true
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    t: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(t)),
        last_transition_time: Some(Time(t)),
    }
}

/// The deployment's status as the controller computes it, its conditions, and what follows
/// from them: the deadline timer, the stuck alert, metrics once the rollout completed.
fn update_status(
    state: &mut State,
    di: usize,
    new: usize,
    owned: &[usize],
    strategy: Strategy,
    t: Timestamp,
) {
    let deployment = &state.deployments[di];
    let key = (
        view::namespace(&deployment.metadata).to_string(),
        view::name(&deployment.metadata).to_string(),
    );
    let desired = view::desired_replicas(deployment);
    let old = deployment.status.clone().unwrap_or_default();
    let status_of = |i: usize| state.replica_sets[i].status.clone().unwrap_or_default();
    let replicas: i32 = owned.iter().map(|&i| status_of(i).replicas).sum();
    let ready: i32 = owned
        .iter()
        .map(|&i| status_of(i).ready_replicas.unwrap_or(0))
        .sum();
    let available: i32 = owned
        .iter()
        .map(|&i| status_of(i).available_replicas.unwrap_or(0))
        .sum();
    let updated = status_of(new).replicas;
    let wanted: i32 = owned.iter().map(|&i| spec_replicas(state, i)).sum();
    let generation = deployment.metadata.generation;
    let new_name = view::name(&state.replica_sets[new].metadata).to_string();
    let deadline = deadline_secs(deployment);
    let mut status = DeploymentStatus {
        observed_generation: generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((wanted - available).max(0)).filter(|u| *u > 0),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        ..DeploymentStatus::default()
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if available >= desired - strategy.unavailable {
        set_condition(
            conditions,
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                t,
            ),
            false,
        );
    } else {
        set_condition(
            conditions,
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                t,
            ),
            false,
        );
    }
    let mut deadline_from = None;
    if let Some((reason, message)) = state
        .managed
        .get_mut(&key)
        .and_then(|track| track.pending.take())
    {
        set_condition(
            conditions,
            condition("Progressing", true, &reason, message, t),
            false,
        );
        deadline_from = Some(t);
    }
    let complete = updated == desired
        && replicas == desired
        && available == desired
        && status.observed_generation >= generation;
    let progressed = updated > old.updated_replicas.unwrap_or(0)
        || replicas - updated < old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0)
        || ready > old.ready_replicas.unwrap_or(0)
        || available > old.available_replicas.unwrap_or(0);
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .cloned();
    let mut timed_out_now = false;
    if complete {
        set_condition(
            conditions,
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                t,
            ),
            false,
        );
    } else if progressed {
        set_condition(
            conditions,
            condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{new_name}\" is progressing."),
                t,
            ),
            true,
        );
        deadline_from = Some(t);
    } else if let Some(p) = &progressing
        && p.reason.as_deref() != Some("NewReplicaSetAvailable")
        && p.reason.as_deref() != Some("ProgressDeadlineExceeded")
        && p.last_update_time
            .as_ref()
            .is_some_and(|u| after(u.0, deadline) <= t)
    {
        timed_out_now = set_condition(
            conditions,
            condition(
                "Progressing",
                false,
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                t,
            ),
            false,
        );
    }
    if let Some(from) = deadline_from {
        // A moment after the deadline, so the check above sees it passed.
        state.wake(after(from, deadline + 0.001));
    }
    let progressing_now = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .map(|c| (c.status.clone(), c.reason.clone()));
    if Some(&status) != state.deployments[di].status.as_ref() {
        let summary = format!(
            "status: {updated}/{desired} updated, {available} available{}",
            progressing_now
                .as_ref()
                .and_then(|(_, r)| r.as_ref())
                .map(|r| format!(", Progressing {r}"))
                .unwrap_or_default()
        );
        state.deployments[di].status = Some(status);
        state.bump(di, false, summary);
    }
    follow_metrics(state, di, new, complete, timed_out_now, progressing_now, t);
}

/// The service's metrics follow its rollouts: a completed rollout to a healthy tag switches
/// them to the tag's profile (the old incident's alerts resolve); a rollout that timed out
/// fires the stuck alert until it progresses again.
fn follow_metrics(
    state: &mut State,
    di: usize,
    new: usize,
    complete: bool,
    timed_out_now: bool,
    progressing: Option<(String, Option<String>)>,
    t: Timestamp,
) {
    let deployment = &state.deployments[di];
    let (namespace, name) = (
        view::namespace(&deployment.metadata).to_string(),
        view::name(&deployment.metadata).to_string(),
    );
    let key = (namespace.clone(), name.clone());
    let revision = view::revision(&state.replica_sets[new].metadata);
    let desired = view::desired_replicas(deployment);
    let status = deployment.status.clone().unwrap_or_default();
    let Some(metrics) = state
        .metrics
        .iter_mut()
        .find(|m| m.namespace == namespace && m.service == name)
    else {
        return;
    };
    if complete
        && let Some(track) = state.managed.get_mut(&key)
        && track.revision.is_some()
        && track.revision == revision
    {
        if let Some(profile) = track.profile {
            metrics.error_rate = Some(profile.error_rate);
            metrics.p50_ms = Some(profile.p50_ms);
            metrics.p99_ms = Some(profile.p99_ms);
            metrics.alerts.clear();
        }
        track.revision = None;
    }
    if timed_out_now {
        metrics.alerts.retain(|a| a.name != STUCK_ALERT);
        metrics.alerts.push(Alert {
            name: STUCK_ALERT.into(),
            severity: "warning".into(),
            since: t,
            summary: format!(
                "Rollout of {namespace}/{name} to revision {} has made no progress ({}/{desired} updated, {} available)",
                revision.map_or("?".into(), |r| r.to_string()),
                status.updated_replicas.unwrap_or(0),
                status.available_replicas.unwrap_or(0)
            ),
        });
    } else if progressing.is_some_and(|(s, _)| s == "True") {
        metrics.alerts.retain(|a| a.name != STUCK_ALERT);
    }
}

/// Old ReplicaSets beyond revisionHistoryLimit go once the rollout is complete.
fn clean_up_history(state: &mut State, di: usize, new: usize, olds: &[usize]) {
    let complete = state.deployments[di]
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable"));
    if !complete {
        return;
    }
    let limit = state.deployments[di]
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let new_name = view::name(&state.replica_sets[new].metadata).to_string();
    let mut idle: Vec<(i64, String)> = olds
        .iter()
        .map(|&i| &state.replica_sets[i])
        .filter(|rs| {
            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0
                && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
        })
        .map(|rs| {
            (
                view::revision(&rs.metadata).unwrap_or(0),
                view::name(&rs.metadata).to_string(),
            )
        })
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort();
    let namespace = view::namespace(&state.deployments[di].metadata).to_string();
    let doomed: Vec<String> = idle[..idle.len() - limit]
        .iter()
        .map(|(_, n)| n.clone())
        .collect();
    let has_pods = |name: &str| {
        state
            .pods
            .iter()
            .any(|p| p.namespace() == namespace && p.owner() == Some(name))
    };
    let doomed: Vec<String> = doomed
        .into_iter()
        .filter(|n| *n != new_name && !has_pods(n))
        .collect();
    state.replica_sets.retain(|rs| {
        !(view::namespace(&rs.metadata) == namespace
            && doomed.iter().any(|d| d == view::name(&rs.metadata)))
    });
    state
        .departed
        .extend(doomed.into_iter().map(|name| (namespace.clone(), name)));
}
