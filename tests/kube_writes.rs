//! The kube backend's one write, `write_deployment`, against a real kube-apiserver and
//! kube-controller-manager (v1.20, `tests/k8s/testenv.sh`; no scheduler or kubelet, so pods stay
//! Pending, which a write does not need). Each test seeds its own namespace with Deployments the
//! controller-manager rolls into real ReplicaSet revisions, makes writes through the backend in
//! process, and checks what the API server stored and what the controller made of it: the new
//! revision, its change-cause and deployed-by, a rollback that replaces the template (and reuses
//! the old ReplicaSet), dry runs and stale reviews that change nothing, and refusals by RBAC and
//! by the `--namespaces` allowlist.
//!
//! Without a test API server the tests skip, or fail with `SRE_MCP_REQUIRE_K8S=1`, as
//! `tests/kube.rs` does.

mod k8s;

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::{Value, json};
use sre_mcp::cluster::kubernetes::KubeBackend;
use sre_mcp::cluster::kubernetes::config::{KubeSettings, KubeSource};
use sre_mcp::cluster::{
    CHANGE_CAUSE_ANNOTATION, ClusterBackend, ClusterError, DEPLOYED_BY_ANNOTATION,
    DeploymentChange, DeploymentWrite, FIELD_MANAGER, RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION,
};

const APP: &str = "web";
const CAUSE: &str = "roll web back: 1.1.0 exhausts the heap";
const AUTHOR: &str = "alice@example.com via sre-mcp";
/// How long a change that should not happen is given to show up anyway (a stored Deployment
/// change reaches the controller-manager and becomes a ReplicaSet well within this).
const QUIET: Duration = Duration::from_secs(3);

/// Revision 1: one container.
fn release_1() -> Value {
    json!([{
        "name": APP, "image": "registry.example/web:1.0.0",
        "env": [{"name": "LOG_LEVEL", "value": "info"}]
    }])
}

/// Revision 2 adds what revision 1 did not have: an env var, args and a second container.
fn release_2() -> Value {
    json!([
        {
            "name": APP, "image": "registry.example/web:1.1.0",
            "args": ["--batch-size=5000"],
            "env": [{"name": "LOG_LEVEL", "value": "info"},
                    {"name": "BATCH_SIZE", "value": "5000"}]
        },
        {"name": "proxy", "image": "registry.example/proxy:2.0.0"}
    ])
}

/// The kube backend on the test API server through `context`.
async fn backend(kubeconfig: &Path, context: &str, namespaces: Option<Vec<String>>) -> KubeBackend {
    KubeBackend::connect(KubeSettings {
        source: KubeSource::Kubeconfig(kubeconfig.to_path_buf()),
        context: Some(context.into()),
        api_timeout: Duration::from_secs(KubeSettings::DEFAULT_API_TIMEOUT_SECS),
        namespaces,
        prometheus: None,
    })
    .await
    .expect("the kube backend on the test API server")
}

/// A fresh namespace with `APP` rolled through these releases, one revision each.
async fn seed(admin: &kube::Client, prefix: &str, releases: &[Value]) -> String {
    let namespace = k8s::fresh_namespace(admin, prefix).await;
    for (i, containers) in releases.iter().enumerate() {
        let cause = format!("release {}", i + 1);
        k8s::apply_deployment(admin, &namespace, APP, 1, containers.clone(), &cause).await;
        k8s::replica_set_of_revision(admin, &namespace, APP, i as u32 + 1).await;
    }
    // Reviews read it next: their resourceVersion must not be overtaken by the controller's
    // status updates (see the conflict test).
    k8s::settled_deployment(admin, &namespace, APP).await;
    namespace
}

fn write(namespace: &str, change: DeploymentChange) -> DeploymentWrite {
    DeploymentWrite {
        namespace: namespace.into(),
        name: APP.into(),
        change,
        change_cause: CAUSE.into(),
        deployed_by: AUTHOR.into(),
        dry_run: false,
        resource_version: None,
    }
}

fn image(image: &str) -> DeploymentChange {
    DeploymentChange::Image {
        container: APP.into(),
        image: image.into(),
    }
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The pod template of a Deployment or ReplicaSet as JSON, for pointers into it.
fn template_of(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap()["spec"]["template"].clone()
}

fn container_names(template: &Value) -> Vec<String> {
    template["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn env_names(template: &Value) -> Vec<String> {
    template["spec"]["containers"][0]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn first_image(template: &Value) -> &str {
    template["spec"]["containers"][0]["image"].as_str().unwrap()
}

async fn stored(backend: &KubeBackend, namespace: &str) -> Deployment {
    backend.deployment(namespace, APP).await.unwrap()
}

async fn replica_sets(admin: &kube::Client, namespace: &str) -> Vec<ReplicaSet> {
    k8s::replica_sets_of(admin, namespace, APP).await
}

/// The Deployment's spec and annotations are as they were (its resourceVersion is no guide:
/// the controller-manager keeps updating the status; `generation` counts spec changes only).
fn assert_unchanged(before: &Deployment, after: &Deployment) {
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(
        serde_json::to_value(&after.spec).unwrap(),
        serde_json::to_value(&before.spec).unwrap()
    );
    assert_eq!(after.metadata.annotations, before.metadata.annotations);
}

#[tokio::test]
async fn image_change_rolls_a_new_revision_with_cause_and_author() {
    let Some(kubeconfig) = k8s::kubeconfig("image changes on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-image", &[release_1()]).await;
    let backend = backend(&kubeconfig, "test", None).await;
    assert!(!backend.info().read_only);

    let reviewed = stored(&backend, &namespace).await;
    let mut change = write(&namespace, image("registry.example/web:1.0.1"));
    change.resource_version = reviewed.metadata.resource_version.clone();
    let written = backend.write_deployment(&change).await.unwrap();
    let template = template_of(&written);
    assert_eq!(first_image(&template), "registry.example/web:1.0.1");
    // Merged by container name: the rest of the container is as it was.
    assert_eq!(env_names(&template), ["LOG_LEVEL"]);
    assert_eq!(
        annotation(&written.metadata, CHANGE_CAUSE_ANNOTATION),
        Some(CAUSE)
    );
    assert_eq!(
        annotation(&written.metadata, DEPLOYED_BY_ANNOTATION),
        Some(AUTHOR)
    );

    let new = k8s::replica_set_of_revision(&admin, &namespace, APP, 2).await;
    let new_template = template_of(&new);
    assert_eq!(first_image(&new_template), "registry.example/web:1.0.1");
    assert_eq!(env_names(&new_template), ["LOG_LEVEL"]);
    assert_eq!(
        annotation(&new.metadata, CHANGE_CAUSE_ANNOTATION),
        Some(CAUSE)
    );
    assert_eq!(
        annotation(&new.metadata, DEPLOYED_BY_ANNOTATION),
        Some(AUTHOR)
    );
    assert_eq!(replica_sets(&admin, &namespace).await.len(), 2);

    let managers: Vec<String> = stored(&backend, &namespace)
        .await
        .metadata
        .managed_fields
        .into_iter()
        .flatten()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == FIELD_MANAGER),
        "managers: {managers:?}"
    );
}

#[tokio::test]
async fn dry_run_returns_the_change_and_stores_nothing() {
    let Some(kubeconfig) = k8s::kubeconfig("dry-run writes on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-dry-run", &[release_1()]).await;
    let backend = backend(&kubeconfig, "test", None).await;
    let before = stored(&backend, &namespace).await;

    let mut change = write(&namespace, image("registry.example/web:9.9.9"));
    change.dry_run = true;
    change.resource_version = before.metadata.resource_version.clone();
    let would = backend.write_deployment(&change).await.unwrap();
    assert_eq!(
        first_image(&template_of(&would)),
        "registry.example/web:9.9.9"
    );
    assert_eq!(
        annotation(&would.metadata, DEPLOYED_BY_ANNOTATION),
        Some(AUTHOR)
    );

    let at = Timestamp::now();
    let mut restart = write(&namespace, DeploymentChange::Restart { at });
    restart.dry_run = true;
    let would = backend.write_deployment(&restart).await.unwrap();
    assert_eq!(
        template_of(&would)["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
        at.to_string()
    );

    tokio::time::sleep(QUIET).await;
    assert_unchanged(&before, &stored(&backend, &namespace).await);
    let revisions: Vec<String> = replica_sets(&admin, &namespace)
        .await
        .iter()
        .map(k8s::revision_of)
        .collect();
    assert_eq!(revisions, ["1"], "a dry run made no ReplicaSet");
}

#[tokio::test]
async fn a_stale_review_is_a_conflict_and_changes_nothing() {
    let Some(kubeconfig) = k8s::kubeconfig("stale writes on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-conflict", &[release_1()]).await;
    let backend = backend(&kubeconfig, "test", None).await;
    let reviewed = stored(&backend, &namespace).await;
    // Someone else scales it after the review.
    backend
        .write_deployment(&write(&namespace, DeploymentChange::Replicas(2)))
        .await
        .unwrap();
    let changed = stored(&backend, &namespace).await;
    assert_ne!(changed.metadata.generation, reviewed.metadata.generation);

    // An image change reads the Deployment first (to find the container) and sees it moved;
    // a restart goes straight to the API server, which refuses the precondition (409).
    for change in [
        image("registry.example/web:2.0.0"),
        DeploymentChange::Restart {
            at: Timestamp::now(),
        },
        DeploymentChange::Replicas(5),
    ] {
        let mut stale = write(&namespace, change.clone());
        stale.resource_version = reviewed.metadata.resource_version.clone();
        match backend.write_deployment(&stale).await {
            Err(ClusterError::Conflict { message }) => {
                assert!(
                    message.contains("changed since it was reviewed")
                        && message.contains("review the change anew"),
                    "{change:?}: {message}"
                );
            }
            other => panic!("{change:?}: expected a conflict, got {other:?}"),
        }
    }

    tokio::time::sleep(QUIET).await;
    let after = stored(&backend, &namespace).await;
    assert_unchanged(&changed, &after);
    assert_eq!(after.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(replica_sets(&admin, &namespace).await.len(), 1);
}

#[tokio::test]
async fn rollback_replaces_the_template_and_reuses_the_old_replica_set() {
    let Some(kubeconfig) = k8s::kubeconfig("rollbacks on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-rollback", &[release_1(), release_2()]).await;
    let backend = backend(&kubeconfig, "test", None).await;
    let history = replica_sets(&admin, &namespace).await;
    assert_eq!(history.len(), 2);
    let first = &history[0];
    assert_eq!(k8s::revision_of(first), "1");
    let current = template_of(&stored(&backend, &namespace).await);
    assert_eq!(container_names(&current), [APP, "proxy"]);
    assert_eq!(env_names(&current), ["LOG_LEVEL", "BATCH_SIZE"]);

    // Revision 1's template as its ReplicaSet holds it, pod-template-hash label included: the
    // backend must drop that label, or the controller would not recognise revision 1.
    let template = first.spec.as_ref().unwrap().template.clone().unwrap();
    let reviewed = stored(&backend, &namespace).await;
    let mut rollback = write(
        &namespace,
        DeploymentChange::Template {
            revision: 1,
            template: Box::new(template),
        },
    );
    rollback.resource_version = reviewed.metadata.resource_version.clone();
    let written = backend.write_deployment(&rollback).await.unwrap();

    // Replaced, not merged: what revision 2 added is gone.
    let restored = template_of(&written);
    assert_eq!(first_image(&restored), "registry.example/web:1.0.0");
    assert_eq!(container_names(&restored), [APP]);
    assert_eq!(env_names(&restored), ["LOG_LEVEL"]);
    assert!(
        restored["spec"]["containers"][0].get("args").is_none(),
        "{restored}"
    );
    assert_eq!(restored["metadata"]["labels"], json!({"app": APP}));
    assert_eq!(
        annotation(&written.metadata, CHANGE_CAUSE_ANNOTATION),
        Some(CAUSE)
    );

    // The controller takes revision 1's ReplicaSet back as revision 3, making none anew.
    let reused = k8s::replica_set_of_revision(&admin, &namespace, APP, 3).await;
    assert_eq!(reused.metadata.uid, first.metadata.uid);
    assert_eq!(
        annotation(&reused.metadata, CHANGE_CAUSE_ANNOTATION),
        Some(CAUSE)
    );
    assert_eq!(
        annotation(&reused.metadata, DEPLOYED_BY_ANNOTATION),
        Some(AUTHOR)
    );
    assert_eq!(replica_sets(&admin, &namespace).await.len(), 2);
    let deployment = k8s::eventually("the Deployment at revision 3", || async {
        let deployment = stored(&backend, &namespace).await;
        (annotation(&deployment.metadata, REVISION_ANNOTATION) == Some("3")).then_some(deployment)
    })
    .await;
    assert_eq!(template_of(&deployment), restored);
}

#[tokio::test]
async fn restart_makes_a_revision_with_restarted_at() {
    let Some(kubeconfig) = k8s::kubeconfig("restarts on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-restart", &[release_1()]).await;
    let backend = backend(&kubeconfig, "test", None).await;

    let at = Timestamp::now();
    let written = backend
        .write_deployment(&write(&namespace, DeploymentChange::Restart { at }))
        .await
        .unwrap();
    let restarted_at = at.to_string();
    assert_eq!(
        template_of(&written)["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
        restarted_at
    );
    assert!(restarted_at.parse::<Timestamp>().is_ok_and(|t| t == at));

    let new = k8s::replica_set_of_revision(&admin, &namespace, APP, 2).await;
    let template = template_of(&new);
    assert_eq!(
        template["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
        restarted_at
    );
    assert_eq!(first_image(&template), "registry.example/web:1.0.0");
    assert_eq!(
        annotation(&new.metadata, CHANGE_CAUSE_ANNOTATION),
        Some(CAUSE)
    );
    assert_eq!(
        annotation(&new.metadata, DEPLOYED_BY_ANNOTATION),
        Some(AUTHOR)
    );
}

#[tokio::test]
async fn replicas_set_the_count_without_a_revision() {
    let Some(kubeconfig) = k8s::kubeconfig("scaling on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-replicas", &[release_1()]).await;
    let backend = backend(&kubeconfig, "test", None).await;

    let written = backend
        .write_deployment(&write(&namespace, DeploymentChange::Replicas(3)))
        .await
        .unwrap();
    assert_eq!(written.spec.as_ref().unwrap().replicas, Some(3));
    // No new revision, so who and why stay those of the last rollout.
    assert_eq!(
        annotation(&written.metadata, CHANGE_CAUSE_ANNOTATION),
        Some("release 1")
    );
    assert_eq!(annotation(&written.metadata, DEPLOYED_BY_ANNOTATION), None);

    // The controller scales revision 1's ReplicaSet and makes no other.
    k8s::eventually("revision 1 scaled to 3", || async {
        let sets = replica_sets(&admin, &namespace).await;
        (sets.len() == 1 && sets[0].spec.as_ref().unwrap().replicas == Some(3)).then_some(())
    })
    .await;
    let after = stored(&backend, &namespace).await;
    assert_eq!(after.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(annotation(&after.metadata, REVISION_ANNOTATION), Some("1"));
}

#[tokio::test]
async fn credentials_without_patch_rights_are_forbidden() {
    let Some(kubeconfig) = k8s::kubeconfig("RBAC refusals of writes on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-forbidden", &[release_1()]).await;
    let before = stored(&backend(&kubeconfig, "test", None).await, &namespace).await;

    // `viewer` has no roles at all: each write is a real RBAC 403 on the patch.
    let viewer = backend(&kubeconfig, "viewer", None).await;
    for change in [
        DeploymentChange::Replicas(4),
        DeploymentChange::Restart {
            at: Timestamp::now(),
        },
        DeploymentChange::Template {
            revision: 1,
            template: Box::new(before.spec.clone().unwrap().template),
        },
    ] {
        match viewer
            .write_deployment(&write(&namespace, change.clone()))
            .await
        {
            Err(ClusterError::Forbidden {
                verb: "patch",
                resource: "deployments",
                namespace: Some(ns),
                message: Some(message),
            }) => {
                assert_eq!(ns, namespace);
                assert!(message.contains("\"viewer\""), "{message}");
            }
            other => panic!("{change:?} as viewer: expected forbidden patch, got {other:?}"),
        }
    }
    // An image change reads the Deployment first, which `viewer` may not either.
    let denied = viewer
        .write_deployment(&write(&namespace, image("registry.example/web:3.0.0")))
        .await;
    assert!(
        matches!(denied, Err(ClusterError::Forbidden { verb: "get", .. })),
        "{denied:?}"
    );

    // `reader` with the read-only rights in this namespace: the read passes, the patch is
    // refused.
    k8s::grant_deployment_reads(&admin, &namespace, "sre-mcp-readers").await;
    let reader = backend(&kubeconfig, "reader", None).await;
    let denied = k8s::eventually("the reader's role to take effect", || async {
        match reader
            .write_deployment(&write(&namespace, image("registry.example/web:3.0.0")))
            .await
        {
            Err(ClusterError::Forbidden { verb: "get", .. }) => None,
            other => Some(other),
        }
    })
    .await;
    assert!(
        matches!(
            denied,
            Err(ClusterError::Forbidden {
                verb: "patch",
                resource: "deployments",
                ..
            })
        ),
        "{denied:?}"
    );

    let after = stored(&backend(&kubeconfig, "test", None).await, &namespace).await;
    assert_unchanged(&before, &after);
}

#[tokio::test]
async fn a_namespace_outside_the_allowlist_is_refused_before_any_request() {
    let Some(kubeconfig) = k8s::kubeconfig("the --namespaces allowlist for writes") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-allowlist", &[release_1()]).await;
    let admin_backend = backend(&kubeconfig, "test", None).await;
    let before = stored(&admin_backend, &namespace).await;

    let limited = backend(&kubeconfig, "test", Some(vec!["payments".into()])).await;
    for change in [
        image("registry.example/web:4.0.0"),
        DeploymentChange::Replicas(0),
        DeploymentChange::Restart {
            at: Timestamp::now(),
        },
    ] {
        match limited
            .write_deployment(&write(&namespace, change.clone()))
            .await
        {
            Err(ClusterError::NotAllowed {
                namespace: refused,
                allowed,
            }) => {
                assert_eq!(refused, namespace);
                assert_eq!(allowed, ["payments"]);
            }
            other => panic!("{change:?}: expected not allowed, got {other:?}"),
        }
    }
    assert_unchanged(&before, &stored(&admin_backend, &namespace).await);
}

#[tokio::test]
async fn missing_names_and_invalid_changes_say_what_is_wrong() {
    let Some(kubeconfig) = k8s::kubeconfig("refused writes on the kube backend") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let namespace = seed(&admin, "kw-refused", &[release_1()]).await;
    let backend = backend(&kubeconfig, "test", None).await;
    let before = stored(&backend, &namespace).await;

    // A Deployment that is not there, by either path: the names that are come back.
    for change in [
        DeploymentChange::Replicas(2),
        image("registry.example/web:5.0.0"),
    ] {
        let mut typo = write(&namespace, change.clone());
        typo.name = "wbe".into();
        match backend.write_deployment(&typo).await {
            Err(ClusterError::NotFound {
                kind: "deployment",
                name,
                existing: Some(existing),
                ..
            }) => {
                assert_eq!(name, "wbe");
                assert_eq!(existing, [APP]);
            }
            other => panic!("{change:?}: expected not found, got {other:?}"),
        }
    }
    // A container the Deployment does not have: refused, not added.
    let unknown = DeploymentChange::Image {
        container: "wbe".into(),
        image: "registry.example/web:5.0.0".into(),
    };
    match backend.write_deployment(&write(&namespace, unknown)).await {
        Err(ClusterError::NotFound {
            kind: "container",
            existing: Some(existing),
            ..
        }) => assert_eq!(existing, [APP]),
        other => panic!("expected the container not found, got {other:?}"),
    }
    // What the API server's validation says comes back (422).
    match backend
        .write_deployment(&write(&namespace, DeploymentChange::Replicas(-1)))
        .await
    {
        Err(ClusterError::Invalid(message)) => {
            assert!(message.contains("greater than or equal to 0"), "{message}");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    assert_unchanged(&before, &stored(&backend, &namespace).await);
    assert_eq!(replica_sets(&admin, &namespace).await.len(), 1);
}
