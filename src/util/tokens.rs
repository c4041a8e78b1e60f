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
    ///
    /// Shaping counts many replies made of the same lines and JSON objects, so the text is
    /// cut where a piece always ends (see [`chunk_boundary`]) and each chunk's count is
    /// remembered per thread: the sum is the exact count of the whole.
    pub fn count(self, text: &str) -> usize {
        let counter = self.counter();
        let bytes = text.as_bytes();
        if bytes.len() < 2 * CACHED_CHUNK.start {
            return counter.count(text);
        }
        let mut total = 0;
        let mut start = 0;
        for at in 1..bytes.len() {
            if at - start >= CACHED_CHUNK.start && chunk_boundary(bytes, at) {
                total += self.count_chunk(counter, &text[start..at]);
                start = at;
            }
        }
        total + self.count_chunk(counter, &text[start..])
    }

    fn count_chunk(self, counter: &Counter, chunk: &str) -> usize {
        if !CACHED_CHUNK.contains(&chunk.len()) {
            return counter.count(chunk);
        }
        CHUNK_COUNTS.with_borrow_mut(|cache| {
            let (map, bytes) = &mut cache[self as usize];
            if let Some(&count) = map.get(chunk) {
                return count as usize;
            }
            let count = counter.count(chunk);
            if *bytes + chunk.len() > CHUNK_CACHE_BYTES {
                map.clear();
                *bytes = 0;
            }
            *bytes += chunk.len();
            map.insert(chunk.into(), count as u32);
            count
        })
    }
}

/// Chunks whose counts are remembered (shorter ones are cheaper to count than to look up;
/// longer ones rarely repeat).
const CACHED_CHUNK: std::ops::Range<usize> = 48..16 * 1024;
/// Bytes of chunks remembered per thread and encoding, before the cache starts over.
const CHUNK_CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Remembered chunk counts of one encoding, and the bytes of the chunks.
type ChunkCounts = (FxHashMap<Box<str>, u32>, usize);

thread_local! {
    static CHUNK_COUNTS: std::cell::RefCell<[ChunkCounts; 2]> = Default::default();
}

/// Whether a pre-tokenizer piece always ends before `text[at]`, whatever comes before
/// (in both encodings), at the places where replies repeat themselves:
/// - after a newline, before a character that is ASCII, not whitespace and not `/`: the
///   piece holding the newline is a whitespace run or a punctuation run's trailing newlines,
///   and neither takes such a character;
/// - after an ASCII letter or digit, before the end of a JSON object or array (`}`, `]`,
///   `"}`, `"]`): a word or number piece ends at punctuation (only an apostrophe would extend
///   a word), and nothing else holds letters or digits.
fn chunk_boundary(text: &[u8], at: usize) -> bool {
    let (before, here) = (text[at - 1], text[at]);
    match before {
        b'\n' => here.is_ascii() && !is_space(here) && here != b'/',
        b if b.is_ascii_alphanumeric() => match here {
            b'}' | b']' => true,
            b'"' => matches!(text.get(at + 1), Some(b'}' | b']')),
            _ => false,
        },
        _ => false,
    }
}

/// The pre-tokenizer: the encoding's published pattern, split into alternatives so a fast
/// DFA-based regex can run it. tiktoken's `\s+(?!\S)` (a whitespace run, less its last
/// character when a non-space follows) becomes `\s+\s` with the last character given back.
struct Pretokenizer {
    regex: Regex,
    /// Per pattern: whether its match gives its last character back.
    gives_back_last: Vec<bool>,
    /// The same pattern by hand for ASCII text.
    ascii: AsciiRules,
}

impl Pretokenizer {
    fn new(main: &str, ascii: AsciiRules) -> Pretokenizer {
        let patterns = [main, r"\s+\s", r"\s+"];
        Pretokenizer {
            regex: Regex::new_many(&patterns).expect("valid pre-tokenizer pattern"),
            gives_back_last: vec![false, true, false],
            ascii,
        }
    }

    /// Calls `piece` for each piece of `text`, in order.
    fn split<'t>(&self, text: &'t str, mut piece: impl FnMut(&'t [u8])) {
        let mut at = 0;
        while at < text.len() {
            if let Some(end) = self.ascii.piece_end(text.as_bytes(), at) {
                piece(&text.as_bytes()[at..end]);
                at = end;
                continue;
            }
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

/// The pre-tokenizer's pattern written out by hand for ASCII text: the same pieces as the
/// regex (the tests compare every count with tiktoken), found without a regex search per
/// piece, which took most of the time of a count (shaping counts each reply several times).
/// Where the piece depends on a non-ASCII character (a Unicode letter, digit, space or
/// symbol may continue a run), it gives up and the regex decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AsciiRules {
    /// o200k_base: letter runs split at case changes, contractions belong to the word before,
    /// punctuation runs take trailing newlines and slashes.
    O200k,
    /// cl100k_base: contractions on their own, letter runs whole, punctuation runs take
    /// trailing newlines.
    Cl100k,
}

/// A byte of the text as the rules see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peek {
    End,
    /// A byte of a non-ASCII character: the rules cannot decide.
    Wide,
    Ascii(u8),
}

fn peek(text: &[u8], i: usize) -> Peek {
    match text.get(i) {
        None => Peek::End,
        Some(&b) if b.is_ascii() => Peek::Ascii(b),
        Some(_) => Peek::Wide,
    }
}

/// `\s` on ASCII: tab, newline, vertical tab, form feed, carriage return, space.
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// `[^\r\n\p{L}\p{N}]`: the one character that may lead a word.
fn leads_word(b: u8) -> bool {
    !matches!(b, b'\r' | b'\n') && !b.is_ascii_alphanumeric()
}

/// `[^\s\p{L}\p{N}]`: punctuation, symbols and control characters.
fn is_symbol(b: u8) -> bool {
    !is_space(b) && !b.is_ascii_alphanumeric()
}

impl AsciiRules {
    /// The end of the piece that starts at `at`, or `None` when a non-ASCII character
    /// decides it.
    fn piece_end(self, text: &[u8], at: usize) -> Option<usize> {
        let Peek::Ascii(c) = peek(text, at) else {
            return None;
        };
        // End of a run of bytes that `class` accepts; None when a wide character could
        // continue it.
        let run = |from: usize, class: fn(u8) -> bool| -> Option<usize> {
            let mut i = from;
            loop {
                match peek(text, i) {
                    Peek::Ascii(b) if class(b) => i += 1,
                    Peek::Wide => return None,
                    _ => return Some(i),
                }
            }
        };
        if self == AsciiRules::Cl100k
            && c == b'\''
            && let Some(end) = contraction(text, at)?
        {
            return Some(end);
        }
        // A word, led by at most one non-letter.
        let word = if c.is_ascii_alphabetic() {
            Some(at)
        } else if leads_word(c) {
            match peek(text, at + 1) {
                Peek::Ascii(b) if b.is_ascii_alphabetic() => Some(at + 1),
                Peek::Wide => return None,
                _ => None,
            }
        } else {
            None
        };
        if let Some(start) = word {
            match self {
                AsciiRules::O200k => {
                    // [upper]*[lower]+ first, else [upper]+[lower]*; then a contraction.
                    let upper_end = run(start, |b| b.is_ascii_uppercase())?;
                    let lower_end = run(upper_end, |b| b.is_ascii_lowercase())?;
                    let end = lower_end;
                    return Some(contraction(text, end)?.unwrap_or(end));
                }
                AsciiRules::Cl100k => return run(start, |b| b.is_ascii_alphabetic()),
            }
        }
        if c.is_ascii_digit() {
            let mut end = at + 1;
            while end < at + 3 {
                match peek(text, end) {
                    Peek::Ascii(b) if b.is_ascii_digit() => end += 1,
                    Peek::Wide => return None,
                    _ => break,
                }
            }
            return Some(end);
        }
        // Punctuation, led by at most one space, with the newlines (and, in o200k, slashes)
        // right after it.
        let symbols = if is_symbol(c) {
            Some(at)
        } else if c == b' ' {
            match peek(text, at + 1) {
                Peek::Ascii(b) if is_symbol(b) => Some(at + 1),
                Peek::Wide => return None,
                _ => None,
            }
        } else {
            None
        };
        if let Some(start) = symbols {
            let end = run(start, is_symbol)?;
            let mut i = end;
            while let Peek::Ascii(b) = peek(text, i) {
                let trails = matches!(b, b'\r' | b'\n') || (b == b'/' && self == AsciiRules::O200k);
                if !trails {
                    break;
                }
                i += 1;
            }
            return Some(i);
        }
        // Whitespace: through its last newline; else to the end of the text; else all but
        // its last character, which leads what follows.
        let end = run(at, is_space)?;
        if let Some(last) = text[at..end]
            .iter()
            .rposition(|&b| matches!(b, b'\r' | b'\n'))
        {
            return Some(at + last + 1);
        }
        if end == text.len() || end - at == 1 {
            return Some(end);
        }
        Some(end - 1)
    }
}

/// A contraction (`'s 't 're 've 'm 'll 'd`, any case) at `at`: `Some(Some(end))` when there
/// is one, `Some(None)` when not, `None` when a wide character could make one (case folding).
fn contraction(text: &[u8], at: usize) -> Option<Option<usize>> {
    if peek(text, at) != Peek::Ascii(b'\'') {
        return Some(None);
    }
    let lower = |i: usize| match peek(text, i) {
        Peek::Ascii(b) => Some(Some(b.to_ascii_lowercase())),
        Peek::Wide => None,
        Peek::End => Some(None),
    };
    Some(match lower(at + 1)? {
        Some(b's' | b't' | b'm' | b'd') => Some(at + 2),
        Some(first @ (b'r' | b'v' | b'l')) => {
            let second = if first == b'l' { b'l' } else { b'e' };
            match lower(at + 2)? {
                Some(b) if b == second => Some(at + 3),
                _ => None,
            }
        }
        _ => None,
    })
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
            AsciiRules::O200k,
        )
    }

    fn cl100k_base() -> Counter {
        Counter::new(
            include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.tokens")),
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+$",
            AsciiRules::Cl100k,
        )
    }

    /// `tokens` is each ordinary token's bytes in rank order, behind a little-endian `u16`
    /// length (see `build.rs`).
    fn new(tokens: &'static [u8], pattern: &str, ascii: AsciiRules) -> Counter {
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
            pretokenizer: Pretokenizer::new(pattern, ascii),
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
            let expected = reference.encode_ordinary(text).len();
            assert_eq!(encoding.count(text), expected, "{encoding:?} on {text:?}");
            // Again, with its chunks' counts remembered.
            assert_eq!(encoding.count(text), expected, "{encoding:?} on {text:?}");
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
    fn random_ascii_texts_count_exactly_as_tiktoken() {
        // The hand-written ASCII rules against the reference: every ASCII byte (controls,
        // vertical tab, form feed included), contractions in every case, runs of each class.
        const PIECES: &[&str] = &[
            "'s", "'S", "'t", "'re", "'RE", "'Ve", "'m", "'ll", "'lL", "'d", "'", "'r", "'l", "  ",
            "   ", "\r\n", "\n\n", " \n ", "\t\t", "ab", "CD", "Ef", "gH", "123", "4567", "//",
            "/\n", "-\n/", " .", ". ", "{\"", "\":", "...", "a1b2", "x'", "'x", "\"}", "\"},{\"",
            "1}", "]}", "\"]", "a]", "\n}", "\n\"a", "'s}", "\n/",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..8000 {
            // Long texts too, so that they are counted in chunks.
            let length = (next() % if round % 4 == 0 { 400 } else { 48 }) as usize;
            let mut text = String::new();
            for _ in 0..length {
                if next() % 3 == 0 {
                    text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                } else {
                    text.push(char::from((next() % 128) as u8));
                }
            }
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
