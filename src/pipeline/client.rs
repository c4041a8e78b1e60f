//! The client as the pipeline's stages see it: who it is, what it can do, and a way to ask it
//! things during a call (elicitation for an approval, sampling, progress). The MCP surface
//! implements it over the session's peer; the terminal subcommands use [`NoClient`]. Every
//! request can fail (a host without the capability, a 2026-07-28 session that forbids
//! server-to-client requests), so a stage always needs a fallback.

use async_trait::async_trait;
use serde_json::Value;

/// What the client said about itself at `initialize`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFacts {
    /// `clientInfo.name` (e.g. "claude-ai", "Visual Studio Code"), when given.
    pub name: Option<String>,
    pub version: Option<String>,
    /// The protocol version the session runs.
    pub protocol_version: Option<String>,
    /// The client declared the elicitation capability.
    pub elicitation: bool,
    /// The client declared the sampling capability.
    pub sampling: bool,
}

/// The answer to an elicitation.
#[derive(Debug, Clone, PartialEq)]
pub enum Elicited {
    /// The user filled in the form.
    Accepted(Value),
    Declined,
    Cancelled,
}

/// A request to the client that did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client cannot do this (no capability, or the protocol version forbids it).
    #[error("the client does not support {0}")]
    Unsupported(&'static str),
    /// The request was sent and failed (timeout, transport closed, error reply).
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Client: Send + Sync {
    fn facts(&self) -> ClientFacts;

    /// Asks the user for input through the host: `schema` is a flat JSON object schema.
    async fn elicit(&self, message: &str, schema: Value) -> Result<Elicited, ClientError>;

    /// Asks the client's model to complete `prompt` (at most `max_tokens`); the text back.
    async fn sample(
        &self,
        system: &str,
        prompt: &str,
        max_tokens: u32,
    ) -> Result<String, ClientError>;

    /// Whether the client asked for progress notifications on the call in hand.
    fn wants_progress(&self) -> bool;

    /// Reports progress of the running call, when the client asked for it (a no-op otherwise).
    async fn progress(&self, progress: f64, total: Option<f64>, message: &str);

    /// Cancelled when the caller stops waiting for this call (the request was cancelled or ran
    /// past its deadline). A call that must finish what it started (a write) watches it.
    fn stopped(&self) -> tokio_util::sync::CancellationToken {
        tokio_util::sync::CancellationToken::new()
    }
}

/// The last protocol version on which a server may send requests to the client (elicitation,
/// sampling) during a call; later sessions (2026-07-28) refuse them.
pub const LAST_VERSION_WITH_CLIENT_REQUESTS: &str = "2025-11-25";
/// The first protocol version with elicitation.
pub const FIRST_VERSION_WITH_ELICITATION: &str = "2025-06-18";

impl ClientFacts {
    /// The client declared elicitation and the session's protocol has it and lets the server
    /// ask.
    pub fn can_elicit(&self) -> bool {
        self.elicitation
            && self.requests_allowed()
            && self
                .protocol_version
                .as_deref()
                .is_none_or(|v| v >= FIRST_VERSION_WITH_ELICITATION)
    }

    /// The client declared sampling and the session's protocol lets the server ask.
    pub fn can_sample(&self) -> bool {
        self.sampling && self.requests_allowed()
    }

    /// Protocol versions are dates: up to the last one that allows server-to-client requests.
    fn requests_allowed(&self) -> bool {
        self.protocol_version
            .as_deref()
            .is_none_or(|v| v <= LAST_VERSION_WITH_CLIENT_REQUESTS)
    }
}

/// No client to ask: the terminal subcommands, tests and benches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClient;

#[async_trait]
impl Client for NoClient {
    fn facts(&self) -> ClientFacts {
        ClientFacts::default()
    }

    async fn elicit(&self, _message: &str, _schema: Value) -> Result<Elicited, ClientError> {
        Err(ClientError::Unsupported("elicitation"))
    }

    async fn sample(
        &self,
        _system: &str,
        _prompt: &str,
        _max_tokens: u32,
    ) -> Result<String, ClientError> {
        Err(ClientError::Unsupported("sampling"))
    }

    fn wants_progress(&self) -> bool {
        false
    }

    async fn progress(&self, _progress: f64, _total: Option<f64>, _message: &str) {}
}
