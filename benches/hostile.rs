//! The hostile probes of issue 12, against the release binary on the demo cluster: huge string
//! arguments for every tool argument, resource URI and prompt argument (just under and far over
//! --max-request-bytes), a huge method name, and N heavy calls sent without waiting. Prints the
//! worst reply time, the worst ping answered meanwhile, the largest reply and peak RSS.
//! Run with `cargo bench --bench hostile`; prints figures, asserts nothing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

/// (method, params with the hostile value at `{}`), one per argument that takes a string.
fn probes() -> Vec<(String, Value)> {
    let tool = |name: &str, arguments: Value| {
        (
            format!("tools/call {name}"),
            json!({"name": name, "arguments": arguments}),
        )
    };
    let x = "\u{0}";
    vec![
        tool("describe_pod", json!({"namespace": "payments", "pod": x})),
        tool("list_pods", json!({"namespace": x})),
        tool(
            "list_pods",
            json!({"namespace": "payments", "label_selector": x}),
        ),
        tool(
            "get_pod_logs",
            json!({"namespace": "payments", "pod": "payment-gateway-7d9f8b6c4-x2k9p", "grep": x}),
        ),
        tool(
            "get_pod_logs",
            json!({"namespace": "payments", "pod": "payment-gateway-7d9f8b6c4-x2k9p", "since": x}),
        ),
        tool("search_logs", json!({"pattern": x})),
        tool("search_logs", json!({"service": x})),
        tool("trace_transaction", json!({"trace_id": x})),
        tool("check_service_health", json!({"service": x})),
        tool("search_runbooks", json!({"query": x})),
        tool("get_events", json!({"object": x})),
        tool("troubleshoot_issue", json!({"description": x})),
        tool("list_namespaces", json!({"max_tokens": x})),
        (
            "resources/read".into(),
            json!({"uri": format!("runbook://{x}")}),
        ),
        (
            "prompts/get investigate-service".into(),
            json!({"name": "investigate-service", "arguments": {"service": x}}),
        ),
        (
            "completion/complete".into(),
            json!({"ref": {"type": "ref/prompt", "name": "investigate-service"}, "argument": {"name": "service", "value": x}}),
        ),
    ]
}

/// Sends one frame, then a ping; returns (reply time, reply bytes, ping time).
fn probe(
    server: &mut Server,
    method: &str,
    params: &Value,
    size: usize,
) -> (Duration, usize, Duration) {
    let method = method.split(' ').next().unwrap();
    let big = "x".repeat(size);
    let frame = json!({"jsonrpc": "2.0", "id": "probe", "method": method, "params": params})
        .to_string()
        .replace("\\u0000", &big);
    let started = Instant::now();
    server.send_raw(&frame);
    server.send(&json!({"jsonrpc": "2.0", "id": "ping", "method": "ping"}));
    let (mut reply, mut ping) = (None, None);
    while reply.is_none() || ping.is_none() {
        let line = server.read_line();
        let value: Value = serde_json::from_str(&line).expect("JSON reply");
        match value["id"].as_str() {
            Some("probe") => reply = Some((started.elapsed(), line.len())),
            Some("ping") => ping = Some(started.elapsed()),
            _ => {}
        }
    }
    let (took, bytes) = reply.unwrap();
    (took, bytes, ping.unwrap())
}

fn hostile_arguments() {
    let mut server = Server::spawn(&[]);
    server.initialize();
    server.wait_for_embeddings();
    for size in [1_000_000, 10 * 1024 * 1024] {
        let (mut worst, mut worst_ping, mut largest) = (Duration::ZERO, Duration::ZERO, 0);
        let mut worst_what = String::new();
        for (what, params) in probes() {
            let (took, bytes, ping) = probe(&mut server, &what, &params, size);
            if took > worst {
                worst = took;
                worst_what = what.clone();
            }
            worst_ping = worst_ping.max(ping);
            largest = largest.max(bytes);
        }
        let (_, peak) = server.memory_mb();
        println!(
            "{} probes with a {:.1} MB string argument: worst reply {:.1} ms ({worst_what}), worst ping meanwhile {:.1} ms, largest reply {largest} bytes, peak RSS {peak:.0} MB",
            probes().len(),
            size as f64 / 1e6,
            worst.as_secs_f64() * 1e3,
            worst_ping.as_secs_f64() * 1e3,
        );
    }
    let started = Instant::now();
    let method = "m".repeat(10 * 1024 * 1024);
    server.send_raw(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#
    ));
    let line = server.read_line();
    println!(
        "a 10 MB method name: answered in {:.1} ms with {} bytes",
        started.elapsed().as_secs_f64() * 1e3,
        line.len()
    );
}

/// N heavy calls sent at once, on a fresh server each time.
fn flood(n: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
        .args(["--no-embeddings"])
        .env("SRE_MCP_LOG", "error")
        .env("SRE_MCP_BACKEND", "demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sre-mcp");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"flood","version":"1"}}}}}}"#
    )
    .unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let writer = std::thread::spawn(move || {
        for id in 1..=n {
            let frame = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "search_logs", "arguments": {"limit": 50000, "max_tokens": 25000}}});
            if writeln!(stdin, "{frame}").is_err() {
                break;
            }
        }
        stdin
    });
    let started = Instant::now();
    let (mut results, mut busy) = (0, 0);
    for _ in 0..n {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let reply: Value = serde_json::from_str(&line).unwrap();
        let text = reply["result"]["content"][0]["text"].as_str().unwrap_or("");
        if text.starts_with("server busy") {
            busy += 1;
        } else {
            results += 1;
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0);
    println!(
        "{n} × search_logs(limit 50000, max_tokens 25000) sent at once: {results} results + {busy} busy replies ({} unanswered) in {:.1} s; peak RSS {peak:.0} MB",
        n - results - busy,
        started.elapsed().as_secs_f64()
    );
    drop(writer.join());
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    hostile_arguments();
    for n in [1, 50, 100, 300, 3000] {
        flood(n);
    }
}
