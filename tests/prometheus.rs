//! The Prometheus metrics source against a real Prometheus 2.42 (from `tests/k8s/testenv.sh`):
//! the demo cluster's service metrics backfilled as request counters and latency histograms,
//! its alerts as rules the server evaluates. The default PromQL templates must read every
//! number back, alerts must land on their services, scopes must hold, and a query the server
//! refuses must say so.

mod k8s;

use std::time::Duration;

use jiff::Timestamp;
use sre_mcp::cluster::demo::DemoCluster;
use sre_mcp::cluster::prometheus::{MetricQueries, Prometheus, Scope};
use sre_mcp::cluster::{ClusterBackend, ClusterError, ServiceMetrics};

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

fn find<'a>(metrics: &'a [ServiceMetrics], namespace: &str, service: &str) -> &'a ServiceMetrics {
    metrics
        .iter()
        .find(|m| m.namespace == namespace && m.service == service)
        .unwrap_or_else(|| panic!("no metrics for {namespace}/{service}: {metrics:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_queries_read_back_every_signal_and_alert() {
    // Prometheus runs beside the test API server; both come from the test environment.
    if k8s::kubeconfig("the Prometheus metrics source test").is_none() {
        return;
    }
    let demo = DemoCluster::load(Timestamp::now()).unwrap();
    let expected = demo.service_metrics(None).await.unwrap();
    let url = k8s::prometheus::start(&expected).await;
    let prometheus =
        Prometheus::new(&url, MetricQueries::default(), Duration::from_secs(10)).unwrap();

    let got = prometheus.service_metrics(&Scope::All).await.unwrap();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for want in &expected {
        let m = find(&got, &want.namespace, &want.service);
        let what = format!("{}/{}", want.namespace, want.service);
        assert!(
            close(m.error_rate, want.error_rate),
            "{what} error rate {m:?}"
        );
        assert!(close(m.rps, want.rps), "{what} rps {m:?}");
        assert!(close(m.p50_ms, want.p50_ms), "{what} p50 {m:?}");
        assert!(close(m.p99_ms, want.p99_ms), "{what} p99 {m:?}");
        let mut names: Vec<_> = m
            .alerts
            .iter()
            .map(|a| (a.name.clone(), a.severity.clone(), a.summary.clone()))
            .collect();
        let mut want_names: Vec<_> = want
            .alerts
            .iter()
            .map(|a| (a.name.clone(), a.severity.clone(), a.summary.clone()))
            .collect();
        names.sort();
        want_names.sort();
        assert_eq!(names, want_names, "{what} alerts");
        // The one definition of status from metrics gives the demo's status from real data.
        assert_eq!(m.status(), want.status(), "{what}");
        // activeAt is when Prometheus first saw the rule fire: this run, not the future.
        assert!(m.alerts.iter().all(|a| a.since <= Timestamp::now()));
    }

    // Scopes: one namespace, or an allowlist, and nothing else.
    let payments = prometheus
        .service_metrics(&Scope::Namespace("payments".into()))
        .await
        .unwrap();
    assert!(!payments.is_empty());
    assert!(payments.iter().all(|m| m.namespace == "payments"));
    let allowed = prometheus
        .service_metrics(&Scope::Namespaces(vec!["edge".into(), "identity".into()]))
        .await
        .unwrap();
    let namespaces: std::collections::BTreeSet<_> =
        allowed.iter().map(|m| m.namespace.as_str()).collect();
    assert_eq!(namespaces, ["edge", "identity"].into());

    // Other label names: the same data, read by `app` instead of `service`, finds no series
    // (signals unknown, never zero) ...
    let by_app: MetricQueries = toml::from_str("service_label = \"app\"").unwrap();
    let unknown = Prometheus::new(&url, by_app, Duration::from_secs(10))
        .unwrap()
        .service_metrics(&Scope::Namespace("commerce".into()))
        .await
        .unwrap();
    assert!(
        unknown
            .iter()
            .all(|m| m.rps.is_none() && m.error_rate.is_none()),
        "{unknown:?}"
    );

    // ... and a template Prometheus cannot parse is refused with its reason and the query.
    let broken: MetricQueries = toml::from_str(
        "rps = \"sum by (namespace, service) (rate(http_requests_total{$scope}[$window])\"",
    )
    .unwrap();
    match Prometheus::new(&url, broken, Duration::from_secs(10))
        .unwrap()
        .service_metrics(&Scope::All)
        .await
    {
        Err(ClusterError::Invalid(message)) => {
            assert!(message.contains("refused the rps query"), "{message}");
            assert!(message.contains("bad_data"), "{message}");
        }
        other => panic!("a broken query: {other:?}"),
    }
}
