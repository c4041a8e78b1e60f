//! Full versions of shaped results: when the budget stage shapes a result to fit its cap, the
//! full text is kept here (a bounded LRU, by bytes) and served as the resource
//! `result://{id}`, page by page (`result://{id}?page=N`), each page sized to the cap the
//! result was shaped to.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::shape::thousands;
use crate::util::quote::short;
use crate::util::tokens::Encoding;

/// One stored full result.
pub struct StoredResult {
    pub id: String,
    pub tool: String,
    pub arguments: Map<String, Value>,
    pub created: Timestamp,
    pub text: String,
    /// [`text_hash`] of `text`, to find repeats.
    pub hash: u64,
    /// The token size the pages were cut to.
    pub page_tokens: usize,
    /// Byte ranges of `text`, one per page, split at line ends.
    pub pages: Vec<Range<usize>>,
    /// Tokens the full reply costs (estimated for very large results).
    pub full_tokens: usize,
}

impl StoredResult {
    pub fn uri(&self) -> String {
        format!("result://{}", self.id)
    }

    /// Page `number` (1-based) with a header that says where it is and what comes next.
    pub fn page(&self, number: usize) -> Result<String, String> {
        let pages = self.pages.len();
        if number == 0 || number > pages {
            return Err(format!(
                "{} has pages 1 to {pages}; page {number} does not exist",
                self.uri()
            ));
        }
        let range = self.pages[number - 1].clone();
        let first_line = self.text[..range.start].matches('\n').count() + 1;
        let body = self.text[range].trim_end_matches('\n');
        let last_line = first_line + body.matches('\n').count();
        let total_lines = self.text.trim_end_matches('\n').matches('\n').count() + 1;
        let next = if number < pages {
            format!("next: {}?page={}", self.uri(), number + 1)
        } else {
            "last page".to_string()
        };
        Ok(format!(
            "{} · page {number} of {pages} · lines {}–{} of {} · {} {} · {}\n{next}\n\n{body}",
            self.uri(),
            thousands(first_line),
            thousands(last_line),
            thousands(total_lines),
            self.tool,
            Value::Object(self.arguments.clone()),
            self.created
        ))
    }
}

/// A fast 64-bit hash of a stored text (to recognise a repeated result).
pub fn text_hash(text: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Splits `text` at line ends into pages of at most about `page_tokens` tokens each, using the
/// text's own bytes-per-token rate (measured on a sample) with a margin for the page header.
/// A single line longer than a page is split at a character boundary.
pub fn paginate(text: &str, page_tokens: usize, encoding: Encoding) -> Vec<Range<usize>> {
    const SAMPLE: usize = 32 * 1024;
    let mut sample_end = SAMPLE.min(text.len());
    while !text.is_char_boundary(sample_end) {
        sample_end -= 1;
    }
    let sample = &text[..sample_end];
    let tokens = encoding.count(sample).max(1);
    let bytes_per_token = sample.len() as f64 / tokens as f64;
    // 80%: the rate varies across the text, and the header takes a few dozen tokens.
    let page_bytes = ((page_tokens as f64 * 0.8 - 60.0).max(50.0) * bytes_per_token) as usize;
    let page_bytes = page_bytes.max(64);
    let mut pages = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + page_bytes).min(text.len());
        // A page never ends inside a character (the fuzzer found `—` cut in two).
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end < text.len() {
            match text[start..end].rfind('\n') {
                Some(newline) if newline > 0 => end = start + newline + 1,
                _ => {
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                }
            }
        }
        pages.push(start..end);
        start = end;
    }
    if pages.is_empty() {
        pages.push(0..0);
    }
    pages
}

/// The bounded store.
pub struct ResultStore {
    max_bytes: usize,
    /// Distinguishes this process's ids from an earlier session's.
    session: String,
    state: Mutex<StoreState>,
}

#[derive(Default)]
struct StoreState {
    next: u64,
    /// Least recently used first.
    entries: VecDeque<Arc<StoredResult>>,
    bytes: usize,
}

/// Why a `result://` read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

impl ResultStore {
    pub fn new(max_bytes: usize) -> ResultStore {
        let seed = std::process::id() as u64 ^ Timestamp::now().as_nanosecond() as u64;
        ResultStore {
            max_bytes,
            session: format!("{:04x}", (seed ^ (seed >> 16) ^ (seed >> 32)) & 0xffff),
            state: Mutex::default(),
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Whether a text of this size can be kept at all.
    pub fn fits(&self, bytes: usize) -> bool {
        bytes <= self.max_bytes
    }

    /// A fresh id (the result is stored later with `put`).
    pub fn allocate_id(&self) -> String {
        let mut state = self.lock();
        state.next += 1;
        format!("{}-{}", self.session, state.next)
    }

    /// Stores a result, evicting the least recently used ones to stay within the byte bound.
    pub fn put(&self, result: StoredResult) {
        if !self.fits(result.text.len()) {
            return;
        }
        let mut state = self.lock();
        state.bytes += result.text.len();
        state.entries.push_back(Arc::new(result));
        while state.bytes > self.max_bytes {
            match state.entries.pop_front() {
                Some(evicted) => state.bytes -= evicted.text.len(),
                None => break,
            }
        }
    }

    /// The id and page count of an identical stored result (same tool, page size and text),
    /// marking it most recently used.
    pub fn find(
        &self,
        tool: &str,
        page_tokens: usize,
        hash: u64,
        text: &str,
    ) -> Option<(String, usize)> {
        let entry = self.touch(|r| {
            r.hash == hash && r.page_tokens == page_tokens && r.tool == tool && r.text == text
        })?;
        Some((entry.id.clone(), entry.pages.len()))
    }

    /// The first stored result matching `wanted`, marked most recently used (moved last).
    fn touch(&self, wanted: impl Fn(&StoredResult) -> bool) -> Option<Arc<StoredResult>> {
        let mut state = self.lock();
        let position = state.entries.iter().position(|r| wanted(r))?;
        let entry = state.entries.remove(position).expect("position is valid");
        state.entries.push_back(entry.clone());
        Some(entry)
    }

    /// (results stored, bytes used)
    pub fn usage(&self) -> (usize, usize) {
        let state = self.lock();
        (state.entries.len(), state.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads `result://{id}` or `result://{id}?page=N` (page 1 by default).
    pub fn read(&self, uri: &str) -> Result<String, ReadError> {
        let rest = uri
            .strip_prefix("result://")
            .ok_or_else(|| ReadError::Invalid(format!("{} is not a result:// URI", short(uri))))?;
        let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut page = 1;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("page", n)) => {
                    page = n.parse::<usize>().map_err(|_| {
                        ReadError::Invalid(format!(
                            "page must be a whole number from 1, not {} (result://<id>?page=2)",
                            short(n)
                        ))
                    })?;
                }
                _ => {
                    return Err(ReadError::Invalid(format!(
                        "unknown query {} in {}; the only one is page=N",
                        short(pair),
                        short(uri)
                    )));
                }
            }
        }
        let Some(result) = self.touch(|r| r.id == id) else {
            let (count, bytes) = self.usage();
            return Err(ReadError::NotFound(format!(
                "{} is not stored: it is from an earlier session, or it was evicted (the store keeps the most recent full results up to {} MB; now {count} results, {:.1} MB; raise --result-store-mb). Run the tool again, with narrower arguments if you can.",
                short(&format!("result://{id}")),
                self.max_bytes / (1024 * 1024),
                bytes as f64 / (1024.0 * 1024.0)
            )));
        };
        result.page(page).map_err(ReadError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(store: &ResultStore, text: &str, page_tokens: usize) -> String {
        let id = store.allocate_id();
        store.put(StoredResult {
            id: id.clone(),
            tool: "t".into(),
            arguments: Map::new(),
            created: Timestamp::UNIX_EPOCH,
            text: text.into(),
            hash: text_hash(text),
            page_tokens,
            pages: paginate(text, page_tokens, Encoding::O200kBase),
            full_tokens: 0,
        });
        id
    }

    #[test]
    fn pages_cover_the_text_at_line_ends() {
        let text: String = (0..2000)
            .map(|i| format!("line number {i} of the log\n"))
            .collect();
        let pages = paginate(&text, 500, Encoding::O200kBase);
        assert!(pages.len() > 5);
        let joined: String = pages.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        for r in &pages[..pages.len() - 1] {
            assert!(text[r.clone()].ends_with('\n'));
            assert!(Encoding::O200kBase.count(&text[r.clone()]) <= 500);
        }
    }

    #[test]
    fn read_pages_and_errors() {
        let store = ResultStore::new(1 << 20);
        let text: String = (0..300).map(|i| format!("entry {i}\n")).collect();
        let id = stored(&store, &text, 200);
        let first = store.read(&format!("result://{id}")).unwrap();
        assert!(first.contains("page 1 of"), "{first}");
        assert!(first.contains("entry 0\n"));
        let second = store.read(&format!("result://{id}?page=2")).unwrap();
        assert!(second.contains("page 2 of"));
        assert!(matches!(
            store.read(&format!("result://{id}?page=0")),
            Err(ReadError::Invalid(_))
        ));
        assert!(matches!(
            store.read(&format!("result://{id}?page=x")),
            Err(ReadError::Invalid(_))
        ));
        assert!(matches!(
            store.read(&format!("result://{id}?pgae=2")),
            Err(ReadError::Invalid(_))
        ));
        assert!(matches!(
            store.read("result://nope-1"),
            Err(ReadError::NotFound(_))
        ));
    }

    #[test]
    fn a_repeated_result_is_found_not_stored_twice() {
        let store = ResultStore::new(1 << 20);
        let text = "same text\n".repeat(50);
        let id = stored(&store, &text, 500);
        assert_eq!(
            store
                .find("t", 500, text_hash(&text), &text)
                .map(|(i, _)| i),
            Some(id)
        );
        assert!(store.find("t", 800, text_hash(&text), &text).is_none());
        assert!(store.find("other", 500, text_hash(&text), &text).is_none());
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let store = ResultStore::new(100);
        let a = stored(&store, &"a".repeat(40), 100);
        let b = stored(&store, &"b".repeat(40), 100);
        store.read(&format!("result://{a}")).unwrap();
        let _c = stored(&store, &"c".repeat(40), 100);
        assert!(store.read(&format!("result://{a}")).is_ok());
        assert!(matches!(
            store.read(&format!("result://{b}")),
            Err(ReadError::NotFound(_))
        ));
        // Too big to keep at all.
        let d = stored(&store, &"d".repeat(101), 100);
        assert!(store.read(&format!("result://{d}")).is_err());
    }
}
