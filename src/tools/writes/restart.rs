//! `restart_deployment`: replace every pod of a service, one at a time, as
//! `kubectl rollout restart` does (a new revision whose template carries the restart time).

use std::sync::Arc;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Deserialize;

use super::Common;
use super::flow::{self, Action, Planned};
use super::report::WriteReport;
use crate::cluster::DeploymentChange;
use crate::tools::{Context, ToolDef, ToolKind, ToolResult, define_tool};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RestartParams {
    #[serde(flatten)]
    pub common: Common,
}

pub fn tool() -> ToolDef {
    define_tool(
        "restart_deployment",
        "Restart a deployment",
        "Replace a service's pods one at a time (kubectl rollout restart); reviewed and approved like every write.",
        ToolKind::Write {
            destructive: true,
            idempotent: false,
            safety_action: false,
        },
        restart,
    )
}

async fn restart(ctx: Arc<Context>, params: RestartParams) -> ToolResult<WriteReport> {
    flow::run(&ctx, Action::Restart, params.common, |_, _| {
        Ok(Planned {
            change: DeploymentChange::Restart {
                at: Timestamp::now(),
            },
            arguments: serde_json::Map::new(),
        })
    })
    .await
}
