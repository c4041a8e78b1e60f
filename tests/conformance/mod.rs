//! The backend conformance suite: scenarios over the `ClusterBackend` trait that every backend
//! must pass with the demo fixtures loaded (the embedded demo cluster now; a real API server
//! loaded with the same objects later). Each scenario reads one thing through the methods the
//! tools use — gets, lists with label/field selectors and pages, log queries, error kinds —
//! and checks it against what the fixtures say (`fixtures/demo/README.md`), or against the same
//! data read another way, so no backend can pass by answering everything the same.
#![allow(dead_code)]

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use sre_mcp::cluster::{
    ClusterBackend, ClusterError, FieldSelector, LabelSelector, ListQuery, LogLines, LogQuery, view,
};

fn names<
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    items: &[T],
) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                view::namespace(i.metadata()),
                view::name(i.metadata())
            )
        })
        .collect()
}

fn labels(selector: &str) -> LabelSelector {
    LabelSelector::parse(selector).unwrap()
}

fn fields(selector: &str) -> FieldSelector {
    FieldSelector::parse(selector).unwrap()
}

async fn pods_of(backend: &dyn ClusterBackend, namespace: &str, app: &str) -> Vec<Pod> {
    backend
        .pods(&ListQuery::in_namespace(namespace).with_labels(labels(&format!("app={app}"))))
        .await
        .unwrap()
        .items
}

/// The current log of a pod's first container.
async fn first_container_logs(backend: &dyn ClusterBackend, pod: &Pod) -> LogLines {
    let container = &pod.spec.as_ref().unwrap().containers[0].name;
    let query = LogQuery::container(
        view::namespace(&pod.metadata),
        view::name(&pod.metadata),
        container,
    );
    backend.pod_logs(&query).await.unwrap()
}

/// Gets by name, and not-found errors that say what exists.
pub async fn gets_and_not_found(backend: &dyn ClusterBackend) {
    let namespaces = backend.namespaces(&ListQuery::all()).await.unwrap().items;
    let expected: BTreeSet<&str> = ["catalog", "commerce", "edge", "identity", "payments"].into();
    let got: BTreeSet<&str> = namespaces.iter().map(|n| view::name(&n.metadata)).collect();
    assert!(expected.is_subset(&got), "namespaces {got:?}");
    assert_eq!(
        view::name(&backend.namespace("payments").await.unwrap().metadata),
        "payments"
    );
    match backend.namespace("paymnts").await {
        Err(ClusterError::NotFound { kind, name, .. }) => {
            assert_eq!((kind, name.as_str()), ("namespace", "paymnts"));
        }
        other => panic!("missing namespace: {other:?}"),
    }

    let deployment = backend
        .deployment("payments", "payment-gateway")
        .await
        .unwrap();
    assert_eq!(view::namespace(&deployment.metadata), "payments");
    // The same name in another namespace does not exist.
    assert!(matches!(
        backend.deployment("edge", "payment-gateway").await,
        Err(ClusterError::NotFound { .. })
    ));

    let pod = pods_of(backend, "payments", "payment-gateway")
        .await
        .remove(0);
    let name = view::name(&pod.metadata).to_string();
    let got = backend.pod("payments", &name).await.unwrap();
    assert_eq!(view::name(&got.metadata), name);
    match backend.pod("payments", "payment-gateway-nope").await {
        Err(ClusterError::NotFound {
            kind,
            namespace,
            existing,
            ..
        }) => {
            assert_eq!(kind, "pod");
            assert_eq!(namespace.as_deref(), Some("payments"));
            // When a backend lists what exists, the real pod is among it.
            if let Some(existing) = existing {
                assert!(existing.contains(&name), "{existing:?}");
            }
        }
        other => panic!("missing pod: {other:?}"),
    }
}

/// Label selectors select exactly what the same selector matches on the full list.
pub async fn label_selectors_filter(backend: &dyn ClusterBackend) {
    let all = backend.pods(&ListQuery::all()).await.unwrap().items;
    for selector in [
        "app=payment-gateway",
        "app!=payment-gateway",
        "app in (inventory-service,order-service)",
        "app notin (inventory-service)",
        "app,!nonexistent-label",
        "nonexistent-label",
    ] {
        let parsed = labels(selector);
        let expected: BTreeSet<String> = names(
            &all.iter()
                .filter(|p| parsed.matches(p.metadata.labels.as_ref()))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let got = names(
            &backend
                .pods(&ListQuery::all().with_labels(parsed.clone()))
                .await
                .unwrap()
                .items,
        );
        assert_eq!(got, expected, "label selector {selector:?}");
    }
    // A deployment's own selector finds its pods and ReplicaSets, and only them.
    let deployment = backend
        .deployment("commerce", "inventory-service")
        .await
        .unwrap();
    let scope =
        ListQuery::in_namespace("commerce").with_labels(view::deployment_selector(&deployment));
    let pods = backend.pods(&scope).await.unwrap().items;
    assert_eq!(pods.len(), 4, "inventory-service runs 4 pods");
    assert!(
        pods.iter()
            .all(|p| view::pod_deployment(p).as_deref() == Some("inventory-service"))
    );
    let replica_sets = backend.replica_sets(&scope).await.unwrap().items;
    assert!(!replica_sets.is_empty());
    assert!(
        replica_sets
            .iter()
            .all(|rs| view::replica_set_deployment(rs) == Some("inventory-service"))
    );
}

/// Field selectors the API server supports for pods, events and deployments; an unsupported
/// path is an `Invalid` error, not an empty list.
pub async fn field_selectors_filter(backend: &dyn ClusterBackend) {
    let pending = backend
        .pods(&ListQuery::all().with_fields(fields("status.phase=Pending")))
        .await
        .unwrap()
        .items;
    let pending: BTreeSet<String> = names(&pending);
    let all = backend.pods(&ListQuery::all()).await.unwrap().items;
    let expected = names(
        &all.iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(pending, expected);
    assert!(
        pending
            .iter()
            .any(|p| p.starts_with("catalog/search-indexer-")),
        "the unschedulable search-indexer pod is Pending: {pending:?}"
    );
    let not_pending = backend
        .pods(&ListQuery::all().with_fields(fields("status.phase!=Pending")))
        .await
        .unwrap()
        .items;
    assert_eq!(not_pending.len() + pending.len(), all.len());

    let warnings = backend
        .events(&ListQuery::in_namespace("catalog").with_fields(fields("type=Warning")))
        .await
        .unwrap()
        .items;
    assert!(!warnings.is_empty());
    assert!(warnings.iter().all(view::event_is_warning));
    assert!(
        warnings
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling")),
        "search-indexer's FailedScheduling warning"
    );

    let crashing = pods_of(backend, "payments", "payment-gateway").await;
    let pod = view::name(&crashing[0].metadata).to_string();
    let of_pod = backend
        .events(&ListQuery::in_namespace("payments").with_fields(
            FieldSelector::equals("involvedObject.kind", "Pod").and("involvedObject.name", &pod),
        ))
        .await
        .unwrap()
        .items;
    assert!(!of_pod.is_empty(), "events of {pod}");
    assert!(
        of_pod
            .iter()
            .all(|e| e.involved_object.name.as_deref() == Some(pod.as_str()))
    );

    let by_name = backend
        .deployments(&ListQuery::all().with_fields(fields("metadata.name=search-indexer")))
        .await
        .unwrap()
        .items;
    assert_eq!(
        names(&by_name),
        ["catalog/search-indexer".to_string()].into()
    );

    match backend
        .pods(&ListQuery::all().with_fields(fields("spec.bogusField=x")))
        .await
    {
        Err(ClusterError::Invalid(message)) => assert!(message.contains("spec.bogusField")),
        other => panic!("unsupported field selector: {other:?}"),
    }
}

/// A list read page by page gives every item exactly once, and says how many remain.
pub async fn lists_page_with_limit_and_continue(backend: &dyn ClusterBackend) {
    let all = names(&backend.pods(&ListQuery::all()).await.unwrap().items);
    assert!(all.len() >= 30, "{} pods", all.len());
    let mut seen = Vec::new();
    let mut query = ListQuery::all().with_limit(7);
    let mut pages = 0;
    loop {
        let page = backend.pods(&query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 7);
        if let Some(remaining) = page.remaining {
            assert_eq!(remaining, all.len() - seen.len() - page.items.len());
        }
        seen.extend(names(&page.items));
        match page.continue_token {
            Some(token) => query.continue_token = Some(token),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(seen.len(), all.len(), "every pod once");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);
    assert!(pages >= 5);
    // A one-item page of a namespace tells its size.
    let one = backend
        .pods(&ListQuery::in_namespace("commerce").with_limit(1))
        .await
        .unwrap();
    let commerce = backend
        .pods(&ListQuery::in_namespace("commerce"))
        .await
        .unwrap();
    if let Some(total) = one.total() {
        assert_eq!(total, commerce.items.len());
    }
    assert!(matches!(
        backend
            .pods(&ListQuery {
                continue_token: Some("not-a-token".into()),
                ..ListQuery::all()
            })
            .await,
        Err(ClusterError::Invalid(_))
    ));
}

/// Log queries: tail, since and byte limits cut the same stream the way the API server does;
/// previous streams belong to crashed containers; unknown pods and containers are not found.
pub async fn log_queries_push_down(backend: &dyn ClusterBackend) {
    let pod = pods_of(backend, "identity", "user-service").await.remove(0);
    let name = view::name(&pod.metadata).to_string();
    let container = pod.spec.as_ref().unwrap().containers[0].name.clone();
    let whole = backend
        .pod_logs(&LogQuery::container("identity", &name, &container))
        .await
        .unwrap();
    let entries = whole.entries().to_vec();
    assert!(entries.len() >= 100, "{} entries", entries.len());
    assert!(entries.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));

    let tail = backend
        .pod_logs(&LogQuery {
            tail_lines: Some(10),
            ..LogQuery::container("identity", &name, &container)
        })
        .await
        .unwrap();
    assert_eq!(tail.entries(), &entries[entries.len() - 10..]);

    let since = entries[entries.len() / 2].timestamp;
    let recent = backend
        .pod_logs(&LogQuery {
            since: Some(since),
            ..LogQuery::container("identity", &name, &container)
        })
        .await
        .unwrap();
    let expected: Vec<_> = entries
        .iter()
        .filter(|e| e.timestamp >= since)
        .cloned()
        .collect();
    assert_eq!(recent.entries(), &expected[..]);

    let limited = backend
        .pod_logs(&LogQuery {
            limit_bytes: Some(2_000),
            ..LogQuery::container("identity", &name, &container)
        })
        .await
        .unwrap();
    assert!(!limited.is_empty() && limited.len() < entries.len());
    assert!(limited.cut_by_bytes);
    assert_eq!(limited.entries(), &entries[..limited.len()]);

    // payment-gateway's crashed instances died of OutOfMemoryError (incident 1).
    let crashed = pods_of(backend, "payments", "payment-gateway").await;
    let restarted = crashed
        .iter()
        .find(|p| view::pod_restarts(p) > 0)
        .expect("a restarted payment-gateway pod");
    let pod_name = view::name(&restarted.metadata);
    let container = restarted.spec.as_ref().unwrap().containers[0].name.clone();
    let previous = backend
        .pod_logs(&LogQuery::container("payments", pod_name, &container).previous(true))
        .await
        .unwrap();
    assert!(
        previous.entries().iter().any(|e| e
            .detail
            .iter()
            .chain(std::iter::once(&e.message))
            .any(|l| l.contains("OutOfMemoryError"))),
        "previous logs of {pod_name} show the OOM"
    );

    // A Pending pod has no logs: an empty answer, not an error.
    let pending = backend
        .pods(&ListQuery::in_namespace("catalog").with_fields(fields("status.phase=Pending")))
        .await
        .unwrap()
        .items;
    assert!(first_container_logs(backend, &pending[0]).await.is_empty());

    assert!(matches!(
        backend
            .pod_logs(&LogQuery::container("identity", "no-such-pod", "app"))
            .await,
        Err(ClusterError::NotFound { kind: "pod", .. })
    ));
    assert!(matches!(
        backend
            .pod_logs(&LogQuery::container("identity", &name, "no-such-container"))
            .await,
        Err(ClusterError::NotFound {
            kind: "container",
            ..
        })
    ));
}

/// The four incidents of the demo, each read through the methods the tools use.
pub async fn incidents_are_visible(backend: &dyn ClusterBackend) {
    // 1. payment-gateway: OOMKilled crash loop after revision 7.
    let gateway = backend
        .deployment("payments", "payment-gateway")
        .await
        .unwrap();
    let scope =
        ListQuery::in_namespace("payments").with_labels(view::deployment_selector(&gateway));
    let replica_sets = backend.replica_sets(&scope).await.unwrap().items;
    assert_eq!(view::current_revision(&gateway, &replica_sets), Some(7));
    let current = view::current_replica_set(&gateway, &replica_sets).unwrap();
    assert!(
        view::change_cause(&current.metadata)
            .unwrap()
            .contains("batch settlement reconciliation")
    );
    let pods = backend.pods(&scope).await.unwrap().items;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| !view::pod_is_ready(p)));
    let last_reasons: BTreeSet<String> = pods
        .iter()
        .flat_map(|p| {
            p.status
                .as_ref()
                .unwrap()
                .container_statuses
                .iter()
                .flatten()
        })
        .filter_map(|c| c.last_state.as_ref()?.terminated.as_ref()?.reason.clone())
        .collect();
    assert!(last_reasons.contains("OOMKilled"), "{last_reasons:?}");
    let metrics = backend.service_metrics(Some("payments")).await.unwrap();
    let gateway_metrics = metrics
        .iter()
        .find(|m| m.service == "payment-gateway")
        .unwrap();
    assert!(
        gateway_metrics
            .alerts
            .iter()
            .any(|a| a.name == "PaymentGatewayDown")
    );

    // 2. inventory-service: connection pool exhaustion in its logs, 2 of 4 pods ready.
    let inventory = pods_of(backend, "commerce", "inventory-service").await;
    assert_eq!(
        inventory.iter().filter(|p| view::pod_is_ready(p)).count(),
        2
    );
    let mut pool_errors = 0;
    for pod in &inventory {
        pool_errors += first_container_logs(backend, pod)
            .await
            .entries()
            .iter()
            .filter(|e| e.message.contains("Connection is not available"))
            .count();
    }
    assert!(pool_errors > 0, "HikariCP pool exhaustion in the logs");

    // 3. recommendation-engine: the new pod cannot pull its image.
    let recommendation = pods_of(backend, "catalog", "recommendation-engine").await;
    assert!(
        recommendation
            .iter()
            .any(|p| view::pod_status(p) == "ImagePullBackOff"),
        "{:?}",
        recommendation
            .iter()
            .map(view::pod_status)
            .collect::<Vec<_>>()
    );

    // 4. search-indexer: a Pending pod that cannot be scheduled, a stuck rollout.
    let indexer = backend
        .deployment("catalog", "search-indexer")
        .await
        .unwrap();
    let stuck = indexer
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    assert!(stuck);

    // Relative times were resolved at load: the newest events are recent, none in the future.
    let now = Timestamp::now();
    let events = backend.events(&ListQuery::all()).await.unwrap().items;
    let newest = events
        .iter()
        .filter_map(view::event_last_seen)
        .max()
        .unwrap();
    assert!(newest <= now && newest >= now - SignedDuration::from_hours(1));
}

/// The current revision has one definition: the Deployment's revision annotation agrees with
/// its newest ReplicaSet for every deployment.
pub async fn current_revision_agrees_everywhere(backend: &dyn ClusterBackend) {
    let deployments = backend.deployments(&ListQuery::all()).await.unwrap().items;
    let replica_sets = backend.replica_sets(&ListQuery::all()).await.unwrap().items;
    assert!(deployments.len() >= 11);
    for d in &deployments {
        let newest = view::owned_replica_sets(d, &replica_sets)
            .filter_map(|rs| view::revision(&rs.metadata))
            .max();
        assert_eq!(
            view::current_revision(d, &replica_sets),
            newest,
            "{}",
            view::name(&d.metadata)
        );
        assert!(view::current_replica_set(d, &replica_sets).is_some());
    }
}
