//! Masks credentials in text that leaves the server: log lines, event messages, pod
//! descriptions, error messages and runbook excerpts pass through [`mask`] (or [`mask_json`] for
//! structured results), so a token that a service logged, or a password in a connection URL,
//! never reaches the client's model. What is masked: bearer tokens, JWTs, passwords in URLs,
//! `key=value` / `"key": "value"` pairs whose key names a secret, AWS access keys, Google API
//! keys and PEM private-key blocks.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde_json::Value;

/// What replaces a masked value.
pub const MASK: &str = "[REDACTED]";

struct Rule {
    pattern: Regex,
    replacement: &'static str,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replacement: &'static str| Rule {
        pattern: Regex::new(pattern).expect("static redaction pattern"),
        replacement,
    };
    vec![
        // A PEM private key, whole or just its first line (a log may split it).
        rule(
            r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----(?s:.*?-----END [A-Z ]*PRIVATE KEY-----)?",
            "-----BEGIN ${1}PRIVATE KEY----- [REDACTED]",
        ),
        rule(
            r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            "[REDACTED:jwt]",
        ),
        rule(
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
            "$1 [REDACTED]",
        ),
        // scheme://user:password@host
        rule(
            r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@",
            "${1}[REDACTED]@",
        ),
        rule(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED:aws-key]"),
        rule(r"\bAIza[0-9A-Za-z_-]{35}\b", "[REDACTED:gcp-key]"),
        // key=value, key: value, "key": "value" where the key names a secret; not a
        // placeholder (`<token>`, `$TOKEN`, `${TOKEN}`) or a path (`.spec.tls[*].secretName`).
        rule(
            r#"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|credentials?|auth[_-]?token|session[_-]?id))(["']?\s*[=:]\s*["']?)([^\s"',;&}\]<$.{][^\s"',;&}\]]*)"#,
            "${1}${2}[REDACTED]",
        ),
    ]
});

/// A cheap first pass: most text contains none of these, and is returned untouched.
static ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(RULES.iter().map(|r| r.pattern.as_str())).expect("static redaction patterns")
});

/// `text` with every credential masked; borrowed when there is none.
pub fn mask(text: &str) -> Cow<'_, str> {
    if !ANY.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out = Cow::Borrowed(text);
    for rule in RULES.iter() {
        if let Cow::Owned(masked) = rule.pattern.replace_all(&out, rule.replacement) {
            out = Cow::Owned(masked);
        }
    }
    out
}

/// Masks every string in a JSON value (object keys are left as they are).
pub fn mask_json(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(masked) = mask(text) {
                *text = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        Value::Object(map) => map.values_mut().for_each(mask_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked() {
        let cases = [
            (
                "Authorization: Bearer abcdefghijklmnop.qrs",
                "Authorization: Bearer [REDACTED]",
            ),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl used",
                "token [REDACTED:jwt] used",
            ),
            (
                "connecting to postgres://app:s3cr3t@db:5432/orders",
                "connecting to postgres://app:[REDACTED]@db:5432/orders",
            ),
            (
                "login failed password=hunter2 user=bob",
                "login failed password=[REDACTED] user=bob",
            ),
            (
                r#"{"db_password": "hunter2", "user": "bob"}"#,
                r#"{"db_password": "[REDACTED]", "user": "bob"}"#,
            ),
            (
                "AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG",
                "AWS_SECRET_ACCESS_KEY: [REDACTED]",
            ),
            (
                "key AKIAIOSFODNN7EXAMPLE in env",
                "key [REDACTED:aws-key] in env",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "-----BEGIN RSA PRIVATE KEY----- [REDACTED]",
            ),
            ("api_key: 12345abcdef", "api_key: [REDACTED]"),
        ];
        for (input, expected) in cases {
            assert_eq!(mask(input), expected, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched_and_borrowed() {
        for text in [
            "GET /cart 200 in 12ms",
            "tokens=1590 cost_usd=0.004",
            "OOMKilled: exit code 137, restarts 7",
            "https://grafana.example.com/d/abc?from=now-1h",
            "the secret of good on-call is sleep",
            "--docker-password=<token> and PASSWORD=$DB_PASSWORD",
            "custom-columns=SECRET:.spec.tls[*].secretName",
        ] {
            assert!(matches!(mask(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn json_strings_are_masked_everywhere() {
        let mut value = serde_json::json!({
            "entries": [{"message": "retrying with password=abc123"}],
            "password": 7
        });
        mask_json(&mut value);
        assert_eq!(
            value["entries"][0]["message"],
            "retrying with password=[REDACTED]"
        );
        assert_eq!(value["password"], 7);
    }
}
