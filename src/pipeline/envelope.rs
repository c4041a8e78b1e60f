//! The envelope: what the pipeline adds to every tool's own result and schema — the fields its
//! stages may attach to the structured result (`relevant_runbooks`, `truncated`), the
//! `max_tokens` argument every tool accepts, the `_meta` of every reply — and the reply text
//! rendered from them. One definition each; stages, shaping and the server use these.

use std::fmt::Write;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::shape::Truncation;
use crate::tools::{ToolDef, limits};

/// Envelope field: runbook sections that address the problems in a result.
pub const RELEVANT_RUNBOOKS: &str = "relevant_runbooks";
/// Envelope field: how a result was shaped to fit its token cap.
pub const TRUNCATED: &str = "truncated";
/// The client's model's synthesis of a result (MCP sampling), beside the deterministic answer.
pub const MODEL_SYNTHESIS: &str = "model_synthesis";

/// What the client's model said about a result when asked by MCP sampling.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelSynthesis {
    /// `ok`, or `failed` (the client refused or the request failed: the deterministic answer
    /// stands alone).
    pub status: String,
    /// The model's synthesis (when `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Why there is none (when `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
/// The argument every tool accepts: the most tokens its result may cost.
pub const MAX_TOKENS: &str = "max_tokens";
/// The argument that picks another kubeconfig context for one call.
pub const CONTEXT: &str = "context";

/// A runbook section attached to a tool result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RelevantRunbook {
    pub title: String,
    /// Read the whole runbook with resources/read on this URI.
    pub uri: String,
    /// The section that matched, e.g. "Mitigation > Raise the limit".
    pub section: String,
    /// What that section says to do, in whole sentences or list items (about 120 tokens).
    /// Empty when this session already received it: see `sent_in_call`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub excerpt: String,
    /// The call of this session whose result carried this section's excerpt already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_in_call: Option<u64>,
    /// 0–1 relevance (cosine similarity, or saturated BM25 when lexical-only), 2 decimals.
    pub score: f64,
    /// The signals from the result that this runbook answers.
    pub signals: Vec<String>,
}

/// What every tool's structured output may carry besides its own fields (added by the
/// pipeline's stages); declared in every output schema.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Runbook sections that address the problems in this result (added by the runbook
    /// augmenter; absent when the result shows no problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevant_runbooks: Option<Vec<RelevantRunbook>>,
    /// The client's model's synthesis of the result, beside the deterministic answer (added
    /// when the client offers MCP sampling, for tools that ask for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_synthesis: Option<ModelSynthesis>,
    /// Present when the result was shaped to fit its token cap: what was dropped, how to
    /// narrow the call, and where the full result can be read (`result://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

/// The `_meta` of a tool reply, as the client receives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplyMeta {
    /// The backend that answered ("demo", "kubernetes").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The kubeconfig context it answered through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Tokens booked for this reply: the view(s) this client's model sees (`--count-view`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Tokens of each view: the text content and the structured content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_by_view: Option<crate::pipeline::shape::ViewTokens>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_cost_usd: Option<f64>,
    /// `{tokens, usd}` left of the budgets set, or null when none is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_remaining: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_warning: Option<String>,
    /// Whether the result was shaped to fit its cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// The cap applied to this reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Why the cap differs from the one asked for (clamped to the ceiling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_note: Option<String>,
    /// Where the full version of a shaped result can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_result: Option<String>,
}

impl ReplyMeta {
    pub fn is_empty(&self) -> bool {
        *self == ReplyMeta::default()
    }

    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// A tool's input schema with the `max_tokens` argument every tool accepts (from `min_tokens`
/// to `max_tokens`) and, for a tool that reads the cluster, `context`.
pub fn input_schema(tool: &ToolDef, min_tokens: usize, max_tokens: usize) -> JsonObject {
    let mut schema = (*tool.input_schema).clone();
    let properties = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(properties) = properties {
        // An optional argument may be left out; `null` means the same to the server, so the
        // schema the model reads on every turn does not spell it out (`"type": "string"`, not
        // `["string", "null"]`).
        for property in properties.values_mut() {
            drop_null_alternative(property);
        }
        // A write's reply is never shaped, and a write goes to the server's own context only
        // (a write elsewhere is a deliberate server configuration, not an argument).
        if tool.kind.read_only() {
            properties.insert(
                MAX_TOKENS.into(),
                serde_json::json!({
                    "type": "integer",
                    "minimum": min_tokens,
                    "maximum": max_tokens,
                    "description": "Token cap; a larger result is shaped to fit it."
                }),
            );
        }
        if tool.reads_cluster && tool.kind.read_only() {
            properties.insert(
                CONTEXT.into(),
                serde_json::json!({
                    "type": "string",
                    "maxLength": limits::NAME,
                    "description": "kubeconfig context."
                }),
            );
        }
    }
    schema
}

/// `"type": [T, "null"]` → `T`; `"anyOf": [S, {"type": "null"}]` → `S` (its description kept).
fn drop_null_alternative(property: &mut Value) {
    let Value::Object(map) = property else { return };
    if let Some(Value::Array(types)) = map.get("type")
        && types.len() == 2
        && let Some(other) = types.iter().find(|t| *t != "null").cloned()
        && types.iter().any(|t| t == "null")
    {
        map.insert("type".into(), other);
    }
    if let Some(Value::Array(options)) = map.get("anyOf")
        && options.len() == 2
        && options
            .iter()
            .any(|o| o.get("type").is_some_and(|t| t == "null"))
        && let Some(Value::Object(other)) = options
            .iter()
            .find(|o| o.get("type").is_none_or(|t| t != "null"))
            .cloned()
    {
        map.remove("anyOf");
        for (key, value) in other {
            map.entry(key).or_insert(value);
        }
    }
}

/// A tool's output schema with the envelope fields (their definitions merged into `$defs`).
pub fn output_schema(tool: &ToolDef) -> JsonObject {
    let envelope = rmcp::handler::server::tool::schema_for_output::<Envelope>();
    let mut schema = (*tool.output_schema).clone();
    for section in ["properties", "$defs"] {
        let Some(Value::Object(extra)) = envelope.get(section) else {
            continue;
        };
        let target = schema
            .entry(section)
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(target) = target {
            for (key, value) in extra {
                let previous = target.insert(key.clone(), value.clone());
                assert!(
                    previous.is_none() || previous.as_ref() == Some(value),
                    "tool {}: its output declares {section}/{key}, which the envelope owns",
                    tool.name
                );
            }
        }
    }
    schema
}

/// The reply text: the tool's rendering of its data, then a block for each envelope field the
/// stages added (attached runbooks, shaping report), then the stages' notes.
pub fn render_reply(tool: &ToolDef, structured: &Value, notes: &[String]) -> String {
    let mut text = (tool.render)(structured);
    let mut block = |part: String| {
        text.push_str("\n\n");
        text.push_str(&part);
    };
    if let Some(runbooks) = structured.get(RELEVANT_RUNBOOKS)
        && let Ok(runbooks) = Vec::<RelevantRunbook>::deserialize(runbooks)
        && !runbooks.is_empty()
    {
        block(render_runbooks(&runbooks));
    }
    if let Some(synthesis) = structured.get(MODEL_SYNTHESIS)
        && let Ok(synthesis) = ModelSynthesis::deserialize(synthesis)
    {
        block(match (&synthesis.text, &synthesis.note) {
            (Some(text), _) => format!(
                "The client's model's synthesis (beside the deterministic answer above):\n{text}"
            ),
            (None, Some(note)) => format!("No model synthesis: {note}"),
            (None, None) => format!("Model synthesis: {}", synthesis.status),
        });
    }
    if let Some(truncated) = structured.get(TRUNCATED)
        && let Ok(truncation) = Truncation::deserialize(truncated)
    {
        block(truncation.footer());
    }
    for note in notes {
        block(note.clone());
    }
    text
}

/// Renders the attached runbooks as the text block shown after the data.
pub fn render_runbooks(runbooks: &[RelevantRunbook]) -> String {
    let mut out = String::from("Relevant runbooks:");
    for r in runbooks {
        let _ = write!(
            out,
            "\n- {} ({}) § {} — relevance {:.2}, for: {}",
            r.title,
            r.uri,
            r.section,
            r.score,
            r.signals.join(", "),
        );
        match r.sent_in_call {
            Some(call) if r.excerpt.is_empty() => {
                let _ = write!(out, "\n  (this section was sent with call {call})");
            }
            _ => {
                for line in r.excerpt.lines() {
                    let _ = write!(out, "\n  {line}");
                }
            }
        }
    }
    out
}
