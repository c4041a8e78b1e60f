//! The read-only SRE tools: their definitions (name, description, typed parameters and output
//! with JSON Schemas), the registry the MCP server and the CLI share, and the text rendering of
//! each result. Tool names are stable API.

pub mod deploys;
pub mod events;
pub mod health;
pub mod logs;
pub mod lookup;
pub mod namespaces;
pub mod pods;
pub mod runbooks;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::App;
use crate::cluster::ClusterError;

/// A failure the caller should read (returned as an `isError` tool result).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An argument is malformed or out of range; the message says what is valid.
    #[error("{0}")]
    InvalidArgument(String),
    /// A named object does not exist; the message lists the closest valid names.
    #[error("{0}")]
    NotFound(String),
    /// A pipeline stage refused the call (e.g. the session budget is spent).
    #[error("{0}")]
    Refused(String),
    /// The backend failed (API server unreachable, forbidden…).
    #[error("cluster backend error: {0}")]
    Backend(String),
}

impl From<ClusterError> for ToolError {
    fn from(error: ClusterError) -> Self {
        match error {
            e @ ClusterError::NotFound { .. } => ToolError::NotFound(e.to_string()),
            ClusterError::Backend(e) => ToolError::Backend(format!("{e:#}")),
        }
    }
}

pub type ToolResult<T> = Result<T, ToolError>;

/// Compact, human-readable rendering of a tool's structured output (the `text` content).
pub trait RenderText {
    fn render_text(&self) -> String;
}

type BoxedFuture = Pin<Box<dyn Future<Output = ToolResult<Value>> + Send>>;
pub type Handler = Arc<dyn Fn(Arc<App>, Value) -> BoxedFuture + Send + Sync>;

/// One tool, with everything needed to list it and call it.
pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub input_schema: Arc<JsonObject>,
    pub output_schema: Arc<JsonObject>,
    pub read_only: bool,
    pub handler: Handler,
    /// Renders the (possibly reshaped) structured result as text.
    pub render: fn(&Value) -> String,
}

fn render_as<O: DeserializeOwned + RenderText>(value: &Value) -> String {
    match O::deserialize(value) {
        Ok(output) => output.render_text(),
        // A stage produced something the typed renderer cannot read: show the JSON itself
        // rather than nothing.
        Err(_) => serde_json::to_string_pretty(value).unwrap_or_default(),
    }
}

/// Builds a read-only tool from a typed async function.
pub fn read_only_tool<P, O, F, Fut>(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    function: F,
) -> ToolDef
where
    P: DeserializeOwned + JsonSchema + 'static,
    O: Serialize + DeserializeOwned + JsonSchema + RenderText + 'static,
    F: Fn(Arc<App>, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ToolResult<O>> + Send + 'static,
{
    let function = Arc::new(function);
    let handler: Handler = Arc::new(move |app, arguments| {
        let function = function.clone();
        Box::pin(async move {
            let params: P = serde_json::from_value(arguments).map_err(|e| {
                ToolError::InvalidArgument(format!("invalid arguments for {name}: {e}"))
            })?;
            let output = function(app, params).await?;
            serde_json::to_value(output)
                .map_err(|e| ToolError::Backend(format!("could not encode the result: {e}")))
        })
    });
    ToolDef {
        name,
        title,
        description,
        input_schema: with_max_tokens(
            rmcp::handler::server::tool::schema_for_input::<P>()
                .unwrap_or_else(|e| panic!("tool {name}: {e}")),
        ),
        output_schema: rmcp::handler::server::tool::schema_for_output::<Envelope<O>>(),
        read_only: true,
        handler,
        render: render_as::<O>,
    }
}

/// Adds the `max_tokens` argument every tool accepts (the pipeline takes it out before the
/// tool sees its arguments).
fn with_max_tokens(schema: Arc<JsonObject>) -> Arc<JsonObject> {
    let mut schema = (*schema).clone();
    let properties = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(properties) = properties {
        properties.insert(
            "max_tokens".into(),
            serde_json::json!({
                "type": ["integer", "null"],
                "minimum": crate::budget::MIN_RESULT_TOKENS,
                "description": "Most tokens this result may cost (text plus structured content). A larger result is shaped to fit — most relevant items kept, the rest counted — and the full result is kept at the result:// link in the reply. Default: the server's --max-result-tokens; values above its ceiling are clamped."
            }),
        );
    }
    Arc::new(schema)
}

/// What every tool's structured output may carry besides its own fields (added by the
/// pipeline's stages); declared in every output schema.
#[derive(Serialize, serde::Deserialize, JsonSchema)]
pub struct Envelope<T> {
    #[serde(flatten)]
    pub result: T,
    /// Runbook sections that address the problems in this result (added by the runbook
    /// augmenter; absent when the result shows no problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevant_runbooks: Option<Vec<crate::augment::RelevantRunbook>>,
    /// Present when the result was shaped to fit its token cap: what was dropped, how to
    /// narrow the call, and where the full result can be read (`result://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<crate::shape::Truncation>,
}

/// All tools, in a stable order.
pub struct ToolRegistry {
    tools: Vec<ToolDef>,
}

impl ToolRegistry {
    /// The standard read-only tool set.
    pub fn standard() -> ToolRegistry {
        ToolRegistry {
            tools: vec![
                health::tool(),
                namespaces::tool(),
                pods::list_pods_tool(),
                pods::describe_pod_tool(),
                logs::get_pod_logs_tool(),
                events::tool(),
                deploys::list_deployments_tool(),
                deploys::get_recent_deploys_tool(),
                logs::search_logs_tool(),
                logs::count_errors_tool(),
                logs::trace_transaction_tool(),
                runbooks::tool(),
            ],
        }
    }

    pub fn get(&self, name: &str) -> Option<&ToolDef> {
        self.tools.iter().find(|t| t.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ToolDef> {
        self.tools.iter()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|t| t.name)
    }
}

/// Serde helper: skip empty vectors in output.
pub(crate) fn is_empty<T>(v: &[T]) -> bool {
    v.is_empty()
}
