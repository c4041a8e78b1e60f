//! The bounds of every tool argument, one definition each: the params' schema attributes state
//! them to the client (`maxLength`, `maxItems`, `minimum`/`maximum`), the pipeline checks every
//! call against that schema before any work, and the tools' own checks use the same constants.
//!
//! Each string limit has a value of its own, so a message that refuses a longer string can say
//! what kind of value was expected ([`what_string`]).

/// A Kubernetes object name: namespace, pod, service (or `namespace/name`), container, object,
/// team, kubeconfig context (a DNS-1123 subdomain is at most 253 characters).
pub const NAME: usize = 253;
/// A label selector (`app=web,tier in (a,b)`).
pub const LABEL_SELECTOR: usize = 1_024;
/// A regular expression (grep, pattern).
pub const PATTERN: usize = 1_000;
/// A `since` argument: a duration (`15m`) or an RFC 3339 time, which with nanoseconds and an
/// offset is 35 characters.
pub const SINCE: usize = 64;
/// A status, phase, log level or event type (`CrashLoopBackOff`, `warn`, `Warning`).
pub const WORD: usize = 48;
/// A trace id (32 hexadecimal digits; some tracers write more).
pub const TRACE_ID: usize = 128;
/// Free text: a search query, a problem description.
pub const TEXT: usize = 2_000;
/// A runbook tag.
pub const TAG: usize = 100;
/// Most tags one search filters by.
pub const TAGS: usize = 16;

/// `tail_lines` and search_logs' `limit`: from 1 to the most `--max-log-lines` may be set to
/// (the configured value then lowers a larger one, with a note).
pub const LOG_LINES_MIN: i64 = 1;
pub const LOG_LINES_MAX: i64 = 1_000_000;
/// get_recent_deploys' `hours_back`: an hour to 90 days.
pub const HOURS_BACK_MIN: i64 = 1;
pub const HOURS_BACK_MAX: i64 = 2_160;
/// search_runbooks' `limit`.
pub const RUNBOOKS_MIN: i64 = 1;
pub const RUNBOOKS_MAX: i64 = 20;

/// A container image reference (`registry/repo/name:tag@sha256:…`).
pub const IMAGE: usize = 512;
/// A confirmation token (`cf_` and 32 hex digits), with room to spare.
pub const TOKEN: usize = 80;
/// An environment name (`production`, `staging`): a label value.
pub const ENVIRONMENT: usize = 63;
/// scale_deployment's `replicas`.
pub const REPLICAS_MAX: i64 = 1_000;
/// rollback_deployment's `to_revision`.
pub const REVISION_MAX: i64 = 1_000_000_000;

/// What a string of at most `max_length` characters is, when it is one of the limits above.
pub fn what_string(max_length: u64) -> Option<&'static str> {
    Some(match usize::try_from(max_length).ok()? {
        NAME => "a Kubernetes name",
        LABEL_SELECTOR => "a label selector",
        PATTERN => "a regular expression",
        SINCE => "a duration such as 15m or an RFC 3339 time",
        WORD => "a status, level or type",
        TRACE_ID => "a trace id",
        TEXT => "free text",
        TAG => "a tag",
        IMAGE => "an image reference",
        TOKEN => "a confirmation token",
        ENVIRONMENT => "an environment name",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_limit_is_named_once() {
        let limits = [
            NAME,
            LABEL_SELECTOR,
            PATTERN,
            SINCE,
            WORD,
            TRACE_ID,
            TEXT,
            TAG,
            IMAGE,
            TOKEN,
            ENVIRONMENT,
        ];
        let named: std::collections::BTreeSet<&str> = limits
            .iter()
            .map(|l| what_string(*l as u64).expect("named"))
            .collect();
        assert_eq!(named.len(), limits.len());
        assert_eq!(what_string(7), None);
    }
}
