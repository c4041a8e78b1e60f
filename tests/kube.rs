//! The kube backend against a real kube-apiserver and kube-controller-manager (v1.20, from
//! `tests/k8s/testenv.sh`), through the real binary and rmcp's client. An incident is seeded
//! the way it happens: a Deployment rolled to a second revision by the controller-manager, the
//! new pod crash-looping with its last instance OOMKilled, a warning event, logs served by a
//! test kubelet. Then every read tool must report it, the read-only role in the README must be
//! enough, RBAC denials and the `--namespaces` allowlist must read clearly, and an API server
//! that goes away must give bounded errors and then work again.

mod common;
mod k8s;

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use common::{call, ok, text};

const WHOLE: [&str; 4] = [
    "--max-result-tokens",
    "1000000",
    "--max-result-tokens-ceiling",
    "1000000",
];

async fn start_kube(kubeconfig: &Path, extra: &[&str]) -> common::Client {
    let mut args = vec![
        "--backend",
        "kube",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--no-embeddings",
    ];
    args.extend_from_slice(&WHOLE);
    args.extend_from_slice(extra);
    common::start(&args).await
}

/// The incident: what was seeded, for the checks.
struct Incident {
    namespace: String,
    crashing_pod: String,
    healthy_pod: String,
}

async fn seed_incident(admin: &kube::Client, kubelet: &k8s::Kubelet, name: &str) -> Incident {
    let node = k8s::ensure_node(admin, kubelet).await;
    let namespace = k8s::fresh_namespace(admin, name).await;
    let replica_sets = k8s::deploy_revisions(
        admin,
        &namespace,
        "checkout",
        2,
        &[
            ("registry.example/checkout:1.0.0", "initial release"),
            (
                "registry.example/checkout:1.1.0",
                "raise the batch size to 5000",
            ),
        ],
    )
    .await;
    assert_eq!(replica_sets.len(), 2, "two revisions");
    // No pod ever becomes ready without a kubelet, so the rollout stalls with one new pod
    // beside the two old ones (maxSurge 25% of 2 rounds up to 1, maxUnavailable down to 0).
    let old = k8s::pods_of(admin, &namespace, &replica_sets[0], 2).await;
    let new = k8s::pods_of(admin, &namespace, &replica_sets[1], 1).await;
    let started = Timestamp::now() - SignedDuration::from_secs(3600);
    for pod in old.iter().chain(&new) {
        let name = pod.metadata.name.as_deref().unwrap();
        k8s::bind(admin, &namespace, name, &node).await;
    }
    let healthy_pod = old[0].metadata.name.clone().unwrap();
    for pod in &old {
        let name = pod.metadata.name.as_deref().unwrap();
        k8s::set_pod_status(
            admin,
            &namespace,
            name,
            k8s::running("checkout", "registry.example/checkout:1.0.0", started),
        )
        .await;
    }
    let crashing_pod = new[0].metadata.name.clone().unwrap();
    k8s::set_pod_status(
        admin,
        &namespace,
        &crashing_pod,
        k8s::crash_looping_oom("checkout", "registry.example/checkout:1.1.0", 7, started),
    )
    .await;
    k8s::warn_event(
        admin,
        &namespace,
        k8s::Involved {
            kind: "Pod",
            name: &crashing_pod,
            uid: new[0].metadata.uid.as_deref().unwrap(),
        },
        "BackOff",
        "Back-off restarting failed container checkout in pod",
        42,
    )
    .await;
    k8s::warn_event(
        admin,
        &namespace,
        k8s::Involved {
            kind: "Pod",
            name: &crashing_pod,
            uid: new[0].metadata.uid.as_deref().unwrap(),
        },
        "FailedMount",
        "secret volume setup failed: password=hunter2-secret rejected",
        1,
    )
    .await;

    let now = Timestamp::now();
    let at = |seconds_ago: i64| now - SignedDuration::from_secs(seconds_ago);
    let mut healthy_log = Vec::new();
    for i in 0..200 {
        healthy_log.push((
            at(400 - i),
            format!("INFO GET /cart 200 in {}ms", 10 + i % 7),
        ));
    }
    // Credentials a service logged: they must never reach the client.
    healthy_log.push((
        at(170),
        "INFO connecting to postgres://checkout:s3cr3t-pw@db:5432/orders".to_string(),
    ));
    healthy_log.push((
        at(160),
        "WARN upstream refused Authorization: Bearer abcdefghijklmnopqrstuvwx".to_string(),
    ));
    healthy_log.push((
        at(150),
        "ERROR payment call failed: upstream timeout trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
            .to_string(),
    ));
    healthy_log.push((at(149), "  at checkout.Pay(pay.go:88)".to_string()));
    kubelet.set_log(&namespace, &healthy_pod, "checkout", false, healthy_log);
    for pod in &old[1..] {
        let name = pod.metadata.name.as_deref().unwrap();
        kubelet.set_log(
            &namespace,
            name,
            "checkout",
            false,
            vec![(at(30), "INFO GET /cart 200 in 12ms".into())],
        );
    }
    kubelet.set_log(
        &namespace,
        &crashing_pod,
        "checkout",
        false,
        vec![(at(5), "INFO starting checkout 1.1.0 batch_size=5000".into())],
    );
    kubelet.set_log(
        &namespace,
        &crashing_pod,
        "checkout",
        true,
        vec![
            (
                at(90),
                "INFO starting checkout 1.1.0 batch_size=5000".into(),
            ),
            (at(70), "WARN heap usage 93% of limit".into()),
            (
                at(61),
                "FATAL java.lang.OutOfMemoryError: Java heap space".into(),
            ),
            (at(61), "\tat checkout.Batch.load(Batch.java:120)".into()),
        ],
    );
    Incident {
        namespace,
        crashing_pod,
        healthy_pod,
    }
}

/// Every fact must appear in a tool's text view.
fn assert_mentions(tool: &str, text: &str, facts: &[&str]) {
    for fact in facts {
        assert!(text.contains(fact), "{tool} lacks {fact}: {text}");
    }
}

fn ns_of(incident: &Incident) -> &str {
    &incident.namespace
}

/// Every read tool, against the seeded incident; `client` may use any context with read
/// rights.
async fn read_tools_report_the_incident(client: &common::Client, incident: &Incident) {
    let ns = incident.namespace.as_str();

    let namespaces = ok(client, "list_namespaces", json!({})).await;
    assert!(
        namespaces.to_string().contains(ns),
        "list_namespaces: {namespaces}"
    );

    let pods = ok(client, "list_pods", json!({"namespace": ns})).await;
    let pods = pods["pods"].as_array().unwrap().clone();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let crashing = pods
        .iter()
        .find(|p| p["name"] == incident.crashing_pod.as_str())
        .unwrap();
    assert_eq!(crashing["status"], "CrashLoopBackOff", "{crashing}");
    assert_eq!(crashing["restarts"], 7);
    assert_eq!(crashing["last_termination_reason"], "OOMKilled");
    // A server-side label selector.
    let selected = ok(
        client,
        "list_pods",
        json!({"namespace": ns, "label_selector": "app=checkout", "status": "CrashLoopBackOff"}),
    )
    .await;
    assert_eq!(selected["pods"].as_array().unwrap().len(), 1, "{selected}");

    let describe = call(
        client,
        "describe_pod",
        json!({"namespace": ns, "pod": incident.crashing_pod}),
    )
    .await;
    assert_mentions(
        "describe_pod",
        &text(&describe),
        &[
            "CrashLoopBackOff",
            "OOMKilled",
            "137",
            "registry.example/checkout:1.1.0",
            "BackOff",
            "512Mi",
            "DB_PASSWORD=<secret checkout-db key password>",
            "DB_URL=postgres://app:",
        ],
    );
    // Env values typed into the spec are masked like any other credential, in both views.
    let described = format!(
        "{}{}",
        text(&describe),
        serde_json::to_string(&describe.structured_content).unwrap()
    );
    assert!(!described.contains("spec-pw-4711"), "{described}");

    let previous = ok(
        client,
        "get_pod_logs",
        json!({"namespace": ns, "pod": incident.crashing_pod, "previous": true}),
    )
    .await;
    let entries = previous["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{previous}");
    assert_eq!(entries[2]["level"], "FATAL");
    assert!(
        entries[2]["message"]
            .as_str()
            .unwrap()
            .contains("OutOfMemoryError")
    );
    assert_eq!(
        entries[2]["detail"][0],
        "at checkout.Batch.load(Batch.java:120)"
    );

    let tail = ok(
        client,
        "get_pod_logs",
        json!({"namespace": ns, "pod": incident.healthy_pod, "tail_lines": 5}),
    )
    .await;
    let tail_entries = tail["entries"].as_array().unwrap();
    assert_eq!(tail_entries.len(), 5, "{tail}");
    assert!(
        tail_entries[4]["message"]
            .as_str()
            .unwrap()
            .contains("payment call failed")
    );

    let errors = ok(
        client,
        "get_pod_logs",
        json!({"namespace": ns, "pod": incident.healthy_pod, "level": "error"}),
    )
    .await;
    assert_eq!(errors["entries"].as_array().unwrap().len(), 1, "{errors}");
    assert_eq!(
        errors["entries"][0]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );

    let deploys = call(
        client,
        "get_recent_deploys",
        json!({"service": format!("{ns}/checkout")}),
    )
    .await;
    assert_mentions(
        "get_recent_deploys",
        &text(&deploys),
        &[
            "registry.example/checkout:1.1.0",
            "registry.example/checkout:1.0.0",
            "raise the batch size to 5000",
        ],
    );

    let health = ok(
        client,
        "check_service_health",
        json!({"service": format!("{ns}/checkout")}),
    )
    .await;
    let service = &health["services"][0];
    assert_eq!(service["name"], "checkout", "{health}");
    assert_ne!(service["status"], "healthy", "{health}");
    // No metrics source: no invented numbers.
    assert!(service["error_rate"].is_null(), "{service}");
    assert!(
        service.to_string().contains("CrashLoopBackOff"),
        "{service}"
    );

    let search = ok(
        client,
        "search_logs",
        json!({"service": "checkout", "namespace": ns, "level": "error"}),
    )
    .await;
    assert!(
        search.to_string().contains("payment call failed"),
        "search_logs: {search}"
    );

    let trace = call(
        client,
        "trace_transaction",
        json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}),
    )
    .await;
    assert!(
        text(&trace).contains("payment call failed"),
        "trace_transaction: {}",
        text(&trace)
    );

    let events = call(client, "get_events", json!({"namespace": ns})).await;
    assert!(text(&events).contains("BackOff"), "{}", text(&events));

    // Secrets in logs and events are masked in both views.
    let logs = call(
        client,
        "get_pod_logs",
        json!({"namespace": ns, "pod": incident.healthy_pod, "grep": "postgres|Bearer"}),
    )
    .await;
    let views = format!(
        "{}\n{}\n{}\n{}",
        text(&logs),
        serde_json::to_string(&logs.structured_content).unwrap(),
        text(&events),
        serde_json::to_string(&events.structured_content).unwrap()
    );
    for secret in ["s3cr3t-pw", "abcdefghijklmnopqrstuvwx", "hunter2-secret"] {
        assert!(!views.contains(secret), "{secret} leaked: {views}");
    }
    assert!(views.matches("[REDACTED]").count() >= 6, "{views}");
}

/// The read-only role the README gives, applied as written and bound to the `reader` user.
async fn apply_readme_role(admin: &kube::Client) {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("```yaml\n# sre-mcp read-only")
        .expect("the README's read-only ClusterRole block");
    let block = &readme[start + "```yaml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let role: ClusterRole = serde_yaml_ng::from_str(block).expect("the README's ClusterRole");
    let name = role.metadata.name.clone().unwrap();
    let params = PatchParams::apply("sre-mcp-tests").force();
    Api::<ClusterRole>::all(admin.clone())
        .patch(&name, &params, &Patch::Apply(&role))
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "sre-mcp-test-readers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "sre-mcp-readers"}]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch("sre-mcp-test-readers", &params, &Patch::Apply(&binding))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_reads_through_every_tool_with_the_readme_role() {
    let Some(kubeconfig) = k8s::kubeconfig("the kube backend's incident test") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let kubelet = k8s::Kubelet::start(&k8s::pki_dir(&kubeconfig)).await;
    let incident = seed_incident(&admin, &kubelet, "sre-mcp-incident").await;

    let client = start_kube(&kubeconfig, &[]).await;
    read_tools_report_the_incident(&client, &incident).await;
    // Log parameters go to the API server (and from it to the kubelet).
    let requests = kubelet.requests.lock().unwrap().clone();
    assert!(
        requests.iter().any(|q| q.contains("tailLines=5")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|q| q.contains("previous=true")),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|q| q.contains("timestamps=true")),
        "{requests:?}"
    );
    // Which backend answered, and why.
    let health = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "system://health",
        ))
        .await
        .unwrap();
    let health = format!("{health:?}");
    assert!(health.contains("kubernetes"), "{health}");
    assert!(health.contains("--kubeconfig"), "{health}");
    // Every reply says which backend and context answered; `context` reads another context of
    // the same kubeconfig for one call (here the RBAC-less `viewer`: a clear 403).
    let reply = call(&client, "list_pods", json!({"namespace": ns_of(&incident)})).await;
    let meta = serde_json::to_value(&reply.meta).unwrap();
    assert_eq!(meta["backend"], "kubernetes", "{meta}");
    assert_eq!(meta["context"], "test", "{meta}");
    let denied = call(
        &client,
        "list_pods",
        json!({"namespace": ns_of(&incident), "context": "viewer"}),
    )
    .await;
    assert_eq!(denied.is_error, Some(true));
    assert!(text(&denied).contains("\"viewer\""), "{}", text(&denied));
    let unknown = call(
        &client,
        "list_pods",
        json!({"namespace": ns_of(&incident), "context": "nope"}),
    )
    .await;
    assert_eq!(unknown.is_error, Some(true));
    assert!(
        text(&unknown).contains("test, viewer, reader"),
        "{}",
        text(&unknown)
    );
    // And the server's own context again, unchanged.
    ok(
        &client,
        "list_pods",
        json!({"namespace": ns_of(&incident), "context": "test"}),
    )
    .await;
    client.cancel().await.unwrap();

    // The README's read-only role is enough for every read tool.
    apply_readme_role(&admin).await;
    let reader = start_kube(&kubeconfig, &["--context", "reader"]).await;
    read_tools_report_the_incident(&reader, &incident).await;
    reader.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denials_name_what_was_denied_and_the_server_stays_up() {
    let Some(kubeconfig) = k8s::kubeconfig("the kube backend's RBAC test") else {
        return;
    };
    let client = start_kube(&kubeconfig, &["--context", "viewer"]).await;
    // Each denial names the verb and resource the API server refused (the first request a
    // tool makes: a namespaced tool checks its namespace first) and the context.
    for (tool, arguments, denied) in [
        ("list_namespaces", json!({}), "may not list"),
        (
            "list_pods",
            json!({"namespace": "default"}),
            "may not get namespaces",
        ),
        (
            "describe_pod",
            json!({"namespace": "default", "pod": "x"}),
            "may not",
        ),
        ("get_events", json!({"namespace": "default"}), "may not"),
        (
            "list_deployments",
            json!({"namespace": "default"}),
            "may not",
        ),
        ("check_service_health", json!({}), "may not list"),
        (
            "get_pod_logs",
            json!({"namespace": "default", "pod": "x"}),
            "may not get pods",
        ),
    ] {
        let result = call(&client, tool, arguments).await;
        assert_eq!(result.is_error, Some(true), "{tool}: {}", text(&result));
        let message = text(&result);
        assert!(
            message.contains("forbidden") && message.contains(denied),
            "{tool}: {message}"
        );
        assert!(message.contains("\"viewer\""), "{tool}: {message}");
    }
    // Still serving.
    let tools = client.list_all_tools().await.unwrap();
    assert!(!tools.is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_allowlist_refuses_before_asking_and_hides_the_rest() {
    let Some(kubeconfig) = k8s::kubeconfig("the kube backend's allowlist test") else {
        return;
    };
    let client = start_kube(&kubeconfig, &["--namespaces", "default,kube-public"]).await;
    let refused = call(&client, "list_pods", json!({"namespace": "kube-system"})).await;
    assert_eq!(refused.is_error, Some(true));
    let message = text(&refused);
    assert!(
        message.contains("kube-system") && message.contains("allowlist"),
        "{message}"
    );
    let namespaces = ok(&client, "list_namespaces", json!({})).await;
    let names: Vec<&str> = namespaces["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "kube-public"], "{namespaces}");
    client.cancel().await.unwrap();
}

/// A TCP relay to the API server that can be cut and restored, to play an outage.
struct Relay {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(AtomicBool::new(true));
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    // Accept and hang: what a black-holed API server looks like.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        drop(inbound);
                    });
                    continue;
                }
                let target = target.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while gate.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = cut => {} }
                });
            }
        });
        Relay { port, open }
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_gives_bounded_errors_then_recovers() {
    let Some(kubeconfig) = k8s::kubeconfig("the kube backend's outage test") else {
        return;
    };
    let original = std::fs::read_to_string(&kubeconfig).unwrap();
    let server = original
        .split("server: \"https://")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the server address in the test kubeconfig")
        .to_string();
    let relay = Relay::start(server.clone()).await;
    let relayed = kubeconfig.with_file_name(format!("kubeconfig-relay-{}", relay.port));
    std::fs::write(
        &relayed,
        original.replace(
            &format!("https://{server}"),
            &format!("https://127.0.0.1:{}", relay.port),
        ),
    )
    .unwrap();
    let client = start_kube(&relayed, &["--api-timeout", "2s"]).await;
    ok(&client, "list_pods", json!({"namespace": "default"})).await;

    relay.set_open(false);
    // The relay drops its open connections within 50 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let failed = call(&client, "list_pods", json!({"namespace": "default"})).await;
    let took = started.elapsed();
    assert_eq!(failed.is_error, Some(true), "{}", text(&failed));
    assert!(
        took < Duration::from_secs(8),
        "the error took {took:?} with --api-timeout 2s"
    );
    let message = text(&failed);
    assert!(
        message.contains("timed out") || message.contains("cannot reach"),
        "{message}"
    );

    relay.set_open(true);
    let back = ok(&client, "list_pods", json!({"namespace": "default"})).await;
    assert!(back["pods"].is_array(), "{back}");
    client.cancel().await.unwrap();
    let _ = std::fs::remove_file(&relayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_where_metrics_come_from_and_survives_a_dead_prometheus() {
    let Some(kubeconfig) = k8s::kubeconfig("the kube backend's metrics-source test") else {
        return;
    };
    // No --prometheus: signals are unknown, and the report says why.
    let plain = start_kube(&kubeconfig, &[]).await;
    let reply = call(&plain, "check_service_health", json!({})).await;
    assert_ne!(reply.is_error, Some(true), "{}", text(&reply));
    let report = text(&reply);
    assert!(
        report.contains("Metrics: none (start with --prometheus URL"),
        "{report}"
    );
    plain.cancel().await.unwrap();

    // A Prometheus that is not there: the pods' side of the report still stands, with the
    // reason the signals are missing, within the API timeout. (Port 9 is discard: nothing
    // listens on loopback.)
    let dead = start_kube(
        &kubeconfig,
        &[
            "--prometheus",
            "http://user:hunter2@127.0.0.1:9",
            "--api-timeout",
            "3s",
        ],
    )
    .await;
    let started = Instant::now();
    let reply = call(&dead, "check_service_health", json!({})).await;
    assert_ne!(reply.is_error, Some(true), "{}", text(&reply));
    let report = text(&reply);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        report.contains("Metrics: unavailable: cluster unavailable: Prometheus http://127.0.0.1:9/ did not answer")
            || report.contains("Metrics: unavailable: cluster unavailable: Prometheus http://127.0.0.1:9 did not answer"),
        "{report}"
    );
    assert!(!report.contains("hunter2"), "{report}");
    let health = dead
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "system://health",
        ))
        .await
        .unwrap();
    let health = format!("{health:?}");
    assert!(health.contains("Prometheus http://127.0.0.1:9"), "{health}");
    assert!(!health.contains("hunter2"), "{health}");
    dead.cancel().await.unwrap();

    // A queries file with a mistake stops the server at start, saying what is wrong.
    let dir = std::env::temp_dir().join(format!("sre-mcp-queries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let queries = dir.join("queries.toml");
    std::fs::write(&queries, "window = \"five minutes\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
        .args(["--backend", "kube", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--prometheus", "http://127.0.0.1:9", "--prometheus-queries"])
        .arg(&queries)
        .args(["call", "list_namespaces"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("queries.toml") && stderr.contains("not a PromQL duration"),
        "{stderr}"
    );
}
