//! The runbook index: BM25 and dense retrieval over section chunks, fused with reciprocal rank
//! fusion, then grouped per runbook so the top results are distinct runbooks, each with its
//! best sections.

use std::collections::HashMap;

use super::bm25::{Bm25Index, tokenize};
use super::corpus::{Chunk, Runbook, chunk};

/// Which retrievers to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Lexical,
    Dense,
    Fused,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Lexical => "lexical",
            Mode::Dense => "dense",
            Mode::Fused => "fused",
        }
    }
}

/// Weighted reciprocal rank fusion: a chunk scores Σ weight / (k + rank) over the retrievers
/// that ranked it.
#[derive(Debug, Clone, Copy)]
pub struct Fusion {
    pub k: f32,
    pub lexical_weight: f32,
    pub dense_weight: f32,
}

impl Default for Fusion {
    /// Tuned on the two labelled query sets (tests/eval): a small k and half weight for the
    /// dense ranking let embeddings rescue lexical misses without reordering confident lexical
    /// hits. Sweep of k ∈ {10, 30, 60} × dense weight ∈ {0.3, 0.5, 0.7, 1.0}; plain RRF
    /// (60, 1, 1) lost to lexical-only on both sets.
    fn default() -> Self {
        Fusion {
            k: 10.0,
            lexical_weight: 1.0,
            dense_weight: 0.5,
        }
    }
}
/// How deep each retriever's ranking goes into the fusion.
const DEPTH: usize = 60;

#[derive(Clone)]
pub struct RunbookIndex {
    pub runbooks: Vec<Runbook>,
    pub chunks: Vec<Chunk>,
    /// Chunk texts as indexed (title and section path first).
    pub chunk_texts: Vec<String>,
    bm25: Bm25Index,
    /// One L2-normalised vector per chunk, when embeddings are available.
    vectors: Option<Vec<Vec<f32>>>,
    pub fusion: Fusion,
}

/// One section of a runbook that matched.
#[derive(Debug, Clone)]
pub struct SectionHit {
    pub chunk: usize,
    pub score: f32,
}

/// One runbook in the results.
#[derive(Debug, Clone)]
pub struct DocHit {
    pub doc: usize,
    /// Fused (or single-retriever) score; comparable only within one search.
    pub score: f32,
    /// Absolute relevance in 0–1: the best chunk's cosine similarity when dense retrieval ran,
    /// otherwise a saturated BM25 score. Thresholds apply to this.
    pub relevance: f32,
    pub sections: Vec<SectionHit>,
    pub lexical: bool,
    pub dense: bool,
}

/// Filters applied before ranking.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub team: Option<String>,
    pub tags: Vec<String>,
}

impl Filter {
    fn accepts(&self, runbook: &Runbook) -> bool {
        self.team.as_ref().is_none_or(|t| {
            runbook
                .team
                .as_ref()
                .is_some_and(|rt| rt.eq_ignore_ascii_case(t))
        }) && self
            .tags
            .iter()
            .all(|t| runbook.tags.iter().any(|rt| rt.eq_ignore_ascii_case(t)))
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl RunbookIndex {
    /// Builds the lexical index; dense vectors are attached later with [`Self::with_vectors`].
    pub fn build(runbooks: Vec<Runbook>) -> RunbookIndex {
        let chunks: Vec<Chunk> = runbooks
            .iter()
            .enumerate()
            .flat_map(|(i, r)| chunk(i, r))
            .collect();
        let chunk_texts: Vec<String> = chunks
            .iter()
            .map(|c| c.indexed_text(&runbooks[c.doc]))
            .collect();
        let bm25 = Bm25Index::build(chunk_texts.iter().map(String::as_str));
        RunbookIndex {
            runbooks,
            chunks,
            chunk_texts,
            bm25,
            vectors: None,
            fusion: Fusion::default(),
        }
    }

    pub fn with_vectors(mut self, vectors: Vec<Vec<f32>>) -> RunbookIndex {
        assert_eq!(vectors.len(), self.chunks.len(), "one vector per chunk");
        self.vectors = Some(vectors);
        self
    }

    pub fn has_vectors(&self) -> bool {
        self.vectors.is_some()
    }

    pub fn find(&self, id: &str) -> Option<&Runbook> {
        self.runbooks.iter().find(|r| r.id == id)
    }

    /// Searches; `query_vector` is needed for the dense and fused modes (without it they fall
    /// back to lexical).
    pub fn search(
        &self,
        query: &str,
        query_vector: Option<&[f32]>,
        mode: Mode,
        filter: &Filter,
        limit: usize,
    ) -> Vec<DocHit> {
        let allowed = |chunk: usize| filter.accepts(&self.runbooks[self.chunks[chunk].doc]);
        let lexical: Vec<(usize, f32)> = if mode != Mode::Dense || query_vector.is_none() {
            self.bm25
                .search(query, self.chunks.len())
                .into_iter()
                .filter(|(c, _)| allowed(*c))
                .take(DEPTH)
                .collect()
        } else {
            Vec::new()
        };
        let dense: Vec<(usize, f32)> = match (mode, query_vector, &self.vectors) {
            (Mode::Dense | Mode::Fused, Some(q), Some(vectors)) => {
                let mut scored: Vec<(usize, f32)> = vectors
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| allowed(*c))
                    .map(|(c, v)| (c, cosine(q, v)))
                    .collect();
                scored.sort_by(|a, b| b.1.total_cmp(&a.1));
                scored.truncate(DEPTH);
                scored
            }
            _ => Vec::new(),
        };
        let mut fused: HashMap<usize, f32> = HashMap::new();
        let mut in_lexical: HashMap<usize, f32> = HashMap::new();
        let mut in_dense: HashMap<usize, f32> = HashMap::new();
        for (rank, (c, s)) in lexical.iter().enumerate() {
            in_lexical.insert(*c, *s);
            let contribution = if dense.is_empty() {
                *s
            } else {
                self.fusion.lexical_weight / (self.fusion.k + rank as f32 + 1.0)
            };
            *fused.entry(*c).or_default() += contribution;
        }
        for (rank, (c, s)) in dense.iter().enumerate() {
            in_dense.insert(*c, *s);
            let contribution = if lexical.is_empty() {
                *s
            } else {
                self.fusion.dense_weight / (self.fusion.k + rank as f32 + 1.0)
            };
            *fused.entry(*c).or_default() += contribution;
        }
        // Group chunks by runbook.
        let mut docs: HashMap<usize, DocHit> = HashMap::new();
        for (c, score) in fused {
            let doc = self.chunks[c].doc;
            let hit = docs.entry(doc).or_insert_with(|| DocHit {
                doc,
                score: 0.0,
                relevance: 0.0,
                sections: Vec::new(),
                lexical: false,
                dense: false,
            });
            hit.sections.push(SectionHit { chunk: c, score });
            hit.lexical |= in_lexical.contains_key(&c);
            hit.dense |= in_dense.contains_key(&c);
            let relevance = match in_dense.get(&c) {
                Some(cos) => *cos,
                None if dense.is_empty() => in_lexical.get(&c).map_or(0.0, |s| s / (s + 8.0)),
                None => 0.0,
            };
            hit.relevance = hit.relevance.max(relevance);
        }
        let mut hits: Vec<DocHit> = docs
            .into_values()
            .map(|mut h| {
                h.sections
                    .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk.cmp(&b.chunk)));
                // A runbook's score is its best section plus a little for further matching sections.
                h.score = h.sections[0].score
                    + 0.25
                        * h.sections
                            .iter()
                            .skip(1)
                            .take(2)
                            .map(|s| s.score)
                            .sum::<f32>();
                h.sections.truncate(3);
                h
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
        hits.truncate(limit);
        hits
    }

    /// The matched section to show: the best one that is real content (not the profile chunk
    /// built from front matter); failing that, the runbook's first content section.
    pub fn best_content_section(&self, hit: &DocHit) -> usize {
        hit.sections
            .iter()
            .map(|s| s.chunk)
            .find(|&c| self.chunks[c].section != "Signals")
            .or_else(|| {
                (0..self.chunks.len()).find(|&c| {
                    self.chunks[c].doc == hit.doc
                        && self.chunks[c].section != "Signals"
                        && !self.chunks[c].section.is_empty()
                })
            })
            .unwrap_or(hit.sections[0].chunk)
    }

    /// The section of a hit's runbook to attach to a result: the one that says what to do
    /// (by what its heading means: mitigation, remediation, fix, rollback, immediate
    /// actions…), else the best-matching section unless it only describes the problem, else
    /// a diagnosis section; symptoms only when nothing else is there.
    pub fn actionable_section(&self, hit: &DocHit) -> usize {
        let of_doc = || (0..self.chunks.len()).filter(|&c| self.chunks[c].doc == hit.doc);
        if let Some(action) =
            of_doc().find(|&c| section_role(&self.chunks[c].section) == SectionRole::Action)
        {
            return action;
        }
        let best = self.best_content_section(hit);
        if section_role(&self.chunks[best].section) != SectionRole::Background {
            return best;
        }
        of_doc()
            .find(|&c| section_role(&self.chunks[c].section) == SectionRole::Diagnosis)
            .unwrap_or(best)
    }

    /// A focused excerpt of a chunk: the window of about `words` words sharing the most terms
    /// with the query, at most `max_chars` characters.
    pub fn excerpt(&self, chunk: usize, query: &str, words: usize, max_chars: usize) -> String {
        let text = &self.chunks[chunk].text;
        let terms: std::collections::HashSet<String> = tokenize(query).into_iter().collect();
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let mut best = (0usize, 0usize);
        if tokens.len() > words {
            let hits: Vec<usize> = tokens
                .iter()
                .map(|t| usize::from(tokenize(t).iter().any(|x| terms.contains(x))))
                .collect();
            let mut window: usize = hits[..words].iter().sum();
            best = (window, 0);
            for start in 1..=tokens.len() - words {
                window = window + hits[start + words - 1] - hits[start - 1];
                if window > best.0 {
                    best = (window, start);
                }
            }
        }
        let start = best.1;
        let end = (start + words).min(tokens.len());
        let mut excerpt = tokens[start..end].join(" ");
        if excerpt.len() > max_chars {
            let mut cut = max_chars;
            while !excerpt.is_char_boundary(cut) {
                cut -= 1;
            }
            excerpt.truncate(cut);
            excerpt.push('…');
        } else if end < tokens.len() {
            excerpt.push_str(" …");
        }
        if start > 0 {
            excerpt.insert_str(0, "… ");
        }
        excerpt
    }
}

/// What a runbook section is for, by its heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionRole {
    /// What to do: mitigation, remediation, fix, rollback, immediate actions, response.
    Action,
    /// How to find out: diagnosis, investigation, troubleshooting, checks.
    Diagnosis,
    /// What the problem looks like or means: symptoms, meaning, impact, overview.
    Background,
}

/// The role of a section from its heading path ("Mitigation > Raise the limit"): the words of
/// the top heading decide, the rest of the path breaks a tie.
pub fn section_role(section: &str) -> SectionRole {
    const ACTION: &[&str] = &[
        "mitigat",
        "remedia",
        "resol",
        "fix",
        "workaround",
        "immediate",
        "action",
        "respon",
        "recover",
        "rollback",
        "roll back",
        "rolling back",
        "what to do",
        "runbook steps",
        "restore",
    ];
    const DIAGNOSIS: &[&str] = &[
        "diagnos",
        "investigat",
        "troubleshoot",
        "debug",
        "check",
        "verify",
        "triage",
    ];
    let lower = section.to_lowercase();
    let top = lower.split('>').next().unwrap_or("").trim().to_string();
    for text in [&top, &lower] {
        if ACTION.iter().any(|w| text.contains(w)) {
            return SectionRole::Action;
        }
        if DIAGNOSIS.iter().any(|w| text.contains(w)) {
            return SectionRole::Diagnosis;
        }
    }
    SectionRole::Background
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbooks::corpus::parse_runbook;

    #[test]
    fn headings_say_what_a_section_is_for() {
        assert_eq!(section_role("Mitigation"), SectionRole::Action);
        assert_eq!(section_role("Rollback > Verify"), SectionRole::Action);
        assert_eq!(section_role("Immediate actions"), SectionRole::Action);
        assert_eq!(
            section_role("Diagnosis > Check the last state"),
            SectionRole::Diagnosis
        );
        assert_eq!(section_role("Symptoms"), SectionRole::Background);
        assert_eq!(section_role("Meaning"), SectionRole::Background);
        assert_eq!(section_role(""), SectionRole::Background);
    }

    fn index() -> RunbookIndex {
        let docs = [
            (
                "oom",
                "---\ntitle: OOMKilled pods\nteam: platform\ntags: [memory]\nsignals: [OOMKilled]\n---\n# OOMKilled pods\n## Symptoms\nContainer killed with exit code 137 after exceeding its memory limit.\n## Mitigation\nRaise the memory limit or roll back.\n",
            ),
            (
                "dns",
                "---\ntitle: DNS failures\nteam: platform\ntags: [network]\n---\n# DNS failures\n## Symptoms\nlookups time out against CoreDNS.\n",
            ),
            (
                "tls",
                "# Certificate expired\n## Symptoms\nx509: certificate has expired or is not yet valid\n",
            ),
        ];
        RunbookIndex::build(
            docs.iter()
                .map(|(id, md)| parse_runbook(id, id, md.to_string()).unwrap())
                .collect(),
        )
    }

    #[test]
    fn lexical_search_groups_by_runbook() {
        let index = index();
        let hits = index.search(
            "container exit code 137 OOMKilled",
            None,
            Mode::Fused,
            &Filter::default(),
            5,
        );
        assert_eq!(index.runbooks[hits[0].doc].id, "oom");
        assert!(hits[0].lexical && !hits[0].dense);
        assert!(hits[0].relevance > 0.3, "{}", hits[0].relevance);
        let ids: Vec<usize> = hits.iter().map(|h| h.doc).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids, unique, "one hit per runbook");
    }

    #[test]
    fn filters_and_excerpts() {
        let index = index();
        let filter = Filter {
            team: None,
            tags: vec!["network".into()],
        };
        let hits = index.search("OOMKilled memory", None, Mode::Lexical, &filter, 5);
        assert!(hits.iter().all(|h| index.runbooks[h.doc].id == "dns"));
        let hit = &index.search("x509 expired", None, Mode::Lexical, &Filter::default(), 1)[0];
        let excerpt = index.excerpt(hit.sections[0].chunk, "x509 expired", 5, 200);
        assert!(excerpt.contains("x509"), "{excerpt}");
    }

    #[test]
    fn dense_vectors_fuse_with_lexical() {
        let index = index();
        let n = index.chunks.len();
        // Fake vectors: make the TLS chunks point the same way as the query.
        let vectors: Vec<Vec<f32>> = (0..n)
            .map(|c| {
                if index.runbooks[index.chunks[c].doc].id == "tls" {
                    vec![1.0, 0.0]
                } else {
                    vec![0.0, 1.0]
                }
            })
            .collect();
        let index = index.with_vectors(vectors);
        let hits = index.search(
            "nothing lexical here",
            Some(&[1.0, 0.0]),
            Mode::Fused,
            &Filter::default(),
            3,
        );
        assert_eq!(index.runbooks[hits[0].doc].id, "tls");
        assert!(hits[0].dense && (hits[0].relevance - 1.0).abs() < 1e-6);
    }
}
