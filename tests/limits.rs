//! Bounded input at the edge, through the real binary: every string, array and integer argument
//! of every listed tool, one past the limit its input schema states, is refused as an `isError`
//! result before any work — quickly, in a reply under 1 KB that names the argument and the
//! limit and repeats no more of the value than a short prefix. Megabyte values for a few
//! arguments, a megabyte resource URI, prompt argument and completion value likewise.

mod common;

use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Map, Value, json};

/// Longest a refusal of an over-long argument may take, per call, measured at the client.
const REFUSAL: Duration = Duration::from_millis(10);
/// Longest a refusal may take when the client sends a megabyte (sending, reading and parsing
/// the frame included; debug builds).
const MEGABYTE_REFUSAL: Duration = Duration::from_millis(250);
/// Most bytes of any refusal.
const REPLY_BYTES: usize = 1024;
/// A megabyte value (the frame stays under the server's default 1 MiB request limit).
const MEGABYTE: usize = 1_000_000;

/// A valid value for each required argument, so a refusal is due to the argument under test.
fn valid(name: &str) -> Value {
    match name {
        "namespace" => json!("payments"),
        "pod" => json!("payment-gateway-0"),
        "service" => json!("payment-gateway"),
        "trace_id" => json!("4bf92f3577b34da6a3ce929d0e0e4736"),
        "query" => json!("pods OOMKilled"),
        "description" => json!("checkout is slow"),
        "reason" => json!("PAY-1850"),
        "image" => json!("registry.acme.internal/payments/payment-gateway:2.13.2"),
        "replicas" => json!(3),
        other => panic!("no valid value for the required argument {other:?}: add one here"),
    }
}

/// `1234567` → `1,234,567`, as the messages write numbers.
fn thousands(n: u64) -> String {
    sre_mcp::util::quote::thousands(n as usize)
}

struct Refusal {
    elapsed: Duration,
    bytes: usize,
    text: String,
}

async fn refuse(client: &common::Client, tool: &str, arguments: Map<String, Value>) -> Refusal {
    let request = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
    let started = Instant::now();
    let result = client
        .call_tool(request)
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"));
    let elapsed = started.elapsed();
    let text = common::text(&result);
    assert_eq!(result.is_error, Some(true), "{tool}: not refused: {text}");
    assert!(result.structured_content.is_none(), "{tool}: {text}");
    Refusal {
        elapsed,
        bytes: serde_json::to_string(&result).unwrap().len(),
        text,
    }
}

/// One case: a tool, the arguments (required ones valid, one argument past its limit), what
/// the message must contain.
struct Case {
    tool: String,
    argument: String,
    arguments: Map<String, Value>,
    expect: Vec<String>,
}

/// The cases for every argument with a limit in every listed tool's input schema.
fn cases(tools: &[rmcp::model::Tool]) -> Vec<Case> {
    let mut cases = Vec::new();
    for tool in tools {
        let schema = &tool.input_schema;
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let base: Map<String, Value> = required
            .iter()
            .map(|name| (name.to_string(), valid(name)))
            .collect();
        let properties = schema["properties"].as_object().unwrap();
        for (name, property) in properties {
            let mut bad = Vec::new();
            match property.get("type").and_then(Value::as_str) {
                Some("string") => {
                    let max = property["maxLength"].as_u64().unwrap_or_else(|| {
                        panic!("{}.{name}: a string argument without maxLength", tool.name)
                    });
                    // Characters, not bytes: a multi-byte value one character too long.
                    bad.push((
                        json!("é".repeat(max as usize + 1)),
                        vec![
                            format!("{} characters", thousands(max + 1)),
                            format!("the limit is {}", thousands(max)),
                        ],
                    ));
                }
                Some("integer") => {
                    let min = property["minimum"].as_i64().unwrap_or_else(|| {
                        panic!("{}.{name}: an integer argument without minimum", tool.name)
                    });
                    let max = property["maximum"].as_i64().unwrap_or_else(|| {
                        panic!("{}.{name}: an integer argument without maximum", tool.name)
                    });
                    bad.push((json!(min - 1), vec![thousands(min as u64)]));
                    bad.push((json!(max + 1), vec![thousands(max as u64)]));
                }
                Some("array") => {
                    let max = property["maxItems"].as_u64().unwrap_or_else(|| {
                        panic!("{}.{name}: an array argument without maxItems", tool.name)
                    });
                    let item_max = property["items"]["maxLength"].as_u64().unwrap_or_else(|| {
                        panic!("{}.{name}: array items without maxLength", tool.name)
                    });
                    bad.push((
                        json!(vec!["oom"; max as usize + 1]),
                        vec![format!("the limit is {}", thousands(max))],
                    ));
                    bad.push((
                        json!(["oom", "t".repeat(item_max as usize + 1)]),
                        vec![format!("the limit is {}", thousands(item_max))],
                    ));
                }
                // Booleans and enums (a $ref) have no length to exceed.
                _ => {}
            }
            for (value, mut expect) in bad {
                let mut arguments = base.clone();
                arguments.insert(name.clone(), value);
                expect.push(name.clone());
                cases.push(Case {
                    tool: tool.name.to_string(),
                    argument: name.clone(),
                    arguments,
                    expect,
                });
            }
        }
    }
    cases
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_argument_past_its_limit_is_refused_quickly_and_briefly() {
    let client = common::start(&["--no-embeddings"]).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 17);
    let cases = cases(&tools);
    // Warm-up: the first calls pay for lazily built state.
    for case in cases.iter().take(5) {
        refuse(&client, &case.tool, case.arguments.clone()).await;
    }
    common::call(&client, "list_namespaces", json!({})).await;
    let mut timings = Vec::new();
    let mut slow = Vec::new();
    for case in &cases {
        // The fastest of three calls: one call's time can include the machine's other work.
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let refusal = refuse(&client, &case.tool, case.arguments.clone()).await;
            assert!(
                refusal.bytes < REPLY_BYTES,
                "{}.{}: a {}-byte reply: {}",
                case.tool,
                case.argument,
                refusal.bytes,
                refusal.text
            );
            for needle in &case.expect {
                assert!(
                    refusal.text.contains(needle.as_str()),
                    "{}.{}: the message lacks {needle:?}: {}",
                    case.tool,
                    case.argument,
                    refusal.text
                );
            }
            timings.push(refusal.elapsed);
            best = best.min(refusal.elapsed);
        }
        if best >= REFUSAL {
            slow.push(format!("{}.{} {best:?}", case.tool, case.argument));
        }
    }
    timings.sort();
    eprintln!(
        "{} refusals ({} cases x 3): median {:?}, p99 {:?}, worst {:?}",
        timings.len(),
        cases.len(),
        percentile(&timings, 0.5),
        percentile(&timings, 0.99),
        timings.last().unwrap()
    );
    assert!(slow.is_empty(), "refused slower than {REFUSAL:?}: {slow:?}");
    // Every tool took part, and every kind of limit.
    for tool in &tools {
        assert!(
            cases.iter().any(|c| c.tool == tool.name),
            "{} has no argument with a limit",
            tool.name
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_arguments_are_refused_without_being_echoed() {
    let client = common::start(&["--no-embeddings"]).await;
    let megabyte = "a".repeat(MEGABYTE);
    let calls = [
        (
            "describe_pod",
            "pod",
            json!({"namespace": "payments", "pod": megabyte}),
        ),
        (
            "list_pods",
            "label_selector",
            json!({"namespace": "payments", "label_selector": megabyte}),
        ),
        (
            "get_pod_logs",
            "grep",
            json!({"namespace": "payments", "pod": "payment-gateway-0", "grep": megabyte}),
        ),
        ("search_runbooks", "query", json!({"query": megabyte})),
        (
            "troubleshoot_issue",
            "description",
            json!({"description": megabyte}),
        ),
        (
            "list_namespaces",
            "unknown argument",
            json!({megabyte.as_str(): 1}),
        ),
    ];
    // Warm-up.
    refuse(&client, "describe_pod", common::args(calls[0].2.clone())).await;
    for (tool, argument, arguments) in calls {
        let refusal = refuse(&client, tool, common::args(arguments)).await;
        eprintln!(
            "{tool}.{argument}, 1 MB: refused in {:?}, {} bytes: {}",
            refusal.elapsed, refusal.bytes, refusal.text
        );
        assert!(refusal.bytes < REPLY_BYTES, "{}", refusal.text);
        assert!(refusal.text.contains(argument), "{}", refusal.text);
        assert!(
            refusal.text.contains("1,000,000 characters"),
            "{}",
            refusal.text
        );
        assert!(!refusal.text.contains(&"a".repeat(64)), "{}", refusal.text);
        assert!(
            refusal.elapsed < MEGABYTE_REFUSAL,
            "{tool}.{argument}: {:?}",
            refusal.elapsed
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_within_their_limits_reach_the_tool() {
    let client = common::start(&["--no-embeddings"]).await;
    // 253 two-byte characters (506 bytes) are within a 253-character limit: the tool itself
    // says what is wrong with the name.
    let message = common::err(
        &client,
        "describe_pod",
        json!({"namespace": "payments", "pod": "é".repeat(253)}),
    )
    .await;
    assert!(message.contains("invalid pod name"), "{message}");
    assert!(message.contains("(253 characters)"), "{message}");
    // Limits at their edge are accepted.
    common::ok(
        &client,
        "search_logs",
        json!({"limit": 1_000_000, "since": "15m", "max_tokens": 10_000_000}),
    )
    .await;
    common::ok(
        &client,
        "get_recent_deploys",
        json!({"service": "payment-gateway", "hours_back": 2160}),
    )
    .await;
    common::ok(
        &client,
        "search_runbooks",
        json!({"query": "oom ".repeat(500), "limit": 20, "tags": vec!["memory"; 16]}),
    )
    .await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_uris_prompt_arguments_and_completions_are_refused_briefly() {
    let client = common::start(&["--no-embeddings"]).await;
    let megabyte = "a".repeat(MEGABYTE);
    let bounded = |what: &str, error: String| {
        eprintln!("{what}, 1 MB: {} bytes: {error}", error.len());
        assert!(error.len() < REPLY_BYTES, "{what}: {error}");
        assert!(!error.contains(&"a".repeat(64)), "{what}: {error}");
        error
    };

    let started = Instant::now();
    let error = client
        .read_resource(ReadResourceRequestParams::new(format!(
            "runbook://{megabyte}"
        )))
        .await
        .unwrap_err()
        .to_string();
    let error = bounded("resources/read", error);
    assert!(error.contains("the limit is 2,048"), "{error}");
    eprintln!("resources/read, 1 MB: {:?}", started.elapsed());
    assert!(
        started.elapsed() < MEGABYTE_REFUSAL,
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let error = client
        .get_prompt(
            GetPromptRequestParams::new("investigate-service")
                .with_arguments(common::args(json!({"service": megabyte}))),
        )
        .await
        .unwrap_err()
        .to_string();
    let error = bounded("prompts/get", error);
    assert!(
        error.contains("\"service\"") && error.contains("the limit is 253"),
        "{error}"
    );
    eprintln!("prompts/get, 1 MB: {:?}", started.elapsed());
    assert!(
        started.elapsed() < MEGABYTE_REFUSAL,
        "{:?}",
        started.elapsed()
    );
    let error = client
        .get_prompt(
            GetPromptRequestParams::new("troubleshoot-issue")
                .with_arguments(common::args(json!({"description": megabyte}))),
        )
        .await
        .unwrap_err()
        .to_string();
    let error = bounded("prompts/get description", error);
    assert!(error.contains("the limit is 2,000"), "{error}");

    let error = client
        .complete_prompt_simple("investigate-service", "service", megabyte.clone())
        .await
        .unwrap_err()
        .to_string();
    bounded("completion/complete", error);
    client.cancel().await.unwrap();
}
