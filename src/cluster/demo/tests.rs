//! The demo's writes end to end, on a manual clock so a rollout of several seconds runs in
//! milliseconds: rollouts, rollbacks, failed pulls, crash loops, restarts, scaling, dry runs,
//! conflicts, validation, and determinism.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod, PodTemplateSpec};

use super::load::{FixtureFile, REGISTRY_FILE};
use super::{DemoCluster, ManualClock, embedded_files};
use crate::cluster::{
    CHANGE_CAUSE_ANNOTATION, ClusterBackend, ClusterError, DEPLOYED_BY_ANNOTATION,
    DeploymentChange, DeploymentWrite, HealthStatus, ListQuery, LogQuery, RESTARTED_AT_ANNOTATION,
    ServiceMetrics, view,
};

const START: &str = "2026-03-02T10:00:00Z";
const PG_REPO: &str = "registry.acme.internal/payments/payment-gateway";

struct Demo {
    cluster: DemoCluster,
    clock: ManualClock,
}

fn write(namespace: &str, name: &str, change: DeploymentChange) -> DeploymentWrite {
    DeploymentWrite {
        namespace: namespace.into(),
        name: name.into(),
        change,
        change_cause: "test change".into(),
        deployed_by: "alice@acme.io".into(),
        dry_run: false,
        resource_version: None,
    }
}

fn image(container: &str, image: &str) -> DeploymentChange {
    DeploymentChange::Image {
        container: container.into(),
        image: image.into(),
    }
}

fn condition(d: &Deployment, type_: &str) -> DeploymentCondition {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn reason(d: &Deployment, type_: &str) -> String {
    condition(d, type_).reason.unwrap_or_default()
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

impl Demo {
    fn new() -> Demo {
        let start: Timestamp = START.parse().unwrap();
        let clock = ManualClock::new(start);
        let cluster = DemoCluster::load(start)
            .unwrap()
            .with_clock(Arc::new(clock.clone()));
        Demo { cluster, clock }
    }

    /// Lets `secs` pass, reading every 100 ms as a client watching the rollout would.
    async fn run(&self, secs: f64) {
        let ticks = (secs * 10.0).round() as usize;
        for _ in 0..ticks {
            self.clock.advance_secs(0.1);
            self.cluster.deployments(&ListQuery::all()).await.unwrap();
        }
    }

    async fn write(&self, w: DeploymentWrite) -> Result<Deployment, ClusterError> {
        self.cluster.write_deployment(&w).await
    }

    async fn deployment(&self, namespace: &str, name: &str) -> Deployment {
        self.cluster.deployment(namespace, name).await.unwrap()
    }

    async fn pods_of(&self, namespace: &str, name: &str) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .cluster
            .pods(&ListQuery::in_namespace(namespace))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| view::pod_deployment(p).as_deref() == Some(name))
            .collect();
        pods.sort_by_key(|p| view::name(&p.metadata).to_string());
        pods
    }

    async fn replica_sets_of(&self, namespace: &str, name: &str) -> Vec<ReplicaSet> {
        self.cluster
            .replica_sets(&ListQuery::in_namespace(namespace))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|rs| view::replica_set_deployment(rs) == Some(name))
            .collect()
    }

    async fn replica_set_of_revision(
        &self,
        namespace: &str,
        name: &str,
        revision: i64,
    ) -> ReplicaSet {
        self.replica_sets_of(namespace, name)
            .await
            .into_iter()
            .find(|rs| view::revision(&rs.metadata) == Some(revision))
            .unwrap_or_else(|| panic!("no revision {revision}"))
    }

    async fn events(&self, namespace: &str) -> Vec<Event> {
        self.cluster
            .events(&ListQuery::in_namespace(namespace))
            .await
            .unwrap()
            .items
    }

    async fn metrics(&self, namespace: &str, name: &str) -> ServiceMetrics {
        self.cluster
            .service_metrics(Some(namespace))
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.service == name)
            .unwrap()
    }

    /// Everything a client can read, serialized (events sorted, as their order is not part of
    /// the API).
    async fn snapshot(&self) -> String {
        let all = ListQuery::all();
        let mut events: Vec<String> = self
            .cluster
            .events(&all)
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        events.sort();
        let pods = self.cluster.pods(&all).await.unwrap().items;
        let mut logs = Vec::new();
        for pod in &pods {
            for c in &pod.spec.as_ref().unwrap().containers {
                let q = LogQuery::container(
                    view::namespace(&pod.metadata),
                    view::name(&pod.metadata),
                    &c.name,
                );
                let lines = self.cluster.pod_logs(&q).await.unwrap();
                logs.push(serde_json::to_string(lines.entries()).unwrap());
            }
        }
        serde_json::json!({
            "deployments": self.cluster.deployments(&all).await.unwrap().items,
            "replica_sets": self.cluster.replica_sets(&all).await.unwrap().items,
            "pods": pods,
            "events": events,
            "metrics": self.cluster.service_metrics(None).await.unwrap(),
            "logs": logs,
        })
        .to_string()
    }
}

fn event_messages(events: &[Event], object: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The template of a ReplicaSet without its hash label, as a rollback passes it.
fn template_of(rs: &ReplicaSet) -> PodTemplateSpec {
    let mut t = rs.spec.as_ref().unwrap().template.clone().unwrap();
    t.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove("pod-template-hash");
    t
}

#[tokio::test]
async fn the_demo_answers_writes() {
    let demo = Demo::new();
    assert!(!demo.cluster.info().read_only);
    assert!(demo.cluster.consistency_problems().is_empty());
    let d = demo.deployment("payments", "payment-gateway").await;
    assert!(d.metadata.resource_version.is_some());
}

#[tokio::test]
async fn an_image_change_to_a_healthy_tag_rolls_out_in_a_few_seconds() {
    let demo = Demo::new();
    let old_pods = demo.pods_of("payments", "payment-gateway").await;
    let tag = format!("{PG_REPO}:2.13.4");
    let stored = demo
        .write(write(
            "payments",
            "payment-gateway",
            image("payment-gateway", &tag),
        ))
        .await
        .unwrap();
    assert_eq!(view::revision(&stored.metadata), Some(8));
    assert_eq!(stored.metadata.generation, Some(13));
    assert_eq!(
        stored.status.as_ref().unwrap().observed_generation,
        Some(12)
    );
    assert_eq!(view::change_cause(&stored.metadata), Some("test change"));
    assert_eq!(view::deployed_by(&stored.metadata), Some("alice@acme.io"));
    assert_eq!(view::deployment_images(&stored), vec![tag.clone()]);

    // A new revision in the rollout history at once.
    let new = demo
        .replica_set_of_revision("payments", "payment-gateway", 8)
        .await;
    let new_name = view::name(&new.metadata).to_string();
    let hash = new_name.strip_prefix("payment-gateway-").unwrap();
    assert_eq!(hash.len(), 10);
    assert_eq!(
        new.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("pod-template-hash")
            .map(String::as_str),
        Some(hash)
    );
    assert_eq!(view::change_cause(&new.metadata), Some("test change"));
    assert_eq!(view::deployed_by(&new.metadata), Some("alice@acme.io"));
    assert_eq!(view::replica_set_deployment(&new), Some("payment-gateway"));
    assert_eq!(
        demo.replica_sets_of("payments", "payment-gateway")
            .await
            .len(),
        5
    );

    // The rollout progresses pod by pod and completes in a few seconds.
    let mut saw_creating = false;
    let mut saw_terminating = false;
    let mut saw_updated_condition = false;
    let mut done_after = None;
    for tick in 1..=100 {
        demo.clock.advance_secs(0.1);
        let d = demo.deployment("payments", "payment-gateway").await;
        let pods = demo.pods_of("payments", "payment-gateway").await;
        saw_creating |= pods
            .iter()
            .any(|p| view::pod_status(p) == "ContainerCreating");
        saw_terminating |= pods.iter().any(|p| view::pod_status(p) == "Terminating");
        saw_updated_condition |= reason(&d, "Progressing") == "ReplicaSetUpdated";
        if reason(&d, "Progressing") == "NewReplicaSetAvailable" {
            done_after = Some(f64::from(tick) / 10.0);
            break;
        }
    }
    let done_after = done_after.expect("the rollout completes");
    assert!(
        (3.5..=6.0).contains(&done_after),
        "completed after {done_after}s"
    );
    assert!(saw_creating && saw_terminating && saw_updated_condition);
    demo.run(1.0).await;

    let d = demo.deployment("payments", "payment-gateway").await;
    let status = d.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(13));
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(status.unavailable_replicas, None);
    assert_eq!(reason(&d, "Available"), "MinimumReplicasAvailable");
    assert_eq!(
        condition(&d, "Progressing").message.as_deref(),
        Some(format!("ReplicaSet \"{new_name}\" has successfully progressed.").as_str())
    );
    let pods = demo.pods_of("payments", "payment-gateway").await;
    assert_eq!(pods.len(), 3, "old pods are gone");
    for pod in &pods {
        assert_eq!(view::pod_replica_set(pod), Some(new_name.as_str()));
        assert!(view::pod_is_ready(pod));
        assert_eq!(view::pod_status(pod), "Running");
        assert!(view::name(&pod.metadata).starts_with(&format!("{new_name}-")));
        let cs = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(cs.image, tag);
        assert_eq!(cs.restart_count, 0);
        assert!(pod.spec.as_ref().unwrap().node_name.is_some());
        assert!(pod.status.as_ref().unwrap().pod_ip.is_some());
    }
    for rs in demo.replica_sets_of("payments", "payment-gateway").await {
        if view::name(&rs.metadata) != new_name {
            assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(0));
            assert_eq!(rs.status.as_ref().unwrap().replicas, 0);
        }
    }

    // Events as the controllers and the kubelet write them.
    let events = demo.events("payments").await;
    let on_deployment = event_messages(&events, "payment-gateway");
    assert!(on_deployment.contains(&(
        "ScalingReplicaSet".into(),
        format!("Scaled up replica set {new_name} to 1 from 0")
    )));
    assert!(on_deployment.contains(&(
        "ScalingReplicaSet".into(),
        "Scaled down replica set payment-gateway-nzd7w8pf2m to 2 from 3".into()
    )));
    assert!(on_deployment.contains(&(
        "ScalingReplicaSet".into(),
        "Scaled down replica set payment-gateway-nzd7w8pf2m to 0 from 1".into()
    )));
    let first = view::name(&pods[0].metadata);
    let reasons: Vec<String> = event_messages(&events, first)
        .into_iter()
        .map(|e| e.0)
        .collect();
    for r in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "{first}: no {r} in {reasons:?}"
        );
    }
    assert!(
        event_messages(&events, &new_name)
            .iter()
            .any(|(r, m)| r == "SuccessfulCreate" && m == &format!("Created pod: {first}"))
    );
    // The one old pod still running is stopped; the crash-looping ones had nothing running.
    assert!(
        event_messages(&events, "payment-gateway-nzd7w8pf2m-mnclg").contains(&(
            "Killing".into(),
            "Stopping container payment-gateway".into()
        ))
    );
    assert!(
        event_messages(&events, "payment-gateway-nzd7w8pf2m")
            .iter()
            .any(|(r, _)| r == "SuccessfulDelete")
    );

    // Metrics switch to the tag's profile; the incident's alerts resolve.
    let m = demo.metrics("payments", "payment-gateway").await;
    assert_eq!(m.status(), HealthStatus::Healthy);
    assert!(m.alerts.is_empty());
    assert_eq!(m.error_rate, Some(0.0011));
    assert_eq!(m.rps, Some(37.8), "traffic stays what it was");

    // New pods log their start; the old pods' logs went with them.
    let q = LogQuery::container("payments", first, "payment-gateway");
    let lines = demo.cluster.pod_logs(&q).await.unwrap();
    assert!(lines.entries().iter().any(|e| {
        e.message
            .contains("Starting PaymentGatewayApplication v2.13.4")
    }));
    let mut requests = 0;
    for pod in &pods {
        let q = LogQuery::container("payments", view::name(&pod.metadata), "payment-gateway");
        let lines = demo.cluster.pod_logs(&q).await.unwrap();
        requests += lines
            .entries()
            .iter()
            .filter(|e| e.logger == "http.access" && e.trace_id.is_some())
            .count();
    }
    assert!(requests > 0, "serving pods log requests");
    // The count the health resource shows is what the streams hold (fixture pods' previous
    // streams included; new pods' previous streams are empty).
    let mut held = 0;
    for pod in demo.cluster.pods(&ListQuery::all()).await.unwrap().items {
        let name = view::name(&pod.metadata);
        for c in &pod.spec.as_ref().unwrap().containers {
            let q = LogQuery::container(view::namespace(&pod.metadata), name, &c.name);
            held += demo.cluster.pod_logs(&q).await.unwrap().len();
            if !name.starts_with(&new_name) {
                held += demo
                    .cluster
                    .pod_logs(&q.previous(true))
                    .await
                    .unwrap()
                    .len();
            }
        }
    }
    assert_eq!(demo.cluster.log_entry_count(), held);
    assert!(
        lines
            .entries()
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp)
    );
    let old = view::name(&old_pods[0].metadata);
    let gone = demo
        .cluster
        .pod_logs(&LogQuery::container("payments", old, "payment-gateway"))
        .await;
    assert!(matches!(gone, Err(ClusterError::NotFound { .. })));
    assert!(demo.cluster.consistency_problems().is_empty());
}

#[tokio::test]
async fn rolling_payment_gateway_back_to_revision_6_reuses_its_replica_set_and_heals_it() {
    let demo = Demo::new();
    let rs6 = demo
        .replica_set_of_revision("payments", "payment-gateway", 6)
        .await;
    let rs6_name = view::name(&rs6.metadata).to_string();
    let stored = demo
        .write(write(
            "payments",
            "payment-gateway",
            DeploymentChange::Template {
                revision: 6,
                template: Box::new(template_of(&rs6)),
            },
        ))
        .await
        .unwrap();
    assert_eq!(view::revision(&stored.metadata), Some(8));
    assert_eq!(
        view::deployment_images(&stored),
        vec![format!("{PG_REPO}:2.13.2")]
    );

    // The revision-6 ReplicaSet is revision 8 now; no new ReplicaSet.
    let rss = demo.replica_sets_of("payments", "payment-gateway").await;
    assert_eq!(rss.len(), 4);
    let reused = rss
        .iter()
        .find(|rs| view::name(&rs.metadata) == rs6_name)
        .unwrap();
    assert_eq!(view::revision(&reused.metadata), Some(8));
    assert_eq!(
        view::annotation(
            &reused.metadata,
            "deployment.kubernetes.io/revision-history"
        ),
        Some("6")
    );
    assert_eq!(view::change_cause(&reused.metadata), Some("test change"));
    let d = demo.deployment("payments", "payment-gateway").await;
    assert!(
        ["FoundNewReplicaSet", "ReplicaSetUpdated"].contains(&reason(&d, "Progressing").as_str())
    );

    // While no new pod serves yet, the metrics stay as they were.
    demo.run(0.5).await;
    assert_eq!(
        demo.metrics("payments", "payment-gateway").await.status(),
        HealthStatus::Down
    );

    demo.run(7.0).await;
    let d = demo.deployment("payments", "payment-gateway").await;
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    assert_eq!(reason(&d, "Available"), "MinimumReplicasAvailable");
    assert_eq!(view::ready_replicas(&d), 3);
    let pods = demo.pods_of("payments", "payment-gateway").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| view::pod_is_ready(p)
        && view::pod_replica_set(p) == Some(rs6_name.as_str())
        && view::pod_restarts(p) == 0));

    // Healthy by every measure check_service_health uses.
    let m = demo.metrics("payments", "payment-gateway").await;
    assert_eq!(m.status(), HealthStatus::Healthy, "{m:?}");
    assert!(m.alerts.is_empty());
    let warnings_on_live_pods = demo.events("payments").await.into_iter().filter(|e| {
        view::event_is_warning(e)
            && pods
                .iter()
                .any(|p| e.involved_object.name.as_deref() == Some(view::name(&p.metadata)))
    });
    assert_eq!(warnings_on_live_pods.count(), 0);
    assert!(
        d.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .flatten()
            .all(|c| c.status == "True")
    );
}

#[tokio::test]
async fn an_unknown_tag_ends_in_image_pull_back_off_and_the_rollout_times_out() {
    let demo = Demo::new();
    let unknown = "registry.acme.internal/payments/fraud-detector:1.9.9";
    let before = demo.metrics("payments", "fraud-detector").await;
    demo.write(write(
        "payments",
        "fraud-detector",
        image("fraud-detector", unknown),
    ))
    .await
    .unwrap();
    let new = demo
        .replica_set_of_revision("payments", "fraud-detector", 4)
        .await;
    let new_name = view::name(&new.metadata).to_string();
    demo.run(0.6).await;
    let pods = demo.pods_of("payments", "fraud-detector").await;
    let pulling: Vec<&Pod> = pods
        .iter()
        .filter(|p| view::pod_replica_set(p) == Some(new_name.as_str()))
        .collect();
    assert_eq!(pulling.len(), 1);
    let pod_name = view::name(&pulling[0].metadata).to_string();
    assert_eq!(waiting_reason(pulling[0]).as_deref(), Some("ErrImagePull"));
    assert_eq!(
        pulling[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    demo.run(1.0).await;
    let pod = demo.cluster.pod("payments", &pod_name).await.unwrap();
    assert_eq!(waiting_reason(&pod).as_deref(), Some("ImagePullBackOff"));
    assert_eq!(view::pod_status(&pod), "ImagePullBackOff");
    // No logs, and no error either.
    let logs = demo
        .cluster
        .pod_logs(&LogQuery::container(
            "payments",
            &pod_name,
            "fraud-detector",
        ))
        .await
        .unwrap();
    assert!(logs.is_empty());

    let events = event_messages(&demo.events("payments").await, &pod_name);
    let failed = format!(
        "Failed to pull image \"{unknown}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{unknown}\": failed to resolve reference \"{unknown}\": {unknown}: not found"
    );
    assert!(events.contains(&("Failed".into(), failed)), "{events:?}");
    assert!(events.contains(&("Failed".into(), "Error: ErrImagePull".into())));
    assert!(events.contains(&(
        "BackOff".into(),
        format!("Back-off pulling image \"{unknown}\"")
    )));
    assert!(events.contains(&("Failed".into(), "Error: ImagePullBackOff".into())));

    // The old pods keep serving; the rollout waits.
    demo.run(15.0).await;
    let old_ready = demo
        .pods_of("payments", "fraud-detector")
        .await
        .iter()
        .filter(|p| view::pod_is_ready(p))
        .count();
    assert_eq!(old_ready, 2);
    let d = demo.deployment("payments", "fraud-detector").await;
    assert_eq!(condition(&d, "Progressing").status, "True");
    assert_eq!(reason(&d, "Available"), "MinimumReplicasAvailable");
    let m = demo.metrics("payments", "fraud-detector").await;
    assert_eq!((m.error_rate, m.alerts.len()), (before.error_rate, 0));

    // Past the (scaled) progress deadline: ProgressDeadlineExceeded, as the controller writes it.
    demo.run(6.0).await;
    let d = demo.deployment("payments", "fraud-detector").await;
    let progressing = condition(&d, "Progressing");
    assert_eq!(progressing.status, "False");
    assert_eq!(
        progressing.reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    assert_eq!(
        progressing.message.as_deref(),
        Some(format!("ReplicaSet \"{new_name}\" has timed out progressing.").as_str())
    );
    let m = demo.metrics("payments", "fraud-detector").await;
    assert!(
        m.alerts
            .iter()
            .any(|a| a.name == "KubeDeploymentRolloutStuck")
    );
    assert_eq!(m.status(), HealthStatus::Degraded);
    let pod = demo.cluster.pod("payments", &pod_name).await.unwrap();
    let pulls = demo
        .events("payments")
        .await
        .into_iter()
        .find(|e| {
            e.involved_object.name.as_deref() == Some(pod_name.as_str())
                && e.reason.as_deref() == Some("Pulling")
        })
        .unwrap();
    assert!(pulls.count.unwrap() >= 3, "the kubelet keeps retrying");
    assert_eq!(view::pod_status(&pod), "ImagePullBackOff");

    // A tag that exists fixes it: the stuck pod goes first, the alert resolves.
    demo.write(write(
        "payments",
        "fraud-detector",
        image(
            "fraud-detector",
            "registry.acme.internal/payments/fraud-detector:1.9.2",
        ),
    ))
    .await
    .unwrap();
    demo.run(6.0).await;
    let d = demo.deployment("payments", "fraud-detector").await;
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    assert!(demo.cluster.pod("payments", &pod_name).await.is_err());
    let m = demo.metrics("payments", "fraud-detector").await;
    assert_eq!(m.status(), HealthStatus::Healthy);
    assert!(m.alerts.is_empty());
}

#[tokio::test]
async fn an_unknown_repository_is_refused_by_the_registry() {
    let demo = Demo::new();
    demo.write(write(
        "identity",
        "auth-service",
        image("auth-service", "nginx:1.27"),
    ))
    .await
    .unwrap();
    demo.run(1.0).await;
    let events = demo.events("identity").await;
    let denied = events.iter().any(|e| {
        e.message.as_deref().is_some_and(|m| {
            m.starts_with("Failed to pull image \"nginx:1.27\"")
                && m.contains("docker.io/library/nginx:1.27")
                && m.contains("pull access denied")
        })
    });
    assert!(denied);
}

#[tokio::test]
async fn a_crash_looping_tag_crash_loops_its_new_pods_while_the_old_ones_serve() {
    let demo = Demo::new();
    let rs6 = demo
        .replica_set_of_revision("payments", "payment-gateway", 6)
        .await;
    demo.write(write(
        "payments",
        "payment-gateway",
        DeploymentChange::Template {
            revision: 6,
            template: Box::new(template_of(&rs6)),
        },
    ))
    .await
    .unwrap();
    demo.run(7.0).await;
    // Forward again to the release that OOMs.
    demo.write(write(
        "payments",
        "payment-gateway",
        image("payment-gateway", &format!("{PG_REPO}:2.14.0")),
    ))
    .await
    .unwrap();
    let new = demo
        .replica_set_of_revision("payments", "payment-gateway", 9)
        .await;
    let new_name = view::name(&new.metadata).to_string();
    let mut restarts = Vec::new();
    let mut states = std::collections::BTreeSet::new();
    for _ in 0..40 {
        demo.run(1.0).await;
        let pods = demo.pods_of("payments", "payment-gateway").await;
        let crashing: Vec<&Pod> = pods
            .iter()
            .filter(|p| view::pod_replica_set(p) == Some(new_name.as_str()))
            .collect();
        assert_eq!(
            crashing.len(),
            1,
            "maxSurge 1, and the new pod never becomes available"
        );
        assert!(!view::pod_is_ready(crashing[0]));
        states.insert(view::pod_status(crashing[0]));
        restarts.push(view::pod_restarts(crashing[0]));
        let serving = pods.iter().filter(|p| view::pod_is_ready(p)).count();
        assert_eq!(serving, 3, "the 2.13.2 pods keep serving");
    }
    assert!(
        states.contains("CrashLoopBackOff") && states.contains("Running"),
        "{states:?}"
    );
    assert!(
        restarts.windows(2).all(|w| w[0] <= w[1]) && restarts.last() > Some(&2),
        "{restarts:?}"
    );

    let pod = demo
        .pods_of("payments", "payment-gateway")
        .await
        .into_iter()
        .find(|p| view::pod_replica_set(p) == Some(new_name.as_str()))
        .unwrap();
    let cs = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (last.reason.as_deref(), last.exit_code),
        (Some("OOMKilled"), 137)
    );
    let name = view::name(&pod.metadata);
    let previous = demo
        .cluster
        .pod_logs(&LogQuery::container("payments", name, "payment-gateway").previous(true))
        .await
        .unwrap();
    let texts: Vec<&str> = previous
        .entries()
        .iter()
        .map(|e| e.message.as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Starting PaymentGatewayApplication v2.14.0"))
    );
    assert!(
        previous
            .entries()
            .iter()
            .any(|e| e.detail.iter().any(|d| d.contains("OutOfMemoryError")))
    );
    let events = event_messages(&demo.events("payments").await, name);
    assert!(events.iter().any(|(r, m)| r == "BackOff"
        && m.starts_with("Back-off restarting failed container payment-gateway")));
    let d = demo.deployment("payments", "payment-gateway").await;
    assert_eq!(reason(&d, "Progressing"), "ProgressDeadlineExceeded");
    assert_eq!(view::ready_replicas(&d), 3);
    // The rollout never completed: the metrics are still 2.13.2's.
    assert!(demo.metrics("payments", "payment-gateway").await.error_rate < Some(0.05));
}

#[tokio::test]
async fn a_release_that_fails_at_start_exits_with_an_error() {
    let demo = Demo::new();
    demo.write(write(
        "commerce",
        "order-service",
        image(
            "order-service",
            "registry.acme.internal/commerce/order-service:3.5.0",
        ),
    ))
    .await
    .unwrap();
    demo.run(8.0).await;
    let new = demo
        .replica_set_of_revision("commerce", "order-service", 12)
        .await;
    let pod = demo
        .pods_of("commerce", "order-service")
        .await
        .into_iter()
        .find(|p| view::pod_replica_set(p) == view::name(&new.metadata).into())
        .unwrap();
    let cs = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.reason.as_deref(), last.exit_code), (Some("Error"), 1));
    assert!(cs.restart_count >= 1);
    let logs = demo
        .cluster
        .pod_logs(
            &LogQuery::container("commerce", view::name(&pod.metadata), "order-service")
                .previous(true),
        )
        .await
        .unwrap();
    assert!(
        logs.entries()
            .iter()
            .any(|e| e.message == "Application run failed")
    );
    assert!(
        !logs
            .entries()
            .iter()
            .any(|e| e.message.contains("Tomcat started"))
    );
}

#[tokio::test]
async fn a_restart_makes_a_new_revision_with_the_restarted_at_annotation() {
    let demo = Demo::new();
    let at: Timestamp = START.parse().unwrap();
    let stored = demo
        .write(write(
            "catalog",
            "catalog-service",
            DeploymentChange::Restart { at },
        ))
        .await
        .unwrap();
    assert_eq!(view::revision(&stored.metadata), Some(32));
    let annotations = stored
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(
        annotations.get(RESTARTED_AT_ANNOTATION).map(String::as_str),
        Some("2026-03-02T10:00:00Z")
    );
    let new = demo
        .replica_set_of_revision("catalog", "catalog-service", 32)
        .await;
    let new_name = view::name(&new.metadata).to_string();
    assert_ne!(new_name, "catalog-service-49wkk2jkf7");
    demo.run(8.0).await;
    let pods = demo.pods_of("catalog", "catalog-service").await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(view::pod_replica_set(pod), Some(new_name.as_str()));
        assert!(view::pod_is_ready(pod));
        assert_eq!(
            view::annotation(&pod.metadata, RESTARTED_AT_ANNOTATION),
            Some("2026-03-02T10:00:00Z")
        );
    }
    let d = demo.deployment("catalog", "catalog-service").await;
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    assert_eq!(
        demo.metrics("catalog", "catalog-service").await.status(),
        HealthStatus::Healthy
    );
}

#[tokio::test]
async fn scaling_keeps_the_revision_and_moves_pods_up_then_down() {
    let demo = Demo::new();
    let rs = "user-service-hsqsbf5cnp";
    let stored = demo
        .write(write(
            "identity",
            "user-service",
            DeploymentChange::Replicas(5),
        ))
        .await
        .unwrap();
    assert_eq!(view::revision(&stored.metadata), Some(18));
    assert_eq!(stored.spec.as_ref().unwrap().replicas, Some(5));
    demo.run(3.0).await;
    let pods = demo.pods_of("identity", "user-service").await;
    assert_eq!(pods.len(), 5);
    assert!(
        pods.iter()
            .all(|p| view::pod_is_ready(p) && view::pod_replica_set(p) == Some(rs))
    );
    let d = demo.deployment("identity", "user-service").await;
    assert_eq!(view::ready_replicas(&d), 5);
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    assert_eq!(
        demo.replica_sets_of("identity", "user-service").await.len(),
        2
    );
    let new_pods: Vec<String> = pods
        .iter()
        .map(|p| view::name(&p.metadata).to_string())
        .filter(|n| !n.ends_with("cp46l") && !n.ends_with("g8wp7") && !n.ends_with("n9pkr"))
        .collect();
    assert_eq!(new_pods.len(), 2);

    demo.write(write(
        "identity",
        "user-service",
        DeploymentChange::Replicas(2),
    ))
    .await
    .unwrap();
    demo.clock.advance_secs(0.1);
    let pods = demo.pods_of("identity", "user-service").await;
    let terminating: Vec<String> = pods
        .iter()
        .filter(|p| view::pod_status(p) == "Terminating")
        .map(|p| view::name(&p.metadata).to_string())
        .collect();
    assert_eq!(terminating.len(), 3);
    assert!(
        new_pods.iter().all(|n| terminating.contains(n)),
        "newest pods go first"
    );
    demo.run(1.0).await;
    assert_eq!(demo.pods_of("identity", "user-service").await.len(), 2);
    let d = demo.deployment("identity", "user-service").await;
    assert_eq!(
        (
            d.status.as_ref().unwrap().replicas,
            view::ready_replicas(&d)
        ),
        (Some(2), 2)
    );
    let events = event_messages(&demo.events("identity").await, "user-service");
    assert!(events.contains(&(
        "ScalingReplicaSet".into(),
        format!("Scaled up replica set {rs} to 5 from 3")
    )));
    assert!(events.contains(&(
        "ScalingReplicaSet".into(),
        format!("Scaled down replica set {rs} to 2 from 5")
    )));
}

#[tokio::test]
async fn a_dry_run_answers_what_would_be_and_changes_nothing() {
    let demo = Demo::new();
    let before = demo.snapshot().await;
    let current = demo.deployment("payments", "payment-gateway").await;
    let mut w = write(
        "payments",
        "payment-gateway",
        image("payment-gateway", &format!("{PG_REPO}:2.14.1")),
    );
    w.dry_run = true;
    let would = demo.write(w.clone()).await.unwrap();
    assert_eq!(
        view::deployment_images(&would),
        vec![format!("{PG_REPO}:2.14.1")]
    );
    assert_eq!(view::revision(&would.metadata), Some(8));
    assert_eq!(would.metadata.generation, Some(13));
    assert_eq!(
        view::annotation(&would.metadata, CHANGE_CAUSE_ANNOTATION),
        Some("test change")
    );
    assert_eq!(
        view::annotation(&would.metadata, DEPLOYED_BY_ANNOTATION),
        Some("alice@acme.io")
    );
    assert_eq!(
        would.metadata.resource_version,
        current.metadata.resource_version
    );
    w.change = DeploymentChange::Replicas(4);
    let would = demo.write(w).await.unwrap();
    assert_eq!(would.spec.as_ref().unwrap().replicas, Some(4));
    demo.run(2.0).await;
    assert_eq!(demo.snapshot().await, before, "a dry run changes nothing");
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_that_says_what_changed() {
    let demo = Demo::new();
    let read = demo.deployment("identity", "user-service").await;
    let rv = read.metadata.resource_version.clone().unwrap();
    let mut w = write("identity", "user-service", DeploymentChange::Replicas(4));
    w.resource_version = Some(rv.clone());
    let stored = demo.write(w.clone()).await.unwrap();
    assert_ne!(
        stored.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    demo.run(2.0).await;
    w.change = DeploymentChange::Replicas(6);
    let Err(ClusterError::Conflict { message }) = demo.write(w.clone()).await else {
        panic!("a write on a stale version is refused");
    };
    assert!(message.contains("replicas 3 -> 4"), "{message}");
    assert!(message.contains("status update"), "{message}");
    assert!(
        message.contains(&format!("since resourceVersion {rv}")),
        "{message}"
    );
    assert_eq!(
        view::desired_replicas(&demo.deployment("identity", "user-service").await),
        4
    );
    // Versions it never had are refused too; the current one passes.
    w.resource_version = Some("not-a-version".into());
    assert!(matches!(
        demo.write(w.clone()).await,
        Err(ClusterError::Conflict { .. })
    ));
    w.resource_version = demo
        .deployment("identity", "user-service")
        .await
        .metadata
        .resource_version;
    demo.write(w).await.unwrap();
}

#[tokio::test]
async fn invalid_writes_name_the_valid_values() {
    let demo = Demo::new();
    let invalid = |r: Result<Deployment, ClusterError>| match r {
        Err(ClusterError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let m = invalid(
        demo.write(write(
            "payments",
            "payment-gateway",
            image("sidecar", "x/y:1"),
        ))
        .await,
    );
    assert!(
        m.contains("\"sidecar\"") && m.contains("its containers: payment-gateway"),
        "{m}"
    );
    let m = invalid(
        demo.write(write(
            "payments",
            "payment-gateway",
            DeploymentChange::Replicas(51),
        ))
        .await,
    );
    assert!(m.contains("between 0 and 50"), "{m}");
    let m = invalid(
        demo.write(write(
            "payments",
            "payment-gateway",
            DeploymentChange::Replicas(-1),
        ))
        .await,
    );
    assert!(m.contains("between 0 and 50"), "{m}");
    let m = invalid(
        demo.write(write(
            "payments",
            "payment-gateway",
            image("payment-gateway", "Not An Image"),
        ))
        .await,
    );
    assert!(m.contains("not a valid image reference"), "{m}");
    let m = invalid(
        demo.write(write(
            "payments",
            "payment-gateway",
            image("payment-gateway", ""),
        ))
        .await,
    );
    assert!(m.contains("empty"), "{m}");
    let rs6 = demo
        .replica_set_of_revision("payments", "payment-gateway", 6)
        .await;
    let m = invalid(
        demo.write(write(
            "payments",
            "payment-gateway",
            DeploymentChange::Template {
                revision: 2,
                template: Box::new(template_of(&rs6)),
            },
        ))
        .await,
    );
    assert!(
        m.contains("no revision 2") && m.contains("4, 5, 6, 7"),
        "{m}"
    );
    assert!(matches!(
        demo.write(write("payments", "nope", DeploymentChange::Replicas(1)))
            .await,
        Err(ClusterError::NotFound { .. })
    ));
    // Nothing was changed by the refusals.
    let d = demo.deployment("payments", "payment-gateway").await;
    assert_eq!(d.metadata.generation, Some(12));
}

#[tokio::test]
async fn a_write_that_changes_nothing_makes_no_revision() {
    let demo = Demo::new();
    let before = demo.deployment("payments", "payment-gateway").await;
    let same = demo
        .write(write(
            "payments",
            "payment-gateway",
            image("payment-gateway", &format!("{PG_REPO}:2.14.0")),
        ))
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(view::revision(&same.metadata), Some(7));
}

#[tokio::test]
async fn the_stuck_recommendation_engine_rollout_is_fixed_by_the_real_tag() {
    let demo = Demo::new();
    demo.write(write(
        "catalog",
        "recommendation-engine",
        image(
            "recommendation-engine",
            "registry.acme.internal/catalog/recommendation-engine:3.8.0",
        ),
    ))
    .await
    .unwrap();
    demo.run(0.3).await;
    // The pod stuck on the mistyped tag goes first (it is not available anyway).
    let stuck = demo
        .cluster
        .pod("catalog", "recommendation-engine-d5k79b98tw-88shx")
        .await
        .unwrap();
    assert_eq!(view::pod_status(&stuck), "Terminating");
    demo.run(8.0).await;
    let d = demo.deployment("catalog", "recommendation-engine").await;
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    assert_eq!(view::revision(&d.metadata), Some(13));
    let pods = demo.pods_of("catalog", "recommendation-engine").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(view::pod_is_ready));
    let m = demo.metrics("catalog", "recommendation-engine").await;
    assert_eq!(m.status(), HealthStatus::Healthy);
    assert!(m.alerts.is_empty());
}

#[tokio::test]
async fn search_indexer_fits_no_node_at_12gi_and_rolls_back_to_2gi() {
    let demo = Demo::new();
    // A restart keeps the 12Gi request: the new pod fits no node.
    demo.write(write(
        "catalog",
        "search-indexer",
        DeploymentChange::Restart {
            at: START.parse().unwrap(),
        },
    ))
    .await
    .unwrap();
    demo.run(12.0).await;
    let new = demo
        .replica_set_of_revision("catalog", "search-indexer", 6)
        .await;
    let pods = demo.pods_of("catalog", "search-indexer").await;
    let pending: Vec<&Pod> = pods
        .iter()
        .filter(|p| view::pod_replica_set(p) == view::name(&new.metadata).into())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(view::pod_status(pending[0]), "Pending");
    assert!(pending[0].spec.as_ref().unwrap().node_name.is_none());
    let events = demo.events("catalog").await;
    let failed = events
        .iter()
        .find(|e| {
            e.involved_object.name.as_deref() == Some(view::name(&pending[0].metadata))
                && e.reason.as_deref() == Some("FailedScheduling")
        })
        .unwrap();
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .starts_with("0/4 nodes are available: 4 Insufficient memory.")
    );
    assert!(failed.count.unwrap() >= 2);

    // Back to revision 4 (2Gi): it fits, and the indexer runs two pods again.
    let rs4 = demo
        .replica_set_of_revision("catalog", "search-indexer", 4)
        .await;
    demo.write(write(
        "catalog",
        "search-indexer",
        DeploymentChange::Template {
            revision: 4,
            template: Box::new(template_of(&rs4)),
        },
    ))
    .await
    .unwrap();
    demo.run(6.0).await;
    let d = demo.deployment("catalog", "search-indexer").await;
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    let pods = demo.pods_of("catalog", "search-indexer").await;
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter().all(|p| view::pod_is_ready(p)
            && view::pod_replica_set(p) == Some(view::name(&rs4.metadata)))
    );
    let m = demo.metrics("catalog", "search-indexer").await;
    assert_eq!(m.status(), HealthStatus::Healthy);
}

#[tokio::test]
async fn the_same_writes_at_the_same_times_give_the_same_cluster_however_often_it_is_read() {
    async fn session(reads: bool) -> String {
        let demo = Demo::new();
        let pass = |secs: f64| {
            let demo = &demo;
            async move {
                if reads {
                    demo.run(secs).await;
                } else {
                    demo.clock.advance_secs(secs);
                }
            }
        };
        demo.write(write(
            "payments",
            "payment-gateway",
            image("payment-gateway", &format!("{PG_REPO}:2.14.1")),
        ))
        .await
        .unwrap();
        pass(2.5).await;
        demo.write(write(
            "identity",
            "auth-service",
            image(
                "auth-service",
                "registry.acme.internal/identity/auth-service:9.9.9",
            ),
        ))
        .await
        .unwrap();
        pass(4.0).await;
        demo.write(write(
            "payments",
            "payment-gateway",
            DeploymentChange::Replicas(4),
        ))
        .await
        .unwrap();
        pass(30.0).await;
        demo.snapshot().await
    }
    let watched = session(true).await;
    assert_eq!(watched, session(true).await);
    assert_eq!(
        watched,
        session(false).await,
        "reads do not change the outcome"
    );
}

/// The embedded fixtures with `registry.yaml` replaced (or left out with `None`).
fn with_registry(registry: Option<String>) -> anyhow::Result<DemoCluster> {
    let mut files: Vec<FixtureFile> = embedded_files()
        .into_iter()
        .filter(|f| f.path != REGISTRY_FILE)
        .collect();
    if let Some(text) = registry {
        files.push(FixtureFile {
            path: REGISTRY_FILE.into(),
            contents: std::borrow::Cow::Owned(text.into_bytes()),
        });
    }
    DemoCluster::from_files(files, START.parse().unwrap())
}

fn registry_text() -> String {
    let file = embedded_files()
        .into_iter()
        .find(|f| f.path == REGISTRY_FILE)
        .unwrap();
    String::from_utf8(file.contents.into_owned()).unwrap()
}

#[test]
fn the_registry_must_list_every_fixture_image_and_agree_with_its_pods() {
    let text = registry_text();
    let cut = |line_start: &str| {
        text.lines()
            .filter(|l| !l.trim_start().starts_with(line_start))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let error = with_registry(Some(cut("\"2.13.2\":"))).err().unwrap();
    assert!(
        format!("{error:#}").contains(&format!(
            "image {PG_REPO}:2.13.2 (ReplicaSet payments/payment-gateway-2dwxm5jrws) is not in registry.yaml"
        )),
        "{error:#}"
    );
    let typo = text.replace(
        "\"3.8.0-rc1-typo\": {missing: \"a mistyped tag, never pushed (incident 3)\"}",
        "\"3.8.0-rc1-typo\": {healthy: {error_rate: 0.0, p50_ms: 1.0, p99_ms: 2.0}}",
    );
    assert_ne!(typo, text);
    let error = format!("{:#}", with_registry(Some(typo)).err().unwrap());
    assert!(
        error.contains("recommendation-engine-d5k79b98tw-88shx fails to pull it"),
        "{error}"
    );
    let crashing = text.replace(
        "\"2.9.1\": {healthy: {error_rate: 0.0008, p50_ms: 9.0, p99_ms: 71.0}}",
        "\"2.9.1\": {crash_loop: {reason: OOMKilled, exit_code: 137, runs_for_s: 5.0}}",
    );
    assert_ne!(crashing, text);
    let error = format!("{:#}", with_registry(Some(crashing)).err().unwrap());
    assert!(
        error.contains("is ready, but the registry says the tag crash-loops"),
        "{error}"
    );
    let both = text.replace(
        "\"2.9.2\": {healthy:",
        "\"2.9.2\": {missing: \"x\", healthy:",
    );
    let error = format!("{:#}", with_registry(Some(both)).err().unwrap());
    assert!(
        error.contains("exactly one of healthy, crash_loop, missing"),
        "{error}"
    );
}

#[tokio::test]
async fn fixtures_without_a_registry_get_one_derived_from_their_pods() {
    let start: Timestamp = START.parse().unwrap();
    let clock = ManualClock::new(start);
    let demo = Demo {
        cluster: with_registry(None)
            .unwrap()
            .with_clock(Arc::new(clock.clone())),
        clock,
    };
    assert!(demo.cluster.consistency_problems().is_empty());
    let rs6 = demo
        .replica_set_of_revision("payments", "payment-gateway", 6)
        .await;
    demo.write(write(
        "payments",
        "payment-gateway",
        DeploymentChange::Template {
            revision: 6,
            template: Box::new(template_of(&rs6)),
        },
    ))
    .await
    .unwrap();
    demo.run(7.0).await;
    let d = demo.deployment("payments", "payment-gateway").await;
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    let pods = demo.pods_of("payments", "payment-gateway").await;
    let logs = demo
        .cluster
        .pod_logs(&LogQuery::container(
            "payments",
            view::name(&pods[0].metadata),
            "payment-gateway",
        ))
        .await
        .unwrap();
    assert!(
        logs.entries()
            .iter()
            .any(|e| e.message == "starting payment-gateway 2.13.2"),
        "generic startup lines"
    );
    // 2.14.0 crash-loops, as its fixture pods do.
    demo.write(write(
        "payments",
        "payment-gateway",
        image("payment-gateway", &format!("{PG_REPO}:2.14.0")),
    ))
    .await
    .unwrap();
    demo.run(20.0).await;
    let restarted = demo
        .pods_of("payments", "payment-gateway")
        .await
        .iter()
        .any(|p| view::pod_restarts(p) > 0);
    assert!(restarted);
}

#[tokio::test]
async fn old_replica_sets_beyond_the_history_limit_go() {
    let demo = Demo::new();
    let start: Timestamp = START.parse().unwrap();
    for i in 0..12 {
        let at = start
            .checked_add(jiff::SignedDuration::from_secs(i))
            .unwrap();
        demo.write(write(
            "payments",
            "fraud-detector",
            DeploymentChange::Restart { at },
        ))
        .await
        .unwrap();
        demo.run(5.0).await;
    }
    let d = demo.deployment("payments", "fraud-detector").await;
    assert_eq!(view::revision(&d.metadata), Some(15));
    assert_eq!(reason(&d, "Progressing"), "NewReplicaSetAvailable");
    let rss = demo.replica_sets_of("payments", "fraud-detector").await;
    assert_eq!(
        rss.len(),
        11,
        "revisionHistoryLimit 10 old ones and the current one"
    );
    assert!(rss.iter().all(|rs| view::revision(&rs.metadata) >= Some(5)));
    assert!(demo.cluster.consistency_problems().is_empty());
}
