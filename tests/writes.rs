//! The write tools end to end on the demo cluster, through the real binary and rmcp's client:
//! dry run → review → apply where no approval is needed; production approved by elicitation
//! (accepted, declined) or by confirmation token (wrong, reused, expired, for another change);
//! a NO-GO review blocks; the client's model can only make a review stricter and its tokens are
//! booked; progress is reported; every attempt is in the history and audit log; write modes;
//! the budget never blocks a rollback.

// Sampling is deprecated by the newest protocol (SEP-2577) but is what 2025-11-25 clients offer.
#![allow(deprecated)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation, NumberOrString, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, ReadResourceRequestParams, RequestMetaObject, ResourceContents,
    SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// What the test client answers, and what it saw.
#[derive(Clone, Default)]
struct Host {
    /// Some: declares elicitation and answers with this action (approve = the bool).
    elicit: Option<(ElicitationAction, bool)>,
    /// Some: declares sampling and answers with this text.
    sample: Option<String>,
    /// The protocol version it asks for (default: rmcp's).
    protocol: Option<ProtocolVersion>,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Host {
    fn seen(&self, kind: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl ClientHandler for Host {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.seen
            .lock()
            .unwrap()
            .push(("sampling".into(), serde_json::to_value(&params).unwrap()));
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(self.sample.clone().unwrap_or_default()),
            "test-model".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.seen.lock().unwrap().push((
            "elicitation".into(),
            serde_json::to_value(&request).unwrap(),
        ));
        let (action, approve) = self
            .elicit
            .clone()
            .unwrap_or((ElicitationAction::Decline, false));
        let mut result = ElicitResult::new(action.clone());
        if action == ElicitationAction::Accept {
            result.content = Some(json!({ "approve": approve }));
        }
        Ok(result)
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen
            .lock()
            .unwrap()
            .push(("progress".into(), serde_json::to_value(&params).unwrap()));
    }

    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.elicit.is_some() {
            capabilities = ClientCapabilities::builder().enable_elicitation().build();
        }
        if self.sample.is_some() {
            capabilities.sampling = ClientCapabilities::builder()
                .enable_sampling()
                .build()
                .sampling;
        }
        let mut config =
            ClientConfig::new(capabilities, Implementation::new("writes-test", "1.0.0"));
        if let Some(version) = &self.protocol {
            config.protocol_version = version.clone();
        }
        config
    }
}

type Client = RunningService<RoleClient, Host>;

async fn start(host: Host, data_dir: &Path, extra: &[&str]) -> Client {
    let dir = data_dir.to_str().unwrap().to_string();
    let mut args = vec!["--no-embeddings", "--data-dir", dir.as_str()];
    args.extend_from_slice(extra);
    host.serve(common::spawn(&args))
        .await
        .expect("MCP initialize")
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(
            CallToolRequestParams::new(tool.to_string()).with_arguments(common::args(arguments)),
        )
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"))
}

/// A call that must succeed (not isError): its structured content, with its text checked to
/// carry the outcome too (hosts that show only text must see it).
async fn report(client: &Client, tool: &str, arguments: Value) -> (Value, String) {
    let result = call(client, tool, arguments.clone()).await;
    let text = common::text(&result);
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool}({arguments}) failed: {text}"
    );
    let structured = result
        .structured_content
        .clone()
        .expect("structured content");
    let outcome = structured["outcome"]
        .as_str()
        .unwrap()
        .to_uppercase()
        .replace('_', " ");
    assert!(
        text.contains(&outcome),
        "the text names the outcome {outcome}: {text}"
    );
    (structured, text)
}

async fn read(client: &Client, uri: &str) -> Value {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap_or_else(|e| panic!("read {uri}: {e}"));
    match &result.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    }
}

async fn health(client: &Client, service: &str) -> Value {
    let result = call(
        client,
        "check_service_health",
        json!({ "service": service }),
    )
    .await;
    result.structured_content.unwrap()["services"][0].clone()
}

async fn call_with_progress(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let mut params =
        CallToolRequestParams::new(tool.to_string()).with_arguments(common::args(arguments));
    params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::Number(7),
    )));
    client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"))
}

fn current_revision(deploys: &Value) -> i64 {
    deploys["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["current"] == true)
        .map(|d| d["revision"].as_i64().unwrap())
        .unwrap()
}

async fn revision(client: &Client, service: &str) -> i64 {
    let result = call(client, "get_recent_deploys", json!({"service": service})).await;
    current_revision(&result.structured_content.unwrap())
}

const GATEWAY: &str = "payments/payment-gateway";
const FRAUD: &str = "payments/fraud-detector";
const GOOD_GATEWAY: &str = "registry.acme.internal/payments/payment-gateway:2.13.2";
const BAD_GATEWAY: &str = "registry.acme.internal/payments/payment-gateway:2.14.0";
const FIXED_GATEWAY: &str = "registry.acme.internal/payments/payment-gateway:2.14.1";
const FRAUD_NEXT: &str = "registry.acme.internal/payments/fraud-detector:1.9.2";
const FRAUD_TYPO: &str = "registry.acme.internal/payments/fraud-detector:1.9.20";

fn rollback(dry_run: bool) -> Value {
    json!({"service": GATEWAY, "to_revision": 6, "reason": "PAY-1850: 2.14.0 is OOMKilled", "dry_run": dry_run})
}

#[tokio::test]
async fn a_dry_run_reviews_and_changes_nothing_then_staging_applies_without_asking() {
    let data = common::fresh_data_dir("writes-staging");
    let host = Host::default();
    let client = start(host.clone(), &data, &["--environment", "payments=staging"]).await;
    assert_eq!(health(&client, GATEWAY).await["status"], "down");

    let (dry, text) = report(&client, "rollback_deployment", rollback(true)).await;
    assert_eq!(dry["outcome"], "dry_run");
    assert_eq!(dry["environment"]["name"], "staging");
    assert_eq!(dry["environment"]["production"], false);
    assert_eq!(dry["review"]["verdict"], "GO", "{text}");
    assert!(
        dry["confirmation"].is_null(),
        "staging needs no token: {text}"
    );
    assert_eq!(dry["change"]["diff"][0]["before"], BAD_GATEWAY, "{text}");
    assert_eq!(dry["change"]["diff"][0]["after"], GOOD_GATEWAY, "{text}");
    assert_eq!(dry["revision_before"], 7);
    for needle in [
        GOOD_GATEWAY,
        "Review: GO",
        "Checklist:",
        "validated by the demo cluster (dry run)",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let checks: Vec<&str> = dry["review"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "service health",
        "crashing pods",
        "error rate",
        "recent error logs",
        "warning events",
        "dependencies",
        "recent deploys",
        "rollback target",
        "server dry run",
    ] {
        assert!(checks.contains(&name), "{name} in {checks:?}");
    }
    // Nothing changed.
    assert_eq!(health(&client, GATEWAY).await["status"], "down");
    assert_eq!(revision(&client, GATEWAY).await, 7);

    // Applied without asking (staging, GO), watched to the end with progress.
    let result = call_with_progress(&client, "rollback_deployment", rollback(false)).await;
    let text = common::text(&result);
    let applied = result.structured_content.clone().unwrap();
    assert_eq!(applied["outcome"], "applied", "{text}");
    assert!(
        applied["approval"]["how"]
            .as_str()
            .unwrap()
            .starts_with("policy: staging is not production"),
        "{applied}"
    );
    assert_eq!(applied["rollout"]["status"], "complete", "{text}");
    assert_eq!(applied["revision_after"], 8, "{text}");
    assert!(text.contains("Revision: 7 → 8"), "{text}");
    let progress = host.seen("progress");
    assert!(
        progress
            .iter()
            .any(|p| p["message"].as_str().unwrap_or("").contains("3/3 ready")),
        "{progress:?}"
    );
    // The apply's own notifications (rmcp's client gives each request its own token).
    let token = progress.last().unwrap()["progressToken"].clone();
    let numbers: Vec<f64> = progress
        .iter()
        .filter(|p| p["progressToken"] == token)
        .map(|p| p["progress"].as_f64().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "{numbers:?} {progress:?}"
    );
    assert!(host.seen("elicitation").is_empty());

    // The cluster follows: healthy, the old revision's ReplicaSet reused as revision 8.
    let after = health(&client, GATEWAY).await;
    assert_eq!(after["status"], "healthy", "{after:#}");
    assert_eq!(revision(&client, GATEWAY).await, 8);

    // Recorded: the dry run and the apply, with verdict, approval and revisions.
    let history = read(&client, "deployment://history/payment-gateway").await;
    let writes = history["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 2, "{history}");
    assert_eq!(writes[0]["outcome"], "applied");
    assert_eq!(writes[1]["outcome"], "dry_run");
    let details = &writes[0]["write"];
    assert_eq!(details["verdict"], "GO");
    assert_eq!(details["environment"], "staging");
    assert_eq!(
        (
            details["revision_before"].as_i64(),
            details["revision_after"].as_i64()
        ),
        (Some(7), Some(8))
    );
    assert!(
        details["change"].as_str().unwrap().contains("2.13.2"),
        "{details}"
    );
    assert!(
        history["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["revision"] == 8 && r["current"] == true)
    );
    let log = read(&client, "audit://log").await;
    let tools: Vec<&str> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tool"].as_str().unwrap())
        .collect();
    assert!(
        tools
            .iter()
            .filter(|t| **t == "check_service_health")
            .count()
            >= 3,
        "{tools:?}"
    );
    assert!(log["records"][0]["duration_ms"].is_number());

    // Deploying the image that failed as revision 7 again is NO-GO: its pods' failures are on
    // record in the events.
    let again = json!({"service": GATEWAY, "image": BAD_GATEWAY, "reason": "retry 2.14.0"});
    let (dry, text) = report(&client, "deploy_with_review", again).await;
    assert_eq!(dry["review"]["verdict"], "NO-GO", "{text}");
    assert!(
        text.contains("known-bad image") && text.contains("revision 7"),
        "{text}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_failed_rollout_gives_the_rollback_call_or_rolls_back_by_itself() {
    let data = common::fresh_data_dir("writes-failed");
    let client = start(
        Host::default(),
        &data,
        &["--environment", "payments=staging"],
    )
    .await;
    let deploy = json!({"service": FRAUD, "image": FRAUD_TYPO, "reason": "RISK-260 model v15", "dry_run": false});
    let (failed, text) = report(&client, "deploy_with_review", deploy.clone()).await;
    assert_eq!(failed["outcome"], "failed", "{text}");
    assert_eq!(failed["rollout"]["status"], "failed", "{text}");
    let evidence = failed["rollout"]["evidence"].to_string();
    assert!(
        evidence.contains("ErrImagePull") || evidence.contains("ImagePullBackOff"),
        "{evidence}"
    );
    let back_call = &failed["rollback"]["call"];
    assert_eq!(back_call["tool"], "rollback_deployment");
    assert_eq!(back_call["arguments"]["to_revision"], 3, "{back_call}");
    assert_eq!(failed["rollback"]["automatic"], false);
    assert!(
        text.contains("rollback_deployment(") && text.contains("to_revision=3"),
        "{text}"
    );
    // The exact call rolls it back.
    let (back, text) = report(
        &client,
        "rollback_deployment",
        back_call["arguments"].clone(),
    )
    .await;
    assert_eq!(back["outcome"], "applied", "{text}");
    client.cancel().await.unwrap();

    let data = common::fresh_data_dir("writes-auto");
    let client = start(
        Host::default(),
        &data,
        &["--environment", "payments=staging", "--auto-rollback"],
    )
    .await;
    let (rolled, text) = report(&client, "deploy_with_review", deploy).await;
    assert_eq!(rolled["outcome"], "rolled_back", "{text}");
    assert_eq!(rolled["rollback"]["automatic"], true);
    assert!(
        rolled["rollback"]["result"]
            .as_str()
            .unwrap()
            .contains("completed"),
        "{text}"
    );
    let list = call(
        &client,
        "list_deployments",
        json!({"namespace": "payments"}),
    )
    .await;
    let fraud = list.structured_content.unwrap()["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "fraud-detector")
        .cloned()
        .unwrap();
    assert_eq!(
        fraud["images"][0], "registry.acme.internal/payments/fraud-detector:1.9.1",
        "{fraud}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn production_asks_the_user_in_the_client_and_a_no_changes_nothing() {
    let data = common::fresh_data_dir("writes-elicit");
    // Accepted.
    let host = Host {
        elicit: Some((ElicitationAction::Accept, true)),
        ..Host::default()
    };
    let client = start(host.clone(), &data, &[]).await;
    let (dry, text) = report(&client, "rollback_deployment", rollback(true)).await;
    assert_eq!(dry["environment"]["production"], true, "{text}");
    assert!(
        dry["confirmation"].is_null(),
        "a client that can ask gets no token: {text}"
    );
    assert!(
        host.seen("elicitation").is_empty(),
        "a dry run asks nothing"
    );
    let (applied, text) = report(&client, "rollback_deployment", rollback(false)).await;
    assert_eq!(applied["outcome"], "applied", "{text}");
    assert!(
        applied["approval"]["how"]
            .as_str()
            .unwrap()
            .starts_with("elicitation"),
        "{applied}"
    );
    assert_eq!(applied["approval"]["by"], "the user of writes-test 1.0.0");
    let asked = host.seen("elicitation");
    assert_eq!(asked.len(), 1);
    let message = asked[0]["message"].as_str().unwrap();
    for needle in [GOOD_GATEWAY, "Review: GO", "PAY-1850", "production"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert_eq!(
        asked[0]["requestedSchema"]["properties"]["approve"]["type"],
        "boolean"
    );
    assert_eq!(health(&client, GATEWAY).await["status"], "healthy");
    client.cancel().await.unwrap();

    // Declined, and accepted with "no": nothing changes.
    for elicit in [
        (ElicitationAction::Decline, false),
        (ElicitationAction::Accept, false),
        (ElicitationAction::Cancel, false),
    ] {
        let host = Host {
            elicit: Some(elicit.clone()),
            ..Host::default()
        };
        let client = start(host.clone(), &data, &[]).await;
        let (declined, text) = report(&client, "rollback_deployment", rollback(false)).await;
        assert_eq!(declined["outcome"], "declined", "{elicit:?}: {text}");
        assert!(declined["approval"].is_null());
        assert_eq!(host.seen("elicitation").len(), 1);
        assert_eq!(revision(&client, GATEWAY).await, 7, "{elicit:?}");
        client.cancel().await.unwrap();
    }
    let history = read_store(&data).await;
    let outcomes: Vec<&str> = history
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["declined", "declined", "declined", "applied", "dry_run"],
        "{history:?}"
    );
}

/// The write records in a data directory, newest first (through a fresh server: several
/// processes share the database).
async fn read_store(data: &Path) -> Vec<Value> {
    let client = start(Host::default(), data, &[]).await;
    let history = read(&client, "deployment://history").await;
    client.cancel().await.unwrap();
    history["writes"].as_array().unwrap().clone()
}

#[tokio::test]
async fn without_elicitation_production_takes_a_single_use_token_bound_to_the_change() {
    let data = common::fresh_data_dir("writes-token");
    // The smallest cap a server takes: a write's reply is never shaped to it.
    let client = start(Host::default(), &data, &["--max-result-tokens", "500"]).await;
    let result = call(&client, "rollback_deployment", rollback(true)).await;
    let meta = serde_json::to_value(&result.meta).unwrap();
    assert_eq!(meta["truncated"], false, "{meta}");
    assert!(
        meta["tokens"].as_u64().unwrap() > 500,
        "over the cap, whole: {meta}"
    );
    let (dry, text) = report(&client, "rollback_deployment", rollback(true)).await;
    assert!(dry.get("truncated").is_none());
    assert!(text.contains("Review: GO") && text.contains("→"), "{text}");
    let token = dry["confirmation"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {text}"))
        .to_string();
    assert!(
        text.contains(&token) && text.contains("Confirmation token"),
        "{text}"
    );
    assert_eq!(
        dry["confirmation"]["call"]["arguments"]["confirmation_token"],
        token.as_str()
    );
    assert_eq!(dry["confirmation"]["call"]["arguments"]["dry_run"], false);
    assert!(dry["confirmation"]["expires_in_seconds"].as_u64().unwrap() >= 60);

    // Applying without the token: not applied, a token to confirm with.
    let (waiting, text) = report(&client, "rollback_deployment", rollback(false)).await;
    assert_eq!(waiting["outcome"], "awaiting_confirmation", "{text}");
    assert!(waiting["confirmation"]["token"].is_string());
    // A wrong token, a token for another change: refused, nothing changed.
    let mut wrong = rollback(false);
    wrong["confirmation_token"] = json!("cf_00000000000000000000000000000000");
    let refused = call(&client, "rollback_deployment", wrong).await;
    assert_eq!(refused.is_error, Some(true));
    let text = common::text(&refused);
    assert!(text.contains("not one this server issued"), "{text}");
    let other = json!({"service": GATEWAY, "to_revision": 5, "reason": "PAY-1850: 2.14.0 is OOMKilled", "dry_run": false, "confirmation_token": token});
    let (refused, text) = report(&client, "rollback_deployment", other).await;
    assert_eq!(refused["outcome"], "refused");
    assert!(text.contains("issued for another change"), "{text}");
    assert_eq!(revision(&client, GATEWAY).await, 7);
    // The right token applies it, once.
    let (applied, text) = report(
        &client,
        "rollback_deployment",
        dry["confirmation"]["call"]["arguments"].clone(),
    )
    .await;
    assert_eq!(applied["outcome"], "applied", "{text}");
    assert!(
        applied["approval"]["how"]
            .as_str()
            .unwrap()
            .contains("confirmation token")
    );
    let reused = call(
        &client,
        "rollback_deployment",
        dry["confirmation"]["call"]["arguments"].clone(),
    )
    .await;
    assert_eq!(reused.is_error, Some(true));
    let text = common::text(&reused);
    assert!(text.contains("already used"), "{text}");
    let log = read(&client, "audit://log").await;
    assert!(
        !log.to_string().contains(&token),
        "a token is never kept in the audit log"
    );
    client.cancel().await.unwrap();

    // Expired.
    let client = start(Host::default(), &data, &["--confirmation-ttl", "1"]).await;
    let (dry, _) = report(&client, "rollback_deployment", rollback(true)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let expired = call(
        &client,
        "rollback_deployment",
        dry["confirmation"]["call"]["arguments"].clone(),
    )
    .await;
    assert_eq!(expired.is_error, Some(true));
    let text = common::text(&expired);
    assert!(text.contains("expired"), "{text}");
    client.cancel().await.unwrap();

    // A session whose protocol has no elicitation takes the token path, whatever it declares.
    let host = Host {
        elicit: Some((ElicitationAction::Accept, true)),
        protocol: Some(ProtocolVersion::V_2025_03_26),
        ..Host::default()
    };
    let client = start(host.clone(), &data, &[]).await;
    let (waiting, text) = report(&client, "rollback_deployment", rollback(false)).await;
    assert_eq!(waiting["outcome"], "awaiting_confirmation", "{text}");
    assert!(host.seen("elicitation").is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_no_go_review_blocks_unless_the_server_allows_an_override_with_a_reason() {
    let data = common::fresh_data_dir("writes-nogo");
    let client = start(Host::default(), &data, &[]).await;
    // The image that crashes now, deployed again: NO-GO.
    let again =
        json!({"service": GATEWAY, "image": BAD_GATEWAY, "reason": "retry", "dry_run": false});
    // It is the running image: no change at all.
    let result = call(&client, "deploy_with_review", again).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        common::text(&result).contains("no change"),
        "{}",
        common::text(&result)
    );
    // A fix deployed on a service that is down: NO-GO (roll back first).
    let fix = json!({"service": GATEWAY, "image": FIXED_GATEWAY, "reason": "PAY-1849 fix", "dry_run": false});
    let (refused, text) = report(&client, "deploy_with_review", fix.clone()).await;
    assert_eq!(refused["outcome"], "refused", "{text}");
    assert_eq!(refused["review"]["verdict"], "NO-GO");
    assert_eq!(refused["review"]["risk"], "high");
    assert!(
        text.contains("Review: NO-GO") && text.contains("roll back to the last good revision"),
        "{text}"
    );
    assert!(refused["confirmation"].is_null());
    let mut overriding = fix.clone();
    overriding["override_reason"] =
        json!("the fix is verified in staging; rollback loses the JPY fix");
    let (still, text) = report(&client, "deploy_with_review", overriding.clone()).await;
    assert_eq!(still["outcome"], "refused", "{text}");
    assert!(text.contains("--allow-override"), "{text}");
    assert_eq!(revision(&client, GATEWAY).await, 7);
    // Production scale to zero: NO-GO.
    let (zero, text) = report(
        &client,
        "scale_deployment",
        json!({"service": FRAUD, "replicas": 0, "reason": "save money"}),
    )
    .await;
    assert_eq!(zero["review"]["verdict"], "NO-GO", "{text}");
    client.cancel().await.unwrap();

    // With --allow-override and a reason the NO-GO change goes on to its approval.
    let client = start(Host::default(), &data, &["--allow-override"]).await;
    let (waiting, text) = report(&client, "deploy_with_review", overriding).await;
    assert_eq!(waiting["outcome"], "awaiting_confirmation", "{text}");
    let (applied, text) = report(
        &client,
        "deploy_with_review",
        waiting["confirmation"]["call"]["arguments"].clone(),
    )
    .await;
    assert_eq!(applied["outcome"], "applied", "{text}");
    assert!(
        applied["approval"]["how"]
            .as_str()
            .unwrap()
            .contains("NO-GO overridden"),
        "{text}"
    );
    assert_eq!(health(&client, GATEWAY).await["status"], "healthy");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_clients_model_can_only_make_the_review_stricter_and_is_booked() {
    let data = common::fresh_data_dir("writes-sampling");
    let host = Host {
        sample: Some("VERDICT: NO-GO\nRISK: high\nRevision 6 predates the refund fix.".into()),
        ..Host::default()
    };
    let client = start(host.clone(), &data, &[]).await;
    let (dry, text) = report(&client, "rollback_deployment", rollback(true)).await;
    let review = &dry["review"];
    assert_eq!(review["verdict"], "NO-GO", "{text}");
    assert_eq!(review["risk"], "high");
    assert_eq!(review["model_review"]["made_stricter"], true);
    assert!(text.contains("predates the refund fix"), "{text}");
    let asked = host.seen("sampling");
    assert_eq!(asked.len(), 1);
    assert!(asked[0]["maxTokens"].as_u64().unwrap() <= 300);
    let prompt = asked[0]["messages"][0]["content"]["text"].as_str().unwrap();
    assert!(
        prompt.contains("2.13.2") && prompt.contains("Deterministic review: GO"),
        "{prompt}"
    );
    let usage = read(&client, "budget://usage").await;
    assert_eq!(usage["sampling"]["calls"], 1, "{usage}");
    assert!(usage["sampling"]["prompt_tokens"].as_u64().unwrap() > 100);
    client.cancel().await.unwrap();

    // A GO from the model leaves a NO-GO review NO-GO.
    let host = Host {
        sample: Some("VERDICT: GO\nRISK: low\nShip it.".into()),
        ..Host::default()
    };
    let client = start(host, &data, &[]).await;
    let (dry, text) = report(
        &client,
        "deploy_with_review",
        json!({"service": GATEWAY, "image": FIXED_GATEWAY, "reason": "fix"}),
    )
    .await;
    assert_eq!(dry["review"]["verdict"], "NO-GO", "{text}");
    assert_eq!(dry["review"]["model_review"]["verdict"], "GO");
    assert_eq!(dry["review"]["model_review"]["made_stricter"], false);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn write_modes_off_and_review_and_the_budget_never_blocks_a_rollback() {
    let data = common::fresh_data_dir("writes-modes");
    let client = start(Host::default(), &data, &["--write-mode", "off"]).await;
    let result = call(&client, "rollback_deployment", rollback(true)).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        common::text(&result).contains("writes are off"),
        "{}",
        common::text(&result)
    );
    let log = read(&client, "audit://log").await;
    assert_eq!(log["records"][0]["outcome"], "refused");
    assert_eq!(log["records"][0]["write"]["service"], "payment-gateway");
    client.cancel().await.unwrap();

    let client = start(
        Host::default(),
        &data,
        &[
            "--write-mode",
            "review",
            "--environment",
            "payments=staging",
        ],
    )
    .await;
    let (dry, _) = report(&client, "rollback_deployment", rollback(true)).await;
    assert_eq!(dry["outcome"], "dry_run");
    let (refused, text) = report(&client, "rollback_deployment", rollback(false)).await;
    assert_eq!(refused["outcome"], "refused");
    assert!(text.contains("--write-mode review"), "{text}");
    assert_eq!(revision(&client, GATEWAY).await, 7);
    client.cancel().await.unwrap();

    // A spent budget refuses reads, never a rollback.
    let client = start(
        Host::default(),
        &data,
        &[
            "--budget-tokens",
            "200",
            "--environment",
            "payments=staging",
        ],
    )
    .await;
    call(&client, "check_service_health", json!({})).await;
    let refused = call(&client, "list_namespaces", json!({})).await;
    assert!(
        common::text(&refused).contains("budget exhausted"),
        "{}",
        common::text(&refused)
    );
    let (applied, text) = report(&client, "rollback_deployment", rollback(false)).await;
    assert_eq!(applied["outcome"], "applied", "{text}");
    let page = read(&client, "audit://log?limit=2").await;
    assert_eq!(page["records"].as_array().unwrap().len(), 2);
    let next = page["next_page"].as_str().unwrap().to_string();
    let older = read(&client, &next).await;
    assert!(
        older["records"][0]["id"].as_i64().unwrap() < page["records"][1]["id"].as_i64().unwrap()
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn restart_and_scale_roll_out_and_are_watched() {
    let data = common::fresh_data_dir("writes-restart");
    let client = start(
        Host::default(),
        &data,
        &["--environment", "payments=staging"],
    )
    .await;
    let (deployed, text) = report(
        &client,
        "deploy_with_review",
        json!({"service": FRAUD, "image": FRAUD_NEXT, "reason": "RISK-262 feature store retries", "dry_run": false}),
    )
    .await;
    assert_eq!(deployed["outcome"], "applied", "{text}");
    assert_eq!(deployed["review"]["verdict"], "GO", "{text}");
    let (restarted, text) = report(
        &client,
        "restart_deployment",
        json!({"service": FRAUD, "reason": "pick up rotated secret", "dry_run": false}),
    )
    .await;
    assert_eq!(restarted["outcome"], "applied", "{text}");
    assert_eq!(restarted["change"]["diff"][0]["field"], "restartedAt");
    assert_eq!(
        restarted["revision_after"],
        restarted["revision_before"].as_i64().unwrap() + 1
    );
    let (scaled, text) = report(
        &client,
        "scale_deployment",
        json!({"service": FRAUD, "replicas": 3, "reason": "Black Friday", "dry_run": false}),
    )
    .await;
    assert_eq!(scaled["outcome"], "applied", "{text}");
    assert_eq!(scaled["rollout"]["ready"], 3, "{text}");
    assert_eq!(
        scaled["revision_after"], restarted["revision_after"],
        "scaling makes no revision"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_write_stops_its_watch_not_the_rollout_and_says_so_in_the_audit_log() {
    let data = common::fresh_data_dir("writes-cancel");
    let dir = data.to_str().unwrap();
    let mut raw = common::raw::Raw::start(&[
        "--no-embeddings",
        "--data-dir",
        dir,
        "--environment",
        "payments=staging",
    ])
    .await;
    let mut arguments = rollback(false);
    arguments["reason"] = json!("PAY-1850 cancelled watch");
    raw.send_line(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "rollback_deployment", "arguments": arguments, "_meta": {"progressToken": "w"}}})
        .to_string(),
    )
    .await;
    // Once the rollout is under way, the client gives up waiting.
    loop {
        let message = raw
            .next_within(Duration::from_secs(30))
            .await
            .expect("progress of the rollout");
        if message["params"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("rollout of"))
        {
            break;
        }
    }
    raw.send_line(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2, "reason": "user stopped waiting"}})
            .to_string(),
    )
    .await;
    // The rollout goes on to completion without anyone watching.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let health = raw
        .request(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "check_service_health", "arguments": {"service": GATEWAY}}}),
        )
        .await;
    assert_eq!(
        health["result"]["structuredContent"]["services"][0]["status"], "healthy",
        "{health}"
    );
    // The write was recorded when its watch stopped, saying so.
    let log = raw
        .request(json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "audit://log"}}))
        .await;
    let log: Value =
        serde_json::from_str(log["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let record = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"] == "rollback_deployment")
        .cloned()
        .unwrap_or_else(|| panic!("the write is recorded: {log}"));
    assert_eq!(record["outcome"], "watch_stopped", "{record}");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("the rollout itself goes on"),
        "{record}"
    );
    assert_eq!(record["write"]["revision_after"], 8, "{record}");
}
