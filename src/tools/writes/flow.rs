//! The flow every write tool runs: find the Deployment → its environment → the change, checked
//! by a server dry run → the review (and the client's model's, when it can) → the approval
//! gate → apply → watch the rollout → on failure, roll back or give the rollback call. The
//! tools differ only in the change they ask for ([`Planned`]).

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::{Map, Value, json};

use super::confirm::Bound;
use super::environment::Environment;
use super::report::{
    Approval, Change, Confirmation, DiffLine, RollbackPlan, RolloutStatus, ToolCallSpec, Verdict,
    WriteOutcome, WriteReport,
};
use super::{Common, WriteMode, review, rollout};
use crate::cluster::{DeploymentChange, DeploymentWrite, ListQuery, view};
use crate::tools::{Answer, Context, ToolError, ToolResult, lookup};
use crate::util::timefmt::rfc3339;

/// The four write actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deploy,
    Rollback,
    Restart,
    Scale,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::Restart => "restart",
            Action::Scale => "scale",
        }
    }

    pub fn tool(self) -> &'static str {
        match self {
            Action::Deploy => "deploy_with_review",
            Action::Rollback => "rollback_deployment",
            Action::Restart => "restart_deployment",
            Action::Scale => "scale_deployment",
        }
    }
}

/// The change a tool asks for, worked out from what the cluster holds.
pub struct Planned {
    pub change: DeploymentChange,
    /// Its own arguments, as the confirmation call repeats them (`image`, `replicas`…).
    pub arguments: Map<String, Value>,
}

/// What the review needs to know about the change.
pub struct Subject<'a> {
    pub action: Action,
    pub key: &'a str,
    pub deployment: &'a Deployment,
    pub replica_sets: &'a [ReplicaSet],
    pub change: &'a DeploymentChange,
    pub after: &'a Deployment,
    pub environment: &'a Environment,
}

/// Runs `action` on the service `common` names, with the change `plan` works out.
pub async fn run(
    ctx: &Context,
    action: Action,
    common: Common,
    plan: impl FnOnce(&Deployment, &[ReplicaSet]) -> ToolResult<Planned>,
) -> ToolResult<WriteReport> {
    let policy = ctx.writes.clone();
    if policy.mode == WriteMode::Off {
        return Err(ToolError::Refused(format!(
            "writes are off on this server (--write-mode off, the default with a Kubernetes backend): {} was not run and nothing was read or changed. To review changes without applying them start sre-mcp with --write-mode review; to apply them after review and approval, --write-mode on",
            action.tool()
        )));
    }
    let dry_run = common.dry_run.unwrap_or(true);
    // A token that can apply nothing (unknown, used, expired) is refused before any read.
    if let Some(token) = &common.confirmation_token
        && let Some(error) = policy.confirmations.spent(token, Timestamp::now())
    {
        return Err(ToolError::Refused(format!(
            "{} was not run: {error}",
            action.tool()
        )));
    }
    let service = match (&common.namespace, common.service.contains('/')) {
        (Some(ns), false) => format!("{ns}/{}", common.service),
        _ => common.service.clone(),
    };
    let deployment = lookup::find_service(ctx, &service).await?;
    let namespace = view::namespace(&deployment.metadata).to_string();
    let name = view::name(&deployment.metadata).to_string();
    if let Some(ns) = &common.namespace
        && ns != &namespace
    {
        return Err(ToolError::InvalidArgument(format!(
            "namespace {} does not match service {} (in namespace {namespace})",
            crate::util::quote::short(ns),
            crate::util::quote::short(&common.service)
        )));
    }
    let key = format!("{namespace}/{name}");
    let environment = policy
        .environments
        .of(&ctx.backend.namespace(&namespace).await?);
    if let Some(claimed) = &common.environment
        && !claimed.eq_ignore_ascii_case(&environment.name)
    {
        return Err(ToolError::InvalidArgument(format!(
            "environment {} was given, but namespace {namespace} is {} ({}); nothing was changed. Check the service and namespace, or leave environment out",
            crate::util::quote::short(claimed),
            environment.name,
            environment.source
        )));
    }
    let replica_sets = ctx
        .backend
        .replica_sets(&ListQuery::for_deployment(&deployment))
        .await?
        .items;
    let revision_before = view::current_revision(&deployment, &replica_sets);
    let planned = plan(&deployment, &replica_sets)?;
    // The server checks the change without storing it: the diff shows what it would store.
    let after = ctx
        .backend
        .write_deployment(&write_of(
            ctx,
            &namespace,
            &name,
            &planned.change,
            &common,
            true,
            &deployment,
        ))
        .await?;
    let diff = diff(&deployment, &after);
    if diff.is_empty() {
        return Err(ToolError::InvalidArgument(format!(
            "no change: {key} already has what was asked ({}); nothing to do",
            describe(&planned.change)
        )));
    }
    let change = Change {
        summary: diff
            .iter()
            .map(|d| format!("{} {} → {}", d.field, d.before, d.after))
            .collect::<Vec<_>>()
            .join("; "),
        diff,
        validated_by: match ctx.backend.info().kind {
            "kubernetes" => format!(
                "the API server (dryRun=All, field manager {})",
                crate::cluster::FIELD_MANAGER
            ),
            kind => format!("the {kind} cluster (dry run)"),
        },
    };
    let subject = Subject {
        action,
        key: &key,
        deployment: &deployment,
        replica_sets: &replica_sets,
        change: &planned.change,
        after: &after,
        environment: &environment,
    };
    let mut review = review::review(ctx, &subject).await?;
    if ctx.caller.can_sample {
        review::ask_model(ctx, &subject, &change, &mut review).await;
    }
    let mut report = WriteReport {
        action: action.as_str().into(),
        service: name.clone(),
        namespace: namespace.clone(),
        environment: environment.clone(),
        outcome: WriteOutcome::DryRun,
        summary: String::new(),
        change,
        review,
        approval: None,
        confirmation: None,
        revision_before,
        revision_after: None,
        rollout: None,
        rollback: None,
        reason: common.reason.clone(),
        override_reason: common.override_reason.clone(),
        next_steps: Vec::new(),
    };
    let blocked = report.review.verdict == Verdict::NoGo;
    let overridden = blocked && policy.allow_override && common.override_reason.is_some();
    if blocked && common.override_reason.is_some() && !policy.allow_override {
        report.next_steps.push(
            "override_reason was not used: this server was not started with --allow-override"
                .into(),
        );
    }
    let needs_approval = environment.production || !policy.auto_approve_non_production;
    let bound = Bound {
        change: format!(
            "{} {key} {} override={:?}",
            action.tool(),
            canonical(&planned.change),
            common.override_reason.as_deref().filter(|_| overridden)
        ),
        summary: format!("{} {key}: {}", action.as_str(), report.change.summary),
        generation: deployment.metadata.generation,
    };
    let call = |token: Option<&str>| {
        let mut arguments = Map::new();
        arguments.insert("service".into(), json!(key));
        arguments.extend(planned.arguments.clone());
        arguments.insert("reason".into(), json!(common.reason));
        if let Some(o) = common.override_reason.as_ref().filter(|_| overridden) {
            arguments.insert("override_reason".into(), json!(o));
        }
        arguments.insert("dry_run".into(), json!(false));
        if let Some(token) = token {
            arguments.insert("confirmation_token".into(), json!(token));
        }
        ToolCallSpec {
            tool: action.tool().into(),
            arguments,
        }
    };
    let issue_token = |report: &mut WriteReport| {
        let now = Timestamp::now();
        let (token, expires) = policy.confirmations.issue(bound.clone(), now);
        report.confirmation = Some(Confirmation {
            call: call(Some(&token)),
            token,
            expires_at: rfc3339(expires),
            expires_in_seconds: policy.confirmations.ttl().as_secs(),
        });
    };
    let blocked_text = || {
        format!(
            "the review is NO-GO ({}){}",
            report.review.reasons.first().cloned().unwrap_or_default(),
            if policy.allow_override {
                "; to apply it anyway, call again with override_reason saying why"
            } else {
                "; fix what it names first (this server does not allow overrides: --allow-override is off)"
            }
        )
    };

    if dry_run {
        report.outcome = WriteOutcome::DryRun;
        if blocked && !overridden {
            report.summary = format!("Dry run: nothing changed. Blocked: {}.", blocked_text());
        } else if policy.mode == WriteMode::Review {
            report.summary = "Dry run: nothing changed. This server reviews only (--write-mode review); apply the change with your usual process, or restart sre-mcp with --write-mode on.".into();
        } else if needs_approval && !ctx.caller.can_elicit {
            issue_token(&mut report);
            report.summary = format!(
                "Dry run: nothing changed. {} needs a person's approval, and this client cannot ask its user: show the review to the user and, only if they approve, make the call below with the confirmation token (single use, {} s).",
                environment.name,
                policy.confirmations.ttl().as_secs()
            );
        } else if needs_approval {
            report.summary = format!(
                "Dry run: nothing changed. To apply, call again with dry_run=false: the user will be asked to approve this {} change.",
                environment.name
            );
            report.next_steps.push(call(None).render());
        } else {
            report.summary = format!(
                "Dry run: nothing changed. {} is not production: with dry_run=false it is applied after a GO review without asking.",
                environment.name
            );
            report.next_steps.push(call(None).render());
        }
        return Ok(report);
    }
    if policy.mode == WriteMode::Review {
        report.outcome = WriteOutcome::Refused;
        report.summary = "Refused: this server reviews only (--write-mode review); nothing was changed. The review above is the plan; restart sre-mcp with --write-mode on to apply changes.".into();
        return Ok(report);
    }
    if blocked && !overridden {
        report.outcome = WriteOutcome::Refused;
        report.summary = format!("Refused: nothing was changed; {}.", blocked_text());
        return Ok(report);
    }
    let client = ctx.caller.client.clone();
    let mut reviewed_generation = deployment.metadata.generation;
    let approval = if let Some(token) = &common.confirmation_token {
        if let Err(error) = policy.confirmations.redeem(token, &bound, Timestamp::now()) {
            report.outcome = WriteOutcome::Refused;
            report.summary = format!("Refused: nothing was changed; {error}.");
            return Ok(report);
        }
        reviewed_generation = policy.confirmations.reviewed_generation(token);
        Approval {
            how: "confirmation token from the dry run".into(),
            by: client.map(|c| format!("the user of {c}")),
        }
    } else if !needs_approval {
        Approval {
            how: format!(
                "policy: {} is not production; applied after a GO review",
                environment.name
            ),
            by: None,
        }
    } else {
        let fallback = if ctx.caller.can_elicit {
            let message = approval_message(&report, &key);
            let schema = json!({
                "type": "object",
                "properties": {
                    "approve": {
                        "type": "boolean",
                        "title": format!("Apply this change to {key} in {}", environment.name),
                        "description": "Yes applies the change now; no leaves everything as it is.",
                        "default": false
                    }
                },
                "required": ["approve"]
            });
            let answer = tokio::select! {
                answer = ctx.ask.elicit(message, schema) => answer,
                _ = tokio::time::sleep(super::WritePolicy::APPROVAL_WAIT) => Answer::Cancelled,
                _ = ctx.stop.cancelled() => Answer::Cancelled,
            };
            match answer {
                Answer::Accepted(content)
                    if content.get("approve").and_then(Value::as_bool) == Some(true) =>
                {
                    None
                }
                Answer::Accepted(_) | Answer::Declined | Answer::Cancelled => {
                    report.outcome = WriteOutcome::Declined;
                    report.summary = format!(
                        "Declined: the user did not approve the change; nothing was changed ({}).",
                        match answer {
                            Answer::Cancelled => "the approval was dismissed or not answered",
                            Answer::Declined => "declined",
                            _ => "answered no",
                        }
                    );
                    return Ok(report);
                }
                Answer::Unavailable(reason) => Some(reason),
            }
        } else {
            Some("this client cannot ask its user (no MCP elicitation on this session)".into())
        };
        match fallback {
            None => Approval {
                how: "elicitation: the user approved in the client".into(),
                by: client.map(|c| format!("the user of {c}")),
            },
            Some(reason) => {
                issue_token(&mut report);
                report.outcome = WriteOutcome::AwaitingConfirmation;
                report.summary = format!(
                    "Not applied yet: {} needs a person's approval and {reason}. Show the review to the user; only if they approve, make the call below with the confirmation token.",
                    environment.name
                );
                return Ok(report);
            }
        }
    };
    report.approval = Some(Approval {
        how: if overridden {
            format!("{} — NO-GO overridden (--allow-override)", approval.how)
        } else {
            approval.how
        },
        by: approval.by,
    });
    let applied = apply_reviewed(
        ctx,
        &namespace,
        &name,
        &planned.change,
        &common,
        reviewed_generation,
    )
    .await?;
    ctx.progress
        .step(None, format!("applied: {}", report.change.summary));
    let watched = rollout::watch(ctx, &applied, policy.rollout_timeout).await?;
    report.revision_after = watched.revision.or(revision_before);
    let status = watched.report.status;
    report.rollout = Some(watched.report);
    let revision_text = match (revision_before, report.revision_after) {
        (Some(b), Some(a)) if a != b => format!(" (revision {b} → {a})"),
        _ => String::new(),
    };
    match status {
        RolloutStatus::Complete => {
            report.outcome = WriteOutcome::Applied;
            report.summary = format!(
                "Applied{revision_text}: the rollout completed. Watch the service for the next 15 minutes."
            );
            report.next_steps.push(format!(
                "check_service_health(service=\"{key}\") now and again in 15 minutes"
            ));
        }
        RolloutStatus::WatchStopped => {
            report.outcome = WriteOutcome::WatchStopped;
            report.summary = format!(
                "Applied{revision_text}; the watch stopped because the caller stopped waiting — the rollout itself goes on. Follow it with check_service_health(service=\"{key}\")."
            );
        }
        RolloutStatus::Failed | RolloutStatus::TimedOut => {
            let back = rollback_call(action, &key, &deployment, revision_before, &report);
            if policy.auto_rollback
                && let Some(back) = back
            {
                let result = auto_rollback(ctx, &namespace, &name, &back.0, &common).await;
                report.outcome = if result.is_ok() {
                    WriteOutcome::RolledBack
                } else {
                    WriteOutcome::Failed
                };
                report.summary = format!(
                    "Applied{revision_text}, but the rollout {}; rolled back automatically (--auto-rollback): {}.",
                    if status == RolloutStatus::Failed {
                        "failed"
                    } else {
                        "did not complete in time"
                    },
                    result.as_ref().map_or_else(|e| e.clone(), |r| r.clone())
                );
                report.rollback = Some(RollbackPlan {
                    automatic: true,
                    call: back.1,
                    result: Some(result.unwrap_or_else(|e| e)),
                });
            } else {
                report.outcome = WriteOutcome::Failed;
                report.summary = format!(
                    "Applied{revision_text}, but the rollout {}. The old pods still serve where they were kept; roll back with the call below.",
                    if status == RolloutStatus::Failed {
                        "failed"
                    } else {
                        "did not complete within --rollout-timeout"
                    }
                );
                report.rollback = back.map(|(_, call)| RollbackPlan {
                    automatic: false,
                    call,
                    result: None,
                });
            }
        }
    }
    Ok(report)
}

/// Applies `change` to the Deployment as reviewed. Its spec must be unchanged since (the same
/// generation); its status may have moved on (the controller writes it all through a rollout,
/// changing the resourceVersion), so a conflict with an unchanged spec is read again and
/// retried a few times.
async fn apply_reviewed(
    ctx: &Context,
    namespace: &str,
    name: &str,
    change: &DeploymentChange,
    common: &Common,
    reviewed_generation: Option<i64>,
) -> ToolResult<Deployment> {
    const ATTEMPTS: usize = 4;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = ctx.backend.deployment(namespace, name).await?;
        if current.metadata.generation != reviewed_generation {
            return Err(ToolError::Cluster(crate::cluster::ClusterError::Conflict {
                message: format!(
                    "{namespace}/{name} changed since it was reviewed (generation {} → {}); nothing was changed. Run the call with dry_run=true to review it again",
                    reviewed_generation.map_or("?".into(), |g| g.to_string()),
                    current
                        .metadata
                        .generation
                        .map_or("?".into(), |g| g.to_string())
                ),
            }));
        }
        let write = write_of(ctx, namespace, name, change, common, false, &current);
        match ctx.backend.write_deployment(&write).await {
            Err(crate::cluster::ClusterError::Conflict { .. }) if attempt < ATTEMPTS => {
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt as u64)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The write for `change`, checked against `seen`'s resourceVersion.
fn write_of(
    ctx: &Context,
    namespace: &str,
    name: &str,
    change: &DeploymentChange,
    common: &Common,
    dry_run: bool,
    seen: &Deployment,
) -> DeploymentWrite {
    let change = match change {
        // A restart is stamped when it is made.
        DeploymentChange::Restart { .. } => DeploymentChange::Restart {
            at: Timestamp::now(),
        },
        other => other.clone(),
    };
    DeploymentWrite {
        namespace: namespace.into(),
        name: name.into(),
        change,
        change_cause: common.reason.clone(),
        deployed_by: format!(
            "sre-mcp{}",
            ctx.caller
                .client
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        dry_run,
        // A dry run stores nothing: no precondition (the status a rollout keeps writing would
        // only make it fail).
        resource_version: (!dry_run)
            .then(|| seen.metadata.resource_version.clone())
            .flatten(),
    }
}

/// The change in words, for "no change" and the token's binding.
fn describe(change: &DeploymentChange) -> String {
    match change {
        DeploymentChange::Image { container, image } => {
            format!("container {container} image {image}")
        }
        DeploymentChange::Replicas(n) => format!("{n} replicas"),
        DeploymentChange::Restart { .. } => "a restart".into(),
        DeploymentChange::Template { revision, .. } => {
            format!("the pod template of revision {revision}")
        }
    }
}

/// The change without what differs between two calls for the same change (a restart's time).
fn canonical(change: &DeploymentChange) -> String {
    match change {
        DeploymentChange::Restart { .. } => "restart".into(),
        other => describe(other),
    }
}

/// What the write changes, field by field: images per container, replicas, a restart.
pub fn diff(before: &Deployment, after: &Deployment) -> Vec<DiffLine> {
    let mut lines = Vec::new();
    let containers = |d: &Deployment| -> Vec<(String, String)> {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| {
                p.containers
                    .iter()
                    .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (containers(before), containers(after));
    for (name, image) in &new {
        match old.iter().find(|(n, _)| n == name) {
            Some((_, was)) if was != image => lines.push(DiffLine {
                field: format!("image ({name})"),
                before: was.clone(),
                after: image.clone(),
            }),
            None => lines.push(DiffLine {
                field: format!("container {name}"),
                before: "(none)".into(),
                after: image.clone(),
            }),
            _ => {}
        }
    }
    for (name, image) in &old {
        if !new.iter().any(|(n, _)| n == name) {
            lines.push(DiffLine {
                field: format!("container {name}"),
                before: image.clone(),
                after: "(removed)".into(),
            });
        }
    }
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if replicas(before) != replicas(after) {
        lines.push(DiffLine {
            field: "replicas".into(),
            before: replicas(before).to_string(),
            after: replicas(after).to_string(),
        });
    }
    let restarted = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(crate::cluster::RESTARTED_AT_ANNOTATION))
            .cloned()
    };
    if restarted(before) != restarted(after) {
        lines.push(DiffLine {
            field: "restartedAt".into(),
            before: restarted(before).unwrap_or_else(|| "(never)".into()),
            after: restarted(after).unwrap_or_default(),
        });
    }
    let template = |d: &Deployment| {
        d.spec
            .as_ref()
            .map(|s| serde_json::to_value(&s.template).ok())
    };
    if lines.is_empty() && template(before) != template(after) {
        lines.push(DiffLine {
            field: "pod template".into(),
            before: "current".into(),
            after: "changed (env, resources or labels)".into(),
        });
    }
    lines
}

/// The message shown with the approval form: the diff, the verdict, the reasons.
fn approval_message(report: &WriteReport, key: &str) -> String {
    let mut text = format!(
        "Approve {} of {key} in {}?\n\nChange: {}\nReview: {} (risk {})\n",
        report.action,
        report.environment.name,
        report.change.summary,
        report.review.verdict.as_str(),
        report.review.risk.as_str()
    );
    for reason in report.review.reasons.iter().take(4) {
        text.push_str(&format!("- {reason}\n"));
    }
    text.push_str(&format!("\nReason given: {}", report.reason));
    if let Some(o) = &report.override_reason {
        text.push_str(&format!("\nNO-GO overridden because: {o}"));
    }
    text
}

/// The call that undoes a failed change, and the change it makes.
fn rollback_call(
    action: Action,
    key: &str,
    before: &Deployment,
    revision_before: Option<i64>,
    report: &WriteReport,
) -> Option<(DeploymentChange, ToolCallSpec)> {
    let mut arguments = Map::new();
    arguments.insert("service".into(), json!(key));
    let reason = format!(
        "undo {} ({}): rollout {}",
        action.as_str(),
        report.change.summary,
        if report.rollout.as_ref().map(|r| r.status) == Some(RolloutStatus::Failed) {
            "failed"
        } else {
            "did not complete"
        }
    );
    if action == Action::Scale {
        let replicas = before.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        arguments.insert("replicas".into(), json!(replicas));
        arguments.insert("reason".into(), json!(reason));
        arguments.insert("dry_run".into(), json!(false));
        return Some((
            DeploymentChange::Replicas(replicas),
            ToolCallSpec {
                tool: Action::Scale.tool().into(),
                arguments,
            },
        ));
    }
    let revision = revision_before?;
    arguments.insert("to_revision".into(), json!(revision));
    arguments.insert("reason".into(), json!(reason));
    arguments.insert("dry_run".into(), json!(false));
    let template = before.spec.as_ref()?.template.clone();
    Some((
        DeploymentChange::Template {
            revision,
            template: Box::new(template),
        },
        ToolCallSpec {
            tool: Action::Rollback.tool().into(),
            arguments,
        },
    ))
}

/// Undoes a failed change at once (approved with the change it undoes) and watches it.
async fn auto_rollback(
    ctx: &Context,
    namespace: &str,
    name: &str,
    change: &DeploymentChange,
    common: &Common,
) -> Result<String, String> {
    let current = ctx
        .backend
        .deployment(namespace, name)
        .await
        .map_err(|e| format!("could not read the deployment to roll back: {e}"))?;
    let mut undo = common.clone();
    undo.reason = format!(
        "automatic rollback after a failed rollout ({})",
        common.reason
    );
    let applied = ctx
        .backend
        .write_deployment(&write_of(
            ctx, namespace, name, change, &undo, false, &current,
        ))
        .await
        .map_err(|e| format!("the rollback was refused: {e}"))?;
    let watched = rollout::watch(ctx, &applied, ctx.writes.rollout_timeout)
        .await
        .map_err(|e| format!("rolled back, but its rollout could not be read: {e}"))?;
    Ok(match watched.report.status {
        RolloutStatus::Complete => format!(
            "rolled back{}; its rollout completed",
            watched
                .revision
                .map(|r| format!(" to revision {r}"))
                .unwrap_or_default()
        ),
        other => format!("rolled back; its rollout is {other:?} — check the service now"),
    })
}
