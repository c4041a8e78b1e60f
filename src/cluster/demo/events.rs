//! Events as the real controllers and the kubelet write them: one object per (object, reason,
//! message, source), counted and re-stamped when it happens again, with deterministic names.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::names;

/// What happened, to which object, reported by whom, how often.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub object: ObjectReference,
    pub warning: bool,
    pub reason: String,
    pub message: String,
    /// `deployment-controller`, `replicaset-controller`, `default-scheduler`, `kubelet`.
    pub component: &'static str,
    /// The node, for kubelet events.
    pub host: Option<String>,
    pub first: Timestamp,
    pub last: Timestamp,
    pub count: i32,
}

/// A reference to an object for `involvedObject`.
pub fn reference(kind: &str, meta: &ObjectMeta, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(if kind == "Pod" { "v1" } else { "apps/v1" }.into()),
        kind: Some(kind.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        field_path,
        ..ObjectReference::default()
    }
}

/// A container's field path, as kubelet events carry it.
pub fn container_path(container: &str) -> Option<String> {
    Some(format!("spec.containers{{{container}}}"))
}

impl EventSpec {
    /// One occurrence at `at`.
    pub fn once(
        object: ObjectReference,
        warning: bool,
        reason: &str,
        message: String,
        component: &'static str,
        at: Timestamp,
    ) -> EventSpec {
        EventSpec {
            object,
            warning,
            reason: reason.into(),
            message,
            component,
            host: None,
            first: at,
            last: at,
            count: 1,
        }
    }

    pub fn on_host(mut self, host: Option<String>) -> EventSpec {
        self.host = host;
        self
    }

    fn same_as(&self, event: &Event) -> bool {
        let o = &event.involved_object;
        o.kind == self.object.kind
            && o.name == self.object.name
            && o.namespace == self.object.namespace
            && o.field_path == self.object.field_path
            && event.reason.as_deref() == Some(self.reason.as_str())
            && event.message.as_deref() == Some(self.message.as_str())
            && event.source.as_ref().and_then(|s| s.component.as_deref()) == Some(self.component)
    }

    pub fn build(&self) -> Event {
        let object_name = self.object.name.clone().unwrap_or_default();
        let first = self.first.as_millisecond().to_string();
        let key = [
            self.object.kind.as_deref().unwrap_or_default(),
            object_name.as_str(),
            self.reason.as_str(),
            self.message.as_str(),
            first.as_str(),
        ];
        let reporting_instance = self.host.clone();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object_name}.{}", names::hex(&key, 16))),
                namespace: self.object.namespace.clone(),
                uid: Some(names::uid(&key)),
                creation_timestamp: Some(Time(self.first)),
                ..ObjectMeta::default()
            },
            involved_object: self.object.clone(),
            reason: Some(self.reason.clone()),
            message: Some(self.message.clone()),
            source: Some(EventSource {
                component: Some(self.component.into()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(Time(self.first)),
            last_timestamp: Some(Time(self.last)),
            count: Some(self.count),
            type_: Some(if self.warning { "Warning" } else { "Normal" }.into()),
            reporting_component: Some(self.component.into()),
            reporting_instance,
            ..Event::default()
        }
    }
}

/// Records an occurrence: a new event, or one more on the alike event already stored (what
/// the client-side event correlator does).
pub fn record(events: &mut Vec<Event>, spec: EventSpec) {
    if let Some(existing) = events.iter_mut().find(|e| spec.same_as(e)) {
        existing.count = Some(existing.count.unwrap_or(1) + spec.count);
        let later = existing
            .last_timestamp
            .as_ref()
            .is_none_or(|t| t.0 <= spec.last);
        if later {
            existing.last_timestamp = Some(Time(spec.last));
        }
        return;
    }
    events.push(spec.build());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alike_events_are_counted_not_repeated() {
        let meta = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        };
        let t0: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let t1: Timestamp = "2026-01-02T03:05:05Z".parse().unwrap();
        let spec = |at| {
            EventSpec::once(
                reference("Deployment", &meta, None),
                false,
                "ScalingReplicaSet",
                "Scaled up replica set web-abc to 1 from 0".into(),
                "deployment-controller",
                at,
            )
        };
        let mut events = Vec::new();
        record(&mut events, spec(t0));
        record(&mut events, spec(t1));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].count, Some(2));
        assert_eq!(events[0].last_timestamp.as_ref().unwrap().0, t1);
        assert!(
            events[0]
                .metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("web.")
        );
    }
}
