//! The runbook augmenter, a pipeline stage: extracts issue signals from a tool's structured
//! result (container reasons and exit codes, warning events, failing conditions, firing alerts,
//! error log lines), retrieves the runbook sections that fit each problem, and attaches the
//! best ones as `relevant_runbooks`. A result without signals passes through unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::envelope::{RELEVANT_RUNBOOKS, RelevantRunbook};
use super::problem::{self, StatusClass};
use super::{Call, Stage, StagedResult};
use crate::runbooks::index::Filter;
use crate::runbooks::knowledge::KnowledgeBase;
use crate::util::logs::normalise_message;
use crate::util::summary;

/// Characters of a runbook excerpt: about 120 tokens of prose.
const EXCERPT_CHARS: usize = 450;

/// The result fields the augmenter reads besides those of [`problem::FIELDS_READ`]. Every one
/// must appear in some tool's output schema.
pub const FIELDS_READ: &[&str] = &[
    "reason",
    "message",
    "state",
    "exit_code",
    "last_exit_code",
    "severity",
    "name",
    "summary",
    "sample",
    "count",
    "key",
    "last_seen",
];

/// One problem seen in a result: a key phrase and the context that goes with it.
#[derive(Debug, Clone)]
struct Problem {
    key: String,
    context: Vec<String>,
    weight: f32,
}

#[derive(Default)]
struct Signals {
    problems: Vec<Problem>,
    error_lines: HashMap<String, usize>,
}

impl Signals {
    fn add(&mut self, key: &str, context: Vec<String>, weight: f32) {
        let key = key.trim();
        if key.is_empty() {
            return;
        }
        match self
            .problems
            .iter_mut()
            .find(|p| p.key.eq_ignore_ascii_case(key))
        {
            Some(p) => {
                // Severity decides; repetition adds only a little, so a noisy but minor
                // signal does not drown a rare severe one.
                p.weight = p.weight.max(weight) + 0.1;
                for c in context {
                    if !p.context.contains(&c) && p.context.len() < 4 {
                        p.context.push(c);
                    }
                }
            }
            None => self.problems.push(Problem {
                key: key.to_string(),
                context,
                weight,
            }),
        }
    }
}

fn short(text: &str, words: usize) -> String {
    text.split_whitespace()
        .take(words)
        .collect::<Vec<_>>()
        .join(" ")
}

fn str_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Walks the structured result, reading fields by their meaning.
fn extract(value: &Value, signals: &mut Signals) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| extract(v, signals)),
        Value::Object(object) => {
            extract_object(object, signals);
            for (key, child) in object {
                if key != RELEVANT_RUNBOOKS {
                    extract(child, signals);
                }
            }
        }
        _ => {}
    }
}

fn extract_object(o: &Map<String, Value>, signals: &mut Signals) {
    // A Kubernetes event (get_events, describe_pod) or a grouped warning (check_service_health).
    let is_warning_event = str_field(o, "type").is_some_and(problem::is_warning_type)
        || o.contains_key("last_seen") && o.contains_key("count") && !o.contains_key("type");
    if is_warning_event && let Some(reason) = str_field(o, "reason") {
        let message = str_field(o, "message")
            .map(|m| short(&normalise_message(m), 24))
            .unwrap_or_default();
        signals.add(reason, vec![message], 3.0);
        return;
    }
    // A container state (describe_pod): waiting/terminated reason and exit code.
    if let Some(state) = str_field(o, "state")
        && matches!(state, "waiting" | "terminated")
        && let Some(reason) = str_field(o, "reason")
    {
        let mut context = Vec::new();
        if let Some(code) = o
            .get("exit_code")
            .and_then(Value::as_i64)
            .filter(|c| *c != 0)
        {
            context.push(format!("exit code {code}"));
        }
        if let Some(m) = str_field(o, "message") {
            context.push(short(m, 16));
        }
        let weight = match reason {
            r if problem::BENIGN_TERMINATIONS.contains(&r) => 0.0,
            "OOMKilled"
            | "CrashLoopBackOff"
            | "ImagePullBackOff"
            | "ErrImagePull"
            | "CreateContainerConfigError" => 4.0,
            _ => 3.0,
        };
        if weight > 0.0 {
            signals.add(reason, context, weight);
        }
        return;
    }
    // A pod summary or pod problem: status, last termination reason and exit code.
    if let Some(status) = str_field(o, "status")
        && problem::status_class(status) == StatusClass::Failing
    {
        let mut context = Vec::new();
        if let Some(last) = str_field(o, "last_termination_reason") {
            context.push(last.to_string());
            signals.add(last, vec![status.to_string()], 4.0);
        }
        if let Some(code) = o
            .get("last_exit_code")
            .and_then(Value::as_i64)
            .filter(|c| *c != 0)
        {
            context.push(format!("exit code {code}"));
        }
        let weight = if matches!(status, "Pending" | "Failed") {
            2.5
        } else {
            3.5
        };
        signals.add(status, context, weight);
    }
    // A failing condition (pod or deployment).
    if str_field(o, "status") == Some("False")
        && let (Some(kind), Some(reason)) = (str_field(o, "type"), str_field(o, "reason"))
        && !matches!(reason, "ContainersNotReady" | "PodCompleted")
    {
        let message = str_field(o, "message")
            .map(|m| short(&normalise_message(m), 20))
            .unwrap_or_default();
        signals.add(reason, vec![format!("{kind} False"), message], 1.5);
    }
    // A firing alert.
    if o.contains_key("severity")
        && let Some(name) = str_field(o, "name")
    {
        let summary = str_field(o, "summary")
            .map(|s| short(s, 20))
            .unwrap_or_default();
        let weight = if str_field(o, "severity") == Some("critical") {
            2.5
        } else {
            1.5
        };
        signals.add(name, vec![summary], weight);
    }
    // An error log entry.
    if str_field(o, "level").is_some_and(problem::is_error_level)
        && let Some(message) = str_field(o, "message")
    {
        *signals
            .error_lines
            .entry(short(&normalise_message(message), 20))
            .or_default() += 1;
    }
    // An error group (count_errors).
    if let (Some(sample), Some(count)) = (
        str_field(o, "sample"),
        o.get("count").and_then(Value::as_u64),
    ) && o.contains_key("key")
    {
        *signals
            .error_lines
            .entry(short(&normalise_message(sample), 20))
            .or_default() += count as usize;
    }
}

/// The problems in a result, strongest first (at most `limit`).
fn problems(structured: &Value, limit: usize) -> Vec<Problem> {
    let mut signals = Signals::default();
    extract(structured, &mut signals);
    let mut lines: Vec<(String, usize)> = signals.error_lines.into_iter().collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (line, count) in lines.into_iter().take(3) {
        signals.problems.push(Problem {
            key: line,
            context: Vec::new(),
            weight: 1.0 + (count as f32).ln_1p() * 0.5,
        });
    }
    let mut problems = signals.problems;
    problems.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.key.cmp(&b.key))
    });
    problems.truncate(limit);
    problems
}

fn query_of(problem: &Problem) -> String {
    let mut parts = vec![problem.key.clone()];
    parts.extend(problem.context.iter().filter(|c| !c.is_empty()).cloned());
    parts.join(". ")
}

/// The augmenter stage.
pub struct Augmenter {
    knowledge: Arc<KnowledgeBase>,
    threshold: f32,
    max_runbooks: usize,
    /// Tool calls this session has run through the augmenter.
    calls: AtomicU64,
    /// Runbook sections whose excerpt this session received, and in which call: later
    /// results refer to them by title and link only.
    sent: Mutex<HashMap<String, u64>>,
}

impl Augmenter {
    /// Least relevance (0–1) to attach a runbook.
    pub const DEFAULT_THRESHOLD: f32 = 0.35;
    /// Runbooks attached per result.
    pub const DEFAULT_MAX_RUNBOOKS: usize = 2;

    pub fn new(knowledge: Arc<KnowledgeBase>, threshold: f32, max_runbooks: usize) -> Augmenter {
        Augmenter {
            knowledge,
            threshold,
            max_runbooks: max_runbooks.clamp(1, 3),
            calls: AtomicU64::new(0),
            sent: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Stage for Augmenter {
    fn name(&self) -> &'static str {
        "runbook-augmenter"
    }

    async fn apply(&self, call: &Call<'_>, result: &mut StagedResult) -> anyhow::Result<()> {
        let tool = call.tool;
        if !tool.attach_runbooks {
            return Ok(());
        }
        let started = Instant::now();
        let call_number = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let problems = problems(&result.structured, 3);
        if problems.is_empty() {
            tracing::debug!(
                tool = tool.name,
                us = started.elapsed().as_micros() as u64,
                "augmenter: no signals"
            );
            return Ok(());
        }
        let queries: Vec<String> = problems.iter().map(query_of).collect();
        let (index, per_query, mode) = self
            .knowledge
            .search_many(&queries, &Filter::default(), 3)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut attached: Vec<(usize, RelevantRunbook)> = Vec::new();
        // Round-robin over problems so that each problem gets its best runbook before any gets a second.
        for round in 0..3 {
            for (problem, hits) in problems.iter().zip(&per_query) {
                let Some(hit) = hits.get(round) else { continue };
                if hit.relevance < self.threshold {
                    continue;
                }
                if let Some((_, existing)) = attached.iter_mut().find(|(doc, _)| *doc == hit.doc) {
                    if !existing.signals.contains(&problem.key) {
                        existing.signals.push(problem.key.clone());
                    }
                    continue;
                }
                if attached.len() >= self.max_runbooks {
                    continue;
                }
                let runbook = &index.runbooks[hit.doc];
                let chunk = index.actionable_section(hit);
                let section = index.chunks[chunk].section.clone();
                let section = if section.is_empty() {
                    "(introduction)".to_string()
                } else {
                    section
                };
                // Each section's excerpt once per session; later, its title and link.
                let key = format!("{}#{section}", runbook.uri());
                let sent_in_call = {
                    let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
                    match sent.get(&key) {
                        Some(&call) if call != call_number => Some(call),
                        _ => {
                            sent.insert(key, call_number);
                            None
                        }
                    }
                };
                attached.push((
                    hit.doc,
                    RelevantRunbook {
                        title: runbook.title.clone(),
                        uri: runbook.uri(),
                        section,
                        excerpt: match sent_in_call {
                            Some(_) => String::new(),
                            None => summary::whole_units(
                                &runbook
                                    .section_text(&index.chunks[chunk].section)
                                    .unwrap_or_else(|| index.chunks[chunk].text.clone()),
                                EXCERPT_CHARS,
                            ),
                        },
                        sent_in_call,
                        score: (f64::from(hit.relevance) * 100.0).round() / 100.0,
                        signals: vec![problem.key.clone()],
                    },
                ));
            }
        }
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::info!(
            tool = tool.name,
            problems = problems.len(),
            attached = attached.len(),
            retrieval = mode.as_str(),
            us = elapsed_us,
            "augmenter"
        );
        if attached.is_empty() {
            return Ok(());
        }
        let runbooks: Vec<RelevantRunbook> = attached.into_iter().map(|(_, r)| r).collect();
        // The text block is rendered from this field (pipeline::render_reply), so it follows
        // whatever later stages do to it.
        if let Value::Object(map) = &mut result.structured {
            map.insert(RELEVANT_RUNBOOKS.into(), serde_json::to_value(&runbooks)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn healthy_results_have_no_signals() {
        let healthy = json!({"services": [{"name": "a", "status": "healthy", "verdict": "healthy", "pods_ready": 3}]});
        assert!(problems(&healthy, 3).is_empty());
        let pods =
            json!({"pods": [{"name": "p", "status": "Running", "ready": "1/1", "restarts": 0}]});
        assert!(problems(&pods, 3).is_empty());
    }

    #[test]
    fn reasons_exit_codes_events_and_errors_become_problems() {
        let described = json!({
            "containers": [{"state": {"state": "waiting", "reason": "CrashLoopBackOff"},
                            "last_state": {"state": "terminated", "reason": "OOMKilled", "exit_code": 137}}],
            "events": [{"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container x in pod y"}],
            "entries": [{"level": "ERROR", "message": "java.lang.OutOfMemoryError: Java heap space"}]
        });
        let found = problems(&described, 5);
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(
            keys.contains(&"OOMKilled")
                && keys.contains(&"CrashLoopBackOff")
                && keys.contains(&"BackOff"),
            "{keys:?}"
        );
        let oom = found.iter().find(|p| p.key == "OOMKilled").unwrap();
        assert!(oom.context.contains(&"exit code 137".to_string()));
        assert!(found.iter().any(|p| p.key.contains("OutOfMemoryError")));
    }
}
