//! The demo cluster's mutable state and its clockwork: the objects (as the fixtures load them,
//! then as writes and controllers change them), the pods the simulation runs, and the queue
//! of moments at which a controller has something to do. Every read and write first advances
//! the state to "now", running each due moment in time order, so what a read sees depends
//! only on the writes and their times, never on how often the cluster was read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::controller;
use super::events::{self, EventSpec};
use super::kubelet::{SimPod, after};
use super::podlogs;
use super::registry::{Profile, Registry};
use crate::cluster::{ServiceMetrics, view};
use crate::util::logs::LogEntry;

/// (namespace, pod, container, previous)
pub type LogKey = (String, String, String, bool);
/// (namespace, name)
pub type Key = (String, String);

/// Most moments run in one advance: a guard against a controller bug looping forever (the
/// controllers converge in a handful of moments per rollout).
const MAX_STEPS: usize = 100_000;

/// When a pod was asked to stop and when it is gone.
#[derive(Debug, Clone, Copy)]
pub struct Deleting {
    pub at: Timestamp,
    pub gone: Timestamp,
}

/// A pod: as loaded from the fixtures (its status fixed), or created by the simulation (its
/// status a function of time, see [`SimPod`]).
pub struct PodEntry {
    pub pod: Pod,
    pub sim: Option<SimPod>,
    pub deleting: Option<Deleting>,
}

impl PodEntry {
    pub fn namespace(&self) -> &str {
        view::namespace(&self.pod.metadata)
    }

    pub fn name(&self) -> &str {
        view::name(&self.pod.metadata)
    }

    pub fn owner(&self) -> Option<&str> {
        view::pod_replica_set(&self.pod)
    }

    /// Counted by its ReplicaSet (a pod being deleted no longer is).
    pub fn active(&self) -> bool {
        self.deleting.is_none()
    }

    pub fn node(&self) -> Option<&str> {
        match &self.sim {
            Some(sim) => sim.binding.as_ref().map(|b| b.node.as_str()),
            None => self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        }
    }

    pub fn ready(&self, t: Timestamp) -> bool {
        match &self.sim {
            Some(sim) => sim.is_ready(t),
            None => view::pod_is_ready(&self.pod),
        }
    }

    /// The kubelet stops reporting changes once the pod is asked to stop.
    fn horizon(&self, t: Timestamp) -> Timestamp {
        self.deleting.map_or(t, |d| d.at.min(t))
    }

    /// The pod as the API server would return it at `t`.
    pub fn render(&self, t: Timestamp) -> Pod {
        let mut pod = self.pod.clone();
        if let Some(sim) = &self.sim {
            sim.apply(&mut pod, self.horizon(t));
        }
        if let Some(deleting) = self.deleting {
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            // As the API server sets it: the time by which the pod must be gone.
            pod.metadata.deletion_timestamp = Some(Time(after(deleting.at, grace as f64)));
            pod.metadata.deletion_grace_period_seconds = Some(grace);
        }
        pod
    }

    /// The scheduler's and kubelet's events for a pod the simulation runs.
    pub fn kubelet_events(&self, t: Timestamp) -> Vec<EventSpec> {
        self.sim
            .as_ref()
            .map(|sim| sim.events(&self.pod, self.horizon(t)))
            .unwrap_or_default()
    }
}

/// A deployment the controllers run: one that was written to.
#[derive(Debug, Clone, Default)]
pub struct Track {
    /// The revision whose completed rollout switches the service's metrics to `profile`.
    pub revision: Option<i64>,
    pub profile: Option<Profile>,
    /// The Progressing condition the write asks for (NewReplicaSetCreated, FoundNewReplicaSet).
    pub pending: Option<(String, String)>,
}

/// One change to a Deployment, under the resourceVersion it produced (for conflict messages).
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    pub spec: bool,
    pub what: String,
}

pub struct State {
    /// How far the simulation has run.
    pub now: Timestamp,
    pub namespaces: Vec<Namespace>,
    pub nodes: Vec<Node>,
    pub deployments: Vec<Deployment>,
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<PodEntry>,
    /// Stored events; those of running demo pods are rendered on read.
    pub events: Vec<Event>,
    pub metrics: Vec<ServiceMetrics>,
    /// The fixtures' log streams.
    pub logs: HashMap<LogKey, Arc<Vec<LogEntry>>>,
    pub registry: Registry,
    pub managed: BTreeMap<Key, Track>,
    pub wakes: BTreeSet<Timestamp>,
    /// The last resourceVersion handed out (one counter for the cluster, as etcd's).
    pub resource_version: u64,
    pub changes: BTreeMap<Key, Vec<Change>>,
    /// Pods and ReplicaSets that existed and are gone (their events stay behind).
    pub departed: BTreeSet<Key>,
    /// (node, image) pairs a node has pulled.
    pub image_cache: BTreeSet<(String, String)>,
    /// Image digests as the fixtures report them, by image.
    pub image_ids: BTreeMap<String, String>,
    /// Pods each ReplicaSet created, for the next pod's name.
    pub pods_created: BTreeMap<String, u64>,
}

impl State {
    pub fn empty(now: Timestamp, registry: Registry) -> State {
        State {
            now,
            namespaces: Vec::new(),
            nodes: Vec::new(),
            deployments: Vec::new(),
            replica_sets: Vec::new(),
            pods: Vec::new(),
            events: Vec::new(),
            metrics: Vec::new(),
            logs: HashMap::new(),
            registry,
            managed: BTreeMap::new(),
            wakes: BTreeSet::new(),
            resource_version: 0,
            changes: BTreeMap::new(),
            departed: BTreeSet::new(),
            image_cache: BTreeSet::new(),
            image_ids: BTreeMap::new(),
            pods_created: BTreeMap::new(),
        }
    }

    /// Runs every moment due up to `to`, in order; then the state is at `to` (time never runs
    /// backwards: an earlier `to` leaves it where it is).
    pub fn advance(&mut self, to: Timestamp) {
        let mut steps = 0;
        while let Some(&next) = self.wakes.first() {
            if next > to || steps >= MAX_STEPS {
                break;
            }
            self.wakes.pop_first();
            controller::step(self, next.max(self.now));
            steps += 1;
        }
        if steps >= MAX_STEPS {
            tracing::warn!("demo cluster: {steps} controller steps in one read; skipping ahead");
            self.wakes.retain(|w| *w > to);
        }
        if to > self.now {
            self.now = to;
        }
    }

    /// Asks for a controller pass at `at` (never before the present).
    pub fn wake(&mut self, at: Timestamp) {
        self.wakes.insert(at.max(self.now));
    }

    pub fn deployment_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.deployments.iter().position(|d| {
            view::namespace(&d.metadata) == namespace && view::name(&d.metadata) == name
        })
    }

    /// Indices of the ReplicaSets a deployment owns.
    pub fn owned_replica_sets(&self, namespace: &str, name: &str) -> Vec<usize> {
        (0..self.replica_sets.len())
            .filter(|&i| {
                let rs = &self.replica_sets[i];
                view::namespace(&rs.metadata) == namespace
                    && view::replica_set_deployment(rs) == Some(name)
            })
            .collect()
    }

    /// Gives deployment `index` a new resourceVersion and records why.
    pub fn bump(&mut self, index: usize, spec: bool, what: String) -> u64 {
        self.resource_version += 1;
        let rv = self.resource_version;
        let meta = &mut self.deployments[index].metadata;
        meta.resource_version = Some(rv.to_string());
        let key = (
            view::namespace(meta).to_string(),
            view::name(meta).to_string(),
        );
        self.changes.entry(key).or_default().push(Change {
            resource_version: rv,
            spec,
            what,
        });
        rv
    }

    pub fn pods_now(&self) -> Vec<Pod> {
        self.pods.iter().map(|p| p.render(self.now)).collect()
    }

    pub fn pod_now(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods
            .iter()
            .find(|p| p.namespace() == namespace && p.name() == name)
            .map(|p| p.render(self.now))
    }

    /// Stored events and those of the demo's running pods.
    pub fn events_now(&self) -> Vec<Event> {
        let mut all = self.events.clone();
        for pod in &self.pods {
            all.extend(pod.kubelet_events(self.now).iter().map(EventSpec::build));
        }
        all
    }

    /// One container's log stream now (empty when the container never ran).
    pub fn log_stream(&self, key: &LogKey) -> Arc<Vec<LogEntry>> {
        let (namespace, pod, container, previous) = key;
        if let Some(entry) = self
            .pods
            .iter()
            .find(|p| p.namespace() == namespace && p.name() == pod)
            && let Some(sim) = &entry.sim
        {
            return Arc::new(podlogs::stream(
                sim,
                &entry.pod,
                container,
                *previous,
                self.now,
                entry.deleting.map(|d| d.at),
                &self.registry,
            ));
        }
        self.logs.get(key).cloned().unwrap_or_default()
    }

    /// Log entries held now, fixtures' and synthesized (counted, not written: `info()` asks
    /// on every call).
    pub fn log_entry_count(&self) -> usize {
        let synthesized: usize = self
            .pods
            .iter()
            .filter_map(|p| Some((p, p.sim.as_ref()?)))
            .flat_map(|(p, sim)| {
                sim.containers.iter().map(move |c| {
                    podlogs::count(
                        sim,
                        &p.pod,
                        &c.name,
                        self.now,
                        p.deleting.map(|d| d.at),
                        &self.registry,
                    )
                })
            })
            .sum();
        self.logs.values().map(|l| l.len()).sum::<usize>() + synthesized
    }

    /// Removes pods whose termination has ended by `t`: their events stay, their logs go.
    pub fn remove_departed(&mut self, t: Timestamp) {
        let (gone, staying): (Vec<PodEntry>, Vec<PodEntry>) = std::mem::take(&mut self.pods)
            .into_iter()
            .partition(|p| p.deleting.is_some_and(|d| d.gone <= t));
        self.pods = staying;
        for pod in gone {
            for spec in pod.kubelet_events(t) {
                events::record(&mut self.events, spec);
            }
            let (namespace, name) = (pod.namespace().to_string(), pod.name().to_string());
            self.logs
                .retain(|(ns, p, _, _), _| !(ns == &namespace && p == &name));
            self.departed.insert((namespace, name));
        }
    }
}
