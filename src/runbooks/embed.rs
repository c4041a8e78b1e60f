//! Local sentence embeddings (all-MiniLM-L6-v2 through fastembed and a dynamically loaded
//! ONNX Runtime), and the on-disk cache of chunk embeddings keyed by model id and content hash,
//! so a restart with unchanged runbooks embeds nothing.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use anyhow::{Context, bail};
use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use sha2::{Digest, Sha256};

use super::int8_matmul;

/// The model this build knows how to use, and its files.
pub const MODEL_ID: &str = "all-MiniLM-L6-v2-int8";
pub const DIMENSIONS: usize = 384;
pub const MODEL_FILES: [&str; 5] = [
    "model.onnx",
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];
pub const ONNXRUNTIME_FILE: &str = "libonnxruntime.so.1.24.4";

/// The per-user cache folder (e.g. `~/.cache/sre-mcp`).
pub fn cache_root() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("sre-mcp")
}

pub fn default_model_dir() -> PathBuf {
    cache_root().join("models").join("all-MiniLM-L6-v2")
}

pub fn default_onnxruntime() -> PathBuf {
    cache_root().join("onnxruntime").join(ONNXRUNTIME_FILE)
}

/// Where the model and ONNX Runtime are.
#[derive(Debug, Clone)]
pub struct ModelLocation {
    pub model_dir: PathBuf,
    pub onnxruntime: PathBuf,
}

impl ModelLocation {
    /// What is missing, as a sentence; `None` when everything is there.
    pub fn missing(&self) -> Option<String> {
        let mut missing: Vec<String> = MODEL_FILES
            .iter()
            .map(|f| self.model_dir.join(f))
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !self.onnxruntime.is_file() {
            missing.push(self.onnxruntime.display().to_string());
        }
        (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
    }
}

/// Set once the process starts to exit; from then on nothing enters ONNX Runtime.
static ONNX_RUNTIME_CLOSING: AtomicBool = AtomicBool::new(false);
/// Held (shared) by every ONNX Runtime call: loading the library, creating or releasing a
/// session, one inference batch. Returning from `main` runs `exit()`, which destroys ONNX
/// Runtime's C++ statics (its type and operator-schema registries); a call still running on the
/// loader thread then uses destroyed objects and fails ("Exception during initialization:
/// GetElementType is not implemented", "MLDataType for: tensor(int64) is not currently
/// registered") or crashes the process.
static IN_ONNX_RUNTIME: RwLock<()> = RwLock::new(());

/// Enters ONNX Runtime; an error once the process is exiting.
fn enter_onnx_runtime() -> anyhow::Result<RwLockReadGuard<'static, ()>> {
    let guard = IN_ONNX_RUNTIME.read().unwrap_or_else(|e| e.into_inner());
    // Checked while holding the guard: `close_onnx_runtime` sets the flag before it waits for
    // the guards, so every call that got past this check is waited for.
    if ONNX_RUNTIME_CLOSING.load(Ordering::SeqCst) {
        bail!("ONNX Runtime is closed: the process is exiting");
    }
    Ok(guard)
}

/// Refuses new ONNX Runtime calls and waits for the one in progress on any thread (at most one
/// session creation or one batch). Call before the process exits; idempotent.
pub fn close_onnx_runtime() {
    ONNX_RUNTIME_CLOSING.store(true, Ordering::SeqCst);
    drop(IN_ONNX_RUNTIME.write().unwrap_or_else(|e| e.into_inner()));
}

/// Whether [`close_onnx_runtime`] has run (a failure after it is the exit, not a problem).
pub fn onnx_runtime_closed() -> bool {
    ONNX_RUNTIME_CLOSING.load(Ordering::SeqCst)
}

/// Closes ONNX Runtime when dropped: hold one in `main` so that every way out of it (return or
/// panic) waits for the call in flight before `exit()` tears the library down.
pub struct CloseOnnxRuntimeOnDrop;

impl Drop for CloseOnnxRuntimeOnDrop {
    fn drop(&mut self) {
        close_onnx_runtime();
    }
}

/// Which form of the model's graph a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelGraph {
    /// Rewritten to multiply by the int8 weights directly ([`int8_matmul`]), falling back to
    /// the graph as shipped when ONNX Runtime refuses it. The default.
    Int8Matmul,
    /// As shipped: float weights re-created on every inference.
    AsShipped,
}

/// A loaded embedding model. Thread-safe; one embedding call runs at a time.
pub struct Embedder {
    /// `None` only while being dropped.
    model: Mutex<Option<TextEmbedding>>,
    /// Texts per inference call.
    batch: usize,
}

impl Drop for Embedder {
    fn drop(&mut self) {
        let model = self
            .model
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match enter_onnx_runtime() {
            Ok(_open) => drop(model),
            // Releasing the session now would run into ONNX Runtime's teardown: leave it to
            // the operating system, which reclaims the memory at exit anyway.
            Err(_) => std::mem::forget(model),
        }
    }
}

impl Embedder {
    /// Loads ONNX Runtime and the model. `threads` caps ONNX Runtime's intra-op threads;
    /// `batch` is the texts per inference call (activations grow with batch × sequence², so
    /// it sets the peak memory); `arena` turns ONNX Runtime's CPU arena allocator on (it keeps
    /// peak buffers resident).
    pub fn load(
        location: &ModelLocation,
        threads: usize,
        batch: usize,
        arena: bool,
    ) -> anyhow::Result<Embedder> {
        Embedder::load_graph(location, threads, batch, arena, ModelGraph::Int8Matmul)
    }

    /// [`Embedder::load`] with a choice of graph (tests compare the two).
    pub fn load_graph(
        location: &ModelLocation,
        threads: usize,
        batch: usize,
        arena: bool,
        graph: ModelGraph,
    ) -> anyhow::Result<Embedder> {
        if let Some(missing) = location.missing() {
            bail!("{missing}");
        }
        let _open = enter_onnx_runtime()?;
        let environment = ort_environment(&location.onnxruntime)?;
        let read = |name: &str| -> anyhow::Result<Vec<u8>> {
            let path = location.model_dir.join(name);
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
        };
        let onnx = read("model.onnx")?;
        let tokenizer = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        let session = |onnx: Vec<u8>| {
            let model =
                UserDefinedEmbeddingModel::new(onnx, tokenizer.clone()).with_pooling(Pooling::Mean);
            let options = InitOptionsUserDefined::new()
                .with_environment(environment.clone())
                .with_max_length(256)
                .with_intra_threads(threads.max(1))
                .with_execution_providers(vec![
                    ort::ep::CPU::default().with_arena_allocator(arena).build(),
                ])
                // Constant folding would turn int8 weights the graph still casts (a model the
                // rewrite below does not recognise) into resident float copies: +125 MB.
                .with_session_config(
                    "optimization.disable_specified_optimizers",
                    "ConstantFolding",
                )
                // Pre-packed copies of the weights cost memory, and were slower here.
                .with_session_config("session.disable_prepacking", "1")
                // Idle worker threads must not spin on a small machine that also serves requests.
                .with_session_config("session.intra_op.allow_spinning", "0");
            TextEmbedding::try_new_from_user_defined(model, options)
        };
        let rewrite_started = std::time::Instant::now();
        let rewritten = match graph {
            ModelGraph::Int8Matmul => int8_matmul::rewrite(&onnx),
            ModelGraph::AsShipped => Ok(None),
        };
        let rewrite_ms = rewrite_started.elapsed().as_millis() as u64;
        let model = match rewritten {
            Ok(Some((rewritten, counts))) => match session(rewritten) {
                Ok(model) => {
                    tracing::debug!(
                        matmuls = counts.matmuls,
                        gathers = counts.gathers,
                        rewrite_ms,
                        session_ms = rewrite_started.elapsed().as_millis() as u64 - rewrite_ms,
                        "embedding model runs on its int8 weights"
                    );
                    model
                }
                Err(e) => {
                    tracing::warn!(
                        "ONNX Runtime refused the int8-matmul form of the model ({e:#}); using the model as shipped, which embeds ~4x slower"
                    );
                    session(onnx).context("creating the embedding session")?
                }
            },
            Ok(None) => session(onnx).context("creating the embedding session")?,
            Err(e) => {
                tracing::warn!(
                    "could not read the model's graph to run it on int8 weights ({e:#}); using it as shipped"
                );
                session(onnx).context("creating the embedding session")?
            }
        };
        Ok(Embedder {
            model: Mutex::new(Some(model)),
            batch: batch.max(1),
        })
    }

    /// Embeds texts (L2-normalised vectors), one batch per ONNX Runtime call so that exiting
    /// waits for one batch, not for the whole corpus.
    pub fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let model = model.as_mut().context("the embedding model is released")?;
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch) {
            let _open = enter_onnx_runtime().context("embedding")?;
            vectors.extend(model.embed(batch, Some(self.batch)).context("embedding")?);
        }
        Ok(vectors)
    }
}

/// ONNX Runtime is loaded once per process (the library cannot be loaded twice); later calls
/// reuse that environment, and must name the same library.
fn ort_environment(library: &Path) -> anyhow::Result<ort::environment::Environment> {
    static ENVIRONMENT: std::sync::OnceLock<
        Result<(PathBuf, ort::environment::Environment), String>,
    > = std::sync::OnceLock::new();
    let loaded = ENVIRONMENT.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| format!("loading ONNX Runtime from {}: {e}", library.display()))
            .and_then(|builder| {
                builder
                    .with_name("sre-mcp")
                    .build()
                    .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
            })
            .map(|env| (library.to_path_buf(), env))
    });
    match loaded {
        Ok((path, env)) if path == library => Ok(env.clone()),
        Ok((path, _)) => bail!(
            "ONNX Runtime is already loaded from {} in this process; cannot switch to {}",
            path.display(),
            library.display()
        ),
        Err(e) => bail!("{e}"),
    }
}

/// Content key of a chunk for the embedding cache.
pub fn content_key(text: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(MODEL_ID.as_bytes());
    hasher.update([0]);
    hasher.update(text.as_bytes());
    hasher.finalize().into()
}

const CACHE_MAGIC: &[u8; 8] = b"SREMCPE1";

/// Append-only file of (content key, vector) records for one model.
pub struct EmbeddingCache {
    path: PathBuf,
    vectors: HashMap<[u8; 32], Vec<f32>>,
}

impl EmbeddingCache {
    pub fn default_path() -> PathBuf {
        cache_root()
            .join("embeddings")
            .join(format!("{MODEL_ID}.bin"))
    }

    /// Opens the cache; a missing or corrupt file gives an empty cache (and is rewritten).
    pub fn open(path: &Path) -> EmbeddingCache {
        let mut cache = EmbeddingCache {
            path: path.to_path_buf(),
            vectors: HashMap::new(),
        };
        if let Err(e) = cache.read() {
            if path.exists() {
                tracing::warn!(path = %path.display(), error = %e, "embedding cache unreadable; starting a new one");
                let _ = std::fs::remove_file(path);
            }
            cache.vectors.clear();
        }
        cache
    }

    fn read(&mut self) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        std::fs::File::open(&self.path)?.read_to_end(&mut bytes)?;
        if bytes.len() < 12 || &bytes[..8] != CACHE_MAGIC {
            bail!("not an embedding cache");
        }
        let dims = u32::from_le_bytes(bytes[8..12].try_into()?) as usize;
        if dims != DIMENSIONS {
            bail!("cache holds {dims}-dimensional vectors");
        }
        let record = 32 + dims * 4;
        let whole = (bytes.len() - 12) / record * record;
        if whole != bytes.len() - 12 {
            // A torn final write: keep what is whole, and cut the file there so the next
            // append starts on a record boundary.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)?
                .set_len((12 + whole) as u64)?;
        }
        for chunk in bytes[12..12 + whole].chunks(record) {
            let key: [u8; 32] = chunk[..32].try_into()?;
            let vector = chunk[32..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            self.vectors.insert(key, vector);
        }
        Ok(())
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<&Vec<f32>> {
        self.vectors.get(key)
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Adds vectors and appends them to the file.
    pub fn insert_all(&mut self, entries: Vec<([u8; 32], Vec<f32>)>) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let new_file = !self.path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut buffer = Vec::new();
        if new_file {
            buffer.extend_from_slice(CACHE_MAGIC);
            buffer.extend_from_slice(&(DIMENSIONS as u32).to_le_bytes());
        }
        for (key, vector) in &entries {
            buffer.extend_from_slice(key);
            for v in vector {
                buffer.extend_from_slice(&v.to_le_bytes());
            }
        }
        file.write_all(&buffer)?;
        for (key, vector) in entries {
            self.vectors.insert(key, vector);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trip_and_torn_tail() {
        let dir = std::env::temp_dir().join(format!("sre-mcp-cache-test-{}", std::process::id()));
        let path = dir.join("c.bin");
        let _ = std::fs::remove_dir_all(&dir);
        let mut cache = EmbeddingCache::open(&path);
        assert!(cache.is_empty());
        let key = content_key("hello");
        cache
            .insert_all(vec![(key, vec![0.5; DIMENSIONS])])
            .unwrap();
        cache
            .insert_all(vec![(content_key("b"), vec![0.25; DIMENSIONS])])
            .unwrap();
        // Simulate a torn append.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[1, 2, 3])
            .unwrap();
        let mut reopened = EmbeddingCache::open(&path);
        assert_eq!(reopened.len(), 2);
        assert_eq!(reopened.get(&key).unwrap()[0], 0.5);
        // Appends after a torn tail stay readable.
        reopened
            .insert_all(vec![(content_key("c"), vec![0.75; DIMENSIONS])])
            .unwrap();
        let again = EmbeddingCache::open(&path);
        assert_eq!(again.len(), 3);
        assert_eq!(again.get(&content_key("c")).unwrap()[0], 0.75);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(EmbeddingCache::open(&path).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
