//! "Did you mean": candidate names ordered by similarity, for error messages that list the
//! closest valid names first. Bounded whatever the input: a wanted name longer than any
//! candidate could match is scored on its prefix, and of a very long list only the candidates
//! a cheap comparison finds plausible are scored (the similarity is quadratic in the lengths).

use std::cmp::Reverse;

/// Most candidates scored by similarity; a longer list is first cut down cheaply.
const MAX_SCORED: usize = 256;

/// Names from `candidates` ordered by similarity to `wanted`, as a comma-separated list
/// (closest first, at most 8, with a count of the rest).
pub fn suggest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = candidates.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    let total = names.len();
    if total == 0 {
        return "(none)".into();
    }
    // Nothing longer than twice the longest candidate (and a little) can score better than
    // its prefix does: score that prefix, so a 1 MB name costs what a 600-byte one does.
    let longest = names.iter().map(|c| c.len()).max().unwrap_or(0);
    let wanted = prefix(wanted, 2 * longest + 16);
    if names.len() > MAX_SCORED {
        // Cheap prefilter: the longest shared prefix, then containment, then the closest
        // length; only the best of those are scored.
        let key = |c: &&str| {
            let shared = c
                .bytes()
                .zip(wanted.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let contains = c.contains(wanted) || wanted.contains(*c);
            (
                Reverse(shared),
                Reverse(contains),
                c.len().abs_diff(wanted.len()),
            )
        };
        names.select_nth_unstable_by_key(MAX_SCORED - 1, key);
        names.truncate(MAX_SCORED);
    }
    let mut scored: Vec<(f64, &str)> = names
        .into_iter()
        .map(|c| {
            let mut score = strsim::jaro_winkler(wanted, c);
            if c.contains(wanted) || wanted.contains(c) {
                score += 0.5;
            }
            (score, c)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let shown: Vec<&str> = scored.iter().take(8).map(|(_, c)| *c).collect();
    let mut text = shown.join(", ");
    if total > shown.len() {
        text.push_str(&format!(" (and {} more)", total - shown.len()));
    }
    text
}

/// The first `max_bytes` bytes of `s`, cut back to a character boundary.
fn prefix(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut cut = max_bytes;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn suggestions_put_closest_first() {
        let list = suggest("paymnts", ["edge", "payments", "identity"]);
        assert!(list.starts_with("payments"), "{list}");
        assert_eq!(suggest("x", []), "(none)");
        assert_eq!(suggest("a", ["b", "b", "a"]), "a, b");
    }

    #[test]
    fn a_huge_name_or_list_is_answered_quickly() {
        let started = Instant::now();
        let huge = format!("payment-gateway-{}", "x".repeat(1_000_000));
        let list = suggest(&huge, ["edge", "payment-gateway-7d9f", "identity"]);
        assert!(list.starts_with("payment-gateway-7d9f"), "{list}");
        let wide = "é".repeat(500_000);
        assert_eq!(suggest(&wide, ["é"]), "é");
        let pods: Vec<String> = (0..20_000)
            .map(|i| format!("worker-{i:05}-abcde"))
            .collect();
        let list = suggest("worker-12345-abcde", pods.iter().map(String::as_str));
        assert!(list.starts_with("worker-12345-abcde, "), "{list}");
        assert!(list.ends_with("(and 19992 more)"), "{list}");
        let list = suggest(&huge, pods.iter().map(String::as_str));
        assert!(list.ends_with("(and 19992 more)"), "{list}");
        // Debug builds included: the 1 MB name once took 724 s.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
