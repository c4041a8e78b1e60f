//! The budget and cost tracker through a real MCP client: every reply carries its token cost in
//! `_meta`, the ledger adds up, a warning comes at 80% and calls are refused past 100% while the
//! health and usage resources stay readable.

mod common;

use common::{call, start, text};
use rmcp::model::{ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};

async fn read_json(client: &common::Client, uri: &str) -> Value {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    match &result.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ledger_warning_refusal_and_free_resources() {
    let client = start(&[
        "--augment",
        "off",
        "--budget-tokens",
        "4000",
        "--model",
        "claude-sonnet-4-5",
    ])
    .await;
    let mut per_call_tokens = Vec::new();
    let mut warned = false;
    let mut refusal = None;
    for _ in 0..40 {
        let result = call(
            &client,
            "check_service_health",
            json!({"service": "payment-gateway"}),
        )
        .await;
        if result.is_error == Some(true) {
            refusal = Some(text(&result));
            break;
        }
        let meta = result.meta.clone().expect("_meta on every reply").0;
        for field in [
            "tokens",
            "cost_usd",
            "session_tokens",
            "session_cost_usd",
            "budget_remaining",
            "truncated",
        ] {
            assert!(meta.contains_key(field), "_meta lacks {field}: {meta:?}");
        }
        let tokens = meta["tokens"].as_u64().unwrap();
        assert!(tokens > 50);
        per_call_tokens.push(tokens);
        let session: u64 = per_call_tokens.iter().sum();
        assert_eq!(meta["session_tokens"].as_u64().unwrap(), session);
        assert!((meta["cost_usd"].as_f64().unwrap() - tokens as f64 * 3.0 / 1e6).abs() < 1e-6);
        if session * 10 >= 4000 * 8 {
            assert!(
                meta.contains_key("budget_warning"),
                "no warning at {session}/4000"
            );
            assert!(text(&result).contains("budget warning"));
            warned = true;
        } else {
            assert!(!meta.contains_key("budget_warning"));
        }
    }
    assert!(warned, "never warned");
    let refusal = refusal.expect("calls are refused past the budget");
    assert!(
        refusal.contains("session budget exhausted")
            && refusal.contains("of 4000 tokens")
            && refusal.contains("--budget-tokens"),
        "{refusal}"
    );

    // Reading the health and usage resources is free and still works.
    let usage = read_json(&client, "budget://usage").await;
    let total: u64 = per_call_tokens.iter().sum();
    assert_eq!(usage["tokens"].as_u64().unwrap(), total);
    assert_eq!(
        usage["by_tool"]["check_service_health"]["calls"]
            .as_u64()
            .unwrap(),
        per_call_tokens.len() as u64
    );
    assert_eq!(
        usage["by_tool"]["check_service_health"]["tokens"]
            .as_u64()
            .unwrap(),
        total
    );
    assert!(usage["refused_calls"].as_u64().unwrap() >= 1);
    let health = read_json(&client, "system://health").await;
    assert_eq!(health["budget"]["tokens"].as_u64().unwrap(), total);
    let again = read_json(&client, "budget://usage").await;
    assert_eq!(
        again["tokens"], usage["tokens"],
        "reading resources must not cost budget"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_budget_flags_are_rejected_with_what_is_valid() {
    let output = tokio::process::Command::new(common::binary())
        .args(["--model", "gpt-9", "call", "list_namespaces"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown model") && stderr.contains("claude-sonnet-4-5"),
        "{stderr}"
    );
}

/// The ledger books the view this client's model sees: decided from `clientInfo.name` at
/// initialize, the larger view for a client it does not know, and `--count-view` wins.
#[tokio::test]
async fn the_ledger_books_the_view_the_client_shows_its_model() {
    for (name, flags, books, rule) in [
        ("claude-ai", &[][..], "text", "Claude Desktop"),
        ("claude-code", &[][..], "structured", "Claude Code"),
        ("Visual Studio Code", &[][..], "structured", "VS Code"),
        ("ChatGPT", &[][..], "both", "ChatGPT"),
        ("some-new-host", &[][..], "larger", "not in the host table"),
        (
            "claude-code",
            &["--count-view", "text"][..],
            "text",
            "--count-view text",
        ),
    ] {
        let mut args = vec!["--augment", "off", "--no-embeddings"];
        args.extend_from_slice(flags);
        let client = common::start_as(name, &args).await;
        let result = client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("check_service_health")
                    .with_arguments(common::args(json!({}))),
            )
            .await
            .unwrap();
        let meta = result.meta.clone().expect("_meta").0;
        let views = &meta["tokens_by_view"];
        let (text_tokens, structured_tokens) = (
            views["text"].as_u64().unwrap(),
            views["structured"].as_u64().unwrap(),
        );
        assert!(text_tokens > 0 && structured_tokens > 0, "{meta:?}");
        let expected = match books {
            "text" => text_tokens,
            "structured" => structured_tokens,
            "both" => text_tokens + structured_tokens,
            _ => text_tokens.max(structured_tokens),
        };
        assert_eq!(meta["tokens"].as_u64(), Some(expected), "{name} {flags:?}");
        let usage = client
            .read_resource(ReadResourceRequestParams::new("budget://usage"))
            .await
            .unwrap();
        let usage: Value = match &usage.contents[0] {
            ResourceContents::TextResourceContents { text, .. } => {
                serde_json::from_str(text).unwrap()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(usage["count_view"]["books"], books, "{usage}");
        assert!(
            usage["count_view"]["rule"].as_str().unwrap().contains(rule),
            "{name}: {usage}"
        );
        assert_eq!(usage["tokens"].as_u64(), Some(expected));
        client.cancel().await.unwrap();
    }
}
