//! Secret masking end to end (issue 12), through the real binary over stdio.
//!
//! A copy of the demo fixtures gets credentials of every class the masker knows: in log lines
//! of several pods and containers (the crashed payment-gateway's previous log, a stack trace's
//! continuation line, a private key over several lines), in events, a pod's env, annotation and
//! termination message, a rollout's change-cause and deployer, an alert's summary, and in a
//! runbook folder. Then every tool the server lists is called with arguments that reach that
//! data, every resource and resource template is read (the pages of a shaped result too), every
//! prompt is rendered and every completion asked, with a client that offers sampling and asks
//! for progress. No reply — text, structured content, `_meta`, errors, progress notifications,
//! the sampling request the server sends — may hold a seeded secret or a 12-character piece of
//! one, and the ordinary values seeded beside them (a trace id, an image digest, a uid…) must
//! still be there.

// Sampling and logging notifications are deprecated by SEP-2577, but the server uses sampling
// (troubleshoot_issue's synthesis), so the client here offers it.
#![allow(deprecated)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, GetPromptRequestParams, Implementation, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProgressToken, ReadResourceRequestParams, RequestMetaObject,
    SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

// ---------------------------------------------------------------------------------------------
// What is seeded

/// A random-looking string (deterministic), so that no piece of a secret occurs by chance in
/// the fixtures or in the server's own words.
fn random(seed: u64, len: usize, alphabet: &str) -> String {
    let alphabet: Vec<char> = alphabet.chars().collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            alphabet[(state % alphabet.len() as u64) as usize]
        })
        .collect()
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const UPPER_DIGITS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0234567";

/// One seeded credential: its class, and the secret part (not the key naming it).
#[derive(Debug, Clone)]
struct Secret {
    class: &'static str,
    value: String,
}

/// Every credential seeded, by class.
struct Secrets {
    password_kv: String,
    jdbc_password: String,
    url_password: String,
    redis_password: String,
    env_password: String,
    env_url_password: String,
    aws_key: String,
    aws_secret: String,
    jwt: String,
    bearer_opaque: String,
    private_key: Vec<String>,
    private_key_json: Vec<String>,
    github_classic: String,
    github_app: String,
    github_pat: String,
    gitlab: String,
    slack_bot: String,
    slack_webhook: String,
    stripe_live: String,
    stripe_restricted: String,
    stripe_test: String,
    openai: String,
    anthropic: String,
    npm: String,
    azure_account_key: String,
    auth_token_scheme: String,
    auth_basic: String,
    cookie: String,
    json_password: String,
    escaped_json_password: String,
    client_secret: String,
    api_key_header: String,
    termination_dsn: String,
    change_cause_password: String,
    deployer_token: String,
    event_password: String,
    event_token: String,
    annotation_password: String,
    runbook_password: String,
    runbook_token: String,
    sampling_echo: String,
}

impl Secrets {
    fn new() -> Secrets {
        let mut seed = 100;
        let mut next = |len: usize, alphabet: &str| {
            seed += 1;
            random(seed, len, alphabet)
        };
        Secrets {
            password_kv: next(18, ALNUM),
            jdbc_password: next(16, ALNUM),
            url_password: next(16, ALNUM),
            redis_password: next(16, ALNUM),
            env_password: next(20, ALNUM),
            env_url_password: next(16, ALNUM),
            aws_key: format!("AKIA{}", next(16, UPPER_DIGITS)),
            aws_secret: next(40, BASE64),
            jwt: format!(
                "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
                next(60, ALNUM),
                next(43, &format!("{ALNUM}_-"))
            ),
            bearer_opaque: next(32, ALNUM),
            private_key: (0..3).map(|_| next(64, BASE64)).collect(),
            private_key_json: (0..2).map(|_| next(64, BASE64)).collect(),
            github_classic: format!("ghp_{}", next(36, ALNUM)),
            github_app: format!("ghs_{}", next(36, ALNUM)),
            github_pat: format!("github_pat_{}_{}", next(22, ALNUM), next(59, ALNUM)),
            gitlab: format!("glpat-{}", next(20, ALNUM)),
            slack_bot: format!("xoxb-2873649103-5519837265017-{}", next(24, ALNUM)),
            slack_webhook: next(24, ALNUM),
            stripe_live: format!("sk_live_{}", next(24, ALNUM)),
            stripe_restricted: format!("rk_live_{}", next(24, ALNUM)),
            stripe_test: format!("sk_test_{}", next(24, ALNUM)),
            openai: format!("sk-proj-{}", next(100, &format!("{ALNUM}_-"))),
            anthropic: format!("sk-ant-api03-{}", next(93, &format!("{ALNUM}_-"))),
            npm: format!("npm_{}", next(36, ALNUM)),
            azure_account_key: format!("{}==", next(86, BASE64)),
            auth_token_scheme: next(40, "0123456789abcdef"),
            auth_basic: next(24, ALNUM),
            cookie: next(32, ALNUM),
            json_password: next(16, ALNUM),
            escaped_json_password: next(16, ALNUM),
            client_secret: next(32, ALNUM),
            api_key_header: next(32, ALNUM),
            termination_dsn: next(16, ALNUM),
            change_cause_password: next(16, ALNUM),
            deployer_token: format!("glpat-{}", next(20, ALNUM)),
            event_password: next(16, ALNUM),
            event_token: format!("ghs_{}", next(36, ALNUM)),
            annotation_password: next(16, ALNUM),
            runbook_password: next(16, ALNUM),
            runbook_token: format!("ghp_{}", next(36, ALNUM)),
            sampling_echo: format!("sk_live_{}", next(24, ALNUM)),
        }
    }

    fn all(&self) -> Vec<Secret> {
        let s = |class, value: &String| Secret {
            class,
            value: value.clone(),
        };
        let mut all = vec![
            s("password=… in a log line", &self.password_kv),
            s("jdbc URL password in a stack trace", &self.jdbc_password),
            s("postgres:// URL password", &self.url_password),
            s("redis://:password@", &self.redis_password),
            s("DB_PASSWORD in a pod's env", &self.env_password),
            s(
                "DATABASE_URL password in a pod's env",
                &self.env_url_password,
            ),
            s("AWS access key id", &self.aws_key),
            s("aws_secret_access_key", &self.aws_secret),
            s("JWT after Bearer", &self.jwt),
            s("opaque bearer token", &self.bearer_opaque),
            s("GitHub ghp_", &self.github_classic),
            s("GitHub ghs_", &self.github_app),
            s("GitHub github_pat_", &self.github_pat),
            s("GitLab glpat-", &self.gitlab),
            s("Slack xoxb-", &self.slack_bot),
            s("Slack webhook URL", &self.slack_webhook),
            s("Stripe sk_live_", &self.stripe_live),
            s("Stripe rk_live_", &self.stripe_restricted),
            s("Stripe sk_test_", &self.stripe_test),
            s("OpenAI sk-proj-", &self.openai),
            s("Anthropic sk-ant-", &self.anthropic),
            s("npm_", &self.npm),
            s("Azure AccountKey=", &self.azure_account_key),
            s("Authorization: Token …", &self.auth_token_scheme),
            s("Authorization: Basic …", &self.auth_basic),
            s("Cookie: session=…", &self.cookie),
            s(
                "\"password\": \"…\" in a JSON log line",
                &self.json_password,
            ),
            s(
                "\\\"password\\\":\\\"…\\\" in escaped JSON",
                &self.escaped_json_password,
            ),
            s("clientSecret", &self.client_secret),
            s("X-Api-Key header", &self.api_key_header),
            s("DSN in a termination message", &self.termination_dsn),
            s(
                "password in a rollout change-cause",
                &self.change_cause_password,
            ),
            s("token in a rollout's deployer", &self.deployer_token),
            s("password in an event", &self.event_password),
            s("token in an event", &self.event_token),
            s("password in a pod annotation", &self.annotation_password),
            s("URL password in a runbook", &self.runbook_password),
            s("GitHub token in a runbook", &self.runbook_token),
            s("secret echoed by the client's model", &self.sampling_echo),
        ];
        all.extend(self.private_key.iter().map(|line| Secret {
            class: "private key body line (multi-line log entry)",
            value: line.clone(),
        }));
        all.extend(self.private_key_json.iter().map(|line| Secret {
            class: "private key body line (escaped newlines)",
            value: line.clone(),
        }));
        all
    }
}

/// Ordinary values seeded beside the secrets, which must come back as they are.
struct Ordinary {
    trace_id: &'static str,
    span_id: &'static str,
    digest: &'static str,
    uid: &'static str,
    uuid: &'static str,
    git_sha: &'static str,
    config_base64: &'static str,
    phrases: [&'static str; 4],
}

const ORDINARY: Ordinary = Ordinary {
    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
    span_id: "00f067aa0ba902b7",
    digest: "sha256:9b2c6e4f0a1d3c5e7f9b8a6d4c2e0f1a3b5d7c9e1f2a4b6c8d0e2f4a6b8c0d2e",
    uid: "758e63b9-cc86-4d7e-a926-facb6bc54acc",
    uuid: "3f0c2a9e-7b41-4d6a-9e15-2c8b7d4f1a60",
    git_sha: "3f786850e387550fdab836ed7e6dc881de23001b",
    config_base64: "dGhpcyBpcyBub3QgYSBzZWNyZXQsIGp1c3QgY29uZmln",
    phrases: [
        "token bucket refilled",
        "password reset succeeded for user 42",
        "secretName: tls-cert",
        "payment-gateway-nzd7w8pf2m-dclvf",
    ],
};

// ---------------------------------------------------------------------------------------------
// The seeded fixtures

/// A copy of fixtures/demo (and a runbook folder) in a fresh temporary directory, removed when
/// dropped.
struct Seeded {
    root: PathBuf,
}

impl Drop for Seeded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Seeded {
    fn fixtures(&self) -> PathBuf {
        self.root.join("fixtures")
    }

    fn runbooks(&self) -> PathBuf {
        self.root.join("runbooks")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The pod directory under logs/<namespace> whose name starts with `prefix` (first by name).
fn pod_dir(fixtures: &Path, namespace: &str, prefix: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures.join("logs").join(namespace))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .next()
        .unwrap_or_else(|| panic!("no pod {prefix}* in logs/{namespace}"))
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Appends entries to a fixture log, at the time of its last entry (so the order holds and
/// a tail reads them). Each entry is `(level, logger, trace id, message, continuation lines)`.
fn append_log(path: &Path, entries: &[(&str, &str, &str, String, Vec<String>)]) {
    let mut text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let last_offset = text
        .lines()
        .rev()
        .find(|l| !l.starts_with('\t') && !l.trim().is_empty())
        .and_then(|l| l.split(' ').next())
        .expect("a log entry")
        .to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for (level, logger, trace, message, detail) in entries {
        text.push_str(&format!(
            "{last_offset} {level} {logger} {trace} {message}\n"
        ));
        for line in detail {
            text.push_str(&format!("\t{line}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

fn yaml_key<'a>(value: &'a mut Yaml, key: &str) -> &'a mut Yaml {
    let map = value
        .as_mapping_mut()
        .unwrap_or_else(|| panic!("not a mapping at {key}"));
    if !map.contains_key(key) {
        map.insert(Yaml::from(key), Yaml::Mapping(Default::default()));
    }
    map.get_mut(key).unwrap()
}

fn yaml_named<'a>(list: &'a mut Yaml, name: &str) -> &'a mut Yaml {
    list.as_sequence_mut()
        .expect("a list")
        .iter_mut()
        .find(|item| item["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no object {name}"))
}

fn edit_yaml(path: &Path, edit: impl FnOnce(&mut Yaml)) {
    let mut value: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_yaml_ng::to_string(&value).unwrap()).unwrap();
}

const CRASHED_POD: &str = "payment-gateway-nzd7w8pf2m-dclvf";
const CRASHED_RS: &str = "payment-gateway-nzd7w8pf2m";

/// The pods whose logs were seeded: (namespace, pod, container).
struct SeededPods {
    pods: Vec<(String, String, String)>,
}

fn seed(s: &Secrets) -> (Seeded, SeededPods) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = std::env::temp_dir().join(format!("sre-mcp-masking-{}-{nanos}", std::process::id()));
    let seeded = Seeded { root };
    let fixtures = seeded.fixtures();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"),
        &fixtures,
    );
    let t = ORDINARY.trace_id;
    let mut pods = Vec::new();

    // (a) logs: the crashed payment-gateway's previous log, with a stack trace.
    let crashed = fixtures.join("logs/payments").join(CRASHED_POD);
    append_log(
        &crashed.join("payment-gateway.previous.log"),
        &[
            (
                "ERROR",
                "c.a.p.db.SettlementDataSource",
                t,
                format!(
                    "login to payments-db failed: user=payments password={} retries=3",
                    s.password_kv
                ),
                vec![],
            ),
            (
                "ERROR",
                "o.h.engine.jdbc.spi.SqlExceptionHelper",
                t,
                "Unable to acquire JDBC Connection for settlement batch".into(),
                vec![
                    "org.hibernate.exception.JDBCConnectionException: Unable to acquire JDBC Connection".into(),
                    "at org.hibernate.exception.internal.SQLStateConversionDelegate.convert(SQLStateConversionDelegate.java:98)".into(),
                    format!(
                        "Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed (url=jdbc:postgresql://payments:{}@payments-db.payments.svc:5432/payments)",
                        s.jdbc_password
                    ),
                    "at org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication(ConnectionFactoryImpl.java:693)".into(),
                ],
            ),
            (
                "WARN",
                "c.a.p.stripe.StripeClient",
                t,
                format!(
                    "stripe call failed with key {} (fallback {}, test {})",
                    s.stripe_live, s.stripe_restricted, s.stripe_test
                ),
                vec![],
            ),
            (
                "ERROR",
                "c.a.p.s3.SettlementExport",
                "-",
                format!(
                    "S3 upload denied for AccessKeyId {} with aws_secret_access_key = {}",
                    s.aws_key, s.aws_secret
                ),
                vec![],
            ),
        ],
    );
    pods.push((
        "payments".to_string(),
        CRASHED_POD.to_string(),
        "payment-gateway".to_string(),
    ));
    // Its current log, with the ordinary values that must survive.
    append_log(
        &crashed.join("payment-gateway.log"),
        &[
            (
                "ERROR",
                "c.a.p.auth.GatewayAuthFilter",
                t,
                format!("rejected upstream call: Authorization: Bearer {}", s.jwt),
                vec![],
            ),
            (
                "INFO",
                "c.a.p.boot.ImageInfo",
                t,
                format!(
                    "pulled image registry.acme.internal/payments/payment-gateway@{} for pod uid {} request {} span_id={} commit {} config.checksum={}; {}; {}; {}; pod {}",
                    ORDINARY.digest,
                    ORDINARY.uid,
                    ORDINARY.uuid,
                    ORDINARY.span_id,
                    ORDINARY.git_sha,
                    ORDINARY.config_base64,
                    ORDINARY.phrases[0],
                    ORDINARY.phrases[1],
                    ORDINARY.phrases[2],
                    ORDINARY.phrases[3],
                ),
                vec![],
            ),
        ],
    );

    // A private key logged over several lines, in another pod of the namespace.
    let fraud = pod_dir(&fixtures, "payments", "fraud-detector-");
    let mut key_lines = s.private_key.clone();
    key_lines.push("-----END RSA PRIVATE KEY-----".into());
    append_log(
        &fraud.join("fraud-detector.log"),
        &[(
            "ERROR",
            "fraud_detector.keys",
            t,
            "failed to load model signing key: -----BEGIN RSA PRIVATE KEY-----".into(),
            key_lines,
        )],
    );
    pods.push((
        "payments".into(),
        file_name(&fraud),
        "fraud-detector".into(),
    ));

    let inventory = pod_dir(&fixtures, "commerce", "inventory-service-");
    append_log(
        &inventory.join("inventory-service.log"),
        &[
            (
                "ERROR",
                "c.a.i.config.DataSourceConfig",
                t,
                format!(
                    r#"datasource config rejected: {{"username":"inventory","password":"{}","pool":20}}"#,
                    s.json_password
                ),
                vec![],
            ),
            (
                "WARN",
                "c.a.i.audit.AuditLogger",
                t,
                format!(
                    r#"audit payload={{\"user\":\"svc-inventory\",\"password\":\"{}\"}}"#,
                    s.escaped_json_password
                ),
                vec![],
            ),
            (
                "ERROR",
                "c.a.i.export.BlobExporter",
                "-",
                format!(
                    "export failed: DefaultEndpointsProtocol=https;AccountName=acmeinventory;AccountKey={};EndpointSuffix=core.windows.net",
                    s.azure_account_key
                ),
                vec![],
            ),
            (
                "ERROR",
                "c.a.i.cache.RedisCache",
                "-",
                format!(
                    "cache unavailable at redis://:{}@redis-inventory:6379/0, falling back to postgres://inventory:{}@inventory-db:5432/inventory",
                    s.redis_password, s.url_password
                ),
                vec![],
            ),
        ],
    );
    pods.push((
        "commerce".into(),
        file_name(&inventory),
        "inventory-service".into(),
    ));

    let checkout = pod_dir(&fixtures, "commerce", "checkout-api-");
    append_log(
        &checkout.join("checkout-api.log"),
        &[
            (
                "ERROR",
                "checkout.deps",
                t,
                format!(
                    "release fetch failed with GITHUB_TOKEN={} (app token {}, fine-grained {})",
                    s.github_classic, s.github_app, s.github_pat
                ),
                vec![],
            ),
            (
                "ERROR",
                "checkout.notify",
                t,
                format!(
                    "notify failed: gitlab token {} slack token {} webhook https://hooks.slack.com/services/T024BE7LD/B01QJ3FNUKS/{}",
                    s.gitlab, s.slack_bot, s.slack_webhook
                ),
                vec![],
            ),
            (
                "WARN",
                "checkout.http",
                t,
                format!(
                    "upstream order-service 504; request headers Cookie: session={}; theme=dark",
                    s.cookie
                ),
                vec![],
            ),
        ],
    );
    pods.push((
        "commerce".into(),
        file_name(&checkout),
        "checkout-api".into(),
    ));

    let order = pod_dir(&fixtures, "commerce", "order-service-");
    append_log(
        &order.join("order-service.log"),
        &[
            (
                "ERROR",
                "order.ai.Summarizer",
                t,
                format!(
                    "LLM call failed: openai key {} anthropic key {}",
                    s.openai, s.anthropic
                ),
                vec![],
            ),
            (
                "ERROR",
                "order.build",
                "-",
                format!("npm publish failed with NPM_TOKEN={}", s.npm),
                vec![],
            ),
            (
                "ERROR",
                "order.gcp.Credentials",
                "-",
                format!(
                    r#"bad service account: {{"type":"service_account","client_email":"orders@acme.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----\n"}}"#,
                    s.private_key_json[0], s.private_key_json[1]
                ),
                vec![],
            ),
            (
                "ERROR",
                "order.oauth.TokenClient",
                t,
                format!(
                    r#"token exchange failed: {{"clientId":"orders","clientSecret":"{}"}}"#,
                    s.client_secret
                ),
                vec![],
            ),
        ],
    );
    pods.push(("commerce".into(), file_name(&order), "order-service".into()));

    let gateway = pod_dir(&fixtures, "edge", "api-gateway-");
    append_log(
        &gateway.join("api-gateway.log"),
        &[
            (
                "ERROR",
                "gateway.proxy",
                t,
                format!(
                    "upstream 401 for POST /v1/checkout: Authorization: Token {} X-Api-Key: {}",
                    s.auth_token_scheme, s.api_key_header
                ),
                vec![],
            ),
            (
                "WARN",
                "gateway.proxy",
                t,
                format!(
                    "retrying with Authorization: Basic {} then Bearer {}",
                    s.auth_basic, s.bearer_opaque
                ),
                vec![],
            ),
        ],
    );
    pods.push(("edge".into(), file_name(&gateway), "api-gateway".into()));

    // (b) events, (c) a pod's env, annotation and termination message, a rollout's
    // change-cause and deployer, an alert's summary.
    edit_yaml(&fixtures.join("payments.yaml"), |ns| {
        let pod = yaml_named(yaml_key(ns, "pods"), CRASHED_POD);
        let annotations = yaml_key(yaml_key(pod, "metadata"), "annotations");
        annotations.as_mapping_mut().unwrap().insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            format!(
                r#"{{"spec":{{"env":[{{"name":"DB_PASSWORD","value":"{}"}}]}}}}"#,
                s.annotation_password
            )
            .into(),
        );
        let container = &mut pod["spec"]["containers"][0];
        let env = yaml_key(container, "env").as_sequence_mut().unwrap();
        for (name, value) in [
            ("DB_PASSWORD", s.env_password.clone()),
            (
                "DATABASE_URL",
                format!(
                    "postgres://payments:{}@payments-db.payments.svc:5432/payments",
                    s.env_url_password
                ),
            ),
            ("STRIPE_SECRET_KEY", s.stripe_live.clone()),
            ("GITHUB_TOKEN", s.github_classic.clone()),
        ] {
            let mut var = serde_yaml_ng::Mapping::new();
            var.insert("name".into(), name.into());
            var.insert("value".into(), value.into());
            env.push(Yaml::Mapping(var));
        }
        let terminated = &mut pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
        assert!(terminated.is_mapping(), "{CRASHED_POD} has a last state");
        terminated.as_mapping_mut().unwrap().insert(
            "message".into(),
            format!(
                "panic: dial settlement db app:{}@tcp(payments-mysql:3306)/settlement: i/o timeout",
                s.termination_dsn
            )
            .into(),
        );

        let rs = yaml_named(yaml_key(ns, "replicasets"), CRASHED_RS);
        let annotations = yaml_key(yaml_key(rs, "metadata"), "annotations")
            .as_mapping_mut()
            .unwrap();
        let cause = annotations
            .get("kubernetes.io/change-cause")
            .and_then(Yaml::as_str)
            .unwrap()
            .to_string();
        annotations.insert(
            "kubernetes.io/change-cause".into(),
            format!(
                "{cause} via helm upgrade --set db.password={} --set stripe.apiKey={}",
                s.change_cause_password, s.stripe_live
            )
            .into(),
        );
        annotations.insert(
            "sre-mcp/deployed-by".into(),
            format!("ci-bot token={}", s.deployer_token).into(),
        );

        let events = yaml_key(ns, "events").as_sequence_mut().unwrap();
        let template = events
            .iter()
            .find(|e| {
                e["involvedObject"]["name"].as_str() == Some(CRASHED_POD)
                    && e["type"].as_str() == Some("Warning")
            })
            .expect("a warning event of the crashed pod")
            .clone();
        for (i, (reason, message)) in [
            (
                "FailedMount",
                format!(
                    "MountVolume.SetUp failed for volume \"db-creds\": secret payments/db-creds rejected password={}",
                    s.event_password
                ),
            ),
            (
                "Failed",
                format!(
                    "Failed to pull image \"registry.acme.internal/payments/payment-gateway:2.14.0\": unauthorized: authentication required with token {}",
                    s.event_token
                ),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let mut event = template.clone();
            event["metadata"]["name"] = format!("{CRASHED_POD}.masking{i}").into();
            event["metadata"]["uid"] = format!("00000000-0000-4000-8000-00000000000{i}").into();
            event["reason"] = reason.into();
            event["message"] = message.into();
            events.push(event);
        }

        let metrics = yaml_key(ns, "metrics").as_sequence_mut().unwrap();
        let gateway = metrics
            .iter_mut()
            .find(|m| m["service"].as_str() == Some("payment-gateway"))
            .unwrap();
        let alert = &mut gateway["alerts"][0]["summary"];
        let summary = alert.as_str().unwrap().to_string();
        *alert = format!(
            "{summary}; paged via https://hooks.slack.com/services/T024BE7LD/B01QJ3FNUKS/{}",
            s.slack_webhook
        )
        .into();
    });

    // (d) a runbook folder.
    std::fs::create_dir_all(seeded.runbooks()).unwrap();
    std::fs::write(
        seeded.runbooks().join("leaky-db-credentials.md"),
        format!(
            "---\ntitle: Rotating leaked settlement database credentials\nteam: payments\ntags: [credentials, rotation]\nsignals:\n  - \"password authentication failed\"\n---\n\n# Rotating leaked settlement database credentials\n\n## Diagnosis\n\nCheck that the old password still works:\n\n```sh\npsql postgres://admin:{}@payments-db.payments.svc:5432/payments -c 'select 1'\n```\n\n## Mitigation\n\n1. Rotate the deploy token: `export GITHUB_TOKEN={}` then re-run the release job.\n2. Restart payment-gateway after `password authentication failed` stops.\n",
            s.runbook_password, s.runbook_token
        ),
    )
    .unwrap();

    (seeded, SeededPods { pods })
}

// ---------------------------------------------------------------------------------------------
// A client that records everything the server sends

#[derive(Clone, Default)]
struct Recorder {
    /// Progress and logging notifications, and the sampling requests the server sent.
    received: Arc<Mutex<Vec<(String, Value)>>>,
    /// What the client's model answers to sampling (one seeded secret, to see that the
    /// answer shown to the user is masked too).
    answer: String,
}

impl ClientHandler for Recorder {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.received.lock().unwrap().push((
            "sampling/createMessage request".into(),
            serde_json::to_value(&params).unwrap(),
        ));
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(self.answer.clone()),
            "test-model".into(),
        ))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.received.lock().unwrap().push((
            "notifications/progress".into(),
            serde_json::to_value(&params).unwrap(),
        ));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.received.lock().unwrap().push((
            "notifications/message".into(),
            serde_json::to_value(&params).unwrap(),
        ));
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_sampling().build(),
            Implementation::new("masking-test", "1.0.0"),
        )
    }
}

type Client = RunningService<RoleClient, Recorder>;

async fn start(seeded: &Seeded, recorder: Recorder) -> Client {
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 temp path").to_string();
    let (fixtures, runbooks) = (
        path(seeded.fixtures().as_ref()),
        path(seeded.runbooks().as_ref()),
    );
    let transport = common::spawn(&[
        "--demo-fixtures",
        &fixtures,
        "--runbooks",
        &runbooks,
        "--no-embeddings",
    ]);
    recorder.serve(transport).await.expect("MCP initialize")
}

// ---------------------------------------------------------------------------------------------
// Replies, and the check

/// Every reply, as the text of all its strings (object keys too), by what produced it.
#[derive(Default)]
struct Replies {
    items: Vec<(String, String)>,
}

fn strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => {
            for (key, v) in map {
                out.push_str(key);
                out.push('\n');
                strings(v, out);
            }
        }
        _ => {}
    }
}

impl Replies {
    fn add(&mut self, label: impl Into<String>, value: &Value) {
        let mut text = String::new();
        strings(value, &mut text);
        self.items.push((label.into(), text));
    }

    fn add_error(&mut self, label: impl Into<String>, error: &dyn std::fmt::Display) {
        self.items.push((label.into(), format!("error: {error}")));
    }

    fn find(&self, label: &str) -> &str {
        &self
            .items
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no reply {label}"))
            .1
    }

    /// Where a seeded secret, or a 12-character piece of it, reached the client.
    fn leaks(&self, secrets: &[Secret]) -> Vec<String> {
        const PIECE: usize = 12;
        let mut found = Vec::new();
        for secret in secrets {
            let chars: Vec<char> = secret.value.chars().collect();
            let pieces: BTreeSet<String> = (0..=chars.len().saturating_sub(PIECE))
                .map(|i| chars[i..(i + PIECE).min(chars.len())].iter().collect())
                .collect();
            for (label, text) in &self.items {
                let whole = text.contains(&secret.value);
                let Some(piece) = pieces.iter().find(|p| text.contains(p.as_str())) else {
                    continue;
                };
                let at = text.find(piece.as_str()).unwrap();
                let mut from = at.saturating_sub(120);
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let mut to = (at + piece.len() + 120).min(text.len());
                while !text.is_char_boundary(to) {
                    to += 1;
                }
                found.push(format!(
                    "{} ({}) in {label}: …{}…",
                    secret.class,
                    if whole { "whole" } else { "a piece" },
                    &text[from..to]
                ));
            }
        }
        found
    }
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("arguments must be an object"),
    }
}

/// The tool calls that reach the seeded data, by tool.
fn tool_calls(pods: &SeededPods) -> Vec<(&'static str, Value)> {
    let t = ORDINARY.trace_id;
    let mut calls = vec![
        ("check_service_health", json!({})),
        (
            "check_service_health",
            json!({"service": "payment-gateway"}),
        ),
        (
            "check_service_health",
            json!({"service": "inventory-service"}),
        ),
        ("list_namespaces", json!({})),
        ("list_pods", json!({"namespace": "payments"})),
        ("list_pods", json!({"namespace": "commerce"})),
        ("list_pods", json!({"namespace": "edge"})),
        (
            "describe_pod",
            json!({"namespace": "payments", "pod": CRASHED_POD}),
        ),
        (
            "get_pod_logs",
            json!({"namespace": "payments", "pod": CRASHED_POD, "previous": true}),
        ),
        (
            "get_pod_logs",
            json!({"namespace": "payments", "pod": CRASHED_POD, "previous": true, "level": "error"}),
        ),
        (
            "get_pod_logs",
            json!({"namespace": "payments", "pod": CRASHED_POD, "previous": true, "grep": "password|stripe|S3|JDBC"}),
        ),
        (
            "get_pod_logs",
            json!({"namespace": "payments", "pod": CRASHED_POD, "grep": "pulled image|Authorization"}),
        ),
        ("get_events", json!({})),
        ("get_events", json!({"namespace": "payments"})),
        (
            "get_events",
            json!({"namespace": "payments", "type": "Warning", "object": CRASHED_POD}),
        ),
        ("list_deployments", json!({"namespace": "payments"})),
        ("list_deployments", json!({"namespace": "commerce"})),
        (
            "get_recent_deploys",
            json!({"service": "payment-gateway", "hours_back": 24}),
        ),
        ("search_logs", json!({"trace_id": t})),
        ("search_logs", json!({"level": "error", "since": "1h"})),
        (
            "search_logs",
            json!({"level": "warn", "namespace": "commerce"}),
        ),
        (
            "search_logs",
            json!({"pattern": "password|token|key|Authorization|Cookie|secret", "limit": 100}),
        ),
        (
            "search_logs",
            json!({"service": "payment-gateway", "level": "error"}),
        ),
        ("count_errors", json!({})),
        ("count_errors", json!({"group_by": "message"})),
        ("count_errors", json!({"group_by": "service"})),
        (
            "count_errors",
            json!({"group_by": "pod", "namespace": "commerce"}),
        ),
        ("trace_transaction", json!({"trace_id": t})),
        (
            "search_runbooks",
            json!({"query": "password authentication failed rotate credentials"}),
        ),
        (
            "troubleshoot_issue",
            json!({"description": "payments fail after the release", "service": "payment-gateway"}),
        ),
        (
            "troubleshoot_issue",
            json!({"description": "checkout returns 504 and inventory errors"}),
        ),
        (
            "troubleshoot_issue",
            json!({"description": "what is wrong in the cluster"}),
        ),
        // The writes' reviews quote error lines, events and the model's review (dry runs:
        // nothing changes).
        (
            "deploy_with_review",
            json!({"service": "payment-gateway", "image": "registry.acme.internal/payments/payment-gateway:2.14.1", "reason": "PAY-1849 fix"}),
        ),
        (
            "rollback_deployment",
            json!({"service": "payment-gateway", "to_revision": 6, "reason": "PAY-1850"}),
        ),
        (
            "restart_deployment",
            json!({"service": "payments/fraud-detector", "reason": "pick up rotated credentials"}),
        ),
        (
            "scale_deployment",
            json!({"service": "payments/fraud-detector", "replicas": 3, "reason": "load"}),
        ),
    ];
    for (namespace, pod, container) in &pods.pods {
        calls.push((
            "get_pod_logs",
            json!({"namespace": namespace, "pod": pod, "container": container, "tail_lines": 40}),
        ));
        calls.push(("describe_pod", json!({"namespace": namespace, "pod": pod})));
    }
    // Shaped: the full result is kept at result://, whose pages are all read.
    calls.extend([
        (
            "search_logs",
            json!({"level": "info", "limit": 2000, "max_tokens": 800}),
        ),
        ("search_logs", json!({"trace_id": t, "max_tokens": 500})),
        (
            "get_pod_logs",
            json!({"namespace": "payments", "pod": CRASHED_POD, "previous": true, "tail_lines": 1000, "max_tokens": 600}),
        ),
        (
            "count_errors",
            json!({"group_by": "message", "since": "24h", "max_tokens": 500}),
        ),
    ]);
    calls
}

/// Waits (up to a minute) until `system://health` says the runbook index is built, so that
/// runbook answers come from the seeded folder too.
async fn wait_for_runbook_index(client: &Client) {
    for _ in 0..600 {
        let health = client
            .read_resource(ReadResourceRequestParams::new("system://health"))
            .await
            .expect("system://health");
        let health = serde_json::to_value(&health).unwrap();
        let body: Value = health["contents"][0]["text"]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        if body["runbooks"]["index"] == "ready" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("runbook index not ready after 60 s");
}

/// What was checked, for the summary line.
#[derive(Default)]
struct Counts {
    tool_calls: usize,
    resource_reads: usize,
    prompts: usize,
    completions: usize,
    errors: usize,
    from_server: usize,
}

/// The value a prompt argument gets.
fn prompt_argument(name: &str) -> Value {
    match name {
        "service" => json!("payment-gateway"),
        "namespace" => json!("payments"),
        "trace_id" => json!(ORDINARY.trace_id),
        "description" => json!("payments fail after the release"),
        "symptoms" => json!("503s on checkout since the release"),
        other => panic!("no test value for prompt argument {other:?}: add one"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_seeded_secret_reaches_the_client() {
    let secrets = Secrets::new();
    let (seeded, pods) = seed(&secrets);
    let recorder = Recorder {
        answer: format!(
            "Roll back payment-gateway to revision 6. (The model repeated a key: {}.)",
            secrets.sampling_echo
        ),
        ..Recorder::default()
    };
    let client = start(&seeded, recorder.clone()).await;
    let mut replies = Replies::default();
    let mut counts = Counts::default();

    wait_for_runbook_index(&client).await;

    // Every tool the server lists, with arguments that reach the seeded data.
    let tools = client.list_all_tools().await.expect("tools/list");
    replies.add("tools/list", &serde_json::to_value(&tools).unwrap());
    let calls = tool_calls(&pods);
    let listed: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let called: BTreeSet<String> = calls.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        listed, called,
        "every listed tool must be called here (add calls for a new tool)"
    );
    let mut full_results = BTreeSet::new();
    for (i, (tool, args)) in calls.iter().enumerate() {
        let mut params =
            CallToolRequestParams::new(tool.to_string()).with_arguments(arguments(args.clone()));
        // troubleshoot_issue reports progress when asked.
        params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
            rmcp::model::NumberOrString::Number(i as i64),
        )));
        let label = format!("tools/call {tool} {args}");
        match client.call_tool(params).await {
            Ok(result) => {
                let value = serde_json::to_value(&result).unwrap();
                if let Some(uri) = value["_meta"]["full_result"].as_str() {
                    full_results.insert((uri.to_string(), label.clone()));
                }
                if result.is_error == Some(true) {
                    counts.errors += 1;
                }
                replies.add(label, &value);
            }
            Err(e) => {
                counts.errors += 1;
                replies.add_error(label, &e);
            }
        }
        counts.tool_calls += 1;
    }
    // A tool error that carries cluster data: a pod that does not exist, named like a
    // container of one that does.
    let label = "tools/call get_pod_logs unknown container";
    let result = client
        .call_tool(
            CallToolRequestParams::new("get_pod_logs").with_arguments(arguments(
                json!({"namespace": "payments", "pod": CRASHED_POD, "container": "sidecar"}),
            )),
        )
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(true), "{label}");
    replies.add(label, &serde_json::to_value(&result).unwrap());
    counts.tool_calls += 1;
    counts.errors += 1;

    // Every resource, and every template.
    let resources = client.list_all_resources().await.expect("resources/list");
    replies.add("resources/list", &serde_json::to_value(&resources).unwrap());
    assert!(
        resources
            .iter()
            .any(|r| r.uri == "runbook://leaky-db-credentials"),
        "the seeded runbook is listed"
    );
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    replies.add(
        "resources/templates/list",
        &serde_json::to_value(&templates).unwrap(),
    );
    let mut uris: Vec<(String, String)> = resources
        .iter()
        .map(|r| (r.uri.clone(), String::new()))
        .collect();
    let mut paged = Vec::new();
    for template in &templates {
        match template.uri_template.as_str() {
            "deployment://history/{service}" => {
                for service in [
                    "payment-gateway",
                    "payments/payment-gateway",
                    "inventory-service",
                    "checkout-api",
                    "api-gateway",
                    "fraud-detector",
                ] {
                    uris.push((format!("deployment://history/{service}"), String::new()));
                }
            }
            "runbook://{id}" => {
                uris.push(("runbook://leaky-db-credentials".into(), String::new()));
            }
            "result://{id}" => {
                assert!(
                    !full_results.is_empty(),
                    "a shaped call kept its full result at result://"
                );
                for (uri, call) in &full_results {
                    uris.push((uri.clone(), format!(" (full result of {call})")));
                    paged.push((uri.clone(), format!(" (full result of {call})")));
                }
            }
            other => panic!("no test URI for the template {other}: add one"),
        }
    }
    for (uri, origin) in uris {
        let label = format!("resources/read {uri}{origin}");
        match client
            .read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
        {
            Ok(result) => replies.add(label, &serde_json::to_value(&result).unwrap()),
            Err(e) => {
                counts.errors += 1;
                replies.add_error(label, &e);
            }
        }
        counts.resource_reads += 1;
    }
    // Every page of every full result, and the refusal of the page after the last.
    for (uri, origin) in paged {
        for page in 1.. {
            let label = format!("resources/read {uri}?page={page}{origin}");
            let read = client
                .read_resource(ReadResourceRequestParams::new(format!("{uri}?page={page}")))
                .await;
            counts.resource_reads += 1;
            match read {
                Ok(result) => replies.add(label, &serde_json::to_value(&result).unwrap()),
                Err(e) => {
                    assert!(page > 1, "{label}: {e}");
                    counts.errors += 1;
                    replies.add_error(label, &e);
                    break;
                }
            }
        }
    }

    // Every prompt, and every completion.
    let prompts = client.list_all_prompts().await.expect("prompts/list");
    replies.add("prompts/list", &serde_json::to_value(&prompts).unwrap());
    for prompt in &prompts {
        let mut args = serde_json::Map::new();
        for a in prompt.arguments.iter().flatten() {
            args.insert(a.name.clone(), prompt_argument(&a.name));
        }
        let label = format!("prompts/get {}", prompt.name);
        match client
            .get_prompt(GetPromptRequestParams::new(prompt.name.clone()).with_arguments(args))
            .await
        {
            Ok(result) => replies.add(label, &serde_json::to_value(&result).unwrap()),
            Err(e) => panic!("{label}: {e}"),
        }
        counts.prompts += 1;
        for a in prompt.arguments.iter().flatten() {
            for prefix in ["", "p"] {
                let label = format!(
                    "completion/complete prompt {} {} {prefix:?}",
                    prompt.name, a.name
                );
                match client
                    .complete_prompt_simple(prompt.name.clone(), a.name.clone(), prefix)
                    .await
                {
                    Ok(values) => replies.add(label, &json!(values)),
                    Err(e) => replies.add_error(label, &e),
                }
                counts.completions += 1;
            }
        }
    }
    for (template, argument) in [
        ("deployment://history/{service}", "service"),
        ("runbook://{id}", "id"),
    ] {
        for prefix in ["", "l", "p"] {
            let label = format!("completion/complete resource {template} {prefix:?}");
            match client
                .complete_resource_simple(template, argument, prefix)
                .await
            {
                Ok(values) => replies.add(label, &json!(values)),
                Err(e) => replies.add_error(label, &e),
            }
            counts.completions += 1;
        }
    }

    // What the server sent on its own: progress, log messages, sampling requests.
    for (label, value) in recorder.received.lock().unwrap().iter() {
        replies.add(label.clone(), value);
        counts.from_server += 1;
    }
    let sampled = replies
        .items
        .iter()
        .filter(|(l, _)| l.starts_with("sampling/"))
        .count();
    let progress = replies
        .items
        .iter()
        .filter(|(l, _)| l.starts_with("notifications/progress"))
        .count();
    client.cancel().await.ok();

    eprintln!(
        "masking: {} tool calls, {} resource reads ({} full-result URIs), {} prompts, {} completions, {} errors checked, {} notifications and requests from the server ({sampled} sampling, {progress} progress); {} replies, {} secrets",
        counts.tool_calls,
        counts.resource_reads,
        full_results.len(),
        counts.prompts,
        counts.completions,
        counts.errors,
        counts.from_server,
        replies.items.len(),
        secrets.all().len()
    );
    assert!(
        sampled > 0,
        "troubleshoot_issue asked the client's model (sampling)"
    );
    assert!(progress > 0, "troubleshoot_issue reported progress");

    // The seeded data was reached: each kind of place answered with a mask.
    for label in [
        format!(
            "tools/call get_pod_logs {}",
            json!({"namespace": "payments", "pod": CRASHED_POD, "previous": true, "grep": "password|stripe|S3|JDBC"})
        ),
        format!(
            "tools/call describe_pod {}",
            json!({"namespace": "payments", "pod": CRASHED_POD})
        ),
        format!("tools/call get_events {}", json!({"namespace": "payments"})),
        format!(
            "tools/call get_recent_deploys {}",
            json!({"service": "payment-gateway", "hours_back": 24})
        ),
        "resources/read runbook://leaky-db-credentials".to_string(),
    ] {
        assert!(
            replies.find(&label).contains("[REDACTED"),
            "{label} shows no masked value: the seeded data was not reached\n{}",
            replies.find(&label)
        );
    }

    // Every class was reached and masked somewhere: its mask is in a reply.
    let everything: String = replies
        .items
        .iter()
        .map(|(_, text)| text.as_str())
        .collect();
    for marker in [
        "password=[REDACTED] retries=3",
        "jdbc:postgresql://payments:[REDACTED]@",
        "postgres://inventory:[REDACTED]@",
        "redis://:[REDACTED]@",
        "[REDACTED:aws-key]",
        "aws_secret_access_key = [REDACTED]",
        "Authorization: Bearer [REDACTED:jwt]",
        "Bearer [REDACTED]",
        "-----BEGIN RSA PRIVATE KEY----- [REDACTED]",
        r#""private_key":"[REDACTED]""#,
        "[REDACTED:github-token]",
        "[REDACTED:gitlab-token]",
        "[REDACTED:slack-token]",
        "hooks.slack.com/services/[REDACTED:slack-webhook]",
        "[REDACTED:stripe-key]",
        "[REDACTED:openai-key]",
        "[REDACTED:anthropic-key]",
        "[REDACTED:npm-token]",
        "AccountKey=[REDACTED];",
        "Authorization: Token [REDACTED]",
        "Authorization: Basic [REDACTED]",
        "Cookie: session=[REDACTED]; theme=[REDACTED]",
        r#""password":"[REDACTED]""#,
        r#"\"password\":\"[REDACTED]\""#,
        r#""clientSecret":"[REDACTED]""#,
        "X-Api-Key: [REDACTED]",
        "app:[REDACTED]@tcp(payments-mysql:3306)",
        "DB_PASSWORD=[REDACTED]",
        "DATABASE_URL=postgres://payments:[REDACTED]@",
        "db.password=[REDACTED]",
        "ci-bot token=[REDACTED:gitlab-token]",
        "psql postgres://admin:[REDACTED]@",
    ] {
        assert!(
            everything.contains(marker),
            "no reply shows {marker:?}: that seeded class was not reached (or masked differently)"
        );
    }

    // The ordinary values are still where they were.
    let logs = replies.find(&format!(
        "tools/call get_pod_logs {}",
        json!({"namespace": "payments", "pod": CRASHED_POD, "grep": "pulled image|Authorization"})
    ));
    for value in [
        ORDINARY.trace_id,
        ORDINARY.span_id,
        ORDINARY.digest,
        ORDINARY.uid,
        ORDINARY.uuid,
        ORDINARY.git_sha,
        ORDINARY.config_base64,
    ]
    .into_iter()
    .chain(ORDINARY.phrases)
    {
        assert!(logs.contains(value), "{value} was masked or lost:\n{logs}");
    }
    let trace = replies.find(&format!(
        "tools/call trace_transaction {}",
        json!({"trace_id": ORDINARY.trace_id})
    ));
    assert!(trace.contains(ORDINARY.trace_id), "{trace}");
    let described = replies.find(&format!(
        "tools/call describe_pod {}",
        json!({"namespace": "payments", "pod": CRASHED_POD})
    ));
    for value in [
        "payment-gateway:2.14.0",
        "DB_HOST=payments-db.payments.svc",
        "DB_PASSWORD=[REDACTED]",
    ] {
        assert!(described.contains(value), "{value}:\n{described}");
    }

    let leaks = replies.leaks(&secrets.all());
    assert!(
        leaks.is_empty(),
        "{} seeded secrets reached the client:\n\n{}",
        leaks.len(),
        leaks.join("\n\n")
    );
}

/// count_errors keys its groups by a normalised message (`util::logs::normalise_message`:
/// numbers become `<n>`, ids `<id>`), and the pipeline masks the result only afterwards: a
/// credential whose shape the normalisation broke — an AWS key id with one digit becomes
/// `AKIA…<n>…` — is no longer recognised, and all but one character of it reaches the client.
/// (troubleshoot_issue quotes `normalise_message(&top.sample)` and `(&pool.sample)` in its
/// evidence the same way; the calls here did not make that path show this line.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_groups_keep_no_piece_of_a_credential() {
    let secrets = Secrets::new();
    let (seeded, _pods) = seed(&secrets);
    let key = Secret {
        class: "AWS access key id (one digit) in a repeated error",
        value: "AKIAZMLEFWQG7AYYLZRD".into(),
    };
    let auth = pod_dir(&seeded.fixtures(), "identity", "auth-service-");
    let entries: Vec<_> = (0..30)
        .map(|i| {
            (
                "ERROR",
                "auth.audit.S3Export",
                "-",
                format!(
                    "S3 upload denied for AccessKeyId {} (attempt {i})",
                    key.value
                ),
                vec![],
            )
        })
        .collect();
    append_log(&auth.join("auth-service.log"), &entries);
    let client = start(&seeded, Recorder::default()).await;
    let mut replies = Replies::default();
    for (tool, args) in [
        ("count_errors", json!({"group_by": "message"})),
        (
            "count_errors",
            json!({"group_by": "message", "namespace": "identity"}),
        ),
        (
            "troubleshoot_issue",
            json!({"description": "auth-service returns errors", "service": "auth-service"}),
        ),
        (
            "search_logs",
            json!({"service": "auth-service", "level": "error"}),
        ),
    ] {
        let label = format!("tools/call {tool} {args}");
        let result = client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments(args)))
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        replies.add(label, &serde_json::to_value(&result).unwrap());
    }
    client.cancel().await.ok();
    let everything: String = replies
        .items
        .iter()
        .map(|(_, text)| text.as_str())
        .collect();
    assert!(
        everything.contains("[REDACTED:aws-key]"),
        "the raw message is masked where it is shown whole"
    );
    let leaks = replies.leaks(std::slice::from_ref(&key));
    assert!(
        leaks.is_empty(),
        "count_errors keys its groups by the normalised message, which the pipeline masks only \
         afterwards, when the normalisation has broken the credential's shape (src/tools/logs.rs, \
         count_errors: GroupBy::Message => normalise_message(&entry.message)): the message must \
         be masked before it is normalised.\n\n{}",
        leaks.join("\n\n")
    );
}

/// What a client sends is shown back in places (a prompt's text, an error naming what was not
/// found): a credential pasted there is masked like the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_a_client_sends_are_not_echoed() {
    let secrets = Secrets::new();
    let (seeded, _pods) = seed(&secrets);
    let client = start(&seeded, Recorder::default()).await;
    let mut replies = Replies::default();
    let pasted = [
        Secret {
            class: "GitHub token pasted in a prompt argument",
            value: secrets.github_classic.clone(),
        },
        Secret {
            class: "password pasted in a tool argument",
            value: secrets.password_kv.clone(),
        },
        Secret {
            class: "Stripe key pasted in a resource URI",
            value: secrets.stripe_live.clone(),
        },
    ];

    let mut args = serde_json::Map::new();
    args.insert("service".into(), json!("payment-gateway"));
    args.insert(
        "symptoms".into(),
        json!(format!(
            "502s; the on-call pasted GITHUB_TOKEN={}",
            secrets.github_classic
        )),
    );
    match client
        .get_prompt(GetPromptRequestParams::new("investigate-service").with_arguments(args))
        .await
    {
        Ok(result) => replies.add(
            "prompts/get investigate-service",
            &serde_json::to_value(&result).unwrap(),
        ),
        Err(e) => replies.add_error("prompts/get investigate-service", &e),
    }
    for (tool, args) in [
        (
            "describe_pod",
            json!({"namespace": "payments", "pod": format!("password={}", secrets.password_kv)}),
        ),
        (
            "search_logs",
            json!({"pattern": format!("password={}", secrets.password_kv)}),
        ),
        (
            "troubleshoot_issue",
            json!({"description": format!("login fails with password={}", secrets.password_kv)}),
        ),
    ] {
        let label = format!("tools/call {tool}");
        match client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments(args)))
            .await
        {
            Ok(result) => replies.add(label, &serde_json::to_value(&result).unwrap()),
            Err(e) => replies.add_error(label, &e),
        }
    }
    for uri in [
        format!("runbook://{}", secrets.stripe_live),
        format!("deployment://history/{}", secrets.stripe_live),
        format!("result://{}", secrets.stripe_live),
        format!("nosuch://{}", secrets.stripe_live),
    ] {
        let label = format!("resources/read {}", uri.split("://").next().unwrap());
        match client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
        {
            Ok(result) => replies.add(label, &serde_json::to_value(&result).unwrap()),
            Err(e) => replies.add_error(label, &e),
        }
    }
    client.cancel().await.ok();

    let leaks = replies.leaks(&pasted);
    assert!(
        leaks.is_empty(),
        "{} credentials the client sent came back unmasked (resources/read errors are sent as \
         they are: src/mcp/server.rs read_resource passes the messages of resources::read, and \
         the URI as error data, to McpError without redact::mask):\n\n{}",
        leaks.len(),
        leaks.join("\n\n")
    );
}
