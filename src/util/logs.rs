//! Log entries: parsing container log text into structured entries (level, logger, trace id,
//! multi-line stack traces), and normalising messages so that ids and numbers do not split
//! error groups.

use std::sync::LazyLock;

use jiff::{SignedDuration, Timestamp};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::quote::short;

/// Log severity, ordered from least to most severe.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const NAMES: &'static str = "trace, debug, info, warn, error, fatal";

    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_uppercase().as_str() {
            "TRACE" => Level::Trace,
            "DEBUG" => Level::Debug,
            "INFO" => Level::Info,
            "WARN" | "WARNING" => Level::Warn,
            "ERROR" | "ERR" => Level::Error,
            "FATAL" | "CRITICAL" | "PANIC" => Level::Fatal,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    /// Parses a user-supplied minimum level, with an error that lists the valid values.
    pub fn parse_arg(text: &str) -> Result<Level, String> {
        Level::parse(text.trim()).ok_or_else(|| {
            format!(
                "invalid level {}; valid levels: {}",
                short(text),
                Level::NAMES
            )
        })
    }
}

/// One log entry; continuation lines (stack frames, `Caused by:`) are kept in `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub timestamp: Timestamp,
    pub level: Level,
    pub logger: String,
    pub trace_id: Option<String>,
    pub message: String,
    pub detail: Vec<String>,
}

impl LogEntry {
    /// Number of raw text lines this entry occupied.
    pub fn line_count(&self) -> usize {
        1 + self.detail.len()
    }

    /// Bytes this entry takes as a log line (timestamp, level, logger, trace id, message and
    /// continuation lines), for byte limits on backends that hold parsed entries.
    pub fn approximate_bytes(&self) -> usize {
        // RFC 3339 timestamp with milliseconds, spaces and newlines.
        let fixed = 24 + 1 + self.level.as_str().len() + 1 + 1;
        fixed
            + self.logger.len()
            + self.trace_id.as_ref().map_or(0, |t| t.len() + 1)
            + self.message.len()
            + self.detail.iter().map(|d| d.len() + 2).sum::<usize>()
    }
}

/// The five space-separated fields of a fixture log line (`<offset> <LEVEL> <logger>
/// <trace-id|-> <message>`; the message keeps its spaces), or `None` when there are fewer.
pub fn fixture_fields(line: &str) -> Option<(&str, &str, &str, &str, &str)> {
    let mut parts = line.splitn(5, ' ');
    Some((
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    ))
}

/// Parses the demo fixture format: `<offset-seconds> <LEVEL> <logger> <trace-id|-> <message>`,
/// with continuation lines starting with a tab. Offsets are resolved against `now`.
pub fn parse_fixture_log(text: &str, now: Timestamp) -> Result<Vec<LogEntry>, String> {
    let mut entries: Vec<LogEntry> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(cont) = line.strip_prefix('\t') {
            match entries.last_mut() {
                Some(entry) => entry.detail.push(cont.to_string()),
                None => {
                    return Err(format!(
                        "line {line_no}: continuation line before any entry"
                    ));
                }
            }
            continue;
        }
        let Some((offset, level, logger, trace, message)) = fixture_fields(line) else {
            return Err(format!(
                "line {line_no}: expected '<offset> <LEVEL> <logger> <trace-id|-> <message>'"
            ));
        };
        let offset: f64 = offset
            .parse()
            .map_err(|_| format!("line {line_no}: bad offset {offset:?}"))?;
        if offset > 0.0 || !offset.is_finite() {
            return Err(format!(
                "line {line_no}: offset {offset} must be negative seconds"
            ));
        }
        let timestamp = now
            .checked_sub(SignedDuration::from_secs_f64(-offset))
            .map_err(|e| format!("line {line_no}: {e}"))?;
        let level =
            Level::parse(level).ok_or_else(|| format!("line {line_no}: bad level {level:?}"))?;
        let trace_id = match trace {
            "-" => None,
            t if is_trace_id(t) => Some(t.to_string()),
            t => return Err(format!("line {line_no}: bad trace id {t:?}")),
        };
        entries.push(LogEntry {
            timestamp,
            level,
            logger: logger.to_string(),
            trace_id,
            message: message.to_string(),
            detail: Vec::new(),
        });
    }
    Ok(entries)
}

/// A trace id as W3C trace-context writes it: 32 lowercase hex digits (16 accepted for
/// 64-bit ids from older tracers).
pub fn is_trace_id(text: &str) -> bool {
    (text.len() == 32 || text.len() == 16)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

static LEVEL_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[\s\[\(|])(?:level=)?(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|PANIC)(?:$|[\s\]\):|])")
        .expect("static regex")
});
/// A level given as a field (`"level":"error"`, `"severity": "WARNING"`, `level=warn`), which
/// wins over a level word elsewhere in the line ("an error count of 0").
static LEVEL_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:"(?:level|severity|lvl)"\s*:\s*"|\b(?:level|lvl|severity)=)"?([a-z]+)"#)
        .expect("static regex")
});
static TRACE_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:trace[_-]?id|traceid)[=:\s\x22]+([0-9a-f]{32}|[0-9a-f]{16})\b")
        .expect("static regex")
});

/// Parses container log text as the Kubernetes API returns it with `timestamps=true`
/// (`<RFC3339Nano> <line>`). Level and trace id are recognised in common formats (plain
/// `LEVEL`, `level=error`, JSON `"level":"error"`, `trace_id=`); lines starting with
/// whitespace continue the previous entry.
pub fn parse_timestamped_log(text: &str) -> Vec<LogEntry> {
    let mut parser = TimestampedLogParser::default();
    for line in text.lines() {
        parser.push_line(line);
    }
    parser.finish()
}

/// [`parse_timestamped_log`] one line at a time, for a log read as a stream: only the parsed
/// entries are kept, never the whole text.
#[derive(Debug, Default)]
pub struct TimestampedLogParser {
    entries: Vec<LogEntry>,
}

impl TimestampedLogParser {
    pub fn push_line(&mut self, line: &str) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (timestamp, rest) = match line.split_once(' ') {
            Some((ts, rest)) => match ts.parse::<Timestamp>() {
                Ok(t) => (Some(t), rest),
                Err(_) => (None, line),
            },
            None => (line.parse::<Timestamp>().ok(), ""),
        };
        let is_continuation = rest.starts_with([' ', '\t']) || rest.starts_with("Caused by:");
        if is_continuation && let Some(last) = self.entries.last_mut() {
            last.detail.push(rest.trim_start().to_string());
            return;
        }
        let level = LEVEL_FIELD
            .captures(rest)
            .and_then(|c| Level::parse(&c[1]))
            .or_else(|| LEVEL_WORD.captures(rest).and_then(|c| Level::parse(&c[1])))
            .unwrap_or(Level::Info);
        let trace_id = TRACE_FIELD
            .captures(rest)
            .map(|c| c[1].to_ascii_lowercase());
        self.entries.push(LogEntry {
            timestamp: timestamp.unwrap_or(Timestamp::UNIX_EPOCH),
            level,
            logger: String::new(),
            trace_id,
            message: rest.to_string(),
            detail: Vec::new(),
        });
    }

    pub fn finish(self) -> Vec<LogEntry> {
        self.entries
    }
}

static NORMALISE: LazyLock<[(Regex, &'static str); 7]> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("static regex");
    [
        (
            re(r"\b[a-z0-9]+(?:-[a-z0-9]+)*-[a-z0-9]{8,10}-[a-z0-9]{5}\b"),
            "<pod>",
        ),
        (
            re(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
            "<uuid>",
        ),
        (re(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
        (
            re(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?\b"),
            "<time>",
        ),
        (re(r"\b[0-9a-f]{16,}\b"), "<hex>"),
        (
            re(
                r"\b(?:0x)?[0-9a-f]*\d[0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]*[a-f][0-9a-f]*\d[0-9a-f]*\b",
            ),
            "<id>",
        ),
        (re(r"\d+(?:\.\d+)?"), "<n>"),
    ]
});

/// Normalises a log message for grouping: uuids, IPs, timestamps, hex ids, pod names and
/// numbers become placeholders, so "timeout after 5012ms for order 8812" and
/// "timeout after 5000ms for order 17" fall in one group. Credentials are masked first:
/// once digits became placeholders, a key no longer has the shape the masker knows
/// (`AKIA…1…` would come back as `AKIA…<n>…`).
pub fn normalise_message(message: &str) -> String {
    let mut text = crate::util::redact::mask(message).into_owned();
    let last = NORMALISE.len() - 1;
    for (pattern, placeholder) in &NORMALISE[..last] {
        if pattern.is_match(&text) {
            text = pattern.replace_all(&text, *placeholder).into_owned();
        }
    }
    // Identifiers that mix letters and digits (ord_8j9x5busql, cus_342527, req-7f3a9) before
    // plain numbers, so that each becomes one placeholder rather than a scatter of <n>.
    text = MIXED_ID
        .replace_all(&text, |caps: &regex::Captures| {
            let token = &caps[0];
            let digits = token.bytes().filter(u8::is_ascii_digit).count();
            let has_alpha = token.bytes().any(|b| b.is_ascii_alphabetic());
            // "HikariPool-1" or "x509" are names, not ids: one digit without an underscore, or short.
            let looks_generated = digits >= 2 || (digits == 1 && token.contains('_'));
            if looks_generated && has_alpha && token.len() >= 6 {
                "<id>".to_string()
            } else {
                token.to_string()
            }
        })
        .into_owned();
    let (pattern, placeholder) = &NORMALISE[last];
    pattern.replace_all(&text, *placeholder).into_owned()
}

static MIXED_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*").expect("static regex"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_format_with_stack_trace() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let text = "-60.500 ERROR c.a.Foo 0af7651916cd43dd8448eb211c80319c boom\n\tat a.b(C.java:1)\n-1.000 INFO http.access - GET / 200\n";
        let entries = parse_fixture_log(text, now).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].level, Level::Error);
        assert_eq!(entries[0].detail, vec!["at a.b(C.java:1)"]);
        assert_eq!(
            entries[0].trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(entries[0].timestamp.to_string(), "2026-01-01T11:58:59.5Z");
        assert!(entries[1].trace_id.is_none());
        assert!(parse_fixture_log("-1 LOUD x - y", now).is_err());
        assert!(parse_fixture_log("\tat x", now).is_err());
        assert!(parse_fixture_log("5 INFO x - y", now).is_err());
    }

    #[test]
    fn timestamped_text() {
        let text = "2026-01-01T11:00:00.123456789Z level=error msg=\"db down\" trace_id=0af7651916cd43dd8448eb211c80319c\n2026-01-01T11:00:01Z \tat x.y\n2026-01-01T11:00:02Z 2026-01-01 INFO started\n";
        let entries = parse_timestamped_log(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].level, Level::Error);
        assert_eq!(entries[0].detail, vec!["at x.y"]);
        assert_eq!(
            entries[0].trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(entries[1].level, Level::Info);
    }

    #[test]
    fn json_and_bracketed_levels() {
        let text = concat!(
            "2026-01-01T11:00:00Z {\"level\":\"error\",\"msg\":\"pool exhausted\",\"trace_id\":\"0af7651916cd43dd\"}\n",
            "2026-01-01T11:00:01Z {\"severity\": \"WARNING\", \"message\": \"slow\"}\n",
            "2026-01-01T11:00:02Z [warn] disk 91% full\n",
            "2026-01-01T11:00:03Z {\"msg\":\"an error count of 0\",\"level\":\"info\"}\r\n",
        );
        let levels: Vec<Level> = parse_timestamped_log(text)
            .iter()
            .map(|e| e.level)
            .collect();
        assert_eq!(
            levels,
            [Level::Error, Level::Warn, Level::Warn, Level::Info]
        );
        assert_eq!(
            parse_timestamped_log(text)[0].trace_id.as_deref(),
            Some("0af7651916cd43dd")
        );
    }

    #[test]
    fn normalisation_merges_ids_and_numbers() {
        let a = normalise_message(
            "ReadTimeout calling inventory-service after 5012ms (order 8812, pod inventory-service-5f7c9d8b6d-k2x9z)",
        );
        let b = normalise_message(
            "ReadTimeout calling inventory-service after 5000ms (order 17, pod inventory-service-5f7c9d8b6d-abcde)",
        );
        assert_eq!(a, b);
        assert!(a.contains("inventory-service after"));
        let c = normalise_message(
            "request 3fa85f64-5717-4562-b3fc-2c963f66afa6 from 10.0.3.17:8080 failed",
        );
        assert_eq!(c, "request <uuid> from <ip> failed");
        assert_eq!(
            normalise_message("Order ord_lgxbeoe6tg rejected: inventory-service unavailable"),
            normalise_message("Order ord_8j9x5busql rejected: inventory-service unavailable")
        );
        assert_eq!(normalise_message("retry 3 of 5"), "retry <n> of <n>");
        assert_eq!(
            normalise_message("HikariPool-1 - Connection is not available"),
            "HikariPool-<n> - Connection is not available"
        );
    }
}
