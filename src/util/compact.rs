//! Compact JSON: numbers rounded to what they mean and timestamps to milliseconds, so a
//! structured result carries no `0.29499998688697815` or nanosecond noise the model pays for.

use serde_json::{Number, Value};

/// Significant digits a fractional number keeps.
const SIGNIFICANT: i32 = 4;

/// Rounds every non-integer number to 4 significant digits and cuts RFC 3339 timestamps to
/// millisecond precision, everywhere in `value`.
pub fn compact(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(rounded) = round_number(n) {
                *n = rounded;
            }
        }
        Value::String(s) => {
            if let Some(cut) = millisecond_timestamp(s) {
                *s = cut;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(compact),
        Value::Object(map) => map.values_mut().for_each(compact),
        _ => {}
    }
}

fn round_number(n: &Number) -> Option<Number> {
    if n.is_i64() || n.is_u64() {
        return None;
    }
    let x = n.as_f64()?;
    if x == 0.0 || !x.is_finite() {
        return None;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (SIGNIFICANT - 1 - magnitude).max(0);
    let scale = 10f64.powi(decimals);
    let rounded = (x * scale).round() / scale;
    (rounded != x).then(|| Number::from_f64(rounded)).flatten()
}

/// `2026-12-03T12:18:31.440158947Z` → `2026-12-03T12:18:31.440Z` (any offset kept).
fn millisecond_timestamp(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    // YYYY-MM-DDTHH:MM:SS then a fraction.
    if bytes.len() < 24 || bytes.get(10) != Some(&b'T') || bytes.get(19) != Some(&b'.') {
        return None;
    }
    if !bytes[..19].iter().enumerate().all(|(i, b)| match i {
        4 | 7 => *b == b'-',
        10 => *b == b'T',
        13 | 16 => *b == b':',
        _ => b.is_ascii_digit(),
    }) {
        return None;
    }
    let digits = bytes[20..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits <= 3 {
        return None;
    }
    let zone = &s[20 + digits..];
    if !(zone == "Z" || zone.starts_with('+') || zone.starts_with('-')) {
        return None;
    }
    Some(format!("{}{}", &s[..23], zone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_keep_four_significant_digits_and_integers_stay() {
        let mut v = json!({"relevance": 0.29499998688697815, "score": 5.001800060272217,
            "rate": 0.0008, "p99": 30050.0, "count": 410, "big": 123456.789, "zero": 0.0});
        compact(&mut v);
        assert_eq!(
            v,
            json!({"relevance": 0.295, "score": 5.002, "rate": 0.0008, "p99": 30050.0,
                   "count": 410, "big": 123457.0, "zero": 0.0})
        );
    }

    #[test]
    fn timestamps_are_cut_to_milliseconds_and_other_strings_stay() {
        let mut v = json!([
            "2026-12-03T12:18:31.440158947Z",
            "2026-12-03T12:18:31.4Z",
            "2026-12-03T12:18:31.440158947+01:00",
            "version 1.2.3456789",
            "2026-12-03"
        ]);
        compact(&mut v);
        assert_eq!(
            v,
            json!([
                "2026-12-03T12:18:31.440Z",
                "2026-12-03T12:18:31.4Z",
                "2026-12-03T12:18:31.440+01:00",
                "version 1.2.3456789",
                "2026-12-03"
            ])
        );
    }
}
