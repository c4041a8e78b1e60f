//! Raw JSON-RPC over the binary's stdin/stdout: bad lines and bad requests get the right
//! answer and never end the session.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Raw {
    _child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Raw {
    async fn start() -> Raw {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
            .env("SRE_MCP_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut raw = Raw {
            _child: child,
            stdin,
            stdout,
        };
        let init = raw
            .request(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}))
            .await;
        assert_eq!(init["result"]["serverInfo"]["name"], "sre-mcp");
        raw.send_line(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string())
            .await;
        raw
    }

    async fn send_line(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .expect("a reply within 10 s")
            .unwrap()
            .expect("stdout open");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"))
    }

    async fn request(&mut self, message: Value) -> Value {
        self.send_line(&message.to_string()).await;
        self.next().await
    }
}

#[tokio::test]
async fn malformed_and_wrong_requests_get_errors_and_the_session_continues() {
    let mut raw = Raw::start().await;

    // Unparsable input: a parse error with "id": null (JSON-RPC 2.0, section 5.1), from the
    // protocol guard; the session goes on.
    raw.send_line("{this is not json").await;
    let parse_error = raw.next().await;
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    assert!(parse_error.as_object().unwrap().contains_key("id"));
    assert!(parse_error["id"].is_null());
    let pong = raw
        .request(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await;
    assert_eq!(pong["id"], 1);
    assert!(pong["result"].is_object());

    // Well-formed JSON that is not a JSON-RPC message: Invalid Request.
    raw.send_line(r#"{"hello":"world"}"#).await;
    let invalid = raw.next().await;
    assert_eq!(invalid["error"]["code"], -32600, "{invalid}");

    let unknown_method = raw
        .request(json!({"jsonrpc":"2.0","id":2,"method":"tools/destroy"}))
        .await;
    assert_eq!(unknown_method["id"], 2);
    assert_eq!(unknown_method["error"]["code"], -32601, "{unknown_method}");

    let unknown_tool = raw
        .request(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"rm_rf","arguments":{}}}))
        .await;
    assert_eq!(unknown_tool["error"]["code"], -32602, "{unknown_tool}");
    assert!(
        unknown_tool["error"]["message"]
            .as_str()
            .unwrap()
            .contains("check_service_health")
    );

    let wrong_types = raw
        .request(json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_pod_logs","arguments":{"namespace":["payments"],"pod":1,"tail_lines":"ten"}}}))
        .await;
    assert_eq!(wrong_types["result"]["isError"], true, "{wrong_types}");
    let message = wrong_types["result"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("invalid arguments for get_pod_logs"),
        "{message}"
    );

    let ok = raw
        .request(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"list_namespaces","arguments":{}}}))
        .await;
    assert_eq!(ok["id"], 5);
    assert_eq!(ok["result"]["isError"], false);
    assert!(ok["result"]["structuredContent"]["namespaces"].is_array());
}
