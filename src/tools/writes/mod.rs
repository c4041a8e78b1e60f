//! The write tools — `deploy_with_review`, `rollback_deployment`, `restart_deployment`,
//! `scale_deployment` — and the one flow they share ([`flow`]): read → server dry run → review
//! → approval gate → apply → rollout watch → rollback plan. Each tool file only says what its
//! change is; the policy that gates them is [`WritePolicy`], set from the flags.
//!
//! The review ([`review`]) always runs before anything changes; production needs a human's
//! approval, by MCP elicitation when the host can ask its user, otherwise by a single-use
//! confirmation token ([`confirm`]) from the dry run.

pub mod confirm;
pub mod deploy;
pub mod environment;
pub mod flow;
pub mod report;
pub mod restart;
pub mod review;
pub mod rollback;
pub mod rollout;
pub mod scale;

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use self::confirm::ConfirmationBook;
use self::environment::EnvironmentMap;
use super::limits;

/// Whether the write tools may change the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Every write tool is refused (nothing is read or changed).
    Off,
    /// Dry runs and reviews only; applying is refused.
    Review,
    /// Changes are applied after the review and the approval the environment needs.
    On,
}

impl WriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Off => "off",
            WriteMode::Review => "review",
            WriteMode::On => "on",
        }
    }
}

/// How writes are gated: the mode, which namespaces are production, who approves, and how a
/// rollout is watched. One value per server, from the flags.
#[derive(Debug)]
pub struct WritePolicy {
    pub mode: WriteMode,
    pub environments: EnvironmentMap,
    /// A NO-GO review may be overridden with an explicit `override_reason`.
    pub allow_override: bool,
    /// Outside production, a GO review is applied without asking (false: ask there too).
    pub auto_approve_non_production: bool,
    /// How long to watch a rollout before reporting it as not complete.
    pub rollout_timeout: Duration,
    /// Roll back by itself when a rollout fails (otherwise the reply gives the rollback call).
    pub auto_rollback: bool,
    /// How often the rollout is read while it is watched.
    pub poll_interval: Duration,
    pub confirmations: ConfirmationBook,
}

impl WritePolicy {
    pub const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
    /// The longest a write call may wait for a person to answer an approval.
    pub const APPROVAL_WAIT: Duration = Duration::from_secs(300);

    /// How long a write call may run: the approval, the rollout watch, an automatic rollback's
    /// watch and a margin for the reads.
    pub fn call_deadline(&self) -> Duration {
        Self::APPROVAL_WAIT + self.rollout_timeout * 2 + Duration::from_secs(30)
    }
}

impl Default for WritePolicy {
    fn default() -> Self {
        WritePolicy {
            mode: WriteMode::Off,
            environments: EnvironmentMap::default(),
            allow_override: false,
            auto_approve_non_production: true,
            rollout_timeout: Self::DEFAULT_ROLLOUT_TIMEOUT,
            auto_rollback: false,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            confirmations: ConfirmationBook::default(),
        }
    }
}

/// The arguments every write tool takes besides its own change.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Common {
    /// Deployment name or namespace/name.
    #[schemars(length(max = limits::NAME))]
    pub service: String,
    #[schemars(length(max = limits::NAME))]
    pub namespace: Option<String>,
    // Why: kept as the change-cause and in the audit log (the name says enough to the model).
    #[schemars(length(max = limits::TEXT))]
    pub reason: String,
    /// Default true: review only.
    pub dry_run: Option<bool>,
    // From the dry run, after the user approved (the dry run's reply and the server's
    // instructions say so; each word here is paid on every turn).
    #[schemars(length(max = limits::TOKEN))]
    pub confirmation_token: Option<String>,
    /// Why to override NO-GO (--allow-override).
    #[schemars(length(max = limits::TEXT))]
    pub override_reason: Option<String>,
    /// The environment meant; refused if the namespace is another.
    #[serde(skip)]
    #[schemars(skip)]
    pub environment: Option<String>,
}
