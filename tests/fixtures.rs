//! The demo cluster's fixtures are consistent: every pod belongs to a deployment, every
//! event's object exists, every trace id in the logs resolves in trace_transaction, and the
//! cluster is big and busy enough to feel real.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sre_mcp::cluster::demo::DemoCluster;
use sre_mcp::cluster::{ClusterBackend, ListQuery, LogQuery, view};
use sre_mcp::runbooks::knowledge::{KnowledgeBase, KnowledgeConfig};
use sre_mcp::tools::{Context, Limits, ToolRegistry};

fn cluster() -> DemoCluster {
    DemoCluster::load(Timestamp::now()).expect("demo fixtures load and validate")
}

#[tokio::test]
async fn fixtures_are_consistent_and_realistic() {
    let cluster = cluster();
    assert!(cluster.consistency_problems().is_empty());
    let namespaces = cluster.namespaces(&ListQuery::all()).await.unwrap().items;
    let deployments = cluster.deployments(&ListQuery::all()).await.unwrap().items;
    let pods = cluster.pods(&ListQuery::all()).await.unwrap().items;
    let events = cluster.events(&ListQuery::all()).await.unwrap().items;
    assert!(namespaces.len() >= 4, "{} namespaces", namespaces.len());
    assert!(deployments.len() >= 8, "{} deployments", deployments.len());

    let deployment_names: BTreeSet<(String, String)> = deployments
        .iter()
        .map(|d| {
            (
                view::namespace(&d.metadata).to_string(),
                view::name(&d.metadata).to_string(),
            )
        })
        .collect();
    for pod in &pods {
        let owner = view::pod_deployment(pod)
            .unwrap_or_else(|| panic!("pod {} has no deployment", view::name(&pod.metadata)));
        assert!(deployment_names.contains(&(view::namespace(&pod.metadata).to_string(), owner)));
    }
    for event in &events {
        let name = event.involved_object.name.clone().unwrap();
        let ns = view::namespace(&event.metadata);
        let exists = match event.involved_object.kind.as_deref() {
            Some("Pod") => pods
                .iter()
                .any(|p| view::name(&p.metadata) == name && view::namespace(&p.metadata) == ns),
            Some("Deployment") => deployment_names.contains(&(ns.to_string(), name.clone())),
            Some("ReplicaSet") => cluster
                .replica_sets(&ListQuery::in_namespace(ns))
                .await
                .unwrap()
                .items
                .iter()
                .any(|r| view::name(&r.metadata) == name),
            Some("Node") => cluster
                .nodes(&ListQuery::all())
                .await
                .unwrap()
                .items
                .iter()
                .any(|n| view::name(&n.metadata) == name),
            other => panic!("unexpected kind {other:?}"),
        };
        assert!(
            exists,
            "event {} points at a missing object {name}",
            view::name(&event.metadata)
        );
    }

    // Every running pod has hundreds of log lines, ending in the last few minutes (relative
    // times resolved at load), and crashed containers have previous logs.
    let now = Timestamp::now();
    for pod in &pods {
        let (ns, name) = (view::namespace(&pod.metadata), view::name(&pod.metadata));
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        for container in &pod.spec.as_ref().unwrap().containers {
            let lines = cluster
                .pod_logs(&LogQuery::container(ns, name, &container.name))
                .await
                .unwrap();
            let logs = lines.entries();
            if phase == "Pending" {
                continue;
            }
            assert!(
                logs.len() >= 100,
                "{ns}/{name}/{}: only {} entries",
                container.name,
                logs.len()
            );
            let last = logs.last().unwrap().timestamp;
            assert!(
                last <= now && last >= now.checked_sub(SignedDuration::from_mins(10)).unwrap(),
                "{ns}/{name}: stale logs"
            );
            assert!(
                logs.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
                "{ns}/{name}: out of order"
            );
        }
        let crashed = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| {
                c.restart_count > 0
                    && c.last_state
                        .as_ref()
                        .is_some_and(|s| s.terminated.is_some())
            });
        for c in crashed {
            let previous = cluster
                .pod_logs(&LogQuery::container(ns, name, &c.name).previous(true))
                .await
                .unwrap();
            assert!(
                !previous.is_empty(),
                "{ns}/{name}/{}: crashed but no previous logs",
                c.name
            );
        }
    }
}

#[tokio::test]
async fn every_trace_id_in_the_logs_resolves() {
    let cluster = Arc::new(cluster());
    let pods = cluster.pods(&ListQuery::all()).await.unwrap().items;
    let mut traces = BTreeSet::new();
    for pod in &pods {
        for container in &pod.spec.as_ref().unwrap().containers {
            for previous in [false, true] {
                let query = LogQuery::container(
                    view::namespace(&pod.metadata),
                    view::name(&pod.metadata),
                    &container.name,
                )
                .previous(previous);
                let logs = cluster.pod_logs(&query).await.unwrap();
                traces.extend(logs.entries().iter().filter_map(|e| e.trace_id.clone()));
            }
        }
    }
    assert!(traces.len() >= 30, "only {} trace ids", traces.len());
    let knowledge = KnowledgeBase::load_now(KnowledgeConfig::lexical_only());
    // The tool alone, on its narrow context: no pipeline, no stages.
    let context = Arc::new(Context::new(cluster, knowledge, Limits::default()));
    let tools = ToolRegistry::standard();
    let trace_transaction = &tools.get("trace_transaction").unwrap().handler;
    let mut cross_service = 0;
    for trace in &traces {
        let structured = trace_transaction(context.clone(), json!({ "trace_id": trace }))
            .await
            .unwrap_or_else(|e| panic!("{trace}: {e}"));
        let entries = structured["entries"].as_array().unwrap();
        assert!(!entries.is_empty());
        assert!(
            entries
                .iter()
                .all(|e| e["trace_id"] == Value::String(trace.clone()))
        );
        if structured["services"].as_array().unwrap().len() >= 2 {
            cross_service += 1;
        }
    }
    assert!(
        cross_service >= 30,
        "only {cross_service} traces cross services"
    );
}
