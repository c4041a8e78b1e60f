//! The write tools through the real binary and rmcp's client against a real kube-apiserver and
//! controller-manager (`tests/k8s/testenv.sh`): a deploy makes a real ReplicaSet revision with
//! the reason as its change-cause, a rollback restores the previous image, a production change
//! goes through its confirmation token, a dry run stores nothing, and the kube backend's
//! default write mode (off) refuses. The test plays the kubelet: it binds the controller's new
//! pods to a test node and reports them running and ready, so rollouts complete as on a
//! cluster.

mod common;
mod k8s;

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const APP: &str = "web";

async fn start(kubeconfig: &Path, data: &Path, extra: &[&str]) -> common::Client {
    let mut args = vec![
        "--backend",
        "kube",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--no-embeddings",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    common::start(&args).await
}

/// Plays the kubelet for `namespace` until dropped: binds each new pod to `node` and reports
/// its containers running and ready.
fn kubelet_loop(
    admin: kube::Client,
    namespace: String,
    node: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods = Api::<Pod>::namespaced(admin.clone(), &namespace);
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list.items {
                    if pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let spec = pod.spec.clone().unwrap_or_default();
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if ready {
                        continue;
                    }
                    // The controller may delete a pod between the list and these writes
                    // (a rollout scales the old ReplicaSet down): that pod is simply gone.
                    if spec.node_name.is_none() {
                        let binding = json!({
                            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": node}
                        });
                        let bound: Result<Value, _> = pods
                            .create_subresource("binding", &name, &Default::default(), &binding)
                            .await;
                        if bound.is_err() {
                            continue;
                        }
                    }
                    let container = &spec.containers[0];
                    let status = k8s::running(
                        &container.name,
                        container.image.as_deref().unwrap_or(""),
                        Timestamp::now(),
                    );
                    let _ = pods
                        .patch_status(
                            &name,
                            &Default::default(),
                            &kube::api::Patch::Merge(&json!({ "status": status })),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

async fn report(client: &common::Client, tool: &str, arguments: Value) -> (Value, String) {
    let result = common::call(client, tool, arguments.clone()).await;
    let text = common::text(&result);
    assert_ne!(result.is_error, Some(true), "{tool}({arguments}): {text}");
    (result.structured_content.unwrap(), text)
}

async fn current(client: &common::Client, service: &str) -> (i64, Value) {
    let deploys = common::ok(client, "get_recent_deploys", json!({"service": service})).await;
    let current = deploys["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["current"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("a current revision: {deploys}"));
    (current["revision"].as_i64().unwrap(), current)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_rollback_through_mcp_make_real_revisions() {
    let Some(kubeconfig) = k8s::kubeconfig("the write tools on the test API server") else {
        return;
    };
    let admin = k8s::client(&kubeconfig, "test").await;
    let kubelet = k8s::Kubelet::start(&k8s::pki_dir(&kubeconfig)).await;
    let node = k8s::ensure_node(&admin, &kubelet).await;
    let namespace = k8s::fresh_namespace(&admin, "writes").await;
    let feeder = kubelet_loop(admin.clone(), namespace.clone(), node);
    for (i, image) in ["registry.example/web:1.0.0", "registry.example/web:1.1.0"]
        .iter()
        .enumerate()
    {
        k8s::apply_deployment(
            &admin,
            &namespace,
            APP,
            2,
            json!([{"name": APP, "image": image}]),
            &format!("release {}", i + 1),
        )
        .await;
        k8s::replica_set_of_revision(&admin, &namespace, APP, i as u32 + 1).await;
    }
    k8s::settled_deployment(&admin, &namespace, APP).await;
    let service = format!("{namespace}/{APP}");
    let data = common::fresh_data_dir("kube-writes");

    // The kube backend's default: writes off.
    let client = start(&kubeconfig, &data, &[]).await;
    let refused = common::call(
        &client,
        "deploy_with_review",
        json!({"service": service, "image": "registry.example/web:1.2.0", "reason": "x"}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        common::text(&refused).contains("writes are off"),
        "{}",
        common::text(&refused)
    );
    client.cancel().await.unwrap();

    let env = format!("{namespace}=staging");
    let client = start(
        &kubeconfig,
        &data,
        &[
            "--write-mode",
            "on",
            "--environment",
            &env,
            "--rollout-timeout",
            "60",
        ],
    )
    .await;
    let (before, _) = current(&client, &service).await;
    assert_eq!(before, 2);
    // A dry run: validated by the API server, nothing stored.
    let deploy = json!({"service": service, "image": "registry.example/web:1.2.0", "reason": "WEB-7: faster image resize"});
    let (dry, text) = report(&client, "deploy_with_review", deploy.clone()).await;
    assert_eq!(dry["outcome"], "dry_run", "{text}");
    assert!(
        dry["change"]["validated_by"]
            .as_str()
            .unwrap()
            .contains("dryRun=All"),
        "{text}"
    );
    assert_eq!(
        dry["change"]["diff"][0]["after"],
        "registry.example/web:1.2.0"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        current(&client, &service).await.0,
        2,
        "a dry run stores nothing"
    );

    // Applied: a new ReplicaSet revision with the reason and the author, watched to the end.
    let mut apply = deploy.clone();
    apply["dry_run"] = json!(false);
    let (applied, text) = report(&client, "deploy_with_review", apply).await;
    assert_eq!(applied["outcome"], "applied", "{text}");
    assert_eq!(applied["rollout"]["status"], "complete", "{text}");
    assert_eq!(applied["revision_after"], 3, "{text}");
    let (revision, record) = current(&client, &service).await;
    assert_eq!(revision, 3);
    assert_eq!(record["images"][0], "registry.example/web:1.2.0");
    assert_eq!(record["change_cause"], "WEB-7: faster image resize");
    assert!(
        record["deployed_by"]
            .as_str()
            .unwrap()
            .starts_with("sre-mcp"),
        "{record}"
    );

    // Rolled back to the previous revision: its image again, as a new revision.
    let (back, text) = report(
        &client,
        "rollback_deployment",
        json!({"service": service, "reason": "WEB-7 resize is slower", "dry_run": false}),
    )
    .await;
    assert_eq!(back["outcome"], "applied", "{text}");
    let (revision, record) = current(&client, &service).await;
    assert_eq!(revision, 4);
    assert_eq!(
        record["images"][0],
        "registry.example/web:1.2.0".replace("1.2.0", "1.1.0")
    );
    client.cancel().await.unwrap();

    // Production: the dry run's token applies exactly that change.
    let env = format!("{namespace}=production");
    let client = start(
        &kubeconfig,
        &data,
        &[
            "--write-mode",
            "on",
            "--environment",
            &env,
            "--rollout-timeout",
            "60",
        ],
    )
    .await;
    let scale = json!({"service": service, "replicas": 3, "reason": "load test"});
    let (dry, text) = report(&client, "scale_deployment", scale).await;
    let call = dry["confirmation"]["call"]["arguments"].clone();
    assert!(call["confirmation_token"].is_string(), "{text}");
    let (scaled, text) = report(&client, "scale_deployment", call).await;
    assert_eq!(scaled["outcome"], "applied", "{text}");
    assert_eq!(scaled["rollout"]["ready"], 3, "{text}");
    let history = common::read_json(&client, &format!("deployment://history/{service}")).await;
    let outcomes: Vec<&str> = history["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "applied", "dry_run", "applied", "applied", "dry_run", "refused"
        ],
        "{history}"
    );
    client.cancel().await.unwrap();
    feeder.abort();
}
