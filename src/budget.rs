//! The budget and cost tracker, the last stage of the result pipeline: counts the tokens each
//! result costs the client with a real BPE tokenizer, keeps the session ledger (per tool and in
//! total, with cost from a price table), warns at 80% of a budget and refuses tool calls past
//! 100%. Reading `system://health` and `budget://usage` never costs budget.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use clap::ValueEnum;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::pipeline::{Stage, StagedResult, ToolReply};
use crate::tools::ToolDef;

/// BPE encodings the counter can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// OpenAI's o200k_base (GPT-4o family); the default.
    O200kBase,
    /// OpenAI's cl100k_base (GPT-4 / GPT-3.5).
    Cl100kBase,
}

impl Encoding {
    fn bpe(self) -> &'static tiktoken_rs::CoreBPE {
        match self {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Builds the encoder's tables on a background thread so the first count does not pay for
    /// it and start-up does not wait for it.
    pub fn warm_up(self) {
        let _ = std::thread::Builder::new()
            .name("tokenizer".into())
            .spawn(move || {
                crate::cluster::deferred::lower_thread_priority();
                let _ = self.bpe();
            });
    }

    /// Tokens in `text` (special-token text is counted as ordinary text, as a client sends it).
    pub fn count(self, text: &str) -> usize {
        self.bpe().encode_ordinary(text).len()
    }
}

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

/// Budget settings.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    pub encoding: Encoding,
    pub model: String,
    pub price_per_mtok: f64,
    pub budget_tokens: Option<u64>,
    pub budget_usd: Option<f64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ToolUsage {
    pub calls: u64,
    pub tokens: u64,
    pub shaped_calls: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
struct LedgerState {
    calls: u64,
    refused_calls: u64,
    tokens: u64,
    cost_usd: f64,
    by_tool: BTreeMap<String, ToolUsage>,
}

/// The session ledger and budget gate.
pub struct BudgetTracker {
    config: BudgetConfig,
    ledger: Mutex<LedgerState>,
}

impl BudgetTracker {
    pub fn new(config: BudgetConfig) -> BudgetTracker {
        config.encoding.warm_up();
        BudgetTracker {
            config,
            ledger: Mutex::default(),
        }
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
        json!({
            "encoding": self.config.encoding,
            "model": self.config.model,
            "price_per_mtok_usd": self.config.price_per_mtok,
            "calls": state.calls,
            "refused_calls": state.refused_calls,
            "tokens": state.tokens,
            "cost_usd": round6(state.cost_usd),
            "budget": {
                "tokens": self.config.budget_tokens,
                "usd": self.config.budget_usd,
                "used_fraction": round6(self.used_fraction(&state)),
                "remaining": self.remaining(&state),
            },
            "by_tool": state.by_tool,
        })
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl BudgetTracker {
    /// Refuses a tool call once the budget is spent.
    pub fn admit(&self, tool: &ToolDef) -> Result<(), String> {
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

    /// Counts the reply's tokens, books them and adds the `_meta` fields (and a warning past 80%).
    pub fn finish(&self, tool: &ToolDef, reply: &mut ToolReply) {
        // What the client receives: the text content and the structured content.
        let mut tokens = self.config.encoding.count(&reply.text) as u64;
        if let Some(structured) = &reply.structured {
            tokens += self.config.encoding.count(&structured.to_string()) as u64;
        }
        let cost = self.cost(tokens);
        let truncated = reply
            .meta
            .get("truncated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut state = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        state.calls += 1;
        state.tokens += tokens;
        state.cost_usd += cost;
        let usage = state.by_tool.entry(tool.name.to_string()).or_default();
        usage.calls += 1;
        usage.tokens += tokens;
        usage.cost_usd += cost;
        usage.shaped_calls += u64::from(truncated);
        let fraction = self.used_fraction(&state);
        reply.meta.insert("tokens".into(), json!(tokens));
        reply.meta.insert("cost_usd".into(), json!(round6(cost)));
        reply
            .meta
            .insert("session_tokens".into(), json!(state.tokens));
        reply
            .meta
            .insert("session_cost_usd".into(), json!(round6(state.cost_usd)));
        reply
            .meta
            .insert("budget_remaining".into(), self.remaining(&state));
        reply.meta.insert("truncated".into(), json!(truncated));
        if fraction >= 0.8 {
            let warning = format!(
                "budget warning: {:.0}% of the session budget used ({}); further tool calls are refused past 100%",
                (fraction * 100.0).min(999.0),
                self.spent_text(&state)
            );
            reply.meta.insert("budget_warning".into(), json!(warning));
            reply.text.push_str(&format!("\n\n{warning}"));
        }
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

    fn admit(&self, tool: &ToolDef) -> Result<(), String> {
        BudgetTracker::admit(self, tool)
    }

    async fn apply(
        &self,
        _tool: &ToolDef,
        _arguments: &Map<String, Value>,
        _result: &mut StagedResult,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    fn finish(&self, tool: &ToolDef, reply: &mut ToolReply) {
        BudgetTracker::finish(self, tool, reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_reference_encodings() {
        // Reference counts from tiktoken for these exact strings.
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        let text = "payment-gateway-7d9f8b6c4-x2k9p CrashLoopBackOff OOMKilled (exit 137)";
        assert_eq!(
            Encoding::O200kBase.count(text),
            tiktoken_rs::o200k_base()
                .unwrap()
                .encode_ordinary(text)
                .len()
        );
        assert_eq!(
            Encoding::Cl100kBase.count(text),
            tiktoken_rs::cl100k_base()
                .unwrap()
                .encode_ordinary(text)
                .len()
        );
        assert_eq!(Encoding::O200kBase.count(""), 0);
    }

    #[test]
    fn prices() {
        assert_eq!(price_for(DEFAULT_MODEL).unwrap(), 3.0);
        assert!(price_for("nope").unwrap_err().contains("claude-sonnet-4-5"));
    }
}
