//! Token counting with OpenAI's BPE encodings (`o200k_base`, `cl100k_base`), counted the way
//! tiktoken encodes: the text is split with the encoding's pre-tokenizer pattern, and each piece
//! is merged pair by pair by rank. Only the count is needed, so the vocabulary is kept compact —
//! one hash table over the token bytes embedded in the binary (written from `tiktoken-rs` by
//! `build.rs`), about 5 MB for o200k, where a full encoder keeps three copies of it (about
//! 45 MB) and takes ~350 ms of CPU to build; tests check every count against `tiktoken-rs`.

use std::sync::LazyLock;

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};
use rustc_hash::FxHashMap;

/// BPE encodings the counter can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// OpenAI's o200k_base (GPT-4o family); the default.
    O200kBase,
    /// OpenAI's cl100k_base (GPT-4 / GPT-3.5).
    Cl100kBase,
}

impl Encoding {
    fn counter(self) -> &'static Counter {
        static O200K: LazyLock<Counter> = LazyLock::new(Counter::o200k_base);
        static CL100K: LazyLock<Counter> = LazyLock::new(Counter::cl100k_base);
        match self {
            Encoding::O200kBase => &O200K,
            Encoding::Cl100kBase => &CL100K,
        }
    }

    /// Builds the counter (about 250 ms of CPU) on a background thread so the first count does
    /// not pay for it. It starts after a pause, once a client's handshake is usually answered:
    /// on two cores it would otherwise slow `initialize` by a few milliseconds. A count that
    /// comes first waits for it. Its priority stays normal: every reply needs it, and at a
    /// lowered priority it lost the CPU to the embedding model's loading (a first reply waited
    /// 390 ms for it).
    pub fn warm_up(self) {
        let _ = std::thread::Builder::new()
            .name("tokenizer".into())
            .spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(150));
                let _ = self.counter();
            });
    }

    /// Tokens in `text` (special-token text is counted as ordinary text, as a client sends it).
    pub fn count(self, text: &str) -> usize {
        self.counter().count(text)
    }
}

/// The pre-tokenizer: the encoding's published pattern, split into alternatives so a fast
/// DFA-based regex can run it. tiktoken's `\s+(?!\S)` (a whitespace run, less its last
/// character when a non-space follows) becomes `\s+\s` with the last character given back.
struct Pretokenizer {
    regex: Regex,
    /// Per pattern: whether its match gives its last character back.
    gives_back_last: Vec<bool>,
}

impl Pretokenizer {
    fn new(main: &str) -> Pretokenizer {
        let patterns = [main, r"\s+\s", r"\s+"];
        Pretokenizer {
            regex: Regex::new_many(&patterns).expect("valid pre-tokenizer pattern"),
            gives_back_last: vec![false, true, false],
        }
    }

    /// Calls `piece` for each piece of `text`, in order.
    fn split<'t>(&self, text: &'t str, mut piece: impl FnMut(&'t [u8])) {
        let mut at = 0;
        while at < text.len() {
            let input = Input::new(&text[at..]).anchored(Anchored::Yes);
            let Some(found) = self.regex.find(input) else {
                // Every character matches one of the alternatives; never reached.
                let len = text[at..].chars().next().map_or(1, char::len_utf8);
                piece(&text.as_bytes()[at..at + len]);
                at += len;
                continue;
            };
            let mut end = at + found.end();
            if self.gives_back_last[found.pattern().as_usize()] {
                let last = text[at..end].chars().next_back().map_or(0, char::len_utf8);
                end -= last;
            }
            if end == at {
                end = at + text[at..].chars().next().map_or(1, char::len_utf8);
            }
            piece(&text.as_bytes()[at..end]);
            at = end;
        }
    }
}

/// A compact vocabulary (token bytes → rank) and the pre-tokenizer.
struct Counter {
    ranks: FxHashMap<&'static [u8], u32>,
    pretokenizer: Pretokenizer,
}

impl Counter {
    fn o200k_base() -> Counter {
        Counter::new(
            include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.tokens")),
            &[
                r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
                r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
                r"\p{N}{1,3}",
                r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
                r"\s*[\r\n]+",
                r"\s+$",
            ]
            .join("|"),
        )
    }

    fn cl100k_base() -> Counter {
        Counter::new(
            include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.tokens")),
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+$",
        )
    }

    /// `tokens` is each ordinary token's bytes in rank order, behind a little-endian `u16`
    /// length (see `build.rs`).
    fn new(tokens: &'static [u8], pattern: &str) -> Counter {
        let mut ranks = FxHashMap::default();
        ranks.reserve(tokens.len() / 8);
        let mut rest = tokens;
        while let [lo, hi, tail @ ..] = rest {
            let len = usize::from(u16::from_le_bytes([*lo, *hi]));
            let (token, tail) = tail.split_at(len);
            ranks.insert(token, ranks.len() as u32);
            rest = tail;
        }
        Counter {
            ranks,
            pretokenizer: Pretokenizer::new(pattern),
        }
    }

    fn count(&self, text: &str) -> usize {
        let mut total = 0;
        self.pretokenizer
            .split(text, |piece| total += self.count_piece(piece));
        total
    }

    /// Tokens of one piece: byte-pair merging, lowest rank first, as tiktoken does.
    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.ranks.contains_key(piece) {
            return piece.len().min(1);
        }
        let rank_of = |bytes: &[u8]| self.ranks.get(bytes).copied().unwrap_or(u32::MAX);
        // parts[i] = (start of part i, rank of merging part i with part i+1).
        let mut parts: Vec<(usize, u32)> = (0..piece.len())
            .map(|i| {
                let rank = if i + 2 <= piece.len() {
                    rank_of(&piece[i..i + 2])
                } else {
                    u32::MAX
                };
                (i, rank)
            })
            .collect();
        parts.push((piece.len(), u32::MAX));
        // The rank of merging parts i and i+1 once they are adjacent, from their bounds.
        let merged_rank = |parts: &[(usize, u32)], i: usize| {
            if i + 2 < parts.len() {
                rank_of(&piece[parts[i].0..parts[i + 2].0])
            } else {
                u32::MAX
            }
        };
        loop {
            let (index, rank) = parts[..parts.len() - 1]
                .iter()
                .enumerate()
                .map(|(i, &(_, rank))| (i, rank))
                .min_by_key(|&(i, rank)| (rank, i))
                .expect("at least one part");
            if rank == u32::MAX {
                break;
            }
            parts.remove(index + 1);
            parts[index].1 = merged_rank(&parts, index);
            if index > 0 {
                parts[index - 1].1 = merged_rank(&parts, index - 1);
            }
        }
        parts.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every count must equal the reference implementation's.
    fn assert_same(text: &str) {
        for (encoding, reference) in [
            (Encoding::O200kBase, tiktoken_rs::o200k_base_singleton()),
            (Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
        ] {
            assert_eq!(
                encoding.count(text),
                reference.encode_ordinary(text).len(),
                "{encoding:?} on {text:?}"
            );
        }
    }

    #[test]
    fn fixed_texts_count_exactly_as_tiktoken() {
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        assert_eq!(Encoding::O200kBase.count(""), 0);
        for text in [
            "payment-gateway-7d9f8b6c4-x2k9p CrashLoopBackOff OOMKilled (exit 137)",
            r#"{"pods":[{"name":"a-1","status":"Running","ready":"1/1","restarts":0}],"total":1}"#,
            "2026-11-22T01:05:12.239Z ERROR o.a.c.c.C.[Tomcat] java.lang.OutOfMemoryError: Java heap space\n\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)",
            "  indented   with   runs\n\n\nof whitespace\t\ttabs  ",
            "trailing spaces   ",
            "\n\n\n  x\r\n\r\n y \n",
            "Zürich → 東京 ✂ … naïve café 🚀 emoji",
            "12345678901234567890 3.14159 0xdeadbeef 1e-9",
            "supercalifragilisticexpialidocious antidisestablishmentarianism",
            "don't I'LL we've THEY'RE it's",
            "<|endoftext|> special tokens are counted as text",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "c5697c769da1faeda0b06233411f6ef8 sha256:3021fbd1052d04865b5bfc86641acb0517495b4660be15c254b5ac7f17307814",
        ] {
            assert_same(text);
        }
    }

    #[test]
    fn random_mixed_texts_count_exactly_as_tiktoken() {
        // Whitespace runs, newlines, apostrophes, digits, punctuation, case changes, marks and
        // wide characters, in random order: the pre-tokenizer's edge cases.
        const ALPHABET: &[&str] = &[
            " ", " ", "  ", "\t", "\n", "\r\n", "\n\n", "a", "b", "Z", "Q", "é", "ß", "İ", "東",
            "\u{301}", "🚀", "0", "7", "42", "'", "'s", "'LL", ".", ",", "/", "-", "_", "\"", "{",
            "}", ":", "=", "(", "…", "\u{a0}", "\u{2003}", "word", "Camel", "UPPER", "x1",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let length = (next() % 40) as usize;
            let text: String = (0..length)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            assert_same(&text);
        }
    }

    #[test]
    fn the_whole_demo_log_corpus_counts_exactly_as_tiktoken() {
        // 14,000 real-looking log lines: stack traces, JSON, URLs, ids, numbers.
        static LOGS: include_dir::Dir<'static> =
            include_dir::include_dir!("$CARGO_MANIFEST_DIR/fixtures/demo/logs");
        let mut stack = vec![&LOGS];
        let mut files = 0;
        while let Some(dir) = stack.pop() {
            stack.extend(dir.dirs());
            for file in dir.files() {
                let text = file.contents_utf8().unwrap();
                assert_same(text);
                files += 1;
            }
        }
        assert!(files > 30);
    }
}
