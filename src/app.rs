//! The composition root: builds the pipeline (tools with their narrow context, then the stages
//! in order) and the services the MCP surface and the terminal subcommands share. The only
//! module that knows every layer; nothing below imports it.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;

use crate::cluster::ClusterBackend;
use crate::mcp::Services;
use crate::pipeline::Pipeline;
use crate::pipeline::augment::Augmenter;
use crate::pipeline::budget::{BudgetConfig, BudgetTracker};
use crate::pipeline::synthesis::Synthesis;
use crate::runbooks::knowledge::KnowledgeBase;
use crate::tools::{Context, Limits, ToolRegistry};

/// Everything that changes how the server answers (from flags / environment). The defaults
/// are the same constants the CLI's flags default to.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub limits: Limits,
    /// Token counting, caps, pricing and budgets.
    pub budget: BudgetConfig,
    pub augment: AugmentSettings,
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
    let context = Arc::new(Context::new(backend, knowledge.clone(), settings.limits));
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
    Arc::new(Services {
        pipeline: Arc::new(pipeline),
        budget,
        protocol: Default::default(),
        started: Instant::now(),
        started_at: Timestamp::now(),
    })
}
