//! `rollback_deployment`: return a service to an earlier revision's pod template, as
//! `kubectl rollout undo` does — reviewed, approved like any production change, and never
//! refused for budget reasons (a safety action).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::Common;
use super::flow::{self, Action, Planned};
use super::report::WriteReport;
use crate::cluster::{DeploymentChange, view};
use crate::tools::{Context, ToolDef, ToolError, ToolKind, ToolResult, define_tool, limits};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RollbackParams {
    #[serde(flatten)]
    pub common: Common,
    /// Default: the previous.
    #[schemars(range(min = 1, max = limits::REVISION_MAX))]
    pub to_revision: Option<i64>,
}

pub fn tool() -> ToolDef {
    define_tool(
        "rollback_deployment",
        "Roll back a deployment",
        "Roll a service back to an earlier revision (kubectl rollout undo); reviewed and approved like every write; never blocked by the budget.",
        ToolKind::Write {
            destructive: true,
            idempotent: false,
            safety_action: true,
        },
        rollback,
    )
}

async fn rollback(ctx: Arc<Context>, params: RollbackParams) -> ToolResult<WriteReport> {
    let wanted = params.to_revision;
    flow::run(&ctx, Action::Rollback, params.common, move |deployment, replica_sets| {
        let current = view::current_revision(deployment, replica_sets);
        let mut history: Vec<(i64, &k8s_openapi::api::apps::v1::ReplicaSet)> = view::owned_replica_sets(deployment, replica_sets)
            .filter_map(|rs| Some((view::revision(&rs.metadata)?, rs)))
            .collect();
        history.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
        let revisions = history.iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>().join(", ");
        let target = match wanted {
            Some(revision) => history.iter().find(|(r, _)| *r == revision).ok_or_else(|| {
                ToolError::InvalidArgument(format!(
                    "revision {revision} is not in the rollout history of {}; revisions: {revisions}",
                    view::name(&deployment.metadata)
                ))
            })?,
            None => history.iter().find(|(r, _)| Some(*r) != current && Some(*r) < current).ok_or_else(|| {
                ToolError::InvalidArgument(format!(
                    "{} has no revision before the current one ({}); revisions: {revisions}",
                    view::name(&deployment.metadata),
                    current.map_or("unknown".into(), |c| c.to_string())
                ))
            })?,
        };
        if Some(target.0) == current {
            return Err(ToolError::InvalidArgument(format!(
                "revision {} is the one running now; revisions: {revisions}",
                target.0
            )));
        }
        let mut template = target
            .1
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .ok_or_else(|| ToolError::Internal(format!("revision {} has no pod template", target.0)))?;
        // The ReplicaSet's own label; the controller adds it back.
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove("pod-template-hash");
        }
        let mut arguments = serde_json::Map::new();
        arguments.insert("to_revision".into(), json!(target.0));
        Ok(Planned {
            change: DeploymentChange::Template {
                revision: target.0,
                template: Box::new(template),
            },
            arguments,
        })
    })
    .await
}
