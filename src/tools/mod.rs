//! The SRE tools: their definitions (name, description, kind, typed parameters and output with
//! JSON Schemas), the registry the pipeline serves, and the text rendering of each result. A
//! tool sees only a narrow [`Context`] (cluster, runbooks, limits), never the application.
//! Tool names are stable API.
//!
//! To add a tool: a module here with its params (every argument bounded in its schema with a
//! constant of [`limits`], which the pipeline checks before any work), output (+ `RenderText`)
//! and an async function of `(Arc<Context>, Params)`, built with [`define_tool`] and listed in
//! [`ToolRegistry::standard`].

pub mod deploys;
pub mod events;
pub mod health;
pub mod limits;
pub mod logs;
pub mod lookup;
pub mod namespaces;
pub mod pods;
pub mod runbooks;
pub mod troubleshoot;
pub mod writes;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::{ClusterBackend, ClusterError};
use crate::runbooks::knowledge::KnowledgeBase;
use crate::util::quote::{clip, short};
use crate::util::suggest::suggest;

/// What a tool may use: the cluster, the runbook knowledge, the limits that shape its answer,
/// the write policy, and — for the call in hand — a way to say how far it has got, what the
/// caller can do, a way to ask the caller (approval, a model's review) and a signal that the
/// caller stopped waiting. Tools see nothing else of the application (no ledger, no stages, no
/// server, no client).
#[derive(Clone)]
pub struct Context {
    pub backend: Arc<dyn ClusterBackend>,
    pub knowledge: Arc<KnowledgeBase>,
    pub limits: Limits,
    /// How writes are gated (mode, environments, approvals, rollout watch).
    pub writes: Arc<writes::WritePolicy>,
    pub progress: ProgressSender,
    pub caller: Caller,
    pub ask: Asker,
    /// Cancelled when the caller stopped waiting (the request was cancelled or timed out):
    /// a long wait (a rollout watch, an approval) ends early and says so.
    pub stop: tokio_util::sync::CancellationToken,
}

impl Context {
    pub fn new(
        backend: Arc<dyn ClusterBackend>,
        knowledge: Arc<KnowledgeBase>,
        limits: Limits,
    ) -> Context {
        Context {
            backend,
            knowledge,
            limits,
            writes: Arc::new(writes::WritePolicy::default()),
            progress: ProgressSender::default(),
            caller: Caller::default(),
            ask: Asker::default(),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The same context with another write policy.
    pub fn with_writes(mut self, writes: Arc<writes::WritePolicy>) -> Context {
        self.writes = writes;
        self
    }

    /// The same context, reporting progress to `progress`.
    pub fn with_progress(&self, progress: ProgressSender) -> Context {
        Context {
            progress,
            ..self.clone()
        }
    }

    /// The same context for one call of `caller`, asking through `ask`, stopped by `stop`.
    pub fn for_call(
        &self,
        caller: Caller,
        ask: Asker,
        stop: tokio_util::sync::CancellationToken,
    ) -> Context {
        Context {
            caller,
            ask,
            stop,
            ..self.clone()
        }
    }
}

/// Who is calling and what their host can do, as far as the tools need to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The client's name and version (`claude-ai 0.1.0`), when it said.
    pub client: Option<String>,
    /// The host can show the user a form and return the answer (MCP elicitation, on a
    /// protocol version that allows it).
    pub can_elicit: bool,
    /// The host can run a prompt through its model (MCP sampling).
    pub can_sample: bool,
}

/// A question for the caller's host, answered by the pipeline through the client.
#[derive(Debug)]
pub enum Ask {
    /// Show `message` and a form (a flat JSON object schema) to the user.
    Elicit {
        message: String,
        schema: Value,
        reply: tokio::sync::oneshot::Sender<Answer>,
    },
    /// Ask the host's model; the text of its answer, or why there is none.
    Sample {
        system: String,
        prompt: String,
        max_tokens: u32,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
}

/// The user's answer to an elicitation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Accepted(Value),
    Declined,
    Cancelled,
    /// No answer: the host cannot ask, or the request failed (the reason).
    Unavailable(String),
}

/// Where a tool sends its questions for the caller. Without a connected channel (the terminal
/// subcommands, tests) every question is answered "unavailable".
#[derive(Debug, Clone, Default)]
pub struct Asker(Option<tokio::sync::mpsc::UnboundedSender<Ask>>);

impl Asker {
    pub fn new(sender: tokio::sync::mpsc::UnboundedSender<Ask>) -> Asker {
        Asker(Some(sender))
    }

    /// Asks the user to fill in a form.
    pub async fn elicit(&self, message: String, schema: Value) -> Answer {
        let Some(sender) = &self.0 else {
            return Answer::Unavailable("no client to ask".into());
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if sender
            .send(Ask::Elicit {
                message,
                schema,
                reply,
            })
            .is_err()
        {
            return Answer::Unavailable("the call has ended".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Answer::Unavailable("the call has ended".into()))
    }

    /// Asks the host's model.
    pub async fn sample(
        &self,
        system: String,
        prompt: String,
        max_tokens: u32,
    ) -> Result<String, String> {
        let Some(sender) = &self.0 else {
            return Err("no client to ask".into());
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        sender
            .send(Ask::Sample {
                system,
                prompt,
                max_tokens,
                reply,
            })
            .map_err(|_| "the call has ended".to_string())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the call has ended".into()))
    }
}

/// One step of a long call ("read 4 of 9 services").
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub done: u32,
    pub total: Option<u32>,
    pub message: String,
}

/// Where a tool reports its progress. The pipeline gives a call a connected sender when the
/// client asked for progress and forwards what arrives; otherwise reports go nowhere. A
/// channel, so a tool never waits on the client; steps are numbered here so they only rise,
/// as the protocol requires.
#[derive(Debug, Clone, Default)]
pub struct ProgressSender(Option<ProgressChannel>);

#[derive(Debug, Clone)]
struct ProgressChannel {
    sender: tokio::sync::mpsc::UnboundedSender<Progress>,
    steps: Arc<std::sync::atomic::AtomicU32>,
}

impl ProgressSender {
    pub fn new(sender: tokio::sync::mpsc::UnboundedSender<Progress>) -> ProgressSender {
        ProgressSender(Some(ProgressChannel {
            sender,
            steps: Arc::default(),
        }))
    }

    /// Reports the next step; `total` when the number of steps is known.
    pub fn step(&self, total: Option<u32>, message: impl Into<String>) {
        if let Some(channel) = &self.0 {
            let done = channel
                .steps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            // The receiver is gone only when the call has ended; nothing to tell then.
            let _ = channel.sender.send(Progress {
                done,
                total: total.map(|t| t.max(done)),
                message: message.into(),
            });
        }
    }

    /// Reports the last step (its number is the total).
    pub fn last_step(&self, message: impl Into<String>) {
        if let Some(channel) = &self.0 {
            let done = channel.steps.load(std::sync::atomic::Ordering::Relaxed) + 1;
            self.step(Some(done), message);
        }
    }
}

/// Limits on how much a tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most log entries one call of get_pod_logs or search_logs may return (tail_lines and
    /// limit are clamped to it); what reaches the client is bounded by the token cap.
    pub max_log_lines: usize,
    /// Most pod log streams read at the same time by the tools that read many.
    pub log_concurrency: usize,
    /// Most objects one listing call reads, page by page (list_pods in a huge namespace);
    /// the result says when it stopped short.
    pub max_list_items: usize,
}

impl Limits {
    pub const DEFAULT_MAX_LOG_LINES: usize = 50_000;
    pub const DEFAULT_LOG_CONCURRENCY: usize = 8;
    pub const DEFAULT_MAX_LIST_ITEMS: usize = 20_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_log_lines: Limits::DEFAULT_MAX_LOG_LINES,
            log_concurrency: Limits::DEFAULT_LOG_CONCURRENCY,
            max_list_items: Limits::DEFAULT_MAX_LIST_ITEMS,
        }
    }
}

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
    /// The cluster could not answer (forbidden, timed out, unavailable…); the cause is kept.
    #[error("cluster backend error: {0}")]
    Cluster(#[source] ClusterError),
    /// A dependency of the tool is not ready yet (the runbook index is loading); try again.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of ours (a result that could not be encoded).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ClusterError> for ToolError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::NotFound {
                kind,
                ref name,
                ref namespace,
                ref existing,
            } => {
                let place = namespace
                    .as_ref()
                    .map(|ns| format!(" in namespace {}", short(ns)))
                    .unwrap_or_default();
                let names = match existing {
                    Some(existing) => format!(
                        "; {kind}s there: {}",
                        suggest(name, existing.iter().map(String::as_str))
                    ),
                    None => String::new(),
                };
                ToolError::NotFound(format!("{kind} {} not found{place}{names}", short(name)))
            }
            ClusterError::Invalid(message) => ToolError::InvalidArgument(message),
            ClusterError::ReadOnly(message) => ToolError::Refused(message),
            other => ToolError::Cluster(other),
        }
    }
}

pub type ToolResult<T> = Result<T, ToolError>;

/// Compact, human-readable rendering of a tool's structured output (the `text` content).
pub trait RenderText {
    fn render_text(&self) -> String;
}

type BoxedFuture = Pin<Box<dyn Future<Output = ToolResult<Value>> + Send>>;
pub type Handler = Arc<dyn Fn(Arc<Context>, Value) -> BoxedFuture + Send + Sync>;

/// What a tool does to the cluster, stated honestly for the client's annotations and for the
/// pipeline's stages (an approval gate reviews writes; the budget never blocks a safety action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// Reads only; calling it twice is harmless.
    Read,
    /// Changes the cluster.
    Write {
        /// May destroy or replace what runs (deploy, restart); false for additive changes.
        destructive: bool,
        /// Calling it again with the same arguments has no further effect (scale to N).
        idempotent: bool,
        /// A step back to safety (rollback): never refused for budget reasons.
        safety_action: bool,
    },
}

impl ToolKind {
    pub fn read_only(self) -> bool {
        matches!(self, ToolKind::Read)
    }

    pub fn destructive(self) -> bool {
        matches!(
            self,
            ToolKind::Write {
                destructive: true,
                ..
            }
        )
    }

    pub fn idempotent(self) -> bool {
        match self {
            ToolKind::Read => true,
            ToolKind::Write { idempotent, .. } => idempotent,
        }
    }

    pub fn safety_action(self) -> bool {
        matches!(
            self,
            ToolKind::Write {
                safety_action: true,
                ..
            }
        )
    }
}

/// One tool, with everything needed to list it and call it.
pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// The tool's own arguments (the pipeline adds those every tool accepts).
    pub input_schema: Arc<JsonObject>,
    /// The tool's own result (the pipeline adds the envelope its stages may attach).
    pub output_schema: Arc<JsonObject>,
    pub kind: ToolKind,
    /// Whether runbooks may be attached to its results (false for a tool whose result is
    /// runbooks already).
    pub attach_runbooks: bool,
    /// Reads the cluster (so it takes the pipeline's `context` argument).
    pub reads_cluster: bool,
    pub handler: Handler,
    /// Renders the (possibly reshaped) structured result as text.
    pub render: fn(&Value) -> String,
    /// A prompt over the result for the client's model to synthesise from (the pipeline asks
    /// it by MCP sampling when the client offers that); `None` for most tools.
    pub synthesis_prompt: Option<fn(&Value) -> Option<String>>,
}

fn render_as<O: DeserializeOwned + RenderText>(value: &Value) -> String {
    match O::deserialize(value) {
        Ok(output) => output.render_text(),
        // A stage produced something the typed renderer cannot read: show the JSON itself
        // rather than nothing.
        Err(_) => serde_json::to_string_pretty(value).unwrap_or_default(),
    }
}

/// Defines a tool from a typed async function.
pub fn define_tool<P, O, F, Fut>(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    kind: ToolKind,
    function: F,
) -> ToolDef
where
    P: DeserializeOwned + JsonSchema + 'static,
    O: Serialize + DeserializeOwned + JsonSchema + RenderText + 'static,
    F: Fn(Arc<Context>, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ToolResult<O>> + Send + 'static,
{
    let function = Arc::new(function);
    let handler: Handler = Arc::new(move |context, arguments| {
        let function = function.clone();
        Box::pin(async move {
            let params: P = serde_json::from_value(arguments).map_err(|e| {
                // Serde may quote the value it could not read: at most a short part of it.
                let e = e.to_string();
                ToolError::InvalidArgument(format!(
                    "invalid arguments for {name}: {}",
                    clip(&e, 200)
                ))
            })?;
            let output = function(context, params).await?;
            serde_json::to_value(output)
                .map_err(|e| ToolError::Internal(format!("could not encode the result: {e}")))
        })
    });
    ToolDef {
        name,
        title,
        description,
        input_schema: rmcp::handler::server::tool::schema_for_input::<P>()
            .unwrap_or_else(|e| panic!("tool {name}: {e}")),
        output_schema: rmcp::handler::server::tool::schema_for_output::<O>(),
        kind,
        attach_runbooks: true,
        reads_cluster: true,
        handler,
        render: render_as::<O>,
        synthesis_prompt: None,
    }
}

/// All tools, in a stable order.
pub struct ToolRegistry {
    tools: Vec<ToolDef>,
}

impl ToolRegistry {
    /// The standard tool set: the reads, then the writes (gated by the write policy).
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
                troubleshoot::tool(),
                writes::deploy::tool(),
                writes::rollback::tool(),
                writes::restart::tool(),
                writes::scale::tool(),
            ],
        }
    }

    pub fn get(&self, name: &str) -> Option<&ToolDef> {
        self.tools.iter().find(|t| t.name == name)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ToolDef> {
        self.tools.iter_mut()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cluster_errors_read_differently_to_the_user() {
        let forbidden = ToolError::from(ClusterError::Forbidden {
            verb: "list",
            resource: "pods",
            namespace: Some("payments".into()),
            message: None,
        });
        assert!(matches!(forbidden, ToolError::Cluster(_)));
        assert_eq!(
            forbidden.to_string(),
            "cluster backend error: forbidden: the credentials in use may not list pods in namespace \"payments\""
        );
        let timeout = ToolError::from(ClusterError::Timeout {
            operation: "list pods".into(),
            after: Duration::from_secs(10),
        });
        assert_eq!(
            timeout.to_string(),
            "cluster backend error: timed out after 10s: list pods"
        );
        let missing = ToolError::from(ClusterError::NotFound {
            kind: "pod",
            name: "web-1".into(),
            namespace: Some("edge".into()),
            existing: Some(vec!["api-7".into(), "web-2".into()]),
        });
        assert!(matches!(missing, ToolError::NotFound(_)));
        assert!(
            missing.to_string().ends_with("pods there: web-2, api-7"),
            "{missing}"
        );
        let invalid = ToolError::from(ClusterError::Invalid("field selector path".into()));
        assert!(matches!(invalid, ToolError::InvalidArgument(_)));
        // The cause is kept for the log.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let unavailable = ClusterError::Unavailable {
            message: "https://10.0.0.1:6443 unreachable".into(),
            cause: Some(Box::new(io)),
        };
        assert_eq!(
            std::error::Error::source(&unavailable).unwrap().to_string(),
            "refused"
        );
    }
}
