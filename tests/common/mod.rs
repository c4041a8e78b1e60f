//! Spawns the real binary and talks MCP to it over stdio with rmcp's client.
#![allow(dead_code)]

pub mod raw;

use std::process::Stdio;

use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

pub type Client = RunningService<RoleClient, ()>;

/// Set (to 1) by CI: tests that need the public runbook corpus fail instead of skipping.
pub const REQUIRE_SHARED: &str = "SRE_MCP_REQUIRE_SHARED";

/// The public prometheus-operator runbook corpus (Apache-2.0), which is not part of the
/// project: it sits in `../shared/corpora/` beside the checkout on the development machines
/// and in CI. `None`, with one line saying what was skipped and why, when it is not there —
/// unless `SRE_MCP_REQUIRE_SHARED=1`, when its absence fails the test.
pub fn shared_corpus(what: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpora/prometheus-operator-runbooks");
    if path.is_dir() {
        return Some(path);
    }
    let line = format!(
        "skipped: {what} needs the public runbook corpus at {} (../shared beside the project)",
        path.display()
    );
    if std::env::var(REQUIRE_SHARED).is_ok_and(|v| v == "1") {
        panic!("{line}; {REQUIRE_SHARED}=1 requires it");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    None
}

/// The data directory the test binaries' servers share (one per test process).
pub fn test_data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sre-mcp-test-data-{}", std::process::id()))
}

/// A fresh, empty data directory for one test.
pub fn fresh_data_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sre-mcp-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sre-mcp")
}

/// The real binary as a child process on stdio. The demo cluster unless the test names a
/// backend: a developer's own kubeconfig must not decide what the tests read.
pub fn spawn(args: &[&str]) -> TokioChildProcess {
    let mut command = tokio::process::Command::new(binary());
    command
        .args(args)
        .env("SRE_MCP_LOG", "warn")
        .env("SRE_MCP_BACKEND", "demo")
        // The history database of test runs stays out of the developer's own (a test that
        // reads it back passes --data-dir of its own).
        .env("SRE_MCP_DATA_DIR", test_data_dir());
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sre-mcp");
    transport
}

/// Starts `sre-mcp` as a client that names itself `name` at initialize (what hosts such as
/// Claude Desktop, `claude-ai`, send as `clientInfo.name`).
pub async fn start_as(
    name: &str,
    args: &[&str],
) -> RunningService<RoleClient, rmcp::model::ClientConfig> {
    let info = rmcp::model::ClientConfig::new(
        Default::default(),
        rmcp::model::Implementation::new(name, "1.0.0"),
    );
    info.serve(spawn(args)).await.expect("MCP initialize")
}

/// Starts `sre-mcp` with extra arguments and completes the MCP handshake.
pub async fn start(args: &[&str]) -> Client {
    ().serve(spawn(args)).await.expect("MCP initialize")
}

/// Waits (up to a minute) until the runbook index is built, as `system://health` says: on a
/// loaded machine building it can take longer than a tool waits for it, and a test that checks
/// the attached runbooks must not depend on that race.
pub async fn wait_for_runbook_index(client: &Client) {
    let started = std::time::Instant::now();
    loop {
        let health = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(
                "system://health",
            ))
            .await
            .expect("system://health");
        let text = match &health.contents[0] {
            rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
            _ => String::new(),
        };
        let health: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if health["runbooks"]["index"] == "ready" {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "runbook index not ready after 60 s: {}",
            health["runbooks"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Reads a JSON resource.
pub async fn read_json(client: &Client, uri: &str) -> Value {
    let result = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
        .await
        .unwrap_or_else(|e| panic!("resources/read {uri}: {e}"));
    match &result.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => {
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{uri}: {e}: {text}"))
        }
        other => panic!("{uri}: not text: {other:?}"),
    }
}

pub fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => panic!("arguments must be a JSON object"),
    }
}

pub async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"))
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Calls a tool that must succeed and returns its structured content.
pub async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments.clone()).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool}({arguments}) failed: {}",
        text(&result)
    );
    result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool}: no structured content"))
}

/// Calls a tool that must fail with isError and returns the message.
pub async fn err(client: &Client, tool: &str, arguments: Value) -> String {
    let result = call(client, tool, arguments.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool}({arguments}) should fail: {}",
        text(&result)
    );
    text(&result)
}
