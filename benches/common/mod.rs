//! What the stdio benches share: the real binary spawned and spoken to in raw JSON-RPC over
//! stdio, its memory, and percentiles.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Server {
    pub fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
            .args(args)
            .env("SRE_MCP_LOG", "error")
            // The demo cluster unless the arguments name a backend.
            .env("SRE_MCP_BACKEND", "demo")
            // Every call is recorded in the history database, as for users; the benches' go
            // to a folder of their own.
            .env(
                "SRE_MCP_DATA_DIR",
                std::env::temp_dir().join(format!("sre-mcp-bench-data-{}", std::process::id())),
            )
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

    pub fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Writes one line as it is (a frame a client library would not build).
    pub fn send_raw(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next line on stdout.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
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

    pub fn initialize(&mut self) {
        let reply = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        );
        assert!(reply["result"].is_object(), "{reply}");
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }
}

impl Server {
    /// Waits until the runbook embeddings are loaded (or failed), as system://health reports.
    pub fn wait_for_embeddings(&mut self) -> String {
        let started = Instant::now();
        loop {
            let reply = self.request("resources/read", json!({"uri": "system://health"}));
            let text = reply["result"]["contents"][0]["text"]
                .as_str()
                .unwrap_or("{}")
                .to_string();
            let health: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let state = health["runbooks"]["embeddings"]["state"]
                .as_str()
                .unwrap_or("loading")
                .to_string();
            if state != "loading" || started.elapsed() > Duration::from_secs(300) {
                return state;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident and peak resident memory of the server process, in MB.
    pub fn memory_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

pub fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
