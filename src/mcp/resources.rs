//! MCP resources: `system://health` (server and cluster status, per-tool statistics),
//! `budget://usage` (the session ledger), `deployment://history` (the write attempts recorded
//! in the history database, paged, and every rollout in the cluster), `audit://log` (every
//! call, paged), and the templates `deployment://history/{service}`, `runbook://{id}` and
//! `result://{id}` (full versions of shaped tool results, page by page).

use jiff::Timestamp;
use serde_json::json;

use super::Services;
use crate::cluster::{HealthStatus, ListQuery, view};
use crate::pipeline::result_store::ReadError;
use crate::tools::deploys::{DeployRecord, deploy_records};
use crate::tools::{ToolError, health, lookup};
use crate::util::quote::{short, thousands};
use crate::util::suggest::suggest;

/// A listed resource.
pub struct ResourceInfo {
    pub uri: String,
    pub name: String,
    pub title: String,
    pub description: String,
    pub mime_type: &'static str,
}

/// A resource URI template.
pub struct TemplateInfo {
    pub uri_template: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub mime_type: &'static str,
}

/// The body of a read resource.
pub struct ResourceBody {
    pub uri: String,
    pub mime_type: &'static str,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
    /// The URI is malformed (bad query, page out of range).
    #[error("{0}")]
    Invalid(String),
}

const JSON: &str = "application/json";
const MARKDOWN: &str = "text/markdown";
const TEXT: &str = "text/plain";

/// Every resource: the fixed ones, then one per runbook.
pub async fn list(services: &Services) -> Vec<ResourceInfo> {
    let mut resources = fixed();
    if let Some(index) = services.knowledge().index().await {
        resources.extend(index.runbooks.iter().map(|r| ResourceInfo {
            uri: r.uri(),
            name: r.id.clone(),
            title: r.title.clone(),
            description: format!(
                    "Runbook{}{}",
                    r.team
                        .as_ref()
                        .map(|t| format!(" (team {t})"))
                        .unwrap_or_default(),
                    if r.signals.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " for {}",
                            r.signals
                                .iter()
                                .take(6)
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            mime_type: MARKDOWN,
        }));
    }
    resources
}

fn fixed() -> Vec<ResourceInfo> {
    vec![
        ResourceInfo {
            uri: "system://health".into(),
            name: "system-health".into(),
            title: "Server and cluster health".into(),
            description: "Server version, backend, uptime, cluster summary (namespaces, services by status, pods not ready, warning events) and per-tool call counts and latency.".into(),
            mime_type: JSON,
        },
        ResourceInfo {
            uri: "budget://usage".into(),
            name: "budget-usage".into(),
            title: "Token and cost ledger".into(),
            description: "Tokens and cost returned to the client this session, per tool and in total, with the budget and what remains. Reading it is free.".into(),
            mime_type: JSON,
        },
        ResourceInfo {
            uri: "deployment://history".into(),
            name: "deployment-history".into(),
            title: "Deployment history".into(),
            description: "Every write this server reviewed or made (deploys, rollbacks, restarts, scaling — dry runs and refusals included), newest first and paged (?before=ID&limit=N), from the history database; and every rollout in the cluster (revision, images, change-cause, who and when).".into(),
            mime_type: JSON,
        },
        ResourceInfo {
            uri: "audit://log".into(),
            name: "audit-log".into(),
            title: "Audit log".into(),
            description: "Every tool call, newest first and paged (?before=ID&limit=N): time, client, tool, arguments (secrets masked), outcome, duration; write attempts with their change, review verdict and evidence, approval and revisions. Shared by every sre-mcp process using the same data directory.".into(),
            mime_type: JSON,
        },
    ]
}

pub fn templates() -> Vec<TemplateInfo> {
    vec![
        TemplateInfo {
            uri_template: "deployment://history/{service}",
            name: "service-deployment-history",
            title: "Deployment history of one service",
            description: "One service (Deployment name or namespace/name): the writes this server reviewed or made, newest first and paged (?before=ID&limit=N), and its rollout history in the cluster.",
            mime_type: JSON,
        },
        TemplateInfo {
            uri_template: "result://{id}",
            name: "full-result",
            title: "Full version of a shaped tool result",
            description: "When a tool result is over its token cap it is shaped, and its full text is kept here for this session (least recently used evicted first). Read it page by page with result://{id}?page=N; each page is sized to the cap. The shaped reply's truncated.full_result names the id.",
            mime_type: TEXT,
        },
        TemplateInfo {
            uri_template: "runbook://{id}",
            name: "runbook",
            title: "Runbook",
            description: "A runbook's Markdown by id (file path without .md), as search_runbooks and relevant_runbooks name it.",
            mime_type: MARKDOWN,
        },
    ]
}

fn valid_uris() -> String {
    let mut uris: Vec<String> = fixed().into_iter().map(|r| r.uri).collect();
    uris.extend(templates().into_iter().map(|t| t.uri_template.to_string()));
    uris.join(", ")
}

/// Longest resource URI read: a runbook id or a `namespace/name` with room to spare; a longer
/// one is refused before any work.
pub const MAX_URI_CHARS: usize = 2_048;

pub async fn read(services: &Services, uri: &str) -> Result<ResourceBody, ResourceError> {
    if uri.len() > MAX_URI_CHARS {
        let chars = uri.chars().count();
        if chars > MAX_URI_CHARS {
            return Err(ResourceError::Invalid(format!(
                "the resource URI is {} characters; the limit is {} (valid resources: {})",
                thousands(chars),
                thousands(MAX_URI_CHARS),
                valid_uris()
            )));
        }
    }
    let body = |value: serde_json::Value| ResourceBody {
        uri: uri.to_string(),
        mime_type: JSON,
        text: serde_json::to_string_pretty(&value).unwrap_or_default(),
    };
    match uri {
        "system://health" => Ok(body(system_health(services).await?)),
        "budget://usage" => Ok(body(services.budget.usage())),
        _ if uri == "audit://log" || uri.starts_with("audit://log?") => {
            let page = Paging::parse(uri)?;
            Ok(body(audit_log(services, &page)?))
        }
        _ if uri == "deployment://history" || uri.starts_with("deployment://history?") => {
            let page = Paging::parse(uri)?;
            let mut value = writes(services, None, &page, "deployment://history")?;
            if page.before.is_none() {
                value["rollouts"] = json!(history(services, None).await?);
            }
            Ok(body(value))
        }
        _ if uri.starts_with("result://") => match services.budget.read_result_page(uri) {
            Ok(text) => Ok(ResourceBody {
                uri: uri.to_string(),
                mime_type: TEXT,
                text,
            }),
            Err(ReadError::NotFound(m)) => Err(ResourceError::NotFound(m)),
            Err(ReadError::Invalid(m)) => Err(ResourceError::Invalid(m)),
        },
        _ if uri.starts_with("runbook://") => {
            let id = percent_decode(&uri["runbook://".len()..]);
            let index = services.knowledge().index().await.ok_or_else(|| {
                ResourceError::Failed(
                    "the runbook index is still loading; try again shortly".into(),
                )
            })?;
            match index.find(&id) {
                Some(runbook) => Ok(ResourceBody {
                    uri: uri.to_string(),
                    mime_type: MARKDOWN,
                    text: runbook.markdown.clone(),
                }),
                None => Err(ResourceError::NotFound(format!(
                    "no runbook {}; closest ids: {}",
                    short(&id),
                    suggest(&id, index.runbooks.iter().map(|r| r.id.as_str()))
                ))),
            }
        }
        _ => match uri.strip_prefix("deployment://history/") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('?') => {
                let page = Paging::parse(uri)?;
                let service = percent_decode(rest.split('?').next().unwrap_or(rest));
                let deployment =
                    lookup::find_service(services.pipeline.context(), &service).await?;
                let key = (
                    view::namespace(&deployment.metadata).to_string(),
                    view::name(&deployment.metadata).to_string(),
                );
                let base = format!("deployment://history/{}/{}", key.0, key.1);
                let mut value = writes(services, Some((&key.0, &key.1)), &page, &base)?;
                value["service"] = json!(format!("{}/{}", key.0, key.1));
                if page.before.is_none() {
                    value["rollouts"] = json!(history(services, Some(&service)).await?);
                }
                Ok(body(value))
            }
            _ => Err(ResourceError::NotFound(format!(
                "unknown resource {}; valid resources: {}",
                short(uri),
                valid_uris()
            ))),
        },
    }
}

/// A page of records: older than `before` (an id), at most `limit`.
struct Paging {
    before: Option<i64>,
    limit: usize,
}

impl Paging {
    const DEFAULT_LIMIT: usize = 50;
    const MAX_LIMIT: usize = 500;

    /// Reads `?before=ID&limit=N` from a URI.
    fn parse(uri: &str) -> Result<Paging, ResourceError> {
        let mut page = Paging {
            before: None,
            limit: Self::DEFAULT_LIMIT,
        };
        let Some((_, query)) = uri.split_once('?') else {
            return Ok(page);
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "before" => {
                    page.before = Some(value.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
                        ResourceError::Invalid(format!(
                            "before={} is not a record id (a whole number above 0, from next_page)",
                            short(value)
                        ))
                    })?);
                }
                "limit" => {
                    page.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|l| (1..=Self::MAX_LIMIT).contains(l))
                        .ok_or_else(|| {
                            ResourceError::Invalid(format!(
                                "limit={} is not a page size from 1 to {}",
                                short(value),
                                Self::MAX_LIMIT
                            ))
                        })?;
                }
                other => {
                    return Err(ResourceError::Invalid(format!(
                        "unknown query parameter {}; valid: before=ID, limit=1..{}",
                        short(other),
                        Self::MAX_LIMIT
                    )));
                }
            }
        }
        Ok(page)
    }

    fn next(&self, base: &str, next_before: Option<i64>) -> serde_json::Value {
        match next_before {
            Some(id) if self.limit == Self::DEFAULT_LIMIT => json!(format!("{base}?before={id}")),
            Some(id) => json!(format!("{base}?before={id}&limit={}", self.limit)),
            None => serde_json::Value::Null,
        }
    }
}

fn history_store(
    services: &Services,
) -> Result<&std::sync::Arc<crate::history::HistoryStore>, String> {
    services
        .history
        .as_ref()
        .map_err(|e| format!("the history database is unavailable: {e}"))
}

fn audit_log(services: &Services, page: &Paging) -> Result<serde_json::Value, ResourceError> {
    let store = history_store(services).map_err(ResourceError::Failed)?;
    let found = store
        .audit(page.before, page.limit)
        .map_err(|e| ResourceError::Failed(e.to_string()))?;
    Ok(json!({
        "database": store.path().display().to_string(),
        "records": found.records,
        "next_page": page.next("audit://log", found.next_before),
    }))
}

/// The write attempts recorded for one service or all, newest first.
fn writes(
    services: &Services,
    service: Option<(&str, &str)>,
    page: &Paging,
    base: &str,
) -> Result<serde_json::Value, ResourceError> {
    match history_store(services) {
        Ok(store) => {
            let found = store
                .writes(service, page.before, page.limit)
                .map_err(|e| ResourceError::Failed(e.to_string()))?;
            Ok(json!({
                "writes": found.records,
                "next_page": page.next(base, found.next_before),
            }))
        }
        Err(reason) => Ok(json!({ "writes": [], "writes_unavailable": reason })),
    }
}

/// Decodes `%2F`-style escapes (clients may encode the `/` of `namespace/name`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl From<ToolError> for ResourceError {
    fn from(e: ToolError) -> Self {
        match e {
            ToolError::NotFound(m) | ToolError::InvalidArgument(m) => ResourceError::NotFound(m),
            ToolError::Refused(m) | ToolError::Unavailable(m) | ToolError::Internal(m) => {
                ResourceError::Failed(m)
            }
            cluster @ ToolError::Cluster(_) => ResourceError::Failed(cluster.to_string()),
        }
    }
}

impl From<crate::cluster::ClusterError> for ResourceError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        ToolError::from(e).into()
    }
}

async fn history(
    services: &Services,
    service: Option<&str>,
) -> Result<Vec<DeployRecord>, ResourceError> {
    let (deployments, scope) = lookup::service_scope(services.pipeline.context(), service).await?;
    let replica_sets = services.backend().replica_sets(&scope).await?.items;
    let now = Timestamp::now();
    let mut records: Vec<(Timestamp, DeployRecord)> = deployments
        .iter()
        .flat_map(|d| deploy_records(d, &replica_sets, now))
        .collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(records.into_iter().map(|(_, r)| r).collect())
}

async fn system_health(services: &Services) -> Result<serde_json::Value, ResourceError> {
    let backend = services.backend();
    let all = ListQuery::all();
    let (namespaces, nodes, pods, events, assessment) = tokio::try_join!(
        async { Ok::<_, ResourceError>(backend.namespaces(&all).await?.items) },
        async { Ok(backend.nodes(&all).await?.items) },
        async { Ok(backend.pods(&all).await?.items) },
        async { Ok(backend.events(&all).await?.items) },
        async { Ok(health::assess_services(services.pipeline.context(), None).await?) },
    )?;
    let assessed = &assessment.services;
    // After the reads: a backend that loads in the background describes itself once loaded.
    let info = backend.info();
    // The lexical index is built within milliseconds of start; report it, not "loading".
    services.knowledge().index().await;
    let not_ready: Vec<String> = pods
        .iter()
        .filter(|p| !view::pod_is_ready(p))
        .map(|p| {
            format!(
                "{}/{} ({})",
                view::namespace(&p.metadata),
                view::name(&p.metadata),
                view::pod_status(p)
            )
        })
        .collect();
    // Service status has one definition (check_service_health's); counted from it.
    let count_status = |s: HealthStatus| assessed.iter().filter(|h| h.status == s).count();
    let nodes_not_ready = nodes
        .iter()
        .filter(|n| {
            !n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    Ok(json!({
        "server": { "name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION") },
        "backend": info,
        "started_at": services.started_at.to_string(),
        "uptime_seconds": services.started.elapsed().as_secs(),
        "cluster": {
            "namespaces": namespaces.len(),
            "nodes": nodes.len(),
            "nodes_not_ready": nodes_not_ready,
            "deployments": assessed.len(),
            "pods": pods.len(),
            "pods_not_ready": not_ready,
            "warning_events": events.iter().filter(|e| view::event_is_warning(e)).count(),
            "services_by_status": {
                "healthy": count_status(HealthStatus::Healthy),
                "degraded": count_status(HealthStatus::Degraded),
                "down": count_status(HealthStatus::Down),
            },
            "metrics": assessment.metrics,
            "firing_alerts": assessed.iter().flat_map(|h| h.firing_alerts.iter().map(move |a| format!("{} ({}/{}, {})", a.name, h.namespace, h.name, a.severity))).collect::<Vec<_>>(),
        },
        "runbooks": runbook_status(services),
        "writes": {
            "mode": services.writes.mode.as_str(),
            "allow_override": services.writes.allow_override,
            "auto_approve_non_production": services.writes.auto_approve_non_production,
            "rollout_timeout_seconds": services.writes.rollout_timeout.as_secs(),
            "auto_rollback": services.writes.auto_rollback,
            "confirmation_ttl_seconds": services.writes.confirmations.ttl().as_secs(),
            "history": match &services.history {
                Ok(store) => json!({"database": store.path().display().to_string(), "records": store.count().ok()}),
                Err(e) => json!({"unavailable": e}),
            },
        },
        "budget": budget_summary(services),
        "tools": services.pipeline.stats().snapshot(),
        // The largest request and reply seen, what the protocol guard answered itself, and
        // the limits (frame size, calls at once, deadline).
        "protocol": services.protocol.snapshot(),
    }))
}

/// The ledger's totals (the per-tool detail is in budget://usage).
fn budget_summary(services: &Services) -> serde_json::Value {
    let usage = services.budget.usage();
    json!({
        "tokens": usage["tokens"],
        "cost_usd": usage["cost_usd"],
        "calls": usage["calls"],
        "shaped_calls": usage["shaped_calls"],
        "max_result_tokens": usage["max_result_tokens"],
        "budget": usage["budget"],
    })
}

/// Runbook knowledge status: corpus size, which retrievers are live and, when embeddings are
/// off, how to enable them.
fn runbook_status(services: &Services) -> serde_json::Value {
    let snapshot = services.knowledge().snapshot();
    json!({
        "index": if snapshot.index.is_some() { "ready" } else { "loading" },
        "runbooks": snapshot.index.as_ref().map(|i| i.runbooks.len()),
        "chunks": snapshot.index.as_ref().map(|i| i.chunks.len()),
        "lexical_build_ms": snapshot.lexical_ms,
        "embeddings": snapshot.dense,
        "embedding_progress": snapshot.embedding_progress.map(|(done, total)| json!({"embedded": done, "to_embed": total})),
        "retrieval": if snapshot.embedder.is_some() { "fused (BM25 + embeddings)" } else { "lexical (BM25)" },
        "warnings": snapshot.warnings,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(
            super::percent_decode("payments%2Fpayment-gateway"),
            "payments/payment-gateway"
        );
        assert_eq!(super::percent_decode("a%2"), "a%2");
        assert_eq!(super::percent_decode("plain"), "plain");
    }
}
