//! Runbook knowledge: the corpus (shipped and user folders), the hybrid index (BM25 + local
//! embeddings, fused), the background-loading knowledge base, model set-up and evaluation.

pub mod bm25;
pub mod corpus;
pub mod embed;
pub mod eval;
pub mod index;
pub mod int8_matmul;
pub mod knowledge;
pub mod setup;
