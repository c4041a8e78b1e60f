//! What counts as a problem in a tool result — the one definition that the runbook augmenter
//! (which problems to find runbooks for) and result shaping (which items to keep first) share.
//! It reads the meaning of result fields (`status`, `level`, `type`, `restarts`…), never tool
//! names; a test checks every field read here against the tools' output schemas.

use serde_json::{Map, Value};

/// Container reasons, pod phases and statuses that are failures in their own right (each has
/// runbooks of its own).
pub const FAILURE_STATUSES: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "OOMKilled",
    "Error",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
    "Evicted",
    "ContainerStatusUnknown",
    "Pending",
    "Failed",
    "Unschedulable",
    "RunContainerError",
    "StartError",
    "DeadlineExceeded",
];

/// Statuses that mean all is well (compared without case).
pub const HEALTHY_STATUSES: &[&str] = &[
    "running",
    "healthy",
    "active",
    "succeeded",
    "completed",
    "ok",
    "ready",
    "bound",
    "available",
    "true",
];

/// Statuses that mean "not well, not failed" (compared without case).
pub const DEGRADED_STATUSES: &[&str] = &["degraded", "warning", "unknown"];

/// Container termination reasons that end the process on purpose.
pub const BENIGN_TERMINATIONS: &[&str] = &["Completed"];

/// The result fields this module reads. Every one must appear in some tool's output schema.
pub const FIELDS_READ: &[&str] = &[
    "unhealthy",
    "status",
    "ready",
    "type",
    "level",
    "restarts",
    "last_termination_reason",
    "pods_not_ready",
    "errors",
    "warning_events",
    "firing_alerts",
    "pod_problems",
    "conditions",
];

/// How bad a status is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusClass {
    Healthy,
    Degraded,
    /// Not healthy, and not a known failure (Terminating, ContainerCreating, down…).
    Unwell,
    /// A known failure reason ([`FAILURE_STATUSES`]).
    Failing,
}

pub fn status_class(status: &str) -> StatusClass {
    if FAILURE_STATUSES.contains(&status) {
        StatusClass::Failing
    } else if HEALTHY_STATUSES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(status))
    {
        StatusClass::Healthy
    } else if DEGRADED_STATUSES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(status))
    {
        StatusClass::Degraded
    } else {
        StatusClass::Unwell
    }
}

/// A log level that marks an error line.
pub fn is_error_level(level: &str) -> bool {
    level.eq_ignore_ascii_case("error") || level.eq_ignore_ascii_case("fatal")
}

/// An object that is an error log line (`level` ERROR or FATAL).
pub fn is_error_line(item: &Value) -> bool {
    item.get("level")
        .and_then(Value::as_str)
        .is_some_and(is_error_level)
}

/// An event type that marks a warning.
pub fn is_warning_type(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("warning")
}

/// A `ready` field such as `1/3` that says not every member is ready.
pub fn is_partly_ready(ready: &str) -> bool {
    ready
        .split_once('/')
        .is_some_and(|(have, want)| have.trim() != want.trim())
}

/// How much trouble one result item shows (0 = none); shaping keeps the highest first.
pub fn severity(item: &Value) -> i64 {
    let Value::Object(map) = item else { return 0 };
    let mut score = 0;
    let text = |k: &str| map.get(k).and_then(Value::as_str);
    let number = |k: &str| map.get(k).and_then(Value::as_i64).unwrap_or(0);
    if map.get("unhealthy").and_then(Value::as_bool) == Some(true) {
        score += 4;
    }
    if let Some(status) = text("status") {
        score += match status_class(status) {
            StatusClass::Healthy => 0,
            StatusClass::Degraded => 3,
            StatusClass::Unwell | StatusClass::Failing => 4,
        };
    }
    if text("ready").is_some_and(is_partly_ready) {
        score += 2;
    }
    if text("type").is_some_and(is_warning_type) {
        score += 3;
    }
    score += match text("level").map(str::to_ascii_lowercase).as_deref() {
        Some("fatal") => 5,
        Some("error") => 4,
        Some("warn") | Some("warning") => 2,
        _ => 0,
    };
    if number("restarts") > 0 {
        score += 1;
    }
    if text("last_termination_reason").is_some_and(|r| {
        !BENIGN_TERMINATIONS
            .iter()
            .any(|b| b.eq_ignore_ascii_case(r))
    }) {
        score += 2;
    }
    for field in ["pods_not_ready", "errors"] {
        if number(field) > 0 {
            score += 2;
        }
    }
    if number("warning_events") > 0 {
        score += 1;
    }
    for field in ["firing_alerts", "pod_problems", "conditions"] {
        if non_empty_list(map, field) {
            score += 2;
        }
    }
    score
}

fn non_empty_list(map: &Map<String, Value>, field: &str) -> bool {
    map.get(field)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_are_classed_once() {
        assert_eq!(status_class("CrashLoopBackOff"), StatusClass::Failing);
        assert_eq!(status_class("Pending"), StatusClass::Failing);
        assert_eq!(status_class("Running"), StatusClass::Healthy);
        assert_eq!(status_class("healthy"), StatusClass::Healthy);
        assert_eq!(status_class("degraded"), StatusClass::Degraded);
        assert_eq!(status_class("Terminating"), StatusClass::Unwell);
        assert_eq!(status_class("down"), StatusClass::Unwell);
    }

    #[test]
    fn severity_reads_field_meanings() {
        assert!(
            severity(&json!({"status": "CrashLoopBackOff", "restarts": 9}))
                > severity(&json!({"status": "Running"}))
        );
        assert!(severity(&json!({"type": "Warning"})) > severity(&json!({"type": "Normal"})));
        assert!(severity(&json!({"level": "ERROR"})) > severity(&json!({"level": "INFO"})));
        assert!(severity(&json!({"status": "Running", "ready": "0/1"})) > 0);
        assert_eq!(
            severity(&json!({"status": "Running", "ready": "1/1", "restarts": 0})),
            0
        );
        assert!(severity(&json!({"last_termination_reason": "OOMKilled"})) > 0);
        assert_eq!(
            severity(&json!({"last_termination_reason": "Completed"})),
            0
        );
    }
}
