//! Okapi BM25 over runbook chunks: a small, tested lexical retriever. Tokens are lowercase
//! alphanumeric runs with a light plural stemmer; CamelCase identifiers (alert names, event
//! reasons) are also split into their words so "CrashLoopBackOff" matches "crash loop".

use std::collections::HashMap;

const K1: f32 = 1.2;
const B: f32 = 0.75;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is",
    "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with",
    "when", "what", "which", "why", "how", "our", "we", "you", "your", "can", "if", "not", "no",
    "do", "does", "after", "all", "any", "but", "into", "than", "then", "there", "these", "they",
    "up", "out", "so", "i", "my", "me", "keeps", "keep",
];

fn stem(word: &str) -> String {
    let w = word;
    if w.len() > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if w.len() > 3
        && w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("us")
        && !w.ends_with("is")
    {
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

/// Splits text into index terms.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        if raw.is_empty() {
            continue;
        }
        let lower = raw.to_lowercase();
        // CamelCase parts: "CrashLoopBackOff" → crash, loop, back, off (plus the whole word).
        let mut parts = Vec::new();
        let mut current = String::new();
        let chars: Vec<char> = raw.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            let boundary = c.is_uppercase()
                && i > 0
                && (chars[i - 1].is_lowercase()
                    || chars.get(i + 1).is_some_and(|n| n.is_lowercase())
                        && chars[i - 1].is_uppercase());
            if boundary && !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            current.extend(c.to_lowercase());
        }
        if !current.is_empty() {
            parts.push(current);
        }
        if lower.len() >= 2 && !STOPWORDS.contains(&lower.as_str()) {
            out.push(stem(&lower));
        }
        if parts.len() > 1 {
            out.extend(
                parts
                    .into_iter()
                    .filter(|p| p.len() >= 2 && !STOPWORDS.contains(&p.as_str()))
                    .map(|p| stem(&p)),
            );
        }
    }
    out
}

/// An inverted index with BM25 scoring.
#[derive(Debug, Default, Clone)]
pub struct Bm25Index {
    postings: HashMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    average_length: f32,
}

impl Bm25Index {
    pub fn build<'a>(documents: impl IntoIterator<Item = &'a str>) -> Bm25Index {
        let mut index = Bm25Index::default();
        for (id, text) in documents.into_iter().enumerate() {
            let tokens = tokenize(text);
            index.lengths.push(tokens.len() as u32);
            let mut counts: HashMap<String, u32> = HashMap::new();
            for t in tokens {
                *counts.entry(t).or_default() += 1;
            }
            for (term, tf) in counts {
                index
                    .postings
                    .entry(term)
                    .or_default()
                    .push((id as u32, tf));
            }
        }
        let total: u64 = index.lengths.iter().map(|&l| u64::from(l)).sum();
        index.average_length = if index.lengths.is_empty() {
            0.0
        } else {
            total as f32 / index.lengths.len() as f32
        };
        index
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Scores every document that shares a term with the query; best first.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(usize, f32)> {
        let n = self.lengths.len() as f32;
        let mut terms = tokenize(query);
        terms.sort();
        terms.dedup();
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for term in &terms {
            let Some(postings) = self.postings.get(term) else {
                continue;
            };
            let df = postings.len() as f32;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(doc, tf) in postings {
                let tf = tf as f32;
                let len = self.lengths[doc as usize] as f32;
                let norm = tf * (K1 + 1.0)
                    / (tf + K1 * (1.0 - B + B * len / self.average_length.max(1.0)));
                *scores.entry(doc).or_default() += idf * norm;
            }
        }
        let mut ranked: Vec<(usize, f32)> =
            scores.into_iter().map(|(d, s)| (d as usize, s)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_splits_camel_case_and_stems() {
        let t = tokenize("Pod CrashLoopBackOff: containers OOMKilled (exit 137)");
        for expected in [
            "pod",
            "crashloopbackoff",
            "crash",
            "loop",
            "back",
            "off",
            "container",
            "oomkilled",
            "oom",
            "killed",
            "exit",
            "137",
        ] {
            assert!(
                t.contains(&expected.to_string()),
                "{expected} missing from {t:?}"
            );
        }
        assert!(!t.contains(&"the".to_string()));
    }

    #[test]
    fn ranks_by_term_rarity_and_frequency() {
        let docs = [
            "disk full on node, evictions",
            "pod memory limit exceeded OOMKilled OOMKilled",
            "memory pressure on node",
            "certificate expired x509",
        ];
        let index = Bm25Index::build(docs.iter().copied());
        let hits = index.search("container OOMKilled memory", 10);
        assert_eq!(hits[0].0, 1);
        assert_eq!(hits[1].0, 2);
        assert!(index.search("nothing matches zzz", 10).is_empty());
        assert_eq!(index.search("x509 certificate", 1)[0].0, 3);
    }
}
