//! `deploy_with_review`: change a service's image, after a review and the approval its
//! environment needs; then watch the rollout.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::Common;
use super::flow::{self, Action, Planned};
use super::report::WriteReport;
use crate::cluster::DeploymentChange;
use crate::tools::{Context, ToolDef, ToolError, ToolKind, ToolResult, define_tool, limits};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeployParams {
    #[serde(flatten)]
    pub common: Common,
    /// With a version tag or digest.
    #[schemars(length(max = limits::IMAGE))]
    pub image: String,
    /// Default: the only one.
    #[schemars(length(max = limits::NAME))]
    pub container: Option<String>,
    /// Refused unless the namespace is this environment.
    #[schemars(length(max = limits::ENVIRONMENT))]
    pub environment: Option<String>,
}

pub fn tool() -> ToolDef {
    define_tool(
        "deploy_with_review",
        "Deploy with review",
        "Change a service's image after a review (health, dependencies, pods, errors, events, deploys, dry-run diff: GO/NO-GO, risk, checklist) and the approval production needs; watches the rollout, gives the rollback call if it fails.",
        ToolKind::Write {
            destructive: true,
            idempotent: false,
            safety_action: false,
        },
        deploy,
    )
}

async fn deploy(ctx: Arc<Context>, params: DeployParams) -> ToolResult<WriteReport> {
    let image = params.image.trim().to_string();
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(ToolError::InvalidArgument(
            "image must be an image reference without spaces, e.g. registry.example/team/app:1.2.3"
                .into(),
        ));
    }
    let container = params.container.clone();
    let mut common = params.common;
    common.environment = params.environment;
    flow::run(&ctx, Action::Deploy, common, move |deployment, _| {
        let container = pick_container(deployment, container.as_deref())?;
        let mut arguments = serde_json::Map::new();
        arguments.insert("image".into(), json!(image));
        arguments.insert("container".into(), json!(container));
        Ok(Planned {
            change: DeploymentChange::Image { container, image },
            arguments,
        })
    })
    .await
}

/// The container to change: the one named, or the only one.
fn pick_container(deployment: &Deployment, named: Option<&str>) -> ToolResult<String> {
    let names: Vec<String> = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    match named {
        Some(name) if names.iter().any(|n| n == name) => Ok(name.to_string()),
        Some(name) => Err(ToolError::InvalidArgument(format!(
            "container {} is not in this deployment; its containers: {}",
            crate::util::quote::short(name),
            names.join(", ")
        ))),
        None if names.len() == 1 => Ok(names[0].clone()),
        None => Err(ToolError::InvalidArgument(format!(
            "the deployment has {} containers; name one with container (one of: {})",
            names.len(),
            names.join(", ")
        ))),
    }
}
