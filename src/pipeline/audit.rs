//! The audit stage: every call — read or write, completed, failed or refused — becomes a
//! record in the durable history store once its reply is final, with the client, the masked
//! arguments, the outcome and the duration; a write attempt adds its change, review verdict
//! and evidence, approval and revisions. A write is refused up front when there is no store
//! to record it in; reads go on (the server says why in `system://health`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Call, Outcome, Stage, StagedResult, ToolReply};
use crate::history::{AuditRecord, HistoryStore, WriteDetails};
use crate::util::quote::clip;
use crate::util::redact;
use crate::util::timefmt::rfc3339;

/// Where records go: the store, or why there is none.
pub type HistorySlot = Result<Arc<HistoryStore>, String>;

pub struct Audit {
    history: HistorySlot,
}

impl Audit {
    pub fn new(history: HistorySlot) -> Audit {
        Audit { history }
    }
}

/// Longest message kept per record.
const MESSAGE_CHARS: usize = 1_000;

#[async_trait]
impl Stage for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    async fn admit(&self, call: &Call<'_>) -> Result<(), String> {
        match (&self.history, call.tool.kind.read_only()) {
            (Err(reason), false) => Err(format!(
                "{} was not run: every write is recorded in the history database, and it is unavailable ({reason}). Fix it (or point --data-dir at a writable folder) and restart sre-mcp",
                call.tool.name
            )),
            _ => Ok(()),
        }
    }

    async fn apply(&self, _call: &Call<'_>, _result: &mut StagedResult) -> anyhow::Result<()> {
        Ok(())
    }

    fn finish(&self, call: &Call<'_>, outcome: Outcome, reply: &mut ToolReply) {
        let Ok(store) = &self.history else {
            return;
        };
        let record = record_of(call, outcome, reply);
        if let Err(error) = store.record(&record) {
            tracing::error!(tool = call.tool.name, %error, "audit record not written");
            if !call.tool.kind.read_only() {
                reply.text.push_str(&format!(
                    "\n\nwarning: this call could not be recorded in the audit log ({error})"
                ));
            }
        }
    }
}

/// The record of one call.
pub fn record_of(call: &Call<'_>, outcome: Outcome, reply: &ToolReply) -> AuditRecord {
    let facts = call.client.facts();
    let mut arguments = bounded(&Value::Object(call.arguments.clone()), 0);
    // A used token is spent, but it is a credential while it lives: never kept.
    if let Some(token) = arguments.get_mut("confirmation_token") {
        *token = Value::String("[confirmation token]".into());
    }
    let structured = reply.structured.as_ref().filter(|_| !reply.is_error);
    let writes = !call.tool.kind.read_only();
    let outcome_text = match outcome {
        Outcome::Refused { .. } => "refused".to_string(),
        Outcome::Failed => "error".into(),
        Outcome::Completed => structured
            .and_then(|s| s.get("outcome"))
            .and_then(Value::as_str)
            .filter(|_| writes)
            .unwrap_or("ok")
            .to_string(),
    };
    let message = match (structured, writes) {
        (Some(s), true) => s.get("summary").and_then(Value::as_str).map(str::to_string),
        (Some(_), false) => None,
        (None, _) => Some(reply.text.clone()),
    }
    .map(|m| clip(&redact::mask(&m), MESSAGE_CHARS).into_owned());
    AuditRecord {
        id: 0,
        at: rfc3339(jiff::Timestamp::now()),
        client: facts.name,
        client_version: facts.version,
        tool: call.tool.name.to_string(),
        arguments,
        outcome: outcome_text,
        duration_ms: call.started.elapsed().as_millis() as u64,
        message,
        write: writes.then(|| write_details(call, structured)),
    }
}

/// Longest string kept of one argument (the reason of a write is kept whole within it).
const ARGUMENT_CHARS: usize = 2_000;
/// Most items kept of one list argument.
const ARGUMENT_ITEMS: usize = 32;

/// An argument as the log keeps it: masked, and bounded — a refused megabyte argument is a
/// few hundred characters of record, not a megabyte written on every call.
fn bounded(value: &Value, depth: usize) -> Value {
    match value {
        Value::String(text) => {
            // Masked on a prefix still long enough to hold whole credentials, then cut.
            let mut end = text.len().min(ARGUMENT_CHARS * 4 + 4096);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let masked = redact::mask(&text[..end]);
            let mut kept = clip(&masked, ARGUMENT_CHARS).into_owned();
            if end < text.len() && !kept.ends_with('…') {
                kept.push('…');
            }
            Value::String(kept)
        }
        Value::Array(items) if depth < 4 => Value::Array(
            items
                .iter()
                .take(ARGUMENT_ITEMS)
                .map(|v| bounded(v, depth + 1))
                .collect(),
        ),
        Value::Object(map) if depth < 4 => Value::Object(
            map.iter()
                .take(ARGUMENT_ITEMS)
                .map(|(k, v)| (clip(k, 64).into_owned(), bounded(v, depth + 1)))
                .collect(),
        ),
        Value::Array(_) | Value::Object(_) => Value::String("…".into()),
        other => other.clone(),
    }
}

/// What a write attempt changed or would have, from its report — or, when it never got one
/// (refused arguments, an error), from what it asked for.
fn write_details(call: &Call<'_>, report: Option<&Value>) -> WriteDetails {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    if let Some(r) = report {
        let review = r.get("review");
        let approval = r.get("approval");
        return WriteDetails {
            namespace: text(r.get("namespace")).unwrap_or_default(),
            service: text(r.get("service")).unwrap_or_default(),
            environment: text(r.pointer("/environment/name")),
            change: text(r.pointer("/change/summary")).unwrap_or_default(),
            verdict: text(review.and_then(|v| v.get("verdict"))),
            risk: text(review.and_then(|v| v.get("risk"))),
            evidence: review
                .and_then(|v| v.get("reasons"))
                .and_then(Value::as_array)
                .map(|reasons| {
                    let joined = reasons
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ");
                    clip(&joined, MESSAGE_CHARS).into_owned()
                }),
            approval: text(approval.and_then(|a| a.get("how"))),
            approved_by: text(approval.and_then(|a| a.get("by"))),
            revision_before: r.get("revision_before").and_then(Value::as_i64),
            revision_after: r.get("revision_after").and_then(Value::as_i64),
        };
    }
    let arguments = call.arguments;
    let argument = |key: &str| {
        arguments.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let service = argument("service").unwrap_or_default();
    let (namespace, service) = match (argument("namespace"), service.split_once('/')) {
        (Some(ns), _) => (ns, service.clone()),
        (None, Some((ns, name))) => (ns.to_string(), name.to_string()),
        (None, None) => (String::new(), service.clone()),
    };
    let asked = match call.tool.name {
        "deploy_with_review" => format!("image → {}", argument("image").unwrap_or_default()),
        "rollback_deployment" => format!(
            "rollback to {}",
            argument("to_revision")
                .map_or("the previous revision".into(), |r| format!("revision {r}"))
        ),
        "scale_deployment" => format!("replicas → {}", argument("replicas").unwrap_or_default()),
        "restart_deployment" => "restart".into(),
        other => other.to_string(),
    };
    WriteDetails {
        namespace,
        service: clip(&service, 253).into_owned(),
        change: format!("{} (asked; not reviewed)", clip(&asked, 300)),
        ..WriteDetails::default()
    }
}
