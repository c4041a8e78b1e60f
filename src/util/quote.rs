//! Client input quoted in a message: whole when short, otherwise a short prefix and its length,
//! so an error never echoes a long value back (a 1 MB pod name costs the reply 60 bytes).

/// Most characters of a value an error message repeats.
pub const SHORT_CHARS: usize = 32;

/// `s` quoted as Rust's `{:?}` does (escapes included) when it has at most [`SHORT_CHARS`]
/// characters; otherwise its first [`SHORT_CHARS`] characters, `…` and its length:
/// `"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…" (1,000,000 characters)`. Linear in `s` at worst (the
/// length is counted once).
pub fn short(s: &str) -> String {
    // Credentials are masked before the cut, while they still have their whole shape: a
    // pasted token's first 32 characters would otherwise be most of it.
    const MASKED_UP_TO: usize = 4096;
    let mut end = s.len().min(MASKED_UP_TO);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = &s[..end];
    let masked = crate::util::redact::mask(head);
    let shown: &str = &masked;
    match shown.char_indices().nth(SHORT_CHARS) {
        None if head.len() == s.len() => format!("{shown:?}"),
        None => format!("{shown:?}… ({} characters)", thousands(s.chars().count())),
        Some((cut, _)) => {
            let quoted = format!("{:?}", &shown[..cut]);
            format!(
                "{}…\" ({} characters)",
                &quoted[..quoted.len() - 1],
                thousands(s.chars().count())
            )
        }
    }
}

/// A message that may quote input it did not bound itself (a parser's): its first `max_chars`
/// characters, then `…`.
pub fn clip(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(short("payments"), "\"payments\"");
        assert_eq!(short(""), "\"\"");
        assert_eq!(short("a\"b\n"), "\"a\\\"b\\n\"");
        let exactly = "x".repeat(SHORT_CHARS);
        assert_eq!(short(&exactly), format!("\"{exactly}\""));
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "p".repeat(1_000_000);
        let quoted = short(&long);
        assert_eq!(
            quoted,
            format!("\"{}…\" (1,000,000 characters)", "p".repeat(SHORT_CHARS))
        );
        // Characters, not bytes: a multi-byte value is cut on a character boundary.
        let wide = "é".repeat(100);
        assert_eq!(
            short(&wide),
            format!("\"{}…\" (100 characters)", "é".repeat(SHORT_CHARS))
        );
        assert!(short(&"\u{1F600}".repeat(40)).ends_with("(40 characters)"));
    }

    #[test]
    fn clipped_messages() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 3), "ééé…");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
