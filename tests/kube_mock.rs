//! Error paths a v1.20 test API server cannot produce — throttling (429), server errors (5xx)
//! and an API server that never answers — played with kube's mock service (tower-test), as
//! kube-rs recommends: each must come back as a bounded error that says what happened and what
//! to do, and a not-found must name what exists.

use std::time::{Duration, Instant};

use http::{Request, Response};
use kube::client::Body;
use sre_mcp::cluster::kubernetes::KubeBackend;
use sre_mcp::cluster::kubernetes::config::{KubeSettings, KubeSource};
use sre_mcp::cluster::{ClusterBackend, ClusterError, ListQuery};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn backend(timeout: Duration) -> (KubeBackend, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let settings = KubeSettings {
        source: KubeSource::Kubeconfig("mock".into()),
        context: Some("mock".into()),
        api_timeout: timeout,
        namespaces: None,
        prometheus: None,
    };
    let backend =
        KubeBackend::with_client(client, "mock".into(), "https://mock:6443".into(), settings);
    (backend, handle)
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// Answers the next request with `response`, checking its path.
async fn answer(handle: &mut Handle, path_contains: &str, response: Response<Body>) {
    let (request, send) = handle.next_request().await.expect("a request");
    assert!(
        request.uri().to_string().contains(path_contains),
        "{}",
        request.uri()
    );
    send.send_response(response);
}

#[tokio::test]
async fn throttling_reads_as_retry_later() {
    let (backend, mut handle) = backend(Duration::from_secs(5));
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "/api/v1/namespaces/payments/pods",
            status(
                429,
                "TooManyRequests",
                "too many requests, please try again later",
            ),
        )
        .await;
    });
    let error = backend
        .pods(&ListQuery::in_namespace("payments"))
        .await
        .unwrap_err();
    server.await.unwrap();
    let message = error.to_string();
    assert!(
        matches!(error, ClusterError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        message.contains("429") && message.contains("retry"),
        "{message}"
    );
}

#[tokio::test]
async fn server_errors_name_the_request_and_the_status() {
    let (backend, mut handle) = backend(Duration::from_secs(5));
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "/apis/apps/v1/namespaces/payments/deployments/checkout",
            status(503, "ServiceUnavailable", "etcdserver: leader changed"),
        )
        .await;
    });
    let error = backend
        .deployment("payments", "checkout")
        .await
        .unwrap_err();
    server.await.unwrap();
    let message = error.to_string();
    assert!(
        message.contains("503")
            && message.contains("deployments \"checkout\"")
            && message.contains("leader changed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_silent_api_server_times_out_within_the_bound() {
    let (backend, mut handle) = backend(Duration::from_millis(300));
    // Take the request and never answer it.
    let server = tokio::spawn(async move {
        let pending = handle.next_request().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(pending);
    });
    let started = Instant::now();
    let error = backend.namespaces(&ListQuery::all()).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ClusterError::Timeout { .. }), "{error:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(error.to_string().contains("--api-timeout"), "{error}");
    server.abort();
}

#[tokio::test]
async fn not_found_lists_what_exists() {
    let (backend, mut handle) = backend(Duration::from_secs(5));
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            "/api/v1/namespaces/payments/pods/checkout-1",
            status(404, "NotFound", "pods \"checkout-1\" not found"),
        )
        .await;
        let names = serde_json::json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "items": [
                {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                 "metadata": {"name": "checkout-7d4f9-abcde"}},
                {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                 "metadata": {"name": "cart-5c6d7-fghij"}}
            ]
        });
        answer(
            &mut handle,
            "/api/v1/namespaces/payments/pods",
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&names).unwrap()))
                .unwrap(),
        )
        .await;
    });
    let error = backend.pod("payments", "checkout-1").await.unwrap_err();
    server.await.unwrap();
    match error {
        ClusterError::NotFound { kind, existing, .. } => {
            assert_eq!(kind, "pod");
            assert_eq!(
                existing.unwrap(),
                ["checkout-7d4f9-abcde", "cart-5c6d7-fghij"]
            );
        }
        other => panic!("{other:?}"),
    }
}
