//! The model-synthesis stage: for a tool that offers a prompt over its result (the
//! investigation of `troubleshoot_issue`), asks the client's model for a synthesis by MCP
//! sampling — only when the client declared sampling — with a bounded prompt and answer. The
//! answer is shown beside the deterministic result and can add nothing to it but words; its
//! tokens are booked in the ledger under `sampling`. A refusal or failure leaves the
//! deterministic answer standing, with a note saying so.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::budget::BudgetTracker;
use super::envelope::{MODEL_SYNTHESIS, ModelSynthesis};
use super::{Call, Stage, StagedResult};
use crate::util::redact;

/// Most tokens the client's model may answer with.
pub const MAX_SYNTHESIS_TOKENS: u32 = 400;
/// Most characters of the prompt built from a result (about 1,500 tokens).
const MAX_PROMPT_CHARS: usize = 6_000;

const SYSTEM: &str = "You are an experienced site reliability engineer. You are given the evidence an \
investigation gathered. In at most 150 words: the most likely root cause, how sure you are and why, \
and the first action to take. Use only the evidence given; say so if it is not enough.";

pub struct Synthesis {
    budget: Arc<BudgetTracker>,
}

impl Synthesis {
    pub fn new(budget: Arc<BudgetTracker>) -> Synthesis {
        Synthesis { budget }
    }
}

#[async_trait]
impl Stage for Synthesis {
    fn name(&self) -> &'static str {
        "model-synthesis"
    }

    async fn apply(&self, call: &Call<'_>, result: &mut StagedResult) -> anyhow::Result<()> {
        let Some(prompt_of) = call.tool.synthesis_prompt else {
            return Ok(());
        };
        // Deterministic by default: only a client that offers sampling is asked.
        if !call.client.facts().sampling {
            return Ok(());
        }
        let Some(mut prompt) = prompt_of(&result.structured) else {
            return Ok(());
        };
        if prompt.len() > MAX_PROMPT_CHARS {
            let mut cut = MAX_PROMPT_CHARS;
            while !prompt.is_char_boundary(cut) {
                cut -= 1;
            }
            prompt.truncate(cut);
        }
        let synthesis = match call
            .client
            .sample(SYSTEM, &prompt, MAX_SYNTHESIS_TOKENS)
            .await
        {
            Ok(text) if !text.trim().is_empty() => {
                self.budget
                    .book_sampling(&format!("{SYSTEM}\n{prompt}"), &text);
                ModelSynthesis {
                    status: "ok".into(),
                    text: Some(redact::mask(text.trim()).into_owned()),
                    note: None,
                }
            }
            Ok(_) => ModelSynthesis {
                status: "failed".into(),
                text: None,
                note: Some(
                    "the client's model answered with nothing; the deterministic answer stands"
                        .into(),
                ),
            },
            Err(e) => ModelSynthesis {
                status: "failed".into(),
                text: None,
                note: Some(format!(
                    "the client did not answer the sampling request ({e}); the deterministic answer stands"
                )),
            },
        };
        if let Value::Object(map) = &mut result.structured {
            map.insert(MODEL_SYNTHESIS.into(), serde_json::to_value(synthesis)?);
        }
        result.rendered = None;
        Ok(())
    }
}
