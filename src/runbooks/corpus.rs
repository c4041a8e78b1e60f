//! Runbook documents: loading Markdown files (front matter optional) from the shipped corpus
//! compiled into the binary and from user folders, and splitting them into section chunks
//! that keep the document title and heading path as context.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use include_dir::{Dir, include_dir};
use serde::Deserialize;

static SHIPPED_RUNBOOKS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/runbooks");

/// One runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// Path relative to its folder, without `.md` (e.g. `oomkilled-crashloop`,
    /// `kubernetes/KubePodCrashLooping`); the resource URI is `runbook://{id}`.
    pub id: String,
    pub title: String,
    pub team: Option<String>,
    pub tags: Vec<String>,
    pub signals: Vec<String>,
    pub services: Vec<String>,
    /// Where it came from: `builtin:runbooks/x.md` or a file path.
    pub source: String,
    /// The whole Markdown text, front matter included.
    pub markdown: String,
    /// The Markdown body after the front matter.
    body_offset: usize,
}

impl Runbook {
    pub fn body(&self) -> &str {
        &self.markdown[self.body_offset..]
    }

    pub fn uri(&self) -> String {
        format!("runbook://{}", self.id)
    }
}

#[derive(Debug, Default, Deserialize)]
struct FrontMatter {
    title: Option<String>,
    team: Option<String>,
    #[serde(default)]
    tags: StringOrList,
    #[serde(default)]
    signals: StringOrList,
    #[serde(default)]
    services: StringOrList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    #[default]
    None,
    One(String),
    Many(Vec<serde_yaml_ng::Value>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::None => Vec::new(),
            StringOrList::One(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            StringOrList::Many(v) => v
                .into_iter()
                .filter_map(|x| match x {
                    serde_yaml_ng::Value::String(s) => Some(s),
                    serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
                    serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// Parses one Markdown runbook. Front matter (`---` YAML `---`) is optional; a malformed one is
/// reported as an error naming the file.
pub fn parse_runbook(id: &str, source: &str, markdown: String) -> anyhow::Result<Runbook> {
    // A runbook that pastes a real credential must not hand it to the client in an excerpt.
    let markdown = crate::util::redact::mask(&markdown).into_owned();
    let (front, body_offset) = split_front_matter(&markdown);
    let front: FrontMatter = match front {
        Some(yaml) if !yaml.trim().is_empty() => serde_yaml_ng::from_str(yaml)
            .with_context(|| format!("{source}: front matter is not valid YAML"))?,
        _ => FrontMatter::default(),
    };
    let body = &markdown[body_offset..];
    let title = front
        .title
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            body.lines()
                .find_map(|l| l.strip_prefix("# ").map(|t| t.trim().to_string()))
        })
        .unwrap_or_else(|| id.rsplit('/').next().unwrap_or(id).replace(['-', '_'], " "));
    Ok(Runbook {
        id: id.to_string(),
        title,
        team: front.team,
        tags: front.tags.into_vec(),
        signals: front.signals.into_vec(),
        services: front.services.into_vec(),
        source: source.to_string(),
        body_offset,
        markdown,
    })
}

fn split_front_matter(markdown: &str) -> (Option<&str>, usize) {
    let Some(rest) = markdown
        .strip_prefix("---\n")
        .or_else(|| markdown.strip_prefix("---\r\n"))
    else {
        return (None, 0);
    };
    let start = markdown.len() - rest.len();
    let mut offset = start;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return (Some(&markdown[start..offset]), offset + line.len());
        }
        offset += line.len();
    }
    (None, 0)
}

/// Whether a Markdown file is a runbook (section index pages such as `_index.md` are not).
fn is_runbook_file(name: &str) -> bool {
    name.ends_with(".md") && !name.starts_with('_') && !name.eq_ignore_ascii_case("README.md")
}

/// The runbooks compiled into the binary.
pub fn shipped() -> anyhow::Result<Vec<Runbook>> {
    let mut out = Vec::new();
    let mut stack = vec![&SHIPPED_RUNBOOKS];
    while let Some(dir) = stack.pop() {
        stack.extend(dir.dirs());
        for file in dir.files() {
            let path = file.path().to_string_lossy().to_string();
            let name = file
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if !is_runbook_file(&name) {
                continue;
            }
            let text = file
                .contents_utf8()
                .with_context(|| format!("runbooks/{path} is not UTF-8"))?;
            let id = path.trim_end_matches(".md").to_string();
            out.push(parse_runbook(
                &id,
                &format!("builtin:runbooks/{path}"),
                text.to_string(),
            )?);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Every Markdown runbook under `dir` (recursively). Unreadable files are reported, not
/// silently skipped.
pub fn from_dir(dir: &Path) -> anyhow::Result<Vec<Runbook>> {
    if !dir.is_dir() {
        anyhow::bail!(
            "runbook folder {} does not exist or is not a folder",
            dir.display()
        );
    }
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if path.is_dir() && !name.starts_with('.') {
                stack.push(path);
            } else if is_runbook_file(&name) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let relative = path.strip_prefix(dir).unwrap_or(path).with_extension("");
            let id = relative.to_string_lossy().replace('\\', "/");
            parse_runbook(&id, &path.display().to_string(), text)
        })
        .collect()
}

/// Merges corpora; on an id clash the first wins and the clash is returned as a warning.
pub fn merge(corpora: Vec<Vec<Runbook>>) -> (Vec<Runbook>, Vec<String>) {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for runbook in corpora.into_iter().flatten() {
        if seen.insert(runbook.id.clone()) {
            out.push(runbook);
        } else {
            warnings.push(format!(
                "runbook id {:?} from {} is already taken; skipped",
                runbook.id, runbook.source
            ));
        }
    }
    (out, warnings)
}

/// A searchable piece of a runbook: one section (or a window of a long one).
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Index of the runbook in the corpus.
    pub doc: usize,
    /// Heading path, e.g. "Diagnosis > Check the last state". Empty for the preamble.
    pub section: String,
    /// The section text (without the heading line).
    pub text: String,
}

impl Chunk {
    /// What the retrievers see: document title and section path as context, then the text.
    pub fn indexed_text(&self, runbook: &Runbook) -> String {
        if self.section.is_empty() {
            format!("{}\n{}", runbook.title, self.text)
        } else {
            format!("{} — {}\n{}", runbook.title, self.section, self.text)
        }
    }
}

/// Longest chunk in words before it is split into overlapping windows (the embedding model
/// reads at most 256 word pieces).
pub const MAX_CHUNK_WORDS: usize = 160;
const OVERLAP_WORDS: usize = 40;

/// Splits a runbook into section chunks, plus one "profile" chunk made of its title, tags and
/// signals so that a runbook can be found by the signals it declares.
pub fn chunk(doc: usize, runbook: &Runbook) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    if !runbook.signals.is_empty() || !runbook.tags.is_empty() {
        chunks.push(Chunk {
            doc,
            section: "Signals".into(),
            text: [
                runbook.signals.join("; "),
                runbook.tags.join(", "),
                runbook.services.join(", "),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        });
    }
    for (section, body) in sections(runbook) {
        push_windows(doc, &section, &body, &mut chunks);
    }
    chunks
}

/// A runbook's sections in order: heading path ("Mitigation > Raise the limit"; empty for the
/// text before the first heading) and the section's own Markdown, trimmed; empty sections
/// are left out. Headings inside code blocks are code.
pub fn sections(runbook: &Runbook) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut text = String::new();
    let mut in_code = false;
    let flush = |path: &[(usize, String)], text: &mut String, out: &mut Vec<(String, String)>| {
        let body = text.trim();
        if !body.is_empty() {
            let section = path
                .iter()
                .map(|(_, h)| h.as_str())
                .collect::<Vec<_>>()
                .join(" > ");
            out.push((section, body.to_string()));
        }
        text.clear();
    };
    for line in runbook.body().lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let level = if in_code {
            0
        } else {
            line.chars().take_while(|c| *c == '#').count()
        };
        if (1..=6).contains(&level) && line[level..].starts_with(' ') {
            flush(&path, &mut text, &mut out);
            let heading = line[level..].trim().to_string();
            path.retain(|(l, _)| *l < level);
            // The document title (a level-1 heading) is context already.
            if !(level == 1 && heading == runbook.title) {
                path.push((level, heading));
            }
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    flush(&path, &mut text, &mut out);
    out
}

impl Runbook {
    /// One section's Markdown as written (chunks normalise whitespace; excerpts need the
    /// list structure).
    pub fn section_text(&self, section: &str) -> Option<String> {
        sections(self)
            .into_iter()
            .find(|(path, _)| path == section)
            .map(|(_, body)| body)
    }
}

fn push_windows(doc: usize, section: &str, body: &str, chunks: &mut Vec<Chunk>) {
    let words: Vec<&str> = body.split_whitespace().collect();
    if words.len() <= MAX_CHUNK_WORDS {
        chunks.push(Chunk {
            doc,
            section: section.to_string(),
            text: body.to_string(),
        });
        return;
    }
    let step = MAX_CHUNK_WORDS - OVERLAP_WORDS;
    let mut start = 0;
    while start < words.len() {
        let end = (start + MAX_CHUNK_WORDS).min(words.len());
        chunks.push(Chunk {
            doc,
            section: section.to_string(),
            text: words[start..end].join(" "),
        });
        if end == words.len() {
            break;
        }
        start += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_is_optional_and_parsed() {
        let rb = parse_runbook("x", "t", "---\ntitle: Disk full\ntags: [disk]\nsignals: DiskPressure, Evicted\n---\n# Disk full\n\n## Symptoms\nnodes evict\n".into()).unwrap();
        assert_eq!(rb.title, "Disk full");
        assert_eq!(rb.signals, vec!["DiskPressure", "Evicted"]);
        assert!(rb.body().starts_with("# Disk full"));
        let plain = parse_runbook("dir/Alert", "t", "# Some Alert\n\nMeaning.\n".into()).unwrap();
        assert_eq!(plain.title, "Some Alert");
        let untitled = parse_runbook("dir/no-title", "t", "just text".into()).unwrap();
        assert_eq!(untitled.title, "no title");
        assert!(parse_runbook("bad", "bad.md", "---\ntitle: [unclosed\n---\nx".into()).is_err());
    }

    #[test]
    fn chunks_follow_headings_and_split_long_sections() {
        let long = (0..400)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let md = format!(
            "---\ntitle: T\nsignals: [OOMKilled]\n---\n# T\nintro\n## Diagnosis\n### Check limits\n```\n# not a heading\nkubectl get pod\n```\n## Mitigation\n{long}\n"
        );
        let rb = parse_runbook("t", "t", md).unwrap();
        let chunks = chunk(0, &rb);
        assert_eq!(chunks[0].section, "Signals");
        assert_eq!(chunks[1].section, "");
        assert_eq!(chunks[2].section, "Diagnosis > Check limits");
        assert!(chunks[2].text.contains("# not a heading"));
        let windows: Vec<_> = chunks
            .iter()
            .filter(|c| c.section == "Mitigation")
            .collect();
        assert_eq!(windows.len(), 3);
        assert!(
            windows
                .iter()
                .all(|c| c.text.split_whitespace().count() <= MAX_CHUNK_WORDS)
        );
        assert!(windows[1].text.starts_with("w120"));
    }

    #[test]
    fn shipped_runbooks_load() {
        let runbooks = shipped().unwrap();
        assert!(runbooks.len() >= 25);
        assert!(
            runbooks
                .iter()
                .all(|r| !r.signals.is_empty() && r.team.is_some())
        );
    }
}
