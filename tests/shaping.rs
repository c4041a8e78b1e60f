//! Result shaping through a real MCP client: a generated demo cluster with a 10,000-pod
//! namespace and a 50,000-line log (written by this test, loaded with `--demo-fixtures`) comes
//! back within the token cap, valid against each tool's outputSchema, with exact
//! "… N more (of M)" counts, the unhealthy pods and error lines kept, and the full text readable
//! page by page from `result://`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::{Client, call, err, start, text};
use rmcp::model::{CallToolResult, ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};
use sre_mcp::util::tokens::Encoding;

const PODS: usize = 10_000;
const CRASHING: usize = 30;
const PENDING: usize = 20;
const LOG_LINES: usize = 50_000;
const NAMESPACE: &str = "bulk";

fn pod_name(i: usize) -> String {
    format!("worker-5d8f7c9b4-{i:05}")
}

/// Healthy pods, with `CRASHING` OOMKilled/CrashLoopBackOff pods and `PENDING` unschedulable
/// ones spread through the list (not at its start, so keeping them proves the ranking).
fn unhealthy_kind(i: usize) -> Option<&'static str> {
    if i % 331 == 100 && i / 331 < CRASHING {
        Some("crash")
    } else if i % 487 == 200 && i / 487 < PENDING {
        Some("pending")
    } else {
        None
    }
}

fn pod(i: usize) -> Value {
    let name = pod_name(i);
    let meta = json!({
        "name": name,
        "namespace": NAMESPACE,
        "creationTimestamp": "-3h",
        "labels": {"app": "worker", "pod-template-hash": "5d8f7c9b4"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "worker-5d8f7c9b4", "uid": "rs-uid", "controller": true}],
    });
    let spec = json!({
        "containers": [{"name": "worker", "image": "registry.example/worker:1.2.3"}],
        "nodeName": "node-1",
    });
    let status = match unhealthy_kind(i) {
        Some("crash") => json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": "worker", "image": "registry.example/worker:1.2.3", "imageID": "",
                "ready": false, "restartCount": 6, "started": false,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "-3m", "finishedAt": "-2m"}},
            }],
        }),
        Some(_) => json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        }),
        None => json!({
            "phase": "Running",
            "podIP": format!("10.1.{}.{}", i / 250, i % 250),
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "worker", "image": "registry.example/worker:1.2.3", "imageID": "",
                "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": "-3h"}},
            }],
        }),
    };
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})
}

/// Log line `i` (oldest first): a rotating mix of messages, one error every 500 lines, and a
/// burst of 300 identical warnings (to be folded).
fn log_line(i: usize) -> String {
    let offset = -((LOG_LINES - i) as f64) * 0.05;
    let (level, logger, message) = if i % 500 == 250 {
        (
            "ERROR",
            "jobs.Runner",
            format!("job {i} failed: upstream ledger returned 503"),
        )
    } else if (20_300..20_600).contains(&i) {
        (
            "WARN",
            "db.Pool",
            "connection pool exhausted, waiting for a free connection".to_string(),
        )
    } else {
        match i % 4 {
            0 => (
                "INFO",
                "jobs.Runner",
                format!("picked job {i} from queue default"),
            ),
            1 => ("DEBUG", "cache.Lru", format!("cache hit ratio {}%", i % 97)),
            2 => ("INFO", "http.access", "GET /healthz 200".to_string()),
            _ => (
                "INFO",
                "jobs.Runner",
                format!("finished job {} in {}ms", i - 3, i % 89),
            ),
        }
    };
    format!("{offset:.3} {level} {logger} - {message}\n")
}

/// Writes the generated fixtures once per test binary run.
fn fixtures() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sre-mcp-shaping-{}", std::process::id()));
    let marker = dir.join("complete");
    if marker.exists() {
        return dir;
    }
    let logs = dir.join("logs").join(NAMESPACE).join(pod_name(0));
    std::fs::create_dir_all(&logs).unwrap();
    let namespace = json!({
        "namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "creationTimestamp": "-30d"}, "status": {"phase": "Active"}},
        "deployments": [{
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "worker", "namespace": NAMESPACE, "creationTimestamp": "-30d", "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": PODS, "selector": {"matchLabels": {"app": "worker"}},
                     "template": {"metadata": {"labels": {"app": "worker"}}, "spec": {"containers": [{"name": "worker", "image": "registry.example/worker:1.2.3"}]}}},
            "status": {"replicas": PODS, "readyReplicas": PODS - CRASHING - PENDING, "updatedReplicas": PODS, "availableReplicas": PODS - CRASHING - PENDING},
        }],
        "replicasets": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "worker-5d8f7c9b4", "namespace": NAMESPACE, "creationTimestamp": "-3h",
                         "annotations": {"deployment.kubernetes.io/revision": "1"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker", "uid": "d-uid", "controller": true}]},
            "spec": {"replicas": PODS, "selector": {"matchLabels": {"app": "worker"}}},
            "status": {"replicas": PODS},
        }],
        "pods": (0..PODS).map(pod).collect::<Vec<_>>(),
    });
    // JSON is YAML: the loader reads it as it is.
    std::fs::write(
        dir.join(format!("{NAMESPACE}.yaml")),
        serde_json::to_string(&namespace).unwrap(),
    )
    .unwrap();
    let mut log = String::with_capacity(LOG_LINES * 70);
    for i in 0..LOG_LINES {
        log.push_str(&log_line(i));
    }
    std::fs::write(logs.join("worker.log"), log).unwrap();
    std::fs::write(&marker, "").unwrap();
    dir
}

async fn start_on(fixtures: &Path, extra: &[&str]) -> Client {
    let dir = fixtures.to_str().unwrap();
    let mut args = vec![
        "--demo-fixtures",
        dir,
        "--augment",
        "off",
        "--no-embeddings",
    ];
    args.extend_from_slice(extra);
    start(&args).await
}

/// The tool's declared outputSchema.
async fn output_schema(client: &Client, tool: &str) -> Value {
    let tools = client.list_all_tools().await.unwrap();
    let tool = tools.iter().find(|t| t.name == tool).unwrap();
    Value::Object((*tool.output_schema.clone().expect("outputSchema")).clone())
}

/// Checks the cap, the `_meta` count (against our own count of what arrived) and the schema.
async fn check_reply(client: &Client, tool: &str, result: &CallToolResult, cap: u64) -> Value {
    assert_ne!(result.is_error, Some(true), "{}", text(result));
    let structured = result.structured_content.clone().expect("structured");
    let meta = result.meta.clone().expect("_meta").0;
    let tokens = meta["tokens"].as_u64().unwrap();
    let text_tokens = Encoding::O200kBase.count(&text(result)) as u64;
    let structured_tokens = Encoding::O200kBase.count(&structured.to_string()) as u64;
    assert_eq!(
        meta.get("tokens_by_view").cloned().unwrap_or_default(),
        json!({"text": text_tokens, "structured": structured_tokens}),
        "_meta.tokens_by_view is what the client received: {meta:?}"
    );
    // rmcp's client is not in the host table: the larger view is booked.
    assert_eq!(
        tokens,
        text_tokens.max(structured_tokens),
        "_meta.tokens books the larger view for an unknown client"
    );
    // Each view fits the cap on its own.
    assert!(
        text_tokens <= cap && structured_tokens <= cap,
        "{tool}: views {text_tokens}/{structured_tokens} tokens, over the cap {cap}"
    );
    assert_eq!(meta["truncated"], json!(true));
    assert_eq!(meta["max_tokens"], json!(cap));
    let schema = output_schema(client, tool).await;
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&structured)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{tool}: shaped result breaks its outputSchema: {errors:?}"
    );
    structured
}

async fn read_text(client: &Client, uri: &str) -> String {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    match &result.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    }
}

/// Reads every page of a stored result; returns the bodies joined and checks each page's size.
async fn read_all_pages(client: &Client, uri: &str, pages: usize, cap: usize) -> String {
    let mut body = String::new();
    for page in 1..=pages {
        let text = read_text(client, &format!("{uri}?page={page}")).await;
        let tokens = Encoding::O200kBase.count(&text);
        assert!(tokens <= cap, "page {page} is {tokens} tokens (cap {cap})");
        let (header, rest) = text.split_once("\n\n").expect("header, blank line, body");
        assert!(
            header.contains(&format!("page {page} of {pages}")),
            "{header}"
        );
        if page < pages {
            assert!(
                header.contains(&format!("{uri}?page={}", page + 1)),
                "{header}"
            );
        }
        body.push_str(rest);
        body.push('\n');
    }
    body
}

fn list_report<'a>(structured: &'a Value, path: &str) -> &'a Value {
    structured["truncated"]["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == path)
        .unwrap_or_else(|| panic!("no shortened list {path}: {}", structured["truncated"]))
}

fn thousands(n: usize) -> String {
    sre_mcp::pipeline::shape::thousands(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pods_fit_the_cap_unhealthy_first_and_page_fully() {
    let dir = fixtures();
    let client = start_on(&dir, &[]).await;
    let unhealthy: HashSet<String> = (0..PODS)
        .filter(|&i| unhealthy_kind(i).is_some())
        .map(pod_name)
        .collect();
    assert_eq!(unhealthy.len(), CRASHING + PENDING);

    let result = call(&client, "list_pods", json!({"namespace": NAMESPACE})).await;
    let structured = check_reply(&client, "list_pods", &result, 2000).await;
    let pods = structured["pods"].as_array().unwrap();
    let report = list_report(&structured, "pods");
    assert_eq!(report["total"], json!(PODS));
    assert_eq!(report["kept"], json!(pods.len()));
    assert_eq!(
        report["more"],
        json!(format!(
            "… {} more (of 10,000)",
            thousands(PODS - pods.len())
        ))
    );
    assert!(pods.len() >= 5, "only {} pods kept", pods.len());
    // Fewer slots than unhealthy pods: every kept pod is an unhealthy one.
    for pod in pods {
        let name = pod["name"].as_str().unwrap();
        assert!(
            unhealthy.contains(name),
            "healthy pod {name} kept before unhealthy ones"
        );
    }
    let hints = structured["truncated"]["narrow_with"].to_string();
    assert!(
        hints.contains("status=") && hints.contains("Running 9,950"),
        "{hints}"
    );
    assert!(hints.contains("label_selector="), "{hints}");
    assert!(text(&result).contains(&format!(
        "… {} more (of 10,000)",
        thousands(PODS - pods.len())
    )));

    // The full list, page by page: every pod exactly once.
    let uri = structured["truncated"]["full_result"]
        .as_str()
        .unwrap()
        .to_string();
    let pages = structured["truncated"]["pages"].as_u64().unwrap() as usize;
    assert!(pages > 10, "{pages} pages");
    eprintln!(
        "10,000 pods: {} kept in {} tokens, full list on {pages} pages",
        pods.len(),
        result.meta.as_ref().unwrap().0["tokens"]
    );
    let body = read_all_pages(&client, &uri, pages, 2000).await;
    let mut seen = HashSet::new();
    for line in body.lines() {
        if let Some(name) = line
            .split_whitespace()
            .next()
            .filter(|w| w.starts_with("worker-"))
        {
            assert!(seen.insert(name.to_string()), "{name} on two pages");
        }
    }
    assert_eq!(seen.len(), PODS);
    let error = client
        .read_resource(ReadResourceRequestParams::new(format!(
            "{uri}?page={}",
            pages + 1
        )))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("pages 1 to {pages}")), "{error}");

    // A larger cap keeps every unhealthy pod, ahead of the healthy ones.
    let result = call(
        &client,
        "list_pods",
        json!({"namespace": NAMESPACE, "max_tokens": 20000}),
    )
    .await;
    let structured = check_reply(&client, "list_pods", &result, 20000).await;
    let pods = structured["pods"].as_array().unwrap();
    assert!(pods.len() > unhealthy.len(), "{} kept", pods.len());
    let first: HashSet<String> = pods[..unhealthy.len()]
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first, unhealthy);

    // The filter the hint names narrows the call to what fits: nothing is shaped.
    let result = call(
        &client,
        "list_pods",
        json!({"namespace": NAMESPACE, "status": "CrashLoopBackOff", "max_tokens": 6000}),
    )
    .await;
    let meta = result.meta.clone().unwrap().0;
    assert_eq!(meta["truncated"], json!(false), "{}", text(&result));
    assert_eq!(
        result.structured_content.unwrap()["pods"]
            .as_array()
            .unwrap()
            .len(),
        CRASHING
    );

    // The ledger counts shaped calls.
    let usage: Value = serde_json::from_str(&read_text(&client, "budget://usage").await).unwrap();
    assert_eq!(usage["by_tool"]["list_pods"]["shaped_calls"], json!(2));
    assert_eq!(usage["shaped_calls"], json!(2));
    assert_eq!(usage["result_pages"]["reads"], json!(pages));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_log_lines_keep_errors_and_newest_and_page_fully() {
    let dir = fixtures();
    let client = start_on(&dir, &[]).await;
    let result = call(
        &client,
        "get_pod_logs",
        json!({"namespace": NAMESPACE, "pod": pod_name(0), "tail_lines": LOG_LINES}),
    )
    .await;
    let structured = check_reply(&client, "get_pod_logs", &result, 2000).await;
    assert_eq!(structured["total_entries"], json!(LOG_LINES));
    let entries = structured["entries"].as_array().unwrap();
    let report = list_report(&structured, "entries");
    assert_eq!(report["total"], json!(LOG_LINES));
    assert_eq!(report["kept"], json!(entries.len()));
    let represented: usize = entries
        .iter()
        .map(|e| e["repeated"].as_u64().unwrap_or(1) as usize)
        .sum();
    assert_eq!(
        report["more"],
        json!(format!(
            "… {} more (of 50,000)",
            thousands(LOG_LINES - represented)
        ))
    );
    // The newest line and the newest error lines are kept, in time order.
    let messages: Vec<&str> = entries
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let newest = log_line(LOG_LINES - 1);
    assert!(
        newest.ends_with(&format!("{}\n", messages.last().unwrap())),
        "{newest}"
    );
    let errors: Vec<&Value> = entries.iter().filter(|e| e["level"] == "ERROR").collect();
    assert!(errors.len() >= 3, "{} error lines kept", errors.len());
    assert_eq!(
        errors.last().unwrap()["message"],
        json!("job 49750 failed: upstream ledger returned 503")
    );
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "kept lines are in time order"
    );
    let hints = structured["truncated"]["narrow_with"].to_string();
    // Arguments the call already set (tail_lines) are not suggested again.
    assert!(!hints.contains("tail_lines="), "{hints}");
    for argument in ["since=", "level=", "grep="] {
        assert!(hints.contains(argument), "{argument} missing from {hints}");
    }

    // Every one of the 50,000 lines is readable from result://, in order.
    let uri = structured["truncated"]["full_result"]
        .as_str()
        .unwrap()
        .to_string();
    let pages = structured["truncated"]["pages"].as_u64().unwrap() as usize;
    eprintln!(
        "50,000 log lines: {} kept ({} error lines, standing for {represented} lines) in {} tokens, full log on {pages} pages",
        entries.len(),
        errors.len(),
        result.meta.as_ref().unwrap().0["tokens"]
    );
    let body = read_all_pages(&client, &uri, pages, 2000).await;
    let lines: Vec<&str> = body.lines().filter(|l| l.starts_with("20")).collect();
    assert_eq!(lines.len(), LOG_LINES);
    assert!(
        lines[0].ends_with("picked job 0 from queue default"),
        "{}",
        lines[0]
    );
    assert!(lines[LOG_LINES - 1].contains(&format!("job {}", LOG_LINES - 4)));

    // Folding: the burst of 300 identical warnings stands as one line when it is kept.
    let result = call(
        &client,
        "get_pod_logs",
        json!({"namespace": NAMESPACE, "pod": pod_name(0), "tail_lines": LOG_LINES, "grep": "pool exhausted"}),
    )
    .await;
    let structured = result.structured_content.clone().unwrap();
    let entries = structured["entries"].as_array().unwrap();
    assert_eq!(structured["matched"], json!(300));
    if structured.get("truncated").is_some() {
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["repeated"], json!(300));
    } else {
        assert_eq!(entries.len(), 300);
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_argument_is_validated_and_clamped() {
    let client = start(&["--augment", "off", "--max-result-tokens-ceiling", "6000"]).await;
    let message = err(
        &client,
        "list_pods",
        json!({"namespace": "payments", "max_tokens": 10}),
    )
    .await;
    assert!(message.contains("from 500 to 6000"), "{message}");
    let message = err(
        &client,
        "list_pods",
        json!({"namespace": "payments", "max_tokens": "lots"}),
    )
    .await;
    assert!(message.contains("whole number"), "{message}");

    let result = call(
        &client,
        "search_logs",
        json!({"level": "info", "limit": 2000, "max_tokens": 1_000_000}),
    )
    .await;
    let meta = result.meta.clone().unwrap().0;
    assert_eq!(meta["max_tokens"], json!(6000));
    assert!(
        meta["max_tokens_note"]
            .as_str()
            .unwrap()
            .contains("ceiling")
    );
    assert!(meta["tokens"].as_u64().unwrap() <= 6000);

    // A small result is never shaped, whatever its cap.
    let result = call(
        &client,
        "check_service_health",
        json!({"service": "user-service", "max_tokens": 500}),
    )
    .await;
    assert_eq!(result.meta.clone().unwrap().0["truncated"], json!(false));

    let error = client
        .read_resource(ReadResourceRequestParams::new("result://0000-99"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not stored"), "{error}");
    client.cancel().await.unwrap();
}

/// Acceptance: the investigate-service prompt's tool sequence for payment-gateway at default
/// settings stays within the cap per call, reports its total, and keeps the root-cause
/// evidence — the OOMKilled containers and the deploy that added the batch job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn investigation_evidence_survives_default_shaping() {
    let client = start(&[]).await;
    let mut steps: Vec<(String, u64, bool, String)> = Vec::new();
    let mut attached: Vec<Value> = Vec::new();
    let mut views: Vec<Value> = Vec::new();
    let mut run = async |tool: &str, arguments: Value| -> Value {
        let result = call(&client, tool, arguments.clone()).await;
        assert_ne!(result.is_error, Some(true), "{tool}: {}", text(&result));
        let meta = result.meta.clone().unwrap().0;
        let tokens = meta["tokens"].as_u64().unwrap();
        assert!(tokens <= 2000, "{tool}: {tokens} tokens");
        let structured = result.structured_content.clone().unwrap();
        views.push(structured.clone());
        attached.extend(
            structured["relevant_runbooks"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
        steps.push((
            format!("{tool}({arguments})"),
            tokens,
            meta["truncated"] == json!(true),
            text(&result),
        ));
        structured
    };
    let health = run(
        "check_service_health",
        json!({"service": "payment-gateway"}),
    )
    .await;
    let namespace = health["services"][0]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let pods = run(
        "list_pods",
        json!({"namespace": namespace, "label_selector": "app=payment-gateway"}),
    )
    .await;
    let pod = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["status"] != "Running")
        .expect("an unhealthy pod")["name"]
        .as_str()
        .unwrap()
        .to_string();
    run("describe_pod", json!({"namespace": namespace, "pod": pod})).await;
    run(
        "get_pod_logs",
        json!({"namespace": namespace, "pod": pod, "previous": true, "level": "warn"}),
    )
    .await;
    run(
        "get_events",
        json!({"namespace": namespace, "type": "Warning", "object": "payment-gateway"}),
    )
    .await;
    run(
        "get_recent_deploys",
        json!({"service": "payment-gateway", "hours_back": 24}),
    )
    .await;
    run(
        "count_errors",
        json!({"group_by": "message", "since": "1h", "namespace": namespace}),
    )
    .await;
    run("check_service_health", json!({})).await;

    // Runbooks: each section's excerpt is sent once in the session, later only its title and
    // link with the call that carried it; every excerpt is whole sentences or list items.
    let mut sent: std::collections::BTreeMap<String, usize> = Default::default();
    for runbook in &attached {
        let key = format!("{}#{}", runbook["uri"], runbook["section"]);
        let excerpt = runbook["excerpt"].as_str().unwrap_or("");
        if excerpt.is_empty() {
            assert!(runbook["sent_in_call"].as_u64().is_some(), "{runbook}");
            assert!(
                sent.contains_key(&key),
                "referred to before it was sent: {runbook}"
            );
        } else {
            *sent.entry(key.clone()).or_default() += 1;
            assert!(!excerpt.contains('…'), "a cut excerpt: {excerpt}");
            assert!(excerpt.lines().all(|l| !l.trim().is_empty()), "{excerpt}");
            // What to do, not what the result already shows.
            assert!(
                !runbook["section"].as_str().unwrap().starts_with("Symptoms"),
                "{runbook}"
            );
        }
        assert!(
            runbook["score"].to_string().len() <= 4,
            "rounded: {runbook}"
        );
    }
    assert!(!sent.is_empty(), "runbooks were attached");
    assert!(
        sent.values().all(|n| *n == 1),
        "each section's excerpt once: {sent:?}"
    );
    assert!(
        attached.len() > sent.len(),
        "later calls referred to sections already sent: {attached:?}"
    );

    // The five-call investigation (health, pods, describe the crashing pod, events, deploys)
    // fits 3,000 tokens in the larger view, with every piece of evidence in each view.
    let five = [0, 1, 2, 4, 5];
    let five_tokens: u64 = five.iter().map(|&i| steps[i].1).sum();
    eprintln!("five-call investigation: {five_tokens} tokens (larger view)");
    assert!(five_tokens <= 3_000, "five calls cost {five_tokens} tokens");
    let five_text: String = five.iter().map(|&i| steps[i].3.as_str()).collect();
    let five_json: String = five.iter().map(|&i| views[i].to_string()).collect();
    let restarts = views[2]["containers"][0]["restarts"].to_string();
    for fact in [
        "CrashLoopBackOff",
        "OOMKilled",
        "137",
        "512Mi",
        "2.14.0",
        "batch settlement reconciliation",
        restarts.as_str(),
    ] {
        assert!(five_text.contains(fact), "text view lacks {fact}");
        assert!(five_json.contains(fact), "structured view lacks {fact}");
    }
    assert!(five_text.contains("rev 7") || five_text.contains("revision 7"));
    assert!(five_json.contains("\"revision\":7"));

    let total: u64 = steps.iter().map(|s| s.1).sum();
    eprintln!("investigate-service payment-gateway, default settings:");
    for (call, tokens, truncated, _) in &steps {
        eprintln!(
            "  {tokens:>5} tokens{} {call}",
            if *truncated { " (shaped)" } else { "         " }
        );
    }
    eprintln!("  {total:>5} tokens in total");
    let usage: Value = serde_json::from_str(&read_text(&client, "budget://usage").await).unwrap();
    assert_eq!(
        usage["tokens"],
        json!(total),
        "the ledger agrees with the replies"
    );

    let all_text: String = steps
        .iter()
        .map(|s| s.3.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let step = |i: usize| steps[i].3.as_str();
    assert!(step(0).contains("OOMKilled"), "health: {}", step(0));
    assert!(
        step(0).contains("batch settlement reconciliation job"),
        "{}",
        step(0)
    );
    assert!(step(1).contains("OOMKilled") || step(1).contains("CrashLoopBackOff"));
    assert!(
        step(2).contains("OOMKilled") && step(2).contains("137"),
        "{}",
        step(2)
    );
    assert!(
        step(3).contains("OutOfMemoryError"),
        "previous logs: {}",
        step(3)
    );
    assert!(
        step(5).contains("batch settlement reconciliation job") && step(5).contains("2.14.0"),
        "deploys: {}",
        step(5)
    );
    assert!(all_text.contains("rev 7") || all_text.contains("revision 7"));
    client.cancel().await.unwrap();
}

/// Breadth before depth: the first call of an incident ("what is wrong?") lists every
/// service at the default cap, worst first, each with its status and verdict; detail gives
/// way before any service does.
#[tokio::test]
async fn the_health_overview_lists_every_service_at_the_default_cap() {
    let client = start(&[]).await;
    let result = call(&client, "check_service_health", json!({})).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let structured = result.structured_content.clone().unwrap();
    let services = structured["services"].as_array().unwrap();
    assert_eq!(
        services.len(),
        11,
        "{:?} {}",
        result.meta,
        structured["truncated"]
    );
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for incident in [
        "payment-gateway",
        "inventory-service",
        "recommendation-engine",
        "search-indexer",
    ] {
        let position = names.iter().position(|n| *n == incident).unwrap();
        assert!(position < 6, "{incident} at {position}: {names:?}");
        let service = &services[position];
        assert_ne!(service["status"], "healthy", "{service}");
        assert!(!service["verdict"].as_str().unwrap().is_empty());
    }
    assert_eq!(names[0], "payment-gateway", "the one service down first");
    // Each view: every service named, within the cap.
    let text_view = text(&result);
    for name in &names {
        assert!(text_view.contains(name), "{name} missing from the text");
    }
    let meta = result.meta.clone().unwrap().0;
    let views = &meta["tokens_by_view"];
    assert!(views["text"].as_u64().unwrap() <= 2000, "{views}");
    assert!(views["structured"].as_u64().unwrap() <= 2000, "{views}");
    // The key evidence survives in the compact form (in the verdict line).
    let gateway = services[0]["verdict"].as_str().unwrap();
    for fact in ["0/3", "OOMKilled", "CrashLoopBackOff", "rev 7"] {
        assert!(gateway.contains(fact), "{fact}: {gateway}");
    }
    client.cancel().await.unwrap();
}
