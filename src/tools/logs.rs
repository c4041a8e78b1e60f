//! Log tools: `get_pod_logs` (one container, like `kubectl logs` with filters),
//! `search_logs` (across pods), `count_errors` (error groups with ids and numbers normalised)
//! and `trace_transaction` (one trace id followed across services).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use jiff::Timestamp;
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Context;
use super::{
    RenderText, ToolDef, ToolError, ToolKind, ToolResult, define_tool, is_empty, limits, lookup,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;

use crate::cluster::{ListQuery, LogLines, LogQuery, view};
use crate::util::logs::{Level, LogEntry, is_trace_id, normalise_message};
use crate::util::quote::{short, thousands};
use crate::util::timefmt::{parse_since, rfc3339};

/// One log entry as tools return it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    pub timestamp: String,
    pub level: Level,
    pub logger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub message: String,
    /// Continuation lines (stack trace frames, `Caused by:`).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub detail: Vec<String>,
    /// Set by result shaping: this entry stands for N consecutive entries with the same level,
    /// logger and message apart from ids and numbers (it is the newest of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<usize>,
}

impl LogLine {
    fn from_entry(entry: &LogEntry) -> LogLine {
        LogLine {
            timestamp: entry.timestamp.to_string(),
            level: entry.level,
            logger: entry.logger.clone(),
            trace_id: entry.trace_id.clone(),
            message: entry.message.clone(),
            detail: entry.detail.clone(),
            repeated: None,
        }
    }
}

/// Most memory a client's regular expression may compile to (its program, then its lazy
/// DFA's cache): a pathological pattern such as `(a{1,100}){1,100}` is refused at once.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_SIZE_LIMIT: usize = 2 << 20;

fn compile_pattern(name: &str, pattern: Option<&str>) -> ToolResult<Option<Regex>> {
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| {
            ToolError::InvalidArgument(match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "{name}={} is too large a regular expression: compiled, it exceeds the limit of {} bytes. Use plain words or fewer, smaller repetitions",
                    short(pattern),
                    thousands(limit)
                ),
                // The parser's message repeats the pattern; only its last line (what is wrong)
                // is kept.
                other => {
                    let other = other.to_string();
                    let what = other.rsplit("error: ").next().unwrap_or(&other).trim();
                    format!(
                        "invalid regular expression in {name}={}: {what}. Escape special characters such as ( [ . * with a backslash, or pass plain words",
                        short(pattern)
                    )
                }
            })
        })
}

fn parse_level(level: Option<&str>) -> ToolResult<Option<Level>> {
    match level.map(str::trim).filter(|l| !l.is_empty()) {
        Some(l) => Level::parse_arg(l)
            .map(Some)
            .map_err(ToolError::InvalidArgument),
        None => Ok(None),
    }
}

fn parse_since_arg(since: Option<&str>, now: Timestamp) -> ToolResult<Option<Timestamp>> {
    match since.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => parse_since(s, now)
            .map(Some)
            .map_err(ToolError::InvalidArgument),
        None => Ok(None),
    }
}

fn entry_matches(
    entry: &LogEntry,
    since: Option<Timestamp>,
    level: Option<Level>,
    pattern: Option<&Regex>,
) -> bool {
    since.is_none_or(|s| entry.timestamp >= s)
        && level.is_none_or(|l| entry.level >= l)
        && pattern.is_none_or(|p| {
            p.is_match(&entry.message)
                || p.is_match(&entry.logger)
                || entry.detail.iter().any(|d| p.is_match(d))
        })
}

// ---------------------------------------------------------------------------------------------
// get_pod_logs

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPodLogsParams {
    /// Namespace of the pod.
    #[schemars(length(max = limits::NAME))]
    pub namespace: String,
    /// Pod name.
    #[schemars(length(max = limits::NAME))]
    pub pod: String,
    /// Needed only when the pod has several containers.
    #[schemars(length(max = limits::NAME))]
    pub container: Option<String>,
    /// Newest matching entries to return (default 100).
    #[schemars(range(min = limits::LOG_LINES_MIN, max = limits::LOG_LINES_MAX))]
    pub tail_lines: Option<i64>,
    /// `15m`, `2h` back, or an RFC 3339 time.
    #[schemars(length(max = limits::SINCE))]
    pub since: Option<String>,
    /// Minimum level: trace, debug, info, warn, error, fatal.
    #[schemars(length(max = limits::WORD))]
    pub level: Option<String>,
    /// Regex (case-insensitive) on message, logger and stack lines.
    #[schemars(length(max = limits::PATTERN))]
    pub grep: Option<String>,
    /// The previous, crashed instance (`kubectl logs --previous`).
    pub previous: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PodLogs {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub previous: bool,
    /// Matching entries, oldest first (the newest `tail_lines` of them).
    pub entries: Vec<LogLine>,
    /// Entries that matched the filters (before the tail limit).
    pub matched: usize,
    /// Entries in the stream, when the backend knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_entries: Option<usize>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub notes: Vec<String>,
}

pub fn get_pod_logs_tool() -> ToolDef {
    define_tool(
        "get_pod_logs",
        "Get pod logs",
        "One container's logs, oldest first, filtered by tail_lines, since, level and grep; previous=true reads the crashed instance (why was it OOMKilled?). Stack traces stay with their entry.",
        ToolKind::Read,
        get_pod_logs,
    )
}

async fn get_pod_logs(ctx: Arc<Context>, params: GetPodLogsParams) -> ToolResult<PodLogs> {
    let pod = lookup::find_pod(&ctx, &params.namespace, &params.pod).await?;
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let container = match params.container.as_deref().filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().any(|x| x == c) => c.to_string(),
        Some(c) => {
            return Err(ToolError::NotFound(format!(
                "container {} not found in pod {}; containers: {}",
                short(c),
                params.pod,
                containers.join(", ")
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ToolError::InvalidArgument(format!(
                "pod {} has {} containers; name one with container=: {}",
                params.pod,
                containers.len(),
                containers.join(", ")
            )));
        }
    };
    let mut notes = Vec::new();
    let max = ctx.limits.max_log_lines as i64;
    let tail = lookup::clamp(
        "tail_lines",
        params.tail_lines,
        100.min(max),
        limits::LOG_LINES_MIN,
        max,
        &mut notes,
    ) as usize;
    let now = Timestamp::now();
    let since = parse_since_arg(params.since.as_deref(), now)?;
    let level = parse_level(params.level.as_deref())?;
    let pattern = compile_pattern("grep", params.grep.as_deref())?;
    let previous = params.previous.unwrap_or(false);
    if previous {
        let restarts = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == container))
            .map_or(0, |c| c.restart_count);
        if restarts == 0 {
            return Err(ToolError::InvalidArgument(format!(
                "container {container} in pod {} has not restarted, so it has no previous instance; call again without previous=true",
                params.pod
            )));
        }
    }
    // Since always goes to the backend; the tail too unless a level or grep filter must see
    // the older entries first.
    let filtered = level.is_some() || pattern.is_some();
    let query = LogQuery {
        tail_lines: (!filtered).then_some(tail),
        since,
        ..LogQuery::container(&params.namespace, &params.pod, &container).previous(previous)
    };
    let lines = ctx.backend.pod_logs(&query).await?;
    if lines.stream_entries.unwrap_or(lines.len()) == 0 && !previous {
        let status = view::pod_status(&pod);
        notes.push(format!(
            "the container has written no logs (pod status {status})"
        ));
    }
    if lines.cut_by_bytes {
        notes.push("the backend's byte limit cut the log short".into());
    }
    let matching: Vec<&LogEntry> = lines
        .entries()
        .iter()
        .filter(|e| entry_matches(e, None, level, pattern.as_ref()))
        .collect();
    let matched = if filtered {
        matching.len()
    } else {
        lines.since_entries.unwrap_or(matching.len())
    };
    let skip = matching.len().saturating_sub(tail);
    Ok(PodLogs {
        namespace: params.namespace,
        pod: params.pod,
        container,
        previous,
        entries: matching[skip..]
            .iter()
            .map(|e| LogLine::from_entry(e))
            .collect(),
        matched,
        total_entries: lines.stream_entries,
        notes,
    })
}

/// One rendered entry: `<head> [trace=…] <message>`, then its continuation lines indented.
fn write_entry(
    out: &mut String,
    head: &str,
    trace_id: Option<&str>,
    message: &str,
    detail: &[String],
    repeated: Option<usize>,
) {
    let trace = trace_id.map(|t| format!(" trace={t}")).unwrap_or_default();
    let repeated = repeated
        .map(|n| format!("  [×{n} similar lines]"))
        .unwrap_or_default();
    let _ = writeln!(out, "{head}{trace} {message}{repeated}");
    for d in detail {
        let _ = writeln!(out, "    {d}");
    }
}

fn render_line(out: &mut String, line: &LogLine) {
    let head = format!(
        "{} {:<5} {}",
        line.timestamp,
        line.level.as_str(),
        line.logger
    );
    write_entry(
        out,
        &head,
        line.trace_id.as_deref(),
        &line.message,
        &line.detail,
        line.repeated,
    );
}

impl RenderText for PodLogs {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{}logs of {}/{} container {}: {} of {} matching entries ({} in stream)\n",
            if self.previous {
                "previous-instance "
            } else {
                ""
            },
            self.namespace,
            self.pod,
            self.container,
            self.entries.len(),
            self.matched,
            self.total_entries
                .map_or_else(|| "?".to_string(), |n| n.to_string())
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for line in &self.entries {
            render_line(&mut out, line);
        }
        out.trim_end().to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Streams across pods

/// One container log stream to read: where it comes from.
struct StreamSource {
    namespace: String,
    pod: String,
    service: String,
    container: String,
    previous: bool,
}

/// A container log stream, read.
struct Stream {
    source: StreamSource,
    lines: LogLines,
}

impl Stream {
    fn entries(&self) -> &[LogEntry] {
        self.lines.entries()
    }
}

/// Every log stream (current and previous instances) of the pods that pass the filters, read
/// with bounded concurrency; `since` and a per-stream tail of `--max-log-lines` are pushed down
/// to the backend. A stream that cannot be read (a node's kubelet down, say) becomes a note,
/// not a failure of the whole search, unless no stream could be read at all.
async fn streams(
    ctx: &Context,
    namespace: Option<&str>,
    service: Option<&Deployment>,
    since: Option<Timestamp>,
    notes: &mut Vec<String>,
) -> ToolResult<Vec<Stream>> {
    let query = match service {
        Some(d) => ListQuery::for_deployment(d),
        None => ListQuery::namespace(namespace),
    };
    let pods = ctx.backend.pods(&query).await?.items;
    let service_name = service.map(|d| view::name(&d.metadata));
    let mut wanted = Vec::new();
    for pod in &pods {
        let pod_service =
            view::pod_deployment(pod).unwrap_or_else(|| view::name(&pod.metadata).to_string());
        if service_name.is_some_and(|s| s != pod_service) {
            continue;
        }
        let ns = view::namespace(&pod.metadata).to_string();
        let name = view::name(&pod.metadata).to_string();
        let restarted: BTreeSet<String> = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| {
                cs.iter()
                    .filter(|c| c.restart_count > 0)
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let mut kinds = vec![false];
            if restarted.contains(&container.name) {
                kinds.insert(0, true);
            }
            for previous in kinds {
                wanted.push(StreamSource {
                    namespace: ns.clone(),
                    pod: name.clone(),
                    service: pod_service.clone(),
                    container: container.name.clone(),
                    previous,
                });
            }
        }
    }
    let backend = &ctx.backend;
    let tail = ctx.limits.max_log_lines;
    let read = futures::stream::iter(wanted.into_iter().map(|source| async move {
        let query = LogQuery {
            since,
            tail_lines: Some(tail),
            ..LogQuery::container(&source.namespace, &source.pod, &source.container)
                .previous(source.previous)
        };
        match backend.pod_logs(&query).await {
            Ok(lines) => Ok(Stream { source, lines }),
            Err(e) => Err((source, ToolError::from(e))),
        }
    }))
    .buffered(ctx.limits.log_concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut out = Vec::new();
    let mut failed = Vec::new();
    let mut tail_reached = 0;
    let mut read_ok = 0;
    for stream in read {
        match stream {
            Ok(stream) => {
                read_ok += 1;
                if stream.lines.len() >= tail {
                    tail_reached += 1;
                }
                // A stream counts as searched when the container wrote anything at all.
                if stream.lines.stream_entries.unwrap_or(stream.lines.len()) > 0 {
                    out.push(stream);
                }
            }
            Err(failure) => failed.push(failure),
        }
    }
    if read_ok == 0 && !failed.is_empty() {
        return Err(failed.swap_remove(0).1);
    }
    if tail_reached > 0 {
        notes.push(format!(
            "{tail_reached} log stream(s) were read only as far back as their newest {tail} entries (--max-log-lines); narrow with since= to look further back"
        ));
    }
    for (source, error) in &failed {
        notes.push(format!(
            "could not read the log of {}/{} ({}{}): {error}",
            source.namespace,
            source.pod,
            source.container,
            if source.previous { ", previous" } else { "" }
        ));
    }
    Ok(out)
}

/// A log entry with the service and pod it came from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServiceLogLine {
    pub timestamp: String,
    pub service: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// True when the entry comes from the previous (crashed) instance of the container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous: bool,
    pub level: Level,
    pub logger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub detail: Vec<String>,
    /// Set by result shaping: this entry stands for N consecutive entries with the same level,
    /// logger and message apart from ids and numbers (it is the newest of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<usize>,
}

fn service_line(stream: &Stream, entry: &LogEntry) -> ServiceLogLine {
    ServiceLogLine {
        timestamp: entry.timestamp.to_string(),
        service: stream.source.service.clone(),
        namespace: stream.source.namespace.clone(),
        pod: stream.source.pod.clone(),
        container: stream.source.container.clone(),
        previous: stream.source.previous,
        level: entry.level,
        logger: entry.logger.clone(),
        trace_id: entry.trace_id.clone(),
        message: entry.message.clone(),
        detail: entry.detail.clone(),
        repeated: None,
    }
}

fn render_service_line(out: &mut String, line: &ServiceLogLine) {
    let head = format!(
        "{} {:<5} {}/{}{}",
        line.timestamp,
        line.level.as_str(),
        line.service,
        line.pod,
        if line.previous { " (previous)" } else { "" }
    );
    write_entry(
        out,
        &head,
        line.trace_id.as_deref(),
        &line.message,
        &line.detail,
        line.repeated,
    );
}

// ---------------------------------------------------------------------------------------------
// search_logs

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchLogsParams {
    /// A service (Deployment name or `namespace/name`).
    #[schemars(length(max = limits::NAME))]
    pub service: Option<String>,
    /// Only pods in this namespace.
    #[schemars(length(max = limits::NAME))]
    pub namespace: Option<String>,
    /// Minimum level: trace, debug, info, warn, error, fatal.
    #[schemars(length(max = limits::WORD))]
    pub level: Option<String>,
    /// Regex (case-insensitive) on message, logger and stack lines.
    #[schemars(length(max = limits::PATTERN))]
    pub pattern: Option<String>,
    /// Trace id (32 hex digits).
    #[schemars(length(max = limits::TRACE_ID))]
    pub trace_id: Option<String>,
    /// `15m`, `2h` back, or an RFC 3339 time.
    #[schemars(length(max = limits::SINCE))]
    pub since: Option<String>,
    /// Newest entries to return (default 50).
    #[schemars(range(min = limits::LOG_LINES_MIN, max = limits::LOG_LINES_MAX))]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct LogSearch {
    /// Matching entries, oldest first (the newest `limit` of them).
    pub entries: Vec<ServiceLogLine>,
    /// Entries that matched before the limit.
    pub matched: usize,
    /// Pod log streams searched.
    pub streams_searched: usize,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub notes: Vec<String>,
}

pub fn search_logs_tool() -> ToolDef {
    define_tool(
        "search_logs",
        "Search logs",
        "Search logs across services and pods (current and crashed instances) by service, namespace, level, regex, trace id and time; the newest matches, each with service and pod.",
        ToolKind::Read,
        search_logs,
    )
}

async fn resolve_scope(
    ctx: &Context,
    service: Option<&str>,
    namespace: Option<&str>,
) -> ToolResult<(Option<Deployment>, Option<String>)> {
    let namespace = namespace
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if let Some(ns) = &namespace {
        lookup::require_namespace(ctx, ns).await?;
    }
    let service = match service.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            let qualified = match (&namespace, s.contains('/')) {
                (Some(ns), false) => format!("{ns}/{s}"),
                _ => s.to_string(),
            };
            Some(lookup::find_service(ctx, &qualified).await?)
        }
        None => None,
    };
    Ok((service, namespace))
}

async fn search_logs(ctx: Arc<Context>, params: SearchLogsParams) -> ToolResult<LogSearch> {
    let mut notes = Vec::new();
    let max = ctx.limits.max_log_lines as i64;
    let limit = lookup::clamp(
        "limit",
        params.limit,
        50.min(max),
        limits::LOG_LINES_MIN,
        max,
        &mut notes,
    ) as usize;
    let now = Timestamp::now();
    let since = parse_since_arg(params.since.as_deref(), now)?;
    let level = parse_level(params.level.as_deref())?;
    let pattern = compile_pattern("pattern", params.pattern.as_deref())?;
    let trace_id = match params
        .trace_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) if is_trace_id(&t.to_ascii_lowercase()) => Some(t.to_ascii_lowercase()),
        Some(t) => {
            return Err(ToolError::InvalidArgument(format!(
                "invalid trace_id {}: expected 32 (or 16) hexadecimal digits",
                short(t)
            )));
        }
        None => None,
    };
    let (service, namespace) =
        resolve_scope(&ctx, params.service.as_deref(), params.namespace.as_deref()).await?;
    let streams = streams(
        &ctx,
        namespace.as_deref(),
        service.as_ref(),
        since,
        &mut notes,
    )
    .await?;
    let mut hits: Vec<(&Stream, &LogEntry)> = Vec::new();
    for stream in &streams {
        for entry in stream.entries() {
            if trace_id
                .as_ref()
                .is_none_or(|t| entry.trace_id.as_ref() == Some(t))
                && entry_matches(entry, since, level, pattern.as_ref())
            {
                hits.push((stream, entry));
            }
        }
    }
    let matched = hits.len();
    if matched > limit {
        hits.select_nth_unstable_by(matched - limit, |a, b| a.1.timestamp.cmp(&b.1.timestamp));
        hits.drain(..matched - limit);
    }
    hits.sort_by_key(|a| a.1.timestamp);
    if matched > limit {
        notes.push(format!("{matched} entries matched; the newest {limit} are shown — narrow with since=, level=, pattern= or service="));
    }
    Ok(LogSearch {
        entries: hits.iter().map(|(s, e)| service_line(s, e)).collect(),
        matched,
        streams_searched: streams.len(),
        notes,
    })
}

impl RenderText for LogSearch {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} of {} matching entries from {} log streams:\n",
            self.entries.len(),
            self.matched,
            self.streams_searched
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for line in &self.entries {
            render_service_line(&mut out, line);
        }
        out.trim_end().to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// count_errors

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Service,
    Message,
    Pod,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountErrorsParams {
    /// service (default), message (ids and numbers normalised away) or pod.
    pub group_by: Option<GroupBy>,
    /// `15m`, `2h` back, or an RFC 3339 time (default 1h).
    #[schemars(length(max = limits::SINCE))]
    pub since: Option<String>,
    /// Only pods in this namespace.
    #[schemars(length(max = limits::NAME))]
    pub namespace: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorCounts {
    pub group_by: String,
    pub since: String,
    /// Error and fatal entries counted.
    pub total: usize,
    /// Groups, largest first.
    pub groups: Vec<ErrorGroup>,
    /// What limited the count (streams read only in part, or not at all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorGroup {
    pub key: String,
    pub count: usize,
    /// Services in which the group occurs.
    pub services: Vec<String>,
    /// One original message of the group.
    pub sample: String,
    pub first_seen: String,
    pub last_seen: String,
}

pub fn count_errors_tool() -> ToolDef {
    define_tool(
        "count_errors",
        "Count errors",
        "Error and fatal log entries counted by service, pod or normalised message (one failure, one group), largest first: which service fails, and how.",
        ToolKind::Read,
        count_errors,
    )
}

pub async fn count_errors(ctx: Arc<Context>, params: CountErrorsParams) -> ToolResult<ErrorCounts> {
    let now = Timestamp::now();
    let since_text = params
        .since
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "1h".into());
    let since = parse_since(&since_text, now).map_err(ToolError::InvalidArgument)?;
    let group_by = params.group_by.unwrap_or_default();
    let (_, namespace) = resolve_scope(&ctx, None, params.namespace.as_deref()).await?;
    let mut notes = Vec::new();
    let streams = streams(&ctx, namespace.as_deref(), None, Some(since), &mut notes).await?;
    struct Acc {
        count: usize,
        services: BTreeSet<String>,
        sample: String,
        first: Timestamp,
        last: Timestamp,
    }
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = 0;
    for stream in &streams {
        for entry in stream
            .entries()
            .iter()
            .filter(|e| e.level >= Level::Error && e.timestamp >= since)
        {
            total += 1;
            let key = match group_by {
                GroupBy::Service => stream.source.service.clone(),
                GroupBy::Pod => format!("{}/{}", stream.source.namespace, stream.source.pod),
                GroupBy::Message => normalise_message(&entry.message),
            };
            let acc = groups.entry(key).or_insert_with(|| Acc {
                count: 0,
                services: BTreeSet::new(),
                sample: entry.message.clone(),
                first: entry.timestamp,
                last: entry.timestamp,
            });
            acc.count += 1;
            acc.services.insert(stream.source.service.clone());
            acc.first = acc.first.min(entry.timestamp);
            if entry.timestamp > acc.last {
                acc.last = entry.timestamp;
                acc.sample = entry.message.clone();
            }
        }
    }
    let mut groups: Vec<ErrorGroup> = groups
        .into_iter()
        .map(|(key, acc)| ErrorGroup {
            key,
            count: acc.count,
            services: acc.services.into_iter().collect(),
            sample: acc.sample,
            first_seen: rfc3339(acc.first),
            last_seen: rfc3339(acc.last),
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    Ok(ErrorCounts {
        group_by: match group_by {
            GroupBy::Service => "service",
            GroupBy::Message => "message",
            GroupBy::Pod => "pod",
        }
        .into(),
        since: rfc3339(since),
        total,
        groups,
        notes,
    })
}

impl RenderText for ErrorCounts {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} error/fatal entries since {} in {} groups (by {}):\n",
            self.total,
            self.since,
            self.groups.len(),
            self.group_by
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for g in &self.groups {
            if self.group_by == "message" {
                let _ = writeln!(
                    out,
                    "{:>6}  {}  [{}]",
                    g.count,
                    g.key,
                    g.services.join(", ")
                );
            } else {
                let _ = writeln!(out, "{:>6}  {} — latest: {}", g.count, g.key, g.sample);
            }
        }
        out.trim_end().to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// trace_transaction

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceTransactionParams {
    /// Trace id (32 hex digits, W3C trace-context), as found in log entries.
    #[schemars(length(max = limits::TRACE_ID))]
    pub trace_id: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TraceTimeline {
    pub trace_id: String,
    /// Services in order of first appearance.
    pub services: Vec<String>,
    /// One span per service: when it first and last logged for this trace.
    pub spans: Vec<TraceSpan>,
    /// All entries of the trace, oldest first.
    pub entries: Vec<ServiceLogLine>,
    pub duration_ms: i64,
    /// Where the transaction failed first, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<ServiceLogLine>,
    pub verdict: String,
    /// What limited the search (streams read only in part, or not at all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TraceSpan {
    pub service: String,
    pub namespace: String,
    pub pods: Vec<String>,
    pub start: String,
    pub end: String,
    pub duration_ms: i64,
    pub entries: usize,
    pub errors: usize,
}

pub fn trace_transaction_tool() -> ToolDef {
    define_tool(
        "trace_transaction",
        "Trace transaction",
        "Follow one transaction (trace id) across services: a timeline of every log entry carrying the id, a span per service with its duration and errors, and where it first failed.",
        ToolKind::Read,
        trace_transaction,
    )
}

async fn trace_transaction(
    ctx: Arc<Context>,
    params: TraceTransactionParams,
) -> ToolResult<TraceTimeline> {
    let trace_id = params.trace_id.trim().to_ascii_lowercase();
    if !is_trace_id(&trace_id) {
        return Err(ToolError::InvalidArgument(format!(
            "invalid trace_id {}: expected 32 (or 16) hexadecimal digits, e.g. 4bf92f3577b34da6a3ce929d0e0e4736",
            short(&params.trace_id)
        )));
    }
    let mut notes = Vec::new();
    let streams = streams(&ctx, None, None, None, &mut notes).await?;
    let mut hits: Vec<(&Stream, &LogEntry)> = streams
        .iter()
        .flat_map(|s| {
            s.entries()
                .iter()
                .filter(|e| e.trace_id.as_deref() == Some(trace_id.as_str()))
                .map(move |e| (s, e))
        })
        .collect();
    if hits.is_empty() {
        return Err(ToolError::NotFound(format!(
            "no log entry carries trace id {trace_id} in {} log streams; find trace ids with search_logs (entries show trace_id), e.g. search_logs(level=\"error\")",
            streams.len()
        )));
    }
    hits.sort_by_key(|a| a.1.timestamp);
    let mut services: Vec<String> = Vec::new();
    let mut spans: Vec<TraceSpan> = Vec::new();
    let mut bounds: Vec<(Timestamp, Timestamp)> = Vec::new();
    for (stream, entry) in &hits {
        let index = match services.iter().position(|s| s == &stream.source.service) {
            Some(i) => i,
            None => {
                services.push(stream.source.service.clone());
                spans.push(TraceSpan {
                    service: stream.source.service.clone(),
                    namespace: stream.source.namespace.clone(),
                    pods: Vec::new(),
                    start: String::new(),
                    end: String::new(),
                    duration_ms: 0,
                    entries: 0,
                    errors: 0,
                });
                bounds.push((entry.timestamp, entry.timestamp));
                services.len() - 1
            }
        };
        let span = &mut spans[index];
        span.entries += 1;
        span.errors += usize::from(entry.level >= Level::Error);
        if !span.pods.contains(&stream.source.pod) {
            span.pods.push(stream.source.pod.clone());
        }
        bounds[index].1 = entry.timestamp;
    }
    for (span, (start, end)) in spans.iter_mut().zip(&bounds) {
        span.start = start.to_string();
        span.end = end.to_string();
        span.duration_ms = end.duration_since(*start).as_millis() as i64;
    }
    let (first, last) = (hits[0].1.timestamp, hits[hits.len() - 1].1.timestamp);
    let duration_ms = last.duration_since(first).as_millis() as i64;
    let first_error = hits
        .iter()
        .find(|(_, e)| e.level >= Level::Error)
        .map(|(s, e)| service_line(s, e));
    let verdict = match &first_error {
        Some(e) => format!(
            "failed: {} entries across {} services over {} ms; first error in {} ({}): {}",
            hits.len(),
            services.len(),
            duration_ms,
            e.service,
            e.pod,
            e.message
        ),
        None => format!(
            "succeeded: {} entries across {} services over {} ms, no errors",
            hits.len(),
            services.len(),
            duration_ms
        ),
    };
    Ok(TraceTimeline {
        trace_id,
        services,
        spans,
        entries: hits.iter().map(|(s, e)| service_line(s, e)).collect(),
        duration_ms,
        first_error,
        verdict,
        notes,
    })
}

impl RenderText for TraceTimeline {
    fn render_text(&self) -> String {
        let mut out = format!("trace {} — {}\n", self.trace_id, self.verdict);
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for s in &self.spans {
            let _ = writeln!(
                out,
                "  span {}/{}: {} entries, {} errors, {} ms ({})",
                s.namespace,
                s.service,
                s.entries,
                s.errors,
                s.duration_ms,
                s.pods.join(", ")
            );
        }
        out.push_str("timeline:\n");
        for line in &self.entries {
            render_service_line(&mut out, line);
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        offset_s: i64,
        level: Level,
        logger: &str,
        message: &str,
        detail: &[&str],
    ) -> LogEntry {
        LogEntry {
            timestamp: Timestamp::from_second(1_700_000_000 + offset_s).unwrap(),
            level,
            logger: logger.into(),
            trace_id: None,
            message: message.into(),
            detail: detail.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn entries_match_on_time_level_and_pattern_in_message_logger_or_stack() {
        let oom = entry(
            10,
            Level::Error,
            "c.a.Reconciler",
            "job failed",
            &["java.lang.OutOfMemoryError: Java heap space"],
        );
        let info = entry(20, Level::Info, "http", "GET /healthz 200", &[]);
        let since = Some(Timestamp::from_second(1_700_000_015).unwrap());
        assert!(entry_matches(&oom, None, None, None));
        assert!(!entry_matches(&oom, since, None, None));
        assert!(entry_matches(&info, since, None, None));
        assert!(entry_matches(&oom, None, Some(Level::Warn), None));
        assert!(!entry_matches(&info, None, Some(Level::Warn), None));
        let heap = compile_pattern("grep", Some("outofmemory")).unwrap();
        assert!(
            entry_matches(&oom, None, None, heap.as_ref()),
            "stack lines, any case"
        );
        assert!(!entry_matches(&info, None, None, heap.as_ref()));
        let logger = compile_pattern("grep", Some("^c\\.a\\.")).unwrap();
        assert!(entry_matches(&oom, None, None, logger.as_ref()));
    }

    #[test]
    fn bad_filters_say_what_is_valid() {
        let bad = compile_pattern("grep", Some("(unclosed"))
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("grep=\"(unclosed\"") && bad.contains("Escape"),
            "{bad}"
        );
        assert!(compile_pattern("grep", Some("")).unwrap().is_none());
        // A pattern within its length limit that compiles to too much is refused at once,
        // naming the argument and quoting only its start.
        let started = std::time::Instant::now();
        let big = compile_pattern("pattern", Some(r"\w{1,100}\w{1,100}\w{1,100}"))
            .unwrap_err()
            .to_string();
        assert!(
            big.starts_with("pattern=\"\\\\w{1,100}") && big.contains("too large"),
            "{big}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // The parser's message is not repeated with the whole pattern in it.
        let long = format!("({}", "a".repeat(900));
        let bad = compile_pattern("grep", Some(&long))
            .unwrap_err()
            .to_string();
        assert!(bad.len() < 300 && bad.contains("unclosed group"), "{bad}");
        let level = parse_level(Some("loud")).unwrap_err().to_string();
        assert!(level.contains("error"), "{level}");
        assert_eq!(parse_level(Some(" WARN ")).unwrap(), Some(Level::Warn));
    }
}
