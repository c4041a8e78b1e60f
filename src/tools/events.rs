//! `get_events`: Kubernetes events, warnings first and newest first, filterable by type and
//! involved object.

use std::fmt::Write;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, limits};
use super::{RenderText, ToolDef, ToolError, ToolKind, ToolResult, define_tool, lookup};
use crate::cluster::{FieldSelector, ListQuery, view};
use crate::util::logs::normalise_message;
use crate::util::quote::short;
use crate::util::timefmt::age;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetEventsParams {
    /// Namespace; omit for all namespaces.
    #[schemars(length(max = limits::NAME))]
    pub namespace: Option<String>,
    /// `Warning` or `Normal`.
    #[serde(rename = "type")]
    #[schemars(length(max = limits::WORD))]
    pub type_: Option<String>,
    /// `Kind/name` (`Pod/web-1`) or a name; a name prefix also finds its ReplicaSets and pods.
    #[schemars(length(max = limits::NAME))]
    pub object: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventList {
    /// Events: warnings first, then newest first; alike events of several objects folded.
    pub events: Vec<EventSummary>,
    /// Events that matched, before folding.
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
    /// Relative, e.g. "35m ago".
    pub first_seen: String,
    /// Relative, e.g. "3m ago".
    pub last_seen: String,
    /// Other objects with the same event (same type, reason and message but for names, ids
    /// and addresses), folded into this one: `count`, `first_seen` and `last_seen` cover all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_on: Vec<String>,
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
        message: without_uids(event.message.as_deref().unwrap_or_default()),
        count: i64::from(event.count.unwrap_or(1)),
        first_seen: event
            .first_timestamp
            .as_ref()
            .map(|t| format!("{} ago", age(t.0, now)))
            .unwrap_or_default(),
        last_seen: last
            .map(|t| format!("{} ago", age(t, now)))
            .unwrap_or_default(),
        also_on: Vec::new(),
    }
}

/// A kubelet names a pod as `name_namespace(uid)`; the uid says nothing to the reader.
pub fn without_uids(message: &str) -> String {
    static UID: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\)")
            .expect("static regex")
    });
    UID.replace_all(message, "").into_owned()
}

/// Folds events that say the same thing about different objects (the BackOff of each pod of
/// a crash-looping Deployment) into the newest of them; the list stays in its order.
fn fold_alike(events: &[&Event], now: Timestamp) -> Vec<EventSummary> {
    let mut out: Vec<EventSummary> = Vec::new();
    // Where each kind of event was first put, so a namespace of thousands folds in one pass.
    let mut first_of: std::collections::HashMap<(String, String, String, String), usize> =
        std::collections::HashMap::new();
    let mut oldest: Vec<Option<Timestamp>> = Vec::new();
    for event in events {
        let summary = summarise_event(event, now);
        let key = (
            summary.namespace.clone(),
            summary.type_.clone(),
            summary.reason.clone(),
            normalise_message(&summary.message),
        );
        let first = event.first_timestamp.as_ref().map(|t| t.0);
        match first_of.get(&key).copied() {
            Some(i)
                if out[i].object != summary.object && !out[i].also_on.contains(&summary.object) =>
            {
                out[i].count += summary.count;
                out[i].also_on.push(summary.object);
                if first.is_some() && (oldest[i].is_none() || first < oldest[i]) {
                    oldest[i] = first;
                    out[i].first_seen = summary.first_seen;
                }
            }
            _ => {
                first_of.entry(key).or_insert(out.len());
                oldest.push(first);
                out.push(summary);
            }
        }
    }
    out
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
                "invalid type {}; valid types: Warning, Normal",
                short(t)
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
    let total = matching.len();
    let events = fold_alike(&matching, now);
    Ok(EventList { total, events })
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
        let mut out = format!("{} events (warnings first, newest first", self.total);
        if self.events.len() < self.total {
            let _ = write!(out, "; alike ones folded into {} lines", self.events.len());
        }
        out.push_str("):\n");
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
            if !e.also_on.is_empty() {
                let _ = writeln!(out, "         also on {}", e.also_on.join(", "));
            }
        }
        out.trim_end().to_string()
    }
}
