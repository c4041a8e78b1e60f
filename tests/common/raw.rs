//! Raw JSON-RPC lines over the real binary's stdin/stdout, for tests of what a client library
//! would never send: malformed frames, duplicate ids, oversized requests, early notifications.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct Raw {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Raw {
    /// Starts the binary on the demo cluster (no handshake yet).
    pub async fn spawn(args: &[&str]) -> Raw {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
            .args(args)
            .env("SRE_MCP_LOG", "warn")
            .env("SRE_MCP_BACKEND", "demo")
            .env("SRE_MCP_DATA_DIR", super::test_data_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sre-mcp");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Raw {
            child,
            stdin,
            stdout,
        }
    }

    /// Starts the binary and completes the handshake.
    pub async fn start(args: &[&str]) -> Raw {
        let mut raw = Raw::spawn(args).await;
        raw.initialize(0).await;
        raw
    }

    pub async fn initialize(&mut self, id: i64) {
        let init = self
            .request(json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}))
            .await;
        assert_eq!(init["result"]["serverInfo"]["name"], "sre-mcp", "{init}");
        self.send_line(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string())
            .await;
    }

    pub async fn send_line(&mut self, line: &str) {
        self.send_bytes(line.as_bytes()).await;
    }

    /// Writes `bytes` and a newline.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next line on stdout (within 10 s), which must be JSON.
    pub async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a reply within 10 s")
    }

    /// The next line on stdout, or `None` when nothing came within `wait` (or stdout closed).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let line = tokio::time::timeout(wait, self.stdout.next_line())
            .await
            .ok()?
            .unwrap()?;
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}")),
        )
    }

    pub async fn request(&mut self, message: Value) -> Value {
        self.send_line(&message.to_string()).await;
        self.next().await
    }

    /// Closes stdin (the client went away).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The server's peak resident memory so far, in MB (Linux).
    pub fn peak_rss_mb(&self) -> f64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}
