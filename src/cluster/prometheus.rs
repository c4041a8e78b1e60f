//! Service metrics from a Prometheus server (`--prometheus URL`): error rate, p50/p99 latency
//! and request rate per service by PromQL instant queries, and firing alerts from the
//! server's own `/api/v1/alerts`. The queries are templates (`--prometheus-queries FILE`, a
//! small TOML) whose defaults fit the common `http_requests_total` /
//! `http_request_duration_seconds` exporters. A service with no series reads "unknown": a
//! missing number is never filled in.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use super::{Alert, ClusterError, ClusterResult, ServiceMetrics};

/// The PromQL templates and label names. Every field has a default; a TOML file overrides
/// any of them. In a template, `$scope` becomes the namespace matcher
/// (`namespace="payments"`, or every allowed namespace) and `$window` the rate window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricQueries {
    /// Range of the `rate()` windows, a PromQL duration.
    pub window: String,
    /// The label that holds a series' Kubernetes namespace.
    pub namespace_label: String,
    /// The label that holds the service's name, matched against the Deployment's name.
    pub service_label: String,
    /// Requests per second, by namespace and service.
    pub rps: String,
    /// Fraction of requests failing (0–1), by namespace and service.
    pub error_rate: String,
    /// Median latency in milliseconds, by namespace and service.
    pub p50_ms: String,
    /// 99th percentile latency in milliseconds, by namespace and service.
    pub p99_ms: String,
    /// Alert labels that may name the service, tried in order; an alert with none of them is
    /// matched by its `pod` label (`<service>-<hash>-<id>`).
    pub alert_service_labels: Vec<String>,
}

impl Default for MetricQueries {
    fn default() -> MetricQueries {
        let by = "sum by (namespace, service)";
        let requests = "http_requests_total{$scope}";
        let latency = |q: &str| {
            format!(
                "1000 * histogram_quantile({q}, sum by (namespace, service, le) (rate(http_request_duration_seconds_bucket{{$scope}}[$window])))"
            )
        };
        MetricQueries {
            window: "5m".into(),
            namespace_label: "namespace".into(),
            service_label: "service".into(),
            rps: format!("{by} (rate({requests}[$window]))"),
            error_rate: format!(
                "{by} (rate(http_requests_total{{$scope, code=~\"5..\"}}[$window])) / {by} (rate({requests}[$window]))"
            ),
            p50_ms: latency("0.5"),
            p99_ms: latency("0.99"),
            alert_service_labels: ["service", "deployment", "app", "job", "container"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl MetricQueries {
    /// Reads a TOML file of overrides (any subset of the fields), and checks it.
    pub fn from_file(path: &Path) -> Result<MetricQueries, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--prometheus-queries {}: {e}", path.display()))?;
        let queries: MetricQueries = toml::from_str(&text)
            .map_err(|e| format!("--prometheus-queries {}: {e}", path.display()))?;
        queries
            .check()
            .map_err(|e| format!("--prometheus-queries {}: {e}", path.display()))?;
        Ok(queries)
    }

    /// Label names must be Prometheus label names, the window a PromQL duration, and every
    /// template must scope itself with `$scope` (or it would read other namespaces).
    pub fn check(&self) -> Result<(), String> {
        let label = regex::Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").expect("static regex");
        for (field, value) in [
            ("namespace_label", &self.namespace_label),
            ("service_label", &self.service_label),
        ]
        .into_iter()
        .chain(
            self.alert_service_labels
                .iter()
                .map(|l| ("alert_service_labels", l)),
        ) {
            if !label.is_match(value) {
                return Err(format!(
                    "{field} {value:?} is not a Prometheus label name (letters, digits and _, not starting with a digit)"
                ));
            }
        }
        let duration = regex::Regex::new("^([0-9]+(ms|s|m|h|d|w|y))+$").expect("static regex");
        if !duration.is_match(&self.window) {
            return Err(format!(
                "window {:?} is not a PromQL duration (e.g. 5m, 1m30s)",
                self.window
            ));
        }
        for (field, template) in self.templates() {
            if !template.contains("$scope") {
                return Err(format!(
                    "query {field} has no $scope: it must select by namespace, e.g. http_requests_total{{$scope}}"
                ));
            }
        }
        Ok(())
    }

    fn templates(&self) -> [(&'static str, &str); 4] {
        [
            ("rps", &self.rps),
            ("error_rate", &self.error_rate),
            ("p50_ms", &self.p50_ms),
            ("p99_ms", &self.p99_ms),
        ]
    }

    /// A template with `$scope` and `$window` filled in.
    fn expand(&self, template: &str, scope: &Scope) -> String {
        let matcher = match scope {
            Scope::Namespace(ns) => format!("{}=\"{}\"", self.namespace_label, escape(ns)),
            Scope::Namespaces(list) => format!(
                "{}=~\"{}\"",
                self.namespace_label,
                list.iter()
                    .map(|ns| escape(&regex::escape(ns)))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            Scope::All => format!("{}!=\"\"", self.namespace_label),
        };
        template
            .replace("$scope", &matcher)
            .replace("$window", &self.window)
    }
}

/// A PromQL string literal's escapes.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Which namespaces a read covers.
#[derive(Debug, Clone)]
pub enum Scope {
    Namespace(String),
    /// The `--namespaces` allowlist.
    Namespaces(Vec<String>),
    All,
}

/// A Prometheus server and how to ask it.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: reqwest::Url,
    queries: MetricQueries,
    http: reqwest::Client,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ApiResponse<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct VectorData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]`.
    value: (f64, String),
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<PromAlert>,
}

#[derive(Deserialize)]
struct PromAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    state: String,
    #[serde(rename = "activeAt")]
    active_at: Option<Timestamp>,
}

impl Prometheus {
    /// `url` is the server's base URL (`http://prometheus:9090`, or a path prefix behind a
    /// proxy). Checks the URL only; nothing is requested until the first read.
    pub fn new(url: &str, queries: MetricQueries, timeout: Duration) -> Result<Prometheus, String> {
        let mut base = reqwest::Url::parse(url).map_err(|e| {
            format!("--prometheus {url:?}: {e} (give the server's URL, e.g. http://prometheus.monitoring:9090)")
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "--prometheus {url:?}: the scheme must be http or https"
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        queries.check()?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("building the Prometheus HTTP client: {e}"))?;
        Ok(Prometheus {
            base,
            queries,
            http,
            timeout,
        })
    }

    /// The server's URL without credentials, for `system://health` and `_meta`.
    pub fn describe(&self) -> String {
        let mut url = self.base.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        format!("Prometheus {}", url.as_str().trim_end_matches('/'))
    }

    /// Every service with series or firing alerts in the scope, with the signals Prometheus
    /// has for it (the others `None`).
    pub async fn service_metrics(&self, scope: &Scope) -> ClusterResult<Vec<ServiceMetrics>> {
        let [rps, error_rate, p50, p99] = self.queries.templates().map(|(field, template)| {
            let query = self.queries.expand(template, scope);
            async move { self.query(field, &query).await }
        });
        let (rps, error_rate, p50, p99, alerts) =
            tokio::try_join!(rps, error_rate, p50, p99, self.alerts(scope))?;
        let mut services: BTreeMap<(String, String), ServiceMetrics> = BTreeMap::new();
        for (signal, samples) in [
            (Signal::Rps, rps),
            (Signal::ErrorRate, error_rate),
            (Signal::P50, p50),
            (Signal::P99, p99),
        ] {
            for (namespace, name, value) in samples {
                let m = service_entry(&mut services, namespace, name);
                let slot = match signal {
                    Signal::Rps => &mut m.rps,
                    Signal::ErrorRate => &mut m.error_rate,
                    Signal::P50 => &mut m.p50_ms,
                    Signal::P99 => &mut m.p99_ms,
                };
                *slot = Some(value);
            }
        }
        for (namespace, name, alert) in alerts {
            service_entry(&mut services, namespace, name)
                .alerts
                .push(alert);
        }
        Ok(services.into_values().collect())
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> ClusterResult<T> {
        let url = self.base.join(path).expect("static API path");
        let response = self
            .http
            .get(url)
            .query(query)
            .send()
            .await
            .map_err(|e| self.unreachable(what, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.unreachable(what, e))?;
        let parsed: ApiResponse<T> = serde_json::from_slice(&body).map_err(|e| {
            let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            ClusterError::Unavailable {
                message: format!(
                    "{} answered {what} with HTTP {status} and a body that is not the Prometheus API's JSON ({e}): {start:?}",
                    self.describe()
                ),
                cause: None,
            }
        })?;
        match (parsed.status.as_str(), parsed.data) {
            ("success", Some(data)) => Ok(data),
            _ => {
                let message = format!(
                    "{} refused {what}: {}: {}",
                    self.describe(),
                    parsed.error_type.as_deref().unwrap_or("error"),
                    parsed.error.as_deref().unwrap_or("no reason given")
                );
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Err(ClusterError::Unavailable {
                        message,
                        cause: None,
                    })
                } else {
                    Err(ClusterError::Invalid(message))
                }
            }
        }
    }

    fn unreachable(&self, what: &str, e: reqwest::Error) -> ClusterError {
        if e.is_timeout() {
            return ClusterError::Timeout {
                operation: format!("{} {what}", self.describe()),
                after: self.timeout,
            };
        }
        ClusterError::Unavailable {
            message: format!("{} did not answer {what}", self.describe()),
            cause: Some(Box::new(e)),
        }
    }

    /// An instant query; each sample as (namespace, service, value). Samples without the two
    /// labels, or whose value is not a finite number (NaN for 0/0 with no traffic), are left
    /// out: that signal is unknown for the service.
    async fn query(&self, field: &str, query: &str) -> ClusterResult<Vec<(String, String, f64)>> {
        let what = format!("the {field} query `{query}`");
        let data: VectorData = self.get(&what, "api/v1/query", &[("query", query)]).await?;
        if data.result_type != "vector" {
            return Err(ClusterError::Invalid(format!(
                "{}: {what} gave a {} (it must give an instant vector, one sample per service)",
                self.describe(),
                data.result_type
            )));
        }
        Ok(data
            .result
            .into_iter()
            .filter_map(|s| {
                let namespace = s.metric.get(&self.queries.namespace_label)?.clone();
                let service = s.metric.get(&self.queries.service_label)?.clone();
                let value: f64 = s.value.1.parse().ok()?;
                value.is_finite().then_some((namespace, service, value))
            })
            .collect())
    }

    /// Firing alerts in the scope, each with the service it names.
    async fn alerts(&self, scope: &Scope) -> ClusterResult<Vec<(String, String, Alert)>> {
        let data: AlertsData = self.get("the alerts request", "api/v1/alerts", &[]).await?;
        let in_scope = |ns: &str| match scope {
            Scope::Namespace(one) => ns == one,
            Scope::Namespaces(list) => list.iter().any(|n| n == ns),
            Scope::All => true,
        };
        Ok(data
            .alerts
            .into_iter()
            .filter(|a| a.state == "firing")
            .filter_map(|a| {
                let namespace = a.labels.get(&self.queries.namespace_label)?.clone();
                if !in_scope(&namespace) {
                    return None;
                }
                let service = self
                    .queries
                    .alert_service_labels
                    .iter()
                    .find_map(|l| a.labels.get(l).cloned())
                    .or_else(|| a.labels.get("pod").and_then(|p| pod_owner(p)))?;
                let annotation = |key: &str| a.annotations.get(key).filter(|s| !s.is_empty());
                let alert = Alert {
                    name: a.labels.get("alertname").cloned().unwrap_or_default(),
                    severity: a
                        .labels
                        .get("severity")
                        .cloned()
                        .unwrap_or_else(|| "none".into()),
                    since: a.active_at.unwrap_or_else(Timestamp::now),
                    summary: annotation("summary")
                        .or_else(|| annotation("description"))
                        .or_else(|| annotation("message"))
                        .cloned()
                        .unwrap_or_default(),
                };
                Some((namespace, service, alert))
            })
            .collect())
    }
}

/// The metrics of one service, created empty on first sight.
fn service_entry(
    services: &mut BTreeMap<(String, String), ServiceMetrics>,
    namespace: String,
    service: String,
) -> &mut ServiceMetrics {
    services
        .entry((namespace.clone(), service.clone()))
        .or_insert_with(|| ServiceMetrics {
            service,
            namespace,
            error_rate: None,
            p50_ms: None,
            p99_ms: None,
            rps: None,
            alerts: Vec::new(),
        })
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Rps,
    ErrorRate,
    P50,
    P99,
}

/// The Deployment a pod name belongs to, by the Deployment controller's naming
/// (`<deployment>-<pod-template-hash>-<5 characters>`, both suffixes drawn from Kubernetes'
/// alphabet without vowels, so `node-exporter-x2k9p` is not mistaken for one).
fn pod_owner(pod: &str) -> Option<String> {
    const ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";
    let generated = |s: &str| s.chars().all(|c| ALPHABET.contains(c));
    let (rest, id) = pod.rsplit_once('-')?;
    let (deployment, hash) = rest.rsplit_once('-')?;
    (id.len() == 5
        && (6..=10).contains(&hash.len())
        && generated(id)
        && generated(hash)
        && !deployment.is_empty())
    .then(|| deployment.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_scope_and_window() {
        let q = MetricQueries::default();
        assert!(q.check().is_ok());
        let one = q.expand(&q.error_rate, &Scope::Namespace("payments".into()));
        assert!(
            one.contains(r#"http_requests_total{namespace="payments", code=~"5.."}[5m]"#),
            "{one}"
        );
        let allowed = q.expand(&q.rps, &Scope::Namespaces(vec!["a.b".into(), "c".into()]));
        assert!(allowed.contains(r#"namespace=~"a\\.b|c""#), "{allowed}");
        let all = q.expand(&q.p99_ms, &Scope::All);
        assert!(
            all.contains(r#"namespace!="""#) && all.contains("0.99"),
            "{all}"
        );
    }

    #[test]
    fn overrides_are_checked() {
        let q: MetricQueries =
            toml::from_str("service_label = \"app\"\nwindow = \"1m30s\"").unwrap();
        assert_eq!(q.service_label, "app");
        assert_eq!(q.rps, MetricQueries::default().rps);
        assert!(q.check().is_ok());
        let bad: MetricQueries = toml::from_str("window = \"5 minutes\"").unwrap();
        assert!(bad.check().unwrap_err().contains("PromQL duration"));
        let unscoped: MetricQueries = toml::from_str("rps = \"sum(up)\"").unwrap();
        assert!(unscoped.check().unwrap_err().contains("$scope"));
        let label: MetricQueries = toml::from_str("service_label = \"app-name\"").unwrap();
        assert!(label.check().unwrap_err().contains("label name"));
        assert!(
            toml::from_str::<MetricQueries>("rate_window = \"5m\"")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn pods_name_their_deployment() {
        assert_eq!(
            pod_owner("payment-gateway-7d9f8b6c4-x2k9p").as_deref(),
            Some("payment-gateway")
        );
        assert_eq!(pod_owner("etcd-0"), None);
        assert_eq!(pod_owner("node-exporter-x2k9p"), None);
    }

    #[test]
    fn urls_are_checked_and_described_without_credentials() {
        let p = Prometheus::new(
            "https://user:secret@prom.example:9090/prometheus",
            MetricQueries::default(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            p.describe(),
            "Prometheus https://prom.example:9090/prometheus"
        );
        assert_eq!(
            p.base.join("api/v1/query").unwrap().path(),
            "/prometheus/api/v1/query"
        );
        assert!(
            Prometheus::new(
                "prom:9090",
                MetricQueries::default(),
                Duration::from_secs(1)
            )
            .unwrap_err()
            .contains("scheme")
        );
    }
}
