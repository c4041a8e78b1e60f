//! `list_pods` and `describe_pod`: what `kubectl get pods` and `kubectl describe pod` show,
//! as structured data.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ContainerState, Pod, Probe};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, limits};
use super::{RenderText, ToolDef, ToolError, ToolKind, ToolResult, define_tool, is_empty, lookup};
use crate::cluster::{FieldSelector, LabelSelector, ListQuery, view};
use crate::util::quote::short;
use crate::util::timefmt::{age, rfc3339};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPodsParams {
    /// Namespace to list.
    #[schemars(length(max = limits::NAME))]
    pub namespace: String,
    /// A status or phase (CrashLoopBackOff, Pending…), or `unhealthy` (not running and ready).
    #[schemars(length(max = limits::WORD))]
    pub status: Option<String>,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[schemars(length(max = limits::LABEL_SELECTOR))]
    pub label_selector: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PodList {
    pub namespace: String,
    /// Matching pods: unhealthy first, then by name.
    pub pods: Vec<PodSummary>,
    /// Pods in the namespace before filtering.
    pub total_in_namespace: usize,
    /// Set when the namespace has more matching pods than one call reads
    /// (`--max-list-items`): how many were read, and how to narrow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_note: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PodSummary {
    pub name: String,
    /// As `kubectl get pods` shows it: a container reason (CrashLoopBackOff…) or the phase.
    pub status: String,
    pub phase: String,
    /// Ready containers / containers, e.g. "1/1".
    pub ready: String,
    pub restarts: i64,
    pub age: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The Deployment (service) the pod belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_termination_reason: Option<String>,
}

pub fn list_pods_tool() -> ToolDef {
    define_tool(
        "list_pods",
        "List pods",
        "A namespace's pods, unhealthy first: status, readiness, restarts, age, node, service; filter by status or label selector.",
        ToolKind::Read,
        list_pods,
    )
}

pub fn summarise_pod(pod: &Pod, now: Timestamp) -> PodSummary {
    let (ready, total) = view::pod_ready(pod);
    let status = pod.status.as_ref();
    PodSummary {
        name: view::name(&pod.metadata).to_string(),
        status: view::pod_status(pod),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into()),
        ready: format!("{ready}/{total}"),
        restarts: view::pod_restarts(pod),
        age: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| age(t.0, now))
            .unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ip: status.and_then(|s| s.pod_ip.clone()),
        service: view::pod_deployment(pod),
        last_termination_reason: status.and_then(|s| s.container_statuses.as_ref()).and_then(
            |cs| {
                cs.iter()
                    .find_map(|c| c.last_state.as_ref()?.terminated.as_ref()?.reason.clone())
            },
        ),
    }
}

async fn list_pods(ctx: Arc<Context>, params: ListPodsParams) -> ToolResult<PodList> {
    lookup::require_namespace(&ctx, &params.namespace).await?;
    let selector = match params.label_selector.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => {
            LabelSelector::parse(s).map_err(|e| ToolError::InvalidArgument(e.to_string()))?
        }
        _ => LabelSelector::default(),
    };
    let wanted_status = params
        .status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    // Selectors go to the backend: the label selector, and a status that is a pod phase as
    // a field selector (the same pods the filter below keeps, fewer read).
    let mut scope = ListQuery::in_namespace(&params.namespace);
    let mut narrowed = !selector.is_empty();
    if !selector.is_empty() {
        scope = scope.with_labels(selector);
    }
    if let Some(phase) =
        wanted_status.and_then(|w| PHASES.iter().find(|p| p.eq_ignore_ascii_case(w)).copied())
    {
        scope = scope.with_fields(FieldSelector::equals("status.phase", phase));
        narrowed = true;
    }
    let scan = scan_pods(&ctx, scope, Timestamp::now()).await?;
    // The namespace's size: the scan's own count when it read everything unfiltered, else a
    // one-item page's remaining count.
    let total_in_namespace = if !narrowed && scan.complete {
        scan.summaries.len()
    } else if !narrowed && let Some(total) = scan.total {
        total
    } else {
        let one = ctx
            .backend
            .pods(&ListQuery::in_namespace(&params.namespace).with_limit(1))
            .await?;
        one.total().unwrap_or(one.items.len())
    };
    let scan_note = (!scan.complete).then(|| {
        let of = scan
            .total
            .map(|t| format!(" of {t} matching"))
            .unwrap_or_default();
        format!(
            "read the first {} pods{of} (--max-list-items); narrow with label_selector or a status",
            scan.summaries.len()
        )
    });
    let mut summaries = scan.summaries;
    if let Some(wanted) = wanted_status {
        let known: Vec<String> = summaries
            .iter()
            .flat_map(|(_, p)| [p.status.clone(), p.phase.clone()])
            .collect();
        summaries.retain(|(ready, p)| {
            if wanted.eq_ignore_ascii_case("unhealthy") {
                !ready
            } else {
                p.status.eq_ignore_ascii_case(wanted) || p.phase.eq_ignore_ascii_case(wanted)
            }
        });
        if summaries.is_empty()
            && !KNOWN_STATUSES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(wanted))
            && !known.iter().any(|s| s.eq_ignore_ascii_case(wanted))
        {
            return Err(ToolError::InvalidArgument(format!(
                "unknown status {}; use a phase ({}), a container reason such as CrashLoopBackOff or ImagePullBackOff, or `unhealthy`",
                short(wanted),
                "Pending, Running, Succeeded, Failed, Unknown"
            )));
        }
    }
    summaries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    Ok(PodList {
        namespace: params.namespace,
        pods: summaries.into_iter().map(|(_, p)| p).collect(),
        total_in_namespace,
        scan_note,
    })
}

const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];
/// Pods asked for per page while scanning a namespace.
const SCAN_PAGE: usize = 500;

/// Pods read page by page, each page reduced to summaries at once, so a namespace of
/// thousands of pods never sits in memory as whole objects; the scan stops at
/// `--max-list-items`.
struct PodScan {
    /// (ready, summary).
    summaries: Vec<(bool, PodSummary)>,
    /// Every match was read.
    complete: bool,
    /// Matches in all, when the backend said.
    total: Option<usize>,
}

async fn scan_pods(ctx: &Context, scope: ListQuery, now: Timestamp) -> ToolResult<PodScan> {
    let max = ctx.limits.max_list_items;
    let mut query = scope.with_limit(SCAN_PAGE.min(max));
    let mut scan = PodScan {
        summaries: Vec::new(),
        complete: false,
        total: None,
    };
    loop {
        let page = ctx.backend.pods(&query).await?;
        if scan.total.is_none() {
            scan.total = page.total();
        }
        scan.summaries.extend(
            page.items
                .iter()
                .map(|p| (view::pod_is_ready(p), summarise_pod(p, now))),
        );
        match page.continue_token {
            None => {
                scan.complete = true;
                return Ok(scan);
            }
            Some(_) if scan.summaries.len() >= max => return Ok(scan),
            Some(token) => {
                query.limit = Some(SCAN_PAGE.min(max - scan.summaries.len()));
                query.continue_token = Some(token);
            }
        }
    }
}

/// Statuses that are valid filters even when no pod has them right now.
const KNOWN_STATUSES: &[&str] = &[
    "Pending",
    "Running",
    "Succeeded",
    "Failed",
    "Unknown",
    "Terminating",
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ContainerCreating",
    "CreateContainerConfigError",
    "OOMKilled",
    "Error",
    "Completed",
    "Evicted",
    "unhealthy",
];

impl RenderText for PodList {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} pods in namespace {} (of {}):\n",
            self.pods.len(),
            self.namespace,
            self.total_in_namespace
        );
        if let Some(note) = &self.scan_note {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(
            out,
            "{:<48} {:<18} {:<6} {:>8} {:>6}  NODE",
            "NAME", "STATUS", "READY", "RESTARTS", "AGE"
        );
        for p in &self.pods {
            let _ = writeln!(
                out,
                "{:<48} {:<18} {:<6} {:>8} {:>6}  {}",
                p.name,
                p.status,
                p.ready,
                p.restarts,
                p.age,
                p.node.as_deref().unwrap_or("<none>")
            );
        }
        out.trim_end().to_string()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribePodParams {
    /// Namespace of the pod.
    #[schemars(length(max = limits::NAME))]
    pub namespace: String,
    /// Pod name.
    #[schemars(length(max = limits::NAME))]
    pub pod: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PodDescription {
    pub name: String,
    pub namespace: String,
    pub status: String,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub containers: Vec<ContainerDescription>,
    pub conditions: Vec<PodCondition>,
    /// Events about this pod, newest first.
    pub events: Vec<PodEvent>,
}

/// An event of the described pod (the pod and namespace are the description's own).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PodEvent {
    /// Warning or Normal.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub count: i64,
    /// Relative, e.g. "3m ago".
    pub last_seen: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ContainerDescription {
    pub name: String,
    pub image: String,
    pub ready: bool,
    pub restarts: i64,
    pub state: ContainerStateInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerStateInfo>,
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub ports: Vec<i32>,
    /// Environment, `NAME=value`; values from Secrets are shown as references only
    /// (`NAME=<secret db-credentials key password>`), never read.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub env: Vec<String>,
}

/// A container's environment as `kubectl describe` lists it. No Secret is ever read: a
/// `secretKeyRef` or `envFrom.secretRef` names where the value lives.
fn describe_env(container: &Container) -> Vec<String> {
    let mut env: Vec<String> = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|from| {
            let prefix = from.prefix.as_deref().unwrap_or("");
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!(" (prefix {prefix})")
            };
            if let Some(secret) = &from.secret_ref {
                Some(format!("<every key of secret {}>{prefix}", secret.name))
            } else {
                from.config_map_ref
                    .as_ref()
                    .map(|cm| format!("<every key of configmap {}>{prefix}", cm.name))
            }
        })
        .collect();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => {
                if let Some(secret) = &from.secret_key_ref {
                    format!("<secret {} key {}>", secret.name, secret.key)
                } else if let Some(cm) = &from.config_map_key_ref {
                    format!("<configmap {} key {}>", cm.name, cm.key)
                } else if let Some(field) = &from.field_ref {
                    format!("<field {}>", field.field_path)
                } else if let Some(resource) = &from.resource_field_ref {
                    format!("<resource {}>", resource.resource)
                } else {
                    "<unknown source>".into()
                }
            }
            (None, None) => String::new(),
        };
        env.push(format!("{}={value}", var.name));
    }
    env
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ContainerStateInfo {
    /// running, waiting or terminated.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub fn describe_pod_tool() -> ToolDef {
    define_tool(
        "describe_pod",
        "Describe pod",
        "Everything about one pod: containers with image, resources (requests/limits), probes, current and last state with reasons and exit codes (e.g. OOMKilled, exit 137), conditions, and the pod's events.",
        ToolKind::Read,
        describe_pod,
    )
}

fn state_info(state: &ContainerState) -> ContainerStateInfo {
    let ts = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| rfc3339(t.0))
    };
    if let Some(r) = &state.running {
        ContainerStateInfo {
            state: "running".into(),
            reason: None,
            message: None,
            exit_code: None,
            started_at: ts(&r.started_at),
            finished_at: None,
        }
    } else if let Some(w) = &state.waiting {
        ContainerStateInfo {
            state: "waiting".into(),
            reason: w.reason.clone(),
            message: w.message.clone(),
            exit_code: None,
            started_at: None,
            finished_at: None,
        }
    } else if let Some(t) = &state.terminated {
        ContainerStateInfo {
            state: "terminated".into(),
            reason: t.reason.clone(),
            message: t.message.clone(),
            exit_code: Some(t.exit_code),
            started_at: ts(&t.started_at),
            finished_at: ts(&t.finished_at),
        }
    } else {
        ContainerStateInfo {
            state: "unknown".into(),
            reason: None,
            message: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
        }
    }
}

fn describe_probe(probe: &Probe) -> String {
    let target = if let Some(h) = &probe.http_get {
        format!(
            "http-get {}:{}",
            h.path.as_deref().unwrap_or("/"),
            port_text(&h.port)
        )
    } else if let Some(t) = &probe.tcp_socket {
        format!("tcp-socket :{}", port_text(&t.port))
    } else if let Some(e) = &probe.exec {
        format!("exec {}", e.command.clone().unwrap_or_default().join(" "))
    } else if probe.grpc.is_some() {
        "grpc".into()
    } else {
        "unspecified".into()
    };
    format!(
        "{target} delay={}s timeout={}s period={}s #failure={}",
        probe.initial_delay_seconds.unwrap_or(0),
        probe.timeout_seconds.unwrap_or(1),
        probe.period_seconds.unwrap_or(10),
        probe.failure_threshold.unwrap_or(3)
    )
}

fn port_text(port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

fn quantities(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, String> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

fn describe_container(container: &Container, pod: &Pod) -> ContainerDescription {
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container.name));
    let resources = container.resources.as_ref();
    ContainerDescription {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        ready: status.is_some_and(|s| s.ready),
        restarts: status.map_or(0, |s| i64::from(s.restart_count)),
        state: status
            .and_then(|s| s.state.as_ref())
            .map(state_info)
            .unwrap_or_else(|| ContainerStateInfo {
                state: "waiting".into(),
                reason: Some("NotCreated".into()),
                message: Some(
                    "the pod has not been scheduled or its containers not created yet".into(),
                ),
                exit_code: None,
                started_at: None,
                finished_at: None,
            }),
        last_state: status
            .and_then(|s| s.last_state.as_ref())
            .filter(|s| s.running.is_some() || s.waiting.is_some() || s.terminated.is_some())
            .map(state_info),
        requests: quantities(resources.and_then(|r| r.requests.as_ref())),
        limits: quantities(resources.and_then(|r| r.limits.as_ref())),
        liveness_probe: container.liveness_probe.as_ref().map(describe_probe),
        readiness_probe: container.readiness_probe.as_ref().map(describe_probe),
        ports: container
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect(),
        env: describe_env(container),
    }
}

async fn describe_pod(ctx: Arc<Context>, params: DescribePodParams) -> ToolResult<PodDescription> {
    let events_of_pod = ListQuery::in_namespace(&params.namespace).with_fields(
        FieldSelector::equals("involvedObject.kind", "Pod").and("involvedObject.name", &params.pod),
    );
    let (pod, events) = tokio::try_join!(
        lookup::find_pod(&ctx, &params.namespace, &params.pod),
        async {
            ctx.backend
                .events(&events_of_pod)
                .await
                .map(|l| l.items)
                .map_err(ToolError::from)
        }
    )?;
    let now = Timestamp::now();
    let mut pod_events: Vec<_> = events
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Pod")
                && e.involved_object.name.as_deref() == Some(params.pod.as_str())
        })
        .collect();
    pod_events.sort_by_key(|e| std::cmp::Reverse(view::event_last_seen(e)));
    let status = pod.status.as_ref();
    Ok(PodDescription {
        name: params.pod.clone(),
        namespace: params.namespace.clone(),
        status: view::pod_status(&pod),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into()),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ip: status.and_then(|s| s.pod_ip.clone()),
        start_time: status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| rfc3339(t.0)),
        service: view::pod_deployment(&pod),
        qos_class: status.and_then(|s| s.qos_class.clone()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        containers: pod
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| describe_container(c, &pod))
                    .collect()
            })
            .unwrap_or_default(),
        conditions: status
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| PodCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        events: pod_events
            .into_iter()
            .map(|e| {
                let summary = crate::tools::events::summarise_event(e, now);
                PodEvent {
                    type_: summary.type_,
                    reason: summary.reason,
                    count: summary.count,
                    last_seen: summary.last_seen,
                    message: summary.message,
                }
            })
            .collect(),
    })
}

impl RenderText for PodDescription {
    fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Pod {}/{} — {} (phase {})",
            self.namespace, self.name, self.status, self.phase
        );
        let _ = writeln!(
            out,
            "node {}  ip {}  started {}  service {}  qos {}",
            self.node.as_deref().unwrap_or("<none>"),
            self.ip.as_deref().unwrap_or("<none>"),
            self.start_time.as_deref().unwrap_or("-"),
            self.service.as_deref().unwrap_or("-"),
            self.qos_class.as_deref().unwrap_or("-")
        );
        for c in &self.containers {
            let _ = writeln!(
                out,
                "container {} ({}) ready={} restarts={}",
                c.name, c.image, c.ready, c.restarts
            );
            let _ = writeln!(out, "  state: {}", render_state(&c.state));
            if let Some(last) = &c.last_state {
                let _ = writeln!(out, "  last state: {}", render_state(last));
            }
            let _ = writeln!(
                out,
                "  requests: {}  limits: {}",
                render_map(&c.requests),
                render_map(&c.limits)
            );
            if let Some(p) = &c.liveness_probe {
                let _ = writeln!(out, "  liveness: {p}");
            }
            if let Some(p) = &c.readiness_probe {
                let _ = writeln!(out, "  readiness: {p}");
            }
            if !c.env.is_empty() {
                let _ = writeln!(out, "  env: {}", c.env.join(", "));
            }
        }
        let conds: Vec<String> = self
            .conditions
            .iter()
            .map(|c| match &c.reason {
                Some(r) => format!("{}={} ({r})", c.type_, c.status),
                None => format!("{}={}", c.type_, c.status),
            })
            .collect();
        let _ = writeln!(out, "conditions: {}", conds.join(", "));
        if self.events.is_empty() {
            let _ = writeln!(out, "events: none");
        } else {
            let _ = writeln!(out, "events (newest first):");
            for e in &self.events {
                let _ = writeln!(
                    out,
                    "  {} {} ×{} {}: {}",
                    e.type_, e.reason, e.count, e.last_seen, e.message
                );
            }
        }
        out.trim_end().to_string()
    }
}

fn render_state(s: &ContainerStateInfo) -> String {
    let mut text = s.state.clone();
    if let Some(r) = &s.reason {
        let _ = write!(text, " {r}");
    }
    if let Some(c) = s.exit_code {
        let _ = write!(text, " (exit {c})");
    }
    if let Some(t) = &s.started_at {
        let _ = write!(text, " started {t}");
    }
    if let Some(t) = &s.finished_at {
        let _ = write!(text, " finished {t}");
    }
    if let Some(m) = &s.message {
        let _ = write!(text, " — {m}");
    }
    text
}

fn render_map(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
