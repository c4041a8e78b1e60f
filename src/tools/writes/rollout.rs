//! The rollout watch: reads the Deployment, its newest ReplicaSet and that ReplicaSet's pods
//! until the rollout is complete (as `kubectl rollout status` decides it), has failed (the
//! progress deadline passed, or new pods crash or cannot pull their image), or the time is up;
//! reporting updated/ready/available of desired as progress. A caller that stops waiting stops
//! the watch, never the rollout.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;

use super::report::{RolloutReport, RolloutStatus};
use crate::cluster::{ListQuery, view};
use crate::tools::{Context, ToolResult};

/// Waiting reasons of a new pod's container that mean the rollout will not finish by itself.
pub const FAILING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What the watch saw last.
pub struct Watched {
    pub report: RolloutReport,
    /// The revision the Deployment runs now.
    pub revision: Option<i64>,
}

/// The state of a rollout at one read.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutState {
    pub desired: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    pub complete: bool,
    /// Why it will not complete by itself, when it will not.
    pub failure: Vec<String>,
    pub revision: Option<i64>,
}

/// Judges a rollout from the Deployment (as the controller last wrote its status), its
/// ReplicaSets and its pods — the one definition of "complete" and "failed" here.
pub fn state(deployment: &Deployment, replica_sets: &[ReplicaSet], pods: &[Pod]) -> RolloutState {
    let desired = view::desired_replicas(deployment);
    let status = deployment.status.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let observed =
        status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let revision = view::current_revision(deployment, replica_sets);
    let mut failure = Vec::new();
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        failure.push(format!(
            "Progressing=False ProgressDeadlineExceeded: {}",
            c.message
                .as_deref()
                .unwrap_or("the rollout made no progress within its deadline")
        ));
    }
    // New pods that will not become ready by themselves.
    let hash = view::current_replica_set(deployment, replica_sets)
        .filter(|_| observed)
        .and_then(|rs| {
            rs.metadata
                .labels
                .as_ref()?
                .get("pod-template-hash")
                .cloned()
        });
    if let Some(hash) = hash {
        for pod in pods.iter().filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"))
                == Some(&hash)
        }) {
            for cs in pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
            {
                let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
                if let Some(w) = waiting
                    && let Some(reason) = w.reason.as_deref()
                    && FAILING_REASONS.contains(&reason)
                {
                    let last = cs
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.reason.clone())
                        .map(|r| format!(", last ended {r}"))
                        .unwrap_or_default();
                    failure.push(format!(
                        "pod {} container {}: {reason}{last}{}{}",
                        view::name(&pod.metadata),
                        cs.name,
                        if cs.restart_count > 0 {
                            format!(", {} restarts", cs.restart_count)
                        } else {
                            String::new()
                        },
                        w.message
                            .as_deref()
                            .map(|m| format!(" — {}", crate::util::quote::clip(m, 200)))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
    failure.truncate(6);
    let total = status.replicas.unwrap_or(0);
    let complete = observed
        && updated == desired
        && total == desired
        && available == desired
        && ready >= desired;
    RolloutState {
        desired,
        updated,
        ready,
        available,
        complete,
        failure,
        revision,
    }
}

/// Watches the rollout `applied` started until it completes, fails or `timeout` passes.
pub async fn watch(ctx: &Context, applied: &Deployment, timeout: Duration) -> ToolResult<Watched> {
    let namespace = view::namespace(&applied.metadata).to_string();
    let name = view::name(&applied.metadata).to_string();
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        let deployment = ctx.backend.deployment(&namespace, &name).await?;
        let scope = ListQuery::for_deployment(&deployment);
        let (replica_sets, pods) =
            tokio::try_join!(ctx.backend.replica_sets(&scope), ctx.backend.pods(&scope))?;
        let mut state = state(&deployment, &replica_sets.items, &pods.items);
        // The controller has not seen the change yet: not complete, whatever the old status says.
        if deployment.metadata.generation < applied.metadata.generation {
            state.complete = false;
        }
        let line = format!(
            "rollout of {namespace}/{name}: {}/{} updated, {}/{} ready, {}/{} available",
            state.updated,
            state.desired,
            state.ready,
            state.desired,
            state.available,
            state.desired
        );
        if line != last_line {
            ctx.progress.step(None, line.clone());
            last_line = line;
        }
        let elapsed = started.elapsed();
        let finish = |status: RolloutStatus, evidence: Vec<String>| Watched {
            report: RolloutReport {
                status,
                desired: state.desired,
                updated: state.updated,
                ready: state.ready,
                available: state.available,
                elapsed_seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
                evidence,
            },
            revision: state.revision,
        };
        if state.complete {
            ctx.progress
                .last_step(format!("rollout of {namespace}/{name} complete"));
            return Ok(finish(RolloutStatus::Complete, Vec::new()));
        }
        if !state.failure.is_empty() {
            ctx.progress
                .last_step(format!("rollout of {namespace}/{name} failed"));
            return Ok(finish(RolloutStatus::Failed, state.failure.clone()));
        }
        if elapsed >= timeout {
            return Ok(finish(
                RolloutStatus::TimedOut,
                vec![format!(
                    "not complete after {} s (--rollout-timeout); new pods not ready yet",
                    timeout.as_secs()
                )],
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.writes.poll_interval.min(timeout.saturating_sub(elapsed)).max(Duration::from_millis(10))) => {}
            _ = ctx.stop.cancelled() => {
                return Ok(finish(
                    RolloutStatus::WatchStopped,
                    vec!["the caller stopped waiting: the watch stopped, the rollout goes on".into()],
                ));
            }
        }
    }
}
