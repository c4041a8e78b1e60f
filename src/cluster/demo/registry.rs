//! The demo's image registry (`fixtures/demo/registry.yaml`): which tags each repository has and
//! how a container of each tag behaves once pulled (serves, with a metrics profile; or
//! crash-loops), plus the log lines its containers write. The simulated kubelet asks it what a
//! pull finds. A fixture directory without the file (a user's own scenario) gets a registry
//! derived from its fixtures: every image they use, behaving as their pods show.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use crate::util::logs::Level;

/// What the service's metrics become once a rollout to a healthy tag completes (its request
/// rate stays what it was: traffic does not follow the version).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A container that starts and is killed over and over.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The terminated state's reason (`OOMKilled`, `Error`).
    pub reason: String,
    pub exit_code: i32,
    /// Demo seconds from start to the kill.
    pub runs_for: f64,
    /// Lines each instance writes before it dies, offsets relative to the kill.
    pub log: Vec<LineTemplate>,
    /// Whether an instance writes the repository's startup lines first (not when it dies
    /// before it is up).
    pub startup: bool,
}

#[derive(Debug, Clone)]
pub enum Behaviour {
    Healthy(Profile),
    CrashLoop(Crash),
    /// Listed so the fixtures' own broken reference is accounted for; a pull finds nothing.
    Missing,
}

/// The trace-id column of a template line.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceField {
    None,
    /// `{trace}`: a fresh id per line group.
    Generated,
    Fixed(String),
}

/// One log line (with its continuation lines) of a template, in the fixture log grammar with
/// the offset relative to an anchor (the container's start, a tick, the kill).
#[derive(Debug, Clone)]
pub struct LineTemplate {
    pub offset: f64,
    pub level: Level,
    pub logger: String,
    pub trace: TraceField,
    pub message: String,
    pub detail: Vec<String>,
}

/// What a repository's containers log.
#[derive(Debug, Clone, Default)]
pub struct LogTemplates {
    /// From the container's start.
    pub startup: Vec<LineTemplate>,
    /// Seconds between two request groups while the container serves.
    pub serving_every: f64,
    /// Groups of lines, one group per tick (cycled), offsets from the tick.
    pub serving: Vec<Vec<LineTemplate>>,
    /// From the moment the pod is asked to stop.
    pub shutdown: Vec<LineTemplate>,
}

#[derive(Debug, Clone)]
pub struct Repository {
    /// Bytes, for the kubelet's "Successfully pulled" event.
    pub image_size: u64,
    pub logs: LogTemplates,
    pub tags: BTreeMap<String, Behaviour>,
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub repositories: BTreeMap<String, Repository>,
    /// True when read from `registry.yaml`; false when derived from the fixtures.
    pub from_file: bool,
}

/// What pulling an image finds.
#[derive(Debug, Clone, Copy)]
pub enum Pull<'a> {
    /// The tag exists and runs as `behaviour` (never [`Behaviour::Missing`]).
    Found {
        repository: &'a Repository,
        behaviour: &'a Behaviour,
    },
    NoSuchTag,
    NoSuchRepository,
}

/// An image reference split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// As written (`registry.acme.internal/payments/payment-gateway`, `nginx`).
    pub repository: String,
    /// `latest` when neither tag nor digest is given, as the container runtime assumes.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// The tag as written, `latest` without one.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The fully qualified reference the runtime resolves (`docker.io/library/nginx:latest`
    /// for `nginx`), as it appears in pull errors.
    pub fn canonical(&self) -> String {
        let first = self.repository.split('/').next().unwrap_or_default();
        let has_domain = self.repository.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let repository = if has_domain {
            self.repository.clone()
        } else if self.repository.contains('/') {
            format!("docker.io/{}", self.repository)
        } else {
            format!("docker.io/library/{}", self.repository)
        };
        match (&self.tag, &self.digest) {
            (_, Some(d)) => format!("{repository}@{d}"),
            (tag, None) => format!("{repository}:{}", tag.as_deref().unwrap_or("latest")),
        }
    }
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let bytes = c.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let run = bytes[i..]
            .iter()
            .take_while(|b| !b.is_ascii_alphanumeric())
            .count();
        if run == 0 {
            // An uppercase letter.
            return false;
        }
        let sep = &c[i..i + run];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
        i += run;
    }
    true
}

fn is_domain(c: &str) -> bool {
    let (host, port) = match c.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (c, None),
    };
    !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses an image reference the way the container runtime would accept it:
/// `[domain[:port]/]path[:tag][@sha256:digest]`.
pub fn parse_image(image: &str) -> Result<ImageRef, String> {
    if image.is_empty() {
        return Err("the image is empty".into());
    }
    if image.len() > 512 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an image reference has no spaces and at most 512 characters".into());
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => {
            let hex = d.strip_prefix("sha256:").unwrap_or_default();
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!("digest {d:?} is not sha256:<64 hex digits>"));
            }
            (n, Some(d.to_string()))
        }
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.as_bytes()[0] != b'.'
            && tag.as_bytes()[0] != b'-'
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(format!(
                "tag {tag:?} is not valid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
            ));
        }
    }
    let components: Vec<&str> = repository.split('/').collect();
    // As the runtime reads a reference: the first component is a registry host only when it
    // looks like one (a dot, a port, or localhost).
    let first = components[0];
    let host_like = first.contains('.') || first.contains(':') || first == "localhost";
    let path = if components.len() > 1 && host_like && is_domain(first) {
        &components[1..]
    } else {
        &components[..]
    };
    if path.is_empty() || !path.iter().all(|c| is_path_component(c)) {
        return Err(format!(
            "repository {repository:?} is not valid (lowercase path components separated by '/', with an optional registry host first)"
        ));
    }
    Ok(ImageRef {
        repository: repository.to_string(),
        tag: tag
            .map(str::to_string)
            .or_else(|| digest.is_none().then(|| "latest".to_string())),
        digest,
    })
}

impl Registry {
    /// What a pull of `image` finds.
    pub fn pull(&self, image: &str) -> Pull<'_> {
        let Ok(reference) = parse_image(image) else {
            return Pull::NoSuchRepository;
        };
        let Some(repository) = self.repositories.get(&reference.repository) else {
            return Pull::NoSuchRepository;
        };
        match reference
            .tag
            .as_deref()
            .and_then(|t| repository.tags.get(t))
        {
            Some(Behaviour::Missing) | None => Pull::NoSuchTag,
            Some(behaviour) => Pull::Found {
                repository,
                behaviour,
            },
        }
    }

    /// The registry's entry for exactly this image, when it lists it (missing tags too).
    pub fn listed(&self, image: &str) -> Option<&Behaviour> {
        let reference = parse_image(image).ok()?;
        self.repositories
            .get(&reference.repository)?
            .tags
            .get(reference.tag.as_deref()?)
    }
}

// ---- The file ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    repositories: BTreeMap<String, RepositoryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryFile {
    image_size: u64,
    #[serde(default)]
    logs: Option<LogsFile>,
    tags: BTreeMap<String, TagFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsFile {
    #[serde(default)]
    startup: String,
    #[serde(default)]
    serving: Option<ServingFile>,
    #[serde(default)]
    shutdown: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServingFile {
    every_s: f64,
    groups: Vec<String>,
}

/// One tag: exactly one of its keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagFile {
    #[serde(default)]
    healthy: Option<HealthyFile>,
    #[serde(default)]
    crash_loop: Option<CrashFile>,
    /// Why the tag is listed although it does not exist (for readers of the file).
    #[serde(default)]
    #[allow(dead_code)]
    missing: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthyFile {
    error_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// What the release is, for readers of the file.
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CrashFile {
    reason: String,
    exit_code: i32,
    runs_for_s: f64,
    #[serde(default)]
    log: String,
    #[serde(default = "yes")]
    startup: bool,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

fn yes() -> bool {
    true
}

/// Parses template lines: `<offset> <LEVEL> <logger> <trace-id|-|{trace}> <message>`, with
/// continuation lines starting with a tab (the fixture log grammar, offsets relative to an
/// anchor and allowed to be positive).
pub fn parse_lines(text: &str) -> Result<Vec<LineTemplate>, String> {
    let mut lines: Vec<LineTemplate> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let n = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(cont) = line.strip_prefix('\t') {
            lines
                .last_mut()
                .ok_or_else(|| format!("line {n}: continuation line before any entry"))?
                .detail
                .push(cont.to_string());
            continue;
        }
        let Some((offset, level, logger, trace, message)) = crate::util::logs::fixture_fields(line)
        else {
            return Err(format!(
                "line {n}: expected '<offset> <LEVEL> <logger> <trace-id|-|{{trace}}> <message>'"
            ));
        };
        let offset: f64 = offset
            .parse()
            .ok()
            .filter(|o: &f64| o.is_finite())
            .ok_or_else(|| format!("line {n}: bad offset {offset:?}"))?;
        let level = Level::parse(level).ok_or_else(|| format!("line {n}: bad level {level:?}"))?;
        let trace = match trace {
            "-" => TraceField::None,
            "{trace}" => TraceField::Generated,
            t if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
                TraceField::Fixed(t.to_ascii_lowercase())
            }
            t => return Err(format!("line {n}: bad trace id {t:?}")),
        };
        lines.push(LineTemplate {
            offset,
            level,
            logger: logger.to_string(),
            trace,
            message: message.to_string(),
            detail: Vec::new(),
        });
    }
    Ok(lines)
}

/// Log lines for a repository whose registry entry has none: a generic service start.
pub fn generic_logs() -> LogTemplates {
    let parse = |text: &str| parse_lines(text).expect("the built-in templates parse");
    LogTemplates {
        startup: parse(
            "0.000 INFO {app} - starting {app} {version}\n\
             0.120 INFO {app} - configuration loaded (profile=production)\n\
             0.260 INFO {app} - dependencies reachable\n\
             0.340 INFO {app} - listening on :{port}\n",
        ),
        serving_every: 2.0,
        serving: vec![
            parse("0.000 INFO http.access {trace} GET /api/v1/status 200 {ms}ms"),
            parse("0.000 INFO http.access - GET /healthz 200 1ms"),
        ],
        shutdown: parse("0.000 INFO {app} - SIGTERM received, draining connections"),
    }
}

/// Reads `registry.yaml`.
pub fn parse(path: &str, text: &str) -> anyhow::Result<Registry> {
    let file: RegistryFile = serde_yaml_ng::from_str(text)
        .with_context(|| format!("fixture {path}: unexpected shape"))?;
    let mut repositories = BTreeMap::new();
    for (name, repo) in file.repositories {
        let context =
            |what: &str, e: String| anyhow!("fixture {path}: repository {name}: {what}: {e}");
        let reference = parse_image(&name).map_err(|e| context("name", e))?;
        if reference.tag.as_deref() != Some("latest") || reference.digest.is_some() {
            bail!("fixture {path}: repository {name:?} must be a repository without tag or digest");
        }
        let logs = match repo.logs {
            None => generic_logs(),
            Some(logs) => {
                let serving = logs.serving.unwrap_or(ServingFile {
                    every_s: 2.0,
                    groups: Vec::new(),
                });
                if serving.every_s.is_nan() || serving.every_s < 0.2 {
                    bail!(
                        "fixture {path}: repository {name}: logs.serving.every_s must be at least 0.2"
                    );
                }
                LogTemplates {
                    startup: parse_lines(&logs.startup).map_err(|e| context("logs.startup", e))?,
                    serving_every: serving.every_s,
                    serving: serving
                        .groups
                        .iter()
                        .map(|g| parse_lines(g))
                        .collect::<Result<_, _>>()
                        .map_err(|e| context("logs.serving", e))?,
                    shutdown: parse_lines(&logs.shutdown)
                        .map_err(|e| context("logs.shutdown", e))?,
                }
            }
        };
        let mut tags = BTreeMap::new();
        for (tag, entry) in repo.tags {
            parse_image(&format!("{name}:{tag}")).map_err(|e| context("tag", e))?;
            let behaviour = match (entry.healthy, entry.crash_loop, entry.missing) {
                (Some(h), None, None) => {
                    if !(0.0..=1.0).contains(&h.error_rate) {
                        bail!("fixture {path}: {name}:{tag}: error_rate must be 0..1");
                    }
                    Behaviour::Healthy(Profile {
                        error_rate: h.error_rate,
                        p50_ms: h.p50_ms,
                        p99_ms: h.p99_ms,
                    })
                }
                (None, Some(c), None) => {
                    if c.runs_for_s.is_nan() || c.runs_for_s < 1.0 {
                        bail!("fixture {path}: {name}:{tag}: runs_for_s must be at least 1");
                    }
                    Behaviour::CrashLoop(Crash {
                        reason: c.reason,
                        exit_code: c.exit_code,
                        runs_for: c.runs_for_s,
                        log: parse_lines(&c.log)
                            .map_err(|e| context(&format!("tag {tag} log"), e))?,
                        startup: c.startup,
                    })
                }
                (None, None, Some(_)) => Behaviour::Missing,
                _ => bail!(
                    "fixture {path}: {name}:{tag}: give exactly one of healthy, crash_loop, missing"
                ),
            };
            tags.insert(tag, behaviour);
        }
        repositories.insert(
            reference.repository,
            Repository {
                image_size: repo.image_size,
                logs,
                tags,
            },
        );
    }
    Ok(Registry {
        repositories,
        from_file: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_checked_like_the_runtime_does() {
        let r = parse_image("registry.acme.internal/payments/payment-gateway:2.13.2").unwrap();
        assert_eq!(
            r.repository,
            "registry.acme.internal/payments/payment-gateway"
        );
        assert_eq!(r.tag.as_deref(), Some("2.13.2"));
        let r = parse_image("localhost:5000/app").unwrap();
        assert_eq!(r.repository, "localhost:5000/app");
        assert_eq!(r.tag_or_latest(), "latest");
        assert_eq!(
            parse_image("nginx").unwrap().canonical(),
            "docker.io/library/nginx:latest"
        );
        let digest = format!("repo/app@sha256:{}", "a".repeat(64));
        assert_eq!(parse_image(&digest).unwrap().tag, None);
        for bad in [
            "",
            "has space:1",
            "UPPER/case:1",
            "repo:",
            "repo:-x",
            "repo@sha256:xyz",
            "a//b:1",
            "repo:tag:again",
        ] {
            assert!(parse_image(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn template_lines_use_the_fixture_grammar() {
        let lines =
            parse_lines("0.000 INFO app - starting\n-1.5 ERROR app {trace} boom\n\tat frame\n")
                .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].offset, -1.5);
        assert_eq!(lines[1].trace, TraceField::Generated);
        assert_eq!(lines[1].detail, vec!["at frame"]);
        assert!(parse_lines("\tat frame").is_err());
        assert!(parse_lines("x INFO app - m").is_err());
    }
}
