//! The backend conformance suite (`tests/conformance/`) against the Kubernetes backend: a real
//! kube-apiserver and kube-controller-manager (v1.20, `tests/k8s/testenv.sh`, no kubelet and no
//! scheduler) into which the demo cluster is seeded once per run (`tests/k8s/demo_seed.rs`:
//! namespaces, nodes, Deployments rolled through their revisions by the controller-manager,
//! pods with the demo's statuses, events, logs served by a test kubelet). The scenarios are the
//! ones `tests/conformance_demo.rs` runs on the embedded demo cluster, unchanged.
//!
//! Every test shares one runtime (the test kubelet serves on it for the whole run) and one
//! seeding. Without a test API server the tests skip, or fail with `SRE_MCP_REQUIRE_K8S=1`,
//! as `tests/kube.rs` does.

mod common;
mod conformance;
mod k8s;

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use jiff::Timestamp;
use sre_mcp::cluster::ClusterBackend;
use sre_mcp::cluster::demo::DemoCluster;
use sre_mcp::cluster::kubernetes::KubeBackend;
use sre_mcp::cluster::kubernetes::config::{KubeSettings, KubeSource};
use sre_mcp::cluster::prometheus::{MetricQueries, Prometheus};
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;

/// The one runtime of this test binary: seeding, the test kubelet and every scenario run on it.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the test runtime")
});

/// The seeding, done by the first test that needs it; a failure is kept for every test to
/// report.
static SEEDED: OnceCell<Result<Seeded, String>> = OnceCell::const_new();

struct Seeded {
    /// Serves the seeded pods' logs for the whole run.
    _kubelet: k8s::Kubelet,
    /// A real Prometheus holding the demo's service metrics, its alerts as evaluated rules.
    prometheus: String,
}

fn test_kubeconfig() -> PathBuf {
    std::env::var_os(k8s::KUBECONFIG_VAR)
        .map(PathBuf::from)
        .expect("the test API server's kubeconfig")
}

/// The backend under test: the kube backend on the seeded test API server (context `test`).
async fn backend(prometheus: &str) -> KubeBackend {
    let timeout = Duration::from_secs(KubeSettings::DEFAULT_API_TIMEOUT_SECS);
    KubeBackend::connect(KubeSettings {
        source: KubeSource::Kubeconfig(test_kubeconfig()),
        context: Some("test".into()),
        api_timeout: timeout,
        namespaces: None,
        prometheus: Some(
            Prometheus::new(prometheus, MetricQueries::default(), timeout)
                .expect("the test Prometheus URL"),
        ),
    })
    .await
    .expect("the kube backend on the test API server")
}

async fn seed() -> Seeded {
    let kubeconfig = test_kubeconfig();
    let admin = k8s::client(&kubeconfig, "test").await;
    let kubelet = k8s::Kubelet::start(&k8s::pki_dir(&kubeconfig)).await;
    let demo = DemoCluster::load(Timestamp::now()).expect("demo fixtures load");
    let seeded = k8s::demo_seed::seed(&admin, &kubelet, &demo).await;
    let metrics = demo.service_metrics(None).await.expect("demo metrics");
    let prometheus = k8s::prometheus::start(&metrics).await;
    // Straight to stderr: the harness would capture `eprintln!` from the runtime's threads.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "seeded the demo cluster into the test API server in {:.1}s: {}",
        seeded.took.as_secs_f64(),
        seeded.summary
    );
    Seeded {
        _kubelet: kubelet,
        prometheus,
    }
}

/// Seeds the test API server once per run (on the shared runtime, so that the kubelet lives
/// on); every later caller waits for it or gets its failure.
async fn seeded() -> &'static Seeded {
    let outcome = SEEDED
        .get_or_init(|| async {
            tokio::spawn(seed())
                .await
                .map_err(|e| match e.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic".into()),
                    Err(e) => e.to_string(),
                })
        })
        .await;
    match outcome {
        Ok(seeded) => seeded,
        Err(message) => panic!("seeding the demo cluster failed: {message}"),
    }
}

/// One test per scenario, all on the one seeded cluster.
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                let Some(_) = k8s::kubeconfig(concat!(
                    "the conformance scenario ",
                    stringify!($scenario),
                    " on the kube backend"
                )) else {
                    return;
                };
                RUNTIME.block_on(async {
                    let seeded = seeded().await;
                    conformance::$scenario(&backend(&seeded.prometheus).await).await;
                });
            }
        )*
    };
}

scenarios!(
    gets_and_not_found,
    label_selectors_filter,
    field_selectors_filter,
    lists_page_with_limit_and_continue,
    log_queries_push_down,
    incidents_are_visible,
    current_revision_agrees_everywhere,
);

/// Through the real binary: `check_service_health` on the seeded cluster with `--prometheus`
/// gives every service the same status, pods, restarts, error rate, alerts and current
/// revision as the demo backend.
#[test]
fn health_through_the_binary_matches_the_demo() {
    let Some(kubeconfig) = k8s::kubeconfig("health through the binary on the seeded cluster")
    else {
        return;
    };
    RUNTIME.block_on(async {
        let seeded = seeded().await;
        let whole = [
            "--no-embeddings",
            "--augment",
            "off",
            "--max-result-tokens",
            "100000",
            "--max-result-tokens-ceiling",
            "100000",
        ];
        let mut kube_args = vec![
            "--backend",
            "kube",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--context",
            "test",
            "--prometheus",
            seeded.prometheus.as_str(),
        ];
        kube_args.extend_from_slice(&whole);
        let kube = common::start(&kube_args).await;
        let demo = common::start(&whole).await;
        let facts = |report: serde_json::Value| -> std::collections::BTreeMap<String, String> {
            report["services"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| {
                    ["catalog", "commerce", "edge", "identity", "payments"]
                        .contains(&s["namespace"].as_str().unwrap())
                })
                .map(|s| {
                    let mut alerts: Vec<&str> = s["firing_alerts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| a["name"].as_str().unwrap())
                        .collect();
                    alerts.sort();
                    (
                        format!("{}/{}", s["namespace"], s["name"]),
                        format!(
                            "status={} pods={}/{} restarts={} errors={} p99={} alerts={alerts:?} revision={}",
                            s["status"],
                            s["pods_ready"],
                            s["pods_desired"],
                            s["restarts"],
                            s["error_rate"],
                            s["latency_p99_ms"],
                            s["last_deploy"]["revision"]
                        ),
                    )
                })
                .collect()
        };
        let from_kube = facts(common::ok(&kube, "check_service_health", serde_json::json!({})).await);
        let from_demo = facts(common::ok(&demo, "check_service_health", serde_json::json!({})).await);
        assert_eq!(from_kube.len(), 11, "{from_kube:#?}");
        assert_eq!(from_kube, from_demo);
        kube.cancel().await.unwrap();
        demo.cancel().await.unwrap();
    });
}
