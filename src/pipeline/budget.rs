//! The budget and cost tracker, the last stage of the result pipeline: counts the tokens each
//! result costs the client with a real BPE tokenizer, keeps the session ledger (per tool and in
//! total, with cost from a price table), warns at 80% of a budget and refuses tool calls past
//! 100%. Reading `system://health` and `budget://usage` never costs budget.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::client::ClientFacts;
use super::envelope::render_reply;
use super::result_store::{ResultStore, StoredResult, paginate};
use super::shape::{ShapeRequest, ViewTokens, full_reply_tokens, shape};
use super::{Call, Outcome, Rendered, Stage, StagedResult, ToolReply};
use crate::tools::ToolDef;
use crate::util::quote::{short, thousands};

pub use crate::util::tokens::Encoding;

/// Input prices in USD per million tokens, as published by the vendors (anthropic.com/pricing,
/// openai.com/api/pricing) when this table was written; `--price-per-mtok` overrides it.
pub const PRICES: &[(&str, f64)] = &[
    ("claude-sonnet-4-5", 3.0),
    ("claude-opus-4-1", 15.0),
    ("claude-haiku-4-5", 1.0),
    ("gpt-4o", 2.5),
    ("gpt-4.1", 2.0),
];

pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

pub fn price_for(model: &str) -> Result<f64, String> {
    PRICES
        .iter()
        .find(|(m, _)| *m == model)
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            format!(
                "unknown model {model:?} for pricing; known: {} (or set --price-per-mtok)",
                PRICES
                    .iter()
                    .map(|(m, _)| *m)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// `--count-view`: which view(s) of a reply the ledger books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CountView {
    /// By the client's `clientInfo.name` (see [`view_seen_by`]); the larger view for a client
    /// not in the table.
    #[default]
    Auto,
    /// The `content` text only.
    Text,
    /// The structured content only.
    Structured,
    /// Both (a host that passes both to its model).
    Both,
}

/// What a host passes its model from a tool result, by `clientInfo.name`, with where that was
/// observed (the sources are collected in the project's host notes). Names compare without
/// case, spaces, `-` and `_`.
const HOST_VIEWS: &[(&str, CountView, &str)] = &[
    // Claude Desktop / claude.ai ignore structuredContent (blockscout/mcp-server #324).
    (
        "claude-ai",
        CountView::Text,
        "Claude Desktop passes the text content only",
    ),
    // Claude Code stringifies structuredContent and drops the text (anthropics/claude-code
    // #55677, #79944).
    (
        "claude-code",
        CountView::Structured,
        "Claude Code passes only the structured content",
    ),
    // VS Code prefers structured content to text (microsoft/vscode #290063).
    (
        "Visual Studio Code",
        CountView::Structured,
        "VS Code passes the structured content",
    ),
    // ChatGPT apps read both views (blockscout/mcp-server #324).
    ("ChatGPT", CountView::Both, "ChatGPT apps pass both views"),
];

/// The view a client's model sees, and the rule that said so.
pub fn view_seen_by(setting: CountView, client: Option<&str>) -> (CountView, String) {
    if setting != CountView::Auto {
        return (setting, format!("--count-view {}", setting.as_str()));
    }
    let key = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    match client {
        Some(name) => match HOST_VIEWS.iter().find(|(host, ..)| key(host) == key(name)) {
            Some((_, view, why)) => (*view, format!("client {}: {why}", short(name))),
            None => (
                CountView::Auto,
                format!(
                    "client {} is not in the host table: the larger view is booked",
                    short(name)
                ),
            ),
        },
        None => (
            CountView::Auto,
            "no client name yet: the larger view is booked".into(),
        ),
    }
}

impl CountView {
    pub fn as_str(self) -> &'static str {
        match self {
            CountView::Auto => "auto",
            CountView::Text => "text",
            CountView::Structured => "structured",
            CountView::Both => "both",
        }
    }

    /// Tokens booked for a reply with these views (`Auto` here means "unknown client": the
    /// larger view).
    pub fn book(self, views: ViewTokens) -> usize {
        match self {
            CountView::Text => views.text,
            CountView::Structured => views.structured,
            CountView::Both => views.both(),
            CountView::Auto => views.larger(),
        }
    }
}

/// Budget settings.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    pub encoding: Encoding,
    /// Which view(s) the ledger books.
    pub count_view: CountView,
    pub model: String,
    pub price_per_mtok: f64,
    pub budget_tokens: Option<u64>,
    pub budget_usd: Option<f64>,
    pub shaping: ShapingConfig,
}

/// The smallest cap a caller may ask for: below it not even a list's first item and the note
/// saying what was dropped fit.
pub const MIN_RESULT_TOKENS: usize = 500;

/// The largest `max_tokens` a call may ask for (stated in every tool's input schema), and the
/// highest `--max-result-tokens-ceiling`: a larger number is an error, not a cap.
pub const MAX_TOKENS_LIMIT: usize = 10_000_000;

/// Per-result caps and the full-result store.
#[derive(Debug, Clone)]
pub struct ShapingConfig {
    /// Default cap per tool result, in tokens, for each view (the text, the structured content).
    pub max_result_tokens: usize,
    /// Highest cap a caller's `max_tokens` may set; larger values are clamped to it.
    pub ceiling: usize,
    /// Bytes of full results kept for `result://` (least recently used evicted first).
    pub store_bytes: usize,
}

impl ShapingConfig {
    pub const DEFAULT_MAX_RESULT_TOKENS: usize = 2_000;
    pub const DEFAULT_CEILING: usize = 25_000;
    pub const DEFAULT_STORE_MB: usize = 32;
}

impl Default for ShapingConfig {
    fn default() -> Self {
        ShapingConfig {
            max_result_tokens: ShapingConfig::DEFAULT_MAX_RESULT_TOKENS,
            ceiling: ShapingConfig::DEFAULT_CEILING,
            store_bytes: ShapingConfig::DEFAULT_STORE_MB * 1024 * 1024,
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            encoding: Encoding::O200kBase,
            count_view: CountView::Auto,
            model: DEFAULT_MODEL.to_string(),
            price_per_mtok: price_for(DEFAULT_MODEL).unwrap_or(3.0),
            budget_tokens: None,
            budget_usd: None,
            shaping: ShapingConfig::default(),
        }
    }
}

impl ShapingConfig {
    /// The cap for one call: the caller's `max_tokens` (clamped to the ceiling, with a note
    /// saying so) or the default. Anything but a whole number from [`MIN_RESULT_TOKENS`] to
    /// [`MAX_TOKENS_LIMIT`] is an error that says what is valid (and quotes no more of the
    /// value than a short prefix).
    pub fn resolve(&self, requested: Option<&Value>) -> Result<(usize, Option<String>), String> {
        let Some(requested) = requested.filter(|v| !v.is_null()) else {
            return Ok((self.max_result_tokens, None));
        };
        let valid = format!(
            "max_tokens must be a whole number of tokens from {MIN_RESULT_TOKENS} to {} (larger values are clamped to {}; the default is {})",
            self.ceiling, self.ceiling, self.max_result_tokens
        );
        let n = match requested {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            }),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            let got = match requested {
                Value::String(s) => short(s),
                other => short(&other.to_string()),
            };
            format!("{valid}; got {got}")
        })?;
        if n < MIN_RESULT_TOKENS as u64 {
            return Err(format!("{valid}; got {n}"));
        }
        if n > MAX_TOKENS_LIMIT as u64 {
            return Err(format!(
                "max_tokens is {}; the limit is {} (a value above {} is lowered to {}; the default is {})",
                thousands(n as usize),
                thousands(MAX_TOKENS_LIMIT),
                self.ceiling,
                self.ceiling,
                self.max_result_tokens
            ));
        }
        if n > self.ceiling as u64 {
            return Ok((
                self.ceiling,
                Some(format!(
                    "max_tokens={n} is above the ceiling; {} used (--max-result-tokens-ceiling)",
                    self.ceiling
                )),
            ));
        }
        Ok((n as usize, None))
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ToolUsage {
    pub calls: u64,
    pub tokens: u64,
    pub shaped_calls: u64,
    pub cost_usd: f64,
}

/// Pages of stored full results read through `result://`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReadUsage {
    pub reads: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
struct ViewTotals {
    text: u64,
    structured: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
struct LedgerState {
    calls: u64,
    refused_calls: u64,
    shaped_calls: u64,
    tokens: u64,
    /// Tokens of each view over all calls, whichever is booked.
    by_view: ViewTotals,
    cost_usd: f64,
    by_tool: BTreeMap<String, ToolUsage>,
    result_pages: ReadUsage,
    sampling: SamplingUsage,
}

/// The client's model's work asked for by MCP sampling (the synthesis of a result).
#[derive(Debug, Default, Clone, Serialize)]
pub struct SamplingUsage {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

/// The session ledger, the budget gate and the result shaper.
pub struct BudgetTracker {
    config: BudgetConfig,
    ledger: Mutex<LedgerState>,
    store: ResultStore,
    /// The view booked and the rule that chose it, from the last call's client.
    booking: Mutex<(CountView, String)>,
}

impl BudgetTracker {
    pub fn new(config: BudgetConfig) -> BudgetTracker {
        BudgetTracker {
            store: ResultStore::new(config.shaping.store_bytes),
            booking: Mutex::new(view_seen_by(config.count_view, None)),
            config,
            ledger: Mutex::default(),
        }
    }

    /// Full versions of shaped results (`result://`).
    pub fn store(&self) -> &ResultStore {
        &self.store
    }

    pub fn encoding(&self) -> Encoding {
        self.config.encoding
    }

    fn cost(&self, tokens: u64) -> f64 {
        tokens as f64 * self.config.price_per_mtok / 1e6
    }

    /// Fraction of the tightest budget used (0 when no budget is set).
    fn used_fraction(&self, state: &LedgerState) -> f64 {
        let by_tokens = self
            .config
            .budget_tokens
            .map_or(0.0, |b| state.tokens as f64 / b.max(1) as f64);
        let by_usd = self.config.budget_usd.map_or(0.0, |b| {
            if b > 0.0 {
                state.cost_usd / b
            } else {
                f64::INFINITY
            }
        });
        by_tokens.max(by_usd)
    }

    fn remaining(&self, state: &LedgerState) -> Value {
        let mut remaining = Map::new();
        if let Some(b) = self.config.budget_tokens {
            remaining.insert("tokens".into(), json!(b.saturating_sub(state.tokens)));
        }
        if let Some(b) = self.config.budget_usd {
            remaining.insert("usd".into(), json!(round6((b - state.cost_usd).max(0.0))));
        }
        if remaining.is_empty() {
            Value::Null
        } else {
            Value::Object(remaining)
        }
    }

    fn spent_text(&self, state: &LedgerState) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.config.budget_tokens {
            parts.push(format!(
                "{} of {} tokens (--budget-tokens)",
                state.tokens, b
            ));
        }
        if let Some(b) = self.config.budget_usd {
            parts.push(format!(
                "${:.4} of ${:.4} (--budget-usd)",
                state.cost_usd, b
            ));
        }
        parts.join(" and ")
    }

    /// The full ledger, for `budget://usage` and `system://health`.
    pub fn usage(&self) -> Value {
        let state = self
            .ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (stored_results, stored_bytes) = self.store.usage();
        let booking = self
            .booking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        json!({
            "encoding": self.config.encoding,
            "model": self.config.model,
            "price_per_mtok_usd": self.config.price_per_mtok,
            "calls": state.calls,
            "refused_calls": state.refused_calls,
            "shaped_calls": state.shaped_calls,
            "tokens": state.tokens,
            "tokens_by_view": state.by_view,
            "count_view": {
                "setting": self.config.count_view.as_str(),
                "books": match booking.0 { CountView::Auto => "larger", view => view.as_str() },
                "rule": booking.1,
            },
            "cost_usd": round6(state.cost_usd),
            "max_result_tokens": self.config.shaping.max_result_tokens,
            "max_result_tokens_ceiling": self.config.shaping.ceiling,
            "budget": {
                "tokens": self.config.budget_tokens,
                "usd": self.config.budget_usd,
                "used_fraction": round6(self.used_fraction(&state)),
                "remaining": self.remaining(&state),
            },
            "by_tool": state.by_tool,
            "result_pages": state.result_pages,
            "sampling": state.sampling,
            "result_store": {
                "results": stored_results,
                "bytes": stored_bytes,
                "max_bytes": self.store.max_bytes(),
            },
        })
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl BudgetTracker {
    /// Refuses a tool call once the budget is spent — except a safety action (a rollback
    /// must never be blocked by a spent budget).
    pub fn admit(&self, tool: &ToolDef) -> Result<(), String> {
        if tool.kind.safety_action() {
            return Ok(());
        }
        let mut state = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if self.used_fraction(&state) >= 1.0 {
            state.refused_calls += 1;
            return Err(format!(
                "session budget exhausted: spent {}. {} was not run. Raise the budget (restart with a larger --budget-tokens / --budget-usd, or SRE_MCP_BUDGET_TOKENS / SRE_MCP_BUDGET_USD); system://health and budget://usage stay readable.",
                self.spent_text(&state),
                tool.name
            ));
        }
        Ok(())
    }

    /// Books a sampling request (its prompt and the model's answer, counted with the ledger's
    /// tokenizer at the input price) in the session totals and under `sampling`.
    pub fn book_sampling(&self, prompt: &str, completion: &str) -> (u64, u64) {
        let prompt_tokens = self.config.encoding.count(prompt) as u64;
        let completion_tokens = self.config.encoding.count(completion) as u64;
        let tokens = prompt_tokens + completion_tokens;
        let cost = self.cost(tokens);
        let mut state = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        state.tokens += tokens;
        state.cost_usd += cost;
        state.sampling.calls += 1;
        state.sampling.prompt_tokens += prompt_tokens;
        state.sampling.completion_tokens += completion_tokens;
        state.sampling.cost_usd += cost;
        tracing::info!(
            prompt_tokens,
            completion_tokens,
            cost_usd = round6(cost),
            "sampling"
        );
        (prompt_tokens, completion_tokens)
    }

    /// Reads a page of a stored full result, booking its tokens (refused once the budget is
    /// spent, like a tool call).
    pub fn read_result_page(&self, uri: &str) -> Result<String, super::result_store::ReadError> {
        {
            let state = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            if self.used_fraction(&state) >= 1.0 {
                return Err(super::result_store::ReadError::Invalid(format!(
                    "session budget exhausted: spent {}. {} was not read. Raise the budget (restart with a larger --budget-tokens / --budget-usd); system://health and budget://usage stay readable.",
                    self.spent_text(&state),
                    short(uri)
                )));
            }
        }
        let page = self.store.read(uri)?;
        let tokens = self.config.encoding.count(&page) as u64;
        let cost = self.cost(tokens);
        let mut state = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        state.tokens += tokens;
        state.cost_usd += cost;
        state.result_pages.reads += 1;
        state.result_pages.tokens += tokens;
        state.result_pages.cost_usd += cost;
        tracing::info!(uri, tokens, cost_usd = round6(cost), "result page read");
        Ok(page)
    }

    /// Shapes a result that is over its cap; keeps the full version in the store.
    pub fn shape_to_cap(
        &self,
        tool: &ToolDef,
        arguments: &Map<String, Value>,
        result: &mut StagedResult,
    ) {
        let cap = result.max_tokens;
        result.meta.max_tokens = Some(cap);
        let json = result.structured.to_string();
        let text = render_reply(tool, &result.structured, &result.notes);
        // A token is at least one byte: a view with no more bytes than the cap fits. A write's
        // reply is never shaped — its diff, verdict and confirmation token must all arrive —
        // and is small by construction (every list in it is bounded).
        if json.len().max(text.len()) <= cap || !tool.kind.read_only() {
            result.rendered = Some(Rendered {
                json,
                text,
                tokens: None,
            });
            return;
        }
        let mut request = ShapeRequest {
            encoding: self.config.encoding,
            cap,
            ceiling: self.config.shaping.ceiling,
            render: &|v: &Value| render_reply(tool, v, &result.notes),
            arguments: tool
                .input_schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
            given: arguments
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.clone())
                .collect(),
            full_result: None,
            output_schema: &tool.output_schema,
        };
        let (full_views, estimated, tokens_per_json_byte) =
            full_reply_tokens(&request, &text, &json);
        let full_tokens = full_views.larger();
        if full_tokens <= cap {
            // Counted exactly (small enough): `finish` need not count again.
            result.rendered = Some(Rendered {
                json,
                text,
                tokens: (!estimated).then_some(full_views),
            });
            return;
        }
        // The same full text shaped to the same cap (a repeated call) keeps its id and is not
        // stored twice.
        let hash = super::result_store::text_hash(&text);
        let existing = self.store.find(tool.name, cap, hash, &text);
        let fresh = (existing.is_none() && self.store.fits(text.len())).then(|| {
            let id = self.store.allocate_id();
            let pages = paginate(&text, cap, self.config.encoding);
            (id, pages)
        });
        request.full_result = match (&existing, &fresh) {
            (Some((id, pages)), _) => Some((format!("result://{id}"), *pages)),
            (None, Some((id, pages))) => Some((format!("result://{id}"), pages.len())),
            (None, None) => None,
        };
        let shaped = shape(
            &request,
            &result.structured,
            full_tokens,
            estimated,
            tokens_per_json_byte,
        );
        if let Some((uri, _)) = &request.full_result {
            result.meta.full_result = Some(uri.clone());
        }
        if let Some((id, pages)) = fresh {
            self.store.put(StoredResult {
                id,
                tool: tool.name.to_string(),
                arguments: arguments.clone(),
                created: jiff::Timestamp::now(),
                text,
                hash,
                page_tokens: cap,
                pages,
                full_tokens,
            });
        }
        result.rendered = Some(Rendered {
            json: shaped.structured.to_string(),
            text: render_reply(tool, &shaped.structured, &result.notes),
            tokens: Some(shaped.tokens),
        });
        result.structured = shaped.structured;
        result.meta.truncated = Some(true);
    }

    /// Counts the reply's tokens, books what this client's model sees, and adds the `_meta`
    /// fields (and a warning past 80%).
    pub fn finish(&self, tool: &ToolDef, reply: &mut ToolReply, client: &ClientFacts) {
        let mut views = match reply.tokens {
            Some(counted) => counted,
            None => ViewTokens {
                text: self.config.encoding.count(&reply.text),
                structured: reply
                    .structured_json
                    .as_deref()
                    .map_or(0, |j| self.config.encoding.count(j)),
            },
        };
        let (view, rule) = view_seen_by(self.config.count_view, client.name.as_deref());
        *self.booking.lock().unwrap_or_else(|e| e.into_inner()) = (view, rule);
        let tokens = view.book(views) as u64;
        let truncated = reply.meta.truncated.unwrap_or(false);
        let mut state = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        // Past 80% the reply carries a warning; its own tokens are booked with the reply (the
        // figures it quotes are those before it).
        let mut tokens = tokens;
        // Only the totals matter for the fraction and the figures.
        let projected = LedgerState {
            tokens: state.tokens + tokens,
            cost_usd: state.cost_usd + self.cost(tokens),
            ..LedgerState::default()
        };
        let fraction = self.used_fraction(&projected);
        if fraction >= 0.8 {
            let warning = format!(
                "budget warning: {:.0}% of the session budget used ({}); further tool calls are refused past 100%",
                (fraction * 100.0).min(999.0),
                self.spent_text(&projected)
            );
            let block = format!("\n\n{warning}");
            // The warning goes in the text (and in `_meta`); booked if the text is.
            let extra = self.config.encoding.count(&block);
            views.text += extra;
            tokens = view.book(views) as u64;
            reply.meta.budget_warning = Some(warning);
            reply.text.push_str(&block);
        }
        let cost = self.cost(tokens);
        state.calls += 1;
        state.shaped_calls += u64::from(truncated);
        state.tokens += tokens;
        state.by_view.text += views.text as u64;
        state.by_view.structured += views.structured as u64;
        state.cost_usd += cost;
        let usage = state.by_tool.entry(tool.name.to_string()).or_default();
        usage.calls += 1;
        usage.tokens += tokens;
        usage.cost_usd += cost;
        usage.shaped_calls += u64::from(truncated);
        reply.meta.tokens = Some(tokens);
        reply.meta.tokens_by_view = Some(views);
        reply.meta.cost_usd = Some(round6(cost));
        reply.meta.session_tokens = Some(state.tokens);
        reply.meta.session_cost_usd = Some(round6(state.cost_usd));
        reply.meta.budget_remaining = Some(self.remaining(&state));
        reply.meta.truncated = Some(truncated);
        tracing::info!(
            tool = tool.name,
            tokens,
            cost_usd = round6(cost),
            session_tokens = state.tokens,
            "tokens"
        );
    }
}

/// The ledger as a pipeline stage (shared with the resources that report it).
#[async_trait]
impl Stage for std::sync::Arc<BudgetTracker> {
    fn name(&self) -> &'static str {
        "budget"
    }

    async fn admit(&self, call: &Call<'_>) -> Result<(), String> {
        BudgetTracker::admit(self, call.tool)
    }

    async fn apply(&self, call: &Call<'_>, result: &mut StagedResult) -> anyhow::Result<()> {
        // What the tool asked the client's model (a write's review) is booked like a synthesis.
        for (prompt, answer) in &result.sampled {
            self.book_sampling(prompt, answer);
        }
        self.shape_to_cap(call.tool, call.arguments, result);
        Ok(())
    }

    fn finish(&self, call: &Call<'_>, outcome: Outcome, reply: &mut ToolReply) {
        // A refused call was counted when it was refused, and cost the client next to nothing.
        if !matches!(outcome, Outcome::Refused { .. }) {
            BudgetTracker::finish(self, call.tool, reply, &call.client.facts())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices() {
        assert_eq!(price_for(DEFAULT_MODEL).unwrap(), 3.0);
        assert!(price_for("nope").unwrap_err().contains("claude-sonnet-4-5"));
    }

    #[test]
    fn max_tokens_is_bounded_and_never_echoed_at_length() {
        let caps = ShapingConfig::default();
        let resolve = |v: Value| caps.resolve(Some(&v));
        assert_eq!(resolve(json!(5000)).unwrap(), (5000, None));
        assert_eq!(resolve(json!("5000")).unwrap(), (5000, None));
        let (cap, note) = resolve(json!(MAX_TOKENS_LIMIT)).unwrap();
        assert_eq!(cap, caps.ceiling);
        assert!(note.unwrap().contains("ceiling"));
        let above = resolve(json!(MAX_TOKENS_LIMIT + 1)).unwrap_err();
        assert!(
            above.starts_with("max_tokens is 10,000,001; the limit is 10,000,000"),
            "{above}"
        );
        assert!(
            resolve(json!(499))
                .unwrap_err()
                .contains("from 500 to 25000")
        );
        let long = resolve(json!("9".repeat(1_000_000))).unwrap_err();
        assert!(long.len() < 300, "{long}");
        let array = resolve(json!(vec![1; 100_000])).unwrap_err();
        assert!(array.len() < 300, "{array}");
    }

    #[test]
    fn a_spent_budget_refuses_reads_but_never_a_safety_action() {
        use crate::tools::{ToolKind, ToolRegistry};
        let tracker = BudgetTracker::new(BudgetConfig {
            budget_tokens: Some(10),
            ..BudgetConfig::default()
        });
        let mut tools = ToolRegistry::standard();
        let read = tools.get("list_namespaces").unwrap();
        assert!(tracker.admit(read).is_ok());
        let mut reply = ToolReply {
            tool: read.name.into(),
            structured: None,
            structured_json: None,
            tokens: Some(ViewTokens {
                text: 50,
                structured: 50,
            }),
            text: "fifty tokens".into(),
            is_error: false,
            meta: Default::default(),
        };
        tracker.finish(read, &mut reply, &ClientFacts::default());
        assert!(reply.meta.budget_warning.is_some());
        let refusal = tracker.admit(read).unwrap_err();
        assert!(refusal.contains("session budget exhausted"), "{refusal}");
        let rollback = tools.iter_mut().next().unwrap();
        rollback.kind = ToolKind::Write {
            destructive: true,
            idempotent: false,
            safety_action: true,
        };
        assert!(tracker.admit(rollback).is_ok());
        rollback.kind = ToolKind::Write {
            destructive: true,
            idempotent: false,
            safety_action: false,
        };
        assert!(tracker.admit(rollback).is_err());
    }
}
