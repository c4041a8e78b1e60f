//! Prompt templates for whole investigations. Each names the concrete tools to call, in
//! order, and the shape of the answer; arguments with names of services and namespaces are
//! completed from the cluster.

use std::collections::BTreeMap;

use super::Services;
use crate::cluster::{ListQuery, view};
use crate::tools::limits;
use crate::util::quote::{short, thousands};

pub struct PromptArg {
    pub name: &'static str,
    pub description: &'static str,
    pub required: bool,
    /// Longest value accepted, in characters (checked before the prompt is rendered).
    pub max_chars: usize,
}

pub struct PromptDef {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub arguments: &'static [PromptArg],
    build: fn(&BTreeMap<String, String>) -> String,
}

const ANSWER_SHAPE: &str = "Answer with these sections:\n\
1. Root cause — one or two sentences, naming the component and the triggering change or condition.\n\
2. Severity — SEV1 (customer-facing outage), SEV2 (degraded), SEV3 (contained) — with the user impact.\n\
3. Evidence — bullet list; each bullet quotes a concrete datum (exit code, event, log line with timestamp, metric, revision) and the tool that returned it.\n\
4. Immediate actions — ordered, each with the exact command or tool call; prefer the reversible action (rollback, disable a flag, scale) first.\n\
5. Follow-up — prevention items for the post-incident review.\n\
Quote the runbook sections attached to tool results (relevant_runbooks) where they apply, or find them with search_runbooks; read a whole runbook at its runbook:// URI. Do not guess: if a datum is missing, say which tool call would provide it.";

pub static PROMPTS: &[PromptDef] = &[
    PromptDef {
        name: "investigate-service",
        title: "Investigate a service",
        description: "Full investigation of one service: troubleshoot_issue first, then the calls that confirm its hypotheses, ending in root cause and actions.",
        arguments: &[
            PromptArg {
                name: "service",
                description: "Service (Deployment) name, e.g. payment-gateway",
                required: true,
                max_chars: limits::NAME,
            },
            PromptArg {
                name: "symptoms",
                description: "What was reported, e.g. '502s on checkout since 10:40'",
                required: false,
                max_chars: limits::TEXT,
            },
        ],
        build: |a| {
            let service = arg(a, "service");
            let symptoms = a
                .get("symptoms")
                .map(|s| format!("Reported symptoms: {s}\n\n"))
                .unwrap_or_default();
            let description = a
                .get("symptoms")
                .cloned()
                .unwrap_or_else(|| format!("investigate {service}"))
                .replace('"', "'");
            format!(
                "You are the on-call SRE investigating the service `{service}`.\n\n{symptoms}\
Call first:\n\
1. troubleshoot_issue(description=\"{description}\", service=\"{service}\") — one call that reads health, pods and their last state, the crashed container's error lines, warning events, rollouts, error groups and alerts, and returns ranked hypotheses (each with evidence and a next_call), severity, immediate actions from the runbook and what to check next.\n\
Then confirm before you conclude, reading each result before the next:\n\
2. The first hypothesis' next_call, then the calls under check_next.\n\
3. If a datum is still missing: check_service_health(service=\"{service}\") — golden signals, alerts and the verdict; describe_pod(namespace, pod) for one unhealthy pod — state and last state (reason, exit code), limits, probes, events; get_pod_logs(namespace, pod, previous=true, level=\"warn\") if the container restarted; get_recent_deploys(service=\"{service}\", hours_back=24) — does the start of the problem follow a rollout?\n\
4. If the failure crosses services: trace_transaction on a trace_id from a failing entry (search_logs(service=\"{service}\", level=\"error\") shows them).\n\n{ANSWER_SHAPE}"
            )
        },
    },
    PromptDef {
        name: "pre-deploy-check",
        title: "Pre-deploy check",
        description: "Decide whether it is safe to deploy a service now: its health, its dependencies, open incidents and recent rollouts.",
        arguments: &[
            PromptArg {
                name: "service",
                description: "Service (Deployment) to be deployed",
                required: true,
                max_chars: limits::NAME,
            },
            PromptArg {
                name: "namespace",
                description: "Its namespace, when the name is ambiguous",
                required: false,
                max_chars: limits::NAME,
            },
        ],
        build: |a| {
            let service = match a.get("namespace") {
                Some(ns) => format!("{ns}/{}", arg(a, "service")),
                None => arg(a, "service"),
            };
            format!(
                "You are checking whether it is safe to deploy `{service}` now.\n\n\
Call in order:\n\
1. check_service_health(service=\"{service}\") — it must be healthy, or the deploy must be the fix.\n\
2. check_service_health() — any service that is down or degraded, especially dependencies and callers of {service}.\n\
3. get_recent_deploys(service=\"{service}\", hours_back=72) — the current revision, the previous one to roll back to, and how recent the last change was.\n\
4. list_deployments(namespace=<its namespace>) — rollouts in progress or stuck in the same namespace.\n\
5. get_events(namespace=<its namespace>, type=\"Warning\") — scheduling, quota or image problems that would also hit the new pods.\n\
6. count_errors(group_by=\"service\", since=\"1h\") — the baseline error level to compare after the deploy.\n\
7. If the new image is known: deploy_with_review(service=\"{service}\", image=<the new image>, reason=<why>, dry_run=true) — the server's own review (GO/NO-GO, risk, checks) and the change as a diff. It changes nothing; never call it with dry_run=false without the user's explicit yes.\n\n\
Answer with: Verdict (GO / NO-GO / GO WITH CONDITIONS) in one line; Blockers (each with evidence and the tool that showed it); \
Risks; Rollback plan (the exact revision: rollback_deployment(service=\"{service}\", to_revision=N, reason=…), or `kubectl rollout undo deployment/<name> -n <ns> --to-revision=N`); \
What to watch in the 15 minutes after the deploy (metrics, error groups, alerts)."
            )
        },
    },
    PromptDef {
        name: "daily-health-report",
        title: "Daily health report",
        description: "A report of the whole cluster for the daily stand-up or the on-call hand-over.",
        arguments: &[],
        build: |_| {
            "Write the daily cluster health report for the on-call hand-over.\n\n\
Call in order:\n\
1. list_namespaces() — the scope and per-namespace tallies.\n\
2. check_service_health() — every service, worst first.\n\
3. count_errors(group_by=\"service\", since=\"24h\") then count_errors(group_by=\"message\", since=\"24h\") — where errors come from and the top error groups.\n\
4. get_events(type=\"Warning\") — cluster-wide warnings.\n\
5. For each service that is not healthy: get_recent_deploys(service, hours_back=24).\n\
6. Read the resource deployment://history for the day's rollouts.\n\n\
Answer with: Summary (one paragraph, counts by status); Incidents (one block per unhealthy service: status, verdict, suspected cause, owner team, next step); \
Changes in the last 24 h (rollouts with change-cause); Top error groups (count and service); Risks for the next shift; Action items with owners. \
Keep healthy services to one line in total.".to_string()
        },
    },
    PromptDef {
        name: "trace-transaction",
        title: "Trace a transaction",
        description: "Follow one transaction across services by trace id and explain where and why it failed.",
        arguments: &[PromptArg {
            name: "trace_id",
            description: "Trace id (32 hex digits) from a log entry or an error report",
            required: true,
            max_chars: limits::TRACE_ID,
        }],
        build: |a| {
            let trace = arg(a, "trace_id");
            format!(
                "Follow the transaction with trace id `{trace}` across services.\n\n\
Call in order:\n\
1. trace_transaction(trace_id=\"{trace}\") — the timeline, spans per service, and the first error.\n\
2. For the service with the first error: check_service_health(service=<it>) and search_logs(service=<it>, level=\"error\", since=\"30m\").\n\
3. If that service is only a victim (timeouts calling another service), repeat step 2 for the service it calls.\n\
4. get_recent_deploys(service=<the failing service>, hours_back=24).\n\n\
Answer with: the path of the request (service → service, with durations); where it failed and the error text; whether the failure is local or inherited from a dependency; \
then Root cause, Severity, Evidence, Immediate actions, Follow-up as below.\n\n{ANSWER_SHAPE}"
            )
        },
    },
    PromptDef {
        name: "troubleshoot-issue",
        title: "Troubleshoot an issue",
        description: "Start from a free-text problem description (optionally a service) and find the cause: troubleshoot_issue first, then confirm.",
        arguments: &[
            PromptArg {
                name: "description",
                description: "The problem as reported, e.g. 'checkout is slow and returns 504'",
                required: true,
                max_chars: limits::TEXT,
            },
            PromptArg {
                name: "service",
                description: "A service involved, if known",
                required: false,
                max_chars: limits::NAME,
            },
        ],
        build: |a| {
            let description = arg(a, "description").replace('"', "'");
            let call = match a.get("service") {
                Some(s) => {
                    format!("troubleshoot_issue(description=\"{description}\", service=\"{s}\")")
                }
                None => format!("troubleshoot_issue(description=\"{description}\")"),
            };
            format!(
                "Troubleshoot this reported issue: \"{description}\".\n\n\
Call first:\n\
1. {call} — one call that finds the services concerned (from the arguments or the description, else every unhealthy one), reads health, pods, the crashed containers' error lines, events, rollouts, error groups and alerts, follows errors that name another service to the root cause, and returns ranked hypotheses with evidence and a next_call each, severity, immediate actions from the runbook that fits, and what to check next.\n\
Then confirm before you conclude:\n\
2. The first hypothesis' next_call, then the calls under check_next.\n\
3. If no hypothesis fits the report: check_service_health() and count_errors(group_by=\"message\", since=\"1h\") for what the investigation did not cover, and search_runbooks(query=<the symptom in a few words>).\n\
4. If errors are timeouts towards another service, follow a failing trace_id with trace_transaction.\n\n{ANSWER_SHAPE}"
            )
        },
    },
];

fn arg(args: &BTreeMap<String, String>, name: &str) -> String {
    args.get(name).cloned().unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("unknown prompt {}; prompts: {valid}", short(name))]
    Unknown { name: String, valid: String },
    #[error("prompt {prompt} needs argument {argument:?} ({description})")]
    MissingArgument {
        prompt: &'static str,
        argument: &'static str,
        description: &'static str,
    },
    #[error(
        "prompt {prompt} has no argument {}; its arguments: {valid}",
        short(argument)
    )]
    UnknownArgument {
        prompt: &'static str,
        argument: String,
        valid: String,
    },
    #[error(
        "prompt {prompt} argument {argument:?} is {} characters; the limit is {} ({description})",
        thousands(*chars),
        thousands(*limit)
    )]
    TooLong {
        prompt: &'static str,
        argument: &'static str,
        description: &'static str,
        chars: usize,
        limit: usize,
    },
}

pub fn find(name: &str) -> Result<&'static PromptDef, PromptError> {
    PROMPTS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PromptError::Unknown {
            name: name.to_string(),
            valid: crate::util::suggest::suggest(name, PROMPTS.iter().map(|p| p.name)),
        })
}

/// Renders a prompt's text after checking its arguments.
pub fn render(
    name: &str,
    args: &BTreeMap<String, String>,
) -> Result<(&'static PromptDef, String), PromptError> {
    let prompt = find(name)?;
    for (key, _) in args.iter() {
        if !prompt.arguments.iter().any(|a| a.name == key) {
            return Err(PromptError::UnknownArgument {
                prompt: prompt.name,
                argument: key.clone(),
                valid: if prompt.arguments.is_empty() {
                    "none".into()
                } else {
                    prompt
                        .arguments
                        .iter()
                        .map(|a| a.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
    }
    for a in prompt.arguments {
        if let Some(value) = args.get(a.name)
            && value.len() > a.max_chars
        {
            let chars = value.chars().count();
            if chars > a.max_chars {
                return Err(PromptError::TooLong {
                    prompt: prompt.name,
                    argument: a.name,
                    description: a.description,
                    chars,
                    limit: a.max_chars,
                });
            }
        }
    }
    for a in prompt.arguments.iter().filter(|a| a.required) {
        if args.get(a.name).is_none_or(|v| v.trim().is_empty()) {
            return Err(PromptError::MissingArgument {
                prompt: prompt.name,
                argument: a.name,
                description: a.description,
            });
        }
    }
    let args: BTreeMap<String, String> = args
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect();
    Ok((prompt, (prompt.build)(&args)))
}

/// Longest value `completion/complete` completes: the names it completes are Kubernetes names
/// and runbook ids.
pub const COMPLETION_VALUE_MAX_CHARS: usize = limits::NAME;

/// Checks a `completion/complete` argument before any work: its value (what has been typed of a
/// name) is at most [`COMPLETION_VALUE_MAX_CHARS`] characters. The message names the argument
/// and the limit, and repeats neither in full.
pub fn check_completion(argument: &str, value: &str) -> Result<(), String> {
    if value.len() <= COMPLETION_VALUE_MAX_CHARS {
        return Ok(());
    }
    let chars = value.chars().count();
    if chars <= COMPLETION_VALUE_MAX_CHARS {
        return Ok(());
    }
    Err(format!(
        "completion value for {} is {} characters; the limit is {} (a name)",
        short(argument),
        thousands(chars),
        COMPLETION_VALUE_MAX_CHARS
    ))
}

/// Completion values for an argument named `service`, `namespace` or (runbook) `id`, of a
/// prompt or a resource template, filtered by the typed prefix.
pub async fn complete(services: &Services, argument: &str, prefix: &str) -> Vec<String> {
    let mut values: Vec<String> = match argument {
        "service" => services
            .backend()
            .deployments(&ListQuery::all())
            .await
            .map(|list| view::names(&list.items))
            .unwrap_or_default(),
        "namespace" => services
            .backend()
            .namespaces(&ListQuery::all())
            .await
            .map(|list| view::names(&list.items))
            .unwrap_or_default(),
        "id" => services
            .knowledge()
            .index()
            .await
            .map(|index| index.runbooks.iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    values.retain(|v| v.starts_with(prefix));
    values.sort();
    values.dedup();
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(name: &str, pairs: &[(&str, String)]) -> String {
        render(name, &args(pairs)).err().unwrap().to_string()
    }

    fn args(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn every_argument_has_a_limit_checked_before_rendering() {
        for prompt in PROMPTS {
            for a in prompt.arguments {
                assert!(a.max_chars >= 128, "{} {}", prompt.name, a.name);
            }
        }
        let huge = "s".repeat(1_000_000);
        let error = refusal("investigate-service", &[("service", huge.clone())]);
        assert_eq!(
            error,
            "prompt investigate-service argument \"service\" is 1,000,000 characters; the limit is 253 (Service (Deployment) name, e.g. payment-gateway)"
        );
        let error = refusal("troubleshoot-issue", &[("description", "é".repeat(2_001))]);
        assert!(
            error.contains("2,001 characters; the limit is 2,000"),
            "{error}"
        );
        render(
            "troubleshoot-issue",
            &args(&[("description", "é".repeat(2_000))]),
        )
        .unwrap();
        // Unknown names are quoted by a short prefix only.
        let error = refusal("investigate-service", &[(huge.as_str(), "x".into())]);
        assert!(error.len() < 300, "{error}");
        let error = refusal(&huge, &[]);
        assert!(error.len() < 300, "{error}");
    }

    #[test]
    fn completion_values_are_bounded() {
        check_completion("service", &"a".repeat(253)).unwrap();
        check_completion("service", &"é".repeat(253)).unwrap();
        let error = check_completion("service", &"a".repeat(1_000_000)).unwrap_err();
        assert_eq!(
            error,
            "completion value for \"service\" is 1,000,000 characters; the limit is 253 (a name)"
        );
        let error = check_completion(&"n".repeat(10_000), &"a".repeat(254)).unwrap_err();
        assert!(error.len() < 200, "{error}");
    }
}
