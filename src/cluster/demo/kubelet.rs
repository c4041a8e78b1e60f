//! The simulated kubelet for pods the demo creates. Once a pod is bound to a node, what its
//! containers do follows from the registry's answer for each image (serve, crash in a loop,
//! fail to pull), so the pod's status and its kubelet events are functions of time: a read at
//! any moment sees what a node would report then, however often or seldom the cluster is read.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::events::{EventSpec, container_path, reference};
use super::names;
use super::registry::Crash;

/// `t` plus `secs` seconds.
pub fn after(t: Timestamp, secs: f64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs_f64(secs))
        .unwrap_or(t)
}

/// Sandbox up and pod IP assigned, after binding.
const SANDBOX: f64 = 0.10;
/// The first image pull starts, after binding.
const PULL_START: f64 = 0.12;
/// Pulled → container created → started.
const CREATE: f64 = 0.05;
const START: f64 = 0.05;
/// Started → the readiness probe passes (a container that serves).
pub const READY_AFTER_START: f64 = 0.50;
/// A pull of a tag that does not exist comes back NotFound after this long.
const PULL_FAILS_AFTER: f64 = 0.35;
/// How long a failed pull shows ErrImagePull before the back-off starts.
const ERR_IMAGE_PULL_FOR: f64 = 0.30;
/// The kubelet's back-off for pulls and crashed containers: 10 s doubling to 5 min on a real
/// node; a fifth of that here, so a demo shows several rounds in a minute.
const BACKOFF_BASE: f64 = 2.0;
const BACKOFF_CAP: f64 = 60.0;
/// How often the scheduler retries a pod that fits no node (what FailedScheduling counts).
const SCHEDULER_RETRY: f64 = 5.0;
/// Most back-off rounds computed: past them nothing changes but counters, and a cap keeps a
/// demo left running for days cheap to read.
const MAX_ROUNDS: usize = 10_000;

/// The back-off after the `n`-th failure (0-based).
fn backoff(n: usize) -> f64 {
    (BACKOFF_BASE * 2f64.powi(n.min(16) as i32)).min(BACKOFF_CAP)
}

/// How long the kubelet waits to restart a container after its `n`-th crash (0-based): the
/// first crash restarts at once, then the back-off applies.
fn restart_delay(n: usize) -> f64 {
    if n == 0 { 0.0 } else { backoff(n - 1) }
}

/// Whole seconds in Go's duration format, as kubelet messages print them (`4s`, `1m0s`).
fn go_duration(secs: f64) -> String {
    let secs = secs.round() as i64;
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// A pull's duration as the kubelet's "Successfully pulled" event prints it.
fn pull_duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{}ms", (secs * 1000.0).round())
    } else {
        format!("{secs:.3}s")
    }
}

/// Where and when the scheduler placed a pod.
#[derive(Debug, Clone)]
pub struct Binding {
    pub at: Timestamp,
    pub node: String,
    pub host_ip: String,
    pub pod_ip: String,
}

/// What a container's image does, per the registry.
#[derive(Debug, Clone)]
pub enum Fate {
    Serves,
    CrashLoops(Crash),
    /// The pull fails; `message` is the runtime's error.
    PullFails {
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct SimContainer {
    pub name: String,
    pub image: String,
    pub fate: Fate,
    /// The repository whose log templates this container writes, when the registry has it.
    pub repository: Option<String>,
    pub tag: String,
    /// The node already has the image (no pull, "already present on machine").
    pub cached: bool,
    pub pull_secs: f64,
    pub image_id: String,
    pub image_size: u64,
}

/// One run of a container: when it started and, for one that died, when.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub started: Timestamp,
    pub ended: Option<Timestamp>,
}

impl SimContainer {
    fn pulled(&self, bound: Timestamp) -> Timestamp {
        after(
            bound,
            PULL_START + if self.cached { 0.0 } else { self.pull_secs },
        )
    }

    /// When the container first became ready, for one that serves.
    fn ready_at(&self, bound: Timestamp) -> Option<Timestamp> {
        matches!(self.fate, Fate::Serves)
            .then(|| after(self.pulled(bound), CREATE + START + READY_AFTER_START))
    }

    /// Runs started at or before `t`, oldest first.
    pub fn runs(&self, bound: Timestamp, t: Timestamp) -> Vec<Run> {
        let first = after(self.pulled(bound), CREATE + START);
        match &self.fate {
            Fate::PullFails { .. } => Vec::new(),
            Fate::Serves => (first <= t)
                .then_some(Run {
                    started: first,
                    ended: None,
                })
                .into_iter()
                .collect(),
            Fate::CrashLoops(crash) => {
                let mut runs = Vec::new();
                let mut started = first;
                while started <= t && runs.len() < MAX_ROUNDS {
                    let ended = after(started, crash.runs_for);
                    runs.push(Run {
                        started,
                        ended: Some(ended),
                    });
                    started = after(ended, restart_delay(runs.len() - 1) + START);
                }
                runs
            }
        }
    }

    /// Pull attempts started at or before `t` and when each failed (a tag that is not there).
    fn failed_pulls(&self, bound: Timestamp, t: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let mut attempts = Vec::new();
        let mut attempt = after(bound, PULL_START);
        while attempt <= t && attempts.len() < MAX_ROUNDS {
            let failed = after(attempt, PULL_FAILS_AFTER);
            attempts.push((attempt, failed));
            attempt = after(failed, ERR_IMAGE_PULL_FOR + backoff(attempts.len() - 1));
        }
        attempts
    }

    fn terminated(&self, run: &Run, crash: &Crash, id: &str) -> ContainerStateTerminated {
        ContainerStateTerminated {
            exit_code: crash.exit_code,
            reason: Some(crash.reason.clone()),
            started_at: Some(Time(run.started)),
            finished_at: run.ended.map(Time),
            container_id: Some(id.to_string()),
            ..ContainerStateTerminated::default()
        }
    }

    fn status(&self, pod: &Pod, bound: Timestamp, t: Timestamp) -> ContainerStatus {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let waiting = |reason: &str, message: Option<String>| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message,
            }),
            ..ContainerState::default()
        };
        let mut status = ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: String::new(),
            ready: false,
            restart_count: 0,
            started: Some(false),
            state: Some(waiting("ContainerCreating", None)),
            last_state: Some(ContainerState::default()),
            ..ContainerStatus::default()
        };
        if let Fate::PullFails { message } = &self.fate {
            if let Some((_, failed)) = self.failed_pulls(bound, t).last().copied()
                && failed <= t
            {
                status.state = Some(if t < after(failed, ERR_IMAGE_PULL_FOR) {
                    waiting("ErrImagePull", Some(message.clone()))
                } else {
                    waiting(
                        "ImagePullBackOff",
                        Some(format!("Back-off pulling image \"{}\"", self.image)),
                    )
                });
            }
            return status;
        }
        if t >= self.pulled(bound) {
            status.image_id = self.image_id.clone();
        }
        let runs = self.runs(bound, t);
        let Some(current) = runs.last() else {
            return status;
        };
        let id = |index: usize| {
            format!(
                "containerd://{}",
                names::hex(&[pod_name, &self.name, &index.to_string()], 64)
            )
        };
        let index = runs.len() - 1;
        // The kubelet reports the latest instance's restart count: 0 for the first.
        status.restart_count = index as i32;
        match (&self.fate, current.ended) {
            (Fate::CrashLoops(crash), Some(ended)) if ended <= t && index == 0 => {
                // Dead, and restarted at once (no back-off after a first crash).
                status.container_id = Some(id(index));
                status.state = Some(ContainerState {
                    terminated: Some(self.terminated(current, crash, &id(index))),
                    ..ContainerState::default()
                });
            }
            (Fate::CrashLoops(crash), Some(ended)) if ended <= t => {
                status.container_id = Some(id(index));
                status.last_state = Some(ContainerState {
                    terminated: Some(self.terminated(current, crash, &id(index))),
                    ..ContainerState::default()
                });
                status.state = Some(waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off {} restarting failed container={} pod={}_{}({})",
                        go_duration(restart_delay(index)),
                        self.name,
                        pod_name,
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        pod.metadata.uid.as_deref().unwrap_or_default()
                    )),
                ));
            }
            (fate, _) => {
                status.container_id = Some(id(index));
                status.started = Some(true);
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(current.started)),
                    }),
                    ..ContainerState::default()
                });
                if let (Fate::CrashLoops(crash), Some(previous)) =
                    (fate, index.checked_sub(1).map(|i| &runs[i]))
                {
                    status.last_state = Some(ContainerState {
                        terminated: Some(self.terminated(previous, crash, &id(index - 1))),
                        ..ContainerState::default()
                    });
                }
                status.ready = self.ready_at(bound).is_some_and(|r| r <= t);
            }
        }
        status
    }

    /// The kubelet's events for this container up to `t`.
    fn events(&self, pod: &Pod, binding: &Binding, t: Timestamp, out: &mut Vec<EventSpec>) {
        let bound = binding.at;
        let object = reference("Pod", &pod.metadata, container_path(&self.name));
        let event =
            |warning: bool, reason: &str, message: String, first, last, count: usize| EventSpec {
                object: object.clone(),
                warning,
                reason: reason.into(),
                message,
                component: "kubelet",
                host: Some(binding.node.clone()),
                first,
                last,
                count: count as i32,
            };
        let image = &self.image;
        if let Fate::PullFails { message } = &self.fate {
            let attempts = self.failed_pulls(bound, t);
            let Some(&(first, _)) = attempts.first() else {
                return;
            };
            let last = attempts.last().map_or(first, |a| a.0);
            out.push(event(
                false,
                "Pulling",
                format!("Pulling image \"{image}\""),
                first,
                last,
                attempts.len(),
            ));
            let failed: Vec<Timestamp> = attempts.iter().map(|a| a.1).filter(|f| *f <= t).collect();
            if let (Some(&first), Some(&last)) = (failed.first(), failed.last()) {
                out.push(event(
                    true,
                    "Failed",
                    message.clone(),
                    first,
                    last,
                    failed.len(),
                ));
                out.push(event(
                    true,
                    "Failed",
                    "Error: ErrImagePull".into(),
                    first,
                    last,
                    failed.len(),
                ));
            }
            let backoffs: Vec<Timestamp> = failed
                .iter()
                .map(|f| after(*f, ERR_IMAGE_PULL_FOR))
                .filter(|b| *b <= t)
                .collect();
            if let (Some(&first), Some(&last)) = (backoffs.first(), backoffs.last()) {
                out.push(event(
                    false,
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                    first,
                    last,
                    backoffs.len(),
                ));
                out.push(event(
                    true,
                    "Failed",
                    "Error: ImagePullBackOff".into(),
                    first,
                    last,
                    backoffs.len(),
                ));
            }
            return;
        }
        let pull_start = after(bound, PULL_START);
        if pull_start > t {
            return;
        }
        let pulled = self.pulled(bound);
        let present = format!("Container image \"{image}\" already present on machine");
        let runs = self.runs(bound, t);
        // Every restart finds the image on the node.
        let mut present_at: Vec<Timestamp> = runs
            .iter()
            .skip(1)
            .map(|r| after(r.started, -(CREATE + START)))
            .collect();
        if self.cached {
            present_at.insert(0, pulled);
        } else {
            out.push(event(
                false,
                "Pulling",
                format!("Pulling image \"{image}\""),
                pull_start,
                pull_start,
                1,
            ));
            if pulled <= t {
                let took = pull_duration(self.pull_secs);
                out.push(event(
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {} bytes.",
                        self.image_size
                    ),
                    pulled,
                    pulled,
                    1,
                ));
            }
        }
        if let (Some(&first), Some(&last)) = (present_at.first(), present_at.last())
            && first <= t
        {
            out.push(event(
                false,
                "Pulled",
                present,
                first,
                last,
                present_at.len(),
            ));
        }
        let created: Vec<Timestamp> = runs.iter().map(|r| after(r.started, -START)).collect();
        if let (Some(&first), Some(&last)) = (created.first(), created.last()) {
            out.push(event(
                false,
                "Created",
                format!("Created container {}", self.name),
                first,
                last,
                created.len(),
            ));
        } else {
            let created = after(pulled, CREATE);
            if created <= t {
                out.push(event(
                    false,
                    "Created",
                    format!("Created container {}", self.name),
                    created,
                    created,
                    1,
                ));
            }
        }
        if let (Some(first), Some(last)) = (runs.first(), runs.last()) {
            out.push(event(
                false,
                "Started",
                format!("Started container {}", self.name),
                first.started,
                last.started,
                runs.len(),
            ));
        }
        // Crashes after which the kubelet backed off (all but the first).
        let crashed: Vec<Timestamp> = runs
            .iter()
            .skip(1)
            .filter_map(|r| r.ended)
            .filter(|e| *e <= t)
            .collect();
        if let (Some(&first), Some(&last)) = (crashed.first(), crashed.last()) {
            out.push(event(
                true,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    self.name,
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.uid.as_deref().unwrap_or_default()
                ),
                first,
                last,
                crashed.len(),
            ));
        }
    }
}

/// A pod the demo created: its scheduling and containers.
#[derive(Debug, Clone)]
pub struct SimPod {
    pub created: Timestamp,
    /// The scheduler's reason while the pod fits no node (`0/4 nodes are available: …`).
    pub unschedulable: Option<String>,
    pub binding: Option<Binding>,
    pub containers: Vec<SimContainer>,
    pub qos: String,
}

impl SimPod {
    /// When every container is ready (only pods whose containers all serve get there).
    pub fn ready_at(&self) -> Option<Timestamp> {
        let bound = self.binding.as_ref()?.at;
        self.containers
            .iter()
            .map(|c| c.ready_at(bound))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    pub fn is_ready(&self, t: Timestamp) -> bool {
        self.ready_at().is_some_and(|r| r <= t)
    }

    /// The pod's spec node and status as the kubelet reports them at `t`.
    pub fn apply(&self, pod: &mut Pod, t: Timestamp) {
        let condition = |type_: &str, ok: bool, at: Timestamp| PodCondition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(at)),
            ..PodCondition::default()
        };
        let Some(binding) = &self.binding else {
            pod.status = Some(PodStatus {
                phase: Some("Pending".into()),
                conditions: Some(vec![PodCondition {
                    reason: Some("Unschedulable".into()),
                    message: self.unschedulable.clone(),
                    ..condition("PodScheduled", false, self.created)
                }]),
                qos_class: Some(self.qos.clone()),
                ..PodStatus::default()
            });
            return;
        };
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(binding.node.clone());
        }
        let bound = binding.at;
        let statuses: Vec<ContainerStatus> = self
            .containers
            .iter()
            .map(|c| c.status(pod, bound, t))
            .collect();
        let unready: Vec<&str> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.as_str())
            .collect();
        let ready_since = self.ready_at().filter(|r| *r <= t);
        let readiness = |type_: &str| match ready_since {
            Some(at) => condition(type_, true, at),
            None => PodCondition {
                reason: Some("ContainersNotReady".into()),
                message: Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
                ..condition(type_, false, bound)
            },
        };
        let sandbox = after(bound, SANDBOX);
        let running = statuses.iter().any(|s| s.started == Some(true))
            || self.containers.iter().any(|c| !c.runs(bound, t).is_empty());
        let ip = (t >= sandbox).then(|| binding.pod_ip.clone());
        pod.status = Some(PodStatus {
            phase: Some(if running { "Running" } else { "Pending" }.into()),
            conditions: Some(vec![
                condition("PodReadyToStartContainers", t >= sandbox, sandbox.min(t)),
                condition("Initialized", true, bound),
                readiness("Ready"),
                readiness("ContainersReady"),
                condition("PodScheduled", true, bound),
            ]),
            host_ip: Some(binding.host_ip.clone()),
            host_ips: Some(vec![HostIP {
                ip: binding.host_ip.clone(),
            }]),
            pod_ip: ip.clone(),
            pod_ips: ip.map(|ip| vec![PodIP { ip }]),
            start_time: Some(Time(bound)),
            container_statuses: Some(statuses),
            qos_class: Some(self.qos.clone()),
            ..PodStatus::default()
        });
    }

    /// The scheduler's and kubelet's events for this pod up to `t`.
    pub fn events(&self, pod: &Pod, t: Timestamp) -> Vec<EventSpec> {
        let mut out = Vec::new();
        if let Some(message) = &self.unschedulable {
            let until = self.binding.as_ref().map_or(t, |b| b.at.min(t));
            let tries = 1
                + (until.duration_since(self.created).as_secs_f64() / SCHEDULER_RETRY).max(0.0)
                    as usize;
            let last = after(self.created, (tries - 1) as f64 * SCHEDULER_RETRY);
            out.push(EventSpec {
                first: self.created,
                last,
                count: tries as i32,
                ..EventSpec::once(
                    reference("Pod", &pod.metadata, None),
                    true,
                    "FailedScheduling",
                    message.clone(),
                    "default-scheduler",
                    self.created,
                )
            });
        }
        let Some(binding) = &self.binding else {
            return out;
        };
        if binding.at > t {
            return out;
        }
        out.push(EventSpec::once(
            reference("Pod", &pod.metadata, None),
            false,
            "Scheduled",
            format!(
                "Successfully assigned {}/{} to {}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
                binding.node
            ),
            "default-scheduler",
            binding.at,
        ));
        for container in &self.containers {
            container.events(pod, binding, t, &mut out);
        }
        out
    }

    /// Containers running at `t` (those a deletion stops, with a Killing event).
    pub fn running_containers(&self, t: Timestamp) -> Vec<String> {
        let Some(binding) = &self.binding else {
            return Vec::new();
        };
        self.containers
            .iter()
            .filter(|c| {
                c.runs(binding.at, t)
                    .last()
                    .is_some_and(|r| r.ended.is_none_or(|e| e > t))
            })
            .map(|c| c.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(fate: Fate) -> SimContainer {
        SimContainer {
            name: "app".into(),
            image: "registry.example/app:1".into(),
            fate,
            repository: None,
            tag: "1".into(),
            cached: false,
            pull_secs: 0.5,
            image_id: "registry.example/app@sha256:00".into(),
            image_size: 1000,
        }
    }

    #[test]
    fn back_off_doubles_to_a_cap_and_prints_like_go() {
        assert_eq!(backoff(0), 2.0);
        assert_eq!(backoff(3), 16.0);
        assert_eq!(backoff(40), BACKOFF_CAP);
        assert_eq!(go_duration(4.0), "4s");
        assert_eq!(go_duration(60.0), "1m0s");
        assert_eq!(pull_duration(0.512), "512ms");
    }

    #[test]
    fn a_crash_loop_restarts_with_growing_back_off() {
        let t0: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let crash = Crash {
            reason: "OOMKilled".into(),
            exit_code: 137,
            runs_for: 5.0,
            log: Vec::new(),
            startup: true,
        };
        let c = container(Fate::CrashLoops(crash));
        let runs = c.runs(t0, after(t0, 60.0));
        assert!(runs.len() >= 4, "{} runs in a minute", runs.len());
        let gaps: Vec<f64> = runs
            .windows(2)
            .map(|w| {
                w[1].started
                    .duration_since(w[0].ended.unwrap())
                    .as_secs_f64()
            })
            .collect();
        assert!(gaps.windows(2).all(|g| g[1] > g[0]), "{gaps:?}");
        assert!(c.ready_at(t0).is_none());
    }
}
