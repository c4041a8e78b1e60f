//! Masks credentials in text that leaves the server: log lines, event messages, pod
//! descriptions, error messages and runbook excerpts pass through [`mask`] (or [`mask_json`] for
//! structured results), so a token that a service logged, or a password in a connection URL,
//! never reaches the client's model.
//!
//! What is masked:
//! - PEM private-key blocks (RSA, EC, OpenSSH, PGP…), whole or cut (a log may split one over
//!   several lines or entries: [`mask_json`] masks the lines of a key that was begun and not
//!   ended in the same string);
//! - JWTs, and tokens with a known prefix, by their real formats: GitHub (`ghp_`, `gho_`,
//!   `ghu_`, `ghs_`, `ghr_`, `github_pat_`), GitLab (`glpat-`…), Slack (`xoxb-`…, webhook URLs),
//!   Stripe (`sk_live_`, `rk_live_`, `sk_test_`, `whsec_`), OpenAI (`sk-`, `sk-proj-`…),
//!   Anthropic (`sk-ant-`), npm, PyPI, Hugging Face, Vault, Docker Hub, SendGrid, Google OAuth,
//!   AWS access key ids, Google API keys — each becomes `[REDACTED:<kind>]`;
//! - credentials after an auth scheme: `Bearer …`, `Basic …`, `Authorization:` (and
//!   `Proxy-Authorization:`) with any scheme or none, cookie values in `Cookie:`/`Set-Cookie:`;
//! - passwords in URLs (`scheme://user:password@host`, `user:password@tcp(host)`, Oracle
//!   `user/password@`), Azure SAS signatures (`sig=`);
//! - the value of every `key=value`, `key: value`, `"key": "value"`, `key => value` and
//!   `--key value` whose key names a secret (`password`, `db_password`, `dbPassword`,
//!   `client_secret`, `accessToken`, `aws_secret_access_key`, `AccountKey`,
//!   `SharedAccessKey`, `JSESSIONID`…), keeping the key: `password=[REDACTED]`.
//!
//! Not masked: placeholders (`<token>`, `$TOKEN`, `${TOKEN}`), paths (`.spec.tls[*].secretName`),
//! names of secrets (`secretName: tls-cert`), booleans, and ordinary ids (trace and span ids,
//! uids, UUIDs, git SHAs, image digests, pod names).
//!
//! Every pattern is a finite automaton (the `regex` crate), so masking is linear in the text;
//! a first pass with all patterns at once ([`RegexSet`]) returns clean text untouched, and
//! runs only the rules that matched otherwise.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, NoExpand, Regex, RegexSet};
use serde_json::Value;

/// What replaces a masked value.
pub const MASK: &str = "[REDACTED]";

enum Replace {
    /// A template with `$1`-style groups.
    Template(&'static str),
    /// The whole match becomes this text (`[REDACTED:<kind>]`).
    Literal(String),
    /// Decided per match: the match itself when it turns out not to be a credential.
    With(fn(&Captures) -> String),
}

struct Rule {
    pattern: Regex,
    replace: Replace,
}

/// `\b` in the patterns is an ASCII word boundary: a Unicode one makes the fast automata give
/// up on text with a non-ASCII character. (So no pattern may hold an escaped backslash before
/// a `b`.)
fn compile(pattern: &str) -> Regex {
    Regex::new(&pattern.replace(r"\b", r"(?-u:\b)")).expect("static redaction pattern")
}

/// The keys whose value is a secret, as they end (`db_password`, `clientSecret`,
/// `X-Api-Key`, `aws_secret_access_key`, `JSESSIONID`); `pwd` and `pass` only as whole words of
/// the key (`DB_PASS`, not `bypass` or `OLDPWD`).
const SECRET_KEY: &str = r"(?:[a-z0-9_.-]*?(?:password|passwd|passphrase|secret|token|credentials?|(?:api|access|secret|private|account|signing|encryption|master|hmac|subscription|license)[_-]?key|apikey|sess(?:ion)?[_-]?id)|(?:[a-z0-9]+[_.-])*(?:pwd|pass))";

/// A value after a secret key: double-quoted, quoted with escaped quotes (a JSON document
/// inside a log message), single-quoted, or bare. Never a placeholder (`<token>`, `$TOKEN`,
/// `${TOKEN}`), a path (`.spec…`) or an already masked value (`[REDACTED…]`). A quote that is
/// not closed runs to the end of the line.
const SECRET_VALUE: &str = r#"(?:\\"(?:[^"\\\r\n]|\\[^"\r\n])*(?:\\")?|"(?:[^"\\\r\n]|\\.)*"?|'[^'\r\n]*'?|[^\s"',;&}\]\\<$.{\[][^\s"',;&}\]\\]*)"#;

/// Tokens recognised by their prefix and format, with the kind their mask names.
const PREFIXED_TOKENS: &[(&str, &str)] = &[
    (
        "github-token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})",
    ),
    (
        "gitlab-token",
        r"\bgl(?:pat|dt|rt|ptt|cbt|imt|soat|oas|ft|agent|wt|ffct)-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+)*",
    ),
    (
        "slack-token",
        r"\b(?:xox(?:[abprs]|e(?:\.xox[bp])?)-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})",
    ),
    (
        "stripe-key",
        r"\b(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})",
    ),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    (
        "openai-key",
        r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})",
    ),
    ("npm-token", r"\bnpm_[A-Za-z0-9]{36}"),
    ("pypi-token", r"\bpypi-AgE[A-Za-z0-9_-]{50,}"),
    ("huggingface-token", r"\bhf_[A-Za-z0-9]{34,}"),
    ("vault-token", r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}"),
    ("docker-token", r"\bdckr_pat_[A-Za-z0-9_-]{20,}"),
    (
        "sendgrid-key",
        r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    ),
    (
        "google-token",
        r"\b(?:ya29\.[A-Za-z0-9_-]{20,}|GOCSPX-[A-Za-z0-9_-]{28})",
    ),
    ("aws-key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ("gcp-key", r"\bAIza[0-9A-Za-z_-]{35}"),
];

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replace: Replace| Rule {
        pattern: compile(pattern),
        replace,
    };
    let mut rules = vec![
        // A PEM private key: its BEGIN line, then what can be its body (headers, base64 lines,
        // also with escaped newlines as in a JSON string), then its END line if there is one.
        // No `.*?` up to the END: the body stops at the first character a key cannot hold,
        // which keeps a text with many BEGIN lines linear.
        rule(
            r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----(?:(?:\s|\\[rn])*(?:(?:Proc-Type|DEK-Info|Version|Comment):[^\r\n\\]*|[A-Za-z0-9+/=]+))*(?:(?:\s|\\[rn])*-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
            Replace::Template("-----BEGIN ${1}PRIVATE KEY----- [REDACTED]"),
        ),
        rule(
            r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            Replace::Literal("[REDACTED:jwt]".into()),
        ),
        rule(
            r"\b(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]{10,}",
            Replace::Template("${1}[REDACTED:slack-webhook]"),
        ),
    ];
    rules.extend(
        PREFIXED_TOKENS
            .iter()
            .map(|(kind, pattern)| rule(pattern, Replace::Literal(format!("[REDACTED:{kind}]")))),
    );
    rules.extend([
        rule(
            r"(?i)\b(bearer|basic)[ \t]+([A-Za-z0-9._~+/=-]{8,})",
            Replace::With(scheme_credential),
        ),
        rule(
            r#"(?i)\b((?:proxy-)?authorization\\?["']?[ \t]*[:=][ \t]*(?:\\?["'])?)([^\r\n]*)"#,
            Replace::With(authorization),
        ),
        rule(
            r#"(?i)\b((?:set-)?cookie\\?["']?[ \t]*:[ \t]*(?:\\?["'])?)([^\r\n"'\\]+)"#,
            Replace::With(cookie),
        ),
        // scheme://user:password@host (the user may be empty: redis://:password@host); the
        // password may hold an `@`, so up to the last one before the path.
        rule(
            r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/]+@",
            Replace::Template("${1}[REDACTED]@"),
        ),
        // Go's MySQL DSN, user:password@tcp(host:3306)/db
        rule(
            r"\b([A-Za-z0-9_.-]+:)[^\s@/]+@(tcp|unix)\(",
            Replace::Template("${1}[REDACTED]@${2}("),
        ),
        rule(
            r"(?i)\b(jdbc:oracle:[a-z]+:[^\s/@:]+/)[^\s@]+@",
            Replace::Template("${1}[REDACTED]@"),
        ),
        // An Azure SAS token's signature in a URL or connection string.
        rule(
            r"(?i)([?&;]sig=)[A-Za-z0-9%+/=_-]{16,}",
            Replace::Template("${1}[REDACTED]"),
        ),
        // A command line's --password VALUE (with `=` it is a key=value below).
        rule(
            &format!(
                r#"(?i)(--(?:[a-z0-9]+-)*(?:password|passwd|passphrase|token|secret|api-key|apikey|access-key|secret-key|private-key|auth-token|client-secret))([ \t]+)({SECRET_VALUE})"#
            ),
            Replace::With(key_value),
        ),
        // key=value, key: value, "key": "value", key => value where the key names a secret.
        rule(
            &format!(
                r#"(?i)\b({SECRET_KEY})(\\?["']?[ \t]*(?:=>|:=|[=:])[ \t]*)({SECRET_VALUE})"#
            ),
            Replace::With(key_value),
        ),
    ]);
    rules
});

/// The first pass: most text contains none of these, and is returned untouched.
static ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(RULES.iter().map(|r| r.pattern.as_str())).expect("static redaction patterns")
});

/// Index of the PEM rule in [`RULES`].
const PEM_RULE: usize = 0;

/// `text` with every credential masked; borrowed when there is none.
pub fn mask(text: &str) -> Cow<'_, str> {
    mask_reporting_keys(text).0
}

/// [`mask`], and whether `text` began a private key that it did not end.
fn mask_reporting_keys(text: &str) -> (Cow<'_, str>, bool) {
    let matched = ANY.matches(text);
    if !matched.matched_any() {
        return (Cow::Borrowed(text), false);
    }
    let open_key = matched.matched(PEM_RULE) && begins_open_key(text);
    let mut out = Cow::Borrowed(text);
    for index in matched.iter() {
        let rule = &RULES[index];
        let replaced = match &rule.replace {
            Replace::Template(template) => rule.pattern.replace_all(&out, *template),
            Replace::Literal(literal) => rule.pattern.replace_all(&out, NoExpand(literal)),
            Replace::With(decide) => rule.pattern.replace_all(&out, |c: &Captures| decide(c)),
        };
        if let Cow::Owned(masked) = replaced {
            out = Cow::Owned(masked);
        }
    }
    // A rule that matched and found nothing to mask (a placeholder, a plain word).
    if out == text {
        out = Cow::Borrowed(text);
    }
    (out, open_key)
}

/// Masks every string in a JSON value (object keys are left as they are). When a string
/// begins a private key and does not end it, the lines of the key that other strings of the
/// value hold (a log entry's continuation lines, or one entry per line) are masked too.
pub fn mask_json(value: &mut Value) {
    if mask_strings(value) {
        mask_key_lines_everywhere(value);
    }
}

/// Masks every string; true when one began a private key without ending it.
fn mask_strings(value: &mut Value) -> bool {
    match value {
        Value::String(text) => {
            let (masked, open_key) = mask_reporting_keys(text);
            if let Cow::Owned(masked) = masked {
                *text = masked;
            }
            open_key
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |open, v| mask_strings(v) | open),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |open, v| mask_strings(v) | open),
        _ => false,
    }
}

fn mask_key_lines_everywhere(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Some(masked) = mask_key_lines(text) {
                *text = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_key_lines_everywhere),
        Value::Object(map) => map.values_mut().for_each(mask_key_lines_everywhere),
        _ => {}
    }
}

/// True when the last private-key BEGIN line in `text` has no END after it.
fn begins_open_key(text: &str) -> bool {
    text.rfind("-----BEGIN ").is_some_and(|at| {
        let rest = &text[at..];
        let line = rest.split(['\n', '\r']).next().unwrap_or(rest);
        line.contains("PRIVATE KEY") && !rest.contains("-----END ")
    })
}

/// `text` with each line that can be part of a PEM key body (base64 of a key, an encryption
/// header) masked; `None` when there is none.
fn mask_key_lines(text: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if is_key_line(body.trim()) {
            changed = true;
            let indent = &body[..body.len() - body.trim_start().len()];
            out.push_str(indent);
            out.push_str(MASK);
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    changed.then_some(out)
}

/// A line of a PEM body: base64 of at least 16 characters, or shorter with padding (the last
/// line), mixing upper and lower case with a digit or `+`/`/` (so not a hex id or a word), or
/// an encryption header.
fn is_key_line(line: &str) -> bool {
    if line.starts_with("Proc-Type:") || line.starts_with("DEK-Info:") {
        return true;
    }
    let data = line.strip_prefix('=').unwrap_or(line).trim_end_matches('=');
    let padded = data.len() < line.len();
    if data.is_empty()
        || !data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return false;
    }
    if padded {
        return data.len() >= 2;
    }
    let has = |f: fn(&u8) -> bool| data.as_bytes().iter().any(f);
    data.len() >= 16
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && (has(u8::is_ascii_digit) || data.contains(['+', '/']))
}

/// An ordinary word (`authentication`, `Settings`, `HTTP`, `auth-based`), not a credential.
fn plain_word(text: &str) -> bool {
    !text.is_empty()
        && text.split('-').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && (chars.clone().all(|c| c.is_ascii_lowercase())
                    || part.chars().all(|c| c.is_ascii_uppercase()))
        })
}

/// `Bearer <token>` / `Basic <credentials>`. Basic credentials are base64, never a plain word
/// ("basic settings"); a bearer token may be one, except the words that follow "bearer" in
/// prose.
fn scheme_credential(c: &Captures) -> String {
    let (scheme, credential) = (&c[1], &c[2]);
    let prose = matches!(
        credential.to_ascii_lowercase().as_str(),
        "authentication" | "authorization" | "authorisation" | "credentials" | "tokens"
    );
    if prose || (scheme.eq_ignore_ascii_case("basic") && plain_word(credential)) {
        return c[0].to_string();
    }
    format!("{scheme} {MASK}")
}

/// A credential on its own: long enough, of token characters, not a word.
fn looks_like_credential(word: &str) -> bool {
    word.len() >= 8
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~+/=:-".contains(&b))
        && !plain_word(word)
}

/// Schemes whose credential is a list of parameters (masked whole).
const PARAMETER_SCHEMES: &[&str] = &[
    "digest",
    "aws4-hmac-sha256",
    "hawk",
    "signature",
    "oauth",
    "hoba",
    "mutual",
    "vapid",
    "scram-sha-1",
    "scram-sha-256",
];

/// Schemes followed by one credential.
const TOKEN_SCHEMES: &[&str] = &[
    "token",
    "apikey",
    "api-key",
    "key",
    "ssws",
    "bot",
    "jwt",
    "splunk",
    "genietoken",
    "sentry",
    "dsn",
    "negotiate",
    "ntlm",
    "client-id",
    "private-token",
    "mac",
    "hmac",
    "bearer",
    "basic",
];

/// `Authorization: <scheme> <credential>` (or a credential without a scheme): the
/// credential is masked, the scheme kept; what follows it is kept unless the scheme takes
/// parameters (then the rest of the value goes: to the closing quote when the value is quoted,
/// else to the end of the line).
fn authorization(c: &Captures) -> String {
    let (head, rest) = (&c[1], &c[2]);
    let unchanged = || c[0].to_string();
    let quote = ["\\\"", "\"", "'"].into_iter().find(|q| head.ends_with(q));
    let (value, tail) = match quote.and_then(|q| rest.find(q)) {
        Some(end) => rest.split_at(end),
        None => (rest, ""),
    };
    let word_end = |text: &str| {
        text.find(|ch: char| ch.is_whitespace() || ch == ',' || ch == ';')
            .unwrap_or(text.len())
    };
    let first = &value[..word_end(value)];
    if first.is_empty() || first.starts_with("[REDACTED") {
        return unchanged();
    }
    let scheme = first.to_ascii_lowercase();
    let after_first = &value[first.len()..];
    let credential = after_first.trim_start_matches([' ', '\t']);
    let has_credential = !credential.is_empty()
        && !credential.starts_with("[REDACTED")
        && credential.len() < after_first.len();
    if PARAMETER_SCHEMES.contains(&scheme.as_str()) {
        return if has_credential {
            format!("{head}{first} {MASK}{tail}")
        } else {
            unchanged()
        };
    }
    if looks_like_credential(first) && !TOKEN_SCHEMES.contains(&scheme.as_str()) {
        return format!("{head}{MASK}{after_first}{tail}");
    }
    if !has_credential {
        return unchanged();
    }
    let second = &credential[..word_end(credential)];
    let known = TOKEN_SCHEMES.contains(&scheme.as_str());
    if looks_like_credential(second) || (known && second.len() >= 4) {
        return format!("{head}{first} {MASK}{}{tail}", &credential[second.len()..]);
    }
    unchanged()
}

/// Cookie attributes, not cookies.
const COOKIE_ATTRIBUTES: &[&str] = &[
    "path",
    "domain",
    "expires",
    "max-age",
    "samesite",
    "secure",
    "httponly",
    "priority",
    "partitioned",
    "version",
    "comment",
];

/// `Cookie: a=1; b=2` / `Set-Cookie: id=…; Path=/`: every cookie's value is masked, names and
/// attributes kept; what follows the header on the line (after a space) is kept.
fn cookie(c: &Captures) -> String {
    let (head, rest) = (&c[1], &c[2]);
    let mut out = String::from(head);
    for (i, part) in rest.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        match part.split_once('=') {
            Some((name, value))
                if !COOKIE_ATTRIBUTES.contains(&name.trim().to_ascii_lowercase().as_str())
                    && !value.trim().is_empty()
                    && !value.starts_with("[REDACTED") =>
            {
                let end = value.find(char::is_whitespace).unwrap_or(value.len());
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
                out.push_str(&value[end..]);
            }
            _ => out.push_str(part),
        }
    }
    out
}

/// `key<separator>value` with a secret key: the value masked (its quotes kept) unless it is
/// no secret (empty, a boolean, a placeholder, already masked, the working directory, the next
/// flag of a command line).
fn key_value(c: &Captures) -> String {
    let (key, separator, value) = (&c[1], &c[2], &c[3]);
    if separator.trim().is_empty() && value.starts_with('-') {
        return c[0].to_string();
    }
    let (open, inner, close) = if let Some(v) = value.strip_prefix("\\\"") {
        let inner = v.strip_suffix("\\\"");
        (
            "\\\"",
            inner.unwrap_or(v),
            if inner.is_some() { "\\\"" } else { "" },
        )
    } else if let Some(v) = value.strip_prefix(['"', '\'']) {
        let quote = &value[..1];
        let inner = v.strip_suffix(quote);
        (
            quote,
            inner.unwrap_or(v),
            if inner.is_some() { quote } else { "" },
        )
    } else {
        ("", value, "")
    };
    let lower = inner.trim().to_ascii_lowercase();
    let no_secret = lower.is_empty()
        || lower.starts_with("[redacted")
        || lower.starts_with(['<', '$', '{', '.'])
        || lower.bytes().all(|b| b == b'*')
        || matches!(
            lower.as_str(),
            "true" | "false" | "null" | "none" | "nil" | "undefined"
        )
        || (key.eq_ignore_ascii_case("pwd") && lower.starts_with('/'));
    if no_secret {
        return c[0].to_string();
    }
    format!("{key}{separator}{open}{MASK}{close}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        mask(text).into_owned()
    }

    /// A random-looking string of `len` characters from `alphabet` (deterministic).
    fn random(seed: u64, len: usize, alphabet: &str) -> String {
        let alphabet: Vec<char> = alphabet.chars().collect();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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
    fn tokens_with_a_known_prefix_name_their_kind() {
        let gh = random(1, 36, ALNUM);
        let cases = [
            (format!("ghp_{gh}"), "github-token"),
            (format!("gho_{gh}"), "github-token"),
            (format!("ghu_{gh}"), "github-token"),
            (format!("ghs_{gh}"), "github-token"),
            (format!("ghr_{gh}"), "github-token"),
            (
                format!(
                    "github_pat_{}_{}",
                    random(2, 22, ALNUM),
                    random(3, 59, ALNUM)
                ),
                "github-token",
            ),
            (format!("glpat-{}", random(4, 20, ALNUM)), "gitlab-token"),
            (
                format!("glpat-{}.01.{}", random(5, 27, ALNUM), random(6, 9, ALNUM)),
                "gitlab-token",
            ),
            (
                format!("xoxb-1234567890-1234567890123-{}", random(7, 24, ALNUM)),
                "slack-token",
            ),
            (
                format!("xoxp-1234567890-{}", random(8, 30, ALNUM)),
                "slack-token",
            ),
            (
                format!("xapp-1-A0123456789-{}", random(9, 30, ALNUM)),
                "slack-token",
            ),
            (format!("sk_live_{}", random(10, 24, ALNUM)), "stripe-key"),
            (format!("rk_live_{}", random(11, 24, ALNUM)), "stripe-key"),
            (format!("sk_test_{}", random(12, 24, ALNUM)), "stripe-key"),
            (format!("whsec_{}", random(13, 32, ALNUM)), "stripe-key"),
            (format!("sk-{}", random(14, 48, ALNUM)), "openai-key"),
            (
                format!("sk-proj-{}", random(15, 120, &format!("{ALNUM}_-"))),
                "openai-key",
            ),
            (
                format!("sk-ant-api03-{}", random(16, 93, &format!("{ALNUM}_-"))),
                "anthropic-key",
            ),
            (format!("npm_{}", random(17, 36, ALNUM)), "npm-token"),
            (
                format!("pypi-AgEIcHlwaS5vcmc{}", random(18, 60, ALNUM)),
                "pypi-token",
            ),
            (format!("hf_{}", random(19, 34, ALNUM)), "huggingface-token"),
            (format!("hvs.{}", random(20, 24, ALNUM)), "vault-token"),
            (format!("dckr_pat_{}", random(21, 27, ALNUM)), "docker-token"),
            (
                format!("SG.{}.{}", random(22, 22, ALNUM), random(23, 43, ALNUM)),
                "sendgrid-key",
            ),
            (format!("ya29.{}", random(24, 60, ALNUM)), "google-token"),
            ("AKIAIOSFODNN7EXAMPLE".to_string(), "aws-key"),
            ("ASIAY34FZKBOKMUTVV7A".to_string(), "aws-key"),
            (format!("AIza{}", random(25, 35, ALNUM)), "gcp-key"),
            (
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_string(),
                "jwt",
            ),
        ];
        for (token, kind) in cases {
            for line in [
                format!("using {token} for the call"),
                format!("token={token}"),
                format!("\"{token}\""),
            ] {
                let out = masked(&line);
                assert!(
                    !out.contains(&token),
                    "{kind} not masked in {line:?}: {out:?}"
                );
                assert!(
                    out.contains(&format!("[REDACTED:{kind}]")),
                    "{kind} in {line:?}: {out:?}"
                );
            }
        }
        // Real formats only: too short, or without the prefix's shape, is not a token.
        for text in [
            "ghp_short",
            "sk-payments-worker-7d9f8b6c4d-x2x9q",
            "sk_live_abc",
            "npm_config_cache=/tmp/npm",
            "xoxo-love",
            "glpat-short",
            "AKIA1234",
        ] {
            assert!(matches!(mask(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn secret_keys_keep_their_name() {
        let cases = [
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key = [REDACTED]",
            ),
            (
                "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key=wJalrXUtnFEMI/K7MDENG+bPxRfiCY\n",
                "[default]\naws_access_key_id = [REDACTED:aws-key]\naws_secret_access_key=[REDACTED]\n",
            ),
            (
                r#"{"SecretAccessKey":"wJalrXUtnFEMI/K7MDENG","SessionToken":"FwoGZXIvYXdzEJr"}"#,
                r#"{"SecretAccessKey":"[REDACTED]","SessionToken":"[REDACTED]"}"#,
            ),
            (
                "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey=Zm9vYmFyYmF6cXV4+/abc12==;EndpointSuffix=core.windows.net",
                "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey=[REDACTED];EndpointSuffix=core.windows.net",
            ),
            (
                "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=q8Xz0b1c2d3e4F5g6H7i8J9k0=",
                "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=[REDACTED]",
            ),
            (
                "https://acme.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&sp=r&se=2026-01-01&sig=Q7%2Bx9aZk3LmN0pQrStUvWx%3D",
                "https://acme.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&sp=r&se=2026-01-01&sig=[REDACTED]",
            ),
            ("dbPassword=Tr0ub4dor&3", "dbPassword=[REDACTED]&3"),
            (
                "spring.datasource.password: Sup3rS3cret!",
                "spring.datasource.password: [REDACTED]",
            ),
            (
                r#"client_secret="a b c d""#,
                r#"client_secret="[REDACTED]""#,
            ),
            ("'password' => 'hunter2 two'", "'password' => '[REDACTED]'"),
            (
                r#"payload={\"user\":\"svc\",\"password\":\"p@ss w0rd\"}"#,
                r#"payload={\"user\":\"svc\",\"password\":\"[REDACTED]\"}"#,
            ),
            ("accessToken: ya8Xk2", "accessToken: [REDACTED]"),
            ("X-Api-Key: 4f9a8b7c6d5e", "X-Api-Key: [REDACTED]"),
            ("DB_PASS=letmein", "DB_PASS=[REDACTED]"),
            ("JSESSIONID=0A1B2C3D4E5F", "JSESSIONID=[REDACTED]"),
            (
                "pg_dump --password hunter2 --host db",
                "pg_dump --password [REDACTED] --host db",
            ),
            (
                "mysqldump --db-password='x y' -h db",
                "mysqldump --db-password='[REDACTED]' -h db",
            ),
            ("password := \"abc\"", "password := \"[REDACTED]\""),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "{input}");
        }
    }

    #[test]
    fn authorization_headers_of_any_scheme() {
        let cases = [
            (
                "Authorization: Token 9944b09199c62bcf9418ad846dd0e4bb",
                "Authorization: Token [REDACTED]",
            ),
            (
                "authorization: token abcdefgh",
                "authorization: token [REDACTED]",
            ),
            (
                "Authorization: ApiKey c2VjcmV0LWtleQ== from 10.0.0.1",
                "Authorization: ApiKey [REDACTED] from 10.0.0.1",
            ),
            (
                "Authorization: SSWS 00QCjAl4MlV-WPXM-ABCDEFGHIJ",
                "Authorization: SSWS [REDACTED]",
            ),
            (
                "Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==",
                "Proxy-Authorization: Basic [REDACTED]",
            ),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: Basic [REDACTED]",
            ),
            (
                "Authorization: 7d1f0a9e2c3b4d5e6f708192a3b4c5d6",
                "Authorization: [REDACTED]",
            ),
            (
                r#"{"Authorization": "Custom Zx81Kq02Lm93Nb74"}"#,
                r#"{"Authorization": "Custom [REDACTED]"}"#,
            ),
            (
                "headers: authorization=Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
                "headers: authorization=Bearer [REDACTED:jwt]",
            ),
            (
                "Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
                "Cookie: session=[REDACTED]; theme=[REDACTED]",
            ),
            (
                "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
                "Authorization: AWS4-HMAC-SHA256 [REDACTED]",
            ),
            (
                "Set-Cookie: JSESSIONID=0A1B2C3D4E5F; Path=/; HttpOnly",
                "Set-Cookie: JSESSIONID=[REDACTED]; Path=/; HttpOnly",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "{input}");
        }
        // A Digest header is masked with all its parameters.
        let digest = masked(
            r#"Authorization: Digest username="bob", realm="api", response="6629fae49393a05397450978507c4ef1""#,
        );
        assert!(!digest.contains("6629fae4"), "{digest}");
        assert!(
            digest.starts_with("Authorization: Digest [REDACTED]"),
            "{digest}"
        );
    }

    #[test]
    fn passwords_in_urls() {
        let cases = [
            (
                "redis://:Xq9pL2mN@redis-0:6379/0",
                "redis://:[REDACTED]@redis-0:6379/0",
            ),
            (
                "amqp://guest:p@ss@rabbit:5672/",
                "amqp://guest:[REDACTED]@rabbit:5672/",
            ),
            (
                "mongodb+srv://app:Zk8%40q@cluster0.mongodb.net/db",
                "mongodb+srv://app:[REDACTED]@cluster0.mongodb.net/db",
            ),
            (
                "dsn app:Hk2#x9@tcp(mysql:3306)/orders",
                "dsn app:[REDACTED]@tcp(mysql:3306)/orders",
            ),
            (
                "jdbc:oracle:thin:scott/tiger99@db:1521/ORCL",
                "jdbc:oracle:thin:scott/[REDACTED]@db:1521/ORCL",
            ),
            (
                "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/[REDACTED:slack-webhook]",
            ),
            (
                "jdbc:postgresql://db:5432/app?user=app&password=s3cret&ssl=true",
                "jdbc:postgresql://db:5432/app?user=app&password=[REDACTED]&ssl=true",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(masked(input), expected, "{input}");
        }
    }

    #[test]
    fn private_keys_whole_cut_or_escaped() {
        let body = [
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
            "MkX8y2Z0pQrS+/tUvWxYz1234567890abcdefGHIJKLmnopQRSTuvwxYZ01234=",
        ];
        let key = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----",
            body[0], body[1]
        );
        let texts = [
            format!("loaded key {key} from vault"),
            format!("{{\"private_key\": \"{}\"}}", key.replace('\n', "\\n")),
            // cut: no END line
            format!("-----BEGIN EC PRIVATE KEY-----\n{}\n{}", body[0], body[1]),
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n\t{}\n\t{}\n-----END OPENSSH PRIVATE KEY-----",
                body[0], body[1]
            ),
            format!(
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n{}\n-----END RSA PRIVATE KEY-----",
                body[0]
            ),
            format!(
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n{}\n=nOpE\n-----END PGP PRIVATE KEY BLOCK-----",
                body[0]
            ),
        ];
        for text in texts {
            let out = masked(&text);
            for line in body {
                assert!(!out.contains(&line[..20]), "{out}");
            }
            assert!(out.contains("[REDACTED]"), "{out}");
        }
        assert_eq!(
            masked(&format!("loaded key {key} from vault")),
            "loaded key -----BEGIN PRIVATE KEY----- [REDACTED] from vault"
        );
        assert!(
            !masked("-----BEGIN ENCRYPTED PRIVATE KEY-----\nProc-Type: 4\nDEK-Info: x")
                .contains("DEK-Info")
        );
    }

    #[test]
    fn a_key_split_over_json_strings_is_masked_in_every_string() {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
        let last = "Zx9+abcDEF==";
        // A log entry: the BEGIN line in its message, the body in its continuation lines
        // (which serialise before the message), and entries of one line each.
        let mut value = serde_json::json!({
            "entries": [
                {"detail": [body, last, "-----END RSA PRIVATE KEY-----"],
                 "logger": "c.a.p.KeyLoader",
                 "message": "loaded -----BEGIN RSA PRIVATE KEY-----",
                 "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
                {"message": body},
                {"message": "PaymentGatewayApplication started"},
            ]
        });
        mask_json(&mut value);
        let text = value.to_string();
        assert!(!text.contains(&body[..20]), "{text}");
        assert!(!text.contains("Zx9+abc"), "{text}");
        assert!(text.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{text}");
        assert!(text.contains("c.a.p.KeyLoader"), "{text}");
        assert!(text.contains("PaymentGatewayApplication started"), "{text}");
        assert!(text.contains("-----END RSA PRIVATE KEY-----"), "{text}");

        // Without a BEGIN, base64 strings are ordinary data.
        let mut value = serde_json::json!({"config": body, "list": [body]});
        let before = value.clone();
        mask_json(&mut value);
        assert_eq!(value, before);
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
            // ids
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
            "uid 758e63b9-cc86-4d7e-a926-facb6bc54acc request 123e4567-e89b-12d3-a456-426614174000",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b built",
            "image registry.acme.internal/payments/payment-gateway@sha256:3021fbd1052d04865b5bfc86641acb0517495b4660be15c254b5ac7f17307814",
            "pod payment-gateway-nzd7w8pf2m-dclvf restarted; replicaset payment-gateway-nzd7w8pf2m",
            "containerd://763885a75e6b2500dc1d736548398e9d7637b6ec35297acd959598509f2ede34",
            // base64-looking values whose key names no secret
            "config.checksum=dGhpcyBpcyBub3QgYSBzZWNyZXQsIGp1c3QgZGF0YQ== applied",
            "ca.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=",
            "-----BEGIN CERTIFICATE-----\nMIIC+zCCAeOgAwIBAgIJAOm3kF0dGhlMA0GCSqGSIb3DQEBCwUAMBQxEjAQBgNV\n-----END CERTIFICATE-----",
            // words
            "token bucket refilled: 100 tokens",
            "rate limiter uses a token bucket per client",
            "password reset succeeded for user 42",
            "password reset requested; sending email",
            "secretName: tls-cert",
            "volumes:\n- name: certs\n  secret:\n    secretName: tls-cert",
            "env: DB_PASSWORD=<secret db-credentials key password>",
            "falling back to basic authentication",
            "basic settings loaded",
            "Bearer authentication failed for client 7",
            "authorization: denied by policy",
            "Authorization header missing",
            "cookie: none",
            "bypass=true compass=north",
            "PWD=/app OLDPWD=/home/app",
            "password: null, token: false",
            "jwt validation failed: expired",
            "sk-eu-west-1-prod-cluster",
            "the password is required and the token is optional",
            "usage: pg_dump --password --verbose",
        ] {
            assert!(
                matches!(mask(text), Cow::Borrowed(_)),
                "{text} -> {}",
                mask(text)
            );
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

    /// Not a benchmark: large and hostile inputs finish (every rule is linear; a rule that
    /// scanned to the end of the text for each match would not, on these).
    #[test]
    fn large_and_hostile_inputs_stay_linear() {
        let line = "-843.120 INFO c.a.p.PaymentController 4bf92f3577b34da6a3ce929d0e0e4736 POST /v1/payments/authorize 200 in 41ms merchant=m_8812 amount=12.50 currency=EUR pod=payment-gateway-nzd7w8pf2m-dclvf image=sha256:3021fbd1052d04865b5bfc86641acb0517495b4660be15c254b5ac7f17307814\n";
        let ordinary = line.repeat((1 << 20) / line.len() + 1);
        assert!(matches!(mask(&ordinary), Cow::Borrowed(_)));
        let with_secrets = ordinary.replace("merchant=m_8812", "password=hunter2");
        let out = mask(&with_secrets);
        assert!(!out.contains("hunter2"));
        // Hostile (256 KiB each): what makes a naive pattern scan ahead to the end of the text
        // for each match — quadratic, minutes instead of milliseconds.
        for unit in [
            "-----BEGIN RSA PRIVATE KEY-----",
            "password=\"",
            "\\\"password\\\":\\\"",
            "Authorization: ",
            "Cookie: a=",
            "eyJhbGciOi.eyJzdWIi.",
            "postgres://u:",
            "ghp_",
            "Bearer ",
            "--password ",
            "a:b@",
        ] {
            let text = unit.repeat((1 << 18) / unit.len());
            let mut value = Value::Array(vec![Value::String(text)]);
            mask_json(&mut value);
        }
    }
}
