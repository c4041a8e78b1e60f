//! Command-line interface: every flag (each also settable by an `SRE_MCP_*` environment
//! variable) and the subcommands for people at a terminal. With no subcommand the binary is
//! the stdio MCP server.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rmcp::ServiceExt;
use serde_json::{Map, Value};

use crate::app::{App, Settings};
use crate::cluster::ClusterBackend;
use crate::cluster::demo::DemoCluster;
use crate::pipeline::Pipeline;
use crate::server::SreServer;
use crate::tools::ToolRegistry;

/// sre-mcp: an MCP server (stdio) with the tools an on-call SRE uses — service health, pods,
/// logs, events, rollouts — on an embedded demo cluster.
#[derive(Debug, Parser)]
#[command(name = "sre-mcp", version, about, long_about = None)]
pub struct Cli {
    /// Log filter for stderr (tracing syntax, e.g. `info`, `sre_mcp=debug`). Stdout carries
    /// JSON-RPC only, so logs always go to stderr.
    #[arg(long, env = "SRE_MCP_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log line format on stderr.
    #[arg(long, env = "SRE_MCP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Most log entries one call of get_pod_logs or search_logs may return (tail_lines and
    /// limit are clamped to it).
    #[arg(long, env = "SRE_MCP_MAX_LOG_LINES", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub max_log_lines: u32,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over stdin/stdout (the default).
    Serve,
    /// List the tools with a one-line description each.
    Tools,
    /// Call a tool through the same pipeline as the server and print its text rendering.
    Call {
        /// Tool name, e.g. check_service_health.
        tool: String,
        /// Arguments as key=value (e.g. namespace=payments tail_lines=50 previous=true).
        args: Vec<String>,
        /// Print the structured result as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the prompt templates and their arguments.
    Prompts,
    /// Read a resource, e.g. system://health or deployment://history/payment-gateway.
    Read { uri: String },
}

fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!(
            "sre-mcp: invalid --log filter {:?} ({e}); using \"info\"",
            cli.log
        );
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Builds the pipeline the server and the subcommands share.
pub fn build_pipeline(cli: &Cli) -> anyhow::Result<Arc<Pipeline>> {
    let backend: Arc<dyn ClusterBackend> = Arc::new(
        DemoCluster::load(jiff::Timestamp::now()).context("loading the embedded demo cluster")?,
    );
    let settings = Settings {
        max_log_lines: cli.max_log_lines as usize,
    };
    let app = App::new(backend, settings);
    Ok(Arc::new(Pipeline::new(app, ToolRegistry::standard())))
}

/// Runs the command line: the server, or a subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(&cli);
    let pipeline = build_pipeline(&cli)?;
    match &cli.command {
        None | Some(Command::Serve) => serve(pipeline).await,
        Some(Command::Tools) => {
            let width = pipeline.tools.names().map(str::len).max().unwrap_or(0);
            let mut out = String::new();
            for t in pipeline.tools.iter() {
                let first = t.description.split(". ").next().unwrap_or(t.description);
                out.push_str(&format!(
                    "{:<width$}  {}\n",
                    t.name,
                    first.trim_end_matches('.')
                ));
            }
            print_stdout(&out);
            Ok(())
        }
        Some(Command::Call { tool, args, json }) => {
            let Some(def) = pipeline.tools.get(tool) else {
                bail!(
                    "unknown tool {tool:?}; available tools: {}",
                    crate::tools::lookup::suggest(tool, pipeline.tools.names())
                );
            };
            let arguments = parse_cli_arguments(args, &def.input_schema)?;
            let reply = pipeline.call(tool, arguments).await?;
            if reply.is_error {
                bail!("{}", reply.text);
            }
            if *json {
                let mut value = reply.structured.unwrap_or(Value::Null);
                if !reply.meta.is_empty()
                    && let Value::Object(map) = &mut value
                {
                    map.insert("_meta".into(), Value::Object(reply.meta));
                }
                print_stdout(&format!("{}\n", serde_json::to_string_pretty(&value)?));
            } else {
                print_stdout(&format!("{}\n", reply.text));
            }
            Ok(())
        }
        Some(Command::Prompts) => {
            let mut out = String::new();
            for p in crate::prompts::PROMPTS {
                let args: Vec<String> = p
                    .arguments
                    .iter()
                    .map(|a| {
                        if a.required {
                            a.name.to_string()
                        } else {
                            format!("{}?", a.name)
                        }
                    })
                    .collect();
                out.push_str(&format!(
                    "{}({})  {}\n",
                    p.name,
                    args.join(", "),
                    p.description
                ));
            }
            print_stdout(&out);
            Ok(())
        }
        Some(Command::Read { uri }) => {
            let body = crate::resources::read(&pipeline.app, uri).await?;
            print_stdout(&format!("{}\n", body.text));
            Ok(())
        }
    }
}

/// Subcommand output goes to stdout: these commands never run while serving MCP.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

async fn serve(pipeline: Arc<Pipeline>) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        eprintln!("{}", banner());
    }
    tracing::info!(backend = %pipeline.app.backend.info().description, "serving MCP on stdio");
    let service = SreServer::new(pipeline)
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("MCP initialisation failed")?;
    let reason = service.waiting().await?;
    tracing::info!(?reason, "MCP session ended");
    Ok(())
}

/// What a person who ran the binary in a terminal needs to know.
fn banner() -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/path/to/sre-mcp".into());
    let entry = serde_json::json!({ "mcpServers": { "sre": { "command": exe, "args": [] } } });
    format!(
        "sre-mcp {version} — an MCP server for on-call SREs, speaking JSON-RPC on stdin/stdout.\n\
It is waiting for an MCP client on this terminal; press Ctrl-C to quit.\n\n\
Claude Desktop (claude_desktop_config.json):\n{entry}\n\n\
MCP Inspector (needs Node >= 22):\n  npx @modelcontextprotocol/inspector --cli {exe} --method tools/list\n\n\
Try the tools from this shell:\n  {exe} tools\n  {exe} call check_service_health\n  {exe} call list_pods namespace=payments",
        version = env!("CARGO_PKG_VERSION"),
        entry = serde_json::to_string_pretty(&entry).unwrap_or_default(),
    )
}

/// Turns `key=value` words into tool arguments, typed by the tool's input schema.
pub fn parse_cli_arguments(
    words: &[String],
    schema: &Map<String, Value>,
) -> anyhow::Result<Map<String, Value>> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut arguments = Map::new();
    let mut seen = BTreeMap::new();
    for word in words {
        let Some((key, raw)) = word.split_once('=') else {
            bail!("argument {word:?} is not key=value (e.g. namespace=payments)");
        };
        if seen.insert(key.to_string(), ()).is_some() {
            bail!("argument {key:?} given twice");
        }
        let kind = properties
            .and_then(|p| p.get(key))
            .and_then(|p| p.get("type"))
            .map(|t| match t {
                Value::Array(types) => types
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|t| *t != "null")
                    .unwrap_or("string")
                    .to_string(),
                other => other.as_str().unwrap_or("string").to_string(),
            })
            .unwrap_or_else(|| "string".into());
        let value = match kind.as_str() {
            "integer" | "number" | "boolean" => serde_json::from_str(raw)
                .with_context(|| format!("argument {key}={raw:?} must be a {kind}"))?,
            _ => Value::String(raw.to_string()),
        };
        arguments.insert(key.to_string(), value);
    }
    Ok(arguments)
}
