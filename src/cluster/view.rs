//! Read-only views of Kubernetes objects as `kubectl` shows them: a pod's display status,
//! readiness, restarts, owning deployment; a deployment's images and revision. Shared by the
//! tools, the health resource and every backend.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ContainerState, Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::selector::{LabelRequirement, LabelSelector};
use super::{CHANGE_CAUSE_ANNOTATION, DEPLOYED_BY_ANNOTATION, REVISION_ANNOTATION};

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

/// The names of a list of objects.
pub fn names<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|i| name(i.metadata()).to_string())
        .collect()
}

/// The status column of `kubectl get pods`: a container's waiting or terminated reason when
/// there is one (CrashLoopBackOff, ImagePullBackOff, OOMKilled…), otherwise the pod phase.
pub fn pod_status(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let status = pod.status.as_ref();
    let statuses = status.and_then(|s| s.container_statuses.as_ref());
    for cs in statuses.into_iter().flatten() {
        if let Some(state) = &cs.state {
            if let Some(reason) = state.waiting.as_ref().and_then(|w| w.reason.clone())
                && (reason != "ContainerCreating" || !cs.ready)
            {
                return reason;
            }
            if let Some(reason) = state.terminated.as_ref().and_then(|t| t.reason.clone()) {
                return reason;
            }
        }
    }
    status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into())
}

/// Ready containers and total containers.
pub fn pod_ready(pod: &Pod) -> (usize, usize) {
    let total = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().filter(|c| c.ready).count());
    (ready, total)
}

pub fn pod_is_ready(pod: &Pod) -> bool {
    let (ready, total) = pod_ready(pod);
    total > 0 && ready == total
}

pub fn pod_restarts(pod: &Pod) -> i64 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| i64::from(c.restart_count)).sum())
}

/// The ReplicaSet that owns a pod, if any.
pub fn pod_replica_set(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "ReplicaSet")
        .map(|o| o.name.as_str())
}

/// The Deployment that owns a pod: its ReplicaSet's name less the pod-template hash.
pub fn pod_deployment(pod: &Pod) -> Option<String> {
    let rs = pod_replica_set(pod)?;
    let hash = pod.metadata.labels.as_ref()?.get("pod-template-hash")?;
    rs.strip_suffix(&format!("-{hash}")).map(str::to_string)
}

/// The Deployment that owns a ReplicaSet.
pub fn replica_set_deployment(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Deployment")
        .map(|o| o.name.as_str())
}

pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

pub fn revision(meta: &ObjectMeta) -> Option<i64> {
    annotation(meta, REVISION_ANNOTATION)?.parse().ok()
}

pub fn change_cause(meta: &ObjectMeta) -> Option<&str> {
    annotation(meta, CHANGE_CAUSE_ANNOTATION)
}

pub fn deployed_by(meta: &ObjectMeta) -> Option<&str> {
    annotation(meta, DEPLOYED_BY_ANNOTATION)
}

/// Container images of a deployment's pod template.
pub fn deployment_images(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| {
            s.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

pub fn replica_set_images(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|s| {
            s.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

pub fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

pub fn ready_replicas(deployment: &Deployment) -> i32 {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// A short description of a container state: `running`, `waiting: CrashLoopBackOff`,
/// `terminated: OOMKilled (exit 137)`.
pub fn describe_state(state: &ContainerState) -> String {
    if state.running.is_some() {
        "running".into()
    } else if let Some(w) = &state.waiting {
        format!("waiting: {}", w.reason.as_deref().unwrap_or("unknown"))
    } else if let Some(t) = &state.terminated {
        format!(
            "terminated: {} (exit {})",
            t.reason.as_deref().unwrap_or("unknown"),
            t.exit_code
        )
    } else {
        "unknown".into()
    }
}

/// When an event last happened: lastTimestamp, else eventTime, else firstTimestamp.
pub fn event_last_seen(event: &Event) -> Option<jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

pub fn event_is_warning(event: &Event) -> bool {
    event.type_.as_deref() == Some("Warning")
}

/// The label selector of a Deployment's pods and ReplicaSets (`spec.selector.matchLabels`;
/// `matchExpressions` are turned into set-based requirements).
pub fn deployment_selector(deployment: &Deployment) -> LabelSelector {
    let Some(selector) = deployment.spec.as_ref().map(|s| &s.selector) else {
        return LabelSelector::default();
    };
    let mut result = selector
        .match_labels
        .as_ref()
        .map(LabelSelector::from_labels)
        .unwrap_or_default();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        result.requirements.push(match e.operator.as_str() {
            "In" => LabelRequirement::In(e.key.clone(), values),
            "NotIn" => LabelRequirement::NotIn(e.key.clone(), values),
            "DoesNotExist" => LabelRequirement::NotExists(e.key.clone()),
            _ => LabelRequirement::Exists(e.key.clone()),
        });
    }
    result
}

/// The ReplicaSets a Deployment owns (its rollout history), from any list of ReplicaSets.
pub fn owned_replica_sets<'a>(
    deployment: &'a Deployment,
    replica_sets: &'a [ReplicaSet],
) -> impl Iterator<Item = &'a ReplicaSet> + 'a {
    let name = self::name(&deployment.metadata);
    let namespace = self::namespace(&deployment.metadata);
    replica_sets.iter().filter(move |rs| {
        self::namespace(&rs.metadata) == namespace && replica_set_deployment(rs) == Some(name)
    })
}

/// The revision a Deployment runs now — the one definition used everywhere. The deployment
/// controller writes it to the Deployment's revision annotation (equal to its newest
/// ReplicaSet's); without the annotation, the highest revision among its ReplicaSets, as
/// `kubectl rollout history` shows it.
pub fn current_revision(deployment: &Deployment, replica_sets: &[ReplicaSet]) -> Option<i64> {
    revision(&deployment.metadata).or_else(|| {
        owned_replica_sets(deployment, replica_sets)
            .filter_map(|rs| revision(&rs.metadata))
            .max()
    })
}

/// The ReplicaSet of the current revision.
pub fn current_replica_set<'a>(
    deployment: &'a Deployment,
    replica_sets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let current = current_revision(deployment, replica_sets)?;
    owned_replica_sets(deployment, replica_sets).find(|rs| revision(&rs.metadata) == Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn container(
        name: &str,
        ready: bool,
        restarts: i32,
        state: serde_json::Value,
    ) -> serde_json::Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "image": "i", "imageID": "", "state": state})
    }

    #[test]
    fn pod_status_is_kubectls_status_column() {
        let running = pod(json!({"phase": "Running", "containerStatuses": [
            container("app", true, 0, json!({"running": {}})),
            container("sidecar", true, 0, json!({"running": {}})),
        ]}));
        assert_eq!(pod_status(&running), "Running");
        assert_eq!(pod_ready(&running), (2, 2));
        assert!(pod_is_ready(&running));

        let crashing = pod(json!({"phase": "Running", "containerStatuses": [
            container("app", false, 8, json!({"waiting": {"reason": "CrashLoopBackOff"}})),
            container("sidecar", true, 1, json!({"running": {}})),
        ]}));
        assert_eq!(pod_status(&crashing), "CrashLoopBackOff");
        assert_eq!(pod_ready(&crashing), (1, 2));
        assert!(!pod_is_ready(&crashing));
        assert_eq!(pod_restarts(&crashing), 9);

        let killed = pod(json!({"phase": "Running", "containerStatuses": [
            container("app", false, 3, json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}})),
        ]}));
        assert_eq!(pod_status(&killed), "OOMKilled");

        let pending = pod(json!({"phase": "Pending"}));
        assert_eq!(pod_status(&pending), "Pending");
        assert_eq!(pod_ready(&pending), (0, 2));

        let mut leaving = running.clone();
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert_eq!(pod_status(&leaving), "Terminating");

        // ContainerCreating counts only while the container is not ready yet.
        let creating = pod(json!({"phase": "Pending", "containerStatuses": [
            container("app", false, 0, json!({"waiting": {"reason": "ContainerCreating"}})),
        ]}));
        assert_eq!(pod_status(&creating), "ContainerCreating");
    }

    #[test]
    fn container_states_are_described_briefly() {
        let state: ContainerState =
            serde_json::from_value(json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}}))
                .unwrap();
        assert_eq!(describe_state(&state), "terminated: OOMKilled (exit 137)");
        let state: ContainerState =
            serde_json::from_value(json!({"waiting": {"reason": "ImagePullBackOff"}})).unwrap();
        assert_eq!(describe_state(&state), "waiting: ImagePullBackOff");
    }
}
