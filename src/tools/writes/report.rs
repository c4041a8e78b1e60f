//! What a write tool returns: the change as a diff, the review with its verdict, how it was
//! approved (or why not), the confirmation token when one is needed, the rollout as watched,
//! and the rollback plan. One shape for all four tools, complete in both views (text for hosts
//! that show only text, structured for those that show only JSON), and small by construction:
//! the budget never shapes a write's reply, so nothing here may grow without bound.

use std::fmt::Write;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::environment::Environment;
use crate::tools::RenderText;

/// What happened to the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// Reviewed and planned; nothing changed.
    DryRun,
    /// Production change reviewed; apply it with the confirmation token.
    AwaitingConfirmation,
    /// Refused (write mode, NO-GO review, a bad or spent token…); nothing changed.
    Refused,
    /// The user declined (or dismissed) the approval; nothing changed.
    Declined,
    /// Applied, and the rollout completed.
    Applied,
    /// Applied; the caller stopped waiting, so the watch stopped — the rollout goes on.
    WatchStopped,
    /// Applied; the rollout failed or did not finish in time; the rollback call is given.
    Failed,
    /// Applied; the rollout failed and was rolled back automatically.
    RolledBack,
}

impl WriteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::DryRun => "dry_run",
            WriteOutcome::AwaitingConfirmation => "awaiting_confirmation",
            WriteOutcome::Refused => "refused",
            WriteOutcome::Declined => "declined",
            WriteOutcome::Applied => "applied",
            WriteOutcome::WatchStopped => "watch_stopped",
            WriteOutcome::Failed => "failed",
            WriteOutcome::RolledBack => "rolled_back",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    #[serde(rename = "GO")]
    Go,
    #[serde(rename = "NO-GO")]
    NoGo,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Go => "GO",
            Verdict::NoGo => "NO-GO",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    /// Raises the risk; does not block.
    Warn,
    /// Blocks: the verdict is NO-GO.
    Fail,
}

impl CheckStatus {
    fn mark(self) -> &'static str {
        match self {
            CheckStatus::Pass => "ok  ",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    /// What was read, in one line.
    pub evidence: String,
}

/// The client's model's review (MCP sampling): shown beside the deterministic one; it can
/// only make the decision stricter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelReview {
    /// `ok`, or `failed` with the reason in `note`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// True when the model's verdict or risk made the decision stricter.
    pub made_stricter: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    pub verdict: Verdict,
    pub risk: Risk,
    /// Why, most important first.
    pub reasons: Vec<String>,
    pub checks: Vec<Check>,
    /// What to do around this change, in order.
    pub checklist: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_review: Option<ModelReview>,
}

/// One changed field.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DiffLine {
    /// `image (payment-gateway)`, `replicas`, `pod template`…
    pub field: String,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// One line: `image registry/payment-gateway:2.14.0 → :2.13.2`.
    pub summary: String,
    pub diff: Vec<DiffLine>,
    /// Who validated it without storing it (`the API server (dryRun=All)`).
    pub validated_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Approval {
    /// `elicitation`, `confirmation token`, `policy: non-production after a GO review`,
    /// `override`…
    pub how: String,
    /// Who approved, as far as the server can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A call to make, with its arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallSpec {
    pub tool: String,
    pub arguments: Map<String, Value>,
}

impl ToolCallSpec {
    pub fn render(&self) -> String {
        let arguments: Vec<String> = self
            .arguments
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}({})", self.tool, arguments.join(", "))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Confirmation {
    /// Single use, bound to this exact change.
    pub token: String,
    pub expires_at: String,
    pub expires_in_seconds: u64,
    /// The call that applies the change.
    pub call: ToolCallSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    Complete,
    /// New pods crash or cannot pull their image, or the progress deadline passed.
    Failed,
    /// Not complete within --rollout-timeout.
    TimedOut,
    /// The caller stopped waiting; the rollout goes on.
    WatchStopped,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RolloutReport {
    pub status: RolloutStatus,
    pub desired: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    pub elapsed_seconds: f64,
    /// What decided the status (a pod's waiting reason, a condition).
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RollbackPlan {
    /// True when the server rolled back itself (--auto-rollback).
    pub automatic: bool,
    /// The call that rolls back (made, when automatic).
    pub call: ToolCallSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// The reply of every write tool.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WriteReport {
    /// `deploy`, `rollback`, `restart` or `scale`.
    pub action: String,
    pub service: String,
    pub namespace: String,
    pub environment: Environment,
    pub outcome: WriteOutcome,
    /// One line: what happened and what comes next.
    pub summary: String,
    pub change: Change,
    pub review: Review,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_before: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPlan>,
    /// The reason given for the change.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    pub next_steps: Vec<String>,
}

impl RenderText for WriteReport {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} {}/{} in {} ({}) — {}\n{}\n",
            self.action,
            self.namespace,
            self.service,
            self.environment.name,
            self.environment.source,
            self.outcome.as_str().to_uppercase().replace('_', " "),
            self.summary
        );
        let _ = writeln!(out, "\nChange: {}", self.change.summary);
        for d in &self.change.diff {
            let _ = writeln!(
                out,
                "  - {}: {}\n  + {}: {}",
                d.field, d.before, d.field, d.after
            );
        }
        let _ = writeln!(out, "  validated by {}", self.change.validated_by);
        let r = &self.review;
        let _ = writeln!(
            out,
            "\nReview: {} (risk {})",
            r.verdict.as_str(),
            r.risk.as_str()
        );
        for reason in &r.reasons {
            let _ = writeln!(out, "  because {reason}");
        }
        for c in &r.checks {
            let _ = writeln!(out, "  [{}] {}: {}", c.status.mark(), c.name, c.evidence);
        }
        if let Some(m) = &r.model_review {
            match (&m.text, &m.note) {
                (Some(text), _) => {
                    let _ = writeln!(
                        out,
                        "  client model's review: {}{}{}\n    {}",
                        m.verdict.map_or("no verdict", Verdict::as_str),
                        m.risk
                            .map(|r| format!(", risk {}", r.as_str()))
                            .unwrap_or_default(),
                        if m.made_stricter {
                            " (made the decision stricter)"
                        } else {
                            ""
                        },
                        text.replace('\n', "\n    ")
                    );
                }
                (None, Some(note)) => {
                    let _ = writeln!(out, "  client model's review: {note}");
                }
                (None, None) => {}
            }
        }
        if !r.checklist.is_empty() {
            out.push_str("\nChecklist:\n");
            for (i, item) in r.checklist.iter().enumerate() {
                let _ = writeln!(out, "  {}. {item}", i + 1);
            }
        }
        let _ = writeln!(out, "\nReason: {}", self.reason);
        if let Some(o) = &self.override_reason {
            let _ = writeln!(out, "Override reason: {o}");
        }
        if let Some(a) = &self.approval {
            let _ = writeln!(
                out,
                "Approved by {}{}",
                a.how,
                a.by.as_deref()
                    .map(|b| format!(" ({b})"))
                    .unwrap_or_default()
            );
        }
        if let Some(c) = &self.confirmation {
            let _ = writeln!(
                out,
                "\nConfirmation token: {} (single use, expires {} — in {} s)\nTo apply exactly this change: {}",
                c.token,
                c.expires_at,
                c.expires_in_seconds,
                c.call.render()
            );
        }
        match (self.revision_before, self.revision_after) {
            (Some(b), Some(a)) => {
                let _ = writeln!(out, "Revision: {b} → {a}");
            }
            (Some(b), None) => {
                let _ = writeln!(out, "Revision: {b} (unchanged)");
            }
            _ => {}
        }
        if let Some(ro) = &self.rollout {
            let _ = writeln!(
                out,
                "\nRollout: {} after {:.1} s — {}/{} updated, {}/{} ready, {}/{} available",
                match ro.status {
                    RolloutStatus::Complete => "complete",
                    RolloutStatus::Failed => "FAILED",
                    RolloutStatus::TimedOut => "NOT COMPLETE (timed out)",
                    RolloutStatus::WatchStopped => "watch stopped (the rollout goes on)",
                },
                ro.elapsed_seconds,
                ro.updated,
                ro.desired,
                ro.ready,
                ro.desired,
                ro.available,
                ro.desired
            );
            for e in &ro.evidence {
                let _ = writeln!(out, "  {e}");
            }
        }
        if let Some(rb) = &self.rollback {
            let _ = writeln!(
                out,
                "\nRollback{}: {}{}",
                if rb.automatic { " (automatic)" } else { "" },
                rb.call.render(),
                rb.result
                    .as_deref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default()
            );
        }
        if !self.next_steps.is_empty() {
            out.push_str("\nNext:\n");
            for s in &self.next_steps {
                let _ = writeln!(out, "  - {s}");
            }
        }
        out.trim_end().to_string()
    }
}
