//! `list_deployments` and `get_recent_deploys`: deployments of a namespace and a service's
//! rollout history (from its ReplicaSets' revision and change-cause annotations).

use std::fmt::Write;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, limits};
use super::{RenderText, ToolDef, ToolKind, ToolResult, define_tool, lookup};
use crate::cluster::{ListQuery, view};
use crate::util::timefmt::{age, rfc3339};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDeploymentsParams {
    /// Namespace to list.
    #[schemars(length(max = limits::NAME))]
    pub namespace: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentList {
    pub namespace: String,
    pub deployments: Vec<DeploymentSummary>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentSummary {
    pub name: String,
    /// Ready replicas / desired, e.g. "2/3".
    pub ready: String,
    pub up_to_date: i32,
    pub available: i32,
    pub images: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    pub strategy: String,
    pub age: String,
    /// Available/Progressing conditions, e.g. "Available=False (MinimumReplicasUnavailable)".
    pub conditions: Vec<String>,
    /// True when fewer replicas are ready than desired or a rollout is stuck.
    pub unhealthy: bool,
}

pub fn list_deployments_tool() -> ToolDef {
    define_tool(
        "list_deployments",
        "List deployments",
        "Deployments of a namespace: ready/desired replicas, up-to-date and available counts, images, current revision, strategy, age and conditions.",
        ToolKind::Read,
        list_deployments,
    )
}

fn summarise_deployment(
    d: &Deployment,
    replica_sets: &[ReplicaSet],
    now: Timestamp,
) -> DeploymentSummary {
    let status = d.status.as_ref();
    let desired = view::desired_replicas(d);
    let ready = view::ready_replicas(d);
    let conditions: Vec<String> = status
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| match &c.reason {
                    Some(r) => format!("{}={} ({r})", c.type_, c.status),
                    None => format!("{}={}", c.type_, c.status),
                })
                .collect()
        })
        .unwrap_or_default();
    let stuck = conditions
        .iter()
        .any(|c| c.contains("ProgressDeadlineExceeded") || c.starts_with("Available=False"));
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    DeploymentSummary {
        name: view::name(&d.metadata).to_string(),
        ready: format!("{ready}/{desired}"),
        up_to_date: updated,
        available: status.and_then(|s| s.available_replicas).unwrap_or(0),
        images: view::deployment_images(d),
        revision: view::current_revision(d, replica_sets),
        strategy: d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "RollingUpdate".into()),
        age: d
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| age(t.0, now))
            .unwrap_or_default(),
        conditions,
        unhealthy: ready < desired || updated < desired || stuck,
    }
}

async fn list_deployments(
    ctx: Arc<Context>,
    params: ListDeploymentsParams,
) -> ToolResult<DeploymentList> {
    lookup::require_namespace(&ctx, &params.namespace).await?;
    let now = Timestamp::now();
    let scope = ListQuery::in_namespace(&params.namespace);
    let (deployments, replica_sets) = tokio::try_join!(
        ctx.backend.deployments(&scope),
        ctx.backend.replica_sets(&scope)
    )?;
    let mut deployments: Vec<DeploymentSummary> = deployments
        .items
        .iter()
        .map(|d| summarise_deployment(d, &replica_sets.items, now))
        .collect();
    deployments.sort_by(|a, b| {
        b.unhealthy
            .cmp(&a.unhealthy)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(DeploymentList {
        namespace: params.namespace,
        deployments,
    })
}

impl RenderText for DeploymentList {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} deployments in namespace {}:\n",
            self.deployments.len(),
            self.namespace
        );
        for d in &self.deployments {
            let _ = writeln!(
                out,
                "{}{} ready {} up-to-date {} available {} rev {} age {} — {}\n    {}",
                if d.unhealthy { "! " } else { "  " },
                d.name,
                d.ready,
                d.up_to_date,
                d.available,
                d.revision.map_or("-".into(), |r| r.to_string()),
                d.age,
                d.images.join(", "),
                d.conditions.join(", ")
            );
        }
        out.trim_end().to_string()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRecentDeploysParams {
    /// Service (Deployment) name, or `namespace/name`.
    #[schemars(length(max = limits::NAME))]
    pub service: String,
    /// How far back to look, in hours (default 168 = 7 days).
    #[schemars(range(min = limits::HOURS_BACK_MIN, max = limits::HOURS_BACK_MAX))]
    pub hours_back: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeployHistory {
    pub service: String,
    pub namespace: String,
    pub hours_back: i64,
    /// Rollouts in the window, newest first.
    pub deploys: Vec<DeployRecord>,
    /// Revisions older than the window.
    pub older_revisions: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeployRecord {
    pub service: String,
    pub namespace: String,
    pub revision: i64,
    pub images: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
    pub deployed_at: String,
    pub age: String,
    /// True for the revision the Deployment currently runs.
    pub current: bool,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub replica_set: String,
}

pub fn get_recent_deploys_tool() -> ToolDef {
    define_tool(
        "get_recent_deploys",
        "Get recent deploys",
        "Rollout history of a service: each revision with image, change-cause, who deployed it and when, newest first; the current revision is marked. Use it to correlate an incident with a deploy.",
        ToolKind::Read,
        get_recent_deploys,
    )
}

/// Every rollout of a deployment, newest first.
pub fn deploy_records(
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    now: Timestamp,
) -> Vec<(Timestamp, DeployRecord)> {
    let name = view::name(&deployment.metadata);
    let namespace = view::namespace(&deployment.metadata);
    let current = view::current_revision(deployment, replica_sets);
    let mut records: Vec<(Timestamp, DeployRecord)> =
        view::owned_replica_sets(deployment, replica_sets)
            .filter_map(|rs| {
                let created = rs.metadata.creation_timestamp.as_ref()?.0;
                let revision = view::revision(&rs.metadata)?;
                let status = rs.status.as_ref();
                Some((
                    created,
                    DeployRecord {
                        service: name.to_string(),
                        namespace: namespace.to_string(),
                        revision,
                        images: view::replica_set_images(rs),
                        change_cause: view::change_cause(&rs.metadata).map(str::to_string),
                        deployed_by: view::deployed_by(&rs.metadata).map(str::to_string),
                        deployed_at: rfc3339(created),
                        age: age(created, now),
                        current: false,
                        replicas: status.map_or(0, |s| s.replicas),
                        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
                        replica_set: view::name(&rs.metadata).to_string(),
                    },
                ))
            })
            .collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.1.revision));
    for (_, record) in &mut records {
        record.current = Some(record.revision) == current;
    }
    records
}

async fn get_recent_deploys(
    ctx: Arc<Context>,
    params: GetRecentDeploysParams,
) -> ToolResult<DeployHistory> {
    let mut notes = Vec::new();
    let hours_back = lookup::clamp(
        "hours_back",
        params.hours_back,
        168,
        limits::HOURS_BACK_MIN,
        limits::HOURS_BACK_MAX,
        &mut notes,
    );
    let deployment = lookup::find_service(&ctx, &params.service).await?;
    let namespace = view::namespace(&deployment.metadata).to_string();
    let replica_sets = ctx
        .backend
        .replica_sets(&ListQuery::for_deployment(&deployment))
        .await?
        .items;
    let now = Timestamp::now();
    let cutoff = now
        .checked_sub(SignedDuration::from_hours(hours_back))
        .unwrap_or(Timestamp::MIN);
    let all = deploy_records(&deployment, &replica_sets, now);
    let total = all.len();
    let deploys: Vec<DeployRecord> = all
        .into_iter()
        .filter(|(t, _)| *t >= cutoff)
        .map(|(_, r)| r)
        .collect();
    Ok(DeployHistory {
        service: view::name(&deployment.metadata).to_string(),
        namespace,
        hours_back,
        older_revisions: total - deploys.len(),
        deploys,
        notes,
    })
}

impl RenderText for DeployHistory {
    fn render_text(&self) -> String {
        let mut out = format!(
            "Rollouts of {}/{} in the last {}h ({} older revisions not shown):\n",
            self.namespace, self.service, self.hours_back, self.older_revisions
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        if self.deploys.is_empty() {
            out.push_str("no rollouts in this window; raise hours_back to see older ones\n");
        }
        for d in &self.deploys {
            let _ = writeln!(
                out,
                "rev {}{} {} ago ({}) by {} — {}\n    images: {}  replicas {}/{}",
                d.revision,
                if d.current { " (current)" } else { "" },
                d.age,
                d.deployed_at,
                d.deployed_by.as_deref().unwrap_or("unknown"),
                d.change_cause.as_deref().unwrap_or("no change-cause"),
                d.images.join(", "),
                d.ready_replicas,
                d.replicas
            );
        }
        out.trim_end().to_string()
    }
}
