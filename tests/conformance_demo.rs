//! The backend conformance suite (`tests/conformance/`) against the embedded demo cluster.
//! A Kubernetes backend loaded with the same fixtures runs the same scenarios.

mod conformance;

use jiff::Timestamp;
use sre_mcp::cluster::demo::DemoCluster;

fn demo() -> DemoCluster {
    DemoCluster::load(Timestamp::now()).expect("demo fixtures load")
}

/// One test per scenario, each on a freshly loaded demo cluster.
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                conformance::$scenario(&demo()).await;
            }
        )*
    };
}

scenarios!(
    gets_and_not_found,
    label_selectors_filter,
    field_selectors_filter,
    lists_page_with_limit_and_continue,
    log_queries_push_down,
    incidents_are_visible,
    current_revision_agrees_everywhere,
);
