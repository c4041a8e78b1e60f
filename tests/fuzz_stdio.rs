//! Structure-aware JSON-RPC fuzzing of the real binary over stdio (issue 12).
//!
//! Thousands of frames, each made from a valid template of a method the server serves (every
//! tool with plausible and hostile arguments, every resource form, every prompt, completion,
//! notifications, responses) and then mutated: wrong types anywhere, missing and extra fields,
//! ids of every JSON type and duplicated ids (also a refused frame and then a valid one that
//! reuse the id of a request still running), huge strings, 1–2 MB frames around
//! `--max-request-bytes`, deep nesting, numbers out of range, lone surrogates and other
//! unicode, bad UTF-8, a BOM, CR/LF variants, truncation, batches and empty lines. A reader
//! task takes every reply meanwhile. At the end: every request that needs a reply got exactly
//! one with its id (a cancelled one at most one), within 30 s; `"id": null` only for frames
//! without a usable id; every stdout line is JSON; no panic on stderr; the process alive and
//! answering, and its peak RSS under a bound. Every 500 frames, pings sent while heavy searches
//! run are answered in under 100 ms.
//!
//! The seed is printed; `SRE_MCP_FUZZ_SEED=N` replays a run, `SRE_MCP_FUZZ_FRAMES=N` sets its
//! length (default 20,000, about 25 s in a debug build on 2 cores; at most 4 minutes of
//! frames are sent, then the checks run) and `SRE_MCP_FUZZ_DUMP=FILE` writes every frame sent to
//! FILE as well.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Notify;

/// The server's default `--max-request-bytes`.
const LIMIT: usize = 1024 * 1024;
const DEFAULT_SEED: u64 = 12;
const DEFAULT_FRAMES: usize = 20_000;
/// Frames stop being sent after this long (a slower machine runs fewer); the checks follow.
const FUZZ_BUDGET: Duration = Duration::from_secs(240);
/// Requests owed a reply that may be outstanding before the writer waits.
const WINDOW: usize = 16;
/// A ping probe (heavy searches in flight, then pings) every this many frames.
const PROBE_EVERY: usize = 500;
/// Heavy searches in flight during a probe: one per core of the 2-core CI machine.
const HOSTILE_AT_ONCE: usize = 2;
const PINGS_PER_PROBE: usize = 3;
const PING_BOUND: Duration = Duration::from_millis(100);
const RSS_BOUND_MB: f64 = 300.0;
/// Longest a request may wait for its reply, queueing included (a debug build on 2 cores; the
/// server stops a call at its 60 s deadline).
const REPLY_BOUND: Duration = Duration::from_secs(30);
/// How long the writer waits for owed replies while none arrives, before it goes on without
/// them: one that never comes fails the count at the end, a late one the reply bound.
const STALL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A deterministic PRNG (SplitMix64): the same seed makes the same frames.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// What the demo cluster holds, read at the start, for plausible arguments.

#[derive(Default, Debug)]
struct World {
    namespaces: Vec<String>,
    pods: Vec<(String, String)>,
    services: Vec<String>,
    trace_ids: Vec<String>,
    runbooks: Vec<String>,
    result_ids: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The generator.

const TOOLS: &[&str] = &[
    "check_service_health",
    "list_namespaces",
    "list_pods",
    "describe_pod",
    "get_pod_logs",
    "get_events",
    "list_deployments",
    "get_recent_deploys",
    "search_logs",
    "count_errors",
    "trace_transaction",
    "search_runbooks",
    "troubleshoot_issue",
];

const PROMPTS: &[&str] = &[
    "investigate-service",
    "pre-deploy-check",
    "daily-health-report",
    "trace-transaction",
    "troubleshoot-issue",
];

/// Other methods the library knows, sent now and then.
const OTHER_METHODS: &[&str] = &[
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "server/discover",
    "tasks/get",
    "tasks/cancel",
    "tasks/update",
    "skills/list",
    "skills/get",
    "resources/directory/read",
];

const UNICODE: &[&str] = &[
    "\u{202E}gnp.exe",
    "\u{0}",
    "a\u{0}b",
    "🔥💥🧨",
    "👩‍👩‍👧‍👦",
    "ℌ𝔢𝔩𝔩𝔬",
    "\u{200B}\u{200D}\u{FEFF}",
    "\u{FFFF}\u{FFFE}",
    "e\u{301}\u{301}\u{301}\u{301}",
    "\u{7}\u{1b}[31mred\u{1b}[0m",
    "שלום עולם",
    "مرحبا",
    "\u{10FFFF}",
    "payment\u{2010}gateway",
    "ＰＡＹＭＥＮＴＳ",
];

/// Raw JSON text for values `serde_json::Value` cannot hold (numbers out of range, lone
/// surrogates) and for things that are not JSON at all.
const RAW_VALUES: &[&str] = &[
    "1e99999",
    "-1e99999",
    "-0",
    "-0.0",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1E400",
    "1e-400",
    "0.0000000000000000000000000000000000000000001",
    "\"\\ud800\"",
    "\"a\\udc00b\"",
    "\"\\ud83d\"",
    "\"\\ud83d\\ude00\"",
    "\"\\u0000\"",
    "\"\\uDBFF\\uDFFF\"",
    "\"\\x41\"",
    "\"\\u12\"",
    "NaN",
    "Infinity",
    "undefined",
    "01",
    "+1",
    ".5",
    "0x10",
    "'single'",
];

const HOSTILE_TEXT: &[&str] = &[
    "",
    " ",
    "../../../../etc/passwd",
    "payments\\..\\..",
    "(a+)+$",
    "((((((((((a*)*)*)*)*)*)*)*)*)*)",
    "(a|b|c|d|e|f)*x.*y.*z",
    "[",
    "\\",
    "(?i)",
    "a{1000000}",
    "(?P<n>x)(?P=n)",
    ".*.*.*.*.*.*.*.*.*.*",
    "a in (b,c),d!=e,!f",
    "===",
    "app=",
    "app=web,,tier",
    "-5m",
    "99999999999999h",
    "1e9s",
    "2026-13-45T25:61:61Z",
    "WARN",
    "warning",
    "unhealthy",
    "CrashLoopBackOff",
    "Pod/",
    "Deployment/payment-gateway",
    "%00%2e%2e",
    "${jndi:ldap://x}",
    "'; DROP TABLE pods; --",
    "<script>alert(1)</script>",
    "payments/payment-gateway/extra",
    "/",
    "kube-system",
];

const BLANK_LINES: &[&[u8]] = &[
    b"",
    b" ",
    b"\t",
    b"\r",
    b"\xEF\xBB\xBF",
    b"\r\r",
    b"\n",
    b" \n \n",
];

const BAD_BYTES: &[&[u8]] = &[
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xc3",
    b"\x80",
    b"\xf4\x90\x80\x80",
    b"\x00",
];

const PADDING: &[&[u8]] = &[b" ", b"\t\t", b" \r ", b"\x0c", b"\x0b"];

/// Text standing for a value in a template, replaced by raw text after serialisation.
fn placeholder(index: usize) -> String {
    format!("\u{1}RAW{index}\u{1}")
}

struct Gen<'w> {
    rng: Rng,
    world: &'w World,
    next_id: u64,
    /// Ids of recent requests, for duplicates and cancellations.
    recent: Vec<Value>,
    /// Raw texts for the placeholders of the frame being built.
    raws: Vec<String>,
}

impl Gen<'_> {
    fn new(seed: u64, world: &World) -> Gen<'_> {
        Gen {
            rng: Rng(seed),
            world,
            next_id: 0,
            recent: Vec::new(),
            raws: Vec::new(),
        }
    }

    fn raw(&mut self, text: String) -> Value {
        self.raws.push(text);
        Value::String(placeholder(self.raws.len() - 1))
    }

    fn fresh_id(&mut self) -> Value {
        self.next_id += 1;
        let n = self.next_id;
        let id = match self.rng.below(10) {
            0..=5 => json!(n),
            6 => json!(format!("f-{n}")),
            7 => json!(format!("ид-{n}-🔥")),
            8 => json!(-(n as i64)),
            // A string that reads like an integer: the reply must keep it a string.
            _ => json!(n.to_string()),
        };
        if self.recent.len() >= 64 {
            self.recent.remove(0);
        }
        self.recent.push(id.clone());
        id
    }

    fn recent_id(&mut self) -> Value {
        if self.recent.is_empty() {
            return json!(1);
        }
        // Mostly one of the last few, likely still in flight.
        let span = if self.rng.chance(70) { 4 } else { 64 };
        let back = self.rng.below(self.recent.len().min(span));
        self.recent[self.recent.len() - 1 - back].clone()
    }

    fn huge(&mut self, max: usize) -> String {
        let len = self.rng.range(1_000, max);
        let unit = *self
            .rng
            .pick(&["x", "ab", "é", "🔥", "\u{202E}", "\\", "\"", " ", "a\u{0}"]);
        let mut text = unit.repeat(len / unit.len());
        if self.rng.chance(30) {
            let middle = text
                .char_indices()
                .nth(text.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            text.insert_str(middle, "payment-gateway OOMKilled");
        }
        text
    }

    fn hostile_string(&mut self) -> Value {
        match self.rng.below(10) {
            0..=4 => json!(*self.rng.pick(HOSTILE_TEXT)),
            5..=6 => json!(*self.rng.pick(UNICODE)),
            7 => {
                let max = if self.rng.chance(20) { 200_000 } else { 20_000 };
                json!(self.huge(max))
            }
            8 => {
                let raw = self.rng.pick(&RAW_VALUES[10..18]).to_string();
                self.raw(raw)
            }
            _ => {
                let name = self.plausible_name();
                json!(format!("{name}{}", self.rng.pick(UNICODE)))
            }
        }
    }

    /// A value of any type, often the wrong one for where it lands.
    fn hostile_value(&mut self) -> Value {
        match self.rng.below(16) {
            0 => Value::Null,
            1 => json!(self.rng.chance(50)),
            2 => json!(
                *self
                    .rng
                    .pick(&[0i64, -1, 1, i64::MAX, i64::MIN, 499, 500, 25_001])
            ),
            3 => json!(u64::MAX),
            4 => json!(*self.rng.pick(&[1.5f64, -0.0, 1e308, -1e-308, 0.1])),
            5..=8 => self.hostile_string(),
            9 => json!([]),
            10 => json!([1, "a", null, {"b": [true]}]),
            11 => json!({}),
            12 => json!({"name": "check_service_health", "arguments": {"service": 1}}),
            13 => {
                let raw = self.rng.pick(RAW_VALUES).to_string();
                self.raw(raw)
            }
            14 => {
                let depth = *self
                    .rng
                    .pick(&[10usize, 64, 100, 126, 127, 128, 129, 500, 5000]);
                let arrays = self.rng.chance(50);
                self.raw(nested_text(depth, arrays))
            }
            _ => json!(self.plausible_name()),
        }
    }

    fn plausible_name(&mut self) -> String {
        let world = self.world;
        match self.rng.below(4) {
            0 if !world.namespaces.is_empty() => self.rng.pick(&world.namespaces).clone(),
            1 if !world.pods.is_empty() => self.rng.pick(&world.pods).1.clone(),
            2 if !world.services.is_empty() => self.rng.pick(&world.services).clone(),
            _ => "payment-gateway".into(),
        }
    }

    fn namespace(&mut self) -> Value {
        let world = self.world;
        if self.rng.chance(85) && !world.namespaces.is_empty() {
            json!(self.rng.pick(&world.namespaces))
        } else {
            self.hostile_string()
        }
    }

    fn service(&mut self) -> Value {
        let world = self.world;
        if self.rng.chance(85) && !world.services.is_empty() {
            let service = self.rng.pick(&world.services).clone();
            if self.rng.chance(20) && !world.pods.is_empty() {
                // namespace/name, not always the right namespace.
                let namespace = self.rng.pick(&world.pods).0.clone();
                return json!(format!("{namespace}/{service}"));
            }
            json!(service)
        } else {
            self.hostile_string()
        }
    }

    fn pod(&mut self) -> (Value, Value) {
        let world = self.world;
        if self.rng.chance(85) && !world.pods.is_empty() {
            let (namespace, pod) = self.rng.pick(&world.pods).clone();
            (json!(namespace), json!(pod))
        } else {
            (self.namespace(), self.hostile_string())
        }
    }

    fn trace_id(&mut self) -> Value {
        let world = self.world;
        match self.rng.below(10) {
            0..=6 if !world.trace_ids.is_empty() => json!(self.rng.pick(&world.trace_ids)),
            7 => json!("0123456789abcdef0123456789abcdef"),
            8 => json!("ZZZZ"),
            _ => self.hostile_string(),
        }
    }

    fn text(&mut self, plausible: &[&str]) -> Value {
        if self.rng.chance(80) {
            json!(*self.rng.pick(plausible))
        } else {
            self.hostile_string()
        }
    }

    fn int(&mut self, plausible: &[i64]) -> Value {
        match self.rng.below(10) {
            0..=6 => json!(*self.rng.pick(plausible)),
            7 => json!(*self.rng.pick(&[0i64, -1, i64::MAX, i64::MIN])),
            8 => json!(*self.rng.pick(&[1.5f64, 1e300])),
            _ => self.hostile_value(),
        }
    }

    /// A tool's arguments, mostly plausible, sometimes hostile; each optional one half the
    /// time.
    fn tool_arguments(&mut self, tool: &str) -> Value {
        let mut a = serde_json::Map::new();
        let mut maybe = |g: &mut Self, key: &str, value: Value| {
            if g.rng.chance(50) {
                a.insert(key.into(), value);
            }
        };
        match tool {
            "check_service_health" => {
                let v = self.service();
                maybe(self, "service", v);
            }
            "list_pods" => {
                let v = self.namespace();
                maybe(self, "namespace", v);
                let v = self.text(&[
                    "unhealthy",
                    "Running",
                    "CrashLoopBackOff",
                    "Pending",
                    "OOMKilled",
                ]);
                maybe(self, "status", v);
                let v = self.text(&[
                    "app=payment-gateway",
                    "tier!=db",
                    "app in (web,api)",
                    "!canary",
                ]);
                maybe(self, "label_selector", v);
            }
            "describe_pod" | "get_pod_logs" => {
                let (namespace, pod) = self.pod();
                maybe(self, "namespace", namespace);
                maybe(self, "pod", pod);
                if tool == "get_pod_logs" {
                    let v = self.text(&["app", "sidecar", "istio-proxy"]);
                    maybe(self, "container", v);
                    let v = self.int(&[1, 10, 100, 1000, 50_000]);
                    maybe(self, "tail_lines", v);
                    let v = self.text(&["5m", "1h", "24h", "2020-01-01T00:00:00Z"]);
                    maybe(self, "since", v);
                    let v = self.text(&["error", "warn", "info", "debug", "fatal"]);
                    maybe(self, "level", v);
                    let v = self.text(&["timeout", "OutOfMemory", "(?i)error|warn", "^\\d+"]);
                    maybe(self, "grep", v);
                    let v = if self.rng.chance(80) {
                        json!(self.rng.chance(50))
                    } else {
                        self.hostile_value()
                    };
                    maybe(self, "previous", v);
                }
            }
            "get_events" => {
                let v = self.namespace();
                maybe(self, "namespace", v);
                let v = self.text(&["Warning", "Normal"]);
                maybe(self, "type", v);
                let v = self.text(&[
                    "Pod/payment-gateway",
                    "payment-gateway",
                    "Deployment/search-indexer",
                ]);
                maybe(self, "object", v);
            }
            "list_deployments" => {
                let v = self.namespace();
                maybe(self, "namespace", v);
            }
            "get_recent_deploys" => {
                let v = self.service();
                maybe(self, "service", v);
                let v = self.int(&[1, 24, 168, 2160, 2161]);
                maybe(self, "hours_back", v);
            }
            "search_logs" => {
                let v = self.service();
                maybe(self, "service", v);
                let v = self.namespace();
                maybe(self, "namespace", v);
                let v = self.text(&["error", "warn", "info"]);
                maybe(self, "level", v);
                let v = self.text(&["timeout", "HikariPool", "GET /api", "(?i)refused|reset"]);
                maybe(self, "pattern", v);
                let v = self.trace_id();
                maybe(self, "trace_id", v);
                let v = self.text(&["15m", "1h", "7d"]);
                maybe(self, "since", v);
                let v = self.int(&[1, 5, 20, 50, 200]);
                maybe(self, "limit", v);
            }
            "count_errors" => {
                let v = self.text(&["service", "message", "pod"]);
                maybe(self, "group_by", v);
                let v = self.text(&["1h", "15m", "24h"]);
                maybe(self, "since", v);
                let v = self.namespace();
                maybe(self, "namespace", v);
            }
            "trace_transaction" => {
                let v = self.trace_id();
                maybe(self, "trace_id", v);
                maybe(self, "trace_id", json!("0af7651916cd43dd8448eb211c80319c"));
            }
            "search_runbooks" => {
                let v = self.text(&[
                    "OOMKilled",
                    "connection pool exhausted",
                    "ImagePullBackOff",
                    "pending pods insufficient memory",
                ]);
                maybe(self, "query", v);
                let v = self.int(&[1, 3, 5, 20, 21]);
                maybe(self, "limit", v);
                let v = self.text(&["payments", "platform", "nobody"]);
                maybe(self, "team", v);
                let v = if self.rng.chance(70) {
                    json!(["memory", "kubernetes"])
                } else {
                    self.hostile_value()
                };
                maybe(self, "tags", v);
            }
            "troubleshoot_issue" => {
                let v = self.text(&[
                    "checkout is slow",
                    "payments are failing with 502",
                    "pods keep restarting",
                    "everything is down",
                ]);
                maybe(self, "description", v);
                if self.rng.chance(30) {
                    let v = self.service();
                    maybe(self, "service", v);
                }
                if self.rng.chance(20) {
                    let v = self.namespace();
                    maybe(self, "namespace", v);
                }
            }
            _ => {}
        }
        if self.rng.chance(15) {
            let v = self.int(&[500, 1000, 2000, 25_000, 25_001, 1_000_000]);
            maybe(self, "max_tokens", v);
        }
        if self.rng.chance(5) {
            let v = self.text(&["default", "nonexistent", "prod-eu"]);
            maybe(self, "context", v);
        }
        Value::Object(a)
    }

    fn tool_call(&mut self) -> Value {
        let tool = if self.rng.chance(4) {
            self.rng
                .pick(&[
                    "rm_rf",
                    "",
                    "Check_Service_Health",
                    "list_pods ",
                    "tools/call",
                ])
                .to_string()
        } else {
            self.rng.pick(TOOLS).to_string()
        };
        let arguments = self.tool_arguments(&tool);
        let mut params = json!({"name": tool, "arguments": arguments});
        if self.rng.chance(10) {
            params["_meta"] = json!({"progressToken": self.rng.next() % 1000});
        }
        params
    }

    fn resource_uri(&mut self) -> Value {
        let world = self.world;
        let result = if world.result_ids.is_empty() {
            "none".to_string()
        } else {
            self.rng.pick(&world.result_ids).clone()
        };
        let page = *self.rng.pick(&[
            "1",
            "2",
            "0",
            "-1",
            "999999",
            "18446744073709551616",
            "abc",
            "1&page=2",
            "",
            "1.5",
            "%31",
        ]);
        let uri = match self.rng.below(14) {
            0 => "system://health".to_string(),
            1 => "budget://usage".to_string(),
            2 => "deployment://history".to_string(),
            3 => {
                let service = match self.service() {
                    // A placeholder for raw text cannot sit inside a longer string.
                    Value::String(s) if !s.contains('\u{1}') => s,
                    _ => "payments/payment-gateway".into(),
                };
                format!("deployment://history/{service}")
            }
            4 if !world.runbooks.is_empty() => self.rng.pick(&world.runbooks).clone(),
            5 => format!("result://{result}"),
            6 | 7 => format!("result://{result}?page={page}"),
            8 => format!("result://x?page={page}"),
            9 => self
                .rng
                .pick(&[
                    "runbook://%ZZ",
                    "runbook://%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                    "runbook://",
                    "result://",
                    "deployment://history/",
                ])
                .to_string(),
            10 => self
                .rng
                .pick(&[
                    "file:///etc/passwd",
                    "",
                    "http://127.0.0.1:1/",
                    "system://",
                    "SYSTEM://HEALTH",
                    "data:,x",
                ])
                .to_string(),
            11 => format!("runbook://{}", self.huge(5_000)),
            12 => format!("result://{result}?page={}", self.rng.pick(UNICODE)),
            _ => return self.hostile_string(),
        };
        json!(uri)
    }

    fn prompt_params(&mut self) -> Value {
        let name = if self.rng.chance(8) {
            self.hostile_string()
        } else {
            json!(*self.rng.pick(PROMPTS))
        };
        let mut arguments = serde_json::Map::new();
        for key in [
            "service",
            "symptoms",
            "namespace",
            "trace_id",
            "description",
        ] {
            if self.rng.chance(40) {
                let value = match key {
                    "service" => self.service(),
                    "namespace" => self.namespace(),
                    "trace_id" => self.trace_id(),
                    _ => self.hostile_string(),
                };
                arguments.insert(key.into(), value);
            }
        }
        if self.rng.chance(20) {
            json!({"name": name})
        } else {
            json!({"name": name, "arguments": arguments})
        }
    }

    fn completion_params(&mut self) -> Value {
        let value = if self.rng.chance(80) {
            let name = self.plausible_name();
            let cut = self.rng.below(name.len().min(6) + 1);
            json!(name.get(..cut).unwrap_or(""))
        } else {
            self.hostile_string()
        };
        let argument = *self.rng.pick(&["service", "namespace", "trace_id", "nope"]);
        let reference = if self.rng.chance(60) {
            json!({"type": "ref/prompt", "name": *self.rng.pick(PROMPTS)})
        } else {
            let uri = *self.rng.pick(&[
                "deployment://history/{service}",
                "runbook://{id}",
                "result://{id}",
                "nope://{x}",
            ]);
            json!({"type": "ref/resource", "uri": uri})
        };
        let mut params = json!({"ref": reference, "argument": {"name": argument, "value": value}});
        if self.rng.chance(20) {
            params["context"] = json!({"arguments": {"namespace": "payments"}});
        }
        params
    }

    /// A request's method and params.
    fn request_body(&mut self) -> (String, Option<Value>) {
        match self.rng.below(100) {
            0..=9 => ("ping".into(), None),
            10..=14 => ("tools/list".into(), None),
            15..=49 => ("tools/call".into(), Some(self.tool_call())),
            50..=53 => ("resources/list".into(), None),
            54..=56 => ("resources/templates/list".into(), None),
            57..=69 => {
                let uri = self.resource_uri();
                ("resources/read".into(), Some(json!({"uri": uri})))
            }
            70..=72 => ("prompts/list".into(), None),
            73..=80 => ("prompts/get".into(), Some(self.prompt_params())),
            81..=88 => ("completion/complete".into(), Some(self.completion_params())),
            89..=91 => {
                let method = self.rng.pick(OTHER_METHODS).to_string();
                let params = match method.as_str() {
                    "logging/setLevel" => {
                        let level =
                            *self
                                .rng
                                .pick(&["error", "warning", "debug", "emergency", "bogus"]);
                        json!({"level": level})
                    }
                    "resources/subscribe" | "resources/unsubscribe" => {
                        json!({"uri": "system://health"})
                    }
                    _ => json!({}),
                };
                (method, Some(params))
            }
            92 => {
                let version =
                    *self
                        .rng
                        .pick(&["2025-06-18", "2024-11-05", "1999-01-01", "2026-07-28"]);
                let params = json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "fuzz-again", "version": "2"}});
                ("initialize".into(), Some(params))
            }
            93..=95 => {
                let method = *self.rng.pick(&[
                    "tools/destroy",
                    "",
                    "PING",
                    "ping ",
                    "rpc.discover",
                    "$/cancelRequest",
                    "notifications/initialized",
                ]);
                (method.into(), None)
            }
            96 => (self.huge(20_000), None),
            _ => {
                let method = *self
                    .rng
                    .pick(&["tools/list", "resources/list", "prompts/list"]);
                let cursor = *self
                    .rng
                    .pick(&["", "abc", "999999", "\u{0}", "eyJvZmZzZXQiOjF9"]);
                (method.into(), Some(json!({"cursor": cursor})))
            }
        }
    }

    fn notification(&mut self) -> Value {
        match self.rng.below(10) {
            0..=1 => json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            2..=5 => {
                let request_id = if self.rng.chance(80) {
                    self.recent_id()
                } else {
                    self.hostile_value()
                };
                json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id, "reason": "fuzz"}})
            }
            6 => {
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 0.5}})
            }
            7 => json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}),
            8 => {
                json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "hi"}})
            }
            _ => {
                let method = *self.rng.pick(&[
                    "notifications/nonsense",
                    "",
                    "$/progress",
                    "notifications/cancelled",
                ]);
                json!({"jsonrpc": "2.0", "method": method})
            }
        }
    }

    /// A client's response (to a request the server never sent).
    fn response(&mut self) -> Value {
        let id = if self.rng.chance(60) {
            self.recent_id()
        } else {
            json!(self.rng.next() % 100)
        };
        match self.rng.below(4) {
            0 => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            1 => json!({"jsonrpc": "2.0", "id": id, "result": {"roots": []}}),
            2 => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
            _ => {
                json!({"jsonrpc": "2.0", "id": id, "result": {"model": "x", "role": "assistant", "content": {"type": "text", "text": "hi"}}})
            }
        }
    }

    /// A valid message: mostly requests.
    fn message(&mut self) -> Value {
        match self.rng.below(100) {
            0..=11 => self.notification(),
            12..=17 => self.response(),
            _ => {
                let (method, params) = self.request_body();
                let id = self.fresh_id();
                let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
                if let Some(params) = params {
                    message["params"] = params;
                } else if self.rng.chance(10) {
                    message["params"] = json!({});
                }
                message
            }
        }
    }

    /// One mutation somewhere in `message`.
    fn mutate(&mut self, message: &mut Value) {
        match self.rng.below(12) {
            // The id: any JSON type, a duplicate, or none.
            0..=1 => {
                let id = match self.rng.below(4) {
                    0 => None,
                    1 => Some(self.recent_id()),
                    _ => Some(self.hostile_value()),
                };
                if let Some(map) = message.as_object_mut() {
                    match id {
                        Some(id) => map.insert("id".into(), id),
                        None => map.remove("id"),
                    };
                }
            }
            2 => {
                let method = match self.rng.below(3) {
                    0 => Some(json!(*self.rng.pick(&[
                        "tools/call",
                        "resources/read",
                        "prompts/get",
                        "completion/complete",
                        "initialize",
                        "ping",
                    ]))),
                    1 => Some(self.hostile_value()),
                    _ => None,
                };
                if let Some(map) = message.as_object_mut() {
                    match method {
                        Some(method) => map.insert("method".into(), method),
                        None => map.remove("method"),
                    };
                }
            }
            3 => {
                let version = match self.rng.below(4) {
                    0 => None,
                    1 => Some(json!("1.0")),
                    2 => Some(json!(2.0)),
                    _ => Some(json!("2.0 ")),
                };
                if let Some(map) = message.as_object_mut() {
                    match version {
                        Some(version) => map.insert("jsonrpc".into(), version),
                        None => map.remove("jsonrpc"),
                    };
                }
            }
            // Anywhere: a wrong type, a field removed, a field added.
            4..=7 => {
                let paths = paths_of(message);
                let path = self.rng.pick(&paths).clone();
                let value = self.hostile_value();
                if let Some(slot) = at_mut(message, &path) {
                    *slot = value;
                }
            }
            8..=9 => {
                let paths = paths_of(message);
                let path = self.rng.pick(&paths).clone();
                if let Some((last, parent)) = path.split_last()
                    && let Some(parent) = at_mut(message, parent)
                {
                    match (parent, last) {
                        (Value::Object(map), Seg::Key(key)) => {
                            map.remove(key);
                        }
                        (Value::Array(items), Seg::Index(i)) if *i < items.len() => {
                            items.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                let paths = paths_of(message);
                let path = self.rng.pick(&paths).clone();
                let key = *self.rng.pick(&[
                    "extra",
                    "_meta",
                    "__proto__",
                    "",
                    "id",
                    "params",
                    "🔥",
                    "arguments",
                    "cursor",
                ]);
                let value = self.hostile_value();
                if let Some(Value::Object(map)) = at_mut(message, &path) {
                    map.insert(key.into(), value);
                }
            }
        }
    }

    /// Damage to a serialised frame's bytes.
    fn mutate_bytes(&mut self, frame: &mut Vec<u8>) {
        match self.rng.below(12) {
            0 => {
                let cut = self.rng.below(frame.len());
                frame.truncate(cut);
            }
            1 => {
                let at = self.rng.below(frame.len() + 1);
                let bad = *self.rng.pick(BAD_BYTES);
                frame.splice(at..at, bad.iter().copied());
            }
            2 => {
                frame.splice(0..0, b"\xEF\xBB\xBF".iter().copied());
            }
            3 => frame.push(b'\r'),
            4 => {
                let at = self.rng.below(frame.len() + 1);
                frame.insert(at, b'\r');
            }
            5 => {
                let pad = *self.rng.pick(PADDING);
                if self.rng.chance(50) {
                    frame.splice(0..0, pad.iter().copied());
                } else {
                    frame.extend_from_slice(pad);
                }
            }
            6 => {
                // Two messages on one line (a CR between them, sometimes).
                let copy = frame.clone();
                if self.rng.chance(50) {
                    frame.push(b'\r');
                }
                frame.extend_from_slice(&copy);
            }
            7 if frame.first() == Some(&b'{') => {
                // A duplicate key.
                let key = *self.rng.pick(&[
                    "\"id\":7,",
                    "\"id\":\"dup\",",
                    "\"method\":\"ping\",",
                    "\"jsonrpc\":\"1.0\",",
                    "\"id\":null,",
                ]);
                frame.splice(1..1, key.bytes());
            }
            8 if !frame.is_empty() => {
                let at = self.rng.below(frame.len());
                frame[at] ^= 1 << self.rng.below(8);
            }
            9 => {
                // A newline inside: the rest is another frame.
                let at = self.rng.below(frame.len() + 1);
                frame.insert(at, b'\n');
            }
            10 => {
                let at = self.rng.below(frame.len() + 1);
                frame.insert(at, *self.rng.pick(b"{}[]\",:\\"));
            }
            _ => {
                frame.push(b'\r');
                frame.insert(0, b'\r');
            }
        }
    }

    fn serialise(&mut self, value: &Value) -> Vec<u8> {
        let mut text = serde_json::to_string(value).expect("serialise");
        for (index, raw) in std::mem::take(&mut self.raws).iter().enumerate() {
            let quoted = serde_json::to_string(&placeholder(index)).unwrap();
            text = text.replacen(&quoted, raw, 1);
        }
        text.into_bytes()
    }

    /// The next chunk to write (a newline follows it): usually one frame, sometimes several
    /// lines or none.
    fn chunk(&mut self, index: usize, total: usize) -> Vec<u8> {
        if let Some(big) = self.big_frame(index, total) {
            return big;
        }
        if self.rng.below(200) == 0 {
            return self.id_reused_in_flight();
        }
        match self.rng.below(100) {
            0..=3 => self.rng.pick(BLANK_LINES).to_vec(),
            4..=7 => {
                // A batch.
                let n = self.rng.below(4);
                let items: Vec<Value> = (0..n).map(|_| self.message()).collect();
                self.serialise(&Value::Array(items))
            }
            8..=11 => match self.rng.below(5) {
                // Not a JSON-RPC message at all.
                0 => {
                    let n = self.rng.range(1, 64);
                    (0..n)
                        .map(|_| match (self.rng.next() & 0xff) as u8 {
                            b'\n' => b'x',
                            byte => byte,
                        })
                        .collect()
                }
                1 => self
                    .rng
                    .pick(&[
                        "42",
                        "\"x\"",
                        "null",
                        "true",
                        "[]",
                        "{}",
                        "-0",
                        "1e99999",
                        "{\"a\":1}",
                        "{\"jsonrpc\":\"2.0\"}",
                    ])
                    .as_bytes()
                    .to_vec(),
                2 => b"{this is not json".to_vec(),
                3 => {
                    let depth = *self.rng.pick(&[127usize, 128, 129, 1_000, 100_000]);
                    nested_text(depth, self.rng.chance(50)).into_bytes()
                }
                _ => {
                    // Deep nesting inside a valid request.
                    let depth = *self.rng.pick(&[100usize, 125, 126, 127, 128, 200]);
                    let id = self.fresh_id();
                    format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"list_namespaces","arguments":{{"x":{}}}}}}}"#,
                        nested_text(depth, true)
                    )
                    .into_bytes()
                }
            },
            12..=14 => {
                // Several frames in one write, LF or CRLF between them.
                let n = self.rng.range(2, 6);
                let mut bytes = Vec::new();
                for i in 0..n {
                    if i > 0 {
                        let end: &[u8] = if self.rng.chance(50) { b"\r\n" } else { b"\n" };
                        bytes.extend_from_slice(end);
                    }
                    let message = self.message();
                    bytes.extend(self.serialise(&message));
                }
                bytes
            }
            _ => {
                let mut message = self.message();
                if self.rng.chance(55) {
                    for _ in 0..self.rng.range(1, 4) {
                        self.mutate(&mut message);
                    }
                }
                let mut frame = self.serialise(&message);
                if self.rng.chance(15) {
                    self.mutate_bytes(&mut frame);
                }
                frame
            }
        }
    }

    /// A slow request, then in the same write a frame with its id that is refused (unknown
    /// method, bad params, not JSON-RPC 2.0), then a valid request with its id again: three
    /// requests, three replies, whichever the server takes as duplicates.
    fn id_reused_in_flight(&mut self) -> Vec<u8> {
        let id = self.fresh_id();
        let slow = match self.rng.below(3) {
            0 => {
                json!({"name": "search_logs", "arguments": {"pattern": "(a|b|c|d|e|f)*x.*y.*z", "limit": 50000, "max_tokens": 25000}})
            }
            1 => {
                json!({"name": "troubleshoot_issue", "arguments": {"description": "everything is down"}})
            }
            _ => {
                json!({"name": "count_errors", "arguments": {"group_by": "message", "since": "24h"}})
            }
        };
        let refused = match self.rng.below(4) {
            0 => json!({"jsonrpc": "2.0", "id": id, "method": "nope/nope"}),
            1 => json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": 7}}),
            2 => json!({"jsonrpc": "1.0", "id": id, "method": "ping"}),
            _ => json!({"jsonrpc": "2.0", "id": id, "method": "resources/read", "params": []}),
        };
        let again = *self
            .rng
            .pick(&["ping", "tools/list", "resources/list", "prompts/list"]);
        [
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": slow}),
            refused,
            json!({"jsonrpc": "2.0", "id": id, "method": again}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
    }

    /// Frames of 1–2 MB at fixed places in the run: under, at and over the limit.
    fn big_frame(&mut self, index: usize, total: usize) -> Option<Vec<u8>> {
        const KINDS: usize = 8;
        let spacing = total / (KINDS + 1);
        if spacing == 0 || index == 0 || !index.is_multiple_of(spacing) || index / spacing > KINDS {
            return None;
        }
        let kind = index / spacing - 1;
        let id = self.fresh_id();
        let padded = |size: usize, prefix: &str, suffix: &str| {
            let pad = size - prefix.len() - suffix.len();
            format!("{prefix}{}{suffix}", "x".repeat(pad)).into_bytes()
        };
        let ping = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{{"_pad":""#);
        let call = |tool: &str, argument: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"namespace":"payments","{argument}":""#
            )
        };
        Some(match kind {
            // Exactly at the limit: read and answered.
            0 => padded(LIMIT, &ping, "\"}}"),
            // One byte over.
            1 => padded(LIMIT + 1, &ping, "\"}}"),
            // Under the limit: huge arguments for real work.
            2 => padded(LIMIT - 10, &call("search_runbooks", "query"), "\"}}}"),
            3 => padded(LIMIT - 100, &call("describe_pod", "pod"), "\"}}}"),
            // Over it, the id first.
            4 => padded(LIMIT * 3 / 2, &call("search_logs", "pattern"), "\"}}}"),
            // Over it, the id last.
            5 => padded(
                2 * LIMIT,
                r#"{"jsonrpc":"2.0","method":"ping","params":{"_pad":""#,
                &format!("\"}},\"id\":{id}}}"),
            ),
            // An oversized notification, and oversized garbage.
            6 => padded(
                LIMIT + LIMIT / 10,
                r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1,"message":""#,
                "\"}}",
            ),
            _ => padded(2 * LIMIT - 1, "not json at all ", ""),
        })
    }
}

fn nested_text(depth: usize, arrays: bool) -> String {
    if arrays {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    }
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Every path in `value` (the root included), to a depth of 8.
fn paths_of(value: &Value) -> Vec<Vec<Seg>> {
    fn walk(value: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(prefix.clone());
        if prefix.len() >= 8 {
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    prefix.push(Seg::Key(key.clone()));
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    prefix.push(Seg::Index(i));
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn at_mut<'a>(value: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut at = value;
    for seg in path {
        at = match (at, seg) {
            (Value::Object(map), Seg::Key(key)) => map.get_mut(key)?,
            (Value::Array(items), Seg::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(at)
}

// ---------------------------------------------------------------------------------------------
// What each line needs, by JSON-RPC 2.0 and MCP's stdio transport (one message per line).

/// A reply's id: `Null`, or the id as JSON text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Null,
    Id(String),
}

impl Key {
    fn of(id: &Value) -> Key {
        if id.is_null() {
            Key::Null
        } else {
            Key::Id(id.to_string())
        }
    }
}

/// What may come back for one line.
#[derive(Debug, PartialEq)]
enum Expect {
    Nothing,
    /// Exactly one reply, with this id.
    One(Key),
    /// One of these outcomes (`None`: no reply), where the specification leaves a choice.
    OneOf(Vec<Option<Key>>),
}

/// An id a reply can carry back: a string or an integer.
fn usable(id: &Value) -> bool {
    id.is_string() || id.is_i64()
}

fn expect_json(text: &[u8]) -> Expect {
    let Ok(value) = serde_json::from_slice::<Value>(text) else {
        // Parse error: one reply, id null.
        return Expect::One(Key::Null);
    };
    let Value::Object(message) = value else {
        // A batch, or not an object: one Invalid Request, id null.
        return Expect::One(Key::Null);
    };
    match (message.contains_key("method"), message.get("id")) {
        // A notification, valid or not: never a reply.
        (true, None) => Expect::Nothing,
        (true, Some(id)) if usable(id) => Expect::One(Key::of(id)),
        // A number the server need not take as an id (a fraction, past i64): its id or null.
        (true, Some(id)) if id.is_number() => {
            Expect::OneOf(vec![Some(Key::of(id)), Some(Key::Null)])
        }
        (true, Some(_)) => Expect::One(Key::Null),
        // No method: a response (which gets no reply) or an invalid request.
        (false, Some(id)) if usable(id) => {
            Expect::OneOf(vec![None, Some(Key::of(id)), Some(Key::Null)])
        }
        (false, _) => Expect::OneOf(vec![None, Some(Key::Null)]),
    }
}

/// What one line (without its newline) needs.
fn expect_line(line: &[u8]) -> Expect {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let (bom, text) = match line.strip_prefix(BOM) {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let mut expect = if text.iter().all(u8::is_ascii_whitespace) {
        Expect::Nothing
    } else {
        expect_json(text)
    };
    // JSON text has no byte-order mark; a parser may skip one (RFC 8259) or refuse the frame.
    if bom {
        expect = widen(expect, Some(Key::Null));
    }
    // Over --max-request-bytes: refused unparsed, with its id when the server reads it.
    if line.len() > LIMIT {
        expect = widen(expect, Some(Key::Null));
    }
    expect
}

fn widen(expect: Expect, also: Option<Key>) -> Expect {
    let mut options = match expect {
        Expect::Nothing => vec![None],
        Expect::One(key) => vec![Some(key)],
        Expect::OneOf(options) => options,
    };
    if !options.contains(&also) {
        options.push(also);
    }
    match options.len() {
        1 => match options.pop().unwrap() {
            None => Expect::Nothing,
            Some(key) => Expect::One(key),
        },
        _ => Expect::OneOf(options),
    }
}

/// The request a line cancels (`notifications/cancelled`): that one may get no reply.
fn cancels(line: &[u8]) -> Option<Key> {
    let text = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let value: Value = serde_json::from_slice(text).ok()?;
    if value.get("method")?.as_str()? != "notifications/cancelled" || value.get("id").is_some() {
        return None;
    }
    Some(Key::of(value.get("params")?.get("requestId")?))
}

// ---------------------------------------------------------------------------------------------
// The ledger: what was expected, what came.

#[derive(Default)]
struct Counts {
    /// Replies that must come.
    min: usize,
    /// Replies that may come.
    max: usize,
    cancelled: usize,
    got: usize,
    first_reply: Option<Instant>,
    /// When the first frame that must have a reply with this id was written (about).
    first_sent: Option<Instant>,
    /// The first few frames that expect this id.
    frames: Vec<usize>,
}

impl Counts {
    fn deficit(&self) -> usize {
        self.min
            .saturating_sub(self.cancelled)
            .saturating_sub(self.got)
    }
}

#[derive(Default)]
struct Ledger {
    ids: HashMap<Key, Counts>,
    /// Lines that need a reply whose id is one of several.
    must_any: usize,
    /// Replies owed, summed over the ids.
    deficit: usize,
    replies: usize,
    non_json: Vec<String>,
    malformed_replies: Vec<String>,
    server_messages: usize,
    server_requests: Vec<String>,
    codes: BTreeMap<i64, usize>,
    busy: usize,
    duplicate_refusals: usize,
    batch_replies: usize,
    /// The first internal errors (-32603) and the first faults the server owned up to.
    internal: Vec<String>,
    largest_reply: (usize, String),
    /// Each frame, shortened, for the report.
    frames: Vec<String>,
}

impl Ledger {
    fn touch(&mut self, key: &Key, change: impl FnOnce(&mut Counts)) {
        let counts = self.ids.entry(key.clone()).or_default();
        let before = counts.deficit();
        change(counts);
        self.deficit = self.deficit + counts.deficit() - before;
    }

    fn expect(&mut self, frame: usize, expect: Expect) {
        let note = |c: &mut Counts| {
            if c.frames.len() < 6 && c.frames.last() != Some(&frame) {
                c.frames.push(frame);
            }
        };
        match expect {
            Expect::Nothing => {}
            Expect::One(key) => self.touch(&key, |c| {
                c.min += 1;
                c.max += 1;
                c.first_sent.get_or_insert_with(Instant::now);
                note(c);
            }),
            Expect::OneOf(options) => {
                if !options.contains(&None) {
                    self.must_any += 1;
                }
                for key in options.into_iter().flatten() {
                    self.touch(&key, |c| {
                        c.max += 1;
                        note(c);
                    });
                }
            }
        }
    }

    fn reply(&mut self, message: &Value, at: Instant, size: usize) {
        let Some(object) = message.as_object() else {
            self.malformed_replies
                .push(shorten(message.to_string().as_bytes()));
            return;
        };
        if object.contains_key("method") {
            self.server_messages += 1;
            if object.contains_key("id") {
                self.server_requests
                    .push(shorten(message.to_string().as_bytes()));
            }
            return;
        }
        let valid = object.get("jsonrpc") == Some(&json!("2.0"))
            && object.contains_key("id")
            && (object.contains_key("result") ^ object.contains_key("error"))
            && object
                .get("error")
                .is_none_or(|e| e["code"].is_i64() && e["message"].is_string());
        if !valid {
            self.malformed_replies
                .push(shorten(message.to_string().as_bytes()));
        }
        let key = Key::of(object.get("id").unwrap_or(&Value::Null));
        if let Some(code) = message["error"]["code"].as_i64() {
            *self.codes.entry(code).or_default() += 1;
            let text = message["error"]["message"].as_str().unwrap_or("");
            if text.starts_with("server busy") {
                self.busy += 1;
            }
            if text.contains("in flight") {
                self.duplicate_refusals += 1;
            }
            if code == -32603 && self.internal.len() < 5 {
                self.internal
                    .push(format!("id {key:?}: {}", shorten(text.as_bytes())));
            }
        } else if message["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("server busy"))
        {
            self.busy += 1;
        }
        if let Some(text) = message["result"]["content"][0]["text"].as_str()
            && text.contains("failed unexpectedly")
            && self.internal.len() < 5
        {
            self.internal
                .push(format!("id {key:?}: {}", shorten(text.as_bytes())));
        }
        if size > self.largest_reply.0 {
            let mut what = message.clone();
            if let Some(reply) = what.as_object_mut() {
                reply.remove("id");
            }
            let what = shorten(what.to_string().as_bytes());
            self.largest_reply = (size, format!("id of {} bytes: {what}", key_len(&key)));
        }
        self.replies += 1;
        self.touch(&key, |c| {
            c.got += 1;
            c.first_reply.get_or_insert(at);
        });
    }

    /// The requests answered slowest: (time to the first reply, id, first frame).
    fn slowest(&self, n: usize) -> Vec<(Duration, &Key, Option<usize>)> {
        let mut slow: Vec<_> = self
            .ids
            .iter()
            .filter_map(|(key, c)| {
                let took = c.first_reply?.saturating_duration_since(c.first_sent?);
                Some((took, key, c.frames.first().copied()))
            })
            .collect();
        slow.sort_by_key(|s| std::cmp::Reverse(s.0));
        slow.truncate(n);
        slow
    }

    /// Everything that went against the expectations.
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let show = |frames: &[usize]| {
            frames
                .iter()
                .map(|&i| match self.frames.get(i) {
                    Some(text) => format!("\n      frame {i}: {text}"),
                    None => "\n      (a probe or the final ping)".to_string(),
                })
                .collect::<String>()
        };
        let mut keys: Vec<&Key> = self.ids.keys().collect();
        keys.sort();
        let mut owed = 0;
        for key in keys {
            let c = &self.ids[key];
            owed += c.min.saturating_sub(c.cancelled);
            if c.got > c.max {
                failures.push(format!(
                    "{} replies with id {key:?}, at most {} expected{}",
                    c.got,
                    c.max,
                    show(&c.frames)
                ));
            }
            if c.got + c.cancelled < c.min {
                failures.push(format!(
                    "{} replies with id {key:?}, {} expected ({} cancelled){}",
                    c.got,
                    c.min,
                    c.cancelled,
                    show(&c.frames)
                ));
            }
        }
        if self.replies < owed + self.must_any {
            failures.push(format!(
                "{} replies in all, at least {} expected",
                self.replies,
                owed + self.must_any
            ));
        }
        for line in self.non_json.iter().take(5) {
            failures.push(format!("stdout carried a line that is not JSON: {line}"));
        }
        for line in self.malformed_replies.iter().take(5) {
            failures.push(format!("not a JSON-RPC 2.0 response: {line}"));
        }
        for request in self.server_requests.iter().take(3) {
            failures.push(format!(
                "the server sent a request to a client that declared no capabilities: {request}"
            ));
        }
        failures
    }
}

fn key_len(key: &Key) -> usize {
    match key {
        Key::Null => 4,
        Key::Id(text) => text.len(),
    }
}

fn shorten(bytes: &[u8]) -> String {
    const SHOWN: usize = 160;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    if bytes.len() > SHOWN {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// The binary and its pipes.

/// Writes one chunk and a newline; an error when the server has not read it within a minute.
async fn send(pipe: &mut ChildStdin, bytes: &[u8]) -> std::io::Result<()> {
    let write = async {
        pipe.write_all(bytes).await?;
        pipe.write_all(b"\n").await?;
        pipe.flush().await
    };
    tokio::time::timeout(Duration::from_secs(60), write)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("not read within 60 s")))
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Straight to the process's stderr: the harness captures `eprintln!` of passing tests, and
/// the seed and figures belong in the CI log.
fn out(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    /// One request during set-up, and its reply (server messages skipped).
    async fn request(&mut self, id: &str, method: &str, params: Value) -> Value {
        let frame = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        send(&mut self.stdin, frame.to_string().as_bytes())
            .await
            .expect("write");
        loop {
            let mut line = Vec::new();
            let read = tokio::time::timeout(
                Duration::from_secs(30),
                self.stdout.read_until(b'\n', &mut line),
            )
            .await
            .expect("a set-up reply within 30 s")
            .expect("read stdout");
            assert!(read > 0, "stdout closed during set-up");
            let reply: Value = serde_json::from_slice(&line)
                .unwrap_or_else(|e| panic!("not JSON during set-up: {}: {e}", shorten(&line)));
            if reply.get("method").is_none() && reply["id"] == json!(id) {
                return reply;
            }
        }
    }

    async fn call(&mut self, id: &str, tool: &str, arguments: Value) -> Value {
        let reply = self
            .request(
                id,
                "tools/call",
                json!({"name": tool, "arguments": arguments}),
            )
            .await;
        assert_eq!(reply["result"]["isError"], false, "{tool}: {reply}");
        reply["result"].clone()
    }
}

fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v.as_str() {
                    Some(s) if k == key => {
                        if !out.iter().any(|x| x == s) {
                            out.push(s.to_string());
                        }
                    }
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// Starts the binary, initializes, and reads the demo cluster's names for plausible arguments.
async fn start() -> (Session, tokio::process::ChildStderr, World) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
        .arg("--no-embeddings")
        .env("SRE_MCP_BACKEND", "demo")
        .env("SRE_MCP_LOG", "warn")
        // A panic's message names its place; its backtrace, symbolised from a debug binary's
        // debug info, would take some 230 MB that the memory bound would count.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sre-mcp");
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::with_capacity(1 << 16, child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    let mut session = Session {
        child,
        stdin,
        stdout,
    };
    let init = session
        .request(
            "setup-init",
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}),
        )
        .await;
    assert_eq!(init["result"]["serverInfo"]["name"], "sre-mcp", "{init}");
    send(
        &mut session.stdin,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await
    .unwrap();

    let mut world = World::default();
    let namespaces = session.call("setup-ns", "list_namespaces", json!({})).await;
    strings_under(
        &namespaces["structuredContent"]["namespaces"],
        "name",
        &mut world.namespaces,
    );
    for (i, namespace) in world.namespaces.clone().into_iter().enumerate() {
        let pods = session
            .call(
                &format!("setup-pods-{i}"),
                "list_pods",
                json!({"namespace": namespace, "max_tokens": 25000}),
            )
            .await;
        let mut names = Vec::new();
        strings_under(&pods["structuredContent"]["pods"], "name", &mut names);
        world
            .pods
            .extend(names.into_iter().map(|pod| (namespace.clone(), pod)));
    }
    let health = session
        .call(
            "setup-health",
            "check_service_health",
            json!({"max_tokens": 25000}),
        )
        .await;
    strings_under(
        &health["structuredContent"]["services"],
        "name",
        &mut world.services,
    );
    let errors = session
        .call(
            "setup-errors",
            "search_logs",
            json!({"level": "error", "limit": 50}),
        )
        .await;
    strings_under(
        &errors["structuredContent"],
        "trace_id",
        &mut world.trace_ids,
    );
    let resources = session
        .request("setup-resources", "resources/list", json!({}))
        .await;
    let mut uris = Vec::new();
    strings_under(&resources["result"]["resources"], "uri", &mut uris);
    world.runbooks = uris
        .into_iter()
        .filter(|uri| uri.starts_with("runbook://"))
        .collect();
    let shaped = session
        .call("setup-shaped", "search_logs", json!({"limit": 2000}))
        .await;
    if let Some(id) = shaped["_meta"]["full_result"]
        .as_str()
        .and_then(|uri| uri.strip_prefix("result://"))
    {
        world.result_ids.push(id.to_string());
    }
    world.result_ids.push("ffff-999".into());
    (session, stderr, world)
}

/// Waits until at most `limit` replies are owed; false when none came for `STALL`.
async fn settle(shared: &Shared, limit: usize) -> bool {
    let mut last_progress = Instant::now();
    let mut last_replies = usize::MAX;
    loop {
        let changed = shared.changed.notified();
        let (deficit, replies) = {
            let ledger = shared.ledger.lock().unwrap();
            (ledger.deficit, ledger.replies)
        };
        if deficit <= limit {
            return true;
        }
        if replies != last_replies {
            last_replies = replies;
            last_progress = Instant::now();
        }
        if last_progress.elapsed() > STALL {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
    }
}

/// When the first reply with `key` came, waiting up to `wait`.
async fn reply_time(shared: &Shared, key: &Key, wait: Duration) -> Option<Instant> {
    let deadline = Instant::now() + wait;
    loop {
        let changed = shared.changed.notified();
        let at = shared
            .ledger
            .lock()
            .unwrap()
            .ids
            .get(key)
            .and_then(|c| c.first_reply);
        if at.is_some() || Instant::now() > deadline {
            return at;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
    }
}

struct Shared {
    ledger: Mutex<Ledger>,
    changed: Notify,
}

/// Every stdout line, as it comes, into the ledger.
async fn read_replies(shared: Arc<Shared>, mut stdout: BufReader<ChildStdout>) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdout.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let at = Instant::now();
        let parsed = std::str::from_utf8(&line)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(text).ok());
        {
            let mut ledger = shared.ledger.lock().unwrap();
            match parsed {
                None => ledger.non_json.push(shorten(&line)),
                Some(Value::Array(items)) => {
                    ledger.batch_replies += 1;
                    for item in &items {
                        ledger.reply(item, at, line.len());
                    }
                }
                Some(message) => ledger.reply(&message, at, line.len()),
            }
        }
        shared.changed.notify_waiters();
    }
}

/// Stderr lines counted; those that report a panic kept, and the first few.
async fn read_stderr(stderr: tokio::process::ChildStderr) -> (usize, Vec<String>, Vec<String>) {
    let mut stderr = BufReader::new(stderr);
    let (mut count, mut panics, mut head) = (0, Vec::new(), Vec::new());
    let mut line = Vec::new();
    while let Ok(n) = stderr.read_until(b'\n', &mut line).await {
        if n == 0 {
            break;
        }
        count += 1;
        let text = String::from_utf8_lossy(&line);
        if text.contains("panicked") {
            panics.push(text.trim_end().to_string());
        }
        if head.len() < 5 {
            head.push(text.trim_end().chars().take(300).collect());
        }
        line.clear();
    }
    (count, panics, head)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_mutated_frames_each_get_their_reply_and_the_server_stays_responsive() {
    let seed = env_number("SRE_MCP_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let frames = env_number("SRE_MCP_FUZZ_FRAMES").map_or(DEFAULT_FRAMES, |n| n as usize);
    let replay = format!("SRE_MCP_FUZZ_SEED={seed} SRE_MCP_FUZZ_FRAMES={frames}");
    out(&format!(
        "fuzz_stdio: seed {seed}, {frames} frames (replay: {replay})"
    ));
    let started = Instant::now();
    let (session, stderr, world) = start().await;
    let setup_time = started.elapsed();
    let Session {
        mut child,
        stdin: mut pipe,
        stdout,
    } = session;
    let pid = child.id().expect("pid");
    assert!(
        !world.pods.is_empty() && !world.services.is_empty() && !world.trace_ids.is_empty(),
        "{world:?}"
    );

    let shared = Arc::new(Shared {
        ledger: Mutex::new(Ledger::default()),
        changed: Notify::new(),
    });
    let reader = tokio::spawn(read_replies(shared.clone(), stdout));
    let stderr_task = tokio::spawn(read_stderr(stderr));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0u64;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(status_kb(pid, "VmRSS:").unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };

    let mut generator = Gen::new(seed, &world);
    // SRE_MCP_FUZZ_DUMP=FILE: every chunk written there too, as sent, to replay by hand.
    let mut dump = std::env::var_os("SRE_MCP_FUZZ_DUMP")
        .map(|path| std::fs::File::create(path).expect("SRE_MCP_FUZZ_DUMP: create the file"));
    let (mut sent_lines, mut sent_bytes) = (0usize, 0usize);
    // Replies owed that stopped coming (a failure, reported at the end): the writer goes on
    // without waiting for them again.
    let mut stuck = 0usize;
    let mut stalls = Vec::new();
    let mut pings: Vec<(String, Duration, bool)> = Vec::new();
    let mut rss_at_probes = Vec::new();
    // The frames the writer waited longest on (written, then the window).
    let mut slowest: Vec<(Duration, usize)> = Vec::new();
    let (mut write_time, mut probe_time) = (Duration::ZERO, Duration::ZERO);
    let fuzzing = Instant::now();
    let mut sent_frames = frames;
    for index in 0..frames {
        if fuzzing.elapsed() > FUZZ_BUDGET {
            out(&format!(
                "fuzz_stdio: the time budget of {FUZZ_BUDGET:?} ran out after {index} frames; checking those"
            ));
            sent_frames = index;
            break;
        }
        if index > 0 && index.is_multiple_of(PROBE_EVERY) {
            let probing = Instant::now();
            // A probe: everything before answered, then heavy searches, then pings.
            if !settle(&shared, stuck).await {
                stalls.push(index);
                stuck = shared.ledger.lock().unwrap().deficit;
            }
            let probe = index / PROBE_EVERY;
            let mut hostile = Vec::new();
            for h in 0..HOSTILE_AT_ONCE {
                let id = json!(format!("hostile-{probe}-{h}"));
                let frame = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "search_logs", "arguments": {"pattern": "(a|b|c|d|e|f)*x.*y.*z", "limit": 50000, "max_tokens": 25000}}});
                let key = Key::of(&id);
                shared
                    .ledger
                    .lock()
                    .unwrap()
                    .expect(usize::MAX, Expect::One(key.clone()));
                send(&mut pipe, frame.to_string().as_bytes())
                    .await
                    .expect("write");
                hostile.push(key);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            for p in 0..PINGS_PER_PROBE {
                let id = format!("probe-{probe}-{p}");
                let key = Key::of(&json!(id));
                shared
                    .ledger
                    .lock()
                    .unwrap()
                    .expect(usize::MAX, Expect::One(key.clone()));
                let frame = json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string();
                let sent = Instant::now();
                send(&mut pipe, frame.as_bytes()).await.expect("write");
                let received = reply_time(&shared, &key, Duration::from_secs(10)).await;
                let latency = received.map_or(Duration::from_secs(10), |at| {
                    at.saturating_duration_since(sent)
                });
                // Was a heavy search still running when the pong came?
                let overlapped = {
                    let ledger = shared.ledger.lock().unwrap();
                    hostile.iter().any(|k| {
                        let done = ledger.ids.get(k).and_then(|c| c.first_reply);
                        match (done, received) {
                            (None, _) => true,
                            (Some(done), Some(pong)) => done > pong,
                            (Some(_), None) => false,
                        }
                    })
                };
                pings.push((id, latency, overlapped));
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            rss_at_probes.push(status_kb(pid, "VmRSS:").unwrap_or(0) / 1024);
            probe_time += probing.elapsed();
        }

        let chunk = generator.chunk(index, frames);
        // What each line needs, worked out before the ledger is locked (parsing a 2 MB frame
        // takes a while in a debug build, and the reader must not wait for it).
        let needs: Vec<(Expect, Option<Key>)> = chunk
            .split(|&b| b == b'\n')
            .map(|line| (expect_line(line), cancels(line)))
            .collect();
        sent_lines += needs.len();
        {
            let mut ledger = shared.ledger.lock().unwrap();
            ledger.frames.push(shorten(&chunk));
            for (expect, cancelled) in needs {
                ledger.expect(index, expect);
                if let Some(key) = cancelled {
                    ledger.touch(&key, |c| c.cancelled += 1);
                }
            }
        }
        sent_bytes += chunk.len() + 1;
        if let Some(file) = dump.as_mut() {
            file.write_all(&chunk)
                .and_then(|()| file.write_all(b"\n"))
                .expect("SRE_MCP_FUZZ_DUMP: write");
        }
        let writing = Instant::now();
        if let Err(error) = send(&mut pipe, &chunk).await {
            panic!(
                "writing frame {index} failed ({error}): the server stopped reading ({replay}); frame {}",
                shorten(&chunk)
            );
        }
        write_time += writing.elapsed();
        if !settle(&shared, WINDOW + stuck).await {
            stalls.push(index);
            stuck = shared.ledger.lock().unwrap().deficit;
        }
        slowest.push((writing.elapsed(), index));
        slowest.sort_by_key(|s| std::cmp::Reverse(*s));
        slowest.truncate(5);
    }

    let fuzz_time = fuzzing.elapsed();
    // Everything answered, then a last ping: alive and still serving.
    let settled = settle(&shared, stuck).await;
    let final_key = Key::of(&json!("final-ping"));
    shared
        .ledger
        .lock()
        .unwrap()
        .expect(usize::MAX, Expect::One(final_key.clone()));
    let sent = Instant::now();
    send(
        &mut pipe,
        br#"{"jsonrpc":"2.0","id":"final-ping","method":"ping"}"#,
    )
    .await
    .expect("write the final ping");
    let final_ping = reply_time(&shared, &final_key, Duration::from_secs(10))
        .await
        .map(|at| at - sent);
    let alive = child.try_wait().expect("try_wait").is_none();
    let peak_kb = status_kb(pid, "VmHWM:").unwrap_or(0);
    let rss_kb = status_kb(pid, "VmRSS:").unwrap_or(0);

    // End of input: the calls in flight finish, their replies are written, the server exits.
    drop(pipe);
    let exit = tokio::time::timeout(Duration::from_secs(90), child.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
    sampling.store(false, Ordering::Relaxed);
    let sampled_peak_kb = sampler.await.unwrap_or(0);
    let (stderr_lines, panics, stderr_head) =
        match tokio::time::timeout(Duration::from_secs(10), stderr_task).await {
            Ok(Ok(read)) => read,
            _ => (0, vec!["stderr did not close".into()], Vec::new()),
        };

    let ledger = shared.ledger.lock().unwrap();
    let worst_ping = pings.iter().map(|p| p.1).max().unwrap_or_default();
    let not_overlapped = pings.iter().filter(|p| !p.2).count();
    let peak_mb = peak_kb.max(sampled_peak_kb) as f64 / 1024.0;
    out(&format!(
        "fuzz_stdio: seed {seed}: {sent_frames} frames ({sent_lines} lines, {:.1} MB) sent in {:.1} s; \
         {} replies ({} busy, {} duplicate-id refusals, {} batch replies; error codes {:?}), {} server messages; \
         worst ping {worst_ping:?} of {} sent with {HOSTILE_AT_ONCE} heavy searches in flight ({not_overlapped} after they ended); \
         final ping {final_ping:?}; peak RSS {peak_mb:.0} MB (at the end {:.0} MB; at the first probe {:?} MB, at the last {:?} MB); \
         largest reply {} bytes ({}); {stderr_lines} stderr lines",
        sent_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        ledger.replies,
        ledger.busy,
        ledger.duplicate_refusals,
        ledger.batch_replies,
        ledger.codes,
        ledger.server_messages,
        pings.len(),
        rss_kb as f64 / 1024.0,
        rss_at_probes.first(),
        rss_at_probes.last(),
        ledger.largest_reply.0,
        ledger.largest_reply.1,
    ));

    let mut worst: Vec<&(String, Duration, bool)> = pings.iter().collect();
    worst.sort_by_key(|p| std::cmp::Reverse(p.1));
    out(&format!(
        "fuzz_stdio: worst pings: {}",
        worst
            .iter()
            .take(4)
            .map(|(id, took, _)| format!("{id} {took:.1?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for internal in &ledger.internal {
        out(&format!("fuzz_stdio: internal error reply: {internal}"));
    }
    out(&format!(
        "fuzz_stdio: time: set-up {setup_time:.1?}, fuzzing {fuzz_time:.1?} (writing {write_time:.1?}, probes {probe_time:.1?}, the rest waiting for replies)"
    ));
    for (took, index) in &slowest {
        out(&format!(
            "fuzz_stdio: slow: {took:?} after frame {index}: {}",
            ledger.frames.get(*index).map_or("?", |s| s)
        ));
    }
    for (took, key, frame) in ledger.slowest(12) {
        out(&format!(
            "fuzz_stdio: slowest reply: {took:?} for {key:?}, frame {frame:?}: {}",
            frame.and_then(|i| ledger.frames.get(i)).map_or("-", |s| s)
        ));
    }
    if !settled || !stalls.is_empty() {
        out(&format!(
            "fuzz_stdio: the writer went on without owed replies after {STALL:?} of silence, after frames {stalls:?}{}",
            if settled { "" } else { " and at the end" }
        ));
    }
    let mut failures = ledger.failures();
    if !alive {
        failures.push("the server exited during the run".into());
    }
    match final_ping {
        None => failures.push("no reply to the final ping within 10 s".into()),
        Some(took) if took > Duration::from_secs(1) => {
            failures.push(format!("the final ping took {took:?}"))
        }
        Some(_) => {}
    }
    match exit {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => failures.push(format!(
            "after stdin closed the server exited with {status}"
        )),
        Ok(Err(error)) => failures.push(format!("waiting for the server: {error}")),
        Err(_) => failures.push("the server did not exit within 90 s of stdin closing".into()),
    }
    for line in &panics {
        failures.push(format!("stderr: {line}"));
    }
    for (id, latency, _) in &pings {
        if *latency >= PING_BOUND {
            failures.push(format!(
                "ping {id} answered in {latency:?} (bound {PING_BOUND:?}) with heavy searches in flight"
            ));
        }
    }
    if not_overlapped * 2 > pings.len() {
        failures.push(format!(
            "{not_overlapped} of {} pings were answered after the heavy searches had ended: the probes measured little",
            pings.len()
        ));
    }
    for (took, key, frame) in ledger.slowest(5) {
        if took > REPLY_BOUND {
            failures.push(format!(
                "the reply with id {key:?} came {took:.1?} after its request (bound {REPLY_BOUND:?}): frame {frame:?}: {}",
                frame.and_then(|i| ledger.frames.get(i)).map_or("-", |s| s)
            ));
        }
    }
    if peak_mb >= RSS_BOUND_MB {
        failures.push(format!(
            "peak RSS {peak_mb:.0} MB (bound {RSS_BOUND_MB} MB)"
        ));
    }
    assert!(
        failures.is_empty(),
        "fuzz_stdio, seed {seed}, {frames} frames: {} failures (replay: {replay}):\n  {}\nstderr began: {stderr_head:?}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn the_oracle_reads_json_rpc_as_the_specification_says() {
    let id = |s: &str| Key::Id(s.into());
    assert_eq!(expect_line(b""), Expect::Nothing);
    assert_eq!(expect_line(b" \r"), Expect::Nothing);
    assert_eq!(expect_line(b"{"), Expect::One(Key::Null));
    assert_eq!(expect_line(b"[1]"), Expect::One(Key::Null));
    assert_eq!(expect_line(b"\xff"), Expect::One(Key::Null));
    assert_eq!(
        expect_line(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
        Expect::One(id("7"))
    );
    assert_eq!(
        expect_line(br#"{"jsonrpc":"2.0","id":"7","method":"ping"}"#),
        Expect::One(id("\"7\""))
    );
    assert_eq!(
        expect_line(br#"{"jsonrpc":"1.0","id":7,"method":7}"#),
        Expect::One(id("7"))
    );
    assert_eq!(
        expect_line(br#"{"jsonrpc":"2.0","method":"ping"}"#),
        Expect::Nothing
    );
    assert_eq!(
        expect_line(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
        Expect::One(Key::Null)
    );
    assert_eq!(
        expect_line(br#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#),
        Expect::One(Key::Null)
    );
    assert_eq!(
        expect_line(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
        Expect::OneOf(vec![Some(id("1.5")), Some(Key::Null)])
    );
    assert_eq!(
        expect_line(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
        Expect::OneOf(vec![None, Some(id("3")), Some(Key::Null)])
    );
    assert_eq!(
        expect_line(b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}"),
        Expect::OneOf(vec![Some(id("7")), Some(Key::Null)])
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"ping","params":{{"p":"{}"}}}}"#,
        "x".repeat(LIMIT)
    );
    assert_eq!(
        expect_line(big.as_bytes()),
        Expect::OneOf(vec![Some(id("9")), Some(Key::Null)])
    );
    assert_eq!(
        cancels(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a"}}"#
        ),
        Some(id("\"a\""))
    );

    // The generator: deterministic, every placeholder resolved, big frames where planned.
    let world = World {
        namespaces: vec!["payments".into()],
        pods: vec![("payments".into(), "payment-gateway-1".into())],
        services: vec!["payment-gateway".into()],
        trace_ids: vec!["0af7651916cd43dd8448eb211c80319c".into()],
        ..World::default()
    };
    let chunks = |seed| {
        let mut generator = Gen::new(seed, &world);
        (0..900)
            .map(|i| generator.chunk(i, 900))
            .collect::<Vec<_>>()
    };
    let first = chunks(1);
    assert_eq!(first, chunks(1));
    assert_ne!(first, chunks(2));
    for chunk in &first {
        assert!(
            !String::from_utf8_lossy(chunk).contains("\\u0001RAW"),
            "{}",
            shorten(chunk)
        );
    }
    let sizes: Vec<usize> = first
        .iter()
        .map(Vec::len)
        .filter(|&n| n >= LIMIT - 100)
        .collect();
    assert_eq!(
        sizes,
        [
            LIMIT,
            LIMIT + 1,
            LIMIT - 10,
            LIMIT - 100,
            LIMIT * 3 / 2,
            2 * LIMIT,
            LIMIT + LIMIT / 10,
            2 * LIMIT - 1
        ]
    );
}
