//! Short summaries of Markdown text made of whole units — list items and sentences — so an
//! excerpt never ends in a fragment cut mid-word. Used for runbook excerpts.

/// Splits Markdown into units in reading order: each list item (with its continuation lines
/// and a one-line code block inside it as inline code) and each sentence of a paragraph.
/// Headings and multi-line code blocks are left out; emphasis markers are dropped.
pub fn units(markdown: &str) -> Vec<String> {
    let mut units: Vec<String> = Vec::new();
    let mut paragraph = String::new();
    let mut item: Option<String> = None;
    let mut code: Option<Vec<String>> = None;
    let flush_paragraph = |paragraph: &mut String, units: &mut Vec<String>| {
        units.extend(sentences(paragraph));
        paragraph.clear();
    };
    for line in markdown.lines() {
        let trimmed = line.trim();
        if let Some(lines) = &mut code {
            if trimmed.starts_with("```") {
                // A short block reads as inline code where it stands (its commands joined
                // by "; "); a long one gives its first command.
                let joined = lines.join("; ");
                let shown = if joined.len() <= 200 {
                    Some(joined)
                } else {
                    lines.first().filter(|l| l.len() <= 160).cloned()
                };
                if let Some(shown) = shown {
                    let inline = format!("`{shown}`");
                    match &mut item {
                        Some(text) => append(text, &inline),
                        None => append(&mut paragraph, &inline),
                    }
                }
                code = None;
            } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
                lines.push(trimmed.to_string());
            }
            continue;
        }
        if trimmed.starts_with("```") {
            code = Some(Vec::new());
            continue;
        }
        if trimmed.is_empty() {
            if let Some(text) = item.take() {
                units.push(text);
            }
            flush_paragraph(&mut paragraph, &mut units);
            continue;
        }
        if trimmed.starts_with('#') {
            if let Some(text) = item.take() {
                units.push(text);
            }
            flush_paragraph(&mut paragraph, &mut units);
            continue;
        }
        if let Some(marker) = list_marker(trimmed) {
            if let Some(text) = item.take() {
                units.push(text);
            }
            flush_paragraph(&mut paragraph, &mut units);
            let body = clean(trimmed[marker.len()..].trim());
            item = Some(format!("{} {body}", marker.trim()));
            continue;
        }
        match &mut item {
            Some(text) => append(text, &clean(trimmed)),
            None => append(&mut paragraph, &clean(trimmed)),
        }
    }
    if let Some(text) = item.take() {
        units.push(text);
    }
    flush_paragraph(&mut paragraph, &mut units);
    units.retain(|u| !u.trim().is_empty());
    units
}

/// As many whole units as fit in `max_chars` (joined by newlines), in order, stopping at the
/// first that does not fit. When even the first does not, its first sentences that fit; when
/// not even a sentence does, its words up to the limit and " …".
pub fn whole_units(markdown: &str, max_chars: usize) -> String {
    fit(&units(markdown), max_chars)
}

/// Shortens an excerpt made by [`whole_units`] (one unit per line) to `max_chars`, on the
/// same terms.
pub fn shorten(excerpt: &str, max_chars: usize) -> String {
    let units: Vec<String> = excerpt.lines().map(str::to_string).collect();
    fit(&units, max_chars)
}

fn fit(units: &[String], max_chars: usize) -> String {
    let mut out = String::new();
    for unit in units {
        let len = out.chars().count() + unit.chars().count() + usize::from(!out.is_empty());
        if len <= max_chars {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(unit);
            continue;
        }
        if out.is_empty() {
            out = first_sentences(unit, max_chars);
        }
        break;
    }
    out
}

/// The leading sentences of `text` within `max_chars`, or its leading words and " …".
fn first_sentences(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for sentence in sentences(text) {
        let len = out.chars().count() + sentence.chars().count() + usize::from(!out.is_empty());
        if len > max_chars {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&sentence);
    }
    if !out.is_empty() {
        return out;
    }
    for word in text.split_whitespace() {
        if out.chars().count() + word.chars().count() + 3 > max_chars {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.push_str(" …");
    out
}

/// Sentences of a paragraph: split after `.`, `!` or `?` followed by a space and a capital,
/// a digit or a backtick (so "e.g. x" and "1.5 s" stay whole).
fn sentences(paragraph: &str) -> Vec<String> {
    let text = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '!' | '?')
            && chars.get(i + 1) == Some(&' ')
            && chars
                .get(i + 2)
                .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || *c == '`')
            && !abbreviation(&chars[start..=i])
        {
            out.push(chars[start..=i].iter().collect::<String>());
            start = i + 2;
            i += 2;
            continue;
        }
        i += 1;
    }
    if start < chars.len() {
        out.push(chars[start..].iter().collect::<String>());
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

fn abbreviation(sentence: &[char]) -> bool {
    let text: String = sentence.iter().collect::<String>().to_lowercase();
    ["e.g.", "i.e.", "etc.", "vs.", "cf."]
        .iter()
        .any(|a| text.ends_with(a))
}

/// `- `, `* `, `+ `, `1. ` or `1) ` at the start of a line: the marker with its space.
fn list_marker(line: &str) -> Option<&str> {
    if let Some(rest) = line.strip_prefix(['-', '*', '+'])
        && rest.starts_with(' ')
    {
        return Some(&line[..2]);
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits < 4 {
        let rest = &line[digits..];
        if (rest.starts_with(". ") || rest.starts_with(") ")) && rest.len() > 2 {
            return Some(&line[..digits + 2]);
        }
    }
    None
}

fn clean(text: &str) -> String {
    text.replace("**", "").replace("__", "")
}

fn append(text: &mut String, more: &str) {
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(more);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MITIGATION: &str = "1. **If it started with a deploy, roll back** — fastest and safest (see Rollback).\n2. **Otherwise raise the limit** to buy time:\n   ```bash\n   kubectl set resources deploy/$APP --limits=memory=1Gi\n   ```\n   Check that nodes still fit the new request.\n3. For JVMs, lower the heap ratio.\n";

    #[test]
    fn list_items_are_units_with_inline_code() {
        let u = units(MITIGATION);
        assert_eq!(u.len(), 3, "{u:?}");
        assert_eq!(
            u[0],
            "1. If it started with a deploy, roll back — fastest and safest (see Rollback)."
        );
        assert!(u[1].contains("`kubectl set resources deploy/$APP --limits=memory=1Gi`"));
        assert!(u[1].ends_with("Check that nodes still fit the new request."));
    }

    #[test]
    fn summaries_end_on_whole_units() {
        let two = whole_units(MITIGATION, 250);
        assert!(two.starts_with("1. If it started"), "{two}");
        assert!(two.lines().count() >= 1);
        for line in two.lines() {
            assert!(units(MITIGATION).contains(&line.to_string()), "{line}");
        }
        // Stops at the first unit that does not fit: no step skipped.
        let one = whole_units(MITIGATION, 100);
        assert_eq!(one.lines().count(), 1, "{one}");
    }

    #[test]
    fn paragraphs_split_into_sentences_not_at_abbreviations() {
        let text = "Raise the limit, e.g. to 1Gi. Then watch it. Rollback takes 1.5 s or so.";
        assert_eq!(
            units(text),
            vec![
                "Raise the limit, e.g. to 1Gi.",
                "Then watch it.",
                "Rollback takes 1.5 s or so."
            ]
        );
        assert_eq!(
            whole_units(text, 50),
            "Raise the limit, e.g. to 1Gi.\nThen watch it."
        );
    }

    #[test]
    fn a_long_first_unit_gives_its_first_sentences_or_whole_words() {
        let text = "- One sentence here. Another that is longer than the rest of it all.";
        assert_eq!(whole_units(text, 30), "- One sentence here.");
        let words = whole_units("- averyveryverylongword and more words follow here", 30);
        assert!(words.ends_with(" …"), "{words}");
        assert!(!words.contains("fo …"), "{words}");
        assert_eq!(shorten("a b.\nc d.", 5), "a b.");
    }
}
