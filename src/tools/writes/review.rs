//! The review every write gets before anything changes: the service's health and its
//! dependencies', crashing pods, error rate and recent error logs, warning events, recent and
//! failing deploys, a rollout already under way, and the change itself (from the dry run).
//! Each check passes, warns (raises the risk) or fails (NO-GO). The verdict is deterministic;
//! the client's model, when it can be asked, may only make it stricter.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::flow::{Action, Subject};
use super::report::{Change, Check, CheckStatus, ModelReview, Review, Risk, Verdict};
use crate::cluster::{DeploymentChange, HealthStatus, view};
use crate::tools::deploys::deploy_records;
use crate::tools::health::{ServiceHealth, assess_services};
use crate::tools::logs::{CountErrorsParams, GroupBy, count_errors};
use crate::tools::troubleshoot::{TroubleshootIssueParams, troubleshoot_issue};
use crate::tools::{Context, ProgressSender, RenderText, ToolResult};
use crate::util::quote::clip;

/// How far back the review reads error logs.
const ERROR_WINDOW: &str = "30m";
/// Deploys within this window count as recent.
const RECENT: SignedDuration = SignedDuration::from_hours(24);
/// More recent deploys than this raise the risk.
const MANY_DEPLOYS: usize = 3;
/// Most tokens the client's model may answer with.
pub const MAX_MODEL_TOKENS: u32 = 300;
/// Most characters of the prompt sent to the client's model.
const MAX_PROMPT_CHARS: usize = 5_000;

fn check(name: &str, status: CheckStatus, evidence: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status,
        evidence: clip(&evidence.into(), 300).into_owned(),
    }
}

/// Reviews the change `subject` describes.
pub async fn review(ctx: &Context, subject: &Subject<'_>) -> ToolResult<Review> {
    // The review's own reads report no progress of their own (the caller asked about the write).
    let quiet = Arc::new(ctx.with_progress(ProgressSender::default()));
    ctx.progress.step(
        None,
        format!("reviewing {} of {}", subject.action.as_str(), subject.key),
    );
    let namespace = view::namespace(&subject.deployment.metadata).to_string();
    let name = view::name(&subject.deployment.metadata).to_string();
    let events_scope = crate::cluster::ListQuery::in_namespace(&namespace);
    let (health, investigation, errors, events) = tokio::join!(
        assess_services(&quiet, Some(subject.key)),
        troubleshoot_issue(
            quiet.clone(),
            TroubleshootIssueParams {
                description: format!(
                    "review before a {} of {}",
                    subject.action.as_str(),
                    subject.key
                ),
                service: Some(subject.key.to_string()),
                namespace: None,
            },
        ),
        count_errors(
            quiet.clone(),
            CountErrorsParams {
                group_by: Some(GroupBy::Message),
                since: Some(ERROR_WINDOW.into()),
                namespace: Some(namespace.clone()),
            },
        ),
        ctx.backend.events(&events_scope),
    );
    let health = health?
        .services
        .into_iter()
        .find(|s| s.name == name && s.namespace == namespace);
    let mut checks = Vec::new();
    let action = subject.action;
    let now = Timestamp::now();

    // The service itself.
    if let Some(h) = &health {
        checks.push(health_check(action, h));
        checks.push(pods_check(action, h));
        checks.push(error_rate_check(action, h));
        checks.push(events_check(action, h));
        checks.push(rollout_check(action, h));
    }
    // Its recent error logs.
    match errors {
        Ok(errors) => {
            let own: Vec<_> = errors
                .groups
                .iter()
                .filter(|g| g.services.iter().any(|s| s == &name))
                .collect();
            let total: usize = own.iter().map(|g| g.count).sum();
            checks.push(if own.is_empty() {
                check("recent error logs", CheckStatus::Pass, format!("no error lines in the last {ERROR_WINDOW}"))
            } else {
                check(
                    "recent error logs",
                    if action == Action::Rollback { CheckStatus::Pass } else { CheckStatus::Warn },
                    format!(
                        "{total} error lines in the last {ERROR_WINDOW}, {} kinds; most: {}× \"{}\"",
                        own.len(),
                        own[0].count,
                        clip(&own[0].sample, 140)
                    ),
                )
            });
        }
        Err(e) => checks.push(check(
            "recent error logs",
            CheckStatus::Warn,
            format!("could not read: {e}"),
        )),
    }
    // Its dependencies (and callers), as the investigation found them in error lines.
    match investigation {
        Ok(found) => {
            let others: Vec<String> = found
                .hypotheses
                .iter()
                .filter(|h| h.service != subject.key && h.confidence >= 0.5)
                .take(3)
                .map(|h| format!("{}: {}", h.service, h.title))
                .collect();
            checks.push(if others.is_empty() {
                check(
                    "dependencies",
                    CheckStatus::Pass,
                    "no problem found in the services its errors name or that name it",
                )
            } else {
                check("dependencies", CheckStatus::Warn, others.join("; "))
            });
        }
        Err(e) => checks.push(check(
            "dependencies",
            CheckStatus::Warn,
            format!("could not investigate: {e}"),
        )),
    }
    // Recent deploys, and the one failing now.
    let records = deploy_records(subject.deployment, subject.replica_sets, now);
    let cutoff = now.checked_sub(RECENT).unwrap_or(Timestamp::MIN);
    let recent: Vec<_> = records
        .iter()
        .filter(|(t, _)| *t >= cutoff)
        .map(|(_, r)| r)
        .collect();
    let failing_current = health
        .as_ref()
        .is_some_and(|h| h.status != HealthStatus::Healthy && !h.pod_problems.is_empty());
    let current = records.iter().map(|(_, r)| r).find(|r| r.current);
    let deploys_evidence = format!(
        "{} deploy{} in the last 24h{}{}",
        recent.len(),
        if recent.len() == 1 { "" } else { "s" },
        current
            .map(|c| format!(
                "; current revision {} ({}, {} ago)",
                c.revision,
                c.images.join(", "),
                c.age
            ))
            .unwrap_or_default(),
        if failing_current {
            ", whose pods are failing"
        } else {
            ""
        }
    );
    checks.push(check(
        "recent deploys",
        if recent.len() > MANY_DEPLOYS && action == Action::Deploy {
            CheckStatus::Warn
        } else {
            CheckStatus::Pass
        },
        deploys_evidence,
    ));
    // The change itself.
    let failures = match &events {
        Ok(events) => replica_set_failures(&events.items, subject),
        Err(_) => BTreeMap::new(),
    };
    checks.extend(change_checks(
        subject,
        &records.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        failing_current,
        health.as_ref(),
        &failures,
    ));

    let fails: Vec<&Check> = checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .collect();
    let warns: Vec<&Check> = checks
        .iter()
        .filter(|c| c.status == CheckStatus::Warn)
        .collect();
    let verdict = if fails.is_empty() {
        Verdict::Go
    } else {
        Verdict::NoGo
    };
    let risk = if !fails.is_empty() {
        Risk::High
    } else if !warns.is_empty() || (subject.environment.production && action == Action::Deploy) {
        Risk::Medium
    } else {
        Risk::Low
    };
    let mut reasons: Vec<String> = fails
        .iter()
        .chain(warns.iter())
        .map(|c| format!("{}: {}", c.name, c.evidence))
        .collect();
    if reasons.is_empty() {
        reasons.push(format!("all {} checks passed", checks.len()));
    }
    reasons.truncate(6);
    Ok(Review {
        verdict,
        risk,
        reasons,
        checklist: checklist(subject, current.map(|c| c.revision)),
        checks,
        model_review: None,
    })
}

/// Event reasons that say a pod of a revision failed (crashed, could not pull, was killed).
const FAILURE_REASONS: &[&str] = &[
    "BackOff",
    "OOMKilling",
    "Failed",
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
];

/// For each of the service's ReplicaSets, the first warning that says its pods failed, from
/// the events still kept (an hour on most clusters): what an earlier revision did.
fn replica_set_failures(
    events: &[k8s_openapi::api::core::v1::Event],
    subject: &Subject<'_>,
) -> BTreeMap<String, String> {
    let mut failures = BTreeMap::new();
    for rs in view::owned_replica_sets(subject.deployment, subject.replica_sets) {
        let name = view::name(&rs.metadata);
        let prefix = format!("{name}-");
        let failed = events.iter().find(|e| {
            view::event_is_warning(e)
                && e.involved_object.kind.as_deref() == Some("Pod")
                && e.involved_object
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix))
                && e.reason
                    .as_deref()
                    .is_some_and(|r| FAILURE_REASONS.contains(&r))
        });
        if let Some(e) = failed {
            failures.insert(
                name.to_string(),
                format!(
                    "{} ×{} ({})",
                    e.reason.as_deref().unwrap_or(""),
                    e.count.unwrap_or(1),
                    clip(e.message.as_deref().unwrap_or(""), 120)
                ),
            );
        }
    }
    failures
}

fn health_check(action: Action, h: &ServiceHealth) -> Check {
    let evidence = h.verdict.clone();
    let status = match (h.status, action) {
        (HealthStatus::Healthy, _) => CheckStatus::Pass,
        // Rolling back a sick service is the usual remedy.
        (_, Action::Rollback) => CheckStatus::Pass,
        (HealthStatus::Down, Action::Deploy) => {
            return check(
                "service health",
                CheckStatus::Fail,
                format!(
                    "down ({}/{} pods ready{}): a deploy now has no working baseline to verify against; roll back to the last good revision first (rollback_deployment), or override with a reason",
                    h.pods_ready,
                    h.pods_desired,
                    h.error_rate
                        .map(|r| format!(", {:.0}% errors", r * 100.0))
                        .unwrap_or_default()
                ),
            );
        }
        _ => CheckStatus::Warn,
    };
    check("service health", status, evidence)
}

fn pods_check(action: Action, h: &ServiceHealth) -> Check {
    if h.pod_problems.is_empty() {
        return check(
            "crashing pods",
            CheckStatus::Pass,
            format!(
                "{}/{} pods ready, {} restarts",
                h.pods_ready, h.pods_desired, h.restarts
            ),
        );
    }
    let first = &h.pod_problems[0];
    let evidence = format!(
        "{} of {} pods not ready; {} {}{} ({} restarts)",
        h.pod_problems.len(),
        h.pods_desired,
        first.pod,
        first.status,
        first
            .last_termination_reason
            .as_deref()
            .map(|r| format!(", last ended {r}"))
            .unwrap_or_default(),
        first.restarts
    );
    match action {
        Action::Rollback => check("crashing pods", CheckStatus::Pass, evidence),
        Action::Restart => check(
            "crashing pods",
            CheckStatus::Warn,
            format!(
                "{evidence} — a restart does not fix pods that crash on the code or config they run"
            ),
        ),
        _ => check("crashing pods", CheckStatus::Warn, evidence),
    }
}

fn error_rate_check(action: Action, h: &ServiceHealth) -> Check {
    match h.error_rate {
        None => check(
            "error rate",
            CheckStatus::Pass,
            "unknown (no metrics source for this service)",
        ),
        Some(rate) => {
            let evidence = format!(
                "{:.1}% of requests failing{}",
                rate * 100.0,
                h.latency_p99_ms
                    .map(|p| format!(", p99 {p:.0} ms"))
                    .unwrap_or_default()
            );
            let status = if rate < crate::cluster::ERROR_RATE_DEGRADED || action == Action::Rollback
            {
                CheckStatus::Pass
            } else {
                CheckStatus::Warn
            };
            check("error rate", status, evidence)
        }
    }
}

fn events_check(action: Action, h: &ServiceHealth) -> Check {
    match h.recent_warning_events.first() {
        None => check("warning events", CheckStatus::Pass, "none in the last hour"),
        Some(e) => check(
            "warning events",
            // The warnings a rollback is meant to end.
            if action == Action::Rollback {
                CheckStatus::Pass
            } else {
                CheckStatus::Warn
            },
            format!(
                "{} kinds in the last hour; {} ×{}: {}",
                h.recent_warning_events.len(),
                e.reason,
                e.count,
                clip(&e.message, 140)
            ),
        ),
    }
}

fn rollout_check(action: Action, h: &ServiceHealth) -> Check {
    match &h.rollout {
        None => check(
            "rollout",
            CheckStatus::Pass,
            "none: the last rollout completed",
        ),
        // Rolling back is how a stuck rollout is undone.
        Some(r) if action == Action::Rollback => check("rollout", CheckStatus::Pass, r.clone()),
        Some(r) => check(
            "rollout",
            CheckStatus::Fail,
            format!("{r} — wait for it to finish or roll it back before another change"),
        ),
    }
}

/// The image's tag (or digest), or "" when it has neither.
fn tag(image: &str) -> &str {
    if let Some((_, digest)) = image.split_once('@') {
        return digest;
    }
    match image.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => "",
    }
}

fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => without_digest,
    }
}

fn change_checks(
    subject: &Subject<'_>,
    records: &[crate::tools::deploys::DeployRecord],
    failing_current: bool,
    health: Option<&ServiceHealth>,
    failures: &BTreeMap<String, String>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let production = subject.environment.production;
    match subject.change {
        DeploymentChange::Image { container, image } => {
            let current = view::deployment_images(subject.deployment);
            let was = subject
                .deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.containers.iter().find(|c| &c.name == container))
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let t = tag(image);
            checks.push(if t.is_empty() || t == "latest" {
                check(
                    "image pinned",
                    if production { CheckStatus::Fail } else { CheckStatus::Warn },
                    format!("{image} has {} — what runs could change under you and a rollback could not restore it; deploy a versioned tag or a digest", if t.is_empty() { "no tag" } else { "the tag latest" }),
                )
            } else {
                check("image pinned", CheckStatus::Pass, format!("tag {t}"))
            });
            if !was.is_empty() && repository(&was) != repository(image) {
                checks.push(check(
                    "same repository",
                    CheckStatus::Warn,
                    format!(
                        "{} → {}: another repository than the one running",
                        repository(&was),
                        repository(image)
                    ),
                ));
            }
            // The image that fails now, or failed in an earlier revision, deployed again.
            let failing_image = failing_current && current.iter().any(|i| i == image);
            let earlier = records
                .iter()
                .find(|r| !r.current && r.images.iter().any(|i| i == image));
            let failed_before = earlier.and_then(|r| failures.get(&r.replica_set).map(|f| (r, f)));
            checks.push(if failing_image {
                check(
                    "known-bad image",
                    CheckStatus::Fail,
                    format!("{image} is the image the failing pods run now"),
                )
            } else if let Some((r, failure)) = failed_before {
                check(
                    "known-bad image",
                    CheckStatus::Fail,
                    format!(
                        "{image} ran as revision {} ({} ago) and its pods failed: {failure}",
                        r.revision, r.age
                    ),
                )
            } else if let Some(r) = earlier {
                check(
                    "image history",
                    CheckStatus::Pass,
                    format!(
                        "{image} ran before as revision {} ({} ago)",
                        r.revision, r.age
                    ),
                )
            } else {
                check(
                    "image history",
                    CheckStatus::Pass,
                    format!("{image} has not run here before"),
                )
            });
        }
        DeploymentChange::Template { revision, .. } => {
            let target = records.iter().find(|r| r.revision == *revision);
            checks.push(match target {
                Some(r) if r.current => check(
                    "rollback target",
                    CheckStatus::Fail,
                    format!("revision {revision} is the one running now; nothing to roll back to"),
                ),
                Some(r) => check(
                    "rollback target",
                    CheckStatus::Pass,
                    format!(
                        "revision {revision}: {} ({}, {} ago)",
                        r.images.join(", "),
                        r.change_cause.as_deref().unwrap_or("no change-cause"),
                        r.age
                    ),
                ),
                None => check(
                    "rollback target",
                    CheckStatus::Fail,
                    format!("revision {revision} is not in the rollout history"),
                ),
            });
        }
        DeploymentChange::Restart { .. } => {
            let desired = view::desired_replicas(subject.deployment);
            checks.push(if desired <= 1 {
                check(
                    "redundancy",
                    CheckStatus::Warn,
                    format!("{desired} replica: the restart replaces it (maxUnavailable permitting, there may be a short gap)"),
                )
            } else {
                check("redundancy", CheckStatus::Pass, format!("{desired} replicas, replaced one at a time"))
            });
        }
        DeploymentChange::Replicas(replicas) => {
            let desired = view::desired_replicas(subject.deployment);
            let ready = health.map_or(0, |h| h.pods_ready);
            checks.push(if *replicas == 0 && production {
                check(
                    "capacity",
                    CheckStatus::Fail,
                    format!("scaling to 0 stops the service in {} (it has {ready} ready pods serving)", subject.environment.name),
                )
            } else if *replicas < desired && *replicas <= 1 && production {
                check("capacity", CheckStatus::Warn, format!("{desired} → {replicas}: a single replica has no redundancy"))
            } else if *replicas < desired && health.is_some_and(|h| h.status != HealthStatus::Healthy) {
                check("capacity", CheckStatus::Warn, format!("{desired} → {replicas} while the service is not healthy"))
            } else if *replicas > desired.max(1) * 3 {
                check("capacity", CheckStatus::Warn, format!("{desired} → {replicas}: more than triple; check the nodes have room and the dependencies can take the load"))
            } else {
                check("capacity", CheckStatus::Pass, format!("{desired} → {replicas} replicas"))
            });
        }
    }
    checks.push(check(
        "server dry run",
        CheckStatus::Pass,
        "the change validated without being stored",
    ));
    checks
}

fn checklist(subject: &Subject<'_>, current: Option<i64>) -> Vec<String> {
    let key = subject.key;
    let mut items = Vec::new();
    if subject.environment.production {
        items.push("Announce the change where your team tracks production changes (incident or deploy channel)".into());
    }
    match subject.action {
        Action::Deploy | Action::Restart => {
            items.push(format!(
                "Watch the rollout: new pods Ready, none restarting (list_pods namespace=\"{}\")",
                view::namespace(&subject.deployment.metadata)
            ));
            items.push(format!("After it completes, check_service_health(service=\"{key}\"): error rate and p99 at or below before, for 15 minutes"));
            if let Some(rev) = current {
                items.push(format!("If it degrades: rollback_deployment(service=\"{key}\", to_revision={rev}, reason=\"…\")"));
            }
        }
        Action::Rollback => {
            items.push(format!("After it completes, check_service_health(service=\"{key}\"): pods Ready, errors falling, alerts resolving"));
            items.push(
                "Keep the bad revision from being redeployed: tell its owners, open a follow-up"
                    .into(),
            );
        }
        Action::Scale => {
            items.push("Check nothing scales it back (a HorizontalPodAutoscaler or a GitOps sync owns replicas)".into());
            items.push(format!(
                "After it settles, check_service_health(service=\"{key}\")"
            ));
        }
    }
    items
}

const MODEL_SYSTEM: &str = "You are a careful senior site reliability engineer reviewing a production change before it is applied. \
Use only the evidence given. Answer with exactly: a first line `VERDICT: GO` or `VERDICT: NO-GO`, a second line `RISK: low`, `RISK: medium` or `RISK: high`, \
then at most 80 words of reasons.";

/// Asks the client's model for its review (MCP sampling) and folds it in: it may turn GO into
/// NO-GO or raise the risk, never the reverse.
pub async fn ask_model(ctx: &Context, subject: &Subject<'_>, change: &Change, review: &mut Review) {
    let mut prompt = format!(
        "Change: {} of {} in {} ({})\nDiff: {}\nDeterministic review: {} (risk {})\nChecks:\n{}\n",
        subject.action.as_str(),
        subject.key,
        subject.environment.name,
        subject.environment.source,
        change.summary,
        review.verdict.as_str(),
        review.risk.as_str(),
        review
            .checks
            .iter()
            .map(|c| format!("- [{:?}] {}: {}", c.status, c.name, c.evidence))
            .collect::<Vec<_>>()
            .join("\n")
    );
    if prompt.len() > MAX_PROMPT_CHARS {
        prompt = clip(&prompt, MAX_PROMPT_CHARS).into_owned();
    }
    ctx.progress
        .step(None, "asking the client's model for its review");
    let answer = ctx
        .ask
        .sample(MODEL_SYSTEM.into(), prompt, MAX_MODEL_TOKENS)
        .await;
    review.model_review = Some(match answer {
        Ok(text) if !text.trim().is_empty() => {
            let (verdict, risk) = parse_model_answer(&text);
            let mut made_stricter = false;
            if verdict == Some(Verdict::NoGo) && review.verdict == Verdict::Go {
                review.verdict = Verdict::NoGo;
                review.reasons.insert(
                    0,
                    "the client's model's review is NO-GO (see model_review)".into(),
                );
                made_stricter = true;
            }
            if let Some(r) = risk
                && r > review.risk
            {
                review.risk = r;
                made_stricter = true;
            }
            ModelReview {
                status: "ok".into(),
                verdict,
                risk,
                text: Some(clip(&crate::util::redact::mask(text.trim()), 1_200).into_owned()),
                made_stricter,
                note: verdict.is_none().then(|| {
                    "the answer had no VERDICT line; the deterministic review stands".to_string()
                }),
            }
        }
        Ok(_) => ModelReview {
            status: "failed".into(),
            verdict: None,
            risk: None,
            text: None,
            made_stricter: false,
            note: Some(
                "the client's model answered with nothing; the deterministic review stands".into(),
            ),
        },
        Err(e) => ModelReview {
            status: "failed".into(),
            verdict: None,
            risk: None,
            text: None,
            made_stricter: false,
            note: Some(format!(
                "the client did not answer the sampling request ({e}); the deterministic review stands"
            )),
        },
    });
}

/// The `VERDICT:` and `RISK:` lines of a model's answer.
pub fn parse_model_answer(text: &str) -> (Option<Verdict>, Option<Risk>) {
    let mut verdict = None;
    let mut risk = None;
    for line in text.lines() {
        let line = line.trim().trim_matches('*').trim().to_ascii_uppercase();
        if let Some(v) = line.strip_prefix("VERDICT:") {
            let v = v
                .trim()
                .trim_matches(|c: char| !c.is_ascii_alphabetic() && c != '-');
            verdict = match v {
                "GO" => Some(Verdict::Go),
                "NO-GO" | "NOGO" | "NO GO" => Some(Verdict::NoGo),
                _ => verdict,
            };
        } else if let Some(r) = line.strip_prefix("RISK:") {
            risk = match r.trim().trim_matches(|c: char| !c.is_ascii_alphabetic()) {
                "LOW" => Some(Risk::Low),
                "MEDIUM" => Some(Risk::Medium),
                "HIGH" => Some(Risk::High),
                _ => risk,
            };
        }
    }
    (verdict, risk)
}

/// The review as text (for the approval message and logs).
impl RenderText for Review {
    fn render_text(&self) -> String {
        format!(
            "{} (risk {}): {}",
            self.verdict.as_str(),
            self.risk.as_str(),
            self.reasons.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_answer_is_read_from_its_verdict_and_risk_lines() {
        assert_eq!(
            parse_model_answer("VERDICT: NO-GO\nRISK: high\nbecause"),
            (Some(Verdict::NoGo), Some(Risk::High))
        );
        assert_eq!(
            parse_model_answer("**Verdict: GO**\nRisk: Low."),
            (Some(Verdict::Go), Some(Risk::Low))
        );
        assert_eq!(parse_model_answer("looks fine to me"), (None, None));
    }

    #[test]
    fn image_tags_and_repositories() {
        assert_eq!(tag("registry:5000/a/b:1.2"), "1.2");
        assert_eq!(tag("registry:5000/a/b"), "");
        assert_eq!(tag("a/b@sha256:abc"), "sha256:abc");
        assert_eq!(repository("registry:5000/a/b:1.2"), "registry:5000/a/b");
    }
}
