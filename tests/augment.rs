//! The runbook augmenter on the demo cluster, through a real MCP client: results that show a
//! problem carry the runbook that fixes it; healthy results carry nothing.

mod common;

use common::{ok, start, text};
use rmcp::model::ReadResourceRequestParams;
use serde_json::{Value, json};

fn attached(result: &Value) -> Vec<String> {
    result["relevant_runbooks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["uri"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until runbook retrieval has settled — the index built and embeddings either ready or
/// known to be unavailable — so the answers below do not depend on timing. Returns the
/// retrieval mode that system://health reports.
async fn settle(client: &common::Client) -> String {
    for _ in 0..600 {
        let body = client
            .read_resource(ReadResourceRequestParams::new("system://health"))
            .await
            .unwrap();
        let health: Value = match &body.contents[0] {
            rmcp::model::ResourceContents::TextResourceContents { text, .. } => {
                serde_json::from_str(text).unwrap()
            }
            other => panic!("{other:?}"),
        };
        let runbooks = &health["runbooks"];
        if runbooks["index"] == "ready" && runbooks["embeddings"]["state"] != "loading" {
            return runbooks["retrieval"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("runbook retrieval did not settle within 120 s");
}

/// The first runbook attached to a result.
fn first_runbook(result: &Value) -> String {
    attached(result).first().cloned().unwrap_or_default()
}

#[tokio::test]
async fn incidents_get_their_runbooks_with_fused_retrieval() {
    incidents_get_their_runbooks_and_healthy_results_get_none(&[]).await;
}

#[tokio::test]
async fn incidents_get_their_runbooks_with_lexical_retrieval() {
    incidents_get_their_runbooks_and_healthy_results_get_none(&["--no-embeddings"]).await;
}

async fn incidents_get_their_runbooks_and_healthy_results_get_none(args: &[&str]) {
    let client = start(args).await;
    let mode = settle(&client).await;
    if args.contains(&"--no-embeddings") {
        assert_eq!(mode, "lexical (BM25)");
    }
    let pods = ok(
        &client,
        "list_pods",
        json!({"namespace": "payments", "status": "CrashLoopBackOff"}),
    )
    .await;
    assert_eq!(
        first_runbook(&pods),
        "runbook://oomkilled-crashloop",
        "{mode}"
    );
    let pod = pods["pods"][0]["name"].as_str().unwrap().to_string();

    let described = ok(
        &client,
        "describe_pod",
        json!({"namespace": "payments", "pod": pod}),
    )
    .await;
    assert!(
        attached(&described).contains(&"runbook://oomkilled-crashloop".to_string()),
        "{mode}: {:?}",
        attached(&described)
    );
    let first = &described["relevant_runbooks"][0];
    // The excerpt is short, or left out when an earlier call of the session carried it.
    match first["excerpt"].as_str() {
        Some(excerpt) => assert!(excerpt.chars().count() <= 450, "{excerpt}"),
        None => assert!(first["sent_in_call"].as_u64().is_some(), "{first}"),
    }
    assert!(!first["signals"].as_array().unwrap().is_empty());
    assert!(first["section"].is_string());

    let logs = ok(
        &client,
        "get_pod_logs",
        json!({"namespace": "payments", "pod": pod, "previous": true, "level": "error"}),
    )
    .await;
    assert_eq!(
        first_runbook(&logs),
        "runbook://oomkilled-crashloop",
        "{mode}"
    );

    let pool = ok(
        &client,
        "search_logs",
        json!({"service": "inventory-service", "level": "error", "limit": 30}),
    )
    .await;
    assert_eq!(
        first_runbook(&pool),
        "runbook://db-connection-pool-exhaustion",
        "{mode}"
    );

    let image = ok(
        &client,
        "get_events",
        json!({"namespace": "catalog", "object": "recommendation-engine", "type": "Warning"}),
    )
    .await;
    assert_eq!(
        first_runbook(&image),
        "runbook://image-pull-backoff",
        "{mode}"
    );

    let pending = ok(
        &client,
        "get_events",
        json!({"namespace": "catalog", "object": "search-indexer", "type": "Warning"}),
    )
    .await;
    assert_eq!(
        first_runbook(&pending),
        "runbook://pending-pods-failed-scheduling",
        "{mode}"
    );

    // The text rendering carries the block after the data.
    let rendered = text(
        &common::call(
            &client,
            "describe_pod",
            json!({"namespace": "payments", "pod": pod}),
        )
        .await,
    );
    assert!(rendered.contains("Relevant runbooks:"), "{rendered}");

    // Healthy results are not padded.
    for (tool, args) in [
        ("check_service_health", json!({"service": "user-service"})),
        ("list_pods", json!({"namespace": "identity"})),
        ("get_recent_deploys", json!({"service": "auth-service"})),
        ("list_namespaces", json!({})),
    ] {
        let result = ok(&client, tool, args.clone()).await;
        assert!(
            result.get("relevant_runbooks").is_none(),
            "{tool}({args}) was augmented: {:?}",
            attached(&result)
        );
    }
    let healthy_text =
        text(&common::call(&client, "list_pods", json!({"namespace": "identity"})).await);
    assert!(!healthy_text.contains("Relevant runbooks"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn search_runbooks_and_runbook_resources() {
    let client = start(&[]).await;
    let mode = settle(&client).await;
    let found = ok(&client, "search_runbooks", json!({"query": "HikariPool-1 - Connection is not available, request timed out after 30000ms"})).await;
    let results = found["results"].as_array().unwrap();
    let ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids[..2],
        [
            "db-connection-pool-exhaustion",
            "inventory-db-lock-contention"
        ],
        "{mode}"
    );
    for field in [
        "title",
        "uri",
        "source",
        "excerpt",
        "score",
        "sections",
        "matched_by",
    ] {
        assert!(results[0].get(field).is_some(), "missing {field}");
    }
    let expected_retrieval = if mode.starts_with("fused") {
        "fused"
    } else {
        "lexical"
    };
    assert_eq!(found["retrieval"], expected_retrieval);
    let team = ok(
        &client,
        "search_runbooks",
        json!({"query": "memory", "team": "payments"}),
    )
    .await;
    assert!(
        team["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["team"] == "payments")
    );
    let limited = ok(
        &client,
        "search_runbooks",
        json!({"query": "node", "limit": 2}),
    )
    .await;
    assert!(limited["results"].as_array().unwrap().len() <= 2);
    let empty = common::err(&client, "search_runbooks", json!({"query": "  "})).await;
    assert!(empty.contains("query is empty"));

    let resources = client.list_all_resources().await.unwrap();
    let runbooks: Vec<_> = resources
        .iter()
        .filter(|r| r.uri.starts_with("runbook://"))
        .collect();
    assert!(runbooks.len() >= 25);
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(templates.iter().any(|t| t.uri_template == "runbook://{id}"));
    let body = client
        .read_resource(ReadResourceRequestParams::new(
            "runbook://oomkilled-crashloop",
        ))
        .await
        .unwrap();
    let markdown = match &body.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents {
            text, mime_type, ..
        } => {
            assert_eq!(mime_type.as_deref(), Some("text/markdown"));
            text.clone()
        }
        other => panic!("{other:?}"),
    };
    assert!(markdown.contains("## Mitigation"));
    let missing = client
        .read_resource(ReadResourceRequestParams::new("runbook://oomkiled"))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("oomkilled-crashloop"), "{missing}");
    let ids = client
        .complete_resource_simple("runbook://{id}", "id", "image")
        .await
        .unwrap();
    assert_eq!(ids, vec!["image-pull-backoff".to_string()]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn augmentation_can_be_turned_off_and_extra_runbook_folders_load() {
    let Some(corpus) = common::shared_corpus("loading an extra runbook folder") else {
        return;
    };
    let client = start(&[
        "--augment",
        "off",
        "--runbooks",
        corpus.to_str().unwrap(),
        "--no-default-runbooks",
    ])
    .await;
    let described = ok(&client, "list_pods", json!({"namespace": "payments"})).await;
    assert!(described.get("relevant_runbooks").is_none());
    let found = ok(
        &client,
        "search_runbooks",
        json!({"query": "pod restarting over and over, back-off restarting failed container"}),
    )
    .await;
    let ids: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"kubernetes/KubePodCrashLooping"), "{ids:?}");
    assert!(
        ids.iter().all(|id| id.contains('/')),
        "shipped runbooks must be left out: {ids:?}"
    );
    client.cancel().await.unwrap();
}
