//! The result pipeline: every tool call — from the MCP server or the `call` subcommand — runs
//! here: parse arguments → tool → stages (runbook augmenter, budget tracker…) → reply. Tools
//! know nothing of the stages; stages know nothing of individual tools.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::app::App;
use crate::tools::{ToolDef, ToolError, ToolRegistry};

/// A tool result travelling through the stages. Stages may edit `structured` (the envelope
/// fields they add are rendered as text blocks after the data), add notes shown last, and add
/// `_meta` fields.
#[derive(Debug, Clone)]
pub struct StagedResult {
    pub structured: Value,
    pub notes: Vec<String>,
    pub meta: Map<String, Value>,
    /// The most tokens this reply may cost (the caller's `max_tokens` or the default cap).
    pub max_tokens: usize,
    /// The final serialisation and text, when the last stage already produced them (so the
    /// pipeline does not do it twice). A stage that edits the result must clear it.
    pub rendered: Option<Rendered>,
}

impl StagedResult {
    /// The reply, reusing the last stage's rendering when it made one.
    pub fn into_reply(mut self, tool: &ToolDef) -> ToolReply {
        let rendered = self.rendered.take().unwrap_or_else(|| Rendered {
            json: self.structured.to_string(),
            text: render_reply(tool, &self.structured, &self.notes),
            tokens: None,
        });
        ToolReply {
            tool: tool.name.to_string(),
            structured: Some(self.structured),
            structured_json: Some(rendered.json),
            tokens: rendered.tokens,
            text: rendered.text,
            is_error: false,
            meta: self.meta,
        }
    }

    /// A tool's result before any stage ran.
    pub fn new(structured: Value, max_tokens: usize) -> StagedResult {
        StagedResult {
            structured,
            notes: Vec::new(),
            meta: Map::new(),
            max_tokens,
            rendered: None,
        }
    }
}

/// A result serialised and rendered as the client receives it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: String,
    /// The reply text (see [`render_reply`]).
    pub text: String,
    /// Tokens of `text` plus `json`, when already counted.
    pub tokens: Option<usize>,
}

/// The reply text: the tool's rendering of its data, then a block for each envelope field the
/// stages added (attached runbooks, shaping report), then the stages' notes.
pub fn render_reply(tool: &ToolDef, structured: &Value, notes: &[String]) -> String {
    let mut text = (tool.render)(structured);
    let mut block = |part: String| {
        text.push_str("\n\n");
        text.push_str(&part);
    };
    if let Some(runbooks) = structured.get("relevant_runbooks")
        && let Ok(runbooks) = Vec::<crate::augment::RelevantRunbook>::deserialize(runbooks)
        && !runbooks.is_empty()
    {
        block(crate::augment::render_footer(&runbooks));
    }
    if let Some(truncated) = structured.get("truncated")
        && let Ok(truncation) = crate::shape::Truncation::deserialize(truncated)
    {
        block(truncation.footer());
    }
    for note in notes {
        block(note.clone());
    }
    text
}

/// What the caller gets back.
#[derive(Debug, Clone)]
pub struct ToolReply {
    pub tool: String,
    pub structured: Option<Value>,
    /// `structured`, serialised once for counting and logging.
    pub structured_json: Option<String>,
    /// Tokens of `text` plus `structured_json`, when a stage already counted them.
    pub tokens: Option<usize>,
    pub text: String,
    pub is_error: bool,
    pub meta: Map<String, Value>,
}

/// A pipeline stage (augmenter, budget tracker). A stage that fails is logged and skipped:
/// a broken enrichment must never cost the user the data.
#[async_trait]
pub trait Stage: Send + Sync {
    fn name(&self) -> &'static str;

    /// Before the tool runs: `Err(message)` refuses the call (an `isError` reply).
    fn admit(&self, _tool: &ToolDef) -> Result<(), String> {
        Ok(())
    }

    /// Edits the structured result before it is rendered as text.
    async fn apply(
        &self,
        tool: &ToolDef,
        arguments: &Map<String, Value>,
        result: &mut StagedResult,
    ) -> anyhow::Result<()>;

    /// Sees the final reply (text rendered) of every call, errors included.
    fn finish(&self, _tool: &ToolDef, _reply: &mut ToolReply) {}
}

/// The tool could not be called at all (unknown name): a protocol error, not a tool failure.
#[derive(Debug, thiserror::Error)]
#[error("unknown tool {name:?}; available tools: {available}")]
pub struct UnknownTool {
    pub name: String,
    pub available: String,
}

pub struct Pipeline {
    pub app: Arc<App>,
    pub tools: ToolRegistry,
    stages: Vec<Box<dyn Stage>>,
}

impl Pipeline {
    pub fn new(app: Arc<App>, tools: ToolRegistry) -> Pipeline {
        Pipeline {
            app,
            tools,
            stages: Vec::new(),
        }
    }

    pub fn with_stage(mut self, stage: Box<dyn Stage>) -> Pipeline {
        self.stages.push(stage);
        self
    }

    pub async fn call(
        &self,
        name: &str,
        mut arguments: Map<String, Value>,
    ) -> Result<ToolReply, UnknownTool> {
        let Some(tool) = self.tools.get(name) else {
            return Err(UnknownTool {
                name: name.to_string(),
                available: self.tools.names().collect::<Vec<_>>().join(", "),
            });
        };
        let started = Instant::now();
        // `max_tokens` belongs to the pipeline (every tool accepts it), not to the tool.
        let cap = self
            .app
            .settings
            .budget
            .shaping
            .resolve(arguments.remove("max_tokens").as_ref());
        let refusal = self.stages.iter().find_map(|stage| stage.admit(tool).err());
        let outcome = match (refusal, &cap) {
            (Some(message), _) => Err(ToolError::Refused(message)),
            (None, Err(message)) => Err(ToolError::InvalidArgument(message.clone())),
            (None, Ok(_)) => {
                (tool.handler)(self.app.clone(), Value::Object(arguments.clone())).await
            }
        };
        let (max_tokens, cap_note) = cap.unwrap_or_default();
        let refused = matches!(outcome, Err(ToolError::Refused(_)));
        let mut reply = match outcome {
            Ok(structured) => {
                let mut staged = StagedResult::new(structured, max_tokens);
                if let Some(note) = cap_note {
                    staged
                        .meta
                        .insert("max_tokens_note".into(), Value::from(note.clone()));
                    staged.notes.push(note);
                }
                for stage in &self.stages {
                    let stage_started = Instant::now();
                    if let Err(error) = stage.apply(tool, &arguments, &mut staged).await {
                        tracing::warn!(tool = name, stage = stage.name(), %error, "stage failed; result passed on unchanged");
                    }
                    tracing::debug!(
                        tool = name,
                        stage = stage.name(),
                        us = stage_started.elapsed().as_micros() as u64,
                        "stage done"
                    );
                }
                staged.into_reply(tool)
            }
            Err(error) => ToolReply {
                tool: name.to_string(),
                structured: None,
                structured_json: None,
                tokens: None,
                text: error.to_string(),
                is_error: true,
                meta: Map::new(),
            },
        };
        if !refused {
            for stage in &self.stages {
                stage.finish(tool, &mut reply);
            }
        }
        let elapsed = started.elapsed();
        self.app.stats.record(name, elapsed, reply.is_error);
        let bytes = reply.text.len() + reply.structured_json.as_ref().map_or(0, String::len);
        tracing::info!(
            tool = name,
            duration_us = elapsed.as_micros() as u64,
            outcome = if reply.is_error { "error" } else { "ok" },
            bytes,
            "tool call"
        );
        Ok(reply)
    }
}
