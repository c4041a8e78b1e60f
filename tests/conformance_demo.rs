//! The backend conformance suite (`tests/conformance/`) against the embedded demo cluster.
//! A Kubernetes backend loaded with the same fixtures runs the same scenarios.

mod conformance;

use jiff::Timestamp;
use sre_mcp::cluster::demo::DemoCluster;

fn demo() -> DemoCluster {
    DemoCluster::load(Timestamp::now()).expect("demo fixtures load")
}

#[tokio::test]
async fn gets_and_not_found() {
    conformance::gets_and_not_found(&demo()).await;
}

#[tokio::test]
async fn label_selectors_filter() {
    conformance::label_selectors_filter(&demo()).await;
}

#[tokio::test]
async fn field_selectors_filter() {
    conformance::field_selectors_filter(&demo()).await;
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    conformance::lists_page_with_limit_and_continue(&demo()).await;
}

#[tokio::test]
async fn log_queries_push_down() {
    conformance::log_queries_push_down(&demo()).await;
}

#[tokio::test]
async fn incidents_are_visible() {
    conformance::incidents_are_visible(&demo()).await;
}

#[tokio::test]
async fn current_revision_agrees_everywhere() {
    conformance::current_revision_agrees_everywhere(&demo()).await;
}
