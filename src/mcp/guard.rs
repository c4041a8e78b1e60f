//! The protocol guard: a thin layer between stdin/stdout and the MCP library. It reads each
//! frame within a size limit and answers what the library drops or mishandles, so that every
//! request gets exactly one reply and no frame can stop the server:
//! - a frame over `--max-request-bytes`: refused (with its id when its start shows one),
//!   never parsed into a tree;
//! - JSON that does not parse (bad UTF-8, a lone surrogate, nesting ≥ 128, `1e99999`): `-32700`;
//! - not a JSON-RPC message (no `jsonrpc: "2.0"`, a bad id, a batch): `-32600`, with the id when
//!   it can be read, else `"id": null`;
//! - an unknown method: `-32601`, quoting a short prefix of it; known methods with parameters
//!   of the wrong shape: `-32602` with the reason;
//! - a request whose id is still in flight: `-32600`; more requests in flight than the server
//!   queues: a busy reply;
//! - notifications and responses before `initialize`: ignored (the library would end the
//!   session); a notification never gets a reply.
//!
//! Valid frames pass on unchanged. On stdin close the calls in flight finish (bounded by
//! `drain_timeout`) and every reply is written before the library sees the end of input.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use crate::util::quote::short;

/// Limits the guard applies.
#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    /// Largest frame read (bytes, newline excluded).
    pub max_request_bytes: usize,
    /// Most requests in flight (running or queued); beyond it a request is answered busy.
    pub max_in_flight: usize,
    /// How long calls in flight may take to finish once stdin has closed.
    pub drain_timeout: Duration,
}

impl GuardConfig {
    pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;
}

/// What the guard saw, for `system://health`.
#[derive(Debug, Default)]
pub struct ProtocolStats {
    /// Largest frame received (bytes; a refused oversized frame counts its full size).
    pub largest_request: AtomicUsize,
    /// Largest reply written (bytes).
    pub largest_reply: AtomicUsize,
    /// Frames the guard answered itself (malformed, oversized, duplicate, busy).
    pub refused_frames: AtomicU64,
    /// Frames it dropped without a reply (notifications and responses it could not pass on).
    pub ignored_frames: AtomicU64,
    /// The limits in force, once serving.
    pub limits: std::sync::OnceLock<super::ServeLimits>,
}

impl ProtocolStats {
    /// For `system://health`.
    pub fn snapshot(&self) -> Value {
        json!({
            "largest_request_bytes": self.largest_request.load(Ordering::Relaxed),
            "largest_reply_bytes": self.largest_reply.load(Ordering::Relaxed),
            "refused_frames": self.refused_frames.load(Ordering::Relaxed),
            "ignored_frames": self.ignored_frames.load(Ordering::Relaxed),
            "limits": self.limits.get().map(|l| json!({
                "max_request_bytes": l.max_request_bytes,
                "max_concurrent_calls": l.max_concurrent_calls,
                "max_in_flight": l.max_in_flight,
                "call_timeout_seconds": l.call_timeout.as_secs_f64(),
            })),
        })
    }

    fn saw_request(&self, bytes: usize) {
        self.largest_request.fetch_max(bytes, Ordering::Relaxed);
    }

    fn wrote_reply(&self, bytes: usize) {
        self.largest_reply.fetch_max(bytes, Ordering::Relaxed);
    }
}

/// JSON-RPC error codes the guard answers with.
mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// Implementation-defined server error: too many requests in flight.
    pub const BUSY: i64 = -32000;
}

/// The client→server request methods the library knows (MCP up to 2026-07-28).
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/directory/read",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "skills/list",
    "skills/get",
];

/// State shared by the reading and the writing side.
#[derive(Default)]
struct Shared {
    /// Ids (as JSON text) of requests passed on and not answered yet.
    in_flight: Mutex<HashSet<String>>,
    /// Woken when a request in flight is answered.
    answered: Notify,
    /// The library has left its initialisation phase: notifications and responses may pass.
    initialized: AtomicBool,
    /// Ids of pre-initialisation requests other than initialize and ping: a successful answer
    /// means the library started a session from the request's own metadata (2026-07-28).
    probing: Mutex<HashSet<String>>,
}

impl Shared {
    fn answered(&self, id: &str) {
        let removed = self.in_flight.lock().expect("in-flight set").remove(id);
        if removed {
            self.answered.notify_waiters();
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.lock().expect("in-flight set").len()
    }
}

/// Runs `serve` (the MCP library over the transport it is given: a reader of the frames that
/// passed and a writer of its replies) behind the guard on `input`/`output`, until the
/// library ends.
pub async fn run<I, O, F, Fut>(
    input: I,
    output: O,
    config: GuardConfig,
    stats: Arc<ProtocolStats>,
    serve: F,
) -> anyhow::Result<()>
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(tokio::io::DuplexStream, tokio::io::DuplexStream) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    const PIPE: usize = 64 * 1024;
    let (library_input, to_library) = tokio::io::duplex(PIPE);
    let (from_library, library_output) = tokio::io::duplex(PIPE);
    let shared = Arc::new(Shared::default());
    // Bounded: a client that sends bad frames without reading the replies slows down its own
    // reading instead of growing the server's memory.
    let (replies, own_replies) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(write_loop(
        from_library,
        own_replies,
        output,
        shared.clone(),
        stats.clone(),
    ));
    let reader = tokio::spawn(read_loop(
        BufReader::with_capacity(PIPE, input),
        to_library,
        replies,
        shared,
        config,
        stats,
    ));
    let served = serve(library_input, library_output).await;
    // The library has ended (end of input after the drain, or a fatal error): stop reading.
    reader.abort();
    let _ = reader.await;
    let _ = writer.await;
    served
}

/// Reads frames from the client; passes valid ones to the library, answers the rest.
async fn read_loop<R: AsyncBufRead + Unpin>(
    mut input: R,
    mut to_library: tokio::io::DuplexStream,
    replies: mpsc::Sender<String>,
    shared: Arc<Shared>,
    config: GuardConfig,
    stats: Arc<ProtocolStats>,
) {
    let mut frame = Vec::new();
    loop {
        let read = match read_frame(&mut input, config.max_request_bytes, &mut frame).await {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "reading stdin failed; ending the session");
                break;
            }
        };
        let verdict = match read {
            Read::End => break,
            Read::Frame => {
                stats.saw_request(frame.len());
                judge(&frame, &shared, &config)
            }
            Read::TooLarge { bytes } => {
                stats.saw_request(bytes);
                let id = id_from_prefix(&frame);
                Verdict::Reply(error_reply(
                    id.as_ref(),
                    code::INVALID_REQUEST,
                    &format!(
                        "request too large: {} bytes; the limit is {} bytes (--max-request-bytes)",
                        bytes, config.max_request_bytes
                    ),
                ))
            }
        };
        match verdict {
            Verdict::Pass => {
                let written = async {
                    to_library.write_all(&frame).await?;
                    to_library.write_all(b"\n").await?;
                    to_library.flush().await
                };
                if written.await.is_err() {
                    // The library has ended; nothing more can be answered by it.
                    break;
                }
            }
            Verdict::Reply(reply) => {
                stats.refused_frames.fetch_add(1, Ordering::Relaxed);
                if replies.send(reply).await.is_err() {
                    break;
                }
            }
            Verdict::Ignore(why) => {
                stats.ignored_frames.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(why, "frame ignored");
            }
        }
    }
    // End of input: let the calls in flight finish and their replies go out, then tell the
    // library (which would otherwise cancel them).
    let drained = async {
        loop {
            let answered = shared.answered.notified();
            if shared.in_flight() == 0 {
                break;
            }
            answered.await;
        }
    };
    if tokio::time::timeout(config.drain_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = shared.in_flight(),
            "stdin closed; calls still running after the drain timeout are abandoned"
        );
    }
    drop(to_library);
}

enum Read {
    Frame,
    /// A frame over the limit, skipped; the buffer holds its first bytes.
    TooLarge {
        bytes: usize,
    },
    End,
}

/// Bytes of an oversized frame kept to look for its id.
const PREFIX_KEPT: usize = 4096;

/// Reads one newline-terminated frame into `frame` (without the newline and a trailing
/// carriage return), keeping at most `limit` bytes.
async fn read_frame<R: AsyncBufRead + Unpin>(
    input: &mut R,
    limit: usize,
    frame: &mut Vec<u8>,
) -> std::io::Result<Read> {
    frame.clear();
    let mut total = 0usize;
    let mut any = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            // End of input; an unterminated last frame is still a frame.
            return Ok(match (any, total > limit) {
                (false, _) => Read::End,
                (true, true) => Read::TooLarge { bytes: total },
                (true, false) => Read::Frame,
            });
        }
        any = true;
        let (chunk, done) = match memchr(b'\n', available) {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        let keep = if total + chunk.len() <= limit {
            chunk.len()
        } else {
            PREFIX_KEPT.saturating_sub(frame.len()).min(chunk.len())
        };
        if total + chunk.len() > limit && total <= limit {
            // Crossing the limit: keep only the start, for the id.
            frame.truncate(PREFIX_KEPT);
        }
        frame.extend_from_slice(&chunk[..keep]);
        total += chunk.len();
        let consumed = chunk.len() + usize::from(done);
        input.consume(consumed);
        if done {
            if total > limit {
                return Ok(Read::TooLarge { bytes: total });
            }
            if frame.last() == Some(&b'\r') {
                frame.pop();
            }
            return Ok(Read::Frame);
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

enum Verdict {
    /// Pass the frame to the library.
    Pass,
    /// Answer the client with this line.
    Reply(String),
    /// Drop it (a notification or response that cannot be passed on).
    Ignore(&'static str),
}

/// Decides what happens to one frame.
fn judge(frame: &[u8], shared: &Shared, config: &GuardConfig) -> Verdict {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let text = frame.strip_prefix(BOM).unwrap_or(frame);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Ignore("empty line");
    }
    let value: Value = match serde_json::from_slice(text) {
        Ok(value) => value,
        Err(error) => {
            return Verdict::Reply(error_reply(
                None,
                code::PARSE_ERROR,
                &format!("parse error: {error}"),
            ));
        }
    };
    let Value::Object(message) = &value else {
        let why = if value.is_array() {
            "batches are not supported: send one JSON-RPC message per line"
        } else {
            "a JSON-RPC message must be a JSON object"
        };
        return Verdict::Reply(error_reply(None, code::INVALID_REQUEST, why));
    };
    let id = message.get("id");
    let method = message.get("method");
    let is_request = method.is_some() && id.is_some();
    let is_notification = method.is_some() && id.is_none();
    // An id the reply can carry: a string or an integer.
    let usable_id = id.filter(|id| id.is_string() || id.is_i64());
    let invalid = |why: String| {
        if is_notification {
            Verdict::Ignore("malformed notification")
        } else {
            Verdict::Reply(error_reply(usable_id, code::INVALID_REQUEST, &why))
        }
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("not a JSON-RPC 2.0 message: \"jsonrpc\" must be \"2.0\"".into());
    }
    if let Some(id) = id
        && usable_id.is_none()
        && !(id.is_null() && method.is_none())
    {
        return invalid(format!(
            "invalid id: a request id must be a string or an integer (got {})",
            json_kind(id)
        ));
    }
    let Some(method) = method else {
        // A response (to a server→client request such as sampling or elicitation).
        if !shared.initialized.load(Ordering::Acquire) {
            return Verdict::Ignore("response before initialize");
        }
        return match serde_json::from_slice::<ClientJsonRpcMessage>(text) {
            Ok(_) if id.is_some() => Verdict::Pass,
            _ => Verdict::Ignore("malformed response"),
        };
    };
    let Some(method) = method.as_str() else {
        return invalid(format!(
            "\"method\" must be a string (got {})",
            json_kind(method)
        ));
    };
    if is_notification {
        if !shared.initialized.load(Ordering::Acquire) {
            return Verdict::Ignore("notification before initialize");
        }
        return match serde_json::from_slice::<ClientJsonRpcMessage>(text) {
            Ok(JsonRpcMessage::Notification(notification)) => {
                if let Some(cancelled) = cancelled_request(&notification.notification) {
                    // The library drops the reply of a cancelled request.
                    shared.answered(&cancelled);
                }
                Verdict::Pass
            }
            _ => Verdict::Ignore("malformed or unknown notification"),
        };
    }
    debug_assert!(is_request);
    let id = usable_id.expect("checked above");
    if !KNOWN_METHODS.contains(&method) {
        return Verdict::Reply(error_reply(
            Some(id),
            code::METHOD_NOT_FOUND,
            &format!("method not found: {}", short(method)),
        ));
    }
    if let Err(why) = check_params(method, message.get("params")) {
        return Verdict::Reply(error_reply(
            Some(id),
            code::INVALID_PARAMS,
            &format!("invalid params for {method}: {why}"),
        ));
    }
    let parsed = match serde_json::from_slice::<ClientJsonRpcMessage>(text) {
        Ok(JsonRpcMessage::Request(request)) => request.request,
        Ok(_) | Err(_) => {
            let why = serde_json::from_slice::<ClientJsonRpcMessage>(text)
                .err()
                .map(|e| short(&e.to_string()))
                .unwrap_or_else(|| "not a request".into());
            return Verdict::Reply(error_reply(
                Some(id),
                code::INVALID_PARAMS,
                &format!("invalid params for {method}: {why}"),
            ));
        }
    };
    if matches!(parsed, ClientRequest::CustomRequest(_)) {
        // A standard method whose parameters did not fit its type.
        return Verdict::Reply(error_reply(
            Some(id),
            code::INVALID_PARAMS,
            &format!("invalid params for {method}: they do not match the method's parameters"),
        ));
    }
    let key = id.to_string();
    {
        let mut in_flight = shared.in_flight.lock().expect("in-flight set");
        if in_flight.contains(&key) {
            return Verdict::Reply(error_reply(
                Some(id),
                code::INVALID_REQUEST,
                &format!(
                    "request id {} is already in use by a request in flight; use a new id",
                    short(&key)
                ),
            ));
        }
        if in_flight.len() >= config.max_in_flight {
            return Verdict::Reply(busy_reply(id, method, in_flight.len()));
        }
        in_flight.insert(key.clone());
    }
    if !shared.initialized.load(Ordering::Acquire) {
        match parsed {
            ClientRequest::InitializeRequest(_) => {
                // The library reads frames in order: whatever follows reaches it after it has
                // handled initialize.
                shared.initialized.store(true, Ordering::Release);
            }
            ClientRequest::PingRequest(_) => {}
            _ => {
                shared.probing.lock().expect("probe set").insert(key);
            }
        }
    }
    Verdict::Pass
}

/// The id of the request a `notifications/cancelled` names, as JSON text.
fn cancelled_request(notification: &rmcp::model::ClientNotification) -> Option<String> {
    match notification {
        rmcp::model::ClientNotification::CancelledNotification(cancelled) => cancelled
            .params
            .request_id
            .as_ref()
            .map(|id| serde_json::to_string(id).unwrap_or_default()),
        _ => None,
    }
}

/// Checks the parameter shapes the library would misread, with a reason a client can act on.
fn check_params(method: &str, params: Option<&Value>) -> Result<(), String> {
    let object = |params: Option<&Value>| -> Result<serde_json::Map<String, Value>, String> {
        match params {
            Some(Value::Object(map)) => Ok(map.clone()),
            None | Some(Value::Null) => Err("params must be an object".into()),
            Some(other) => Err(format!(
                "params must be an object (got {})",
                json_kind(other)
            )),
        }
    };
    let string = |map: &serde_json::Map<String, Value>, key: &str| -> Result<(), String> {
        match map.get(key) {
            Some(Value::String(_)) => Ok(()),
            None => Err(format!("\"{key}\" is missing")),
            Some(other) => Err(format!(
                "\"{key}\" must be a string (got {})",
                json_kind(other)
            )),
        }
    };
    let optional_object = |map: &serde_json::Map<String, Value>, key: &str| match map.get(key) {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(format!(
            "\"{key}\" must be an object (got {})",
            json_kind(other)
        )),
    };
    match method {
        "tools/call" => {
            let map = object(params)?;
            string(&map, "name")?;
            optional_object(&map, "arguments")?;
            optional_object(&map, "_meta")
        }
        "resources/read" => {
            let map = object(params)?;
            string(&map, "uri")?;
            optional_object(&map, "_meta")
        }
        "prompts/get" => {
            let map = object(params)?;
            string(&map, "name")?;
            optional_object(&map, "arguments")?;
            if let Some(Value::Object(arguments)) = map.get("arguments")
                && let Some((name, value)) = arguments.iter().find(|(_, v)| !v.is_string())
            {
                return Err(format!(
                    "prompt argument {} must be a string (got {})",
                    short(name),
                    json_kind(value)
                ));
            }
            Ok(())
        }
        "completion/complete" => {
            let map = object(params)?;
            match map.get("ref") {
                Some(Value::Object(reference)) => string(reference, "type")?,
                None => return Err("\"ref\" is missing".into()),
                Some(other) => {
                    return Err(format!(
                        "\"ref\" must be an object (got {})",
                        json_kind(other)
                    ));
                }
            }
            match map.get("argument") {
                Some(Value::Object(argument)) => {
                    string(argument, "name")?;
                    string(argument, "value")
                }
                None => Err("\"argument\" is missing".into()),
                Some(other) => Err(format!(
                    "\"argument\" must be an object (got {})",
                    json_kind(other)
                )),
            }
        }
        "initialize" => {
            let map = object(params)?;
            string(&map, "protocolVersion")?;
            optional_object(&map, "capabilities")?;
            match map.get("clientInfo") {
                Some(Value::Object(info)) => string(info, "name"),
                None => Err("\"clientInfo\" is missing".into()),
                Some(other) => Err(format!(
                    "\"clientInfo\" must be an object (got {})",
                    json_kind(other)
                )),
            }
        }
        _ => match params {
            None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
            Some(other) => Err(format!(
                "params must be an object (got {})",
                json_kind(other)
            )),
        },
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn error_reply(id: Option<&Value>, code: i64, message: &str) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": { "code": code, "message": message },
    })
    .to_string()
}

/// Busy: a tool call gets a tool error (hosts show it to the model, which can retry), other
/// requests a JSON-RPC error.
fn busy_reply(id: &Value, method: &str, in_flight: usize) -> String {
    let message = format!(
        "server busy: {in_flight} requests are running or queued (the limit; see \
         --max-concurrent-calls); retry in a moment"
    );
    if method == "tools/call" {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": { "content": [{ "type": "text", "text": message }], "isError": true },
        })
        .to_string()
    } else {
        error_reply(Some(id), code::BUSY, &message)
    }
}

/// The top-level `"id"` of a frame from its first bytes, when it shows one (a string or an
/// integer), without parsing the rest.
fn id_from_prefix(prefix: &[u8]) -> Option<Value> {
    let mut depth = 0usize;
    let mut i = 0;
    let mut expect_key = false;
    while i < prefix.len() {
        match prefix[i] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = prefix[i] == b'{';
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => expect_key = depth == 1,
            b'"' => {
                let end = string_end(prefix, i)?;
                if depth == 1 && expect_key && &prefix[i..=end] == b"\"id\"" {
                    let rest = &prefix[end + 1..];
                    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
                    if rest[colon] != b':' {
                        return None;
                    }
                    let value = &rest[colon + 1..];
                    let start = value.iter().position(|b| !b.is_ascii_whitespace())?;
                    let value = &value[start..];
                    let stop = if value.first() == Some(&b'"') {
                        string_end(value, 0)? + 1
                    } else {
                        value
                            .iter()
                            .position(|b| matches!(b, b',' | b'}' | b' ' | b'\t' | b'\r'))?
                    };
                    let id: Value = serde_json::from_slice(&value[..stop]).ok()?;
                    return (id.is_i64() || id.as_str().is_some_and(|s| s.len() <= 256))
                        .then_some(id);
                }
                expect_key = false;
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote that closes the string opening at `start`.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// An outgoing message, as far as the writer needs to read it.
#[derive(Deserialize)]
struct Outgoing {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// Writes the library's lines and the guard's own replies to the client, one whole line at a
/// time, and notes which requests have been answered.
async fn write_loop<O: AsyncWrite + Unpin>(
    from_library: tokio::io::DuplexStream,
    mut own_replies: mpsc::Receiver<String>,
    mut output: O,
    shared: Arc<Shared>,
    stats: Arc<ProtocolStats>,
) {
    let mut library = BufReader::new(from_library);
    let mut line = Vec::new();
    let mut library_open = true;
    let mut own_open = true;
    while library_open || own_open {
        // (line, whether the library wrote it)
        let next: Option<(Vec<u8>, bool)> = tokio::select! {
            read = library.read_until(b'\n', &mut line), if library_open => match read {
                Ok(0) | Err(_) => {
                    library_open = false;
                    None
                }
                Ok(_) => Some((std::mem::take(&mut line), true)),
            },
            reply = own_replies.recv(), if own_open => match reply {
                Some(reply) => {
                    let mut bytes = reply.into_bytes();
                    bytes.push(b'\n');
                    Some((bytes, false))
                }
                None => {
                    own_open = false;
                    None
                }
            },
        };
        let Some((bytes, from_library)) = next else {
            continue;
        };
        stats.wrote_reply(bytes.len().saturating_sub(1));
        let written = async {
            output.write_all(&bytes).await?;
            output.flush().await
        };
        if let Err(error) = written.await {
            tracing::debug!(%error, "stdout closed");
            return;
        }
        // Note the answer after it is written: the drain waits for the bytes, not the intent.
        // Only the library's answers free an id: the guard's own refusal of a frame that
        // reused the id of a running request must leave that request in flight.
        if from_library
            && let Ok(message) = serde_json::from_slice::<Outgoing>(&bytes)
            && message.method.is_none()
            && let Some(id) = message.id.filter(|id| !id.is_null())
        {
            let key = id.to_string();
            let probe = shared.probing.lock().expect("probe set").remove(&key);
            if probe && message.error.is_none() {
                // The library started a session from the request's own metadata.
                shared.initialized.store(true, Ordering::Release);
            }
            shared.answered(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GuardConfig {
        GuardConfig {
            max_request_bytes: 1000,
            max_in_flight: 2,
            drain_timeout: Duration::from_secs(1),
        }
    }

    fn reply(verdict: Verdict) -> Value {
        match verdict {
            Verdict::Reply(line) => serde_json::from_str(&line).unwrap(),
            Verdict::Pass => panic!("passed"),
            Verdict::Ignore(why) => panic!("ignored: {why}"),
        }
    }

    fn initialized() -> Shared {
        let shared = Shared::default();
        shared.initialized.store(true, Ordering::Release);
        shared
    }

    #[test]
    fn malformed_frames_get_the_right_error() {
        let shared = initialized();
        let cases: &[(&[u8], i64, Value)] = &[
            (b"{", -32700, Value::Null),
            (b"\xff\xfe", -32700, Value::Null),
            (br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":"\ud800"}"#, -32700, Value::Null),
            (br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1e99999}"#, -32700, Value::Null),
            (b"[1,2]", -32600, Value::Null),
            (b"42", -32600, Value::Null),
            (br#"{"id":7,"method":"ping"}"#, -32600, json!(7)),
            (br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, -32600, Value::Null),
            (br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, -32600, Value::Null),
            (br#"{"jsonrpc":"2.0","id":3,"method":7}"#, -32600, json!(3)),
            (br#"{"jsonrpc":"2.0","id":"a","method":"nope/nope"}"#, -32601, json!("a")),
            (br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":1}}"#, -32602, json!(4)),
            (br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x","arguments":"y"}}"#, -32602, json!(5)),
            (br#"{"jsonrpc":"2.0","id":6,"method":"resources/read","params":[]}"#, -32602, json!(6)),
            (br#"{"jsonrpc":"2.0","id":8,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":3}}}"#, -32602, json!(8)),
            (br#"{"jsonrpc":"2.0","id":9,"method":"prompts/get","params":{"name":"p","arguments":{"a":1}}}"#, -32602, json!(9)),
        ];
        for (frame, code, id) in cases {
            let reply = reply(judge(frame, &shared, &config()));
            assert_eq!(
                reply["error"]["code"],
                json!(code),
                "{}: {reply}",
                String::from_utf8_lossy(frame)
            );
            assert_eq!(&reply["id"], id, "{reply}");
            assert!(reply.as_object().unwrap().contains_key("id"));
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            reply(judge(deep.as_bytes(), &shared, &config()))["error"]["code"],
            json!(-32700)
        );
    }

    #[test]
    fn an_unknown_method_is_quoted_short() {
        let method = "m".repeat(100_000);
        let frame = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#);
        let line = match judge(frame.as_bytes(), &initialized(), &config()) {
            Verdict::Reply(line) => line,
            _ => panic!(),
        };
        assert!(line.len() < 300, "{line}");
    }

    #[test]
    fn notifications_never_get_a_reply_and_wait_for_initialize() {
        let fresh = Shared::default();
        let initialized_note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(matches!(
            judge(initialized_note, &fresh, &config()),
            Verdict::Ignore(_)
        ));
        let response = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert!(matches!(
            judge(response, &fresh, &config()),
            Verdict::Ignore(_)
        ));
        let initialize = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        assert!(matches!(
            judge(initialize, &fresh, &config()),
            Verdict::Pass
        ));
        assert!(matches!(
            judge(initialized_note, &fresh, &config()),
            Verdict::Pass
        ));
        let bad = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":7}"#;
        assert!(matches!(judge(bad, &fresh, &config()), Verdict::Ignore(_)));
        let no_version = br#"{"method":"notifications/initialized"}"#;
        assert!(matches!(
            judge(no_version, &fresh, &config()),
            Verdict::Ignore(_)
        ));
    }

    #[test]
    fn duplicate_ids_in_flight_and_too_many_requests_are_refused() {
        let shared = initialized();
        let ping = |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        assert!(matches!(
            judge(ping(1).as_bytes(), &shared, &config()),
            Verdict::Pass
        ));
        let again = reply(judge(ping(1).as_bytes(), &shared, &config()));
        assert_eq!(again["error"]["code"], json!(-32600));
        assert!(
            again["error"]["message"]
                .as_str()
                .unwrap()
                .contains("in flight")
        );
        assert!(matches!(
            judge(ping(2).as_bytes(), &shared, &config()),
            Verdict::Pass
        ));
        let busy = reply(judge(ping(3).as_bytes(), &shared, &config()));
        assert_eq!(busy["error"]["code"], json!(-32000));
        let call = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x"}}"#;
        let busy = reply(judge(call, &shared, &config()));
        assert_eq!(busy["result"]["isError"], json!(true));
        // An answer frees the id.
        shared.answered("1");
        assert!(matches!(
            judge(ping(1).as_bytes(), &shared, &config()),
            Verdict::Pass
        ));
    }

    #[test]
    fn the_id_of_an_oversized_frame_is_read_from_its_start() {
        assert_eq!(
            id_from_prefix(br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"na"#),
            Some(json!(42))
        );
        assert_eq!(
            id_from_prefix(br#"{"jsonrpc":"2.0","method":"x","id":"abc","params":"#),
            Some(json!("abc"))
        );
        // An "id" inside params is not the request's.
        assert_eq!(
            id_from_prefix(br#"{"jsonrpc":"2.0","params":{"id":9,"x":"xxxxxxxx"#),
            None
        );
        assert_eq!(id_from_prefix(br#"{"jsonrpc":"2.0","id":"#), None);
    }

    #[tokio::test]
    async fn frames_are_read_within_the_limit() {
        let big = format!("{}\n{{\"ok\":1}}\r\nlast", "x".repeat(5000));
        let mut input = BufReader::with_capacity(64, big.as_bytes());
        let mut frame = Vec::new();
        assert!(matches!(
            read_frame(&mut input, 1000, &mut frame).await.unwrap(),
            Read::TooLarge { bytes: 5000 }
        ));
        assert!(frame.len() <= PREFIX_KEPT);
        assert!(matches!(
            read_frame(&mut input, 1000, &mut frame).await.unwrap(),
            Read::Frame
        ));
        assert_eq!(frame, b"{\"ok\":1}");
        assert!(matches!(
            read_frame(&mut input, 1000, &mut frame).await.unwrap(),
            Read::Frame
        ));
        assert_eq!(frame, b"last");
        assert!(matches!(
            read_frame(&mut input, 1000, &mut frame).await.unwrap(),
            Read::End
        ));
    }
}

/// Property tests of the frame judgement (issue 12): for any bytes and any JSON value, `judge`
/// returns, a request (a string or integer id and a method) is passed on or answered with its
/// id, anything unparseable or not a request object is answered with `"id": null`, and a
/// notification never gets a reply. And `id_from_prefix` (the id of an oversized frame) never
/// names an id the frame does not have.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn config() -> GuardConfig {
        GuardConfig {
            max_request_bytes: 1 << 20,
            max_in_flight: 8,
            drain_timeout: Duration::from_secs(1),
        }
    }

    fn shared(initialized: bool) -> Shared {
        let shared = Shared::default();
        shared.initialized.store(initialized, Ordering::Release);
        shared
    }

    /// The verdict on `frame` is what JSON-RPC 2.0 asks for.
    fn judged_as_the_specification_says(
        frame: &[u8],
        initialized: bool,
    ) -> Result<(), TestCaseError> {
        let shared = shared(initialized);
        let verdict = judge(frame, &shared, &config());
        let reply = match &verdict {
            Verdict::Reply(line) => {
                let reply: Value = serde_json::from_str(line)
                    .map_err(|e| TestCaseError::fail(format!("a reply that is not JSON: {e}")))?;
                prop_assert_eq!(&reply["jsonrpc"], "2.0", "{}", line);
                prop_assert!(
                    reply.as_object().is_some_and(|r| r.contains_key("id")),
                    "{}",
                    line
                );
                let error =
                    reply["error"]["code"].is_i64() && reply["error"]["message"].is_string();
                let busy_tool = reply["result"]["isError"] == true;
                prop_assert!(error != busy_tool, "{}", line);
                Some(reply)
            }
            Verdict::Pass | Verdict::Ignore(_) => None,
        };
        let text = frame.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(frame);
        if text.iter().all(u8::is_ascii_whitespace) {
            prop_assert!(matches!(verdict, Verdict::Ignore(_)));
            return Ok(());
        }
        let Ok(value) = serde_json::from_slice::<Value>(text) else {
            let reply = reply.ok_or_else(|| TestCaseError::fail("unparseable, no reply"))?;
            prop_assert_eq!(&reply["id"], &Value::Null);
            prop_assert_eq!(&reply["error"]["code"], &json!(code::PARSE_ERROR));
            return Ok(());
        };
        let Value::Object(message) = &value else {
            let reply = reply.ok_or_else(|| TestCaseError::fail("not an object, no reply"))?;
            prop_assert_eq!(&reply["id"], &Value::Null);
            prop_assert_eq!(&reply["error"]["code"], &json!(code::INVALID_REQUEST));
            return Ok(());
        };
        match (message.get("method"), message.get("id")) {
            (Some(_), None) => prop_assert!(reply.is_none(), "a notification was answered"),
            (Some(_), Some(id)) if id.is_string() || id.is_i64() => match &reply {
                Some(reply) => prop_assert_eq!(&reply["id"], id),
                None => {
                    prop_assert!(matches!(verdict, Verdict::Pass), "a request was dropped");
                    // Passed on: the same id again while it is in flight is refused, with it.
                    let again = match judge(frame, &shared, &config()) {
                        Verdict::Reply(line) => serde_json::from_str::<Value>(&line).unwrap(),
                        _ => return Err(TestCaseError::fail("a duplicate id in flight passed")),
                    };
                    prop_assert_eq!(&again["id"], id);
                    prop_assert_eq!(&again["error"]["code"], &json!(code::INVALID_REQUEST));
                }
            },
            (Some(_), Some(_)) => {
                let reply = reply.ok_or_else(|| TestCaseError::fail("a bad id, no reply"))?;
                prop_assert_eq!(&reply["id"], &Value::Null);
            }
            // A response, or an object that is neither: no reply, or one with its id or null.
            (None, id) => {
                if let Some(reply) = &reply {
                    prop_assert!(reply["id"].is_null() || Some(&reply["id"]) == id);
                }
            }
        }
        Ok(())
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => ".{0,12}",
            1 => Just(String::new()),
            1 => "[\u{0}-\u{1f}\u{202e}\u{feff}\u{10ffff}\"\\\\]{1,6}",
            1 => Just("x".repeat(300)),
        ]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Just(json!(-0.0)),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..5)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    const NOTIFICATIONS: &[&str] = &[
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
    ];

    /// Params shaped like the methods' own, with any values in them.
    fn params() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            Just("name"),
            Just("uri"),
            Just("arguments"),
            Just("ref"),
            Just("argument"),
            Just("value"),
            Just("type"),
            Just("requestId"),
            Just("protocolVersion"),
            Just("capabilities"),
            Just("clientInfo"),
            Just("cursor"),
            Just("_meta"),
            Just("level"),
        ];
        let nested =
            prop::collection::btree_map(field.clone(), json_value(), 0..4).prop_map(|map| {
                Value::Object(map.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            });
        let value = prop_oneof![json_value(), nested];
        prop::collection::btree_map(field, value, 0..5).prop_map(|map| {
            Value::Object(map.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        })
    }

    /// A well-formed request of a method the server serves, with values of any kind where the
    /// method's parameters leave them open.
    fn request() -> impl Strategy<Value = Value> {
        let id = prop_oneof![
            any::<i64>().prop_map(Value::from),
            text().prop_map(Value::String)
        ];
        let strings = prop::collection::btree_map(text(), text(), 0..3);
        let body = prop_oneof![
            Just(json!({"method": "ping"})),
            Just(json!({"method": "tools/list"})),
            (text(), prop::collection::btree_map(text(), json_value(), 0..4)).prop_map(
                |(name, arguments)| json!({"method": "tools/call", "params": {"name": name, "arguments": arguments}})
            ),
            text().prop_map(|uri| json!({"method": "resources/read", "params": {"uri": uri}})),
            (text(), strings).prop_map(
                |(name, arguments)| json!({"method": "prompts/get", "params": {"name": name, "arguments": arguments}})
            ),
            (text(), text(), text()).prop_map(|(name, argument, value)| json!({
                "method": "completion/complete",
                "params": {"ref": {"type": "ref/prompt", "name": name}, "argument": {"name": argument, "value": value}},
            })),
        ];
        (id, body).prop_map(|(id, mut body)| {
            body["jsonrpc"] = json!("2.0");
            body["id"] = id;
            body
        })
    }

    /// A message built from JSON-RPC's members, each present or not, right or wrong; or a
    /// well-formed request.
    fn message() -> impl Strategy<Value = Value> {
        prop_oneof![3 => loose_message(), 1 => request()]
    }

    fn loose_message() -> impl Strategy<Value = Value> {
        let version = prop_oneof![8 => Just(json!("2.0")), 1 => json_value()];
        let id = prop_oneof![
            3 => any::<i64>().prop_map(Value::from),
            2 => text().prop_map(Value::String),
            1 => json_value(),
        ];
        let method = prop_oneof![
            6 => prop::sample::select(KNOWN_METHODS).prop_map(Value::from),
            2 => prop::sample::select(NOTIFICATIONS).prop_map(Value::from),
            1 => text().prop_map(Value::String),
            1 => json_value(),
        ];
        let params = prop_oneof![3 => params(), 1 => json_value()];
        let extra = prop::collection::btree_map(text(), json_value(), 0..2);
        (
            prop::option::weighted(0.9, version),
            prop::option::weighted(0.8, id),
            prop::option::weighted(0.85, method),
            prop::option::weighted(0.7, params),
            prop::option::weighted(0.1, json_value()),
            extra,
        )
            .prop_map(|(version, id, method, params, result, extra)| {
                let mut message: serde_json::Map<String, Value> = extra.into_iter().collect();
                for (key, value) in [
                    ("jsonrpc", version),
                    ("id", id),
                    ("method", method),
                    ("params", params),
                    ("result", result),
                ] {
                    if let Some(value) = value {
                        message.insert(key.into(), value);
                    }
                }
                Value::Object(message)
            })
    }

    /// A serialised message, then damaged or not: cut, a byte changed or added, a BOM, a CR.
    fn frame() -> impl Strategy<Value = Vec<u8>> {
        (message(), any::<prop::sample::Index>(), any::<u8>(), 0..8u8).prop_map(
            |(message, at, byte, damage)| {
                let mut frame = serde_json::to_vec(&message).unwrap();
                let at = at.index(frame.len() + 1);
                match damage {
                    0 => frame.truncate(at),
                    1 => frame.insert(at, byte),
                    2 if at < frame.len() => frame[at] = byte,
                    3 => {
                        frame.splice(0..0, *b"\xEF\xBB\xBF");
                    }
                    4 => frame.push(b'\r'),
                    _ => {}
                }
                frame
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_bytes_are_judged_as_the_specification_says(
            frame in prop::collection::vec(any::<u8>(), 0..200),
            initialized in any::<bool>(),
        ) {
            judged_as_the_specification_says(&frame, initialized)?;
        }

        #[test]
        fn any_json_value_is_judged_as_the_specification_says(
            value in json_value(),
            initialized in any::<bool>(),
        ) {
            judged_as_the_specification_says(&serde_json::to_vec(&value).unwrap(), initialized)?;
        }

        #[test]
        fn any_message_whole_or_damaged_is_judged_as_the_specification_says(
            frame in frame(),
            initialized in any::<bool>(),
        ) {
            judged_as_the_specification_says(&frame, initialized)?;
        }

        #[test]
        fn the_id_read_from_any_start_of_a_frame_is_its_id_or_none(
            message in message(),
            cut in any::<prop::sample::Index>(),
        ) {
            let frame = serde_json::to_vec(&message).unwrap();
            let start = &frame[..cut.index(frame.len() + 1)];
            if let Some(id) = id_from_prefix(start) {
                prop_assert_eq!(Some(&id), message.get("id"), "{}", String::from_utf8_lossy(start));
            }
        }
    }
}
