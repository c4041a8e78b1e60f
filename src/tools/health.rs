//! `check_service_health`: the on-call first look — status, golden signals, pods, restarts,
//! firing alerts and warning events per service, with a one-line verdict.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, limits};
use super::{RenderText, ToolDef, ToolKind, ToolResult, define_tool, is_empty, lookup};
use crate::cluster::{HealthStatus, ListQuery, ServiceMetrics, view};
use crate::util::timefmt::age;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckServiceHealthParams {
    /// Service (Deployment) name, or `namespace/name`. Omit to check every service.
    #[schemars(length(max = limits::NAME))]
    pub service: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct HealthReport {
    /// Services, worst first.
    pub services: Vec<ServiceHealth>,
    pub summary: HealthSummary,
    /// Where error rates, latencies and alerts come from; "unavailable: …" when that source
    /// failed (the rest of the report stands), "none …" when there is no source.
    pub metrics: String,
}

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct HealthSummary {
    pub healthy: usize,
    pub degraded: usize,
    pub down: usize,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHealth {
    pub name: String,
    pub namespace: String,
    pub status: HealthStatus,
    /// One line: what is wrong and the most likely reason.
    pub verdict: String,
    pub pods_ready: i32,
    pub pods_desired: i32,
    /// Container restarts summed over the service's pods.
    pub restarts: i64,
    /// Fraction of failing requests (0–1), when a metrics source is available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub firing_alerts: Vec<FiringAlert>,
    /// Pods that are not running and ready, with the reason.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub pod_problems: Vec<PodProblem>,
    /// Warning events of the last hour for the service's objects, grouped by reason.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub recent_warning_events: Vec<WarningEvents>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_deploy: Option<LastDeploy>,
    /// The Deployment's rollout when it is not complete: in progress (updated and available
    /// of desired) or stuck (its Progressing condition's reason and message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct FiringAlert {
    pub name: String,
    pub severity: String,
    pub since: String,
    pub summary: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PodProblem {
    pub pod: String,
    pub status: String,
    pub ready: String,
    pub restarts: i64,
    /// Why the last container instance ended (e.g. OOMKilled), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_termination_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct WarningEvents {
    pub reason: String,
    pub count: i64,
    pub last_seen: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct LastDeploy {
    pub revision: i64,
    pub age: String,
    pub images: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
}

pub fn tool() -> ToolDef {
    define_tool(
        "check_service_health",
        "Check service health",
        "Health of one service or of all: status (healthy/degraded/down), error rate, p50/p99 latency, RPS, pods ready/desired, restarts, firing alerts, recent warning events, the last deploy and a one-line verdict. Start here when something is wrong.",
        ToolKind::Read,
        check_service_health,
    )
}

async fn check_service_health(
    ctx: Arc<Context>,
    params: CheckServiceHealthParams,
) -> ToolResult<HealthReport> {
    let Assessment { services, metrics } = assess_services(&ctx, params.service.as_deref()).await?;
    let mut summary = HealthSummary::default();
    for s in &services {
        match s.status {
            HealthStatus::Healthy => summary.healthy += 1,
            HealthStatus::Degraded => summary.degraded += 1,
            HealthStatus::Down => summary.down += 1,
        }
    }
    Ok(HealthReport {
        services,
        summary,
        metrics,
    })
}

/// Services assessed, and where their metrics came from.
pub struct Assessment {
    /// Worst first.
    pub services: Vec<ServiceHealth>,
    /// The metrics source, or why it failed (see [`HealthReport::metrics`]).
    pub metrics: String,
}

/// Every service's health (or one service's), worst first. This is the one place a service's
/// status is decided; `system://health` counts these too. A failing metrics source does not
/// fail the assessment: its signals read unknown and `metrics` says why.
pub async fn assess_services(ctx: &Context, service: Option<&str>) -> ToolResult<Assessment> {
    let backend = &ctx.backend;
    // One service: only its own pods and ReplicaSets, its namespace's events and metrics.
    let (deployments, scope) = lookup::service_scope(ctx, service).await?;
    let namespace = scope.namespace.clone();
    let events_scope = ListQuery::namespace(namespace.as_deref());
    // Independent reads, concurrently.
    let (pods, events, metrics, replica_sets) = tokio::join!(
        backend.pods(&scope),
        backend.events(&events_scope),
        backend.service_metrics(namespace.as_deref()),
        backend.replica_sets(&scope),
    );
    let (pods, events, replica_sets) = (pods?, events?, replica_sets?);
    let (metrics, source) = match metrics {
        Ok(metrics) => (metrics, backend.info().metrics),
        Err(e) => (Vec::new(), format!("unavailable: {e}")),
    };
    let now = Timestamp::now();
    let mut services: Vec<ServiceHealth> = deployments
        .iter()
        .map(|d| {
            assess(
                d,
                &pods.items,
                &events.items,
                &metrics,
                &replica_sets.items,
                now,
            )
        })
        .collect();
    services.sort_by(|a, b| {
        b.status
            .cmp(&a.status)
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Assessment {
        services,
        metrics: source,
    })
}

/// Whether an event concerns the deployment (itself, one of its ReplicaSets or pods).
pub fn event_concerns(event: &Event, deployment: &str, pods: &[&Pod]) -> bool {
    let Some(name) = event.involved_object.name.as_deref() else {
        return false;
    };
    match event.involved_object.kind.as_deref() {
        Some("Deployment") => name == deployment,
        Some("ReplicaSet") => name
            .strip_prefix(deployment)
            .is_some_and(|rest| rest.starts_with('-') && !rest[1..].contains('-')),
        Some("Pod") => pods.iter().any(|p| view::name(&p.metadata) == name),
        _ => false,
    }
}

/// How long a pod may take to terminate before it counts as stuck (a problem).
const TERMINATING_GRACE: SignedDuration = SignedDuration::from_mins(5);

fn assess(
    deployment: &Deployment,
    all_pods: &[Pod],
    events: &[Event],
    metrics: &[ServiceMetrics],
    replica_sets: &[k8s_openapi::api::apps::v1::ReplicaSet],
    now: Timestamp,
) -> ServiceHealth {
    let name = view::name(&deployment.metadata).to_string();
    let namespace = view::namespace(&deployment.metadata).to_string();
    // A pod on its way out (an old revision's, scaled down by a rollout) is neither capacity
    // nor a problem, and what it went through is history — unless it has been stuck
    // terminating for a while, which is a problem of its own.
    let stuck_after = now.checked_sub(TERMINATING_GRACE).unwrap_or(Timestamp::MIN);
    let pods: Vec<&Pod> = all_pods
        .iter()
        .filter(|p| {
            view::namespace(&p.metadata) == namespace
                && view::pod_deployment(p).as_deref() == Some(&name)
                && p.metadata
                    .deletion_timestamp
                    .as_ref()
                    .is_none_or(|t| t.0 < stuck_after)
        })
        .collect();
    let desired = view::desired_replicas(deployment);
    let ready = pods.iter().filter(|p| view::pod_is_ready(p)).count() as i32;
    let restarts: i64 = pods.iter().map(|p| view::pod_restarts(p)).sum();
    let pod_problems: Vec<PodProblem> = pods
        .iter()
        .filter(|p| !view::pod_is_ready(p))
        .map(|p| {
            let (r, t) = view::pod_ready(p);
            let last = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| {
                    cs.iter()
                        .find_map(|c| c.last_state.as_ref()?.terminated.as_ref())
                });
            PodProblem {
                pod: view::name(&p.metadata).to_string(),
                status: view::pod_status(p),
                ready: format!("{r}/{t}"),
                restarts: view::pod_restarts(p),
                last_termination_reason: last.and_then(|t| t.reason.clone()),
                last_exit_code: last.map(|t| t.exit_code),
            }
        })
        .collect();

    let hour_ago = now
        .checked_sub(SignedDuration::from_hours(1))
        .unwrap_or(now);
    let mut grouped: BTreeMap<String, WarningEvents> = BTreeMap::new();
    let mut latest: BTreeMap<String, Timestamp> = BTreeMap::new();
    for event in events.iter().filter(|e| {
        view::event_is_warning(e)
            && view::namespace(&e.metadata) == namespace
            && view::event_last_seen(e).is_some_and(|t| t >= hour_ago)
            && event_concerns(e, &name, &pods)
    }) {
        let reason = event.reason.clone().unwrap_or_else(|| "Unknown".into());
        let seen = view::event_last_seen(event).unwrap_or(now);
        let entry = grouped
            .entry(reason.clone())
            .or_insert_with(|| WarningEvents {
                reason: reason.clone(),
                count: 0,
                last_seen: String::new(),
                message: String::new(),
            });
        entry.count += i64::from(event.count.unwrap_or(1));
        if latest.get(&reason).is_none_or(|t| seen > *t) {
            latest.insert(reason.clone(), seen);
            entry.last_seen = format!("{} ago", age(seen, now));
            entry.message =
                crate::tools::events::without_uids(event.message.as_deref().unwrap_or_default());
        }
    }
    let mut recent_warning_events: Vec<WarningEvents> = grouped.into_values().collect();
    recent_warning_events.sort_by_key(|e| std::cmp::Reverse(e.count));
    recent_warning_events.truncate(5);

    let service_metrics = metrics
        .iter()
        .find(|m| m.service == name && m.namespace == namespace);
    let firing_alerts: Vec<FiringAlert> = service_metrics
        .map(|m| {
            m.alerts
                .iter()
                .map(|a| FiringAlert {
                    name: a.name.clone(),
                    severity: a.severity.clone(),
                    since: format!("{} ago", age(a.since, now)),
                    summary: a.summary.clone(),
                })
                .collect()
        })
        .unwrap_or_default();

    let current_rs = view::current_replica_set(deployment, replica_sets);
    let last_deploy = current_rs.map(|rs| LastDeploy {
        revision: view::revision(&rs.metadata).unwrap_or(0),
        age: rs
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| format!("{} ago", age(t.0, now)))
            .unwrap_or_default(),
        images: view::replica_set_images(rs),
        change_cause: view::change_cause(&rs.metadata).map(str::to_string),
        deployed_by: view::deployed_by(&rs.metadata).map(str::to_string),
    });

    let rollout = rollout_state(deployment, desired);
    let stuck = rollout.as_deref().is_some_and(|r| r.starts_with("stuck"));
    let status = service_status(
        desired,
        ready,
        !pod_problems.is_empty() || stuck,
        !recent_warning_events.is_empty(),
        service_metrics.map(ServiceMetrics::status),
    );
    let recent_deploy = current_rs
        .and_then(|rs| rs.metadata.creation_timestamp.as_ref())
        .is_some_and(|t| {
            t.0 >= now
                .checked_sub(SignedDuration::from_hours(2))
                .unwrap_or(now)
        });

    let mut health = ServiceHealth {
        name,
        namespace,
        status,
        verdict: String::new(),
        pods_ready: ready,
        pods_desired: desired,
        restarts,
        error_rate: service_metrics.and_then(|m| m.error_rate),
        latency_p50_ms: service_metrics.and_then(|m| m.p50_ms),
        latency_p99_ms: service_metrics.and_then(|m| m.p99_ms),
        rps: service_metrics.and_then(|m| m.rps),
        firing_alerts,
        pod_problems,
        recent_warning_events,
        last_deploy,
        rollout,
    };
    health.verdict = verdict(&health, recent_deploy);
    health
}

/// A rollout that has not completed, from the Deployment's status as the controller reports
/// it: stuck when its Progressing condition is False (ProgressDeadlineExceeded), else in
/// progress while fewer replicas are updated or available than desired.
fn rollout_state(deployment: &Deployment, desired: i32) -> Option<String> {
    let status = deployment.status.as_ref()?;
    if let Some(stuck) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing" && c.status == "False")
    {
        return Some(format!(
            "stuck: {}{}",
            stuck.reason.as_deref().unwrap_or("not progressing"),
            stuck
                .message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    (updated < desired || available < desired).then(|| {
        format!("in progress: {updated}/{desired} updated, {available}/{desired} available")
    })
}

/// A service's status, from its pods and rollout and, where a metrics source reports one, the
/// metrics' own status (the worse of the two): down when none of the desired pods is ready;
/// degraded when fewer are ready than desired, a pod has a problem or the rollout is stuck
/// (`problems`), or warning events concern it.
pub fn service_status(
    desired: i32,
    ready: i32,
    problems: bool,
    warning_events: bool,
    metrics: Option<HealthStatus>,
) -> HealthStatus {
    let from_pods = if desired > 0 && ready == 0 {
        HealthStatus::Down
    } else if ready < desired || problems || warning_events {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    metrics.map_or(from_pods, |m| m.max(from_pods))
}

/// One line that names the problem and its most likely cause, from the evidence gathered.
fn verdict(h: &ServiceHealth, recent_deploy: bool) -> String {
    if h.status == HealthStatus::Healthy {
        return format!(
            "healthy: {}/{} pods ready, no firing alerts",
            h.pods_ready, h.pods_desired
        );
    }
    let mut parts: Vec<String> = Vec::new();
    parts.push(format!("{}/{} pods ready", h.pods_ready, h.pods_desired));
    let mut reasons: Vec<String> = Vec::new();
    for p in &h.pod_problems {
        let mut r = if p.status == "Running" {
            "Running but not ready".to_string()
        } else {
            p.status.clone()
        };
        if let Some(t) = &p.last_termination_reason
            && t != &p.status
        {
            r = format!("{t} → {r}");
        }
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    if !reasons.is_empty() {
        parts.push(format!("pods {}", reasons.join(", ")));
    }
    if h.restarts > 0 && !h.pod_problems.is_empty() {
        parts.push(format!("{} restarts", h.restarts));
    }
    if let Some(e) = h.recent_warning_events.first()
        && h.pod_problems.is_empty()
    {
        parts.push(format!("{} ×{}", e.reason, e.count));
    }
    if let Some(rate) = h.error_rate
        && rate >= 0.01
    {
        parts.push(format!("{:.1}% errors", rate * 100.0));
    }
    if let Some(p99) = h.latency_p99_ms
        && p99 >= 1000.0
    {
        parts.push(format!("p99 {:.0} ms", p99));
    }
    if let Some(alert) = h
        .firing_alerts
        .iter()
        .find(|a| a.severity == "critical")
        .or(h.firing_alerts.first())
    {
        parts.push(format!("alert {}", alert.name));
    }
    if let Some(rollout) = h.rollout.as_deref().filter(|r| r.starts_with("stuck")) {
        // The reason only; the `rollout` field has the controller's message.
        parts.push(format!(
            "rollout {}",
            rollout.split(" (").next().unwrap_or(rollout)
        ));
    }
    if recent_deploy && let Some(d) = &h.last_deploy {
        parts.push(format!(
            "started after deploy rev {} {} ({})",
            d.revision,
            d.age,
            d.change_cause.as_deref().unwrap_or("no change-cause")
        ));
    }
    format!("{}: {}", h.status.as_str(), parts.join("; "))
}

impl RenderText for HealthReport {
    fn render_text(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(
            out,
            "Service health: {} down, {} degraded, {} healthy ({} services)",
            s.down,
            s.degraded,
            s.healthy,
            self.services.len()
        );
        let _ = writeln!(out, "Metrics: {}", self.metrics);
        for h in &self.services {
            let marker = match h.status {
                HealthStatus::Down => "[DOWN]    ",
                HealthStatus::Degraded => "[DEGRADED]",
                HealthStatus::Healthy => "[OK]      ",
            };
            let mut signals = format!(
                "pods {}/{}, restarts {}",
                h.pods_ready, h.pods_desired, h.restarts
            );
            if let Some(e) = h.error_rate {
                let _ = write!(signals, ", errors {:.1}%", e * 100.0);
            }
            if let Some(p50) = h.latency_p50_ms {
                let _ = write!(signals, ", p50 {p50:.0} ms");
            }
            if let Some(p99) = h.latency_p99_ms {
                let _ = write!(signals, ", p99 {p99:.0} ms");
            }
            if let Some(rps) = h.rps {
                let _ = write!(signals, ", {rps:.0} rps");
            }
            let _ = writeln!(out, "{marker} {}/{} — {signals}", h.namespace, h.name);
            if h.status != HealthStatus::Healthy {
                let _ = writeln!(out, "    verdict: {}", h.verdict);
                if let Some(rollout) = &h.rollout {
                    let _ = writeln!(out, "    rollout: {rollout}");
                }
                for a in &h.firing_alerts {
                    let _ = writeln!(
                        out,
                        "    alert {} ({}, since {}): {}",
                        a.name, a.severity, a.since, a.summary
                    );
                }
                for p in &h.pod_problems {
                    let last = match (&p.last_termination_reason, p.last_exit_code) {
                        (Some(r), Some(c)) => format!(", last terminated {r} (exit {c})"),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "    pod {} {} ready {} restarts {}{last}",
                        p.pod, p.status, p.ready, p.restarts
                    );
                }
                for e in &h.recent_warning_events {
                    let _ = writeln!(
                        out,
                        "    warning {} ×{} ({}): {}",
                        e.reason, e.count, e.last_seen, e.message
                    );
                }
                if let Some(d) = &h.last_deploy {
                    let _ = writeln!(
                        out,
                        "    last deploy: rev {} {} by {} — {}",
                        d.revision,
                        d.age,
                        d.deployed_by.as_deref().unwrap_or("unknown"),
                        d.change_cause.as_deref().unwrap_or("no change-cause")
                    );
                }
            }
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: HealthStatus) -> ServiceHealth {
        ServiceHealth {
            name: "payment-gateway".into(),
            namespace: "payments".into(),
            status,
            verdict: String::new(),
            pods_ready: 0,
            pods_desired: 3,
            restarts: 22,
            error_rate: Some(0.97),
            latency_p50_ms: Some(30.0),
            latency_p99_ms: Some(2500.0),
            rps: Some(10.0),
            firing_alerts: vec![
                FiringAlert {
                    name: "KubePodCrashLooping".into(),
                    severity: "warning".into(),
                    since: "30m ago".into(),
                    summary: String::new(),
                },
                FiringAlert {
                    name: "PaymentGatewayDown".into(),
                    severity: "critical".into(),
                    since: "30m ago".into(),
                    summary: String::new(),
                },
            ],
            pod_problems: vec![PodProblem {
                pod: "payment-gateway-abc".into(),
                status: "CrashLoopBackOff".into(),
                ready: "0/1".into(),
                restarts: 8,
                last_termination_reason: Some("OOMKilled".into()),
                last_exit_code: Some(137),
            }],
            recent_warning_events: Vec::new(),
            last_deploy: Some(LastDeploy {
                revision: 7,
                age: "38m ago".into(),
                images: vec!["payment-gateway:2.14.0".into()],
                change_cause: Some("Release 2.14.0".into()),
                deployed_by: None,
            }),
            rollout: None,
        }
    }

    #[test]
    fn the_verdict_names_the_failure_its_signals_and_the_deploy() {
        assert_eq!(
            verdict(&service(HealthStatus::Down), true),
            "down: 0/3 pods ready; pods OOMKilled → CrashLoopBackOff; 22 restarts; 97.0% errors; p99 2500 ms; alert PaymentGatewayDown; started after deploy rev 7 38m ago (Release 2.14.0)"
        );
        // Without a recent deploy, none is blamed.
        assert!(!verdict(&service(HealthStatus::Down), false).contains("deploy"));
        let mut healthy = service(HealthStatus::Healthy);
        healthy.pods_ready = 3;
        assert_eq!(
            verdict(&healthy, false),
            "healthy: 3/3 pods ready, no firing alerts"
        );
    }

    #[test]
    fn service_status_is_the_worse_of_pods_and_metrics() {
        assert_eq!(service_status(3, 0, true, false, None), HealthStatus::Down);
        assert_eq!(
            service_status(3, 2, false, false, None),
            HealthStatus::Degraded
        );
        assert_eq!(
            service_status(3, 3, false, true, None),
            HealthStatus::Degraded
        );
        assert_eq!(
            service_status(3, 3, false, false, None),
            HealthStatus::Healthy
        );
        assert_eq!(
            service_status(3, 3, false, false, Some(HealthStatus::Down)),
            HealthStatus::Down
        );
        assert_eq!(
            service_status(3, 0, false, false, Some(HealthStatus::Healthy)),
            HealthStatus::Down
        );
        // Scaled to zero on purpose is not down.
        assert_eq!(
            service_status(0, 0, false, false, None),
            HealthStatus::Healthy
        );
    }
}
