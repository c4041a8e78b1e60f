//! The Kubernetes backend against the test API server (`tests/k8s/testenv.sh start`, named by
//! `SRE_MCP_TEST_KUBECONFIG`), over stdio with the real binary: p50 of `list_pods` in a
//! namespace of 100 pods and of 5,000 (`SRE_MCP_BENCH_LARGE_PODS`; the controller-manager makes
//! them at about 15 a second, so seeding takes minutes), `describe_pod`, `get_pod_logs` of a 10,000-line log,
//! `search_logs` over 10 pods × 1,000 lines, `check_service_health` for one service and for all,
//! and the server's memory after 1,000 calls.
//! Run with `cargo bench --bench kube`; prints figures, asserts nothing.

mod common;
#[path = "../tests/k8s/mod.rs"]
mod k8s;

use std::time::{Duration, Instant};

use common::{Server, micros, percentile};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// A Deployment to seed: `logged` of its pods run, with logs of `lines` lines each.
struct Service<'a> {
    app: &'a str,
    replicas: usize,
    logged: usize,
    lines: usize,
}

/// Seeds a Deployment; returns the pods that run and log.
async fn running_service(
    admin: &kube::Client,
    kubelet: &k8s::Kubelet,
    node: &str,
    namespace: &str,
    service: Service<'_>,
) -> Vec<String> {
    let Service {
        app,
        replicas,
        logged,
        lines,
    } = service;
    let image = format!("registry.example/{app}:1.0.0");
    let revisions = k8s::deploy_revisions(
        admin,
        namespace,
        app,
        replicas as i32,
        &[(&image, "initial release")],
    )
    .await;
    let pods = k8s::pods_of(admin, namespace, &revisions[0], replicas).await;
    let started = Timestamp::now() - SignedDuration::from_secs(7200);
    let now = Timestamp::now();
    let mut names = Vec::new();
    for pod in pods.iter().take(logged) {
        let name = pod.metadata.name.clone().unwrap();
        k8s::bind(admin, namespace, &name, node).await;
        k8s::set_pod_status(admin, namespace, &name, k8s::running(app, &image, started)).await;
        let log = (0..lines)
            .map(|i| {
                let at = now - SignedDuration::from_millis(((lines - i) * 300) as i64);
                let line = if i % 97 == 0 {
                    format!("ERROR order {i} failed: inventory timeout after 5000ms")
                } else {
                    format!("INFO GET /orders/{i} 200 in {}ms", 5 + i % 40)
                };
                (at, line)
            })
            .collect();
        kubelet.set_log(namespace, &name, app, false, log);
        names.push(name);
    }
    names
}

fn calls(server: &mut Server, label: &str, count: usize, tool: &str, arguments: Value) {
    let mut samples = Vec::with_capacity(count);
    let mut bytes = 0;
    let mut errors = 0;
    for _ in 0..count {
        let started = Instant::now();
        let reply = server.request(
            "tools/call",
            json!({"name": tool, "arguments": arguments.clone()}),
        );
        samples.push(started.elapsed());
        bytes = reply.to_string().len();
        if reply["result"]["isError"] == true || reply.get("error").is_some() {
            errors += 1;
        }
    }
    samples.sort();
    println!(
        "{label}: p50 {} p99 {} over {count} calls ({bytes} bytes per reply{})",
        micros(percentile(&samples, 0.5)),
        micros(percentile(&samples, 0.99)),
        if errors > 0 {
            format!(", {errors} errors")
        } else {
            String::new()
        }
    );
}

fn main() {
    let Some(kubeconfig) = std::env::var_os(k8s::KUBECONFIG_VAR).map(std::path::PathBuf::from)
    else {
        println!(
            "skipped: the kube bench needs the test API server ({} unset; start it with tests/k8s/testenv.sh start)",
            k8s::KUBECONFIG_VAR
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let large_pods: usize = std::env::var("SRE_MCP_BENCH_LARGE_PODS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    let seeding = Instant::now();
    let (small, large, api_pods, big_log_pod) = runtime.block_on(async {
        let admin = k8s::client(&kubeconfig, "test").await;
        let kubelet = k8s::Kubelet::start(&k8s::pki_dir(&kubeconfig)).await;
        let node = k8s::ensure_node(&admin, &kubelet).await;
        let small = k8s::fresh_namespace(&admin, "bench-small").await;
        let web = running_service(
            &admin,
            &kubelet,
            &node,
            &small,
            Service {
                app: "web",
                replicas: 100,
                logged: 1,
                lines: 10_000,
            },
        )
        .await;
        let api = running_service(
            &admin,
            &kubelet,
            &node,
            &small,
            Service {
                app: "api",
                replicas: 10,
                logged: 10,
                lines: 1_000,
            },
        )
        .await;
        let large = k8s::fresh_namespace(&admin, "bench-large").await;
        k8s::deploy_revisions(
            &admin,
            &large,
            "fleet",
            large_pods as i32,
            &[("registry.example/fleet:1", "initial")],
        )
        .await;
        let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), &large);
        k8s::eventually_within(
            "the large namespace's pods",
            Duration::from_secs(900),
            || {
                let pods = pods.clone();
                async move {
                    // A full list: v1.20 gives metadata-only lists no remaining count.
                    let list = pods
                        .list(&kube::api::ListParams::default().limit(1))
                        .await
                        .ok()?;
                    let total =
                        list.items.len() as i64 + list.metadata.remaining_item_count.unwrap_or(0);
                    (total >= large_pods as i64).then_some(())
                }
            },
        )
        .await;
        // The kubelet keeps serving from the runtime's threads.
        std::mem::forget(kubelet);
        (small, large, api, web[0].clone())
    });
    println!(
        "seeded 110 pods (11 with logs) and 5,000 pending pods in {:.0} s",
        seeding.elapsed().as_secs_f64()
    );

    let mut server = Server::spawn(&[
        "--backend",
        "kube",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--no-embeddings",
    ]);
    server.initialize();
    calls(
        &mut server,
        "list_pods, 100 pods",
        200,
        "list_pods",
        json!({"namespace": small, "label_selector": "app=web"}),
    );
    calls(
        &mut server,
        "list_pods, 5,000 pods",
        20,
        "list_pods",
        json!({"namespace": large}),
    );
    calls(
        &mut server,
        "describe_pod",
        200,
        "describe_pod",
        json!({"namespace": small, "pod": api_pods[0]}),
    );
    calls(
        &mut server,
        "get_pod_logs, 10,000-line log (tail_lines=10000)",
        30,
        "get_pod_logs",
        json!({"namespace": small, "pod": big_log_pod, "tail_lines": 10000}),
    );
    calls(
        &mut server,
        "get_pod_logs, 10,000-line log (level=error)",
        30,
        "get_pod_logs",
        json!({"namespace": small, "pod": big_log_pod, "level": "error"}),
    );
    calls(
        &mut server,
        "search_logs, 10 pods × 1,000 lines (level=error)",
        30,
        "search_logs",
        json!({"service": format!("{small}/api"), "level": "error"}),
    );
    calls(
        &mut server,
        "check_service_health, one service",
        200,
        "check_service_health",
        json!({"service": format!("{small}/api")}),
    );
    calls(
        &mut server,
        "check_service_health, all (5,110 pods)",
        10,
        "check_service_health",
        json!({}),
    );
    let (rss_before, _) = server.memory_mb();
    let mix = [
        (
            "list_pods",
            json!({"namespace": small, "label_selector": "app=api"}),
        ),
        (
            "describe_pod",
            json!({"namespace": small, "pod": api_pods[1]}),
        ),
        (
            "check_service_health",
            json!({"service": format!("{small}/api")}),
        ),
        ("get_events", json!({"namespace": small})),
        (
            "get_pod_logs",
            json!({"namespace": small, "pod": api_pods[2], "tail_lines": 200}),
        ),
    ];
    for i in 0..1000 {
        let (tool, arguments) = &mix[i % mix.len()];
        server.request("tools/call", json!({"name": tool, "arguments": arguments}));
    }
    let (rss, peak) = server.memory_mb();
    println!(
        "server memory: RSS {rss_before:.1} MB before and {rss:.1} MB after 1,000 more calls (peak {peak:.1} MB)"
    );
    drop(runtime);
}
