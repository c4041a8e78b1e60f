//! The application context shared by every request: the cluster backend, settings, start
//! time and per-tool call statistics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use crate::budget::{BudgetConfig, BudgetTracker, DEFAULT_MODEL, Encoding, ShapingConfig};
use crate::cluster::ClusterBackend;
use crate::runbooks::knowledge::KnowledgeBase;

/// Settings that change how tools answer (from flags / environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most entries a log or search tool returns in one call.
    pub max_log_lines: usize,
    /// Token counting, pricing and budgets.
    pub budget: BudgetConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_log_lines: 50_000,
            budget: BudgetConfig {
                encoding: Encoding::O200kBase,
                model: DEFAULT_MODEL.to_string(),
                price_per_mtok: 3.0,
                budget_tokens: None,
                budget_usd: None,
                shaping: ShapingConfig::default(),
            },
        }
    }
}

pub struct App {
    pub backend: Arc<dyn ClusterBackend>,
    pub knowledge: Arc<KnowledgeBase>,
    /// The session ledger; also the pipeline's last stage.
    pub budget: Arc<BudgetTracker>,
    pub settings: Settings,
    pub stats: CallStats,
    pub started: Instant,
    pub started_at: Timestamp,
}

impl App {
    pub fn new(
        backend: Arc<dyn ClusterBackend>,
        knowledge: Arc<KnowledgeBase>,
        settings: Settings,
    ) -> Arc<App> {
        Arc::new(App {
            backend,
            knowledge,
            budget: Arc::new(BudgetTracker::new(settings.budget.clone())),
            settings,
            stats: CallStats::default(),
            started: Instant::now(),
            started_at: Timestamp::now(),
        })
    }
}

/// Per-tool call counts and latency, for `system://health`.
#[derive(Default)]
pub struct CallStats {
    inner: Mutex<BTreeMap<String, ToolStats>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ToolStats {
    pub calls: u64,
    pub errors: u64,
    pub total_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl CallStats {
    pub fn record(&self, tool: &str, elapsed: Duration, is_error: bool) {
        let ms = elapsed.as_secs_f64() * 1e3;
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(tool.to_string()).or_default();
        entry.calls += 1;
        entry.errors += u64::from(is_error);
        entry.total_ms += ms;
        entry.max_ms = entry.max_ms.max(ms);
        entry.mean_ms = entry.total_ms / entry.calls as f64;
    }

    pub fn snapshot(&self) -> BTreeMap<String, ToolStats> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
