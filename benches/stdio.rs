//! Over-stdio benchmark of the real binary: cold start to answered `initialize` + `tools/list`
//! (median of 20 starts), and p50/p99 latency of tool calls (1000 sequential calls each).
//! Run with `cargo bench --bench stdio`; prints figures, asserts nothing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Server {
    fn spawn() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
            .env("SRE_MCP_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sre-mcp");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server {
            child,
            stdin,
            stdout,
            next_id: 0,
        }
    }

    fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut line = String::new();
        loop {
            line.clear();
            self.stdout.read_line(&mut line).unwrap();
            let reply: Value = serde_json::from_str(&line).expect("JSON reply");
            if reply["id"] == id {
                return reply;
            }
        }
    }

    fn initialize(&mut self) {
        let reply = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        );
        assert!(reply["result"].is_object(), "{reply}");
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    // Ignore the harness arguments cargo passes (e.g. --bench).
    let starts = 20;
    let mut cold = Vec::with_capacity(starts);
    for _ in 0..starts {
        let started = Instant::now();
        let mut server = Server::spawn();
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
        "cold start → initialize + tools/list answered: median {} (min {}, max {}) over {starts} starts",
        micros(percentile(&cold, 0.5)),
        micros(cold[0]),
        micros(cold[cold.len() - 1])
    );

    let mut server = Server::spawn();
    server.initialize();
    let calls = 1000;
    for (tool, arguments) in [
        ("check_service_health", json!({})),
        (
            "check_service_health",
            json!({"service": "payment-gateway"}),
        ),
        ("search_logs", json!({"level": "error", "limit": 20})),
        (
            "search_logs",
            json!({"pattern": "timeout", "since": "30m", "limit": 20}),
        ),
    ] {
        for _ in 0..50 {
            server.request("tools/call", json!({"name": tool, "arguments": arguments}));
        }
        let mut latencies = Vec::with_capacity(calls);
        let mut bytes = 0;
        for _ in 0..calls {
            let started = Instant::now();
            let reply = server.request("tools/call", json!({"name": tool, "arguments": arguments}));
            latencies.push(started.elapsed());
            assert_eq!(reply["result"]["isError"], false, "{reply}");
            bytes = reply.to_string().len();
        }
        latencies.sort();
        println!(
            "{tool}({arguments}) over stdio, {calls} calls: p50 {} p99 {} ({} bytes per reply)",
            micros(percentile(&latencies, 0.5)),
            micros(percentile(&latencies, 0.99)),
            bytes
        );
    }
}
