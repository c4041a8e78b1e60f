//! The pipeline's [`Client`] over an MCP session: the facts from the client's `initialize`,
//! and elicitation, sampling and progress sent through rmcp's peer for the call in hand.

use async_trait::async_trait;
// Sampling is deprecated by the newest protocol (SEP-2577) but works up to 2025-11-25.
#[allow(deprecated)]
use rmcp::model::{CreateMessageRequestParams, SamplingMessage};
use rmcp::model::{
    ElicitRequestParams, ElicitationAction, ProgressNotificationParam, ProgressToken,
};
use rmcp::{Peer, RoleServer};
use serde_json::Value;

use crate::pipeline::client::{Client, ClientError, ClientFacts, Elicited};

/// The client of one MCP session, as seen from one request.
pub struct PeerClient {
    peer: Peer<RoleServer>,
    /// Set when the request asked for progress notifications.
    progress_token: Option<ProgressToken>,
    /// Cancelled when the caller stops waiting for the call.
    stopped: tokio_util::sync::CancellationToken,
}

impl PeerClient {
    pub fn new(peer: Peer<RoleServer>, progress_token: Option<ProgressToken>) -> PeerClient {
        PeerClient {
            peer,
            progress_token,
            stopped: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The same client, whose call is stopped by `stopped`.
    pub fn stopped_by(mut self, stopped: tokio_util::sync::CancellationToken) -> PeerClient {
        self.stopped = stopped;
        self
    }
}

#[async_trait]
impl Client for PeerClient {
    fn facts(&self) -> ClientFacts {
        match self.peer.peer_info() {
            Some(info) => ClientFacts {
                name: Some(info.client_info.name.clone()),
                version: Some(info.client_info.version.clone()),
                protocol_version: Some(info.protocol_version.to_string()),
                elicitation: info.capabilities.elicitation.is_some(),
                sampling: info.capabilities.sampling.is_some(),
            },
            None => ClientFacts::default(),
        }
    }

    fn stopped(&self) -> tokio_util::sync::CancellationToken {
        self.stopped.clone()
    }

    async fn elicit(&self, message: &str, schema: Value) -> Result<Elicited, ClientError> {
        if !self.facts().can_elicit() {
            return Err(ClientError::Unsupported("elicitation"));
        }
        let requested_schema = serde_json::from_value(schema)
            .map_err(|e| ClientError::Failed(format!("invalid elicitation schema: {e}")))?;
        let result = self
            .peer
            .create_elicitation(ElicitRequestParams::FormElicitationParams {
                meta: None,
                message: message.to_string(),
                requested_schema,
            })
            .await
            .map_err(|e| ClientError::Failed(e.to_string()))?;
        Ok(match result.action {
            ElicitationAction::Accept => Elicited::Accepted(result.content.unwrap_or(Value::Null)),
            ElicitationAction::Decline => Elicited::Declined,
            // Cancel, and any action a later protocol adds: treat as no answer.
            _ => Elicited::Cancelled,
        })
    }

    // Sampling is deprecated in the newest protocol but works on versions up to 2025-11-25.
    #[allow(deprecated)]
    async fn sample(
        &self,
        system: &str,
        prompt: &str,
        max_tokens: u32,
    ) -> Result<String, ClientError> {
        if !self.facts().can_sample() {
            return Err(ClientError::Unsupported("sampling"));
        }
        let mut params =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], max_tokens);
        params.system_prompt = Some(system.to_string());
        let result = self
            .peer
            .create_message(params)
            .await
            .map_err(|e| ClientError::Failed(e.to_string()))?;
        let text: Vec<String> = result
            .message
            .content
            .into_vec()
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        Ok(text.join("\n"))
    }

    fn wants_progress(&self) -> bool {
        self.progress_token.is_some()
    }

    async fn progress(&self, progress: f64, total: Option<f64>, message: &str) {
        let Some(token) = self.progress_token.clone() else {
            return;
        };
        let mut param = ProgressNotificationParam::new(token, progress);
        param.total = total;
        param.message = Some(message.to_string());
        if let Err(error) = self.peer.notify_progress(param).await {
            tracing::debug!(%error, "progress notification not sent");
        }
    }
}
