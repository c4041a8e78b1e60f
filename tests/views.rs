//! Each view complete on its own: hosts show their model either the text content (Claude
//! Desktop) or the structured content (Claude Code, VS Code), so for every tool on every demo
//! incident each view must fit the cap, and each piece of the incident's evidence that one view
//! carries the other carries too.

mod common;

use common::{call, ok, start, text};
use serde_json::{Value, json};

/// An incident: its service and namespace, and the evidence that tells its story.
struct Incident {
    service: &'static str,
    namespace: &'static str,
    evidence: &'static [&'static str],
}

const INCIDENTS: &[Incident] = &[
    Incident {
        service: "payment-gateway",
        namespace: "payments",
        evidence: &[
            "OOMKilled",
            "CrashLoopBackOff",
            "137",
            "512Mi",
            "2.14.0",
            "BackOff",
        ],
    },
    Incident {
        service: "inventory-service",
        namespace: "commerce",
        evidence: &[
            "Connection is not available",
            "Running",
            "DatabaseConnectionPoolExhausted",
        ],
    },
    Incident {
        service: "recommendation-engine",
        namespace: "catalog",
        evidence: &["ImagePullBackOff", "3.8.0"],
    },
    Incident {
        service: "search-indexer",
        namespace: "catalog",
        evidence: &["Pending", "FailedScheduling", "Insufficient"],
    },
];

#[tokio::test]
async fn every_view_fits_and_carries_what_the_other_carries() {
    let client = start(&["--no-embeddings"]).await;
    common::wait_for_runbook_index(&client).await;
    let mut checked = 0;
    for incident in INCIDENTS {
        let mut seen: std::collections::BTreeSet<&str> = Default::default();
        let pods = ok(
            &client,
            "list_pods",
            json!({"namespace": incident.namespace, "label_selector": format!("app={}", incident.service)}),
        )
        .await;
        let pod = pods["pods"][0]["name"].as_str().unwrap().to_string();
        let calls: Vec<(&str, Value)> = vec![
            ("check_service_health", json!({"service": incident.service})),
            (
                "list_pods",
                json!({"namespace": incident.namespace, "label_selector": format!("app={}", incident.service)}),
            ),
            (
                "describe_pod",
                json!({"namespace": incident.namespace, "pod": pod}),
            ),
            (
                "get_pod_logs",
                json!({"namespace": incident.namespace, "pod": pod}),
            ),
            (
                "get_events",
                json!({"namespace": incident.namespace, "object": incident.service}),
            ),
            ("get_recent_deploys", json!({"service": incident.service})),
            ("list_deployments", json!({"namespace": incident.namespace})),
            (
                "count_errors",
                json!({"namespace": incident.namespace, "group_by": "message"}),
            ),
            (
                "search_logs",
                json!({"service": incident.service, "level": "warn"}),
            ),
            (
                "troubleshoot_issue",
                json!({"description": "it is broken", "service": incident.service}),
            ),
        ];
        for (tool, arguments) in calls {
            let result = call(&client, tool, arguments.clone()).await;
            assert_ne!(result.is_error, Some(true), "{tool}: {}", text(&result));
            let meta = result.meta.clone().unwrap().0;
            let views = &meta["tokens_by_view"];
            for view in ["text", "structured"] {
                let tokens = views[view].as_u64().unwrap();
                assert!(
                    tokens <= 2_000,
                    "{tool} {arguments}: {view} view {tokens} tokens"
                );
            }
            let text_view = text(&result);
            let structured = result.structured_content.clone().unwrap().to_string();
            for fact in incident.evidence {
                // JSON escapes quotes; the facts have none.
                let in_text = text_view.contains(fact);
                let in_structured = structured.contains(fact);
                if in_text {
                    seen.insert(fact);
                }
                assert_eq!(
                    in_text, in_structured,
                    "{tool} {arguments}: {fact:?} in the text view {in_text}, in the structured view {in_structured}\ntext: {text_view}\nstructured: {structured}"
                );
            }
            checked += 1;
        }
        // Every piece of evidence shows up somewhere: the check above is not vacuous.
        assert_eq!(
            seen.len(),
            incident.evidence.len(),
            "{}: {seen:?}",
            incident.service
        );
    }
    assert_eq!(checked, 40);
    client.cancel().await.unwrap();
}
