//! Runbook knowledge benchmark: index build (cold: nothing cached; warm: embeddings from the
//! on-disk cache) for the shipped runbooks and the public 110-runbook corpus, search latency,
//! and the augmenter's overhead on a result with signals and on one without.
//! Run with `cargo bench --bench runbooks` after `sre-mcp setup-embeddings`; prints figures.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sre_mcp::cluster::demo::DemoCluster;
use sre_mcp::pipeline::augment::Augmenter;
use sre_mcp::pipeline::client::NoClient;
use sre_mcp::pipeline::{Call, Stage, StagedResult};
use sre_mcp::runbooks::embed::{ModelLocation, default_model_dir, default_onnxruntime};
use sre_mcp::runbooks::eval::load_queries;
use sre_mcp::runbooks::index::Filter;
use sre_mcp::runbooks::knowledge::{DenseState, KnowledgeBase, KnowledgeConfig};
use sre_mcp::tools::{Context, Limits, ToolRegistry};

fn config(default_runbooks: bool, dirs: Vec<PathBuf>, cache: PathBuf) -> KnowledgeConfig {
    KnowledgeConfig {
        default_runbooks,
        extra_dirs: dirs,
        model: Some(ModelLocation {
            model_dir: default_model_dir(),
            onnxruntime: default_onnxruntime(),
        }),
        no_model_reason: None,
        threads: 1,
        batch: KnowledgeConfig::DEFAULT_BATCH,
        arena: false,
        cache_path: Some(cache),
        wait: Duration::from_secs(120),
    }
}

fn p(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

fn build(label: &str, default_runbooks: bool, dirs: Vec<PathBuf>) -> Arc<KnowledgeBase> {
    let cache =
        std::env::temp_dir().join(format!("sre-mcp-bench-{}-{label}.bin", std::process::id()));
    let _ = std::fs::remove_file(&cache);
    let mut last = None;
    for pass in ["cold", "warm"] {
        let started = Instant::now();
        let knowledge =
            KnowledgeBase::load_now(config(default_runbooks, dirs.clone(), cache.clone()));
        let total = started.elapsed();
        let s = knowledge.snapshot();
        let index = s.index.as_ref().unwrap();
        let dense = match &s.dense {
            DenseState::Ready {
                chunks_embedded,
                chunks_from_cache,
                load_ms,
                ..
            } => {
                format!(
                    "embeddings {load_ms} ms ({chunks_embedded} embedded, {chunks_from_cache} from cache)"
                )
            }
            other => format!("embeddings unavailable: {other:?}"),
        };
        println!(
            "index build {label} ({pass}): {} runbooks, {} chunks; lexical {} ms; {dense}; total {:.0} ms",
            index.runbooks.len(),
            index.chunks.len(),
            s.lexical_ms.unwrap_or(0),
            total.as_secs_f64() * 1e3
        );
        last = Some(knowledge);
    }
    let _ = std::fs::remove_file(&cache);
    last.unwrap()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shipped = build("shipped", true, Vec::new());
    // The public corpus is not part of the project; it is measured when it is beside it.
    let corpus = root.join("../shared/corpora/prometheus-operator-runbooks");
    if corpus.is_dir() {
        build("prometheus-operator corpus", false, vec![corpus]);
    } else {
        println!(
            "skipped: the prometheus-operator corpus index build (no corpus at {})",
            corpus.display()
        );
    }

    // search_runbooks: distinct queries (each embedded) and repeated ones (query vector cached).
    let queries = load_queries(&root.join("tests/eval/shipped.yaml")).unwrap();
    let mut first = Vec::new();
    let mut repeat = Vec::new();
    runtime.block_on(async {
        for q in &queries {
            let started = Instant::now();
            shipped
                .search(&q.query, &Filter::default(), 5)
                .await
                .unwrap();
            first.push(started.elapsed());
        }
        for _ in 0..10 {
            for q in &queries {
                let started = Instant::now();
                shipped
                    .search(&q.query, &Filter::default(), 5)
                    .await
                    .unwrap();
                repeat.push(started.elapsed());
            }
        }
    });
    first.sort();
    repeat.sort();
    println!(
        "search (fused): new query p50 {:.2} ms p99 {:.2} ms ({} queries); repeated query p50 {:.3} ms p99 {:.3} ms ({} searches)",
        p(&first, 0.5),
        p(&first, 0.99),
        first.len(),
        p(&repeat, 0.5),
        p(&repeat, 0.99),
        repeat.len()
    );

    // Augmenter overhead on real tool results from the demo cluster.
    let backend = Arc::new(DemoCluster::load(jiff::Timestamp::now()).unwrap());
    // The tools run on their own context; the augmenter is the stage under test.
    let context = Arc::new(Context::new(backend, shipped.clone(), Limits::default()));
    let tools = ToolRegistry::standard();
    let run = |tool: &str, arguments: Value| {
        let handler = tools.get(tool).unwrap().handler.clone();
        handler(context.clone(), arguments)
    };
    let augmenter = Augmenter::new(
        shipped.clone(),
        Augmenter::DEFAULT_THRESHOLD,
        Augmenter::DEFAULT_MAX_RUNBOOKS,
    );
    runtime.block_on(async {
        let args = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let crashing = run("list_pods", json!({"namespace": "payments", "status": "CrashLoopBackOff"}))
            .await
            .unwrap();
        let pod = crashing["pods"][0]["name"].as_str().unwrap().to_string();
        let cases = [
            ("with signals: describe_pod (OOMKilled pod)", "describe_pod", json!({"namespace": "payments", "pod": pod})),
            ("with signals: check_service_health (all)", "check_service_health", json!({})),
            ("without signals: list_pods identity", "list_pods", json!({"namespace": "identity"})),
            ("without signals: get_recent_deploys", "get_recent_deploys", json!({"service": "auth-service"})),
        ];
        for (label, tool, arguments) in cases {
            let structured = run(tool, arguments.clone()).await.unwrap();
            let def = tools.get(tool).unwrap();
            let call_args = args(arguments.clone());
            let call = Call::new(def, &call_args, &NoClient);
            let mut samples = Vec::new();
            let mut attached = 0;
            for i in 0..1001 {
                let mut staged = StagedResult::new(structured.clone(), 1_000_000);
                let started = Instant::now();
                augmenter.apply(&call, &mut staged).await.unwrap();
                if i > 0 {
                    samples.push(started.elapsed());
                }
                attached = staged.structured.get("relevant_runbooks").and_then(Value::as_array).map_or(0, Vec::len);
            }
            samples.sort();
            println!(
                "augmenter overhead, {label}: p50 {:.3} ms p99 {:.3} ms, {attached} runbooks attached (query vectors cached after the first call)",
                p(&samples, 0.5),
                p(&samples, 0.99)
            );
        }
    });
}
