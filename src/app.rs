//! The composition root: builds the pipeline (tools with their narrow context, then the stages
//! in order) and the services the MCP surface and the terminal subcommands share. The only
//! module that knows every layer; nothing below imports it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::cluster::ClusterBackend;
use crate::history::{self, HistoryStore};
use crate::mcp::Services;
use crate::pipeline::Pipeline;
use crate::pipeline::audit::{Audit, HistorySlot};
use crate::pipeline::augment::Augmenter;
use crate::pipeline::budget::{BudgetConfig, BudgetTracker};
use crate::pipeline::synthesis::Synthesis;
use crate::runbooks::knowledge::KnowledgeBase;
use crate::tools::writes::confirm::ConfirmationBook;
use crate::tools::writes::environment::EnvironmentMap;
use crate::tools::writes::{WriteMode, WritePolicy};
use crate::tools::{Context, Limits, ToolRegistry};

/// Everything that changes how the server answers (from flags / environment). The defaults
/// are the same constants the CLI's flags default to.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub limits: Limits,
    /// Token counting, caps, pricing and budgets.
    pub budget: BudgetConfig,
    pub augment: AugmentSettings,
    pub writes: WriteSettings,
}

/// The write tools' gate and the history store.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSettings {
    /// `None`: on for the demo cluster (its writes are simulated), off for a real cluster.
    pub mode: Option<WriteMode>,
    pub environments: EnvironmentMap,
    pub allow_override: bool,
    pub auto_approve_non_production: bool,
    pub rollout_timeout: Duration,
    pub auto_rollback: bool,
    pub confirmation_ttl: Duration,
    /// Where the history database lives (`None`: the per-user data directory).
    pub data_dir: Option<PathBuf>,
}

impl Default for WriteSettings {
    fn default() -> Self {
        WriteSettings {
            mode: None,
            environments: EnvironmentMap::default(),
            allow_override: false,
            auto_approve_non_production: true,
            rollout_timeout: WritePolicy::DEFAULT_ROLLOUT_TIMEOUT,
            auto_rollback: false,
            confirmation_ttl: ConfirmationBook::DEFAULT_TTL,
            data_dir: None,
        }
    }
}

impl WriteSettings {
    /// The mode in force with `backend`: the flag's, or the backend's default.
    pub fn mode_for(&self, backend: &dyn ClusterBackend) -> WriteMode {
        self.mode.unwrap_or(match backend.info().kind {
            "demo" => WriteMode::On,
            _ => WriteMode::Off,
        })
    }

    fn policy(&self, backend: &dyn ClusterBackend) -> WritePolicy {
        WritePolicy {
            mode: self.mode_for(backend),
            environments: self.environments.clone(),
            allow_override: self.allow_override,
            auto_approve_non_production: self.auto_approve_non_production,
            rollout_timeout: self.rollout_timeout,
            auto_rollback: self.auto_rollback,
            confirmations: ConfirmationBook::new(self.confirmation_ttl),
            ..WritePolicy::default()
        }
    }

    /// Opens the history store (in `data_dir` or the per-user data directory).
    pub fn open_history(&self) -> HistorySlot {
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(history::default_data_dir);
        match HistoryStore::open(&dir) {
            Ok(store) => Ok(Arc::new(store)),
            Err(error) => {
                tracing::error!(%error, "history store unavailable: writes are refused, reads go on unrecorded");
                Err(error.to_string())
            }
        }
    }
}

/// The runbook augmenter stage.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentSettings {
    pub enabled: bool,
    /// Least relevance (0–1) to attach a runbook.
    pub threshold: f32,
    /// Runbooks attached per result (1–3).
    pub max_runbooks: usize,
}

impl Default for AugmentSettings {
    fn default() -> Self {
        AugmentSettings {
            enabled: true,
            threshold: Augmenter::DEFAULT_THRESHOLD,
            max_runbooks: Augmenter::DEFAULT_MAX_RUNBOOKS,
        }
    }
}

/// Builds the services: tools → augmenter (when enabled) → budget, last so it counts what the
/// client receives (attached runbooks included).
pub fn assemble(
    backend: Arc<dyn ClusterBackend>,
    knowledge: Arc<KnowledgeBase>,
    settings: &Settings,
) -> Arc<Services> {
    let writes = Arc::new(settings.writes.policy(backend.as_ref()));
    let history = settings.writes.open_history();
    let context = Arc::new(
        Context::new(backend, knowledge.clone(), settings.limits).with_writes(writes.clone()),
    );
    let budget = Arc::new(BudgetTracker::new(settings.budget.clone()));
    let mut pipeline = Pipeline::new(
        context,
        ToolRegistry::standard(),
        settings.budget.shaping.clone(),
    );
    if settings.augment.enabled {
        pipeline = pipeline.with_stage(Box::new(Augmenter::new(
            knowledge,
            settings.augment.threshold,
            settings.augment.max_runbooks,
        )));
    }
    // The client's model's synthesis (when the client offers sampling), booked by the budget.
    pipeline = pipeline.with_stage(Box::new(Synthesis::new(budget.clone())));
    pipeline = pipeline.with_stage(Box::new(budget.clone()));
    // Last: it records each call's final reply (and refuses writes it could not record).
    pipeline = pipeline.with_stage(Box::new(Audit::new(history.clone())));
    Arc::new(Services {
        pipeline: Arc::new(pipeline),
        budget,
        history,
        writes,
        protocol: Default::default(),
        started: Instant::now(),
        started_at: Timestamp::now(),
    })
}
