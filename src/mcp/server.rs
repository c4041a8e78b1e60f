//! The MCP surface over stdio: maps `tools/*`, `resources/*`, `prompts/*` and
//! `completion/complete` onto the pipeline, resources and prompts modules.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    CompletionInfo, ContentBlock, ErrorCode, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, MetaObject, PaginatedRequestParams, Prompt,
    PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate, Role,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;

use super::client::PeerClient;
use super::{CallLimits, Services, prompts, resources};
use crate::pipeline::ToolReply;
use crate::pipeline::client::Client;
use crate::tools::ToolDef;

/// The MCP server: a thin adapter from protocol requests to the pipeline.
#[derive(Clone)]
pub struct SreServer {
    services: Arc<Services>,
    tools: Arc<Vec<Tool>>,
    /// Where calls run (not the protocol loop's threads), how many at once, how long.
    work: tokio::runtime::Handle,
    slots: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

pub const INSTRUCTIONS: &str = "SRE tools for a Kubernetes cluster. For a reported problem, call troubleshoot_issue first (one call: ranked causes with evidence, actions, next calls). \
To see what is wrong overall, check_service_health (no arguments); then drill down with list_pods, describe_pod, get_pod_logs (previous=true for crashed containers), get_events and get_recent_deploys. \
search_logs, count_errors and trace_transaction work across services. Results that show a problem carry relevant_runbooks (the runbook sections that fix it); search_runbooks searches them directly. The prompts investigate-service, troubleshoot-issue and \
daily-health-report give complete investigation plans.";

/// What the instructions say about the write tools, by write mode.
pub fn write_instructions(mode: crate::tools::writes::WriteMode) -> &'static str {
    use crate::tools::writes::WriteMode;
    match mode {
        WriteMode::Off => {
            " Writes are off on this server: deploy_with_review, rollback_deployment, restart_deployment and scale_deployment are refused; every other tool only reads."
        }
        WriteMode::Review => {
            " Writes are in review mode: deploy_with_review, rollback_deployment, restart_deployment and scale_deployment review and plan a change (dry run) but never apply it."
        }
        WriteMode::On => {
            " deploy_with_review, rollback_deployment, restart_deployment and scale_deployment change the cluster: call them with dry_run=true (the default) first and show the user the review (verdict, risk, diff). Production changes need the user's approval: the server asks them in the client, or the dry run returns a confirmation_token — never apply one without the user's explicit yes. Prefer rollback_deployment to a new deploy when a recent rollout broke a service."
        }
    }
}

impl SreServer {
    /// Serves `services`; tool calls, resource reads and prompts run on `limits.work`.
    pub fn new(services: Arc<Services>, limits: &CallLimits) -> SreServer {
        let tools = services.pipeline.tools().iter().map(mcp_tool).collect();
        SreServer {
            services,
            tools: Arc::new(tools),
            work: limits.work.clone(),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_calls)),
            timeout: limits.call_timeout,
        }
    }

    /// Runs `work` on the work runtime, after waiting for a free slot, within the call
    /// deadline; a cancelled request stops it. CPU-heavy work there (regexes over logs,
    /// shaping, embedding) cannot stall the protocol loop, so a ping is answered meanwhile.
    async fn offload<T, Fut>(
        &self,
        what: &str,
        ct: &tokio_util::sync::CancellationToken,
        work: Fut,
    ) -> Result<T, Stopped>
    where
        T: Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.offload_with(what, ct, self.timeout, None, work).await
    }

    /// [`Self::offload`] with a deadline of its own. With `wind_down`, a call that is cancelled
    /// or runs past its deadline is not aborted at once: `wind_down` is cancelled and the call
    /// gets [`WIND_DOWN`] to finish what it started (a write stops its watch and is recorded)
    /// before it is aborted.
    async fn offload_with<T, Fut>(
        &self,
        what: &str,
        ct: &tokio_util::sync::CancellationToken,
        deadline: Duration,
        wind_down: Option<tokio_util::sync::CancellationToken>,
        work: Fut,
    ) -> Result<T, Stopped>
    where
        T: Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let slots = self.slots.clone();
        let mut task = self.work.spawn(async move {
            // The semaphore is never closed.
            let _slot = slots.acquire_owned().await;
            work.await
        });
        let abort = task.abort_handle();
        let outcome = tokio::select! {
            joined = &mut task => joined.map_err(|e| {
                tracing::error!(what, error = %e, "call failed unexpectedly");
                Stopped::Failed
            }),
            _ = tokio::time::sleep(deadline) => Err(Stopped::TimedOut(deadline)),
            _ = ct.cancelled() => Err(Stopped::Cancelled),
        };
        if outcome.is_err() {
            if let Some(wind_down) = wind_down {
                wind_down.cancel();
                if tokio::time::timeout(WIND_DOWN, &mut task).await.is_ok() {
                    tracing::info!(
                        what,
                        "call stopped its wait and finished after the caller stopped waiting"
                    );
                    return outcome;
                }
            }
            abort.abort();
        }
        outcome
    }
}

/// How long a write may take to finish what it started once its caller stopped waiting.
const WIND_DOWN: Duration = Duration::from_secs(15);

/// Why a call ended without its result.
#[derive(Debug)]
enum Stopped {
    TimedOut(Duration),
    Cancelled,
    Failed,
}

impl Stopped {
    fn message(&self, what: &str) -> String {
        match self {
            Stopped::TimedOut(after) => format!(
                "{what} did not finish within {} s (--call-timeout) and was stopped; narrow it \
                 (a namespace, a service, a shorter `since`) or raise --call-timeout",
                after.as_secs_f64()
            ),
            Stopped::Cancelled => format!("{what} was cancelled by the client"),
            Stopped::Failed => format!(
                "{what} failed unexpectedly (a fault of the server; the log has the details)"
            ),
        }
    }

    fn into_mcp(self, what: &str) -> McpError {
        McpError::internal_error(self.message(what), None)
    }
}

fn mcp_tool(def: &ToolDef) -> Tool {
    Tool::new(def.name, def.description, def.input_schema.clone())
        .with_title(def.title)
        .with_raw_output_schema(def.output_schema.clone())
        .with_annotations(
            ToolAnnotations::with_title(def.title)
                .read_only(def.kind.read_only())
                .destructive(def.kind.destructive())
                .idempotent(def.kind.idempotent())
                .open_world(false),
        )
}

/// The `data` of a resource error: the URI, as the specification's examples show, unless it is
/// too long to repeat.
fn uri_data(uri: &str) -> Option<Value> {
    (uri.len() <= 256).then(|| serde_json::json!({ "uri": mask(uri) }))
}

/// Credentials masked, as everything that leaves the server.
fn mask(text: &str) -> String {
    crate::util::redact::mask(text).into_owned()
}

/// Converts a pipeline reply into an MCP tool result.
pub fn call_tool_result(reply: ToolReply) -> CallToolResult {
    let mut result = if reply.is_error {
        CallToolResult::error(vec![ContentBlock::text(reply.text)])
    } else {
        let mut r = CallToolResult::success(vec![ContentBlock::text(reply.text)]);
        r.structured_content = reply.structured;
        r
    };
    if !reply.meta.is_empty() {
        result.meta = Some(MetaObject(reply.meta.to_map()));
    }
    result
}

impl ServerHandler for SreServer {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_prompts()
            .build();
        capabilities.completions = Some(Default::default());
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "{INSTRUCTIONS}{}",
                write_instructions(self.services.writes.mode)
            ))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // One line on who connected (rmcp's own line dumps the whole initialize request).
        let facts = PeerClient::new(context.peer, None).facts();
        tracing::info!(
            client = facts.name.as_deref().unwrap_or("unknown"),
            version = facts.version.as_deref().unwrap_or("-"),
            protocol = facts.protocol_version.as_deref().unwrap_or("-"),
            elicitation = facts.elicitation,
            sampling = facts.sampling,
            "client connected"
        );
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let stopped = tokio_util::sync::CancellationToken::new();
        let client = PeerClient::new(context.peer.clone(), context.meta.get_progress_token())
            .stopped_by(stopped.clone());
        let arguments = request.arguments.unwrap_or_default();
        let services = self.services.clone();
        let name = request.name.to_string();
        let what = format!("tool call {}", request.name);
        // A write waits for a person and a rollout: a deadline of its own, and a wind-down
        // instead of an abort, so it never stops between applying and recording.
        let writes = services
            .pipeline
            .tools()
            .get(&name)
            .is_some_and(|t| !t.kind.read_only());
        let (deadline, wind_down) = if writes {
            (
                self.timeout.max(services.writes.call_deadline()),
                Some(stopped),
            )
        } else {
            (self.timeout, None)
        };
        let call = async move { services.pipeline.call(&name, arguments, &client).await };
        match self
            .offload_with(&what, &context.ct, deadline, wind_down, call)
            .await
        {
            Ok(Ok(reply)) => Ok(call_tool_result(reply).into()),
            Ok(Err(unknown)) => Err(McpError::invalid_params(unknown.to_string(), None)),
            // The library sends no reply to a cancelled request.
            Err(Stopped::Cancelled) => Err(Stopped::Cancelled.into_mcp(&what)),
            Err(stopped) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(stopped.message(&what))]).into())
            }
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let items = resources::list(&self.services)
            .await
            .into_iter()
            .map(|r| {
                Resource::new(r.uri, r.name)
                    .with_title(r.title)
                    .with_description(r.description)
                    .with_mime_type(r.mime_type)
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(items))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let items = resources::templates()
            .into_iter()
            .map(|t| {
                ResourceTemplate::new(t.uri_template, t.name)
                    .with_title(t.title)
                    .with_description(t.description)
                    .with_mime_type(t.mime_type)
            })
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(items))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let services = self.services.clone();
        let uri = request.uri.clone();
        let read = async move { resources::read(&services, &uri).await };
        let read = self
            .offload("resources/read", &context.ct, read)
            .await
            .map_err(|stopped| stopped.into_mcp("resources/read"))?;
        match read {
            Ok(body) => Ok(ReadResourceResult::new(vec![
                ResourceContents::text(mask(&body.text), mask(&body.uri))
                    .with_mime_type(body.mime_type),
            ])
            .into()),
            // An error may quote the URI, which may carry what a client pasted into it.
            Err(resources::ResourceError::NotFound(message)) => Err(McpError::resource_not_found(
                mask(&message),
                uri_data(&request.uri),
            )),
            Err(resources::ResourceError::Failed(message)) => {
                Err(McpError::internal_error(mask(&message), None))
            }
            Err(resources::ResourceError::Invalid(message)) => Err(McpError::invalid_params(
                mask(&message),
                uri_data(&request.uri),
            )),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let items = prompts::PROMPTS
            .iter()
            .map(|p| {
                let args: Vec<PromptArgument> = p
                    .arguments
                    .iter()
                    .map(|a| {
                        PromptArgument::new(a.name)
                            .with_description(a.description)
                            .with_required(a.required)
                    })
                    .collect();
                Prompt::new(p.name, Some(p.description), Some(args)).with_title(p.title)
            })
            .collect();
        Ok(ListPromptsResult::with_all_items(items))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let mut args = BTreeMap::new();
        for (key, value) in request.arguments.unwrap_or_default() {
            let text = match value {
                Value::String(s) => s,
                Value::Null => continue,
                other => other.to_string(),
            };
            args.insert(key, text);
        }
        match prompts::render(&request.name, &args) {
            Ok((prompt, text)) => {
                // What the client typed into the arguments is shown back: masked like the rest.
                let text = crate::util::redact::mask(&text).into_owned();
                let mut result =
                    GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]);
                result.description = Some(prompt.description.to_string());
                Ok(result.into())
            }
            Err(e) => Err(McpError::invalid_params(e.to_string(), None)),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let known = match &request.r#ref {
            Reference::Prompt(p) => prompts::PROMPTS
                .iter()
                .find(|x| x.name == p.name)
                .is_some_and(|x| x.arguments.iter().any(|a| a.name == request.argument.name)),
            Reference::Resource(r) => {
                (r.uri == "deployment://history/{service}" && request.argument.name == "service")
                    || (r.uri == "runbook://{id}" && request.argument.name == "id")
            }
            _ => false,
        };
        if !known {
            return Ok(CompleteResult::default());
        }
        // Completion values are names being typed: no work for anything longer.
        prompts::check_completion(&request.argument.name, &request.argument.value)
            .map_err(|message| McpError::invalid_params(message, None))?;
        let mut values = prompts::complete(
            &self.services,
            &request.argument.name,
            &request.argument.value,
        )
        .await;
        let total = values.len();
        values.truncate(CompletionInfo::MAX_VALUES);
        let completion = CompletionInfo::with_pagination(
            values,
            Some(total as u32),
            total > CompletionInfo::MAX_VALUES,
        )
        .map_err(|e| McpError::new(ErrorCode::INTERNAL_ERROR, e, None))?;
        Ok(CompleteResult::new(completion))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::{ToolKind, ToolRegistry};

    #[test]
    fn annotations_say_what_each_kind_of_tool_does() {
        let write = |destructive, idempotent| ToolKind::Write {
            destructive,
            idempotent,
            safety_action: false,
        };
        let mut tools = ToolRegistry::standard();
        let tool = tools.iter_mut().next().unwrap();
        // (kind, readOnly, destructive, idempotent): a read, a scale (repeatable, replaces
        // nothing), a deploy (replaces what runs).
        for (kind, hints) in [
            (ToolKind::Read, (true, false, true)),
            (write(false, true), (false, false, true)),
            (write(true, false), (false, true, false)),
        ] {
            tool.kind = kind;
            let a = mcp_tool(tool).annotations.unwrap();
            assert_eq!(
                (a.read_only_hint, a.destructive_hint, a.idempotent_hint),
                (Some(hints.0), Some(hints.1), Some(hints.2)),
                "{kind:?}"
            );
        }
    }
}
