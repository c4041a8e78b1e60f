//! sre-mcp: a Model Context Protocol server (stdio) with the tools an on-call SRE uses.
//!
//! Layout: [`cluster`] (backends behind one trait), [`tools`] (the read-only tool surface),
//! [`pipeline`] (tool → stages → reply), [`server`] (the MCP adapter), [`resources`],
//! [`prompts`], [`cli`] (flags and subcommands).

pub mod app;
pub mod augment;
pub mod budget;
pub mod cli;
pub mod cluster;
pub mod logs;
pub mod pipeline;
pub mod prompts;
pub mod resources;
pub mod result_store;
pub mod runbooks;
pub mod server;
pub mod shape;
pub mod timefmt;
pub mod tokens;
pub mod tools;
