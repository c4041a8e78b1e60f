//! `troubleshoot_issue`: one call that investigates a reported problem on the server. It finds
//! the services concerned (named in the arguments, or mentioned in the description, else every
//! unhealthy one), reads what an on-call engineer would read — health, unhealthy pods and their
//! last state, the crashed containers' error lines, warning events, rollouts, error groups and
//! firing alerts — correlates them in time (the problem started N minutes after rollout rev R)
//! and between services (a service whose errors name another unhealthy service is its victim),
//! and returns ranked root-cause hypotheses with their evidence and the call that shows more, a
//! severity, immediate actions from the runbook that fits, and what to check next.
//!
//! Deterministic: the same cluster state gives the same answer. The rules read meanings
//! (container reasons, exit codes, scheduling messages, what error lines say and which services
//! they name), never particular service names. Everything is read through the [`Context`], with
//! [`health::assess_services`] as the one definition of a service's status.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{Arc, LazyLock};

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Event, Pod};
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::deploys::{DeployRecord, deploy_records};
use super::health::{self, ServiceHealth};
use super::logs::{self, ErrorGroup};
use super::{
    Context, RenderText, ToolDef, ToolError, ToolKind, ToolResult, define_tool, is_empty, limits,
    lookup,
};
use crate::cluster::{HealthStatus, ListQuery, LogQuery, view};
use crate::runbooks::index::{Filter, SectionRole, section_role};
use crate::util::logs::{Level, normalise_message};
use crate::util::quote::thousands;
use crate::util::timefmt::{age, parse_duration};

/// Services matched in a description, or taken from a scan, that are investigated first.
const MAX_FOCUS: usize = 6;
/// Services read in all (the focus, the unhealthy services their errors name, their callers).
const MAX_SERVICES: usize = 10;
/// Rounds of following error lines from one service to the next.
const MAX_ROUNDS: usize = 3;
/// Crashed pods whose previous container's log is read, per service.
const CRASHED_PODS_READ: usize = 2;
/// Newest lines of a previous container's log that are read.
const PREVIOUS_TAIL: usize = 300;
/// The window of the error groups.
const ERRORS_SINCE: &str = "1h";
const MAX_HYPOTHESES: usize = 4;
const EVIDENCE_FIRST: usize = 6;
const EVIDENCE_OTHERS: usize = 3;
const MAX_ACTIONS: usize = 4;
const MAX_CHECKS: usize = 3;
/// Longest text of an action taken from a runbook (its command comes on top), in characters.
const ACTION_CHARS: usize = 200;
/// Longest evidence line, in characters.
const LINE_CHARS: usize = 170;
/// Least relevance (0–1) for a runbook to be attached.
const RUNBOOK_THRESHOLD: f32 = 0.35;
/// A problem that begins this long after a rollout is put down to it.
const ROLLOUT_WINDOW: SignedDuration = SignedDuration::from_hours(2);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TroubleshootIssueParams {
    /// The problem as reported; names in it are matched to services.
    #[schemars(length(max = limits::TEXT))]
    pub description: String,
    /// Service name or `namespace/name`, if known.
    #[schemars(length(max = limits::NAME))]
    pub service: Option<String>,
    /// Only this namespace's services.
    #[schemars(length(max = limits::NAME))]
    pub namespace: Option<String>,
}

/// How bad it is: from service status, alert severities and how many services it reaches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Troubleshooting {
    /// Which services were investigated and why (named, matched in the description, followed
    /// from error lines, or a scan of the cluster).
    pub scope: String,
    pub severity: Severity,
    /// The facts the severity rests on.
    pub severity_reason: String,
    /// Root-cause hypotheses, most likely first.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub hypotheses: Vec<Hypothesis>,
    /// What to do now about the first hypothesis, in order.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub immediate_actions: Vec<String>,
    /// The runbook the actions come from; read it whole at its URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<RunbookRef>,
    /// Calls that confirm or rule out the hypotheses.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub check_next: Vec<ToolCall>,
    /// What limited the investigation.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Hypothesis {
    /// The cause in a few words, with the deciding facts.
    pub title: String,
    /// `namespace/name` of the service at fault.
    pub service: String,
    /// 0–1: how directly the evidence shows this cause.
    pub confidence: f64,
    /// Facts that support it, each quoting what a tool returns.
    pub evidence: Vec<String>,
    /// The tool call that shows more.
    pub next_call: ToolCall,
    /// The runbook that fits (`runbook://` URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    pub tool: String,
    pub arguments: Map<String, Value>,
    /// What it shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RunbookRef {
    pub title: String,
    pub uri: String,
    /// The section the actions come from.
    pub section: String,
}

pub fn tool() -> ToolDef {
    let mut tool = define_tool(
        "troubleshoot_issue",
        "Troubleshoot an issue",
        "First call for a reported problem: finds the services concerned (else scans the cluster), reads health, pods, crash logs, events, rollouts, errors and alerts, and returns ranked root-cause hypotheses with evidence and a next call, severity, runbook actions and checks.",
        ToolKind::Read,
        troubleshoot_issue,
    );
    // It attaches the one runbook that fits its first hypothesis itself.
    tool.attach_runbooks = false;
    tool.synthesis_prompt = Some(synthesis_prompt);
    tool
}

/// The evidence, for the client's model to synthesise from (when the client offers
/// sampling): the rendered investigation, which holds every fact the structured one does.
fn synthesis_prompt(result: &Value) -> Option<String> {
    let report: Troubleshooting = serde_json::from_value(result.clone()).ok()?;
    if report.hypotheses.is_empty() {
        return None;
    }
    Some(format!(
        "Investigation of a reported problem (gathered by the sre-mcp server from the cluster):\n\n{}",
        report.render_text()
    ))
}

impl ToolCall {
    fn new(tool: &str, arguments: Value, why: &str) -> ToolCall {
        ToolCall {
            tool: tool.to_string(),
            arguments: match arguments {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            why: (!why.is_empty()).then(|| why.to_string()),
        }
    }

    /// `tool(a="x", b=true)`, as the prompts write calls.
    fn render(&self) -> String {
        let arguments: Vec<String> = self
            .arguments
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}({})", self.tool, arguments.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// The investigation

/// The role a service plays in the investigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Named, matched in the description, or unhealthy in a scan.
    Focus,
    /// Named by the error lines of a service investigated.
    Dependency,
    /// Its error lines name a service investigated.
    Caller,
}

/// Everything read about one service.
struct Facts {
    key: String,
    name: String,
    namespace: String,
    deployment: Deployment,
    health: ServiceHealth,
    pods: Vec<Pod>,
    replica_sets: Vec<ReplicaSet>,
    crash_lines: Vec<CrashLine>,
    role: Role,
}

impl Facts {
    fn unhealthy(&self) -> bool {
        self.health.status != HealthStatus::Healthy
    }
}

/// An error line of a crashed container's previous instance.
struct CrashLine {
    pod: String,
    level: Level,
    message: String,
    /// The first stack line that names an exception, when there is one.
    detail: Option<String>,
    at: Timestamp,
}

/// What is read once per namespace.
#[derive(Default)]
struct NamespaceFacts {
    events: Vec<Event>,
    groups: Vec<ErrorGroup>,
}

#[derive(Default)]
struct Gathered {
    services: BTreeMap<String, Facts>,
    namespaces: BTreeMap<String, NamespaceFacts>,
    notes: Vec<String>,
}

pub async fn troubleshoot_issue(
    ctx: Arc<Context>,
    params: TroubleshootIssueParams,
) -> ToolResult<Troubleshooting> {
    let description = params.description.trim().to_string();
    if description.is_empty() && params.service.is_none() {
        return Err(ToolError::InvalidArgument(
            "description is empty; say what is wrong, e.g. \"checkout returns 504s since 10:40\""
                .into(),
        ));
    }
    let chars = description.chars().count();
    if chars > limits::TEXT {
        return Err(ToolError::InvalidArgument(format!(
            "description is {} characters; the limit is {}",
            thousands(chars),
            thousands(limits::TEXT)
        )));
    }
    let service = params
        .service
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let namespace = params
        .namespace
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let now = Timestamp::now();
    let resolution = resolve(&ctx, &description, service, namespace).await?;
    ctx.progress
        .step(None, format!("scope: {}", resolution.scope));
    let follow = resolution.mode != Mode::Scan;
    let mut gathered = gather(&ctx, &resolution.all, resolution.focus, follow).await?;
    let mut scope = resolution.scope;
    let mut analysis = analyse(&gathered, &resolution.all, &description, now);
    // The services named or matched are healthy: look at the rest of the cluster.
    if analysis.findings.is_empty() && follow && service.is_none() {
        let healthy: Vec<String> = gathered
            .services
            .values()
            .filter(|f| f.role == Role::Focus)
            .map(|f| f.key.clone())
            .collect();
        let scan = scan(&ctx, namespace).await?;
        ctx.progress.step(
            None,
            format!(
                "{} healthy; scanning {}",
                list_or_none(&healthy),
                scan.scope
            ),
        );
        if !scan.focus.is_empty() {
            let notes = std::mem::take(&mut gathered.notes);
            gathered = gather(&ctx, &scan.all, scan.focus, false).await?;
            gathered.notes.splice(0..0, notes);
            scope = format!("{} healthy; scan: {}", list_or_none(&healthy), scan.scope);
            analysis = analyse(&gathered, &scan.all, &description, now);
        }
    }
    ctx.progress.last_step(format!(
        "{} finding(s) ranked; attaching runbooks",
        analysis.findings.len()
    ));
    Ok(answer(&ctx, gathered, analysis, scope).await)
}

// ---------------------------------------------------------------------------------------------
// Which services

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Named,
    Described,
    Scan,
}

struct Resolution {
    mode: Mode,
    scope: String,
    /// The services to investigate first, with their health when it is known already.
    focus: Vec<(Deployment, Option<ServiceHealth>)>,
    /// Every deployment (to recognise service names in error lines).
    all: Vec<Deployment>,
}

async fn resolve(
    ctx: &Context,
    description: &str,
    service: Option<&str>,
    namespace: Option<&str>,
) -> ToolResult<Resolution> {
    if let Some(service) = service {
        let wanted = match namespace {
            Some(ns) if !service.contains('/') => format!("{ns}/{service}"),
            _ => service.to_string(),
        };
        let every = ListQuery::all();
        let (found, all) = tokio::join!(
            lookup::find_service(ctx, &wanted),
            ctx.backend.deployments(&every)
        );
        let found = found?;
        let all = all?.items;
        let key = key_of(&found);
        return Ok(Resolution {
            mode: Mode::Named,
            scope: format!("{key} (named)"),
            focus: vec![(found, None)],
            all,
        });
    }
    if let Some(ns) = namespace {
        lookup::require_namespace(ctx, ns).await?;
    }
    let all = ctx.backend.deployments(&ListQuery::all()).await?.items;
    let candidates: Vec<&Deployment> = all
        .iter()
        .filter(|d| namespace.is_none_or(|ns| view::namespace(&d.metadata) == ns))
        .collect();
    let matched = mentioned(description, &candidates, &all);
    if !matched.is_empty() {
        let words: BTreeSet<&str> = matched.iter().map(|(_, w)| w.as_str()).collect();
        let keys: Vec<String> = matched.iter().map(|(d, _)| key_of(d)).collect();
        return Ok(Resolution {
            mode: Mode::Described,
            scope: format!(
                "{} (matched \"{}\" in the description)",
                keys.join(", "),
                words.into_iter().collect::<Vec<_>>().join("\", \"")
            ),
            focus: matched
                .into_iter()
                .map(|(d, _)| (d.clone(), None))
                .collect(),
            all,
        });
    }
    let mut scan = scan(ctx, namespace).await?;
    scan.scope = format!("scan (nothing named or matched): {}", scan.scope);
    Ok(scan)
}

/// Every unhealthy service (of a namespace, or of the cluster), worst first.
async fn scan(ctx: &Context, namespace: Option<&str>) -> ToolResult<Resolution> {
    let every = ListQuery::all();
    let (assessment, all) = tokio::join!(
        health::assess_services(ctx, None),
        ctx.backend.deployments(&every)
    );
    let (assessment, all) = (assessment?, all?.items);
    let in_scope: Vec<ServiceHealth> = assessment
        .services
        .into_iter()
        .filter(|s| namespace.is_none_or(|ns| s.namespace == ns))
        .collect();
    let total = in_scope.len();
    let unhealthy: Vec<ServiceHealth> = in_scope
        .into_iter()
        .filter(|s| s.status != HealthStatus::Healthy)
        .collect();
    let count = unhealthy.len();
    let mut focus = Vec::new();
    for health in unhealthy.into_iter().take(MAX_FOCUS) {
        if let Some(d) = all.iter().find(|d| {
            view::name(&d.metadata) == health.name
                && view::namespace(&d.metadata) == health.namespace
        }) {
            focus.push((d.clone(), Some(health)));
        }
    }
    let place = namespace.map_or("the cluster".to_string(), |ns| format!("namespace {ns}"));
    let mut scope = format!("{count} of {total} services in {place} unhealthy");
    if count > focus.len() {
        let _ = write!(scope, ", the {} worst investigated", focus.len());
    }
    Ok(Resolution {
        mode: Mode::Scan,
        scope,
        focus,
        all,
    })
}

fn key_of(d: &Deployment) -> String {
    format!(
        "{}/{}",
        view::namespace(&d.metadata),
        view::name(&d.metadata)
    )
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Words of a name too common to identify one service.
const GENERIC_WORDS: &[&str] = &[
    "api",
    "app",
    "svc",
    "service",
    "server",
    "web",
    "worker",
    "backend",
    "frontend",
    "core",
    "main",
    "prod",
    "deployment",
];

/// A word and its singular, as people write service names in prose ("payments", "orders").
fn word_forms(word: &str) -> Vec<String> {
    let mut forms = vec![word.to_string()];
    let w = word.trim_end_matches("'s");
    if let Some(stem) = w.strip_suffix("ies").filter(|s| s.len() >= 3) {
        forms.push(format!("{stem}y"));
    } else if let Some(stem) = w
        .strip_suffix('s')
        .filter(|s| s.len() >= 3 && !s.ends_with('s'))
    {
        forms.push(stem.to_string());
    }
    forms
}

/// Whether `name` occurs in `text` (lowercase) as a word: not inside a longer name, though it
/// may begin one (a pod name begins with its deployment's name).
fn names(text: &str, name: &str) -> bool {
    !name.is_empty()
        && text.match_indices(name).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let after = text[i + name.len()..].chars().next();
            before.is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'))
                && after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
}

/// The deployments a description mentions, with the word that matched: a full name (or a pod
/// name that begins with it) first, then a distinctive part of a name ("checkout" for
/// checkout-api, "payments" for payment-gateway), then a namespace.
fn mentioned<'a>(
    description: &str,
    candidates: &[&'a Deployment],
    all: &[Deployment],
) -> Vec<(&'a Deployment, String)> {
    let text = description.to_lowercase();
    let words: BTreeSet<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '\''))
        .flat_map(|w| {
            let w = w.trim_matches(|c: char| c == '-' || c == '\'');
            let mut parts = vec![w.to_string()];
            if w.contains('-') {
                parts.extend(w.split('-').map(str::to_string));
            }
            parts
        })
        .filter(|w| w.len() >= 3)
        .flat_map(|w| word_forms(&w))
        .collect();
    // How many deployment names each part occurs in: a part shared by many names says little.
    let mut part_use: BTreeMap<&str, usize> = BTreeMap::new();
    for d in all {
        let parts: BTreeSet<&str> = view::name(&d.metadata).split('-').collect();
        for p in parts {
            *part_use.entry(p).or_default() += 1;
        }
    }
    let mut scored: Vec<(u8, &Deployment, String)> = Vec::new();
    for d in candidates {
        let name = view::name(&d.metadata);
        let namespace = view::namespace(&d.metadata);
        let mut score = 0;
        let mut word = String::new();
        if names(&text, name) {
            score = 3;
            word = name.to_string();
        }
        if score < 2 {
            for part in name.split('-') {
                let distinctive = part.len() >= 3
                    && !GENERIC_WORDS.contains(&part)
                    && part_use.get(part).copied().unwrap_or(0) <= 2
                    && !part.chars().all(|c| c.is_ascii_digit());
                if distinctive && word_forms(part).iter().any(|f| words.contains(f)) {
                    score = 2;
                    word = part.to_string();
                    break;
                }
            }
        }
        if score < 1 && word_forms(namespace).iter().any(|f| words.contains(f)) {
            score = 1;
            word = namespace.to_string();
        }
        if score > 0 {
            scored.push((score, d, word));
        }
    }
    // Only the best kind of match counts: "payments" names payment-gateway by a part of its
    // name, so fraud-detector (only in the same namespace) is left out.
    let best = scored.iter().map(|(s, _, _)| *s).max().unwrap_or(0);
    let best = if best >= 2 { 2 } else { best };
    scored
        .into_iter()
        .filter(|(s, _, _)| *s >= best)
        .take(MAX_FOCUS)
        .map(|(_, d, w)| (d, w))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads the focus services, then follows error lines: unhealthy services that the errors name
/// (dependencies) and services whose errors name them (callers), a few rounds deep.
async fn gather(
    ctx: &Arc<Context>,
    all: &[Deployment],
    focus: Vec<(Deployment, Option<ServiceHealth>)>,
    follow: bool,
) -> ToolResult<Gathered> {
    let mut gathered = Gathered::default();
    let mut queued: BTreeSet<String> = focus.iter().map(|(d, _)| key_of(d)).collect();
    let mut frontier: Vec<(Deployment, Option<ServiceHealth>, Role)> = focus
        .into_iter()
        .map(|(d, h)| (d, h, Role::Focus))
        .collect();
    for _ in 0..=MAX_ROUNDS {
        if frontier.is_empty() {
            break;
        }
        let new_namespaces: BTreeSet<String> = frontier
            .iter()
            .map(|(d, _, _)| view::namespace(&d.metadata).to_string())
            .filter(|ns| !gathered.namespaces.contains_key(ns))
            .collect();
        let services = join_all(frontier.into_iter().map(|(d, h, role)| async move {
            let key = key_of(&d);
            (key, role, gather_service(ctx, d, h).await)
        }));
        let spaces = join_all(
            new_namespaces
                .into_iter()
                .map(|ns| gather_namespace(ctx.clone(), ns)),
        );
        let (services, spaces) = tokio::join!(services, spaces);
        for (ns, facts, notes) in spaces {
            gathered.namespaces.insert(ns, facts);
            gathered.notes.extend(notes);
        }
        let read: Vec<&str> = services.iter().map(|(key, _, _)| key.as_str()).collect();
        ctx.progress.step(
            None,
            format!(
                "read health, pods, crash logs and error groups of {}",
                read.join(", ")
            ),
        );
        let mut fresh = Vec::new();
        for (key, role, result) in services {
            match result {
                Ok((mut facts, notes)) => {
                    facts.role = role;
                    gathered.notes.extend(notes);
                    fresh.push(key.clone());
                    gathered.services.insert(key, facts);
                }
                Err(e) if role == Role::Focus => return Err(e),
                Err(e) => gathered.notes.push(format!("could not read {key}: {e}")),
            }
        }
        frontier = Vec::new();
        if !follow {
            break;
        }
        for key in fresh {
            let facts = &gathered.services[&key];
            let wanted = facts.role == Role::Focus || facts.unhealthy();
            if !wanted {
                continue;
            }
            let mut next: Vec<(String, Role)> = Vec::new();
            if facts.role != Role::Caller {
                for to in depends_on(&gathered, facts, all) {
                    next.push((to, Role::Dependency));
                }
            }
            for from in callers_of(&gathered, facts) {
                next.push((from, Role::Caller));
            }
            for (next_key, role) in next {
                if queued.len() >= MAX_SERVICES || !queued.insert(next_key.clone()) {
                    continue;
                }
                if let Some(d) = all.iter().find(|d| key_of(d) == next_key) {
                    frontier.push((d.clone(), None, role));
                }
            }
        }
    }
    Ok(gathered)
}

/// One service: its health (the health tool's own assessment), pods, ReplicaSets and the error
/// lines of its crashed containers' previous instances.
async fn gather_service(
    ctx: &Context,
    deployment: Deployment,
    health: Option<ServiceHealth>,
) -> ToolResult<(Facts, Vec<String>)> {
    let name = view::name(&deployment.metadata).to_string();
    let namespace = view::namespace(&deployment.metadata).to_string();
    let key = format!("{namespace}/{name}");
    let scope = ListQuery::for_deployment(&deployment);
    let assess = async {
        match health {
            Some(h) => Ok((h, None)),
            None => {
                let assessment = health::assess_services(ctx, Some(&key)).await?;
                let note = assessment
                    .metrics
                    .starts_with("unavailable")
                    .then(|| format!("metrics {}", assessment.metrics));
                let h = assessment.services.into_iter().next().ok_or_else(|| {
                    ToolError::Internal(format!("no health assessment for {key}"))
                })?;
                Ok((h, note))
            }
        }
    };
    let pods = async { ctx.backend.pods(&scope).await.map_err(ToolError::from) };
    let replica_sets = async {
        ctx.backend
            .replica_sets(&scope)
            .await
            .map_err(ToolError::from)
    };
    let ((health, metrics_note), pods, replica_sets) =
        tokio::try_join!(assess, pods, replica_sets)?;
    let pods: Vec<Pod> = pods
        .items
        .into_iter()
        .filter(|p| view::pod_deployment(p).as_deref() == Some(name.as_str()))
        .collect();
    let (crash_lines, mut notes) = previous_errors(ctx, &namespace, &pods).await;
    notes.extend(metrics_note);
    Ok((
        Facts {
            key,
            name,
            namespace,
            deployment,
            health,
            pods,
            replica_sets: replica_sets.items,
            crash_lines,
            role: Role::Focus,
        },
        notes,
    ))
}

/// One namespace: its events and its error groups (count_errors by message, last hour).
async fn gather_namespace(
    ctx: Arc<Context>,
    namespace: String,
) -> (String, NamespaceFacts, Vec<String>) {
    let query = ListQuery::in_namespace(&namespace);
    // count_errors itself, so error groups mean the same here as there.
    let arguments = logs::CountErrorsParams {
        group_by: Some(logs::GroupBy::Message),
        since: Some(ERRORS_SINCE.to_string()),
        namespace: Some(namespace.clone()),
    };
    let (events, counts) = tokio::join!(
        ctx.backend.events(&query),
        logs::count_errors(ctx.clone(), arguments)
    );
    let mut notes = Vec::new();
    let events = match events {
        Ok(list) => list.items,
        Err(e) => {
            notes.push(format!("events of {namespace} unread: {e}"));
            Vec::new()
        }
    };
    let groups = match counts {
        Ok(counts) => {
            notes.extend(
                counts
                    .notes
                    .into_iter()
                    .map(|n| format!("{namespace}: {n}")),
            );
            counts.groups
        }
        Err(e) => {
            notes.push(format!("error groups of {namespace} unread: {e}"));
            Vec::new()
        }
    };
    (namespace, NamespaceFacts { events, groups }, notes)
}

/// Containers that ended in failure and restarted (their previous instance crashed).
fn crashed_containers(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    statuses(pod).filter(|c| {
        c.restart_count > 0
            && c.last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0 || t.reason.as_deref() == Some("OOMKilled"))
    })
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
}

/// The error lines of the previous instance of a few crashed containers (the tail of each
/// log only), newest first, one per kind of message.
async fn previous_errors(
    ctx: &Context,
    namespace: &str,
    pods: &[Pod],
) -> (Vec<CrashLine>, Vec<String>) {
    let mut crashed: Vec<(&str, &str, i32)> = pods
        .iter()
        .flat_map(|p| {
            crashed_containers(p)
                .map(move |c| (view::name(&p.metadata), c.name.as_str(), c.restart_count))
        })
        .collect();
    crashed.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)));
    crashed.truncate(CRASHED_PODS_READ);
    let reads = join_all(crashed.iter().map(|(pod, container, _)| async move {
        let query = LogQuery {
            tail_lines: Some(PREVIOUS_TAIL),
            ..LogQuery::container(namespace, pod, container).previous(true)
        };
        (*pod, ctx.backend.pod_logs(&query).await)
    }))
    .await;
    let mut notes = Vec::new();
    let mut lines: BTreeMap<String, CrashLine> = BTreeMap::new();
    for (pod, read) in reads {
        match read {
            Ok(read) => {
                for entry in read.entries().iter().filter(|e| e.level >= Level::Error) {
                    let detail = entry
                        .detail
                        .iter()
                        .map(|d| d.trim())
                        .find(|d| {
                            d.starts_with("Caused by")
                                || d.split([':', ' ']).next().is_some_and(|w| {
                                    w.ends_with("Error") || w.ends_with("Exception")
                                })
                        })
                        .map(str::to_string);
                    let line = CrashLine {
                        pod: pod.to_string(),
                        level: entry.level,
                        message: entry.message.clone(),
                        detail,
                        at: entry.timestamp,
                    };
                    let kind = normalise_message(&format!(
                        "{} {}",
                        line.message,
                        line.detail.as_deref().unwrap_or("")
                    ));
                    lines.insert(kind, line);
                }
            }
            Err(e) => notes.push(format!("previous log of {namespace}/{pod} unread: {e}")),
        }
    }
    let mut lines: Vec<CrashLine> = lines.into_values().collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.at));
    lines.truncate(3);
    (lines, notes)
}

// ---------------------------------------------------------------------------------------------
// Between services: error lines that name another service

/// Deployments named in an error group's text, by key (the same namespace preferred).
fn named_in(group: &ErrorGroup, namespace: &str, all: &[Deployment]) -> Vec<String> {
    let text = format!("{} {}", group.sample, group.key).to_lowercase();
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for d in all {
        let name = view::name(&d.metadata);
        if names(&text, name) {
            let key = key_of(d);
            let same_namespace = view::namespace(&d.metadata) == namespace;
            match found.get(name) {
                Some(_) if !same_namespace => {}
                _ => {
                    found.insert(name.to_string(), key);
                }
            }
        }
    }
    found.into_values().collect()
}

/// The error groups a service's own logs produced.
fn own_groups<'a>(gathered: &'a Gathered, facts: &Facts) -> Vec<&'a ErrorGroup> {
    gathered
        .namespaces
        .get(&facts.namespace)
        .map(|ns| {
            ns.groups
                .iter()
                .filter(|g| g.services.iter().any(|s| s == &facts.name))
                .collect()
        })
        .unwrap_or_default()
}

/// The services a service's error lines name.
fn depends_on(gathered: &Gathered, facts: &Facts, all: &[Deployment]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for group in own_groups(gathered, facts) {
        for key in named_in(group, &facts.namespace, all) {
            if key != facts.key {
                out.insert(key);
            }
        }
    }
    out.into_iter().collect()
}

/// The services of the same namespace whose error lines name this one.
fn callers_of(gathered: &Gathered, facts: &Facts) -> Vec<String> {
    let Some(ns) = gathered.namespaces.get(&facts.namespace) else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    for group in &ns.groups {
        if !names(
            &format!("{} {}", group.sample, group.key).to_lowercase(),
            &facts.name,
        ) {
            continue;
        }
        for s in &group.services {
            if s != &facts.name {
                out.insert(format!("{}/{s}", facts.namespace));
            }
        }
    }
    out.into_iter().collect()
}

/// Errors of one service that name another: `from` calls `to` and fails.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    count: usize,
    sample: String,
}

fn edges(gathered: &Gathered, all: &[Deployment]) -> Vec<Edge> {
    let mut out: BTreeMap<(String, String), Edge> = BTreeMap::new();
    for (namespace, ns) in &gathered.namespaces {
        for group in &ns.groups {
            let targets = named_in(group, namespace, all);
            for s in &group.services {
                let from = format!("{namespace}/{s}");
                for to in &targets {
                    if *to == from {
                        continue;
                    }
                    let edge = out
                        .entry((from.clone(), to.clone()))
                        .or_insert_with(|| Edge {
                            from: from.clone(),
                            to: to.clone(),
                            count: 0,
                            sample: group.sample.clone(),
                        });
                    if group.count > edge.count {
                        edge.sample = group.sample.clone();
                    }
                    edge.count += group.count;
                }
            }
        }
    }
    out.into_values().collect()
}

// ---------------------------------------------------------------------------------------------
// Analysis

/// One root cause, before the runbook is looked up.
struct Finding {
    key: String,
    name: String,
    namespace: String,
    title: String,
    confidence: f64,
    /// (priority, line): lower priorities are kept first when lines must be dropped.
    evidence: Vec<(u8, String)>,
    next_call: ToolCall,
    more_calls: Vec<ToolCall>,
    /// What to search the runbooks with.
    query: String,
    /// The reversible action the facts point to (a rollback to the revision before).
    rollback: Option<String>,
    impact: Severity,
    impact_reason: String,
    score: f64,
}

struct Analysis {
    findings: Vec<Finding>,
}

/// What a description's words say about the symptom, and the words in evidence that match it.
const SYMPTOMS: &[(&[&str], &[&str])] = &[
    // Slow.
    (
        &[
            "slow",
            "latenc",
            "lag",
            "timeout",
            "time out",
            "timing out",
            "timed out",
            "hang",
            "sluggish",
            "p99",
            "delay",
        ],
        &["timeout", "timed out", "latency", "slow", "p99"],
    ),
    // Failing.
    (
        &[
            "error",
            "fail",
            "5xx",
            "500",
            "502",
            "503",
            "504",
            "unavailable",
            "down",
            "broken",
            "reject",
            "outage",
        ],
        &[
            "unavailable",
            "refused",
            "5xx",
            "503",
            "502",
            "errors",
            "failed",
            "down",
        ],
    ),
    // Crashing.
    (
        &["crash", "restart", "oom", "memory", "killed", "bounc"],
        &[
            "oomkilled",
            "crashloop",
            "restarts",
            "exit code",
            "outofmemory",
            "memory",
        ],
    ),
    // A change.
    (
        &[
            "deploy", "release", "rollout", "roll out", "upgrade", "version", "image",
        ],
        &["after rev", "introduced by rev", "image"],
    ),
    // Capacity and scheduling.
    (
        &["pending", "schedul", "capacity", "stuck", "node"],
        &[
            "pending",
            "failedscheduling",
            "insufficient",
            "progressdeadline",
        ],
    ),
    // Stale data.
    (
        &[
            "stale",
            "lag",
            "behind",
            "outdated",
            "missing",
            "not updat",
            "not show",
        ],
        &["lag", "stale", "backlog"],
    ),
];

/// Which symptom classes a text shows (`words` chooses the description or the evidence list).
fn symptom_classes(text: &str, from_description: bool) -> BTreeSet<usize> {
    let text = text.to_lowercase();
    SYMPTOMS
        .iter()
        .enumerate()
        .filter(|(_, (described, shown))| {
            let words = if from_description { described } else { shown };
            words.iter().any(|w| text.contains(w))
        })
        .map(|(i, _)| i)
        .collect()
}

fn analyse(gathered: &Gathered, all: &[Deployment], description: &str, now: Timestamp) -> Analysis {
    let edges = edges(gathered, all);
    let unhealthy = |key: &str| gathered.services.get(key).is_some_and(Facts::unhealthy);
    // A service is the victim of the unhealthy services its errors name.
    let victim_of = |key: &str| -> Vec<&Edge> {
        edges
            .iter()
            .filter(|e| e.from == key && unhealthy(&e.to))
            .collect()
    };
    fn roots<'e>(
        key: &str,
        victim_of: &dyn Fn(&str) -> Vec<&'e Edge>,
        seen: &mut BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for edge in victim_of(key) {
            if seen.insert(edge.to.clone()) {
                out.extend(roots(&edge.to, victim_of, seen));
            }
        }
        if out.is_empty() {
            out.insert(key.to_string());
        }
        out
    }
    let roots_of = |key: &str| {
        let mut seen = BTreeSet::from([key.to_string()]);
        roots(key, &victim_of, &mut seen)
    };
    // The root causes of what the focus services (and the services they lead to) show.
    let mut candidates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for facts in gathered.services.values() {
        if facts.role == Role::Caller || !facts.unhealthy() {
            continue;
        }
        for root in roots_of(&facts.key) {
            candidates
                .entry(root)
                .or_default()
                .insert(facts.key.clone());
        }
    }
    let described = symptom_classes(description, true);
    let mut findings = Vec::new();
    for (root, reached_from) in &candidates {
        let Some(facts) = gathered.services.get(root) else {
            continue;
        };
        if !facts.unhealthy() {
            continue;
        }
        // Every gathered service whose errors lead here, with the edge it fails on.
        let victims: Vec<(&Facts, &Edge)> = gathered
            .services
            .values()
            .filter(|v| v.key != *root && v.unhealthy() && roots_of(&v.key).contains(root))
            .filter_map(|v| {
                let edge = victim_of(&v.key)
                    .into_iter()
                    .max_by_key(|e| (e.to == *root, e.count))?;
                Some((v, edge))
            })
            .collect();
        let ns = gathered.namespaces.get(&facts.namespace);
        let groups = own_groups(gathered, facts);
        let (local, remote): (Vec<&ErrorGroup>, Vec<&ErrorGroup>) = groups.iter().partition(|g| {
            named_in(g, &facts.namespace, all)
                .iter()
                .all(|k| *k == facts.key)
        });
        let mut finding = diagnose(facts, ns, &groups, &local, &remote, &victims, now);
        // Rank: how bad, how sure, how related to what was reported.
        let h = &facts.health;
        let mut score = match h.status {
            HealthStatus::Down => 3.0,
            HealthStatus::Degraded => 1.5,
            HealthStatus::Healthy => 0.0,
        };
        if h.firing_alerts.iter().any(|a| a.severity == "critical") {
            score += 1.0;
        } else if !h.firing_alerts.is_empty() {
            score += 0.25;
        }
        if h.pods_desired > 0 {
            score += f64::from((h.pods_desired - h.pods_ready).max(0)) / f64::from(h.pods_desired);
        }
        score += 0.75 * victims.len().min(3) as f64;
        score += 2.0 * finding.confidence;
        let focus_reached = reached_from
            .iter()
            .filter(|k| {
                gathered
                    .services
                    .get(*k)
                    .is_some_and(|f| f.role == Role::Focus)
            })
            .count();
        if facts.role == Role::Focus {
            score += 2.0;
        } else if focus_reached > 0 {
            score += 1.5;
        }
        score += 0.5 * focus_reached.saturating_sub(1).min(2) as f64;
        if !described.is_empty() {
            let own: String = std::iter::once(finding.title.as_str())
                .chain(finding.evidence.iter().map(|(_, l)| l.as_str()))
                .chain(std::iter::once(h.verdict.as_str()))
                .collect::<Vec<_>>()
                .join(" ");
            if !symptom_classes(&own, false).is_disjoint(&described) {
                score += 1.0;
            }
            let path: String = victims
                .iter()
                .map(|(_, e)| e.sample.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            if !symptom_classes(&path, false).is_disjoint(&described) {
                score += 3.0;
            }
        }
        finding.score = score;
        findings.push(finding);
    }
    findings.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
    findings.truncate(MAX_HYPOTHESES);
    Analysis { findings }
}

/// A container reason that says the image cannot be pulled.
const IMAGE_PULL_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Error lines that say a pool of connections (or threads) ran dry.
static POOL_EXHAUSTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(connection is not available|unable to acquire .*connection|pool.{0,40}(exhaust|not available|timed? ?out|timeout|no (free|available))|too many connections|no (free|available) connections?|remaining connection slots)",
    )
    .expect("static regex")
});

/// The figures a pool error gives in parentheses: "(total=20, active=20, idle=0, waiting=123)".
static POOL_FIGURES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(([^()]*=[^()]*)\)").expect("static regex"));

static INSUFFICIENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Insufficient ([A-Za-z0-9/_-]+(?:\.[A-Za-z0-9/_-]+)*)").expect("static regex")
});

/// The revision history as far as a diagnosis needs it.
struct Rollout<'a> {
    current: Option<(Timestamp, DeployRecord)>,
    previous: Option<DeployRecord>,
    current_rs: Option<&'a ReplicaSet>,
    previous_rs: Option<&'a ReplicaSet>,
}

fn rollout<'a>(facts: &'a Facts, now: Timestamp) -> Rollout<'a> {
    let records = deploy_records(&facts.deployment, &facts.replica_sets, now);
    let current_at = records.iter().position(|(_, r)| r.current);
    let current = current_at.map(|i| records[i].clone());
    let previous = current_at.and_then(|i| records[i + 1..].first().map(|(_, r)| r.clone()));
    let find = |record: Option<&DeployRecord>| {
        record.and_then(|r| {
            facts
                .replica_sets
                .iter()
                .find(|rs| view::name(&rs.metadata) == r.replica_set)
        })
    };
    Rollout {
        current_rs: find(current.as_ref().map(|(_, r)| r)),
        previous_rs: find(previous.as_ref()),
        current,
        previous,
    }
}

/// The tag (or digest) of an image reference: `registry/app:2.14.0` → `2.14.0`.
fn image_tag(image: &str) -> &str {
    if let Some((_, digest)) = image.split_once('@') {
        return digest;
    }
    match image.rsplit_once(':') {
        Some((head, tag)) if !tag.contains('/') && !head.is_empty() => tag,
        _ => image,
    }
}

/// "rev 7 (2.14.0)"
fn revision_label(record: &DeployRecord) -> String {
    match record.images.first() {
        Some(image) => format!("rev {} ({})", record.revision, image_tag(image)),
        None => format!("rev {}", record.revision),
    }
}

/// Cuts a text to about `max` characters on a word boundary; a long message keeps its last
/// clause ("… : not found"), which often says what went wrong.
fn shorten(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let tail = text
        .rsplit_once(": ")
        .map(|(_, t)| t)
        .filter(|t| t.chars().count() <= 40 && t.chars().count() * 3 < max);
    let room = max - tail.map_or(0, |t| t.chars().count() + 3);
    let mut cut: String = text.chars().take(room).collect();
    if let Some(space) = cut.rfind(' ')
        && space > room / 2
    {
        cut.truncate(space);
    }
    let cut = cut.trim_end_matches([',', ';', ':', ' ']);
    match tail {
        Some(tail) => format!("{cut} …: {tail}"),
        None => format!("{cut} …"),
    }
}

/// The pod name without the deployment's name (`…-mv5sg`), for evidence lines.
fn short_pod(pod: &str, service: &str) -> String {
    match pod.strip_prefix(service) {
        Some(rest) => {
            format!("…{}", rest.rsplit('-').next().map_or(rest, |r| r)).replace("……", "…")
        }
        None => pod.to_string(),
    }
}

fn spec_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == name)
}

fn rs_containers(rs: &ReplicaSet) -> &[Container] {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map_or(&[], |s| s.containers.as_slice())
}

fn quantity(container: &Container, limits: bool, resource: &str) -> Option<String> {
    let resources = container.resources.as_ref()?;
    let map = if limits {
        resources.limits.as_ref()
    } else {
        resources.requests.as_ref()
    }?;
    map.get(resource).map(|q| q.0.clone())
}

/// Parses an alert's `since` as the health tool renders it ("35m ago").
fn alert_since(since: &str, now: Timestamp) -> Option<Timestamp> {
    let duration = parse_duration(since.trim().trim_end_matches(" ago")).ok()?;
    now.checked_sub(duration).ok()
}

fn event_first_seen(event: &Event) -> Option<Timestamp> {
    event
        .first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| view::event_last_seen(event))
}

/// Events about one service, grouped by reason: (reason, count, most telling message, pods).
struct EventGroup {
    reason: String,
    warning: bool,
    count: i64,
    message: String,
    objects: BTreeSet<String>,
}

fn event_groups(facts: &Facts, events: &[Event]) -> Vec<EventGroup> {
    let pods: Vec<&Pod> = facts.pods.iter().collect();
    let mut groups: BTreeMap<String, EventGroup> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| health::event_concerns(e, &facts.name, &pods))
    {
        let reason = e.reason.clone().unwrap_or_default();
        let message = e.message.clone().unwrap_or_default();
        let group = groups.entry(reason.clone()).or_insert_with(|| EventGroup {
            reason,
            warning: false,
            count: 0,
            message: String::new(),
            objects: BTreeSet::new(),
        });
        group.warning |= view::event_is_warning(e);
        group.count += i64::from(e.count.unwrap_or(1));
        // The longest message says the most ("Failed to pull image …: not found" rather than
        // "Error: ImagePullBackOff").
        if message.len() > group.message.len() {
            group.message = message;
        }
        if let Some(name) = e.involved_object.name.clone() {
            group.objects.insert(name);
        }
    }
    let mut out: Vec<EventGroup> = groups.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    out
}

fn event_line(group: &EventGroup) -> String {
    format!(
        "{} ×{}: {}",
        group.reason,
        group.count,
        shorten(&group.message, 110)
    )
}

/// When the trouble began: the first warning event, alert or error line of the service.
fn onset(
    facts: &Facts,
    events: &[EventGroup],
    raw_events: &[Event],
    groups: &[&ErrorGroup],
    now: Timestamp,
) -> Option<Timestamp> {
    let pods: Vec<&Pod> = facts.pods.iter().collect();
    let warning_reasons: BTreeSet<&str> = events
        .iter()
        .filter(|g| g.warning)
        .map(|g| g.reason.as_str())
        .collect();
    let from_events = raw_events
        .iter()
        .filter(|e| {
            view::event_is_warning(e)
                && warning_reasons.contains(e.reason.as_deref().unwrap_or(""))
                && health::event_concerns(e, &facts.name, &pods)
        })
        .filter_map(event_first_seen);
    let from_alerts = facts
        .health
        .firing_alerts
        .iter()
        .filter_map(|a| alert_since(&a.since, now));
    let from_errors = groups
        .iter()
        .filter_map(|g| g.first_seen.parse::<Timestamp>().ok());
    from_events.chain(from_alerts).chain(from_errors).min()
}

/// "2m after", "within a minute of"
fn gap(from: Timestamp, to: Timestamp) -> String {
    let seconds = to.as_second() - from.as_second();
    if seconds < 60 {
        "within a minute of".into()
    } else {
        format!("{} after", age(from, to))
    }
}

/// What one mechanism concludes about a service.
struct Diagnosis {
    title: String,
    confidence: f64,
    /// (priority, line): lower priorities are kept first when lines must be dropped.
    evidence: Vec<(u8, String)>,
    next_call: ToolCall,
    more_calls: Vec<ToolCall>,
    /// What to search the runbooks with.
    query: String,
    /// The current revision brought the problem: rolling back is the first action.
    blames_rollout: bool,
    /// Says more about the rollout than the general line (which revision brought a tag).
    rollout_line: Option<String>,
}

impl Diagnosis {
    fn new(title: String, confidence: f64, next_call: ToolCall, query: String) -> Diagnosis {
        Diagnosis {
            title,
            confidence,
            evidence: Vec::new(),
            next_call,
            more_calls: Vec::new(),
            query,
            blames_rollout: false,
            rollout_line: None,
        }
    }
}

/// What every mechanism may read about one service.
struct Scene<'a> {
    facts: &'a Facts,
    events: Vec<EventGroup>,
    rollout: Rollout<'a>,
    /// The trouble began within [`ROLLOUT_WINDOW`] after the current revision rolled out.
    follows_rollout: bool,
    /// When the trouble began against the current revision's rollout.
    rollout_line: Option<String>,
    /// "pods 0/3 ready, not ready: CrashLoopBackOff ×2, Running; restarts 8, 7, 7"
    pods_line: String,
    /// The crashed containers' error lines, as evidence.
    crash_lines: Vec<String>,
    /// The Deployment's progress deadline has passed.
    stuck_line: Option<String>,
}

impl<'a> Scene<'a> {
    fn new(
        facts: &'a Facts,
        ns: Option<&NamespaceFacts>,
        groups: &[&ErrorGroup],
        now: Timestamp,
    ) -> Scene<'a> {
        let raw_events: &[Event] = ns.map_or(&[], |n| n.events.as_slice());
        let events = event_groups(facts, raw_events);
        let rollout = rollout(facts, now);
        let started = onset(facts, &events, raw_events, groups, now);
        let (follows_rollout, rollout_line) = rollout_relation(&rollout, started, now);
        let h = &facts.health;
        let stuck_line = facts
            .deployment
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.type_ == "Progressing"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            })
            .map(|_| {
                format!(
                    "rollout Progressing=False (ProgressDeadlineExceeded), {}/{} ready",
                    h.pods_ready, h.pods_desired
                )
            });
        let crash_lines = facts
            .crash_lines
            .iter()
            .take(2)
            .map(|l| {
                let detail = l
                    .detail
                    .as_deref()
                    .filter(|d| !l.message.contains(*d))
                    .map(|d| format!(" — {d}"))
                    .unwrap_or_default();
                shorten(
                    &format!(
                        "previous log ({}): {} {}{detail}",
                        short_pod(&l.pod, &facts.name),
                        l.level.as_str(),
                        l.message
                    ),
                    LINE_CHARS,
                )
            })
            .collect();
        Scene {
            facts,
            events,
            follows_rollout,
            rollout_line,
            pods_line: pods_line(facts),
            crash_lines,
            stuck_line,
            rollout,
        }
    }

    fn current(&self) -> Option<&DeployRecord> {
        self.rollout.current.as_ref().map(|(_, r)| r)
    }

    fn first_warning(&self) -> Option<&EventGroup> {
        self.events.iter().find(|g| g.warning)
    }

    fn call(&self, tool: &str, pod: Option<&str>, extra: Value, why: &str) -> ToolCall {
        let mut arguments = match pod {
            Some(pod) => json!({"namespace": self.facts.namespace, "pod": pod}),
            None => json!({}),
        };
        if let (Value::Object(arguments), Value::Object(extra)) = (&mut arguments, extra) {
            arguments.extend(extra);
        }
        ToolCall::new(tool, arguments, why)
    }

    fn deploys_call(&self, why: &str) -> ToolCall {
        ToolCall::new(
            "get_recent_deploys",
            json!({"service": self.facts.key}),
            why,
        )
    }
}

/// Whether the trouble began right after the current revision rolled out, and a line that says
/// how the two relate in time.
fn rollout_relation(
    rollout: &Rollout,
    started: Option<Timestamp>,
    now: Timestamp,
) -> (bool, Option<String>) {
    let (Some((created, record)), Some(start)) = (rollout.current.as_ref(), started) else {
        return (false, None);
    };
    let (created, start) = (*created, start);
    if start.as_second() < created.as_second() - 60 {
        return (
            false,
            Some(format!(
                "began {} before the last rollout ({}, {} ago)",
                age(start, created),
                revision_label(record),
                age(created, now)
            )),
        );
    }
    if start.duration_since(created) > ROLLOUT_WINDOW {
        return (
            false,
            Some(format!(
                "no rollout in the {} before it began (last: {}, {} ago)",
                age(created, start),
                revision_label(record),
                age(created, now)
            )),
        );
    }
    let who = record
        .deployed_by
        .as_deref()
        .map(|w| format!(" by {w}"))
        .unwrap_or_default();
    let cause = record
        .change_cause
        .as_deref()
        .map(|c| format!(": \"{}\"", shorten(c, 90)))
        .unwrap_or_default();
    // " (2.13.2 → 2.14.0)", or " (2.14.0)" when the image did not change.
    let change = match (&rollout.previous, record.images.first()) {
        (Some(p), Some(image)) if p.images.first() != Some(image) => format!(
            " ({} → {})",
            p.images.first().map_or("?", |i| image_tag(i)),
            image_tag(image)
        ),
        (_, Some(image)) => format!(" ({})", image_tag(image)),
        _ => String::new(),
    };
    (
        true,
        Some(format!(
            "started {} rev {}{change}, rolled out {} ago{who}{cause}",
            gap(created, start.max(created)),
            record.revision,
            age(created, now)
        )),
    )
}

/// "pods 0/3 ready, not ready: CrashLoopBackOff ×2, Running; restarts 8, 7, 7"
fn pods_line(facts: &Facts) -> String {
    let h = &facts.health;
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for p in facts.pods.iter().filter(|p| !view::pod_is_ready(p)) {
        *counted.entry(view::pod_status(p)).or_default() += 1;
    }
    let mut counted: Vec<(String, usize)> = counted.into_iter().collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let not_ready: Vec<String> = counted
        .into_iter()
        .map(|(s, n)| if n > 1 { format!("{s} ×{n}") } else { s })
        .collect();
    let mut restarts: Vec<i64> = facts
        .pods
        .iter()
        .map(view::pod_restarts)
        .filter(|r| *r > 0)
        .collect();
    restarts.sort_by(|a, b| b.cmp(a));
    let mut line = format!("pods {}/{} ready", h.pods_ready, h.pods_desired);
    if !not_ready.is_empty() {
        let _ = write!(line, ", not ready: {}", not_ready.join(", "));
    }
    if !restarts.is_empty() {
        let shown: Vec<String> = restarts.iter().take(4).map(i64::to_string).collect();
        let _ = write!(line, "; restarts {}", shown.join(", "));
    }
    line
}

/// The pod with the most restarts (the one whose logs say most).
fn most_restarted(pods: &[&Pod]) -> String {
    pods.iter()
        .max_by_key(|p| (view::pod_restarts(p), view::name(&p.metadata).to_string()))
        .map(|p| view::name(&p.metadata).to_string())
        .unwrap_or_default()
}

/// A container of the new revision waits on an image that cannot be pulled.
fn image_pull(s: &Scene) -> Option<Diagnosis> {
    let facts = s.facts;
    let pulls: Vec<(&Pod, &ContainerStatus, String)> = facts
        .pods
        .iter()
        .flat_map(|p| statuses(p).map(move |c| (p, c)))
        .filter_map(|(p, c)| {
            let reason = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
            IMAGE_PULL_REASONS
                .contains(&reason.as_str())
                .then_some((p, c, reason))
        })
        .collect();
    let (pod, status, reason) = pulls.first()?;
    let pod_name = view::name(&pod.metadata).to_string();
    let image = spec_container(pod, &status.name)
        .and_then(|c| c.image.clone())
        .unwrap_or_else(|| status.image.clone());
    let tag = image_tag(&image).to_string();
    let previous = s.rollout.previous.as_ref();
    let introduced_by = s.current().filter(|r| {
        r.images.contains(&image) && previous.is_none_or(|p| !p.images.contains(&image))
    });
    let title = match introduced_by {
        Some(r) => format!(
            "rev {} image tag {tag} cannot be pulled ({reason})",
            r.revision
        ),
        None => format!("image {tag} cannot be pulled ({reason})"),
    };
    let mut d = Diagnosis::new(
        title,
        0.85,
        s.call(
            "describe_pod",
            Some(&pod_name),
            json!({}),
            "the container's waiting reason, image and pull events",
        ),
        format!(
            "{reason} ErrImagePull image pull failed tag not found {}",
            facts.name
        ),
    );
    d.evidence.push((
        0,
        format!(
            "{} pod(s) {reason}: image {image} ({})",
            pulls.len(),
            short_pod(&pod_name, &facts.name)
        ),
    ));
    if let Some(failed) = s
        .events
        .iter()
        .find(|g| g.warning && (g.message.contains("pull") || g.message.contains("image")))
    {
        d.evidence.push((0, event_line(failed)));
        let missing = ["not found", "NotFound", "manifest unknown"]
            .iter()
            .any(|m| failed.message.contains(m));
        d.confidence = if missing { 0.95 } else { 0.9 };
    }
    if let Some(record) = introduced_by {
        d.blames_rollout = true;
        let before = previous
            .map(|p| {
                format!(
                    "; rev {} ran {}",
                    p.revision,
                    p.images.first().map_or("?", |i| image_tag(i))
                )
            })
            .unwrap_or_default();
        let who = record
            .deployed_by
            .as_deref()
            .map(|w| format!(" by {w}"))
            .unwrap_or_default();
        let cause = record
            .change_cause
            .as_deref()
            .map(|c| format!(": \"{}\"", shorten(c, 80)))
            .unwrap_or_default();
        d.rollout_line = Some(format!(
            "tag {tag} introduced by rev {} {} ago{who}{cause}{before}",
            record.revision, record.age
        ));
    }
    // Pods of other revisions that still serve.
    let current_rs = s.rollout.current_rs.map(|rs| view::name(&rs.metadata));
    let serving = facts
        .pods
        .iter()
        .filter(|p| view::pod_is_ready(p) && view::pod_replica_set(p) != current_rs)
        .count();
    if serving > 0 {
        let of = previous.map_or("the previous revision".to_string(), revision_label);
        d.evidence
            .push((2, format!("{serving} pods of {of} still serve")));
    }
    d.more_calls
        .push(s.deploys_call("the revision that changed the image and the one to roll back to"));
    Some(d)
}

/// Pods the scheduler cannot place, and what the new revision asks for that no node has.
fn unschedulable(s: &Scene) -> Option<Diagnosis> {
    let facts = s.facts;
    let pending: Vec<&Pod> = facts
        .pods
        .iter()
        .filter(|p| {
            let status = p.status.as_ref();
            status.and_then(|s| s.phase.as_deref()) == Some("Pending")
                && status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.status == "False"
                                && c.reason.as_deref() == Some("Unschedulable")
                        })
                    })
        })
        .collect();
    let pod = *pending.first()?;
    let pod_name = view::name(&pod.metadata).to_string();
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    let scheduling = s.events.iter().find(|g| g.reason == "FailedScheduling");
    let message = scheduling
        .map(|g| g.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or(condition);
    let first_sentence = message
        .split_once(". ")
        .map_or(message.as_str(), |(first, _)| first)
        .to_string();
    let short: Vec<String> = INSUFFICIENT
        .captures_iter(&message)
        .map(|c| c[1].to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // What the current revision requests that the previous one did not.
    let mut raised: Vec<(&str, String, Option<String>)> = Vec::new();
    if let (Some(cur), Some(prev)) = (s.rollout.current_rs, s.rollout.previous_rs) {
        for c in rs_containers(cur) {
            let before = rs_containers(prev).iter().find(|p| p.name == c.name);
            for resource in ["memory", "cpu"] {
                let now = quantity(c, false, resource);
                let then = before.and_then(|b| quantity(b, false, resource));
                if let Some(now) = now.filter(|n| Some(n) != then.as_ref()) {
                    raised.push((resource, now, then));
                }
            }
        }
    }
    let blocking = raised
        .iter()
        .find(|(r, _, _)| short.is_empty() || short.iter().any(|x| x == r));
    let insufficient = if short.is_empty() {
        String::new()
    } else {
        format!("Insufficient {}", short.join("/"))
    };
    let (title, blames_rollout) = match (blocking, s.current()) {
        (Some((resource, quantity, _)), Some(record)) => (
            format!(
                "rev {} requests {quantity} {resource}: no node fits (FailedScheduling{})",
                record.revision,
                if insufficient.is_empty() {
                    String::new()
                } else {
                    format!(", {insufficient}")
                }
            ),
            true,
        ),
        _ if insufficient.is_empty() => (
            format!("pods cannot be scheduled: {}", shorten(&first_sentence, 60)),
            false,
        ),
        _ => (format!("pods cannot be scheduled: {insufficient}"), false),
    };
    let mut d = Diagnosis::new(
        title,
        if short.is_empty() { 0.8 } else { 0.9 },
        s.call(
            "describe_pod",
            Some(&pod_name),
            json!({}),
            "its requests, conditions and scheduling events",
        ),
        format!(
            "Pending FailedScheduling Insufficient {} nodes are available {}",
            if short.is_empty() {
                "cpu memory".to_string()
            } else {
                short.join(" ")
            },
            facts.name
        ),
    );
    d.blames_rollout = blames_rollout;
    d.evidence.push((
        0,
        format!(
            "{} pod(s) Pending ({}): FailedScheduling ×{}: {}",
            pending.len(),
            short_pod(&pod_name, &facts.name),
            scheduling.map_or(1, |g| g.count),
            shorten(&first_sentence, 100)
        ),
    ));
    // "requests memory 12Gi (rev 4: 2Gi), cpu 2"
    let previous = s.rollout.previous.as_ref();
    let requests: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|spec| spec.containers.iter())
        .flat_map(|c| {
            let raised = &raised;
            ["memory", "cpu"].into_iter().filter_map(move |r| {
                let q = quantity(c, false, r)?;
                let before = raised
                    .iter()
                    .find(|(resource, _, _)| *resource == r)
                    .zip(previous)
                    .map(|((_, _, then), p)| {
                        format!(
                            " (rev {}: {})",
                            p.revision,
                            then.as_deref().unwrap_or("none")
                        )
                    })
                    .unwrap_or_default();
                Some(format!("{r} {q}{before}"))
            })
        })
        .collect();
    d.evidence
        .push((0, format!("requests {}", requests.join(", "))));
    // The cluster autoscaler's word on it (NotTriggerScaleUp and the like).
    if let Some(scale) = s
        .events
        .iter()
        .find(|g| g.reason.starts_with("Not") && g.reason.contains("ScaleUp"))
    {
        d.evidence.push((2, event_line(scale)));
    }
    if let Some(line) = &s.stuck_line {
        d.evidence.push((1, line.clone()));
    }
    d.more_calls
        .push(s.deploys_call("the revision that changed the requests"));
    Some(d)
}

/// Containers killed for going over their memory limit.
fn out_of_memory(s: &Scene) -> Option<Diagnosis> {
    let facts = s.facts;
    let ooms: Vec<(&Pod, &ContainerStatus)> = facts
        .pods
        .iter()
        .flat_map(|p| statuses(p).map(move |c| (p, c)))
        .filter(|(_, c)| {
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let now = c.state.as_ref().and_then(|s| s.terminated.as_ref());
            [last, now]
                .into_iter()
                .flatten()
                .any(|t| t.reason.as_deref() == Some("OOMKilled"))
        })
        .collect();
    let (pod, status) = *ooms.first()?;
    let container = spec_container(pod, &status.name);
    let limit = container.and_then(|c| quantity(c, true, "memory"));
    let request = container.and_then(|c| quantity(c, false, "memory"));
    let oom_pods: BTreeSet<&str> = ooms.iter().map(|(p, _)| view::name(&p.metadata)).collect();
    let exit = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map_or(137, |t| t.exit_code);
    let at_limit = limit
        .as_deref()
        .map(|l| format!(" at the {l} limit"))
        .unwrap_or_default();
    let title = match s.current().filter(|_| s.follows_rollout) {
        Some(record) => format!(
            "{} exhausts memory: OOMKilled, exit {exit}{at_limit}",
            revision_label(record)
        ),
        None => format!(
            "{} runs out of memory: OOMKilled, exit {exit}{at_limit}",
            facts.name
        ),
    };
    let pods: Vec<&Pod> = ooms.iter().map(|(p, _)| *p).collect();
    let pod_name = most_restarted(&pods);
    // What the killed instance said about memory, for the runbook search.
    let said = facts
        .crash_lines
        .iter()
        .find_map(|l| {
            let text = format!("{} {}", l.message, l.detail.as_deref().unwrap_or(""));
            text.to_lowercase()
                .contains("memory")
                .then(|| shorten(&text, 80))
        })
        .unwrap_or_default();
    let mut d = Diagnosis::new(
        title,
        if s.follows_rollout { 0.95 } else { 0.9 },
        s.call(
            "get_pod_logs",
            Some(&pod_name),
            json!({"previous": true, "level": "warn"}),
            "the killed instance's last lines (what filled the memory)",
        ),
        format!(
            "OOMKilled CrashLoopBackOff exit code {exit} memory limit {said} {}",
            facts.name
        ),
    );
    d.blames_rollout = s.follows_rollout;
    d.evidence.push((0, s.pods_line.clone()));
    let mut line = format!(
        "last state OOMKilled, exit code {exit} on {} of {} pods",
        oom_pods.len(),
        facts.pods.len()
    );
    if let Some(limit) = &limit {
        let _ = write!(line, "; memory limit {limit}");
        if let Some(request) = &request {
            let _ = write!(line, " (request {request})");
        }
    }
    d.evidence.push((0, line));
    for (i, l) in s.crash_lines.iter().enumerate() {
        d.evidence.push((if i == 0 { 1 } else { 3 }, l.clone()));
    }
    d.more_calls.push(s.call(
        "describe_pod",
        Some(&pod_name),
        json!({}),
        "limits, last state and events",
    ));
    if s.follows_rollout {
        d.more_calls
            .push(s.deploys_call("what the rollout changed and the revision to roll back to"));
    }
    Some(d)
}

/// Containers that keep failing for another reason (exit codes, start-up errors).
fn crash_loop(s: &Scene) -> Option<Diagnosis> {
    let facts = s.facts;
    let crashes: Vec<(&Pod, &ContainerStatus)> = facts
        .pods
        .iter()
        .flat_map(|p| crashed_containers(p).map(move |c| (p, c)))
        .collect();
    let (_, status) = *crashes.first()?;
    let terminated = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let exit = terminated.map_or(1, |t| t.exit_code);
    let reason = terminated
        .and_then(|t| t.reason.clone())
        .unwrap_or_else(|| "Error".into());
    let title = match s.current().filter(|_| s.follows_rollout) {
        Some(record) => format!(
            "{} crashes: {reason}, exit code {exit}",
            revision_label(record)
        ),
        None => format!("{} crash-loops: {reason}, exit code {exit}", facts.name),
    };
    let pods: Vec<&Pod> = crashes.iter().map(|(p, _)| *p).collect();
    let pod_name = most_restarted(&pods);
    let mut confidence = if facts.crash_lines.is_empty() {
        0.75
    } else {
        0.85
    };
    if s.follows_rollout {
        confidence += 0.05;
    }
    let mut d = Diagnosis::new(
        title,
        confidence,
        s.call(
            "get_pod_logs",
            Some(&pod_name),
            json!({"previous": true, "level": "warn"}),
            "why the last instance ended",
        ),
        format!(
            "CrashLoopBackOff exit code {exit} {reason} {} {}",
            facts
                .crash_lines
                .first()
                .map(|l| shorten(&l.message, 60))
                .unwrap_or_default(),
            facts.name
        ),
    );
    d.blames_rollout = s.follows_rollout;
    d.evidence.push((0, s.pods_line.clone()));
    d.evidence.push((
        0,
        format!(
            "last state {reason}, exit code {exit} on {} of {} pods",
            crashes.len(),
            facts.pods.len()
        ),
    ));
    for (i, l) in s.crash_lines.iter().enumerate() {
        d.evidence.push((if i == 0 { 0 } else { 3 }, l.clone()));
    }
    d.more_calls.push(s.call(
        "describe_pod",
        Some(&pod_name),
        json!({}),
        "state, last state, probes and events",
    ));
    Some(d)
}

/// The service's own errors say a connection pool ran dry.
fn pool_exhausted(s: &Scene, local: &[&ErrorGroup]) -> Option<Diagnosis> {
    let facts = s.facts;
    let pool = *local
        .iter()
        .find(|g| POOL_EXHAUSTED.is_match(&g.sample) || POOL_EXHAUSTED.is_match(&g.key))?;
    // The pool's own figures, "(total=20, active=20, idle=0, waiting=123)".
    let figures = POOL_FIGURES
        .captures(&pool.sample)
        .map(|c| format!(" ({})", &c[1]))
        .unwrap_or_default();
    let alerted = facts.health.firing_alerts.iter().any(|a| {
        let text = format!("{} {}", a.name, a.summary).to_lowercase();
        text.contains("pool") || text.contains("connection")
    });
    let mut d = Diagnosis::new(
        format!("{} connection pool exhausted{figures}", facts.name),
        if alerted { 0.9 } else { 0.8 },
        ToolCall::new(
            "search_logs",
            json!({"service": facts.key, "level": "error", "pattern": search_phrase(&pool.key), "limit": 10}),
            "the pool errors with their pods and times",
        ),
        format!(
            "database connection pool exhausted {} {}",
            shorten(&normalise_message(&pool.sample), 100),
            facts.name
        ),
    );
    d.blames_rollout = s.follows_rollout;
    d.evidence.push((
        0,
        format!(
            "{} ×{} in {ERRORS_SINCE}",
            shorten(&pool.sample, 120),
            pool.count
        ),
    ));
    if let Some(other) = local.iter().find(|g| !std::ptr::eq(**g, pool)) {
        d.evidence.push((
            2,
            format!("{} ×{}", shorten(&other.sample, 100), other.count),
        ));
    }
    let pods = match s.first_warning() {
        Some(e) => format!("{}; {}", event_line(e), s.pods_line),
        None => s.pods_line.clone(),
    };
    d.evidence.push((1, pods));
    d.more_calls.push(ToolCall::new(
        "count_errors",
        json!({"group_by": "message", "namespace": facts.namespace}),
        "every error group of the namespace, callers included",
    ));
    Some(d)
}

/// The Deployment gave up waiting for its new revision.
fn rollout_stuck(s: &Scene) -> Option<Diagnosis> {
    let line = s.stuck_line.clone()?;
    let title = match s.current() {
        Some(record) => format!(
            "rollout of {} stuck: ProgressDeadlineExceeded",
            revision_label(record)
        ),
        None => "rollout stuck: ProgressDeadlineExceeded".into(),
    };
    let mut d = Diagnosis::new(
        title,
        0.6,
        ToolCall::new(
            "list_deployments",
            json!({"namespace": s.facts.namespace}),
            "replicas, conditions and the revision",
        ),
        format!(
            "Deployment rollout stuck ProgressDeadlineExceeded {}",
            s.facts.name
        ),
    );
    d.blames_rollout = true;
    d.evidence.push((0, line));
    d.evidence.push((0, s.pods_line.clone()));
    Some(d)
}

/// The service's own dominant errors (or, failing those, its errors about another service
/// that reports healthy).
fn dominant_errors(s: &Scene, local: &[&ErrorGroup], remote: &[&ErrorGroup]) -> Option<Diagnosis> {
    let facts = s.facts;
    let top = *local.first().or(remote.first())?;
    let mut d = Diagnosis::new(
        format!("{} fails: {}", facts.name, shorten(&top.sample, 70)),
        0.6,
        ToolCall::new(
            "search_logs",
            json!({"service": facts.key, "level": "error", "pattern": search_phrase(&top.key), "limit": 10}),
            "the newest of these errors with their pods",
        ),
        format!(
            "{} {}",
            shorten(&normalise_message(&top.sample), 120),
            facts.name
        ),
    );
    d.blames_rollout = s.follows_rollout;
    for g in local.iter().chain(remote).take(2) {
        d.evidence.push((
            0,
            format!("{} ×{} in {ERRORS_SINCE}", shorten(&g.sample, 120), g.count),
        ));
    }
    if let Some(e) = s.first_warning() {
        d.evidence.push((1, event_line(e)));
    }
    Some(d)
}

/// Unhealthy without a mechanism the facts show: what the health verdict says.
fn degraded(s: &Scene) -> Diagnosis {
    let facts = s.facts;
    let h = &facts.health;
    let verdict = h
        .verdict
        .split_once(": ")
        .map_or(h.verdict.as_str(), |(_, v)| v);
    let mut d = Diagnosis::new(
        format!(
            "{} {}: {}",
            facts.name,
            h.status.as_str(),
            shorten(verdict, 80)
        ),
        0.4,
        ToolCall::new(
            "check_service_health",
            json!({"service": facts.key}),
            "signals, alerts and pod problems",
        ),
        format!("{} {}", h.verdict, facts.name),
    );
    d.evidence.push((0, s.pods_line.clone()));
    if let Some(e) = s.first_warning() {
        d.evidence.push((0, event_line(e)));
    }
    d
}

/// "callers failing: order-service (ReadTimeout calling … ×86); checkout-api (via order-service)"
fn callers_line(key: &str, victims: &[(&Facts, &Edge)]) -> Option<String> {
    if victims.is_empty() {
        return None;
    }
    let mut ordered: Vec<&(&Facts, &Edge)> = victims.iter().collect();
    // Direct callers first, the busiest first.
    ordered.sort_by_key(|(v, e)| (e.to != key, std::cmp::Reverse(e.count), v.key.clone()));
    let parts: Vec<String> = ordered
        .into_iter()
        .take(3)
        .map(|(victim, edge)| {
            if edge.to == key {
                format!(
                    "{} ({} ×{})",
                    victim.name,
                    shorten(&edge.sample, 70),
                    edge.count
                )
            } else {
                let via = edge.to.rsplit('/').next().unwrap_or(&edge.to);
                format!("{} (via {via})", victim.name)
            }
        })
        .collect();
    Some(format!("callers failing: {}", parts.join("; ")))
}

/// The most severe firing alert with its summary, then the names of the others.
fn alerts_line(h: &ServiceHealth) -> Option<String> {
    let mut alerts: Vec<&health::FiringAlert> = h.firing_alerts.iter().collect();
    alerts.sort_by_key(|a| a.severity != "critical");
    let first = alerts.first()?;
    let mut line = format!(
        "alert {} ({}, {}): {}",
        first.name,
        first.severity,
        first.since.trim_end_matches(" ago"),
        shorten(&first.summary, 90)
    );
    if alerts.len() > 1 {
        let rest: Vec<&str> = alerts[1..]
            .iter()
            .take(3)
            .map(|a| a.name.as_str())
            .collect();
        let _ = write!(line, "; also {}", rest.join(", "));
    }
    Some(line)
}

/// Error rate and p99 when they say something.
fn signals_line(h: &ServiceHealth) -> Option<String> {
    let mut signals = Vec::new();
    if let Some(rate) = h.error_rate.filter(|r| *r >= 0.01) {
        signals.push(format!("{:.0}% errors", rate * 100.0));
    }
    if let Some(p99) = h.latency_p99_ms.filter(|p| *p >= 1000.0) {
        signals.push(format!("p99 {p99:.0} ms"));
    }
    (!signals.is_empty()).then(|| signals.join(", "))
}

/// The root cause one service shows: the first mechanism whose facts are there (an image that
/// cannot be pulled, pods that cannot be scheduled, memory, a crash loop, an exhausted pool, a
/// stuck rollout, its own dominant errors, else the health verdict), with the rollout, the
/// callers it takes down, its alerts and signals.
fn diagnose(
    facts: &Facts,
    ns: Option<&NamespaceFacts>,
    groups: &[&ErrorGroup],
    local: &[&ErrorGroup],
    remote: &[&ErrorGroup],
    victims: &[(&Facts, &Edge)],
    now: Timestamp,
) -> Finding {
    let scene = Scene::new(facts, ns, groups, now);
    let mut d = image_pull(&scene)
        .or_else(|| unschedulable(&scene))
        .or_else(|| out_of_memory(&scene))
        .or_else(|| crash_loop(&scene))
        .or_else(|| pool_exhausted(&scene, local))
        .or_else(|| rollout_stuck(&scene))
        .or_else(|| dominant_errors(&scene, local, remote))
        .unwrap_or_else(|| degraded(&scene));
    let h = &facts.health;
    let related = d.blames_rollout || scene.follows_rollout;
    if let Some(line) = d.rollout_line.take().or(scene.rollout_line.clone()) {
        d.evidence.push((if related { 0 } else { 2 }, line));
    }
    if let Some(line) = callers_line(&facts.key, victims) {
        d.evidence.push((1, line));
    }
    if let Some(line) = alerts_line(h) {
        d.evidence.push((2, line));
    }
    if let Some(line) = signals_line(h) {
        d.evidence.push((3, line));
    }
    if d.blames_rollout {
        d.confidence = d.confidence.max(0.9);
    }
    let rollback = d
        .blames_rollout
        .then_some(scene.rollout.previous.as_ref())
        .flatten()
        .map(|p| {
            format!(
                "Roll back {name} to {}: `kubectl rollout undo deployment/{name} -n {namespace} --to-revision={}`",
                revision_label(p),
                p.revision,
                name = facts.name,
                namespace = facts.namespace,
            )
        });
    let (impact, impact_reason) = impact(facts, victims.len());
    Finding {
        key: facts.key.clone(),
        name: facts.name.clone(),
        namespace: facts.namespace.clone(),
        title: d.title,
        confidence: (d.confidence.min(0.99) * 100.0).round() / 100.0,
        evidence: d.evidence,
        next_call: d.next_call,
        more_calls: d.more_calls,
        query: d.query,
        rollback,
        impact,
        impact_reason,
        score: 0.0,
    }
}

/// A plain phrase from a normalised message to search for (the longest run of words between
/// placeholders), escaped for search_logs' regular expression.
fn search_phrase(key: &str) -> String {
    let best = key
        .split(['<', '>', '(', ')', '[', ']'])
        .map(|s| s.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|s| {
            !s.is_empty() && !matches!(*s, "n" | "id" | "ip" | "hex" | "uuid" | "time" | "pod")
        })
        .max_by_key(|s| s.len())
        .unwrap_or(key);
    regex::escape(&shorten(best, 60).replace(" …", ""))
}

/// How bad one root cause is, and why.
fn impact(facts: &Facts, victims: usize) -> (Severity, String) {
    let h = &facts.health;
    let critical_alert = h.firing_alerts.iter().find(|a| a.severity == "critical");
    let error_rate = h.error_rate.unwrap_or(0.0);
    let severity = if h.status == HealthStatus::Down || (critical_alert.is_some() && victims > 0) {
        Severity::Critical
    } else if critical_alert.is_some() || error_rate >= 0.2 || victims > 0 {
        Severity::High
    } else if h.status == HealthStatus::Degraded {
        Severity::Medium
    } else {
        Severity::Low
    };
    let mut reason = format!(
        "{} {}: {}/{} ready",
        facts.name,
        h.status.as_str(),
        h.pods_ready,
        h.pods_desired
    );
    if error_rate >= 0.01 {
        let _ = write!(reason, ", {:.0}% errors", error_rate * 100.0);
    }
    if let Some(alert) = critical_alert {
        let _ = write!(reason, "; alert {} (critical)", alert.name);
    } else if let Some(alert) = h.firing_alerts.first() {
        let _ = write!(reason, "; alert {} ({})", alert.name, alert.severity);
    }
    if victims > 0 {
        let _ = write!(reason, "; {victims} caller(s) failing");
    }
    (severity, reason)
}

// ---------------------------------------------------------------------------------------------
// The answer

async fn answer(
    ctx: &Context,
    gathered: Gathered,
    analysis: Analysis,
    scope: String,
) -> Troubleshooting {
    let mut notes = gathered.notes;
    let findings = analysis.findings;
    if findings.is_empty() {
        let unhealthy: Vec<&str> = gathered
            .services
            .values()
            .filter(|f| f.unhealthy())
            .map(|f| f.key.as_str())
            .collect();
        let reason = if unhealthy.is_empty() {
            "no unhealthy service found".to_string()
        } else {
            format!("unhealthy, cause not found: {}", unhealthy.join(", "))
        };
        return Troubleshooting {
            scope,
            severity: Severity::Low,
            severity_reason: reason,
            hypotheses: Vec::new(),
            immediate_actions: Vec::new(),
            runbook: None,
            check_next: vec![
                ToolCall::new(
                    "check_service_health",
                    json!({}),
                    "every service, worst first",
                ),
                ToolCall::new(
                    "count_errors",
                    json!({"group_by": "message", "since": ERRORS_SINCE}),
                    "the dominant errors in the cluster",
                ),
            ],
            notes,
        };
    }
    // Runbooks: one search per hypothesis, in one batch.
    let queries: Vec<String> = findings.iter().map(|f| f.query.clone()).collect();
    let mut runbooks: Vec<Option<usize>> = vec![None; findings.len()];
    let mut top_runbook = None;
    let mut top_hit = None;
    let mut actions: Vec<String> = Vec::new();
    if let Some(rollback) = &findings[0].rollback {
        actions.push(rollback.clone());
    }
    match ctx
        .knowledge
        .search_many(&queries, &Filter::default(), 5)
        .await
    {
        Ok((index, hits, _)) => {
            for (i, (finding, hits)) in findings.iter().zip(&hits).enumerate() {
                let best = hits.first().map_or(0.0, |h| h.relevance);
                let fitting = hits
                    .iter()
                    .filter(|h| h.relevance >= RUNBOOK_THRESHOLD.max(best * 0.85))
                    .find(|h| {
                        index.runbooks[h.doc]
                            .services
                            .iter()
                            .any(|s| s.eq_ignore_ascii_case(&finding.name))
                    })
                    .or_else(|| hits.first().filter(|h| h.relevance >= RUNBOOK_THRESHOLD));
                runbooks[i] = fitting.map(|h| h.doc);
                if i == 0 {
                    top_hit = fitting.cloned();
                }
            }
            if let Some(hit) = &top_hit {
                let runbook = &index.runbooks[hit.doc];
                let first = &findings[0];
                // The section the augmenter would attach: the one whose heading means action.
                let chunk = index.actionable_section(hit);
                let path = index.chunks[chunk].section.as_str();
                let heading = path.split(" > ").next().unwrap_or(path);
                let lines = if section_role(path) == SectionRole::Action {
                    runbook_actions(
                        runbook.body(),
                        heading,
                        &first.name,
                        &first.namespace,
                        MAX_ACTIONS,
                    )
                } else {
                    Vec::new()
                };
                let section = if heading.is_empty() {
                    "(introduction)".to_string()
                } else {
                    heading.to_string()
                };
                // The runbook's own rollback step stands for the one worked out here.
                if lines.iter().any(|l| l.contains("rollout undo")) {
                    actions.clear();
                }
                let room = MAX_ACTIONS.saturating_sub(actions.len());
                actions.extend(lines.into_iter().take(room));
                top_runbook = Some(RunbookRef {
                    title: runbook.title.clone(),
                    uri: runbook.uri(),
                    section,
                });
            }
            let uris: Vec<Option<String>> = runbooks
                .iter()
                .map(|d| d.map(|d| index.runbooks[d].uri()))
                .collect();
            return build(scope, findings, uris, actions, top_runbook, notes);
        }
        Err(e) => notes.push(format!("runbooks not searched: {e}")),
    }
    let uris = vec![None; findings.len()];
    build(scope, findings, uris, actions, top_runbook, notes)
}

fn build(
    scope: String,
    findings: Vec<Finding>,
    runbooks: Vec<Option<String>>,
    immediate_actions: Vec<String>,
    runbook: Option<RunbookRef>,
    notes: Vec<String>,
) -> Troubleshooting {
    let worst = findings
        .iter()
        .max_by(|a, b| {
            a.impact
                .cmp(&b.impact)
                .then_with(|| a.score.total_cmp(&b.score))
        })
        .expect("findings");
    let severity = worst.impact;
    let severity_reason = worst.impact_reason.clone();
    let mut check_next: Vec<ToolCall> = Vec::new();
    let first = &findings[0];
    for call in &first.more_calls {
        if check_next.len() < MAX_CHECKS {
            check_next.push(call.clone());
        }
    }
    if findings.len() > 1 && check_next.len() < MAX_CHECKS {
        check_next.push(findings[1].next_call.clone());
    }
    let hypotheses = findings
        .into_iter()
        .zip(runbooks)
        .enumerate()
        .map(|(i, (f, runbook))| {
            let keep = if i == 0 {
                EVIDENCE_FIRST
            } else {
                EVIDENCE_OTHERS
            };
            let mut evidence: Vec<(usize, u8, String)> = f
                .evidence
                .into_iter()
                .enumerate()
                .map(|(at, (priority, line))| (at, priority, shorten(&line, LINE_CHARS)))
                .collect();
            // Keep the most important lines, shown in the order they were found.
            evidence.sort_by_key(|(at, priority, _)| (*priority, *at));
            evidence.truncate(keep);
            evidence.sort_by_key(|(at, _, _)| *at);
            Hypothesis {
                title: f.title,
                service: f.key,
                confidence: f.confidence,
                evidence: evidence.into_iter().map(|(_, _, l)| l).collect(),
                next_call: f.next_call,
                runbook,
            }
        })
        .collect();
    Troubleshooting {
        scope,
        severity,
        severity_reason,
        hypotheses,
        immediate_actions,
        runbook,
        check_next,
        notes,
    }
}

/// The actions under one heading of a runbook (its first heading with that text): the
/// top-level items, each as its first sentence with the first command that goes with it, or
/// else its sub-headings; placeholders for the app and namespace filled in.
fn runbook_actions(
    body: &str,
    wanted: &str,
    service: &str,
    namespace: &str,
    max: usize,
) -> Vec<String> {
    let lines: Vec<&str> = body.lines().collect();
    let mut headings: Vec<(usize, usize, String)> = Vec::new();
    let mut in_code = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&level) && line[level..].starts_with(' ') {
            headings.push((i, level, line[level..].trim().to_string()));
        }
    }
    let Some((at, level, _)) = headings.iter().find(|h| h.2 == wanted).cloned() else {
        return Vec::new();
    };
    let end = headings
        .iter()
        .find(|(i, l, _)| *i > at && *l <= level)
        .map_or(lines.len(), |(i, _, _)| *i);
    let section = &lines[at + 1..end];
    let fill = |text: &str| {
        let mut text = text.replace("**", "");
        for (from, to) in [
            ("${APP}", service),
            ("$APP", service),
            ("<app>", service),
            ("${NS}", namespace),
            ("$NS", namespace),
            ("<ns>", namespace),
            ("<namespace>", namespace),
        ] {
            text = text.replace(from, to);
        }
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let item = Regex::new(r"^(?:\d+[.)]|[-*+])\s+(.*)$").expect("static regex");
    let mut actions = Vec::new();
    let mut i = 0;
    let mut in_code = false;
    let mut sub_headings = Vec::new();
    while i < section.len() && actions.len() < max {
        let line = section[i];
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            i += 1;
            continue;
        }
        if in_code {
            i += 1;
            continue;
        }
        if line.starts_with('#') {
            let sub = line.trim_start_matches('#').trim().to_string();
            let command = first_command(&section[i + 1..]);
            sub_headings.push(action_text(&fill(&sub), command.map(|c| fill(&c))));
            i += 1;
            continue;
        }
        let Some(caps) = (indent < 2).then(|| item.captures(line)).flatten() else {
            i += 1;
            continue;
        };
        let mut text = caps[1].to_string();
        let mut j = i + 1;
        let mut command = None;
        while j < section.len() {
            let next = section[j];
            let trimmed = next.trim();
            let next_indent = next.len() - next.trim_start().len();
            if trimmed.starts_with("```") {
                let close = section[j + 1..]
                    .iter()
                    .position(|l| l.trim_start().starts_with("```"))
                    .map_or(section.len(), |p| j + 1 + p);
                if command.is_none() {
                    command = first_command(&section[j..]);
                }
                j = close + 1;
                continue;
            }
            if trimmed.is_empty() {
                let continues = section[j + 1..]
                    .iter()
                    .find(|l| !l.trim().is_empty())
                    .is_some_and(|l| l.len() - l.trim_start().len() >= 2);
                if !continues {
                    break;
                }
                j += 1;
                continue;
            }
            if next_indent < 2 && (item.is_match(next) || next.starts_with('#')) {
                break;
            }
            if command.is_none() {
                text.push(' ');
                text.push_str(trimmed);
            }
            j += 1;
        }
        actions.push(action_text(&fill(&text), command.map(|c| fill(&c))));
        i = j;
    }
    if actions.is_empty() {
        actions = sub_headings.into_iter().take(max).collect();
    }
    actions
}

/// The first command of the first code block in `lines` (its comment dropped), when it is a
/// whole command on one line.
fn first_command(lines: &[&str]) -> Option<String> {
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("```"))?;
    // Only a block that follows at once (after the text it belongs to).
    if lines[..start].iter().any(|l| {
        let t = l.trim();
        t.starts_with('#') || (!t.is_empty() && start > 3)
    }) {
        return None;
    }
    let line = lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with("```"))
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("--"))?;
    let line = match line.find("  #").or_else(|| line.find("  --")) {
        Some(comment) => line[..comment].trim_end(),
        None => line,
    };
    let whole = !line.ends_with('\\')
        && line.matches('\'').count() % 2 == 0
        && line.matches('"').count() % 2 == 0
        && !line.ends_with('{')
        && !line.ends_with('(');
    whole.then(|| line.to_string())
}

/// One action: the item's first sentence (or the whole item when short), then its command.
fn action_text(text: &str, command: Option<String>) -> String {
    let mut text = text.trim().to_string();
    if text.chars().count() > ACTION_CHARS {
        let sentence_end = text
            .match_indices(". ")
            .map(|(i, _)| i + 1)
            .find(|i| *i >= 10 && *i <= ACTION_CHARS);
        text = match sentence_end {
            Some(end) => text[..end].to_string(),
            None => shorten(&text, ACTION_CHARS),
        };
    }
    match command {
        Some(command) if !text.contains('`') || text.ends_with(':') => {
            let joiner = if text.ends_with(':') { " " } else { ": " };
            format!("{text}{joiner}`{command}`")
        }
        _ => text,
    }
}

impl RenderText for Troubleshooting {
    fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Scope: {}", self.scope);
        let _ = writeln!(
            out,
            "Severity: {} — {}",
            self.severity.as_str().to_uppercase(),
            self.severity_reason
        );
        if self.hypotheses.is_empty() {
            out.push_str("No root cause found.\n");
        }
        for (i, h) in self.hypotheses.iter().enumerate() {
            let _ = writeln!(
                out,
                "\n{}. {} [{}, confidence {:.2}]",
                i + 1,
                h.title,
                h.service,
                h.confidence
            );
            for e in &h.evidence {
                let _ = writeln!(out, "   - {e}");
            }
            let _ = writeln!(out, "   next: {}", h.next_call.render());
            if let Some(runbook) = &h.runbook {
                let _ = writeln!(out, "   runbook: {runbook}");
            }
        }
        if !self.immediate_actions.is_empty() {
            out.push_str("\nImmediate actions");
            if let Some(r) = &self.runbook {
                let _ = write!(out, " (runbook \"{}\", {} § {})", r.title, r.uri, r.section);
            }
            out.push_str(":\n");
            for (i, a) in self.immediate_actions.iter().enumerate() {
                let _ = writeln!(out, "{}. {a}", i + 1);
            }
        } else if let Some(r) = &self.runbook {
            let _ = writeln!(out, "\nRunbook: \"{}\", {} § {}", r.title, r.uri, r.section);
        }
        if !self.check_next.is_empty() {
            out.push_str("\nCheck next:\n");
            for c in &self.check_next {
                match &c.why {
                    Some(why) => {
                        let _ = writeln!(out, "- {} — {why}", c.render());
                    }
                    None => {
                        let _ = writeln!(out, "- {}", c.render());
                    }
                }
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whole_words_and_pod_names() {
        assert!(names("upstream order-service timeout", "order-service"));
        assert!(names(
            "pod payment-gateway-nzd7w8pf2m-mv5sg crashed",
            "payment-gateway"
        ));
        assert!(!names("payment-gateway-v2 down", "gateway-v2"));
        assert!(!names("api-gateway 502", "gateway"));
        assert!(names(
            "calling inventory-service/api/v1",
            "inventory-service"
        ));
    }

    #[test]
    fn plural_words_find_singular_names() {
        assert!(word_forms("payments").contains(&"payment".to_string()));
        assert!(word_forms("recommendations").contains(&"recommendation".to_string()));
        assert!(word_forms("entries").contains(&"entry".to_string()));
        assert_eq!(word_forms("ss"), vec!["ss".to_string()]);
    }

    #[test]
    fn runbook_actions_take_items_with_their_commands() {
        let body = "# X\n## Symptoms\n- bad\n## Mitigation\n\n1. **Roll back** if it started with a deploy:\n   ```bash\n   kubectl rollout undo deploy/$APP -n $NS   # back\n   ```\n2. Raise the limit. It buys time but costs memory on every node, so check that the nodes still fit the new request before you do it, or the new pods will sit in Pending for a long while, which makes the outage longer.\n3. Watch `kubectl get pods -n $NS -w`.\n## Prevention\n- later\n";
        let actions = runbook_actions(body, "Mitigation", "web", "shop", 4);
        assert_eq!(
            actions[0],
            "Roll back if it started with a deploy: `kubectl rollout undo deploy/web -n shop`"
        );
        assert_eq!(actions[1], "Raise the limit.");
        assert_eq!(actions[2], "Watch `kubectl get pods -n shop -w`.");
        assert_eq!(actions.len(), 3);
    }

    #[test]
    fn long_text_is_cut_on_words_keeping_the_last_clause() {
        let message = "Failed to pull image \"registry.example/app:1.2.3-typo\": rpc error: code = NotFound desc = failed to resolve reference \"registry.example/app:1.2.3-typo\": not found";
        let short = shorten(message, 100);
        assert!(short.chars().count() <= 100, "{short}");
        assert!(short.ends_with(": not found"), "{short}");
        assert!(short.starts_with("Failed to pull image"), "{short}");
        assert_eq!(shorten("a  b", 10), "a b");
    }

    #[test]
    fn search_phrases_are_plain_words_between_placeholders() {
        assert_eq!(
            search_phrase(
                "HikariPool-<n> - Connection is not available, request timed out after <id> (total=<n>)"
            ),
            "Connection is not available, request timed out after"
        );
    }

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("registry.acme.internal/payments/payment-gateway:2.14.0"),
            "2.14.0"
        );
        assert_eq!(image_tag("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(image_tag("app@sha256:abc"), "sha256:abc");
    }
}
