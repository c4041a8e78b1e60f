//! Budget stage benchmark: the overhead the budget/cost tracker adds to one tool call (its
//! `apply`, which sizes and if needed shapes the result, plus its `finish`, which counts the
//! reply's tokens and books them), for small results and for a ~1 MB result that is shaped.
//! Run with `cargo bench --bench budget`; prints figures, asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sre_mcp::app::Settings;
use sre_mcp::cluster::demo::DemoCluster;
use sre_mcp::pipeline::client::NoClient;
use sre_mcp::pipeline::{Call, Outcome, Stage, StagedResult};
use sre_mcp::runbooks::knowledge::{KnowledgeBase, KnowledgeConfig};
use sre_mcp::util::tokens::Encoding;

fn p(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6
}

fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let knowledge = KnowledgeBase::load_now(KnowledgeConfig::lexical_only());
    let backend = Arc::new(DemoCluster::load(jiff::Timestamp::now()).unwrap());
    let mut settings = Settings::default();
    // Tools return everything; the stage under test applies the cap itself.
    settings.budget.shaping.ceiling = 100_000_000;
    settings.augment.enabled = false;
    let services = sre_mcp::app::assemble(backend, knowledge, &settings);
    let (budget, pipeline) = (services.budget.clone(), services.pipeline.clone());
    // Let the tokenizer tables finish building (they load on a background thread).
    Encoding::O200kBase.count("warm up");

    runtime.block_on(async {
        let cases = [
            ("small: check_service_health one healthy service", "check_service_health", json!({"service": "user-service"}), 1000),
            ("small: list_pods identity", "list_pods", json!({"namespace": "identity"}), 1000),
            ("small: check_service_health payment-gateway", "check_service_health", json!({"service": "payment-gateway"}), 1000),
            ("medium, shaped: check_service_health all", "check_service_health", json!({}), 200),
            ("medium, shaped: search_logs errors", "search_logs", json!({"level": "error", "limit": 20}), 200),
            ("1 MB, shaped: search_logs 2,100 entries", "search_logs", json!({"limit": 2100}), 30),
        ];
        for (label, tool, arguments, runs) in cases {
            let mut full_args = args(arguments.clone());
            full_args.insert("max_tokens".into(), json!(100_000_000));
            let full = pipeline.call(tool, full_args, &NoClient).await.unwrap();
            let structured = full.structured.clone().unwrap();
            let bytes = structured.to_string().len() + full.text.len();
            let def = pipeline.tools().get(tool).unwrap();
            let call_args = args(arguments.clone());
            let call = Call::new(def, &call_args, &NoClient);
            let mut samples = Vec::new();
            let mut tokens = 0;
            let mut shaped = false;
            for _ in 0..runs {
                let mut staged = StagedResult::new(structured.clone(), 2000);
                let started = Instant::now();
                budget.apply(&call, &mut staged).await.unwrap();
                let mut reply = staged.into_reply(def);
                budget.finish(&call, Outcome::Completed, &mut reply);
                samples.push(started.elapsed());
                tokens = reply.meta.tokens.unwrap();
                shaped = reply.meta.truncated == Some(true);
            }
            samples.sort();
            println!(
                "budget stage, {label}: full reply {:.1} KB → {tokens} tokens{}; p50 {:.0} µs p99 {:.0} µs ({runs} calls)",
                bytes as f64 / 1024.0,
                if shaped { " (shaped)" } else { "" },
                p(&samples, 0.5),
                p(&samples, 0.99),
            );
        }
    });
}
