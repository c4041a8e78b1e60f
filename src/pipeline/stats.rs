//! Per-tool call counts and latency, kept by the pipeline for `system://health`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

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
