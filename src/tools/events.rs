//! `get_events`: Kubernetes events, warnings first and newest first, filterable by type and
//! involved object.

use std::fmt::Write;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Context;
use super::{RenderText, ToolDef, ToolError, ToolKind, ToolResult, define_tool, lookup};
use crate::cluster::{FieldSelector, ListQuery, view};
use crate::util::timefmt::{age, rfc3339};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetEventsParams {
    /// Namespace; omit for all namespaces.
    pub namespace: Option<String>,
    /// `Warning` or `Normal`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// `Kind/name` (`Pod/web-1`) or a name; a name prefix also finds its ReplicaSets and pods.
    pub object: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventList {
    /// Events: warnings first, then newest first.
    pub events: Vec<EventSummary>,
    pub total: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventSummary {
    pub namespace: String,
    /// Warning or Normal.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    /// Involved object as Kind/name.
    pub object: String,
    pub message: String,
    pub count: i64,
    pub first_seen: String,
    /// Relative, e.g. "3m ago".
    pub last_seen: String,
    pub last_seen_at: String,
    pub source: String,
}

pub fn tool() -> ToolDef {
    define_tool(
        "get_events",
        "Get events",
        "Kubernetes events (BackOff, OOMKilling, FailedScheduling, Unhealthy…), warnings first, then newest; filter by namespace, type and involved object.",
        ToolKind::Read,
        get_events,
    )
}

pub fn summarise_event(event: &Event, now: Timestamp) -> EventSummary {
    let last = view::event_last_seen(event);
    let obj = &event.involved_object;
    EventSummary {
        namespace: view::namespace(&event.metadata).to_string(),
        type_: event.type_.clone().unwrap_or_else(|| "Normal".into()),
        reason: event.reason.clone().unwrap_or_default(),
        object: format!(
            "{}/{}",
            obj.kind.as_deref().unwrap_or("?"),
            obj.name.as_deref().unwrap_or("?")
        ),
        message: event.message.clone().unwrap_or_default(),
        count: i64::from(event.count.unwrap_or(1)),
        first_seen: event
            .first_timestamp
            .as_ref()
            .map(|t| rfc3339(t.0))
            .unwrap_or_default(),
        last_seen: last
            .map(|t| format!("{} ago", age(t, now)))
            .unwrap_or_default(),
        last_seen_at: last.map(rfc3339).unwrap_or_default(),
        source: event
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .or_else(|| event.reporting_component.clone())
            .unwrap_or_default(),
    }
}

async fn get_events(ctx: Arc<Context>, params: GetEventsParams) -> ToolResult<EventList> {
    if let Some(ns) = &params.namespace {
        lookup::require_namespace(&ctx, ns).await?;
    }
    let wanted_type = match params.type_.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.eq_ignore_ascii_case("warning") => Some("Warning"),
        Some(t) if t.eq_ignore_ascii_case("normal") => Some("Normal"),
        Some(t) => {
            return Err(ToolError::InvalidArgument(format!(
                "invalid type {t:?}; valid types: Warning, Normal"
            )));
        }
    };
    let (kind, name) = match params
        .object
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        Some(o) => match o.split_once('/') {
            Some((k, n)) => (Some(k.to_string()), Some(n.to_string())),
            None => (None, Some(o.to_string())),
        },
        None => (None, None),
    };
    // Type and an exact kind/name go to the backend as field selectors; a bare name also
    // matches the objects named after it (a deployment's ReplicaSets and pods), so that part
    // is filtered here.
    let mut fields = FieldSelector::default();
    if let Some(t) = wanted_type {
        fields = fields.and("type", t);
    }
    if let (Some(k), Some(n)) = (&kind, &name) {
        fields = fields.and("involvedObject.name", n);
        if let Some(canonical) = canonical_kind(k) {
            fields = fields.and("involvedObject.kind", canonical);
        }
    }
    let mut query = ListQuery::namespace(params.namespace.as_deref());
    if !fields.requirements.is_empty() {
        query = query.with_fields(fields);
    }
    let events = ctx.backend.events(&query).await?.items;
    let mut matching: Vec<&Event> = events
        .iter()
        .filter(|e| wanted_type.is_none_or(|t| e.type_.as_deref() == Some(t)))
        .filter(|e| {
            kind.as_ref().is_none_or(|k| {
                e.involved_object
                    .kind
                    .as_deref()
                    .is_some_and(|ek| ek.eq_ignore_ascii_case(k))
            })
        })
        .filter(|e| {
            name.as_ref().is_none_or(|n| {
                e.involved_object.name.as_deref().is_some_and(|en| {
                    en == n
                        || (kind.is_none()
                            && en.starts_with(n.as_str())
                            && en[n.len()..].starts_with('-'))
                })
            })
        })
        .collect();
    matching.sort_by(|a, b| {
        view::event_is_warning(b)
            .cmp(&view::event_is_warning(a))
            .then_with(|| view::event_last_seen(b).cmp(&view::event_last_seen(a)))
    });
    let now = Timestamp::now();
    let events: Vec<EventSummary> = matching.iter().map(|e| summarise_event(e, now)).collect();
    Ok(EventList {
        total: events.len(),
        events,
    })
}

/// The API's spelling of a kind the user may have typed in any case (`pod` → `Pod`).
fn canonical_kind(kind: &str) -> Option<&'static str> {
    const KINDS: &[&str] = &[
        "Pod",
        "ReplicaSet",
        "Deployment",
        "Node",
        "Service",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "PersistentVolumeClaim",
        "HorizontalPodAutoscaler",
        "Namespace",
    ];
    KINDS.iter().copied().find(|k| k.eq_ignore_ascii_case(kind))
}

impl RenderText for EventList {
    fn render_text(&self) -> String {
        let mut out = format!("{} events (warnings first, newest first):\n", self.total);
        for e in &self.events {
            let _ = writeln!(
                out,
                "{:<8} {:<9} {:<22} {} ×{} — {}",
                e.last_seen.trim_end_matches(" ago"),
                e.type_,
                e.reason,
                if e.namespace.is_empty() {
                    e.object.clone()
                } else {
                    format!("{}/{}", e.namespace, e.object)
                },
                e.count,
                e.message
            );
        }
        out.trim_end().to_string()
    }
}
