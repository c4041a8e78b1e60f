//! sre-mcp: a Model Context Protocol server (stdio) with the tools an on-call SRE uses.
//!
//! Layers, each importing only those below it (`tests/layers.rs` checks):
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 6 | [`cli`] | flags, subcommands |
//! | 5 | [`app`] | the composition root: settings, building the pipeline and services |
//! | 4 | [`mcp`] | the MCP surface: server adapter, resources, prompts, the client handle |
//! | 3 | [`pipeline`] | tool → stages → reply: envelope, augmenter, budget, shaping, result store |
//! | 2 | [`tools`] | the SRE tools, each seeing a narrow [`tools::Context`] |
//! | 1 | [`cluster`], [`runbooks`], [`history`] | cluster backends behind one trait; the runbook index; the durable history and audit store |
//! | 0 | [`util`] | token counting, time formats, log parsing, name suggestions |

pub mod app;
pub mod cli;
pub mod cluster;
pub mod history;
pub mod mcp;
pub mod pipeline;
pub mod runbooks;
pub mod tools;
pub mod util;
