//! A real Prometheus (2.42, from `tests/k8s/testenv.sh`) holding series for given service
//! metrics: request counters by status code and a latency histogram, backfilled with
//! `promtool` from half an hour ago to three hours ahead (so the `rate()` windows the queries
//! use have samples for the whole test run), plus one alerting rule per alert, which the
//! server itself evaluates and serves from `/api/v1/alerts`. The series follow the default
//! PromQL templates' conventions (`http_requests_total`, `http_request_duration_seconds`).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use sre_mcp::cluster::ServiceMetrics;

const STEP_SECONDS: i64 = 15;
const PAST_SECONDS: i64 = 30 * 60;
const FUTURE_SECONDS: i64 = 3 * 3600;

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// OpenMetrics text of counters growing at the given rates: `rate()` over any window reads
/// the rates back exactly.
pub fn openmetrics(metrics: &[ServiceMetrics], now: Timestamp) -> String {
    let now = now.as_second();
    let times: Vec<i64> = (-PAST_SECONDS / STEP_SECONDS..=FUTURE_SECONDS / STEP_SECONDS)
        .map(|i| now + i * STEP_SECONDS)
        .collect();
    let start = times[0];
    // (series, per-second rate) for counters; (series, value) for alert conditions.
    let mut counters: Vec<(String, f64)> = Vec::new();
    let mut gauges: Vec<(String, f64)> = Vec::new();
    for m in metrics {
        let scope = format!(
            "namespace=\"{}\",service=\"{}\"",
            escape(&m.namespace),
            escape(&m.service)
        );
        if let (Some(rps), Some(error_rate)) = (m.rps, m.error_rate) {
            counters.push((
                format!("http_requests_total{{{scope},code=\"200\"}}"),
                rps * (1.0 - error_rate),
            ));
            counters.push((
                format!("http_requests_total{{{scope},code=\"503\"}}"),
                rps * error_rate,
            ));
        }
        // Bucket bounds at p50 and p99 make histogram_quantile give them back exactly.
        if let (Some(rps), Some(p50), Some(p99)) = (m.rps, m.p50_ms, m.p99_ms) {
            for (le, share) in [
                (format!("{}", p50 / 1000.0), 0.5),
                (format!("{}", p99 / 1000.0), 0.99),
                ("+Inf".to_string(), 1.0),
            ] {
                counters.push((
                    format!("http_request_duration_seconds_bucket{{{scope},le=\"{le}\"}}"),
                    rps * share,
                ));
            }
        }
        for alert in &m.alerts {
            gauges.push((
                format!(
                    "sre_mcp_test_alert_condition{{{scope},alertname=\"{}\",severity=\"{}\",summary=\"{}\"}}",
                    escape(&alert.name),
                    escape(&alert.severity),
                    escape(&alert.summary)
                ),
                1.0,
            ));
        }
    }
    // Each metric family in one block, as OpenMetrics requires.
    counters.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (series, rate) in &counters {
        for t in &times {
            let _ = writeln!(out, "{series} {} {t}", rate * (t - start) as f64);
        }
    }
    for (series, value) in &gauges {
        for t in &times {
            let _ = writeln!(out, "{series} {value} {t}");
        }
    }
    out.push_str("# EOF\n");
    out
}

/// One alerting rule per alert name: firing while its condition series is 1, with the
/// summary as an annotation (as a real rule's `annotations.summary`).
pub fn alert_rules(metrics: &[ServiceMetrics]) -> String {
    let names: BTreeSet<&str> = metrics
        .iter()
        .flat_map(|m| m.alerts.iter().map(|a| a.name.as_str()))
        .collect();
    let mut out = String::from("groups:\n- name: sre-mcp-tests\n  interval: 1s\n  rules:\n");
    for name in names {
        let _ = write!(
            out,
            "  - alert: {name}\n    expr: sre_mcp_test_alert_condition{{alertname=\"{name}\"}} == 1\n    annotations:\n      summary: \"{{{{ $labels.summary }}}}\"\n"
        );
    }
    out
}

fn testenv(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/testenv.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .expect("running tests/k8s/testenv.sh");
    assert!(
        output.status.success(),
        "testenv.sh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Backfills the metrics into a fresh TSDB, starts Prometheus over it (the test
/// environment's `stop` stops it too), waits until every alert fires, and returns its URL.
pub async fn start(metrics: &[ServiceMetrics]) -> String {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sre-mcp-test-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let series = dir.join("series.om");
    let rules = dir.join("rules.yml");
    std::fs::write(&series, openmetrics(metrics, Timestamp::now())).unwrap();
    std::fs::write(&rules, alert_rules(metrics)).unwrap();
    let data = dir.join("data");
    testenv(&["backfill", series.to_str().unwrap(), data.to_str().unwrap()]);
    let started = testenv(&[
        "prometheus",
        data.to_str().unwrap(),
        rules.to_str().unwrap(),
    ]);
    let url = started
        .lines()
        .find_map(|l| l.strip_prefix("PROMETHEUS="))
        .expect("testenv.sh prometheus prints PROMETHEUS=URL")
        .to_string();
    let expected: usize = metrics.iter().map(|m| m.alerts.len()).sum();
    let alerts_url = format!("{url}/api/v1/alerts");
    super::eventually("every seeded alert to fire", || {
        let alerts_url = alerts_url.clone();
        async move {
            let body: serde_json::Value =
                reqwest::get(&alerts_url).await.ok()?.json().await.ok()?;
            let firing = body["data"]["alerts"]
                .as_array()?
                .iter()
                .filter(|a| a["state"] == "firing")
                .count();
            (firing >= expected).then_some(())
        }
    })
    .await;
    url
}
