//! "Did you mean": candidate names ordered by similarity, for error messages that list the
//! closest valid names first.

/// Names from `candidates` ordered by similarity to `wanted`, as a comma-separated list
/// (closest first, at most 8, with a count of the rest).
pub fn suggest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let mut scored: Vec<(f64, &str)> = candidates
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
    scored.dedup_by(|a, b| a.1 == b.1);
    let total = scored.len();
    if total == 0 {
        return "(none)".into();
    }
    let shown: Vec<&str> = scored.iter().take(8).map(|(_, c)| *c).collect();
    let mut text = shown.join(", ");
    if total > shown.len() {
        text.push_str(&format!(" (and {} more)", total - shown.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_put_closest_first() {
        let list = suggest("paymnts", ["edge", "payments", "identity"]);
        assert!(list.starts_with("payments"), "{list}");
    }
}
