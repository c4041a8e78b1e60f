//! Log streams of the pods the demo creates, written from the registry's templates: startup
//! lines from each container start, request lines while it serves, the crash lines before
//! each kill, shutdown lines when the pod is asked to stop. Deterministic (trace ids and
//! latencies are hashes), bounded (the newest lines only, as rotation would leave them).

use std::sync::LazyLock;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::kubelet::{Fate, READY_AFTER_START, Run, SimContainer, SimPod, after};
use super::names;
use super::registry::{LineTemplate, LogTemplates, Registry, TraceField, generic_logs};
use crate::util::logs::LogEntry;

/// Request groups kept per container: older ones are rotated away.
const MAX_TICKS: usize = 400;
/// Shutdown lines are the last a stopping container writes.
const SHUTDOWN_FOR: f64 = 0.4;

static GENERIC: LazyLock<LogTemplates> = LazyLock::new(generic_logs);

/// Values the templates' placeholders take for one container.
struct Fill<'a> {
    pod: &'a str,
    node: &'a str,
    pod_ip: &'a str,
    app: &'a str,
    version: &'a str,
    image: &'a str,
    port: String,
}

impl Fill<'_> {
    fn text(&self, template: &str, seed: &[&str]) -> String {
        if !template.contains('{') {
            return template.to_string();
        }
        let mut out = template
            .replace("{version}", self.version)
            .replace("{image}", self.image)
            .replace("{pod}", self.pod)
            .replace("{node}", self.node)
            .replace("{pod_ip}", self.pod_ip)
            .replace("{app}", self.app)
            .replace("{port}", &self.port);
        if out.contains("{ms}") {
            out = out.replace("{ms}", &names::between(seed, 4, 95).to_string());
        }
        if out.contains("{n}") {
            let mut n_seed = seed.to_vec();
            n_seed.push("n");
            out = out.replace(
                "{n}",
                &names::between(&n_seed, 100_000, 999_999).to_string(),
            );
        }
        out
    }

    fn entry(&self, line: &LineTemplate, at: Timestamp, seed: &[&str]) -> LogEntry {
        let trace_id = match &line.trace {
            TraceField::None => None,
            TraceField::Fixed(id) => Some(id.clone()),
            TraceField::Generated => Some(names::hex(seed, 32)),
        };
        LogEntry {
            timestamp: after(at, line.offset),
            level: line.level,
            logger: self.text(&line.logger, seed),
            trace_id,
            message: self.text(&line.message, seed),
            detail: line.detail.iter().map(|d| self.text(d, seed)).collect(),
        }
    }
}

/// Which instance of a container a log read shows, and what it needs.
struct Source<'a> {
    c: &'a SimContainer,
    run: Run,
    index: usize,
    templates: &'a LogTemplates,
}

/// The instance a read of the current (or with `previous` the one before) stream shows at `t`:
/// a container waiting in CrashLoopBackOff shows its last terminated instance either way, as
/// `kubectl logs` does. `stopping` is when the pod was asked to stop.
fn source<'a>(
    sim: &'a SimPod,
    container: &str,
    previous: bool,
    t: Timestamp,
    stopping: Option<Timestamp>,
    registry: &'a Registry,
) -> Option<Source<'a>> {
    let binding = sim.binding.as_ref()?;
    let c = sim.containers.iter().find(|c| c.name == container)?;
    if matches!(c.fate, Fate::PullFails { .. }) {
        return None;
    }
    // Nothing starts after the pod was asked to stop.
    let horizon = stopping.map_or(t, |s| s.min(t));
    let runs = c.runs(binding.at, horizon);
    let last = runs.last()?;
    let dead = last.ended.is_some_and(|e| e <= t);
    let index = match (previous, dead) {
        (true, false) => runs.len().checked_sub(2)?,
        _ => runs.len() - 1,
    };
    let templates = c
        .repository
        .as_deref()
        .and_then(|r| registry.repositories.get(r))
        .map_or(&*GENERIC, |r| &r.logs);
    Some(Source {
        c,
        run: runs[index],
        index,
        templates,
    })
}

/// The log of one container of a demo pod at `t` (see [`source`] for which instance).
pub fn stream(
    sim: &SimPod,
    pod: &Pod,
    container: &str,
    previous: bool,
    t: Timestamp,
    stopping: Option<Timestamp>,
    registry: &Registry,
) -> Vec<LogEntry> {
    let Some(source) = source(sim, container, previous, t, stopping, registry) else {
        return Vec::new();
    };
    let Some(binding) = sim.binding.as_ref() else {
        return Vec::new();
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let port = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|x| x.name == container))
        .and_then(|x| x.ports.as_ref()?.first().map(|p| p.container_port))
        .unwrap_or(8080);
    let fill = Fill {
        pod: name,
        node: &binding.node,
        pod_ip: &binding.pod_ip,
        app: app_name(source.c),
        version: &source.c.tag,
        image: &source.c.image,
        port: port.to_string(),
    };
    let run_id = source.index.to_string();
    let mut entries = Vec::new();
    each_line(&source, name, t, stopping, |at, line, part, i| {
        let i = i.to_string();
        let seed = [name, source.c.name.as_str(), run_id.as_str(), part, &i];
        entries.push(fill.entry(line, at, &seed));
    });
    entries.sort_by_key(|e| e.timestamp);
    entries
}

/// How many entries [`stream`] would return, without writing them.
pub fn count(
    sim: &SimPod,
    pod: &Pod,
    container: &str,
    t: Timestamp,
    stopping: Option<Timestamp>,
    registry: &Registry,
) -> usize {
    let Some(source) = source(sim, container, false, t, stopping, registry) else {
        return 0;
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut n = 0;
    each_line(&source, name, t, stopping, |_, _, _, _| n += 1);
    n
}

/// The repository's last path segment (`payment-gateway`).
fn app_name(c: &SimContainer) -> &str {
    let repository = c.image.split('@').next().unwrap_or(&c.image);
    let last = repository.rsplit('/').next().unwrap_or(repository);
    last.split(':').next().unwrap_or(last)
}

/// Calls `emit(at, line, part, i)` for every line of the instance written by `t`: `part`
/// and `i` identify it (a request tick's lines share theirs, so they share a trace id).
fn each_line<'a>(
    source: &Source<'a>,
    pod: &str,
    t: Timestamp,
    stopping: Option<Timestamp>,
    mut emit: impl FnMut(Timestamp, &'a LineTemplate, &'static str, usize),
) {
    let (c, run, templates) = (source.c, source.run, source.templates);
    let end = [Some(t), run.ended, stopping.map(|s| after(s, SHUTDOWN_FOR))]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(t);
    let mut push = |anchor: Timestamp, line: &'a LineTemplate, part: &'static str, i: usize| {
        let at = after(anchor, line.offset);
        if at >= run.started && at <= end {
            emit(anchor, line, part, i);
        }
    };
    let startup = match &c.fate {
        Fate::CrashLoops(crash) => crash.startup,
        _ => true,
    };
    if startup {
        for (i, line) in templates.startup.iter().enumerate() {
            push(run.started, line, "startup", i);
        }
    }
    match &c.fate {
        Fate::CrashLoops(crash) => {
            if let Some(ended) = run.ended {
                for (i, line) in crash.log.iter().enumerate() {
                    push(ended, line, "crash", i);
                }
            }
        }
        Fate::Serves if !templates.serving.is_empty() => {
            let ready = after(run.started, READY_AFTER_START);
            let every = templates.serving_every;
            let serving_end = stopping.map_or(end, |s| s.min(end));
            let span = serving_end.duration_since(ready).as_secs_f64();
            if span >= 0.0 {
                let ticks = (span / every) as usize + 1;
                let offset = names::between(&[pod, c.name.as_str()], 0, 1000) as usize;
                for tick in ticks.saturating_sub(MAX_TICKS)..ticks {
                    let at = after(ready, tick as f64 * every);
                    // The groups in turn, from a place that differs per pod.
                    let pick = (tick + offset) % templates.serving.len();
                    for line in &templates.serving[pick] {
                        push(at, line, "tick", tick);
                    }
                }
            }
        }
        _ => {}
    }
    if let Some(stopping) = stopping
        && run.ended.is_none_or(|e| e > stopping)
    {
        for (i, line) in templates.shutdown.iter().enumerate() {
            push(stopping, line, "shutdown", i);
        }
    }
}
