//! Durations and ages as people write them ("15m", "2h30m", "3d") and as `kubectl` shows them.

use jiff::{SignedDuration, Timestamp};

use super::quote::short;

/// Parses a compact duration such as `45s`, `15m`, `2h30m`, `3d` or `1d2h`. Units must appear
/// in descending order (d, h, m, s) and each at most once.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut last_unit_rank = 0;
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let (rank, seconds) = match ch {
            'd' => (1, 86_400),
            'h' => (2, 3_600),
            'm' => (3, 60),
            's' => (4, 1),
            _ => {
                return Err(format!(
                    "unexpected character {ch:?} in duration {}",
                    short(text)
                ));
            }
        };
        if digits.is_empty() || rank <= last_unit_rank {
            return Err(format!("malformed duration {}", short(text)));
        }
        let value: i64 = digits
            .parse()
            .map_err(|_| format!("number too large in duration {}", short(text)))?;
        total = value
            .checked_mul(seconds)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {} is too large", short(text)))?;
        digits.clear();
        last_unit_rank = rank;
    }
    if !digits.is_empty() {
        return Err(format!(
            "duration {} needs a unit after {} (s, m, h or d)",
            short(text),
            short(&digits)
        ));
    }
    Ok(SignedDuration::from_secs(total))
}

/// Resolves a fixture's relative time (`-14m`, `-2h30m`, `-3d`) against `now`.
/// Returns `None` when the text is not of that form.
pub fn resolve_relative(text: &str, now: Timestamp) -> Option<Timestamp> {
    let rest = text.strip_prefix('-')?;
    if rest.is_empty() || !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let duration = parse_duration(rest).ok()?;
    now.checked_sub(duration).ok()
}

/// A `since` argument: a duration back from now (`15m`, `2h`) or an RFC 3339 timestamp.
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    let duration = parse_duration(text).map_err(|e| {
        format!("invalid since={}: {e}; use a duration such as 15m, 2h, 1d or an RFC 3339 time such as 2026-01-02T15:04:05Z", short(text))
    })?;
    now.checked_sub(duration)
        .map_err(|_| format!("since={} reaches too far back", short(text)))
}

/// `kubectl`-style age: `45s`, `14m`, `3h12m`, `6d`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(since.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3_600 => format!("{}m", s / 60),
        s if s < 10 * 3_600 => {
            let m = (s % 3_600) / 60;
            if m == 0 {
                format!("{}h", s / 3_600)
            } else {
                format!("{}h{}m", s / 3_600, m)
            }
        }
        s if s < 2 * 86_400 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// RFC 3339 with second precision, UTC.
pub fn rfc3339(ts: Timestamp) -> String {
    ts.round(jiff::Unit::Second)
        .unwrap_or(ts)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("2h30m").unwrap().as_secs(), 9_000);
        assert_eq!(parse_duration("1d2h3m4s").unwrap().as_secs(), 93_784);
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("3m2h").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn relative_times() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            resolve_relative("-14m", now).unwrap().to_string(),
            "2026-01-01T11:46:00Z"
        );
        assert!(resolve_relative("14m", now).is_none());
        assert!(resolve_relative("-", now).is_none());
        assert!(resolve_relative("-abc", now).is_none());
    }

    #[test]
    fn ages() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let at = |s: i64| now.checked_sub(SignedDuration::from_secs(s)).unwrap();
        assert_eq!(age(at(45), now), "45s");
        assert_eq!(age(at(14 * 60), now), "14m");
        assert_eq!(age(at(3 * 3600 + 12 * 60), now), "3h12m");
        assert_eq!(age(at(6 * 86_400), now), "6d");
    }

    #[test]
    fn since_parses_both_forms() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("1h", now).unwrap().to_string(),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            parse_since("2026-01-01T10:00:00Z", now)
                .unwrap()
                .to_string(),
            "2026-01-01T10:00:00Z"
        );
        assert!(parse_since("yesterday", now).unwrap_err().contains("15m"));
    }
}
