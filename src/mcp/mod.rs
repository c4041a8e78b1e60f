//! The MCP surface: the server adapter (requests → pipeline, resources, prompts), the
//! resources, the prompt templates, and the client handle the stages use to reach the host.
//!
//! To add a resource: a URI in `resources.rs` (listed, read, and in the valid-URI message).
//! To add a prompt: an entry in `prompts::PROMPTS` naming only tools and arguments that exist
//! (a test checks).

pub mod client;
pub mod guard;
pub mod prompts;
pub mod resources;
pub mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::cluster::ClusterBackend;
use crate::pipeline::Pipeline;
use crate::pipeline::budget::BudgetTracker;
use crate::runbooks::knowledge::KnowledgeBase;

/// What the MCP surface serves: the pipeline (with the tools' context), the ledger it reports,
/// what the protocol guard saw, and when the server started.
pub struct Services {
    pub pipeline: Arc<Pipeline>,
    pub budget: Arc<BudgetTracker>,
    /// The durable history and audit store, or why it is unavailable.
    pub history: crate::pipeline::audit::HistorySlot,
    /// How writes are gated (for the instructions and `system://health`).
    pub writes: Arc<crate::tools::writes::WritePolicy>,
    pub protocol: Arc<guard::ProtocolStats>,
    pub started: Instant,
    pub started_at: Timestamp,
}

/// How requests are bounded: the frame size, the calls at once and queued, the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Largest request frame read (`--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Tool calls (and resource reads) that run at once (`--max-concurrent-calls`).
    pub max_concurrent_calls: usize,
    /// Requests running or waiting, beyond which a request is answered busy.
    pub max_in_flight: usize,
    /// How long one call may run (`--call-timeout`).
    pub call_timeout: Duration,
}

impl ServeLimits {
    pub const DEFAULT_MAX_REQUEST_BYTES: usize = guard::GuardConfig::DEFAULT_MAX_REQUEST_BYTES;
    pub const DEFAULT_CALL_TIMEOUT_SECS: u64 = 60;
    /// Requests that may wait per running call.
    pub const QUEUE_PER_CALL: usize = 16;

    /// Two calls per core: calls mostly wait on the cluster, and a CPU-heavy one still leaves
    /// the protocol its own threads.
    pub fn default_max_concurrent_calls() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
    }

    pub fn new(
        max_request_bytes: usize,
        max_concurrent_calls: usize,
        call_timeout: Duration,
    ) -> Self {
        ServeLimits {
            max_request_bytes,
            max_concurrent_calls,
            max_in_flight: (max_concurrent_calls * Self::QUEUE_PER_CALL).max(64),
            call_timeout,
        }
    }

    /// The guard's part.
    pub fn guard(&self) -> guard::GuardConfig {
        guard::GuardConfig {
            max_request_bytes: self.max_request_bytes,
            max_in_flight: self.max_in_flight,
            // The calls in flight at stdin close finish within their deadline (a queued one
            // may wait for a slot first: the margin).
            drain_timeout: self.call_timeout + Duration::from_secs(5),
        }
    }
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits::new(
            Self::DEFAULT_MAX_REQUEST_BYTES,
            Self::default_max_concurrent_calls(),
            Duration::from_secs(Self::DEFAULT_CALL_TIMEOUT_SECS),
        )
    }
}

/// Where the server runs calls, and how many at once for how long.
#[derive(Debug, Clone)]
pub struct CallLimits {
    pub work: tokio::runtime::Handle,
    pub max_concurrent_calls: usize,
    pub call_timeout: Duration,
}

impl Services {
    pub fn backend(&self) -> &Arc<dyn ClusterBackend> {
        &self.pipeline.context().backend
    }

    pub fn knowledge(&self) -> &Arc<KnowledgeBase> {
        &self.pipeline.context().knowledge
    }
}
