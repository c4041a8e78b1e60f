//! Result shaping: fits a structured tool result into a token cap without cutting it
//! mid-structure. Long strings are shortened in the middle, long string lists (stack traces)
//! keep their head and tail, runs of similar log lines fold into one line with a count, and
//! lists keep their most relevant items — unhealthy before healthy, warnings before normal, and
//! for logs the newest lines plus the error lines. What was dropped, and the arguments that
//! would narrow the call, go in a `truncated` field that every output schema declares, so a
//! shaped result still validates.
//!
//! The rules read field meanings (`status`, `level`, `type`, `unhealthy`, `restarts`…), not
//! tool names, so every tool is covered without per-tool code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{MODEL_SYNTHESIS, RELEVANT_RUNBOOKS, TRUNCATED};
use super::problem::{is_error_line, severity};
use crate::util::tokens::Encoding;

/// Fields stages add and shaping must leave alone.
const PROTECTED: &[&str] = &[RELEVANT_RUNBOOKS, TRUNCATED, MODEL_SYNTHESIS];

/// What shaping did: the `truncated` field of a shaped result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Truncation {
    /// The token cap the result was shaped to (each view fits it).
    pub max_tokens: usize,
    /// Tokens the full result would have cost.
    pub full_tokens: usize,
    /// True when `full_tokens` was estimated from a sample (results far over the cap).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_tokens_estimated: bool,
    /// Lists that were shortened, with what was kept.
    pub lists: Vec<ShortenedList>,
    /// Strings shortened in the middle (marked `… [N chars omitted] …`).
    pub strings_shortened: usize,
    /// Log lines folded into a similar neighbour (see the entries' `repeated`).
    pub repeats_collapsed: usize,
    /// Arguments that narrow this call, with the values most common among dropped items.
    pub narrow_with: Vec<String>,
    /// The full result, readable page by page (`?page=N`); absent when it was not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_result: Option<String>,
    /// Pages of the full result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<usize>,
    /// How to see what was dropped when the full result was not kept (a terminal call, or a
    /// result larger than the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub see_all: Option<String>,
    /// True when even the smallest shape is over the cap (it is returned anyway).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_cap: bool,
}

/// One shortened list.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ShortenedList {
    /// Where the list is in the result (`pods`, `services[0].pod_problems`).
    pub path: String,
    /// Items kept.
    pub kept: usize,
    /// Items in the full list.
    pub total: usize,
    /// `… N more (of M)`.
    pub more: String,
    /// How the kept items were chosen and in what order they are.
    pub kept_by: String,
}

impl Truncation {
    /// The text block appended to the reply.
    pub fn footer(&self) -> String {
        let mut out = format!(
            "[shaped to fit max_tokens={}; the full result is {}{} tokens]",
            self.max_tokens,
            if self.full_tokens_estimated { "~" } else { "" },
            thousands(self.full_tokens)
        );
        for list in &self.lists {
            out.push_str(&format!(
                "\n  {}: {} kept ({}) {}",
                list.path, list.kept, list.kept_by, list.more
            ));
        }
        if self.repeats_collapsed > 0 {
            out.push_str(&format!(
                "\n  {} similar log lines folded into their neighbours (see [×N])",
                thousands(self.repeats_collapsed)
            ));
        }
        if self.strings_shortened > 0 {
            out.push_str(&format!(
                "\n  {} long strings shortened in the middle",
                self.strings_shortened
            ));
        }
        if !self.narrow_with.is_empty() {
            out.push_str(&format!("\n  narrow with: {}", self.narrow_with.join("; ")));
        }
        if let (Some(uri), Some(pages)) = (&self.full_result, self.pages) {
            out.push_str(&format!(
                "\n  full result: {uri} ({pages} page{}; {uri}?page=N)",
                if pages == 1 { "" } else { "s" }
            ));
        }
        if let Some(hint) = &self.see_all {
            out.push_str(&format!("\n  to see all of it: {hint}"));
        }
        if self.over_cap {
            out.push_str(
                "\n  (still over the cap: this is the smallest shape that keeps the structure)",
            );
        }
        out
    }
}

/// Everything shaping needs besides the result itself.
pub struct ShapeRequest<'a> {
    pub encoding: Encoding,
    /// The cap, in tokens, that each view (text, structured content) must fit.
    pub cap: usize,
    /// The highest cap a caller may ask for (named in the hints).
    pub ceiling: usize,
    /// Renders a structured result as the whole reply text (the `truncated` report included).
    pub render: &'a dyn Fn(&Value) -> String,
    /// Names of the tool's arguments (for narrowing hints).
    pub arguments: Vec<String>,
    /// Arguments the caller already set (not suggested again).
    pub given: Vec<String>,
    /// Link to the stored full result and its page count, when stored.
    pub full_result: Option<(String, usize)>,
    /// The tool's output schema (what an item must keep when it is compacted).
    pub output_schema: &'a JsonObject,
}

/// A shaped result.
pub struct Shaped {
    pub structured: Value,
    pub truncation: Truncation,
    /// Tokens of each view of the shaped reply.
    pub tokens: ViewTokens,
}

/// Tokens of each view of a reply. Hosts show their model one view or the other (Claude
/// Desktop the text, Claude Code and VS Code the structured JSON) or both, so each view must
/// be complete and fit the cap on its own: shaping fits the larger one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ViewTokens {
    /// The `content` text.
    pub text: usize,
    /// `structuredContent` as JSON.
    pub structured: usize,
}

impl ViewTokens {
    pub fn larger(self) -> usize {
        self.text.max(self.structured)
    }

    pub fn both(self) -> usize {
        self.text + self.structured
    }
}

/// Tokens of each view of a reply.
pub fn reply_tokens(request: &ShapeRequest<'_>, value: &Value) -> ViewTokens {
    ViewTokens {
        text: request.encoding.count(&(request.render)(value)),
        structured: request.encoding.count(&value.to_string()),
    }
}

/// Bytes a value serialises to, without building the string.
pub fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Tokens of each view of the full reply: exact when it is small enough to count cheaply,
/// otherwise estimated from samples. Returns (tokens, estimated, tokens of the larger view per
/// byte of JSON) — the last prices list items by their serialised size.
pub fn full_reply_tokens(
    request: &ShapeRequest<'_>,
    text: &str,
    json: &str,
) -> (ViewTokens, bool, f64) {
    const EXACT_UP_TO: usize = 256 * 1024;
    const SAMPLE: usize = 32 * 1024;
    let per_byte = |views: ViewTokens| views.larger() as f64 / json.len().max(1) as f64;
    if text.len() + json.len() <= EXACT_UP_TO {
        let views = ViewTokens {
            text: request.encoding.count(text),
            structured: request.encoding.count(json),
        };
        return (views, false, per_byte(views));
    }
    let estimate = |s: &str| {
        let sample = &s[..floor_char_boundary(s, SAMPLE)];
        let rate = request.encoding.count(sample) as f64 / sample.len().max(1) as f64;
        (s.len() as f64 * rate).round() as usize
    };
    let views = ViewTokens {
        text: estimate(text),
        structured: estimate(json),
    };
    (views, true, per_byte(views))
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Shapes `value` (whose full reply costs `full_tokens`, with `tokens_per_json_byte` for
/// estimating items) to fit `request.cap`.
pub fn shape(
    request: &ShapeRequest<'_>,
    value: &Value,
    full_tokens: usize,
    full_estimated: bool,
    tokens_per_json_byte: f64,
) -> Shaped {
    let truncation = Truncation {
        max_tokens: request.cap,
        full_tokens,
        full_tokens_estimated: full_estimated,
        lists: Vec::new(),
        strings_shortened: 0,
        repeats_collapsed: 0,
        narrow_with: Vec::new(),
        full_result: request.full_result.as_ref().map(|(uri, _)| uri.clone()),
        pages: request.full_result.as_ref().map(|(_, pages)| *pages),
        see_all: request.full_result.is_none().then(|| {
            if full_tokens <= request.ceiling {
                // Round up a little: the count of a reply moves with its shaping report.
                let enough = (full_tokens + full_tokens / 10).div_ceil(100) * 100;
                format!(
                    "call again with max_tokens={} for the whole result, or narrow the call",
                    enough.min(request.ceiling)
                )
            } else {
                format!(
                    "the whole result ({} tokens) is above the {} ceiling; narrow the call",
                    thousands(full_tokens),
                    thousands(request.ceiling)
                )
            }
        }),
        over_cap: false,
    };
    let runs = log_runs(value);
    // Attached runbooks that would take over a quarter of the cap have their excerpts cut
    // from the start (titles and runbook:// links stay): the data comes first.
    let runbooks_heavy = value
        .get(RELEVANT_RUNBOOKS)
        .is_some_and(|r| json_len(r) as f64 * tokens_per_json_byte > request.cap as f64 / 4.0);
    let run = |level: Level| {
        let mut work = value.clone();
        let mut pass = truncation.clone();
        compact_strings(&mut work, level, &mut pass);
        if runbooks_heavy || level.trims_runbooks() {
            trim_runbooks(&mut work, level == Level::OneRunbook, &mut pass);
        }
        let lists = collect_lists(&mut work, &runs, &mut pass);
        fit_lists(request, work, lists, pass, tokens_per_json_byte, level)
    };
    let fits = |s: &Shaped| s.tokens.larger() <= request.cap;
    let mut smallest: Option<Shaped> = None;
    let mut keep_smallest = |s: Shaped| {
        if smallest
            .as_ref()
            .is_none_or(|best| s.tokens.larger() < best.tokens.larger())
        {
            smallest = Some(s);
        }
    };
    // Whole items first: when every item fits, nothing else is needed.
    let (gentle, gentle_kept, wanted) = run(Level::Gentle);
    if fits(&gentle) && gentle_kept >= wanted {
        return gentle;
    }
    // A log keeps its newest and error lines, each whole with its stack trace: when whole
    // entries already give a fair number of them, compacting them all is no gain.
    const FEW: usize = 10;
    if fits(&gentle) && gentle_kept >= wanted.min(FEW) && only_logs(value) {
        return gentle;
    }
    // Breadth before depth: every item goes to its compact form before any whole item is
    // dropped. When compacting keeps no more items than whole items do (a list of flat
    // items, such as pods or log lines), the whole items stand.
    let (compact, compact_kept, _) = run(Level::Compact);
    if fits(&compact) && compact_kept > gentle_kept || !fits(&gentle) && fits(&compact) {
        // The least compaction that keeps as many items. Each level compacts more than the
        // one before it, so when the strongest of them (Summary) keeps fewer, the others do
        // too: one pass settles the common case.
        let mut best = compact;
        for level in [Level::Summary, Level::Minimal, Level::Hard] {
            let (shaped, kept, _) = run(level);
            if !(fits(&shaped) && kept >= compact_kept) {
                break;
            }
            best = shaped;
        }
        return best;
    }
    if fits(&gentle) {
        return gentle;
    }
    keep_smallest(gentle);
    keep_smallest(compact);
    // Nothing fits yet: the attached runbooks give way, the data stays.
    for level in [Level::ShortRunbooks, Level::OneRunbook] {
        let (shaped, _, _) = run(level);
        if fits(&shaped) {
            return shaped;
        }
        keep_smallest(shaped);
    }
    let mut shaped = smallest.expect("at least one pass ran");
    shaped.truncation.over_cap = true;
    shaped.structured[TRUNCATED] = serde_json::to_value(&shaped.truncation).unwrap_or_default();
    shaped.tokens = reply_tokens(request, &shaped.structured);
    shaped
}

/// How hard items are compacted before lists are cut.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    /// Only very long strings and string lists; items otherwise whole.
    Gentle,
    /// Shorter strings and stack traces; nested lists keep their 3 most relevant items (all
    /// of them in the most relevant item).
    Hard,
    /// Short strings, 3-line traces, nested lists keep their most relevant item.
    Minimal,
    /// As minimal, and nested lists emptied except in the most relevant item: the others
    /// become one-line summaries.
    Summary,
    /// Every item in its compact form: nested lists emptied and optional nested detail
    /// (fields the item's schema does not require) removed, in every item alike.
    Compact,
    /// As minimal, and the attached runbooks' excerpts cut short (titles and links stay):
    /// only when nothing else fits.
    ShortRunbooks,
    /// As minimal, and only the most relevant attached runbook kept: the last resort.
    OneRunbook,
}

impl Level {
    /// Whether the attached runbooks' excerpts are cut short (titles and links stay): in the
    /// compact form too, so that a list keeps its items before the runbooks keep their text.
    fn trims_runbooks(self) -> bool {
        matches!(
            self,
            Level::Compact | Level::ShortRunbooks | Level::OneRunbook
        )
    }

    /// Strings longer than this many chars are shortened to (head, tail) chars.
    fn string_limits(self) -> (usize, usize, usize) {
        match self {
            Level::Gentle => (1200, 600, 200),
            Level::Hard => (600, 400, 150),
            Level::Minimal
            | Level::Summary
            | Level::Compact
            | Level::ShortRunbooks
            | Level::OneRunbook => (300, 200, 80),
        }
    }

    /// String lists longer than this keep (head, tail) items.
    fn string_list_limits(self) -> (usize, usize, usize) {
        match self {
            Level::Gentle => (40, 20, 10),
            Level::Hard => (10, 5, 2),
            Level::Minimal
            | Level::Summary
            | Level::Compact
            | Level::ShortRunbooks
            | Level::OneRunbook => (3, 2, 1),
        }
    }

    /// Items kept in lists nested inside a list's items (`None`: not cut); `top` is the
    /// list's most relevant item, which keeps more.
    fn nested_keep(self, top: bool) -> Option<usize> {
        match (self, top) {
            (Level::Gentle, _) | (Level::Hard, true) => None,
            (Level::Hard, false) => Some(3),
            (Level::Minimal, _) => Some(1),
            (Level::Summary, true) => Some(1),
            (Level::Summary, false) => Some(0),
            (Level::Compact | Level::ShortRunbooks | Level::OneRunbook, _) => Some(0),
        }
    }

    /// Whether items lose the optional nested detail their schema does not require.
    fn strips_optional_detail(self) -> bool {
        matches!(
            self,
            Level::Compact | Level::ShortRunbooks | Level::OneRunbook
        )
    }
}

/// Shortens long strings and long string lists everywhere outside the protected fields.
fn compact_strings(value: &mut Value, level: Level, truncation: &mut Truncation) {
    fn walk(value: &mut Value, level: Level, count: &mut usize) {
        match value {
            Value::String(s) => {
                let (limit, head, tail) = level.string_limits();
                if s.chars().count() > limit {
                    *s = ellipsize_middle(s, head, tail);
                    *count += 1;
                }
            }
            Value::Array(items) => {
                let (limit, head, tail) = level.string_list_limits();
                if items.len() > limit && items.iter().all(Value::is_string) {
                    let omitted = items.len() - head - tail;
                    items.splice(
                        head..items.len() - tail,
                        [Value::String(format!("… [{omitted} lines omitted] …"))],
                    );
                    *count += 1;
                }
                items.iter_mut().for_each(|v| walk(v, level, count));
            }
            Value::Object(map) => map.iter_mut().for_each(|(_, v)| walk(v, level, count)),
            _ => {}
        }
    }
    let mut count = 0;
    if let Value::Object(map) = value {
        for (key, field) in map.iter_mut() {
            if !PROTECTED.contains(&key.as_str()) {
                walk(field, level, &mut count);
            }
        }
    }
    truncation.strings_shortened = count;
}

/// Shortens the attached runbooks' excerpts (the runbook:// link has the whole text), and
/// with `only_best` keeps just the most relevant runbook.
fn trim_runbooks(value: &mut Value, only_best: bool, truncation: &mut Truncation) {
    let Some(Value::Array(runbooks)) = value.get_mut(RELEVANT_RUNBOOKS) else {
        return;
    };
    let total = runbooks.len();
    if only_best {
        // The one with the highest relevance score stays.
        let score = |r: &Value| r.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        let best = (0..runbooks.len()).max_by(|&a, &b| {
            score(&runbooks[a])
                .total_cmp(&score(&runbooks[b]))
                .then(b.cmp(&a))
        });
        if let Some(best) = best {
            let kept = runbooks.swap_remove(best);
            *runbooks = vec![kept];
        }
    }
    for runbook in runbooks.iter_mut() {
        if let Some(Value::String(excerpt)) = runbook.get_mut("excerpt")
            && excerpt.chars().count() > 160
        {
            // Whole items or sentences still: the first that fit.
            *excerpt = crate::util::summary::shorten(excerpt, 160);
            truncation.strings_shortened += 1;
        }
    }
    if runbooks.len() < total {
        truncation.lists.push(ShortenedList {
            path: RELEVANT_RUNBOOKS.into(),
            kept: 1,
            total,
            more: format!("… {} more (of {})", total - 1, total),
            kept_by: "highest relevance".into(),
        });
    }
}

/// Keeps `head` chars, a marker, and `tail` chars.
pub fn ellipsize_middle(s: &str, head: usize, tail: usize) -> String {
    let total = s.chars().count();
    if total <= head + tail {
        return s.to_string();
    }
    let start: String = s.chars().take(head).collect();
    let omitted = total - head - tail;
    if tail == 0 {
        return format!("{start} … [{omitted} chars omitted]");
    }
    let end: String = s.chars().skip(total - tail).collect();
    format!("{start} … [{omitted} chars omitted] … {end}")
}

/// A list that may be shortened, taken out of the result while it is fitted.
struct Candidate {
    key: String,
    items: Vec<Value>,
    /// Items of the original list each entry stands for (>1 after folding repeats).
    weights: Vec<usize>,
    /// Estimated tokens per item.
    costs: Vec<f64>,
    total: usize,
    log: bool,
    /// Error or fatal log lines (logs only).
    errors: Vec<bool>,
    /// Indices in keep-preference order.
    preference: Vec<usize>,
}

/// Takes the top-level lists out of the result (leaving empty arrays) and folds log repeats.
/// `runs` holds, per log list, the lengths of its runs of similar lines (see [`log_runs`]).
fn collect_lists(
    value: &mut Value,
    runs: &HashMap<String, Vec<usize>>,
    truncation: &mut Truncation,
) -> Vec<Candidate> {
    let Value::Object(map) = value else {
        return Vec::new();
    };
    let mut lists = Vec::new();
    for (key, field) in map.iter_mut() {
        if PROTECTED.contains(&key.as_str()) {
            continue;
        }
        let Value::Array(items) = field else { continue };
        if items.is_empty() {
            continue;
        }
        let items = std::mem::take(items);
        let total = items.len();
        // log_runs found runs for exactly the log lists.
        let log = runs.contains_key(key);
        let (items, weights) = if let Some(runs) = runs.get(key) {
            fold_runs(items, runs)
        } else {
            let n = items.len();
            (items, vec![1; n])
        };
        truncation.repeats_collapsed += total - items.len();
        let preference = if log {
            log_preference(&items)
        } else {
            relevance_order(&items)
        };
        let errors = items.iter().map(is_error_line).collect();
        lists.push(Candidate {
            errors,
            key: key.clone(),
            costs: Vec::new(),
            weights,
            items,
            total,
            log,
            preference,
        });
    }
    lists
}

/// Whether every list in the result (outside the stages' fields) is a log.
fn only_logs(value: &Value) -> bool {
    let Value::Object(map) = value else {
        return false;
    };
    let mut lists = map
        .iter()
        .filter(|(k, _)| !PROTECTED.contains(&k.as_str()))
        .filter_map(|(_, v)| v.as_array())
        .filter(|items| !items.is_empty())
        .peekable();
    lists.peek().is_some() && lists.all(|items| is_log_list(items))
}

fn is_log_list(items: &[Value]) -> bool {
    items.iter().take(8).all(|item| {
        item.get("timestamp").is_some_and(Value::is_string)
            && item.get("level").is_some_and(Value::is_string)
            && item.get("message").is_some_and(Value::is_string)
    })
}

/// Folds runs of consecutive log entries that differ only in time, trace id and the ids or
/// numbers in their message; the newest of each run stands for it with `repeated: N`.
fn fold_runs(items: Vec<Value>, runs: &[usize]) -> (Vec<Value>, Vec<usize>) {
    let mut out: Vec<Value> = Vec::with_capacity(runs.len());
    let mut items = items.into_iter();
    for &length in runs {
        let run: Vec<Value> = items.by_ref().take(length).collect();
        // Keep the newest entry of the run.
        let Some(mut newest) = run.into_iter().max_by(|a, b| {
            a.get("timestamp")
                .and_then(Value::as_str)
                .cmp(&b.get("timestamp").and_then(Value::as_str))
        }) else {
            continue;
        };
        if length > 1 {
            newest["repeated"] = Value::from(length);
        }
        out.push(newest);
    }
    (out, runs.to_vec())
}

/// Lengths of the runs of consecutive similar entries in each top-level log list: entries
/// that differ only in time, trace id and the ids or numbers in their message. Computed once
/// on the full result, whatever later passes shorten.
fn log_runs(value: &Value) -> HashMap<String, Vec<usize>> {
    fn identity(item: &Value) -> String {
        let mut key = String::new();
        if let Value::Object(map) = item {
            for (k, v) in map {
                match k.as_str() {
                    "timestamp" | "trace_id" | "repeated" => {}
                    "message" => key.push_str(&crate::util::logs::normalise_message(
                        v.as_str().unwrap_or(""),
                    )),
                    _ => key.push_str(&v.to_string()),
                }
                key.push('\u{1f}');
            }
        }
        key
    }
    let mut all = HashMap::new();
    let Value::Object(map) = value else {
        return all;
    };
    for (key, field) in map {
        let Value::Array(items) = field else { continue };
        if PROTECTED.contains(&key.as_str()) || items.is_empty() || !is_log_list(items) {
            continue;
        }
        let mut runs: Vec<usize> = Vec::new();
        let mut last = String::new();
        for item in items {
            let identity = identity(item);
            match runs.last_mut() {
                Some(n) if identity == last => *n += 1,
                _ => {
                    runs.push(1);
                    last = identity;
                }
            }
        }
        all.insert(key.clone(), runs);
    }
    all
}

/// How much attention an item asks for, read from the meaning of its fields.
/// Most severe first; the tool's own order (newest first, largest first…) breaks ties.
fn relevance_order(items: &[Value]) -> Vec<usize> {
    let scores: Vec<i64> = items.iter().map(severity).collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(scores[i]));
    order
}

/// Newest first (the tool's order breaks ties, later first).
fn log_preference(items: &[Value]) -> Vec<usize> {
    let timestamp = |i: usize| {
        items[i]
            .get("timestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| timestamp(b).cmp(timestamp(a)).then_with(|| b.cmp(&a)));
    order
}

/// Chooses how many items of each list to keep so the reply fits, measuring the real reply
/// and tightening until it does.
fn fit_lists(
    request: &ShapeRequest<'_>,
    skeleton: Value,
    mut lists: Vec<Candidate>,
    mut truncation: Truncation,
    tokens_per_json_byte: f64,
    level: Level,
) -> (Shaped, usize, usize) {
    // Lists shortened before this point (attached runbooks) stay reported.
    let preset = truncation.lists.clone();
    // Nested lists are cut before items are priced, so the prices are what is sent.
    let mut nested: Vec<Vec<Vec<ShortenedList>>> = Vec::new();
    for list in &mut lists {
        let mut cuts = vec![Vec::new(); list.items.len()];
        // The most relevant item keeps more of its nested lists than the others.
        let top = list.preference.first().copied();
        let required = level
            .strips_optional_detail()
            .then(|| item_required_fields(request.output_schema, &list.key))
            .flatten();
        for (i, item) in list.items.iter_mut().enumerate() {
            let path = format!("{}[]", list.key);
            if let Some(required) = &required {
                strip_optional_detail(item, required, &path, &mut cuts[i]);
            }
            if let Some(keep) = level.nested_keep(Some(i) == top) {
                compact_nested(item, &path, keep, &mut cuts[i]);
            }
        }
        nested.push(cuts);
        list.costs = list
            .items
            .iter()
            .map(|item| (json_len(item) + 1) as f64 * tokens_per_json_byte)
            .collect();
    }
    // The result with every list empty: what the lists share the rest of the cap with.
    let base = {
        let mut probe = skeleton.clone();
        truncation.lists = preset.clone();
        truncation
            .lists
            .extend(lists.iter().map(|l| describe(l, &[])));
        probe[TRUNCATED] = serde_json::to_value(&truncation).unwrap_or_default();
        reply_tokens(request, &probe).larger()
    };
    let mut available = request.cap.saturating_sub(base) as f64;
    let mut attempt = 0;
    // Whether an attempt already grew the offer past the estimate without keeping more.
    let mut stalled = false;
    // The best shape that fits so far (or, when none fits, the last one tried).
    let mut fitted: Option<(Shaped, usize)> = None;
    // The items of the last shape that fitted, and their estimated price.
    let mut fitted_choice: Option<Vec<Vec<usize>>> = None;
    let mut fitted_used = 0.0;
    loop {
        attempt += 1;
        let allowances = water_fill(
            &lists
                .iter()
                .map(|l| l.costs.iter().sum::<f64>())
                .collect::<Vec<_>>(),
            available,
        );
        let chosen: Vec<Vec<usize>> = lists
            .iter()
            .zip(&allowances)
            .map(|(list, &allowance)| choose(list, allowance))
            .collect();
        // A larger offer that keeps the same items as the shape that fitted needs no
        // measuring: the same reply would come back.
        if fitted_choice.as_ref() == Some(&chosen) {
            if stalled {
                break;
            }
            match next_item_price(&lists, &chosen) {
                Some(next) => available = available.max(fitted_used + next + 1.0),
                None => break,
            }
            stalled = true;
            continue;
        }
        let mut candidate = skeleton.clone();
        truncation.lists = preset.clone();
        for ((list, keep), cuts) in lists.iter().zip(&chosen).zip(&nested) {
            let kept: Vec<Value> = keep.iter().map(|&i| list.items[i].clone()).collect();
            candidate[list.key.as_str()] = Value::Array(kept);
            if keep.len() < list.items.len() || list.total > list.items.len() {
                truncation.lists.push(describe(list, keep));
            }
            // Nested cuts are reported per nested list across the kept items
            // (`services[].pod_problems`), not once per item.
            let mut merged: Vec<ShortenedList> = Vec::new();
            for cut in keep.iter().flat_map(|&i| &cuts[i]) {
                match merged.iter_mut().find(|m| m.path == cut.path) {
                    Some(m) => {
                        m.kept += cut.kept;
                        m.total += cut.total;
                    }
                    None => merged.push(cut.clone()),
                }
            }
            for m in &mut merged {
                m.more = format!(
                    "… {} more (of {})",
                    thousands(m.total - m.kept),
                    thousands(m.total)
                );
            }
            truncation.lists.extend(merged);
        }
        truncation.narrow_with = narrowing_hints(request, &lists, &chosen);
        candidate[TRUNCATED] = serde_json::to_value(&truncation).unwrap_or_default();
        let views = reply_tokens(request, &candidate);
        let tokens = views.larger();
        let kept: usize = lists
            .iter()
            .zip(&chosen)
            .map(|(l, keep)| keep.iter().map(|&i| l.weights[i]).sum::<usize>())
            .sum();
        let used: f64 = lists
            .iter()
            .zip(&chosen)
            .map(|(l, keep)| keep.iter().map(|&i| l.costs[i]).sum::<f64>())
            .sum();
        let all_kept = chosen
            .iter()
            .zip(&lists)
            .all(|(keep, l)| keep.len() == l.items.len());
        if tokens <= request.cap {
            // Fits. Item prices are estimates: if the room left would take more items, grow
            // (a few times at most) and keep the last shape that fitted.
            let slack = (request.cap - tokens) as f64;
            let grows = fitted.as_ref().is_none_or(|f| kept > f.1);
            if grows {
                fitted = Some((
                    Shaped {
                        structured: candidate,
                        truncation: truncation.clone(),
                        tokens: views,
                    },
                    kept,
                ));
            }
            if all_kept || attempt >= 12 || slack < 24.0 || !grows && stalled {
                break;
            }
            // Re-price the items by what the kept ones really cost, and offer the room left.
            let scale = calibrate(tokens, base, used);
            available = (used + slack / scale).max(available + 1.0);
            fitted_used = used;
            fitted_choice = Some(chosen);
            if !grows {
                // The estimate kept no more items: offer the price of the next one exactly,
                // once; the measured reply decides.
                match next_item_price(&lists, fitted_choice.as_deref().unwrap_or_default()) {
                    Some(next) => available = available.max(used + next + 1.0),
                    None => break,
                }
                stalled = true;
            }
            continue;
        }
        let kept_any_less = chosen.iter().map(Vec::len).sum::<usize>()
            > lists.iter().filter(|l| !l.items.is_empty()).count();
        if fitted.is_some() || attempt >= 12 || !kept_any_less {
            if fitted.is_none() {
                fitted = Some((
                    Shaped {
                        structured: candidate,
                        truncation: truncation.clone(),
                        tokens: views,
                    },
                    kept,
                ));
            }
            break;
        }
        // Over: re-price the items by what the kept ones really cost, and try again with
        // less (always strictly less than was used).
        let scale = calibrate(tokens, base, used);
        let target = request.cap.saturating_sub(base) as f64 / scale * 0.97;
        available = target.min(used - 1.0).max(0.0);
    }
    let wanted = lists.iter().map(|l| l.total).sum();
    let (shaped, kept) = fitted.expect("the loop ends with a shape");
    (shaped, kept, wanted)
}

/// The estimated price of the cheapest item not kept that a list would take next.
fn next_item_price(lists: &[Candidate], chosen: &[Vec<usize>]) -> Option<f64> {
    let next = lists
        .iter()
        .zip(chosen)
        .filter_map(|(l, keep)| {
            l.preference
                .iter()
                .find(|i| !keep.contains(i))
                .map(|&i| l.costs[i])
        })
        .fold(f64::INFINITY, f64::min);
    next.is_finite().then_some(next)
}

/// How much more (or less) the kept items cost than their estimated prices.
fn calibrate(tokens: usize, base: usize, estimated: f64) -> f64 {
    if estimated <= 0.0 {
        return 1.0;
    }
    (tokens.saturating_sub(base) as f64 / estimated).clamp(0.2, 5.0)
}

/// Splits `available` tokens among lists: small lists stay whole, big ones share the rest.
fn water_fill(costs: &[f64], available: f64) -> Vec<f64> {
    let mut allowances = vec![0.0; costs.len()];
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[a].total_cmp(&costs[b]));
    let mut left = available;
    for (position, &i) in order.iter().enumerate() {
        let share = left / (order.len() - position) as f64;
        allowances[i] = costs[i].min(share);
        left -= allowances[i];
    }
    allowances
}

/// Indices of the items kept within `allowance`, in output order. At least one item is kept.
fn choose(list: &Candidate, allowance: f64) -> Vec<usize> {
    if list.log {
        return choose_log_lines(list, allowance);
    }
    let mut kept = Vec::new();
    let mut used = 0.0;
    // The allowance may be exactly the sum of the costs, added up in another order: a
    // rounding error must not drop the last item.
    let allowance = allowance + 1e-6;
    for &i in &list.preference {
        if used + list.costs[i] > allowance && !kept.is_empty() {
            break;
        }
        used += list.costs[i];
        kept.push(i);
    }
    kept
}

/// Logs: the newest error lines take up to half the allowance, the newest lines of any level
/// the rest, then more error lines if room is left; they are returned in time order.
fn choose_log_lines(list: &Candidate, allowance: f64) -> Vec<usize> {
    let mut taken = vec![false; list.items.len()];
    let mut used = 0.0;
    let mut take = |filter: &dyn Fn(usize) -> bool, limit: f64, taken: &mut Vec<bool>| {
        for &i in &list.preference {
            if taken[i] || !filter(i) {
                continue;
            }
            if used + list.costs[i] > limit + 1e-6 {
                // A later (older) line may still be shorter; keep looking.
                continue;
            }
            used += list.costs[i];
            taken[i] = true;
        }
    };
    take(&|i| list.errors[i], allowance / 2.0, &mut taken);
    take(&|_| true, allowance, &mut taken);
    let mut kept: Vec<usize> = (0..list.items.len()).filter(|&i| taken[i]).collect();
    if kept.is_empty()
        && let Some(&first) = list.preference.first()
    {
        kept.push(first);
    }
    kept
}

fn describe(list: &Candidate, keep: &[usize]) -> ShortenedList {
    let represented: usize = keep.iter().map(|&i| list.weights[i]).sum();
    ShortenedList {
        path: list.key.clone(),
        kept: keep.len(),
        total: list.total,
        more: format!(
            "… {} more (of {})",
            thousands(list.total - represented),
            thousands(list.total)
        ),
        kept_by: if list.log {
            "error lines and newest lines, in time order".into()
        } else {
            "most relevant first".into()
        },
    }
}

/// Shortens the object lists inside one kept item to their `keep` most relevant items.
/// The fields an item of the top-level list `key` must have, from the tool's output schema
/// (`None` when the schema does not say: then nothing is stripped).
fn item_required_fields(schema: &JsonObject, key: &str) -> Option<BTreeSet<String>> {
    let mut item = schema.get("properties")?.get(key)?.get("items")?;
    // `$ref: "#/$defs/Name"`, followed once.
    if let Some(reference) = item.get("$ref").and_then(Value::as_str) {
        let name = reference.strip_prefix("#/$defs/")?;
        item = schema.get("$defs")?.get(name)?;
    }
    Some(
        item.get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Removes an item's optional nested detail: list and object fields its schema does not
/// require. Reported like a cut nested list (`services[].last_deploy: 0 kept … 1 more`).
fn strip_optional_detail(
    item: &mut Value,
    required: &BTreeSet<String>,
    path: &str,
    cuts: &mut Vec<ShortenedList>,
) {
    let Value::Object(map) = item else { return };
    let optional: Vec<String> = map
        .iter()
        .filter(|(k, v)| !required.contains(*k) && (v.is_array() || v.is_object()))
        .map(|(k, _)| k.clone())
        .collect();
    for key in optional {
        let total = match map.remove(&key) {
            Some(Value::Array(items)) => items.len(),
            _ => 1,
        };
        if total > 0 {
            cuts.push(ShortenedList {
                path: format!("{path}.{key}"),
                kept: 0,
                total,
                more: format!("… {} more (of {})", thousands(total), thousands(total)),
                kept_by: "compact form: detail left out so every item fits".into(),
            });
        }
    }
}

fn compact_nested(item: &mut Value, path: &str, keep: usize, cuts: &mut Vec<ShortenedList>) {
    let Value::Object(map) = item else { return };
    for (key, field) in map.iter_mut() {
        let Value::Array(items) = field else { continue };
        if items.len() <= keep || !items.iter().all(Value::is_object) {
            continue;
        }
        let order = relevance_order(items);
        let total = items.len();
        let kept: Vec<Value> = order[..keep].iter().map(|&i| items[i].clone()).collect();
        *items = kept;
        cuts.push(ShortenedList {
            path: format!("{path}.{key}"),
            kept: keep,
            total,
            more: format!(
                "… {} more (of {})",
                thousands(total - keep),
                thousands(total)
            ),
            kept_by: "most relevant first".into(),
        });
    }
}

/// Argument hints for the tool, with the values most common among the dropped items.
fn narrowing_hints(
    request: &ShapeRequest<'_>,
    lists: &[Candidate],
    chosen: &[Vec<usize>],
) -> Vec<String> {
    const HINTS: &[(&str, &str)] = &[
        ("status", "status=<pod status>"),
        ("label_selector", "label_selector=<key=value>"),
        ("level", "level=error"),
        ("since", "since=15m"),
        ("pattern", "pattern=<regex>"),
        ("grep", "grep=<regex>"),
        ("type", "type=Warning"),
        ("object", "object=<Kind/name>"),
        ("service", "service=<name>"),
        ("namespace", "namespace=<name>"),
        ("tail_lines", "tail_lines=<n>"),
        ("limit", "limit=<n>"),
        ("hours_back", "hours_back=<n>"),
    ];
    let mut hints = Vec::new();
    for (argument, hint) in HINTS {
        if !request.arguments.iter().any(|a| a == argument)
            || request.given.iter().any(|a| a == argument)
        {
            continue;
        }
        // Values of the matching field among the dropped items, most common first — only
        // for fields with few distinct values, where a value is a useful filter.
        if !["status", "level", "type", "service"].contains(argument) {
            hints.push(hint.to_string());
            continue;
        }
        // value → (dropped items with it, best relevance rank among them)
        let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (list, keep) in lists.iter().zip(chosen) {
            // A list of services names them in `name`.
            let field = if *argument == "service" && list.key == "services" {
                "name"
            } else {
                argument
            };
            let kept: std::collections::HashSet<usize> = keep.iter().copied().collect();
            for (rank, &i) in list.preference.iter().enumerate() {
                if kept.contains(&i) {
                    continue;
                }
                if let Some(v) = list.items[i].get(field).and_then(Value::as_str) {
                    let entry = counts.entry(v.to_string()).or_insert((0, rank));
                    entry.0 += list.weights[i];
                    entry.1 = entry.1.min(rank);
                }
            }
        }
        let mut counted: Vec<(String, (usize, usize))> = counts.into_iter().collect();
        counted.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
        let show_counts = counted.iter().any(|(_, (n, _))| *n > 1);
        if counted.is_empty() {
            hints.push(hint.to_string());
        } else {
            let values: Vec<String> = counted
                .iter()
                .take(3)
                .map(|(v, (n, _))| {
                    if show_counts {
                        format!("{v} {}", thousands(*n))
                    } else {
                        v.clone()
                    }
                })
                .collect();
            hints.push(format!("{hint} (dropped: {})", values.join(", ")));
        }
    }
    if request.cap < request.ceiling {
        hints.push(format!("max_tokens=<n> (up to {})", request.ceiling));
    }
    hints
}

/// `1234567` → `1,234,567`.
pub use crate::util::quote::thousands;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn middle_ellipsis_keeps_head_and_tail() {
        let s = "a".repeat(10) + &"b".repeat(100) + &"c".repeat(10);
        let short = ellipsize_middle(&s, 10, 10);
        assert!(short.starts_with("aaaaaaaaaa … [100 chars omitted] … "));
        assert!(short.ends_with("cccccccccc"));
        assert_eq!(ellipsize_middle("short", 10, 10), "short");
    }

    #[test]
    fn repeats_fold_into_the_newest_with_a_count() {
        let items = vec![
            json!({"timestamp": "t1", "level": "INFO", "message": "GET /healthz 200 1ms"}),
            json!({"timestamp": "t2", "level": "INFO", "message": "GET /healthz 200 3ms"}),
            json!({"timestamp": "t3", "level": "ERROR", "message": "boom"}),
            json!({"timestamp": "t4", "level": "INFO", "message": "GET /healthz 200 2ms"}),
        ];
        let runs = log_runs(&json!({ "entries": items.clone() }));
        assert_eq!(runs["entries"], vec![2, 1, 1]);
        let (out, weights) = fold_runs(items, &runs["entries"]);
        assert_eq!(weights, vec![2, 1, 1]);
        assert_eq!(out[0]["timestamp"], "t2");
        assert_eq!(out[0]["repeated"], 2);
        assert!(out[1].get("repeated").is_none());
    }

    #[test]
    fn the_last_resort_keeps_the_most_relevant_runbook() {
        let mut value = json!({"relevant_runbooks": [
            {"title": "a", "score": 0.4, "excerpt": "x"},
            {"title": "b", "score": 0.7, "excerpt": "y"},
            {"title": "c", "score": 0.5, "excerpt": "z"},
        ]});
        let mut truncation: Truncation = serde_json::from_value(json!({
            "max_tokens": 500, "full_tokens": 900, "lists": [], "strings_shortened": 0,
            "repeats_collapsed": 0, "narrow_with": []
        }))
        .unwrap();
        trim_runbooks(&mut value, true, &mut truncation);
        assert_eq!(
            value["relevant_runbooks"],
            json!([{"title": "b", "score": 0.7, "excerpt": "y"}])
        );
        assert_eq!(truncation.lists[0].more, "… 2 more (of 3)");
    }

    #[test]
    fn water_fill_keeps_small_lists_whole() {
        let a = water_fill(&[10.0, 1000.0, 50.0], 300.0);
        assert_eq!(a[0], 10.0);
        assert_eq!(a[2], 50.0);
        assert_eq!(a[1], 240.0);
    }
}
