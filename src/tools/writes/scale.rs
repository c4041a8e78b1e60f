//! `scale_deployment`: set a service's replica count (no new revision), reviewed for capacity
//! and approved like any production change.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::Common;
use super::flow::{self, Action, Planned};
use super::report::WriteReport;
use crate::cluster::DeploymentChange;
use crate::tools::{Context, ToolDef, ToolKind, ToolResult, define_tool, limits};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ScaleParams {
    #[serde(flatten)]
    pub common: Common,
    #[schemars(range(min = 0, max = limits::REPLICAS_MAX))]
    pub replicas: i64,
}

pub fn tool() -> ToolDef {
    define_tool(
        "scale_deployment",
        "Scale a deployment",
        "Set a service's replica count; reviewed (0 in production is NO-GO) and approved like every write.",
        ToolKind::Write {
            destructive: true,
            idempotent: true,
            safety_action: false,
        },
        scale,
    )
}

async fn scale(ctx: Arc<Context>, params: ScaleParams) -> ToolResult<WriteReport> {
    let replicas = params.replicas as i32;
    flow::run(&ctx, Action::Scale, params.common, move |_, _| {
        let mut arguments = serde_json::Map::new();
        arguments.insert("replicas".into(), json!(replicas));
        Ok(Planned {
            change: DeploymentChange::Replicas(replicas),
            arguments,
        })
    })
    .await
}
