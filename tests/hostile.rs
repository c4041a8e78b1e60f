//! Hostile input and protocol robustness through the real binary (issue 12): the protocol
//! guard's replies to each class of bad frame, early notifications, duplicate ids, oversized
//! frames, a drain on stdin close, pings answered while heavy calls run, bounded concurrency,
//! and calls that end by deadline or cancellation.

mod common;

use std::time::{Duration, Instant};

use common::raw::Raw;
use serde_json::{Value, json};

/// The tests that load the machine (heavy calls, huge frames) run one at a time, so that the
/// latency and memory they measure are the server's, not the neighbouring test's.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ping(id: i64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"ping"})
}

fn call(id: i64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
}

/// A search over every pod's log with a regex that makes it work: the most expensive valid call.
fn heavy_search(id: i64) -> Value {
    call(
        id,
        "search_logs",
        json!({"pattern": "(a|e|i|o|u)[a-z]*(x|y|z|q).*(0|1|2|3).*(timeout|refused|error)", "limit": 50000, "max_tokens": 25000}),
    )
}

#[tokio::test]
async fn every_malformed_frame_class_gets_its_reply_and_the_session_goes_on() {
    let mut raw = Raw::start(&["--no-embeddings"]).await;
    // (frame, expected code, expected id)
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let long_method = format!(
        r#"{{"jsonrpc":"2.0","id":12,"method":"{}"}}"#,
        "m".repeat(200_000)
    );
    let cases: Vec<(Vec<u8>, i64, Value)> = vec![
        (b"{not json".to_vec(), -32700, Value::Null),
        (b"\xff\xfe\xfd".to_vec(), -32700, Value::Null),
        (br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\ud800"}}"#.to_vec(), -32700, Value::Null),
        (br#"{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":1e99999}}"#.to_vec(), -32700, Value::Null),
        (deep.into_bytes(), -32700, Value::Null),
        (br#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#.to_vec(), -32600, Value::Null),
        (br#"{"hello":"world"}"#.to_vec(), -32600, Value::Null),
        (br#"{"id":4,"method":"ping"}"#.to_vec(), -32600, json!(4)),
        (br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.to_vec(), -32600, Value::Null),
        (br#"{"jsonrpc":"2.0","id":5,"method":"tools/destroy"}"#.to_vec(), -32601, json!(5)),
        (long_method.into_bytes(), -32601, json!(12)),
        (br#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":["x"]}}"#.to_vec(), -32602, json!(6)),
        (br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":"list_pods"}"#.to_vec(), -32602, json!(7)),
        (br#"{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":42}}"#.to_vec(), -32602, json!(8)),
        (br#"{"jsonrpc":"2.0","id":9,"method":"completion/complete","params":{"ref":"x"}}"#.to_vec(), -32602, json!(9)),
        (br#"{"jsonrpc":"2.0","id":10,"method":"prompts/get","params":{"name":"investigate-service","arguments":{"service":["a"]}}}"#.to_vec(), -32602, json!(10)),
    ];
    for (frame, code, id) in cases {
        let started = Instant::now();
        raw.send_bytes(&frame).await;
        let reply = raw.next().await;
        let shown = String::from_utf8_lossy(&frame[..frame.len().min(80)]).to_string();
        assert_eq!(reply["error"]["code"], json!(code), "{shown}: {reply}");
        assert!(
            reply.as_object().unwrap().contains_key("id"),
            "{shown}: {reply}"
        );
        assert_eq!(reply["id"], id, "{shown}: {reply}");
        assert!(
            reply.to_string().len() < 1024,
            "{shown}: a {}-byte reply",
            reply.to_string().len()
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{shown}");
    }
    // A frame behind a byte-order mark is read; notifications never get a reply, not even
    // malformed ones; empty lines are skipped.
    raw.send_bytes(b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":20,\"method\":\"ping\"}")
        .await;
    assert_eq!(raw.next().await["id"], 20);
    raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":"x"}"#)
        .await;
    raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/nonsense"}"#)
        .await;
    raw.send_line("").await;
    raw.send_line("\r").await;
    let pong = raw.request(ping(21)).await;
    assert_eq!(pong["id"], 21, "a notification was answered: {pong}");
    // A completion value longer than any name: refused before any work, without echo.
    let value = "s".repeat(100_000);
    let completion = raw
        .request(json!({"jsonrpc":"2.0","id":23,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"investigate-service"},"argument":{"name":"service","value":value}}}))
        .await;
    assert_eq!(completion["error"]["code"], -32602, "{completion}");
    assert!(completion.to_string().len() < 1024);
    assert!(
        completion["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 253")
    );
    // Still serving tools.
    let listed = raw
        .request(json!({"jsonrpc":"2.0","id":22,"method":"tools/list"}))
        .await;
    assert!(listed["result"]["tools"].as_array().unwrap().len() >= 13);
}

#[tokio::test]
async fn notifications_and_responses_before_initialize_leave_the_server_alive() {
    let mut raw = Raw::spawn(&["--no-embeddings"]).await;
    raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    raw.send_line(r#"{"jsonrpc":"2.0","id":99,"result":{}}"#)
        .await;
    raw.send_line(r#"{"jsonrpc":"2.0","id":98,"error":{"code":1,"message":"x"}}"#)
        .await;
    let pong = raw.request(ping(1)).await;
    assert_eq!(pong["id"], 1, "{pong}");
    raw.initialize(2).await;
    let listed = raw
        .request(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}))
        .await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
}

#[tokio::test]
async fn a_second_request_with_an_id_in_flight_is_refused() {
    let mut raw = Raw::start(&["--no-embeddings"]).await;
    // Both in one write: the first is still running when the second is read.
    let first = heavy_search(7).to_string();
    let second = ping(7).to_string();
    raw.send_line(&format!("{first}\n{second}")).await;
    let mut replies = vec![raw.next().await, raw.next().await];
    replies.sort_by_key(|r| r.get("error").is_none());
    assert_eq!(replies[0]["error"]["code"], -32600, "{:?}", replies);
    assert!(
        replies[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in flight")
    );
    assert_eq!(replies[1]["id"], 7);
    assert!(replies[1]["result"]["content"].is_array(), "{}", replies[1]);
}

#[tokio::test]
async fn closing_stdin_with_50_calls_in_flight_delivers_50_replies() {
    let _alone = ALONE.lock().await;
    let mut raw = Raw::start(&["--no-embeddings"]).await;
    let tools = [
        ("check_service_health", json!({})),
        (
            "troubleshoot_issue",
            json!({"description": "checkout is slow"}),
        ),
        ("search_logs", json!({"level": "error", "limit": 200})),
        ("list_pods", json!({"namespace": "payments"})),
        ("count_errors", json!({})),
    ];
    let mut frames = String::new();
    for id in 1..=50 {
        let (tool, arguments) = &tools[id as usize % tools.len()];
        frames.push_str(&call(id, tool, arguments.clone()).to_string());
        frames.push('\n');
    }
    frames.pop();
    raw.send_line(&frames).await;
    raw.close_stdin();
    let mut ids = Vec::new();
    while let Some(reply) = raw.next_within(Duration::from_secs(60)).await {
        assert!(reply["result"].is_object(), "{reply}");
        ids.push(reply["id"].as_i64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    let status = raw.child.wait().await.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn oversized_frames_are_refused_with_their_id_and_memory_stays_bounded() {
    let _alone = ALONE.lock().await;
    let mut raw = Raw::start(&["--no-embeddings"]).await;
    for (id, size) in [(1, 1024 * 1024 + 1), (2, 16 * 1024 * 1024)] {
        let frame = call(
            id,
            "describe_pod",
            json!({"namespace": "payments", "pod": "x".repeat(size)}),
        );
        let started = Instant::now();
        raw.send_line(&frame.to_string()).await;
        let reply = raw.next().await;
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["error"]["code"], -32600, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("too large") && message.contains("--max-request-bytes"),
            "{message}"
        );
        eprintln!(
            "a {} MB frame refused in {:?}",
            size / (1024 * 1024),
            started.elapsed()
        );
    }
    let pong = raw.request(ping(3)).await;
    assert_eq!(pong["id"], 3);
    // system://health reports the largest request seen and the limits in force.
    let health = raw
        .request(json!({"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"system://health"}}))
        .await;
    let health: Value =
        serde_json::from_str(health["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let protocol = &health["protocol"];
    assert!(
        protocol["largest_request_bytes"].as_u64().unwrap() > 16 * 1024 * 1024,
        "{protocol}"
    );
    assert!(protocol["largest_reply_bytes"].as_u64().unwrap() > 0);
    assert!(
        protocol["refused_frames"].as_u64().unwrap() >= 2,
        "{protocol}"
    );
    assert_eq!(protocol["limits"]["max_request_bytes"], 1024 * 1024);
    let peak = raw.peak_rss_mb();
    eprintln!("peak RSS after 1 MB and 16 MB frames: {peak:.0} MB");
    assert!(peak < 150.0, "peak RSS {peak:.0} MB");
}

#[tokio::test]
async fn pings_are_answered_quickly_while_heavy_calls_run() {
    let _alone = ALONE.lock().await;
    let mut raw = Raw::start(&["--no-embeddings"]).await;
    let heavy: Vec<String> = (1000..1008)
        .map(|id| heavy_search(id).to_string())
        .collect();
    raw.send_line(&heavy.join("\n")).await;
    let mut worst = Duration::ZERO;
    let mut heavy_done = 0;
    for id in 0..100 {
        let sent = Instant::now();
        raw.send_line(&ping(id).to_string()).await;
        loop {
            let reply = raw.next_within(Duration::from_secs(120)).await.unwrap();
            if reply["id"] == json!(id) {
                worst = worst.max(sent.elapsed());
                break;
            }
            heavy_done += 1;
        }
    }
    eprintln!(
        "100 pings while 8 heavy searches ran ({heavy_done} finished meanwhile): worst {worst:?}"
    );
    assert!(
        heavy_done < 8,
        "the heavy calls ended before the pings could overlap them"
    );
    assert!(worst < Duration::from_millis(50), "a ping took {worst:?}");
}

#[tokio::test]
async fn three_hundred_heavy_calls_each_get_a_result_or_a_busy_reply() {
    let _alone = ALONE.lock().await;
    let mut raw = Raw::start(&["--no-embeddings"]).await;
    let frames: Vec<String> = (1..=300).map(|id| heavy_search(id).to_string()).collect();
    raw.send_line(&frames.join("\n")).await;
    let (mut results, mut busy) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 300 {
        let reply = raw
            .next_within(Duration::from_secs(300))
            .await
            .expect("every reply");
        assert!(seen.insert(reply["id"].as_i64().unwrap()), "{reply}");
        let text = reply["result"]["content"][0]["text"].as_str().unwrap_or("");
        if text.starts_with("server busy") {
            busy += 1;
        } else {
            assert!(reply["result"]["structuredContent"].is_object(), "{reply}");
            results += 1;
        }
    }
    let peak = raw.peak_rss_mb();
    eprintln!("300 heavy calls: {results} results, {busy} busy replies; peak RSS {peak:.0} MB");
    assert!(results >= 64, "{results} results");
    assert!(peak < 300.0, "peak RSS {peak:.0} MB");
}

/// An API server that accepts connections and never answers; counts the connections the
/// client closed.
async fn black_hole() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed, closures) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = closed.send(());
            });
        }
    });
    (port, closures)
}

fn kubeconfig(port: u16) -> std::path::PathBuf {
    let file = std::env::temp_dir().join(format!("sre-mcp-black-hole-{port}.yaml"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: hole\nclusters:\n- name: hole\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: hole\n  context:\n    cluster: hole\n    user: nobody\n"
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn a_call_past_its_deadline_is_stopped_and_a_cancelled_call_ends_its_work() {
    let (port, mut closures) = black_hole().await;
    let config = kubeconfig(port);
    let path = config.to_str().unwrap().to_string();
    let mut raw = Raw::start(&[
        "--no-embeddings",
        "--backend",
        "kube",
        "--kubeconfig",
        &path,
        "--call-timeout",
        "2",
    ])
    .await;
    let started = Instant::now();
    let reply = raw
        .request(call(1, "list_pods", json!({"namespace": "default"})))
        .await;
    let took = started.elapsed();
    let text = reply["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    assert!(text.contains("--call-timeout"), "{text}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // The deadline stopped the request: its connection is closed.
    tokio::time::timeout(Duration::from_secs(2), closures.recv())
        .await
        .expect("the stopped call's connection closed");

    // Cancelled: no reply for it, its request to the API server is dropped, the session goes on.
    raw.send_line(&call(2, "list_pods", json!({"namespace": "default"})).to_string())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    raw.send_line(
        &json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"user stopped it"}})
            .to_string(),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(1), closures.recv())
        .await
        .expect("the cancelled call's connection closed");
    let pong = raw.request(ping(3)).await;
    assert_eq!(pong["id"], 3, "{pong}");
    // Past the deadline the cancelled call would have had: still nothing for it.
    assert!(
        raw.next_within(Duration::from_secs(3)).await.is_none(),
        "a reply came for the cancelled call"
    );
}
