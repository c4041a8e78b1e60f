//! Cold embedding of the shipped runbooks: wall time and peak resident memory of a fresh
//! process that embeds every chunk with an empty embedding cache, for several batch sizes and
//! ONNX Runtime thread counts (what `--embedding-batch` and `--embedding-threads` choose).
//! Each configuration runs `sre-mcp setup-embeddings`'s cache fill in its own process with an
//! empty cache folder, so peak memory is that configuration's alone.
//! Run with `cargo bench --bench embedding`; prints figures, asserts nothing. Needs the model
//! (`sre-mcp setup-embeddings`). `SRE_MCP_BENCH_CONFIGS="1x1 4x2"` picks configurations
//! (batch x threads). Then it times single embeddings in this process (a short query, a
//! runbook-sized chunk) with the model's graph as shipped and as rewritten to int8 matmuls.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sre_mcp::runbooks::embed::{
    Embedder, ModelGraph, ModelLocation, default_model_dir, default_onnxruntime,
};

/// p50 of embedding each text on its own, one thread (as the server embeds a query).
fn single_embeddings(location: &ModelLocation, graph: ModelGraph) {
    let embedder = Embedder::load_graph(location, 1, 1, false, graph).expect("load the model");
    let long = "A pod is OOMKilled when its container's working set exceeds the memory limit: \
        the kernel kills the process, the kubelet records Last State Terminated with reason \
        OOMKilled and exit code 137, and restarts it with a growing back-off. "
        .repeat(4);
    for (label, text) in [
        (
            "six-word query",
            "pods OOMKilled after the deploy".to_string(),
        ),
        ("~200-token chunk", long),
    ] {
        let mut samples: Vec<Duration> = (0..15)
            .map(|i| {
                let text = format!("{text} {i}");
                let started = Instant::now();
                embedder.embed(&[text]).expect("embed");
                started.elapsed()
            })
            .collect();
        samples.sort();
        println!(
            "embedding one {label}, graph {graph:?}: p50 {:.1} ms (min {:.1}, max {:.1})",
            samples[samples.len() / 2].as_secs_f64() * 1e3,
            samples[0].as_secs_f64() * 1e3,
            samples[samples.len() - 1].as_secs_f64() * 1e3,
        );
    }
}

/// Waits for a child and returns its exit status and peak resident memory in MB.
fn wait_with_peak(child: std::process::Child) -> (i32, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid we hold; std's handle is not waited on again.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    (status, usage.ru_maxrss as u64 / 1024)
}

fn main() {
    let location = ModelLocation {
        model_dir: default_model_dir(),
        onnxruntime: default_onnxruntime(),
    };
    if let Some(missing) = location.missing() {
        println!(
            "skipped: the embedding model is not installed ({missing}); run `sre-mcp setup-embeddings`"
        );
        return;
    }
    let configs: Vec<(u32, u32)> = std::env::var("SRE_MCP_BENCH_CONFIGS")
        .unwrap_or_else(|_| "1x1 1x2 2x1 4x1 4x2 8x1 8x2 16x2".into())
        .split_whitespace()
        .filter_map(|c| {
            let (b, t) = c.split_once('x')?;
            Some((b.parse().ok()?, t.parse().ok()?))
        })
        .collect();
    for (batch, threads) in configs {
        // An empty per-user cache: nothing embedded yet (the model is named explicitly).
        let cache: PathBuf = std::env::temp_dir().join(format!(
            "sre-mcp-bench-embedding-{}-{batch}x{threads}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&cache);
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_sre-mcp"))
            .args(["--log", "warn", "--model-dir"])
            .arg(&location.model_dir)
            .arg("--onnxruntime")
            .arg(&location.onnxruntime)
            .args(["--embedding-batch", &batch.to_string()])
            .args(["--embedding-threads", &threads.to_string()])
            .arg("setup-embeddings")
            .env("XDG_CACHE_HOME", &cache)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sre-mcp");
        let (status, peak_mb) = wait_with_peak(child);
        let seconds = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&cache);
        println!(
            "cold embedding of the shipped runbooks, batch {batch:>2}, threads {threads}: {seconds:.1} s, peak RSS {peak_mb} MB{}",
            if status == 0 { "" } else { " (failed)" }
        );
    }
    // After the child processes: a child forked from a process holding a model would count the
    // parent's memory in its peak.
    single_embeddings(&location, ModelGraph::AsShipped);
    single_embeddings(&location, ModelGraph::Int8Matmul);
}
