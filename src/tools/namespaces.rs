//! `list_namespaces`: every namespace with its owner team and a health tally.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Context;
use super::{RenderText, ToolDef, ToolKind, ToolResult, define_tool};
use crate::cluster::{FieldSelector, ListQuery, view};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListNamespacesParams {}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct NamespaceList {
    pub namespaces: Vec<NamespaceSummary>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct NamespaceSummary {
    pub name: String,
    /// Active or Terminating.
    pub status: String,
    /// Owning team, from the `team` label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub deployments: usize,
    pub pods: usize,
    pub pods_not_ready: usize,
    pub warning_events: usize,
    pub labels: BTreeMap<String, String>,
}

pub fn tool() -> ToolDef {
    define_tool(
        "list_namespaces",
        "List namespaces",
        "Every namespace with status, owning team, number of deployments and pods, pods not ready and warning events.",
        ToolKind::Read,
        list_namespaces,
    )
}

async fn list_namespaces(ctx: Arc<Context>, _: ListNamespacesParams) -> ToolResult<NamespaceList> {
    let all = ListQuery::all();
    let warnings = ListQuery::all().with_fields(FieldSelector::equals("type", "Warning"));
    let (namespaces, deployments, pods, events) = tokio::try_join!(
        ctx.backend.namespaces(&all),
        ctx.backend.deployments(&all),
        ctx.backend.pods(&all),
        ctx.backend.events(&warnings),
    )?;
    let (namespaces, deployments, pods, events) = (
        namespaces.items,
        deployments.items,
        pods.items,
        events.items,
    );
    let summaries = namespaces
        .iter()
        .map(|n| {
            let name = view::name(&n.metadata).to_string();
            let labels = n.metadata.labels.clone().unwrap_or_default();
            NamespaceSummary {
                status: n
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Active".into()),
                team: labels.get("team").cloned(),
                deployments: deployments
                    .iter()
                    .filter(|d| view::namespace(&d.metadata) == name)
                    .count(),
                pods: pods
                    .iter()
                    .filter(|p| view::namespace(&p.metadata) == name)
                    .count(),
                pods_not_ready: pods
                    .iter()
                    .filter(|p| view::namespace(&p.metadata) == name && !view::pod_is_ready(p))
                    .count(),
                warning_events: events
                    .iter()
                    .filter(|e| view::namespace(&e.metadata) == name && view::event_is_warning(e))
                    .count(),
                labels,
                name,
            }
        })
        .collect();
    Ok(NamespaceList {
        namespaces: summaries,
    })
}

impl RenderText for NamespaceList {
    fn render_text(&self) -> String {
        let mut out = format!("{} namespaces:\n", self.namespaces.len());
        for n in &self.namespaces {
            let _ = writeln!(
                out,
                "{:<16} {:<8} team {:<10} {} deployments, {} pods ({} not ready), {} warning events",
                n.name,
                n.status,
                n.team.as_deref().unwrap_or("-"),
                n.deployments,
                n.pods,
                n.pods_not_ready,
                n.warning_events
            );
        }
        out.trim_end().to_string()
    }
}
