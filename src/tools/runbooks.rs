//! `search_runbooks`: hybrid (lexical + embedding) search over the runbook corpus.

use std::fmt::Write;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Context;
use super::{RenderText, ToolDef, ToolError, ToolKind, ToolResult, define_tool, limits, lookup};
use crate::runbooks::index::{DocHit, Filter, RunbookIndex};
use crate::util::quote::thousands;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRunbooksParams {
    /// A symptom, error message, event reason or alert name.
    #[schemars(length(max = limits::TEXT))]
    pub query: String,
    /// Most runbooks to return (default 5).
    #[schemars(range(min = limits::RUNBOOKS_MIN, max = limits::RUNBOOKS_MAX))]
    pub limit: Option<i64>,
    /// Only this team's runbooks (front matter `team`).
    #[schemars(length(max = limits::NAME))]
    pub team: Option<String>,
    /// Only runbooks carrying all of these tags.
    #[schemars(length(max = limits::TAGS), inner(length(max = limits::TAG)))]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RunbookSearch {
    pub query: String,
    /// Which retrievers answered: fused (lexical + embeddings) or lexical.
    pub retrieval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Runbooks, best first.
    pub results: Vec<RunbookResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RunbookResult {
    pub id: String,
    pub title: String,
    /// Read the whole runbook with resources/read on this URI.
    pub uri: String,
    /// Where the runbook file lives.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub score: f32,
    /// 0–1: cosine similarity of the best section (or saturated BM25 in lexical-only mode).
    pub relevance: f32,
    /// Matched section headings, best first.
    pub sections: Vec<String>,
    /// A focused excerpt of the best section.
    pub excerpt: String,
    /// Retrievers that found it: lexical, dense.
    pub matched_by: Vec<String>,
}

pub fn tool() -> ToolDef {
    let mut tool = define_tool(
        "search_runbooks",
        "Search runbooks",
        "Find runbooks for a symptom, error message, event reason or alert: each with the matching section, an excerpt and a score; read one whole at its runbook:// URI.",
        ToolKind::Read,
        search_runbooks,
    );
    // Its result is runbooks already.
    tool.attach_runbooks = false;
    tool.reads_cluster = false;
    tool
}

pub fn result_of(index: &RunbookIndex, hit: &DocHit, query: &str) -> RunbookResult {
    let runbook = &index.runbooks[hit.doc];
    let mut matched_by = Vec::new();
    if hit.lexical {
        matched_by.push("lexical".to_string());
    }
    if hit.dense {
        matched_by.push("dense".to_string());
    }
    let mut sections: Vec<String> = Vec::new();
    for s in &hit.sections {
        let name = index.chunks[s.chunk].section.clone();
        let name = if name.is_empty() {
            "(introduction)".to_string()
        } else {
            name
        };
        if !sections.contains(&name) {
            sections.push(name);
        }
    }
    RunbookResult {
        id: runbook.id.clone(),
        title: runbook.title.clone(),
        uri: runbook.uri(),
        source: runbook.source.clone(),
        team: runbook.team.clone(),
        score: (hit.score * 1e4).round() / 1e4,
        relevance: (hit.relevance * 1e3).round() / 1e3,
        sections,
        excerpt: index.excerpt(index.best_content_section(hit), query, 45, 360),
        matched_by,
    }
}

async fn search_runbooks(
    ctx: Arc<Context>,
    params: SearchRunbooksParams,
) -> ToolResult<RunbookSearch> {
    let query = params.query.trim();
    if query.is_empty() {
        return Err(ToolError::InvalidArgument(
            "query is empty; describe the symptom, e.g. \"pods OOMKilled exit code 137\"".into(),
        ));
    }
    let chars = query.chars().count();
    if chars > limits::TEXT {
        return Err(ToolError::InvalidArgument(format!(
            "query is {} characters; the limit is {}",
            thousands(chars),
            thousands(limits::TEXT)
        )));
    }
    let mut notes = Vec::new();
    let limit = lookup::clamp(
        "limit",
        params.limit,
        5,
        limits::RUNBOOKS_MIN,
        limits::RUNBOOKS_MAX,
        &mut notes,
    ) as usize;
    let filter = Filter {
        team: params.team.filter(|t| !t.trim().is_empty()),
        tags: params.tags.unwrap_or_default(),
    };
    let outcome = ctx
        .knowledge
        .search(query, &filter, limit)
        .await
        .map_err(ToolError::Unavailable)?;
    if outcome.hits.is_empty() && (filter.team.is_some() || !filter.tags.is_empty()) {
        let teams: std::collections::BTreeSet<&str> = outcome
            .index
            .runbooks
            .iter()
            .filter_map(|r| r.team.as_deref())
            .collect();
        notes.push(format!(
            "nothing matched with these filters; teams: {}",
            teams.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(RunbookSearch {
        query: query.to_string(),
        retrieval: outcome.mode.as_str().to_string(),
        note: outcome.note,
        results: outcome
            .hits
            .iter()
            .map(|h| result_of(&outcome.index, h, query))
            .collect(),
        notes,
    })
}

impl RenderText for RunbookSearch {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} runbooks for {:?} ({} retrieval)\n",
            self.results.len(),
            self.query,
            self.retrieval
        );
        if let Some(n) = &self.note {
            let _ = writeln!(out, "note: {n}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for (i, r) in self.results.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}. {} ({}) — score {:.4}, relevance {:.2}, via {}\n   § {}\n   {}",
                i + 1,
                r.title,
                r.uri,
                r.score,
                r.relevance,
                r.matched_by.join("+"),
                r.sections.join("; "),
                r.excerpt
            );
        }
        out.trim_end().to_string()
    }
}
