//! Retrieval evaluation: recall@1, recall@3 and MRR of the lexical, dense and fused retrievers
//! over a labelled query set (YAML: `- query: …, relevant: [id, …]`).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::embed::Embedder;
use super::index::{Filter, Mode, RunbookIndex};

#[derive(Debug, Deserialize)]
pub struct LabelledQuery {
    pub query: String,
    pub relevant: Vec<String>,
}

pub fn load_queries(path: &Path) -> anyhow::Result<Vec<LabelledQuery>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}: expected a list of {{query, relevant}}", path.display()))
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scores {
    pub recall_at_1: f64,
    pub recall_at_3: f64,
    pub mrr: f64,
}

/// Evaluates one mode. Query vectors are needed for dense and fused.
pub fn evaluate(
    index: &RunbookIndex,
    queries: &[LabelledQuery],
    vectors: Option<&[Vec<f32>]>,
    mode: Mode,
) -> anyhow::Result<Scores> {
    for q in queries {
        for id in &q.relevant {
            if index.find(id).is_none() {
                anyhow::bail!("eval query {:?} names unknown runbook {id:?}", q.query);
            }
        }
    }
    let (mut r1, mut r3, mut mrr) = (0.0, 0.0, 0.0);
    for (i, q) in queries.iter().enumerate() {
        let vector = vectors.map(|v| v[i].as_slice());
        let hits = index.search(&q.query, vector, mode, &Filter::default(), 10);
        let rank = hits
            .iter()
            .position(|h| q.relevant.contains(&index.runbooks[h.doc].id));
        if rank == Some(0) {
            r1 += 1.0;
        }
        if rank.is_some_and(|r| r < 3) {
            r3 += 1.0;
        }
        if let Some(r) = rank {
            mrr += 1.0 / (r as f64 + 1.0);
        }
    }
    let n = queries.len().max(1) as f64;
    Ok(Scores {
        recall_at_1: r1 / n,
        recall_at_3: r3 / n,
        mrr: mrr / n,
    })
}

/// Evaluates every mode available: lexical always; dense and fused with an embedder.
pub fn evaluate_all(
    index: &RunbookIndex,
    queries: &[LabelledQuery],
    embedder: Option<&Embedder>,
) -> anyhow::Result<Vec<(Mode, Scores)>> {
    let mut out = vec![(
        Mode::Lexical,
        evaluate(index, queries, None, Mode::Lexical)?,
    )];
    if let Some(embedder) = embedder.filter(|_| index.has_vectors()) {
        let vectors =
            embedder.embed(&queries.iter().map(|q| q.query.clone()).collect::<Vec<_>>())?;
        out.push((
            Mode::Dense,
            evaluate(index, queries, Some(&vectors), Mode::Dense)?,
        ));
        out.push((
            Mode::Fused,
            evaluate(index, queries, Some(&vectors), Mode::Fused)?,
        ));
    }
    Ok(out)
}
