//! The result pipeline: every tool call — from the MCP server or the `call` subcommand — runs
//! here: arguments (checked against the tool's schema) → stages' admission → tool → stages
//! (runbook augmenter, budget tracker…) → reply → every stage's after-call hook. Tools know
//! nothing of the stages; stages know nothing of individual tools (they read a tool's declared
//! kind and the meaning of result fields).
//!
//! To add a stage: implement [`Stage`] in a module here and add it in the composition root
//! (`app.rs`), in order (the budget stays last so it counts what the client receives).

pub mod arguments;
pub mod audit;
pub mod augment;
pub mod budget;
pub mod client;
pub mod envelope;
pub mod problem;
pub mod result_store;
pub mod shape;
pub mod stats;
pub mod synthesis;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Map, Value};

use self::budget::{MAX_TOKENS_LIMIT, MIN_RESULT_TOKENS, ShapingConfig};
use self::client::{Client, Elicited};
use self::envelope::{ReplyMeta, render_reply};
use self::stats::CallStats;
use crate::tools::{
    Answer, Ask, Asker, Caller, Context, ProgressSender, ToolDef, ToolError, ToolRegistry,
};
use crate::util::redact;
use crate::util::schema::standard_formats;

/// A tool result travelling through the stages. Stages may edit `structured` (the envelope
/// fields they add are rendered as text blocks after the data), add notes shown last, and set
/// `_meta` fields.
#[derive(Debug, Clone)]
pub struct StagedResult {
    pub structured: Value,
    pub notes: Vec<String>,
    pub meta: ReplyMeta,
    /// The most tokens this reply may cost (the caller's `max_tokens` or the default cap).
    pub max_tokens: usize,
    /// The final serialisation and text, when the last stage already produced them (so the
    /// pipeline does not do it twice). A stage that edits the result must clear it.
    pub rendered: Option<Rendered>,
    /// What the tool asked the client's model during the call (prompt, answer), for the ledger.
    pub sampled: Vec<(String, String)>,
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
            meta: ReplyMeta::default(),
            max_tokens,
            rendered: None,
            sampled: Vec::new(),
        }
    }
}

/// A result serialised and rendered as the client receives it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: String,
    /// The reply text (see [`render_reply`]).
    pub text: String,
    /// Tokens of each view, when already counted.
    pub tokens: Option<shape::ViewTokens>,
}

/// What the caller gets back.
#[derive(Debug, Clone)]
pub struct ToolReply {
    pub tool: String,
    pub structured: Option<Value>,
    /// `structured`, serialised once for counting and logging.
    pub structured_json: Option<String>,
    /// Tokens of `text` and of `structured_json`, when a stage already counted them.
    pub tokens: Option<shape::ViewTokens>,
    pub text: String,
    pub is_error: bool,
    pub meta: ReplyMeta,
}

impl ToolReply {
    fn error(tool: &str, message: String) -> ToolReply {
        ToolReply {
            tool: tool.to_string(),
            structured: None,
            structured_json: None,
            tokens: None,
            text: message,
            is_error: true,
            meta: ReplyMeta::default(),
        }
    }
}

/// One call as the stages see it: the tool (with its kind), the arguments the tool receives,
/// and the client that made the call.
pub struct Call<'a> {
    pub tool: &'a ToolDef,
    pub arguments: &'a Map<String, Value>,
    pub client: &'a dyn Client,
    /// When the call arrived (its duration, for the audit log).
    pub started: Instant,
}

impl<'a> Call<'a> {
    pub fn new(
        tool: &'a ToolDef,
        arguments: &'a Map<String, Value>,
        client: &'a dyn Client,
    ) -> Call<'a> {
        Call {
            tool,
            arguments,
            client,
            started: Instant::now(),
        }
    }
}

/// How a call ended, for the after-call hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The tool ran and returned a result.
    Completed,
    /// The tool ran (or its arguments were rejected) and the reply is an error.
    Failed,
    /// A stage refused the call before the tool ran.
    Refused { by: &'static str },
}

/// A pipeline stage (augmenter, budget tracker, approval gate…). A stage whose `apply` fails
/// is logged and skipped: a broken enrichment must never cost the user the data.
#[async_trait]
pub trait Stage: Send + Sync {
    fn name(&self) -> &'static str;

    /// Before the tool runs: `Err(message)` refuses the call (an `isError` reply). It may ask
    /// the client (e.g. for an approval through elicitation).
    async fn admit(&self, _call: &Call<'_>) -> Result<(), String> {
        Ok(())
    }

    /// Edits the structured result before it is rendered as text.
    async fn apply(&self, call: &Call<'_>, result: &mut StagedResult) -> anyhow::Result<()>;

    /// Sees the final reply of every call — completed, failed or refused — in stage order.
    fn finish(&self, _call: &Call<'_>, _outcome: Outcome, _reply: &mut ToolReply) {}
}

/// The tool could not be called at all (unknown name): a protocol error, not a tool failure.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown tool {}; available tools: {available}",
    crate::util::quote::short(name)
)]
pub struct UnknownTool {
    pub name: String,
    pub available: String,
}

pub struct Pipeline {
    context: Arc<Context>,
    tools: ToolRegistry,
    caps: ShapingConfig,
    stages: Vec<Box<dyn Stage>>,
    stats: CallStats,
}

impl Pipeline {
    /// Serves `tools` with `context`; every tool's schemas gain what the pipeline adds (the
    /// `max_tokens` argument, the envelope fields) and keep only standard formats.
    pub fn new(context: Arc<Context>, mut tools: ToolRegistry, caps: ShapingConfig) -> Pipeline {
        for tool in tools.iter_mut() {
            let mut input = envelope::input_schema(tool, MIN_RESULT_TOKENS, MAX_TOKENS_LIMIT);
            let mut output = envelope::output_schema(tool);
            standard_formats(&mut input);
            standard_formats(&mut output);
            tool.input_schema = Arc::new(input);
            tool.output_schema = Arc::new(output);
        }
        Pipeline {
            context,
            tools,
            caps,
            stages: Vec::new(),
            stats: CallStats::default(),
        }
    }

    pub fn with_stage(mut self, stage: Box<dyn Stage>) -> Pipeline {
        self.stages.push(stage);
        self
    }

    /// The tools as listed to clients (schemas with the pipeline's additions).
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.context
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    pub async fn call(
        &self,
        name: &str,
        mut arguments: Map<String, Value>,
        client: &dyn Client,
    ) -> Result<ToolReply, UnknownTool> {
        let Some(tool) = self.tools.get(name) else {
            return Err(UnknownTool {
                name: name.to_string(),
                available: self.tools.names().collect::<Vec<_>>().join(", "),
            });
        };
        let started = Instant::now();
        // Bounded input, before any work: `max_tokens` belongs to the pipeline (every tool
        // accepts it) and is resolved against the configured caps; every other argument is
        // checked against the tool's schema (names, types, lengths, ranges).
        let admitted = self
            .caps
            .resolve(arguments.remove(envelope::MAX_TOKENS).as_ref())
            .and_then(|cap| {
                arguments::check(&tool.input_schema, &arguments)
                    .map(|()| cap)
                    .map_err(|message| {
                        redact::mask(&format!("invalid arguments for {name}: {message}"))
                            .into_owned()
                    })
            });
        // `context` is the pipeline's too (checked above: a name, and only for a tool that
        // reads the cluster).
        let cluster_context = match arguments.remove(envelope::CONTEXT) {
            Some(Value::String(context)) if tool.reads_cluster && tool.kind.read_only() => {
                Some(context)
            }
            _ => None,
        };
        let mut call = Call::new(tool, &arguments, client);
        call.started = started;
        let mut refusal = None;
        if admitted.is_ok() {
            for stage in &self.stages {
                if let Err(message) = stage.admit(&call).await {
                    refusal = Some((stage.name(), message));
                    break;
                }
            }
        }
        let (mut reply, outcome) = match (admitted, refusal) {
            (Err(message), _) => (
                ToolReply::error(name, ToolError::InvalidArgument(message).to_string()),
                Outcome::Failed,
            ),
            (Ok(_), Some((by, message))) => (
                ToolReply::error(name, ToolError::Refused(message).to_string()),
                Outcome::Refused { by },
            ),
            (Ok((max_tokens, cap_note)), None) => 'run: {
                let context = match self.context_for(cluster_context.as_deref()).await {
                    Ok(context) => context,
                    Err(error) => {
                        let message = redact::mask(&error.to_string()).into_owned();
                        break 'run (ToolReply::error(name, message), Outcome::Failed);
                    }
                };
                let info = context.backend.info();
                let (result, sampled) =
                    run_tool(tool, context, Value::Object(arguments.clone()), client).await;
                match result {
                    Ok(mut structured) => {
                        // Credentials a log line or an event carried stop here, before any
                        // stage counts or shows the result.
                        redact::mask_json(&mut structured);
                        crate::util::compact::compact(&mut structured);
                        let mut staged = StagedResult::new(structured, max_tokens);
                        staged.sampled = sampled;
                        staged.meta.backend = Some(info.kind.to_string());
                        staged.meta.context = info.context;
                        if let Some(note) = cap_note {
                            staged.meta.max_tokens_note = Some(note.clone());
                            staged.notes.push(note);
                        }
                        self.apply_stages(&call, &mut staged).await;
                        (staged.into_reply(tool), Outcome::Completed)
                    }
                    Err(error) => {
                        if let ToolError::Cluster(cause) = &error {
                            tracing::warn!(tool = name, error = %error_chain(cause), "cluster error");
                        }
                        let message = redact::mask(&error.to_string()).into_owned();
                        // A tool that refuses by policy (writes off) did nothing: a refusal.
                        let outcome = match error {
                            ToolError::Refused(_) => Outcome::Refused { by: tool.name },
                            _ => Outcome::Failed,
                        };
                        (ToolReply::error(name, message), outcome)
                    }
                }
            }
        };
        for stage in &self.stages {
            stage.finish(&call, outcome, &mut reply);
        }
        let elapsed = started.elapsed();
        self.stats.record(name, elapsed, reply.is_error);
        let bytes = reply.text.len() + reply.structured_json.as_ref().map_or(0, String::len);
        tracing::info!(
            tool = name,
            duration_us = elapsed.as_micros() as u64,
            outcome = match outcome {
                Outcome::Completed => "ok",
                Outcome::Failed => "error",
                Outcome::Refused { .. } => "refused",
            },
            bytes,
            "tool call"
        );
        Ok(reply)
    }

    /// The tools' context for one call: the server's, or one reading another kubeconfig context.
    async fn context_for(&self, cluster_context: Option<&str>) -> Result<Arc<Context>, ToolError> {
        let Some(name) = cluster_context else {
            return Ok(self.context.clone());
        };
        if self.context.backend.info().context.as_deref() == Some(name) {
            return Ok(self.context.clone());
        }
        let backend = self.context.backend.for_context(name).await?;
        Ok(Arc::new(Context::new(
            backend,
            self.context.knowledge.clone(),
            self.context.limits,
        )))
    }

    async fn apply_stages(&self, call: &Call<'_>, staged: &mut StagedResult) {
        for stage in &self.stages {
            let stage_started = Instant::now();
            if let Err(error) = stage.apply(call, staged).await {
                tracing::warn!(tool = call.tool.name, stage = stage.name(), %error, "stage failed; result passed on unchanged");
            }
            tracing::debug!(
                tool = call.tool.name,
                stage = stage.name(),
                us = stage_started.elapsed().as_micros() as u64,
                "stage done"
            );
        }
    }
}

/// Runs the tool. A read tool runs straight unless the client asked for progress; a write tool
/// always gets the caller's facts, a way to ask the client (elicitation, sampling) and the
/// caller's stop signal. What the tool reports is forwarded in order, all of it before the
/// result; what it asked the client's model is returned for the ledger.
async fn run_tool(
    tool: &ToolDef,
    context: Arc<Context>,
    arguments: Value,
    client: &dyn Client,
) -> (Result<Value, ToolError>, Vec<(String, String)>) {
    let writes = !tool.kind.read_only();
    if !client.wants_progress() && !writes {
        return ((tool.handler)(context, arguments).await, Vec::new());
    }
    let (sender, mut updates) = tokio::sync::mpsc::unbounded_channel();
    let (ask, mut asks) = tokio::sync::mpsc::unbounded_channel();
    let mut context = context.with_progress(if client.wants_progress() {
        ProgressSender::new(sender)
    } else {
        ProgressSender::default()
    });
    if writes {
        let facts = client.facts();
        let caller = Caller {
            client: facts.name.as_ref().map(|name| match &facts.version {
                Some(version) => format!("{name} {version}"),
                None => name.clone(),
            }),
            can_elicit: facts.can_elicit(),
            can_sample: facts.can_sample(),
        };
        context = context.for_call(caller, Asker::new(ask), client.stopped());
    }
    let mut sampled = Vec::new();
    let run = (tool.handler)(Arc::new(context), arguments);
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            biased;
            Some(update) = updates.recv() => {
                client.progress(update.done.into(), update.total.map(f64::from), &update.message).await;
            }
            Some(question) = asks.recv() => match question {
                Ask::Elicit { message, schema, reply } => {
                    let answer = match client.elicit(&message, schema).await {
                        Ok(Elicited::Accepted(content)) => Answer::Accepted(content),
                        Ok(Elicited::Declined) => Answer::Declined,
                        Ok(Elicited::Cancelled) => Answer::Cancelled,
                        Err(error) => Answer::Unavailable(error.to_string()),
                    };
                    let _ = reply.send(answer);
                }
                Ask::Sample { system, prompt, max_tokens, reply } => {
                    let answer = client.sample(&system, &prompt, max_tokens).await;
                    if let Ok(text) = &answer {
                        sampled.push((format!("{system}\n{prompt}"), text.clone()));
                    }
                    let _ = reply.send(answer.map_err(|e| e.to_string()));
                }
            },
            result = &mut run => break result,
        }
    };
    while let Ok(update) = updates.try_recv() {
        client
            .progress(
                update.done.into(),
                update.total.map(f64::from),
                &update.message,
            )
            .await;
    }
    (result, sampled)
}

/// An error and its chain of causes on one line, for the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::client::NoClient;
    use super::*;
    use crate::cluster::demo::DemoCluster;
    use crate::runbooks::knowledge::{KnowledgeBase, KnowledgeConfig};
    use crate::tools::Limits;

    fn pipeline() -> Pipeline {
        let context = Arc::new(Context::new(
            Arc::new(DemoCluster::load(jiff::Timestamp::now()).unwrap()),
            KnowledgeBase::load_now(KnowledgeConfig::lexical_only()),
            Limits::default(),
        ));
        Pipeline::new(context, ToolRegistry::standard(), ShapingConfig::default())
    }

    /// A stage that records what it saw and can be told to refuse or to fail.
    struct Probe {
        refuse: bool,
        fail: bool,
        seen: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl Stage for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }

        async fn admit(&self, call: &Call<'_>) -> Result<(), String> {
            self.seen.lock().unwrap().push(format!(
                "admit {} {:?}",
                call.tool.name,
                call.arguments.keys().collect::<Vec<_>>()
            ));
            if self.refuse {
                Err("not now".into())
            } else {
                Ok(())
            }
        }

        async fn apply(&self, _call: &Call<'_>, result: &mut StagedResult) -> anyhow::Result<()> {
            if self.fail {
                anyhow::bail!("enrichment broke");
            }
            result.notes.push("probe was here".into());
            Ok(())
        }

        fn finish(&self, call: &Call<'_>, outcome: Outcome, reply: &mut ToolReply) {
            self.seen.lock().unwrap().push(format!(
                "finish {} {outcome:?} error={}",
                call.tool.name, reply.is_error
            ));
        }
    }

    /// The standard pipeline with one probe stage; what the probe saw.
    fn probed(refuse: bool, fail: bool) -> (Pipeline, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            refuse,
            fail,
            seen: seen.clone(),
        };
        (pipeline().with_stage(Box::new(probe)), seen)
    }

    async fn call(pipeline: &Pipeline, tool: &str, arguments: Value) -> ToolReply {
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        pipeline.call(tool, arguments, &NoClient).await.unwrap()
    }

    #[tokio::test]
    async fn stages_see_the_call_without_max_tokens_and_finish_every_call() {
        let (pipeline, seen) = probed(false, false);
        let reply = call(&pipeline, "list_namespaces", json!({"max_tokens": 5000})).await;
        assert!(!reply.is_error, "{}", reply.text);
        assert!(reply.text.ends_with("probe was here"));
        let reply = call(&pipeline, "list_pods", json!({"namespace": "nope"})).await;
        assert!(reply.is_error);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "admit list_namespaces []",
                "finish list_namespaces Completed error=false",
                "admit list_pods [\"namespace\"]",
                "finish list_pods Failed error=true",
            ]
        );
    }

    #[tokio::test]
    async fn arguments_outside_the_schema_are_refused_before_any_stage_admits_the_call() {
        let (pipeline, seen) = probed(false, false);
        let huge = "p".repeat(1_000_000);
        let reply = call(
            &pipeline,
            "describe_pod",
            json!({"namespace": "payments", "pod": huge}),
        )
        .await;
        assert!(reply.is_error);
        assert_eq!(
            reply.text,
            "invalid arguments for describe_pod: argument \"pod\" is 1,000,000 characters; the limit is 253 (a Kubernetes name)"
        );
        // `context` is an argument only of the tools that read the cluster.
        let reply = call(
            &pipeline,
            "search_runbooks",
            json!({"query": "oom", "context": "staging"}),
        )
        .await;
        assert!(
            reply.text.starts_with(
                "invalid arguments for search_runbooks: unknown argument \"context\"; valid arguments: "
            ),
            "{}",
            reply.text
        );
        let reply = call(
            &pipeline,
            "list_pods",
            json!({"namespace": "payments", "context": "c".repeat(254)}),
        )
        .await;
        assert!(
            reply.text.contains("\"context\" is 254 characters"),
            "{}",
            reply.text
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "finish describe_pod Failed error=true",
                "finish search_runbooks Failed error=true",
                "finish list_pods Failed error=true",
            ]
        );
    }

    /// A client that asked for progress and records what it is told.
    #[derive(Default)]
    struct Watching(Mutex<Vec<(f64, Option<f64>, String)>>);

    #[async_trait]
    impl Client for Watching {
        fn facts(&self) -> client::ClientFacts {
            client::ClientFacts::default()
        }

        async fn elicit(
            &self,
            _message: &str,
            _schema: Value,
        ) -> Result<client::Elicited, client::ClientError> {
            Err(client::ClientError::Unsupported("elicitation"))
        }

        async fn sample(
            &self,
            _system: &str,
            _prompt: &str,
            _max_tokens: u32,
        ) -> Result<String, client::ClientError> {
            Err(client::ClientError::Unsupported("sampling"))
        }

        fn wants_progress(&self) -> bool {
            true
        }

        async fn progress(&self, progress: f64, total: Option<f64>, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push((progress, total, message.to_string()));
        }
    }

    #[tokio::test]
    async fn a_long_call_reports_rising_progress_before_its_result() {
        let pipeline = pipeline();
        let watching = Watching::default();
        let Value::Object(arguments) = json!({"description": "checkout is slow"}) else {
            unreachable!()
        };
        let reply = pipeline
            .call("troubleshoot_issue", arguments, &watching)
            .await
            .unwrap();
        assert!(!reply.is_error, "{}", reply.text);
        let steps = watching.0.lock().unwrap().clone();
        assert!(steps.len() >= 3, "{steps:?}");
        assert!(steps.windows(2).all(|w| w[0].0 < w[1].0), "{steps:?}");
        let (done, total, message) = steps.last().unwrap();
        assert_eq!(Some(*done), *total, "{steps:?}");
        assert!(message.contains("ranked"), "{message}");
        assert!(steps[0].2.starts_with("scope: "), "{steps:?}");
        // A quick tool says nothing; a client that did not ask is told nothing.
        let watching = Watching::default();
        let Value::Object(arguments) = json!({}) else {
            unreachable!()
        };
        pipeline
            .call("list_namespaces", arguments, &watching)
            .await
            .unwrap();
        assert!(watching.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_call_does_not_run_and_still_reaches_finish() {
        let (pipeline, seen) = probed(true, false);
        let reply = call(&pipeline, "list_namespaces", json!({})).await;
        assert!(reply.is_error);
        assert_eq!(reply.text, "not now");
        assert!(reply.structured.is_none());
        assert_eq!(
            seen.lock().unwrap().last().unwrap(),
            "finish list_namespaces Refused { by: \"probe\" } error=true"
        );
        assert_eq!(pipeline.stats().snapshot()["list_namespaces"].errors, 1);
    }

    #[tokio::test]
    async fn a_failing_stage_costs_the_user_nothing() {
        let (pipeline, _) = probed(false, true);
        let reply = call(&pipeline, "list_namespaces", json!({})).await;
        assert!(!reply.is_error);
        assert!(reply.text.contains("namespaces"));
        assert!(!reply.text.contains("probe was here"));
        assert_eq!(
            reply.structured.unwrap()["namespaces"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn bad_max_tokens_and_unknown_tools_are_refused_before_the_tool() {
        let pipeline = pipeline();
        let reply = call(&pipeline, "list_namespaces", json!({"max_tokens": 10})).await;
        assert!(reply.is_error);
        assert!(
            reply.text.contains("max_tokens must be a whole number"),
            "{}",
            reply.text
        );
        let unknown = pipeline
            .call("drop_database", Map::new(), &NoClient)
            .await
            .unwrap_err();
        assert!(unknown.available.contains("check_service_health"));
    }

    #[test]
    fn every_listed_tool_declares_max_tokens_and_the_envelope() {
        let pipeline = pipeline();
        for tool in pipeline.tools().iter() {
            let input = tool.input_schema["properties"].as_object().unwrap();
            // A write's reply is never shaped: no cap to ask for.
            assert_eq!(
                input.contains_key(envelope::MAX_TOKENS),
                tool.kind.read_only(),
                "{}",
                tool.name
            );
            let output = tool.output_schema["properties"].as_object().unwrap();
            assert!(
                output.contains_key(envelope::RELEVANT_RUNBOOKS),
                "{}",
                tool.name
            );
            assert!(output.contains_key(envelope::TRUNCATED), "{}", tool.name);
            let defs = tool.output_schema["$defs"].as_object().unwrap();
            assert!(defs.contains_key("Truncation") && defs.contains_key("RelevantRunbook"));
        }
        // The tools' own definitions stay free of what the pipeline adds.
        for tool in ToolRegistry::standard().iter() {
            let output = tool.output_schema["properties"].as_object().unwrap();
            assert!(!output.contains_key(envelope::TRUNCATED), "{}", tool.name);
        }
    }

    /// Every field the problem vocabulary and the augmenter read exists in some tool's output
    /// schema, so a renamed output field cannot silently switch runbooks or shaping off.
    #[test]
    fn the_problem_vocabulary_matches_the_tools_outputs() {
        use std::collections::BTreeSet;
        fn collect(value: &Value, out: &mut BTreeSet<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::Object(properties)) = map.get("properties") {
                        out.extend(properties.keys().cloned());
                    }
                    map.values().for_each(|v| collect(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        let mut fields = BTreeSet::new();
        for tool in ToolRegistry::standard().iter() {
            collect(&Value::Object((*tool.output_schema).clone()), &mut fields);
        }
        for field in problem::FIELDS_READ.iter().chain(augment::FIELDS_READ) {
            assert!(
                fields.contains(*field),
                "the problem vocabulary reads {field:?}, which no tool outputs"
            );
        }
    }
}
