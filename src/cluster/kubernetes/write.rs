//! The Kubernetes backend's one write, [`ClusterBackend::write_deployment`]: each
//! [`DeploymentChange`] becomes one strategic-merge PATCH of the Deployment, made with field
//! manager [`FIELD_MANAGER`] (so `managedFields` name this server), `dryRun=All` for a dry run,
//! within `--api-timeout` and the `--namespaces` allowlist like every read. Changes that make a
//! new revision also set the change-cause and deployed-by annotations, which the deployment
//! controller copies onto the new ReplicaSet (where the rollout history reads them); a reviewed
//! `resourceVersion` goes into the patch as `metadata.resourceVersion`, so the API server
//! refuses (409) a write to a Deployment that changed since it was reviewed. An image change
//! reads the Deployment first, to refuse a container it does not have (a merge would add it).
//!
//! [`ClusterBackend::write_deployment`]: crate::cluster::ClusterBackend::write_deployment

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};

use super::KubeBackend;
use super::error::{self, Request};
use crate::cluster::{
    CHANGE_CAUSE_ANNOTATION, ClusterError, ClusterResult, DEPLOYED_BY_ANNOTATION, DeploymentChange,
    DeploymentWrite, FIELD_MANAGER, RESTARTED_AT_ANNOTATION,
};

/// Reads and patches tried for an image change whose caller gave no `resourceVersion`: the
/// patch is then conditional on this backend's own read, which the deployment controller's
/// status updates can overtake during a rollout; a conflict there only means "read again".
const OWN_READ_ATTEMPTS: usize = 3;

/// The label the deployment controller adds to each ReplicaSet's template; a template taken
/// from a ReplicaSet must lose it, or the Deployment's pods would carry the old hash.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The pod-spec list that holds a container, by its strategic-merge key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    fn key(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

impl KubeBackend {
    /// Makes (or with `dry_run` validates) one change and returns the Deployment as the API
    /// server stored it (or would store it).
    pub(super) async fn patch_deployment(
        &self,
        write: &DeploymentWrite,
    ) -> ClusterResult<Deployment> {
        self.check_namespace(&write.namespace)?;
        let api = Api::<Deployment>::namespaced(self.client.clone(), &write.namespace);
        let patching = self.request(
            "patch",
            "deployments",
            "deployment",
            Some(&write.namespace),
            Some(&write.name),
        );
        let result = match &write.change {
            DeploymentChange::Image { container, .. } => {
                self.patch_image(&api, write, container, &patching).await
            }
            _ => {
                let body = patch_body(
                    write,
                    write.resource_version.as_deref(),
                    ContainerList::Containers,
                )?;
                self.patch(&api, write, body, &patching).await
            }
        };
        match result {
            // A name that is not there: read it, which lists the names that are (an image
            // change read it already).
            Err(
                not_found @ ClusterError::NotFound {
                    kind: "deployment",
                    existing: None,
                    ..
                },
            ) => {
                let reading = Request {
                    verb: "get",
                    ..patching
                };
                match self.get(api, &write.name, reading).await {
                    Err(e @ ClusterError::NotFound { .. }) => Err(e),
                    _ => Err(not_found),
                }
            }
            other => other,
        }
    }

    /// An image change: a strategic merge on a container the Deployment does not have would
    /// add one with just that name and image, so the Deployment is read first and the
    /// container looked up, and the patch is conditional on the version read.
    async fn patch_image(
        &self,
        api: &Api<Deployment>,
        write: &DeploymentWrite,
        container: &str,
        patching: &Request<'_>,
    ) -> ClusterResult<Deployment> {
        let reading = Request {
            verb: "get",
            ..*patching
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.get(api.clone(), &write.name, reading).await?;
            let read_version = current.metadata.resource_version.as_deref();
            if let Some(reviewed) = write.resource_version.as_deref()
                && read_version != Some(reviewed)
            {
                return Err(error::conflict(
                    patching,
                    &format!(
                        "resourceVersion {reviewed} was reviewed, it is now {}",
                        read_version.unwrap_or("unknown")
                    ),
                ));
            }
            let list =
                container_list(&current, container).map_err(|existing| ClusterError::NotFound {
                    kind: "container",
                    name: container.to_string(),
                    namespace: Some(write.namespace.clone()),
                    existing: Some(existing),
                })?;
            let precondition = write.resource_version.as_deref().or(read_version);
            let body = patch_body(write, precondition, list)?;
            match self.patch(api, write, body, patching).await {
                Err(ClusterError::Conflict { .. }) if write.resource_version.is_none() => {
                    if attempt == OWN_READ_ATTEMPTS {
                        return Err(ClusterError::Conflict {
                            message: format!(
                                "deployment {:?} in namespace {:?} changed between each of {OWN_READ_ATTEMPTS} reads and the patch that followed, so the change was not made; retry when it is quieter",
                                write.name, write.namespace
                            ),
                        });
                    }
                }
                other => return other,
            }
        }
    }

    async fn patch(
        &self,
        api: &Api<Deployment>,
        write: &DeploymentWrite,
        body: Value,
        request: &Request<'_>,
    ) -> ClusterResult<Deployment> {
        let params = patch_params(write);
        self.bounded(
            request,
            api.patch(&write.name, &params, &Patch::Strategic(body)),
        )
        .await
    }
}

/// Every write names this server as its field manager; a dry run is the API server's
/// `dryRun=All` (admission and validation run, nothing is stored).
pub(super) fn patch_params(write: &DeploymentWrite) -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        dry_run: write.dry_run,
        ..PatchParams::default()
    }
}

/// Which list of the Deployment's pod template holds `container`, or the names it does hold.
pub(super) fn container_list(
    deployment: &Deployment,
    container: &str,
) -> Result<ContainerList, Vec<String>> {
    let spec = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref());
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    if containers.iter().any(|c| c.name == container) {
        Ok(ContainerList::Containers)
    } else if init.iter().any(|c| c.name == container) {
        Ok(ContainerList::InitContainers)
    } else {
        Err(init
            .iter()
            .chain(containers)
            .map(|c| c.name.clone())
            .collect())
    }
}

/// The strategic-merge patch of one write. `precondition` is the `resourceVersion` the
/// Deployment must still have; `list` is where an image change's container is (ignored by
/// the other changes).
///
/// Per change:
/// - Image: `spec.template.spec.<list>: [{name, image}]`. Containers merge by name, so only
///   that container's image changes and every other field of it stays.
/// - Replicas: `spec.replicas`. A scalar; no new revision, so no annotations.
/// - Restart: `spec.template.metadata.annotations[restartedAt]`, as `kubectl rollout restart`
///   does: annotations merge by key, and a new template value makes a new revision.
/// - Template: `spec.template` with the directive `$patch: replace`, so the API server takes
///   the given template whole instead of merging it: a plain merge would keep containers,
///   env vars and fields that the later revision added and the earlier one did not have.
///   (`kubectl rollout undo` sends a JSON patch `replace /spec/template`; the directive does
///   the same in the one patch type every change uses, and merges the annotations beside it
///   even when the Deployment has none yet, which a JSON patch `add` could not.)
pub(super) fn patch_body(
    write: &DeploymentWrite,
    precondition: Option<&str>,
    list: ContainerList,
) -> ClusterResult<Value> {
    let (spec, new_revision) = match &write.change {
        DeploymentChange::Image { container, image } => (
            json!({"template": {"spec": {
                list.key(): [{"name": container, "image": image}]
            }}}),
            true,
        ),
        DeploymentChange::Replicas(replicas) => (json!({"replicas": replicas}), false),
        DeploymentChange::Restart { at } => (
            json!({"template": {"metadata": {"annotations": {
                // RFC 3339 (in UTC), as kubectl writes it; with the instant's fraction of a
                // second, so two restarts within one second are still two revisions.
                RESTARTED_AT_ANNOTATION: at.to_string()
            }}}}),
            true,
        ),
        DeploymentChange::Template { template, .. } => {
            let mut template = serde_json::to_value(template.as_ref()).map_err(|e| {
                ClusterError::Invalid(format!("the pod template cannot be written: {e}"))
            })?;
            if let Some(labels) = template
                .pointer_mut("/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                labels.remove(POD_TEMPLATE_HASH_LABEL);
            }
            let Value::Object(fields) = &mut template else {
                return Err(ClusterError::Invalid(
                    "the pod template is not an object".into(),
                ));
            };
            fields.insert("$patch".into(), "replace".into());
            (json!({ "template": template }), true)
        }
    };
    let mut metadata = Map::new();
    if new_revision {
        // The deployment controller copies these onto the new ReplicaSet: who and why.
        metadata.insert(
            "annotations".into(),
            json!({
                CHANGE_CAUSE_ANNOTATION: write.change_cause,
                DEPLOYED_BY_ANNOTATION: write.deployed_by,
            }),
        );
    }
    if let Some(version) = precondition {
        // The API server refuses (409) unless the Deployment still has this version.
        metadata.insert("resourceVersion".into(), version.into());
    }
    let mut body = json!({ "spec": spec });
    if !metadata.is_empty() {
        body["metadata"] = Value::Object(metadata);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::api::core::v1::PodTemplateSpec;

    use super::*;

    fn write(change: DeploymentChange) -> DeploymentWrite {
        DeploymentWrite {
            namespace: "payments".into(),
            name: "checkout".into(),
            change,
            change_cause: "roll back the batch size".into(),
            deployed_by: "alice via sre-mcp".into(),
            dry_run: false,
            resource_version: None,
        }
    }

    fn annotations() -> Value {
        json!({
            "kubernetes.io/change-cause": "roll back the batch size",
            "sre-mcp/deployed-by": "alice via sre-mcp"
        })
    }

    #[test]
    fn image_merges_one_container_by_name_and_records_who_and_why() {
        let change = DeploymentChange::Image {
            container: "app".into(),
            image: "registry.example/app:1.2.3".into(),
        };
        let body = patch_body(
            &write(change.clone()),
            Some("42"),
            ContainerList::Containers,
        );
        assert_eq!(
            body.unwrap(),
            json!({
                "metadata": {"annotations": annotations(), "resourceVersion": "42"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "registry.example/app:1.2.3"}
                ]}}}
            })
        );
        let init = patch_body(&write(change), None, ContainerList::InitContainers).unwrap();
        assert_eq!(
            init["spec"]["template"]["spec"],
            json!({"initContainers": [{"name": "app", "image": "registry.example/app:1.2.3"}]})
        );
        assert!(init["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn replicas_set_the_count_and_leave_the_annotations() {
        let body = patch_body(
            &write(DeploymentChange::Replicas(5)),
            None,
            ContainerList::Containers,
        );
        assert_eq!(body.unwrap(), json!({"spec": {"replicas": 5}}));
        let conditional = patch_body(
            &write(DeploymentChange::Replicas(0)),
            Some("7"),
            ContainerList::Containers,
        );
        assert_eq!(
            conditional.unwrap(),
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"replicas": 0}})
        );
    }

    #[test]
    fn restart_annotates_the_pod_template_with_the_time() {
        let at: Timestamp = "2026-03-01T12:30:05Z".parse().unwrap();
        let body = patch_body(
            &write(DeploymentChange::Restart { at }),
            None,
            ContainerList::Containers,
        );
        assert_eq!(
            body.unwrap(),
            json!({
                "metadata": {"annotations": annotations()},
                "spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": "2026-03-01T12:30:05Z"
                }}}}
            })
        );
    }

    #[test]
    fn template_replaces_the_whole_pod_template_without_the_hash_label() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "checkout", "pod-template-hash": "5d4f8c7b9"}},
            "spec": {"containers": [{"name": "checkout", "image": "checkout:1.0.0"}]}
        }))
        .unwrap();
        let change = DeploymentChange::Template {
            revision: 1,
            template: Box::new(template),
        };
        let body = patch_body(&write(change), Some("99"), ContainerList::Containers);
        assert_eq!(
            body.unwrap(),
            json!({
                "metadata": {"annotations": annotations(), "resourceVersion": "99"},
                "spec": {"template": {
                    "$patch": "replace",
                    "metadata": {"labels": {"app": "checkout"}},
                    "spec": {"containers": [{"name": "checkout", "image": "checkout:1.0.0"}]}
                }}
            })
        );
    }

    #[test]
    fn params_name_the_field_manager_and_carry_dry_run() {
        let mut dry = write(DeploymentChange::Replicas(1));
        dry.dry_run = true;
        let params = patch_params(&dry);
        assert_eq!(params.field_manager.as_deref(), Some("sre-mcp"));
        assert!(params.dry_run && !params.force);
        assert!(!patch_params(&write(DeploymentChange::Replicas(1))).dry_run);
    }

    #[test]
    fn containers_are_found_in_either_list_or_the_names_are_listed() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "checkout"},
            "spec": {"selector": {}, "template": {"spec": {
                "initContainers": [{"name": "migrate", "image": "m:1"}],
                "containers": [{"name": "checkout", "image": "c:1"}, {"name": "proxy", "image": "p:1"}]
            }}}
        }))
        .unwrap();
        assert_eq!(
            container_list(&deployment, "proxy"),
            Ok(ContainerList::Containers)
        );
        assert_eq!(
            container_list(&deployment, "migrate"),
            Ok(ContainerList::InitContainers)
        );
        assert_eq!(
            container_list(&deployment, "chekout"),
            Err(vec!["migrate".into(), "checkout".into(), "proxy".into()])
        );
    }
}
