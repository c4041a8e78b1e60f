//! The MCP surface: the server adapter (requests → pipeline, resources, prompts), the
//! resources, the prompt templates, and the client handle the stages use to reach the host.
//!
//! To add a resource: a URI in `resources.rs` (listed, read, and in the valid-URI message).
//! To add a prompt: an entry in `prompts::PROMPTS` naming only tools and arguments that exist
//! (a test checks).

pub mod client;
pub mod prompts;
pub mod resources;
pub mod server;

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;

use crate::cluster::ClusterBackend;
use crate::pipeline::Pipeline;
use crate::pipeline::budget::BudgetTracker;
use crate::runbooks::knowledge::KnowledgeBase;

/// What the MCP surface serves: the pipeline (with the tools' context), the ledger it reports,
/// and when the server started.
pub struct Services {
    pub pipeline: Arc<Pipeline>,
    pub budget: Arc<BudgetTracker>,
    pub started: Instant,
    pub started_at: Timestamp,
}

impl Services {
    pub fn backend(&self) -> &Arc<dyn ClusterBackend> {
        &self.pipeline.context().backend
    }

    pub fn knowledge(&self) -> &Arc<KnowledgeBase> {
        &self.pipeline.context().knowledge
    }
}
