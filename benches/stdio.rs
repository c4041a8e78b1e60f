//! Over-stdio benchmark of the real binary: cold start to answered `initialize` + `tools/list`
//! (median of 20 starts), and p50/p99 latency of tool calls (1000 sequential calls each).
//! Run with `cargo bench --bench stdio`; prints figures, asserts nothing.

mod common;

use std::time::{Duration, Instant};

use common::{Server, micros, percentile};
use serde_json::json;

fn cold_start(args: &[&str], label: &str) {
    let starts = 20;
    let mut cold = Vec::with_capacity(starts);
    for _ in 0..starts {
        let started = Instant::now();
        let mut server = Server::spawn(args);
        server.initialize();
        let tools = server.request("tools/list", json!({}));
        assert!(
            tools["result"]["tools"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
        );
        cold.push(started.elapsed());
    }
    cold.sort();
    println!(
        "cold start → initialize + tools/list answered ({label}): median {} (min {}, max {}) over {starts} starts",
        micros(percentile(&cold, 0.5)),
        micros(cold[0]),
        micros(cold[cold.len() - 1])
    );
}

fn latencies(args: &[&str], label: &str) {
    let mut server = Server::spawn(args);
    server.initialize();
    let state = server.wait_for_embeddings();
    let calls = 1000;
    for (tool, arguments) in [
        ("check_service_health", json!({})),
        ("check_service_health", json!({"service": "user-service"})),
        ("search_logs", json!({"level": "error", "limit": 20})),
        (
            "search_logs",
            json!({"service": "user-service", "pattern": "GET", "limit": 20}),
        ),
        (
            "troubleshoot_issue",
            json!({"description": "card payments fail", "service": "payment-gateway"}),
        ),
        (
            "troubleshoot_issue",
            json!({"description": "everything is on fire"}),
        ),
        // The writes' dry runs: the whole review (health, investigation, error groups, events,
        // history) of a service that is down, and of a healthy one; each recorded.
        (
            "rollback_deployment",
            json!({"service": "payments/payment-gateway", "to_revision": 6, "reason": "bench"}),
        ),
        (
            "deploy_with_review",
            json!({"service": "payments/fraud-detector", "image": "registry.acme.internal/payments/fraud-detector:1.9.2", "reason": "bench"}),
        ),
    ] {
        for _ in 0..50 {
            server.request("tools/call", json!({"name": tool, "arguments": arguments}));
        }
        let mut samples = Vec::with_capacity(calls);
        let mut bytes = 0;
        let mut augmented = false;
        for _ in 0..calls {
            let started = Instant::now();
            let reply = server.request("tools/call", json!({"name": tool, "arguments": arguments}));
            samples.push(started.elapsed());
            assert_eq!(reply["result"]["isError"], false, "{reply}");
            bytes = reply.to_string().len();
            augmented = reply["result"]["structuredContent"]
                .get("relevant_runbooks")
                .is_some();
        }
        samples.sort();
        println!(
            "[{label}, embeddings {state}] {tool}({arguments}) over stdio, {calls} calls: p50 {} p99 {} ({bytes} bytes per reply{})",
            micros(percentile(&samples, 0.5)),
            micros(percentile(&samples, 0.99)),
            if augmented { ", runbooks attached" } else { "" }
        );
    }
    let (rss, peak) = server.memory_mb();
    println!("[{label}] server memory after the calls: RSS {rss:.1} MB, peak RSS {peak:.1} MB");
}

fn memory(args: &[&str], label: &str) {
    let mut server = Server::spawn(args);
    server.initialize();
    let state = server.wait_for_embeddings();
    let (rss, peak) = server.memory_mb();
    server.request(
        "tools/call",
        json!({"name": "search_runbooks", "arguments": {"query": "pods OOMKilled after a deploy"}}),
    );
    let (rss_after, peak_after) = server.memory_mb();
    println!(
        "[{label}] embeddings {state}: RSS {rss:.1} MB (peak {peak:.1} MB) once loaded; after a search RSS {rss_after:.1} MB (peak {peak_after:.1} MB)"
    );
}

/// A new server's first `search_runbooks` (embedding cache filled by `setup-embeddings`): sent
/// right after `initialize`, and sent once the server has been up a second (as a client whose
/// user types first would).
fn first_search() {
    for delay_ms in [0u64, 1000] {
        let mut samples = Vec::new();
        let mut modes = Vec::new();
        let mut ready_after = Vec::new();
        for round in 0..5 {
            let started = Instant::now();
            let mut server = Server::spawn(&[]);
            server.initialize();
            std::thread::sleep(Duration::from_millis(delay_ms));
            let call_started = Instant::now();
            let reply = server.request(
                "tools/call",
                json!({"name": "search_runbooks", "arguments": {"query": format!("pods OOMKilled after deploy {round}")}}),
            );
            samples.push(call_started.elapsed());
            ready_after.push(started.elapsed());
            modes.push(
                reply["result"]["structuredContent"]["retrieval"]
                    .as_str()
                    .unwrap_or("error")
                    .to_string(),
            );
        }
        samples.sort();
        ready_after.sort();
        println!(
            "first search_runbooks of a new server, sent {delay_ms} ms after initialize: p50 {} (max {}), answered {} after spawn; retrieval {:?}",
            micros(percentile(&samples, 0.5)),
            micros(samples[samples.len() - 1]),
            micros(percentile(&ready_after, 0.5)),
            modes
        );
    }
}

fn main() {
    // Cargo passes harness arguments such as --bench; there are none to read.
    first_search();
    cold_start(&[], "default: embeddings load in the background");
    cold_start(&["--no-embeddings"], "--no-embeddings");
    memory(&[], "arena off (default)");
    memory(&["--onnx-arena"], "--onnx-arena");
    memory(&["--no-embeddings"], "--no-embeddings");
    latencies(&["--augment", "off"], "--augment off");
    latencies(&[], "augment on");
}
