//! The server as MCP hosts run it: the real binary over stdio, driven by rmcp's client.

mod common;

use common::{call, err, ok, start, text};
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};

/// These tests check what the tools return, so results are not shaped (tests/shaping.rs
/// covers shaping, including the investigation evidence at the default cap).
const WHOLE_RESULTS: &[&str] = &[
    "--max-result-tokens",
    "1000000",
    "--max-result-tokens-ceiling",
    "1000000",
];

const TOOLS: &[&str] = &[
    "check_service_health",
    "list_namespaces",
    "list_pods",
    "describe_pod",
    "get_pod_logs",
    "get_events",
    "list_deployments",
    "get_recent_deploys",
    "search_logs",
    "count_errors",
    "trace_transaction",
    "search_runbooks",
    "troubleshoot_issue",
];

const WRITE_TOOLS: &[&str] = &[
    "deploy_with_review",
    "rollback_deployment",
    "restart_deployment",
    "scale_deployment",
];

fn items<'a>(value: &'a Value, field: &str) -> &'a Vec<Value> {
    value[field]
        .as_array()
        .unwrap_or_else(|| panic!("no array {field} in {value}"))
}

async fn first_pod(client: &common::Client, namespace: &str, service: &str) -> String {
    let pods = ok(
        client,
        "list_pods",
        json!({"namespace": namespace, "label_selector": format!("app={service}")}),
    )
    .await;
    items(&pods, "pods")[0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn lists_every_tool_with_schemas_and_read_only_hints() {
    let client = start(WHOLE_RESULTS).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("sre-mcp")
    );
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in TOOLS {
        assert!(
            names.contains(expected),
            "missing tool {expected}: {names:?}"
        );
    }
    for tool in &tools {
        assert!(
            tool.output_schema.is_some(),
            "{} has no outputSchema",
            tool.name
        );
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
        let annotations = tool.annotations.as_ref().expect("annotations");
        // The reads say they only read; the four writes say they change (and destroy) what
        // runs, and which of them repeat harmlessly (scale to N).
        let writes = WRITE_TOOLS.contains(&tool.name.as_ref());
        assert_eq!(annotations.read_only_hint, Some(!writes), "{}", tool.name);
        assert_eq!(annotations.destructive_hint, Some(writes), "{}", tool.name);
        if writes {
            assert_eq!(
                annotations.idempotent_hint,
                Some(tool.name == "scale_deployment"),
                "{}",
                tool.name
            );
        }
        assert!(tool.description.as_ref().is_some_and(|d| d.len() > 40));
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn health_shows_the_four_incidents_and_healthy_services() {
    let client = start(WHOLE_RESULTS).await;
    let health = ok(&client, "check_service_health", json!({})).await;
    let services = items(&health, "services");
    assert!(services.len() >= 8);
    let status = |name: &str| {
        services
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no service {name}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("payment-gateway"), "down");
    // The rollout condition the controller reports: search-indexer's is stuck.
    let indexer = services
        .iter()
        .find(|s| s["name"] == "search-indexer")
        .unwrap();
    let rollout = indexer["rollout"].as_str().unwrap_or_default();
    assert!(
        rollout.starts_with("stuck: ProgressDeadlineExceeded"),
        "{indexer}"
    );
    assert!(
        indexer["verdict"]
            .as_str()
            .unwrap()
            .contains("rollout stuck: ProgressDeadlineExceeded"),
        "{indexer}"
    );
    for degraded in [
        "inventory-service",
        "order-service",
        "checkout-api",
        "recommendation-engine",
        "search-indexer",
    ] {
        assert_ne!(status(degraded), "healthy", "{degraded}");
    }
    for healthy in [
        "user-service",
        "auth-service",
        "catalog-service",
        "fraud-detector",
    ] {
        assert_eq!(status(healthy), "healthy", "{healthy}");
    }
    // Worst first.
    assert_eq!(services[0]["status"], "down");

    let one = ok(
        &client,
        "check_service_health",
        json!({"service": "payment-gateway"}),
    )
    .await;
    let pg = &items(&one, "services")[0];
    let verdict = pg["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("OOMKilled") && verdict.contains("CrashLoopBackOff"),
        "{verdict}"
    );
    assert!(
        verdict.contains("deploy"),
        "verdict should name the recent deploy: {verdict}"
    );
    assert!(!items(pg, "firing_alerts").is_empty());
    assert_eq!(pg["pods_ready"], 0);
    let text = text(
        &call(
            &client,
            "check_service_health",
            json!({"service": "payments/payment-gateway"}),
        )
        .await,
    );
    assert!(
        text.contains("[DOWN]") && text.contains("payment-gateway"),
        "{text}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn pods_describe_logs_and_previous_logs_tell_the_oom_story() {
    let client = start(WHOLE_RESULTS).await;
    let pods = ok(&client, "list_pods", json!({"namespace": "payments"})).await;
    assert_eq!(pods["namespace"], "payments");
    let crashing: Vec<&Value> = items(&pods, "pods")
        .iter()
        .filter(|p| p["status"] == "CrashLoopBackOff")
        .collect();
    assert!(crashing.len() >= 2, "{pods}");
    // Unhealthy pods come first.
    assert_eq!(items(&pods, "pods")[0]["status"], "CrashLoopBackOff");
    let filtered = ok(
        &client,
        "list_pods",
        json!({"namespace": "payments", "status": "crashloopbackoff"}),
    )
    .await;
    assert_eq!(items(&filtered, "pods").len(), crashing.len());
    let pod = crashing[0]["name"].as_str().unwrap();

    let described = ok(
        &client,
        "describe_pod",
        json!({"namespace": "payments", "pod": pod}),
    )
    .await;
    let container = &items(&described, "containers")[0];
    assert_eq!(container["last_state"]["reason"], "OOMKilled");
    assert_eq!(container["last_state"]["exit_code"], 137);
    assert_eq!(container["state"]["reason"], "CrashLoopBackOff");
    assert!(container["limits"]["memory"].is_string());
    assert!(
        items(&described, "events")
            .iter()
            .any(|e| e["reason"] == "BackOff")
    );

    let previous = ok(
        &client,
        "get_pod_logs",
        json!({"namespace": "payments", "pod": pod, "previous": true, "tail_lines": 500}),
    )
    .await;
    assert_eq!(previous["previous"], true);
    let entries = items(&previous, "entries");
    assert!(
        entries
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("OutOfMemoryError")),
        "previous logs lack the OOM"
    );
    let errors = ok(
        &client,
        "get_pod_logs",
        json!({"namespace": "payments", "pod": pod, "level": "error", "tail_lines": 5}),
    )
    .await;
    for e in items(&errors, "entries") {
        assert!(matches!(e["level"].as_str().unwrap(), "ERROR" | "FATAL"));
    }
    assert!(items(&errors, "entries").len() <= 5);
    let grep = ok(
        &client,
        "get_pod_logs",
        json!({"namespace": "payments", "pod": pod, "grep": "batch|reconcil", "since": "1h"}),
    )
    .await;
    assert!(grep["matched"].as_u64().unwrap() > 0);

    // A healthy pod has hundreds of log lines.
    let healthy = first_pod(&client, "identity", "user-service").await;
    let logs = ok(
        &client,
        "get_pod_logs",
        json!({"namespace": "identity", "pod": healthy, "tail_lines": 10}),
    )
    .await;
    assert!(
        logs["total_entries"].as_u64().unwrap() >= 200,
        "{}",
        logs["total_entries"]
    );
    assert_eq!(items(&logs, "entries").len(), 10);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn events_deployments_and_rollout_history() {
    let client = start(WHOLE_RESULTS).await;
    let events = ok(
        &client,
        "get_events",
        json!({"namespace": "catalog", "type": "Warning"}),
    )
    .await;
    let reasons: Vec<&str> = items(&events, "events")
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"FailedScheduling"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| *r == "Failed" || *r == "BackOff"),
        "{reasons:?}"
    );
    let all = ok(&client, "get_events", json!({})).await;
    assert!(all["total"].as_u64().unwrap() > events["total"].as_u64().unwrap());
    // Warnings first.
    let list = items(&all, "events");
    let first_normal = list
        .iter()
        .position(|e| e["type"] == "Normal")
        .unwrap_or(list.len());
    assert!(list[first_normal..].iter().all(|e| e["type"] == "Normal"));
    let pg_events = ok(&client, "get_events", json!({"object": "payment-gateway"})).await;
    assert!(
        items(&pg_events, "events")
            .iter()
            .all(|e| e["object"].as_str().unwrap().contains("payment-gateway"))
    );

    let deployments = ok(
        &client,
        "list_deployments",
        json!({"namespace": "commerce"}),
    )
    .await;
    let names: Vec<&str> = items(&deployments, "deployments")
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for expected in ["checkout-api", "order-service", "inventory-service"] {
        assert!(names.contains(&expected), "{names:?}");
    }

    let history = ok(
        &client,
        "get_recent_deploys",
        json!({"service": "payment-gateway", "hours_back": 24}),
    )
    .await;
    let deploys = items(&history, "deploys");
    assert!(!deploys.is_empty());
    assert_eq!(deploys[0]["current"], true);
    let cause = deploys[0]["change_cause"].as_str().unwrap().to_lowercase();
    assert!(cause.contains("batch"), "{cause}");
    let week = ok(
        &client,
        "get_recent_deploys",
        json!({"service": "payment-gateway"}),
    )
    .await;
    assert!(items(&week, "deploys").len() >= 2);
    // Beyond the range its schema states, refused before any work, saying what is valid.
    let refused = err(
        &client,
        "get_recent_deploys",
        json!({"service": "payment-gateway", "hours_back": 100000}),
    )
    .await;
    assert!(
        refused.contains("hours_back") && refused.contains("from 1 to 2,160"),
        "{refused}"
    );
    let widest = ok(
        &client,
        "get_recent_deploys",
        json!({"service": "payment-gateway", "hours_back": 2160}),
    )
    .await;
    assert_eq!(widest["hours_back"], 2160);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn cross_service_search_errors_and_traces() {
    let client = start(WHOLE_RESULTS).await;
    let namespaces = ok(&client, "list_namespaces", json!({})).await;
    assert!(items(&namespaces, "namespaces").len() >= 4);

    let hikari = ok(
        &client,
        "search_logs",
        json!({"pattern": "Connection is not available", "limit": 20}),
    )
    .await;
    let found = items(&hikari, "entries");
    assert!(!found.is_empty());
    assert!(
        found.iter().all(|e| e["service"] == "inventory-service"),
        "{hikari}"
    );
    assert!(found.len() <= 20);

    let errors = ok(
        &client,
        "count_errors",
        json!({"group_by": "service", "since": "1h"}),
    )
    .await;
    let groups = items(&errors, "groups");
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    for failing in ["inventory-service", "order-service", "checkout-api"] {
        assert!(keys.contains(&failing), "{keys:?}");
    }
    assert!(
        !keys.contains(&"user-service")
            || groups.iter().find(|g| g["key"] == "user-service").unwrap()["count"]
                .as_u64()
                .unwrap()
                < 5
    );
    let by_message = ok(
        &client,
        "count_errors",
        json!({"group_by": "message", "since": "2h"}),
    )
    .await;
    let top = &items(&by_message, "groups")[0];
    assert!(
        top["count"].as_u64().unwrap() >= 5,
        "normalisation should merge repeated errors: {top}"
    );

    // Follow a failing checkout from the edge to the database.
    let timeouts = ok(
        &client,
        "search_logs",
        json!({"service": "order-service", "level": "error", "limit": 50}),
    )
    .await;
    let trace = items(&timeouts, "entries")
        .iter()
        .find_map(|e| e["trace_id"].as_str())
        .expect("an order-service error with a trace id")
        .to_string();
    let timeline = ok(&client, "trace_transaction", json!({"trace_id": trace})).await;
    let services: Vec<&str> = items(&timeline, "services")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(services.len() >= 2, "{services:?}");
    assert!(services.contains(&"order-service"));
    assert!(
        items(&timeline, "entries")
            .iter()
            .all(|e| e["service"].is_string())
    );
    assert!(timeline["verdict"].as_str().unwrap().starts_with("failed"));
    let by_trace = ok(&client, "search_logs", json!({"trace_id": trace})).await;
    assert_eq!(
        by_trace["matched"],
        json!(items(&timeline, "entries").len())
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn resources_prompts_and_completion() {
    let client = start(WHOLE_RESULTS).await;
    let resources = client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert!(uris.contains(&"system://health") && uris.contains(&"deployment://history"));
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "deployment://history/{service}")
    );

    let _ = ok(&client, "list_namespaces", json!({})).await;
    let read = |uri: &str| {
        let client = &client;
        let uri = uri.to_string();
        async move {
            let result = client
                .read_resource(ReadResourceRequestParams::new(uri.clone()))
                .await
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            match &result.contents[0] {
                ResourceContents::TextResourceContents { text, .. } => {
                    serde_json::from_str::<Value>(text).unwrap()
                }
                other => panic!("{uri}: unexpected {other:?}"),
            }
        }
    };
    let health = read("system://health").await;
    assert_eq!(health["backend"]["kind"], "demo");
    assert!(
        health["tools"]["list_namespaces"]["calls"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(health["cluster"]["pods"].as_u64().unwrap() > 10);
    let history = read("deployment://history").await;
    let deploys = items(&history, "rollouts");
    assert!(deploys.len() >= 16);
    let times: Vec<&str> = deploys
        .iter()
        .map(|d| d["deployed_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let one = read("deployment://history/recommendation-engine").await;
    assert!(
        items(&one, "rollouts")
            .iter()
            .all(|d| d["service"] == "recommendation-engine")
    );
    assert!(
        items(&one, "writes").is_empty(),
        "nothing written yet: {one}"
    );
    assert_eq!(one["service"], "catalog/recommendation-engine");
    let encoded = read("deployment://history/catalog%2Frecommendation-engine").await;
    assert_eq!(
        items(&encoded, "rollouts").len(),
        items(&one, "rollouts").len()
    );
    let missing = client
        .read_resource(ReadResourceRequestParams::new("deployment://history/nope"))
        .await;
    assert!(missing.unwrap_err().to_string().contains("not found"));
    let unknown = client
        .read_resource(ReadResourceRequestParams::new("bogus://x"))
        .await;
    assert!(unknown.unwrap_err().to_string().contains("system://health"));

    let prompts = client.list_all_prompts().await.unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    for expected in [
        "investigate-service",
        "pre-deploy-check",
        "daily-health-report",
        "trace-transaction",
        "troubleshoot-issue",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for (name, arguments) in [
        (
            "investigate-service",
            json!({"service": "payment-gateway", "symptoms": "502 on pay"}),
        ),
        (
            "pre-deploy-check",
            json!({"service": "order-service", "namespace": "commerce"}),
        ),
        ("daily-health-report", json!({})),
        (
            "trace-transaction",
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}),
        ),
        (
            "troubleshoot-issue",
            json!({"description": "checkout is slow"}),
        ),
    ] {
        let result = client
            .get_prompt(GetPromptRequestParams::new(name).with_arguments(common::args(arguments)))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let body = serde_json::to_string(&result.messages).unwrap();
        assert!(
            body.contains("check_service_health") || body.contains("trace_transaction"),
            "{name}"
        );
        assert!(
            body.contains("Root cause") || body.contains("Verdict") || body.contains("Summary"),
            "{name}"
        );
    }
    let missing_arg = client
        .get_prompt(GetPromptRequestParams::new("investigate-service"))
        .await;
    assert!(missing_arg.unwrap_err().to_string().contains("service"));

    let services = client
        .complete_prompt_simple("investigate-service", "service", "pay")
        .await
        .unwrap();
    assert_eq!(services, vec!["payment-gateway".to_string()]);
    let namespaces = client
        .complete_prompt_simple("pre-deploy-check", "namespace", "c")
        .await
        .unwrap();
    assert!(
        namespaces.contains(&"commerce".to_string()) && namespaces.contains(&"catalog".to_string())
    );
    let from_template = client
        .complete_resource_simple("deployment://history/{service}", "service", "search")
        .await
        .unwrap();
    assert_eq!(from_template, vec!["search-indexer".to_string()]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_the_server_lives_on() {
    let client = start(WHOLE_RESULTS).await;
    let m = err(&client, "list_pods", json!({"namespace": "paymnts"})).await;
    assert!(
        m.contains("not found") && m.contains("valid namespaces: payments"),
        "{m}"
    );
    let m = err(
        &client,
        "check_service_health",
        json!({"service": "payment-gatway"}),
    )
    .await;
    assert!(m.contains("valid services: payment-gateway"), "{m}");
    let m = err(
        &client,
        "describe_pod",
        json!({"namespace": "payments", "pod": "payment-gateway-nope"}),
    )
    .await;
    assert!(m.contains("pods there: payment-gateway-"), "{m}");
    let m = err(&client, "list_pods", json!({"namespace": "Payments_NS"})).await;
    assert!(m.contains("invalid namespace name"), "{m}");
    let m = err(&client, "search_logs", json!({"pattern": "(unclosed"})).await;
    assert!(m.contains("invalid regular expression"), "{m}");
    let m = err(&client, "get_pod_logs", json!({"namespace": 7, "pod": "x"})).await;
    assert!(m.contains("invalid arguments for get_pod_logs"), "{m}");
    let m = err(
        &client,
        "list_pods",
        json!({"namespace": "payments", "colour": "red"}),
    )
    .await;
    assert!(
        m.contains("unknown argument \"colour\"") && m.contains("label_selector"),
        "{m}"
    );
    let m = err(&client, "search_logs", json!({"since": "yesterday"})).await;
    assert!(m.contains("15m"), "{m}");
    let m = err(&client, "search_logs", json!({"level": "loud"})).await;
    assert!(m.contains("valid levels"), "{m}");
    let m = err(&client, "trace_transaction", json!({"trace_id": "xyz"})).await;
    assert!(m.contains("hexadecimal"), "{m}");
    let m = err(
        &client,
        "trace_transaction",
        json!({"trace_id": "00000000000000000000000000000000"}),
    )
    .await;
    assert!(m.contains("no log entry"), "{m}");
    let m = err(&client, "get_events", json!({"type": "Critical"})).await;
    assert!(m.contains("Warning, Normal"), "{m}");
    let m = err(
        &client,
        "list_pods",
        json!({"namespace": "payments", "label_selector": "app in web"}),
    )
    .await;
    assert!(m.contains("label_selector"), "{m}");
    let m = err(
        &client,
        "list_pods",
        json!({"namespace": "payments", "status": "Sleepy"}),
    )
    .await;
    assert!(m.contains("unknown status"), "{m}");
    let healthy = first_pod(&client, "identity", "auth-service").await;
    let m = err(
        &client,
        "get_pod_logs",
        json!({"namespace": "identity", "pod": healthy, "previous": true}),
    )
    .await;
    assert!(m.contains("no previous instance"), "{m}");
    let clamped = ok(&client, "search_logs", json!({"limit": 1_000_000})).await;
    assert!(
        items(&clamped, "notes")
            .iter()
            .any(|n| n.as_str().unwrap().contains("lowered to the maximum"))
    );
    let unknown_tool = client
        .call_tool(rmcp::model::CallToolRequestParams::new("drop_database"))
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown_tool.contains("unknown tool"), "{unknown_tool}");
    // Still serving.
    let health = ok(&client, "check_service_health", json!({})).await;
    assert!(!items(&health, "services").is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn list_pods_reads_page_by_page_and_says_when_it_stopped() {
    let whole = common::start(&["--no-embeddings"]).await;
    let all = ok(&whole, "list_pods", json!({"namespace": "commerce"})).await;
    let total = all["total_in_namespace"].as_u64().unwrap();
    assert_eq!(all["pods"].as_array().unwrap().len() as u64, total);
    assert!(all.get("scan_note").is_none(), "{all}");
    // A phase filter goes to the backend as a field selector and keeps the same pods the
    // status filter keeps.
    let running = ok(
        &whole,
        "list_pods",
        json!({"namespace": "commerce", "status": "running"}),
    )
    .await;
    let expected = all["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["phase"] == "Running" || p["status"] == "Running")
        .count();
    assert_eq!(running["pods"].as_array().unwrap().len(), expected);
    assert_eq!(running["total_in_namespace"].as_u64(), Some(total));
    whole.cancel().await.unwrap();

    let capped = common::start(&["--no-embeddings", "--max-list-items", "4"]).await;
    let result = call(&capped, "list_pods", json!({"namespace": "commerce"})).await;
    let page = result.structured_content.clone().unwrap();
    assert_eq!(page["pods"].as_array().unwrap().len(), 4, "{page}");
    assert_eq!(page["total_in_namespace"].as_u64(), Some(total));
    let note = page["scan_note"].as_str().unwrap();
    assert!(
        note.contains(&format!("read the first 4 pods of {total} matching")),
        "{note}"
    );
    assert!(text(&result).contains(note), "{}", text(&result));
    capped.cancel().await.unwrap();
}
