//! A client may disconnect at any moment, also while the embedding model is still loading on
//! the background thread. The server must then exit cleanly: status 0, and no ONNX Runtime
//! errors from the library being torn down under a call in flight ("Exception during
//! initialization: GetElementType is not implemented", crashes). Before the fix about one
//! disconnect in twelve during the load went wrong, so a dozen disconnects spread over the load
//! catch a regression most of the time.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn disconnecting_while_the_model_loads_exits_cleanly() {
    let mut problems = Vec::new();
    for round in 0..12u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
            .env("SRE_MCP_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sre-mcp");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
        )
        .unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"result\""), "{line}");
        // Spread the disconnects over the model's load (a few hundred ms).
        std::thread::sleep(Duration::from_millis(round * 40));
        drop(stdin);
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        if !status.success() {
            problems.push(format!("round {round}: exit {status}\n{stderr}"));
        }
        for line in stderr.lines() {
            if line.contains("onnxruntime") || line.contains("embeddings failed to load") {
                problems.push(format!("round {round}: {line}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
