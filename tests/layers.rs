//! The import-layer guard: the top-level modules under `src/` are arranged in layers, and
//! code may only refer to modules of a lower layer (or to its own module). This keeps the
//! dependency graph a stack that can be read bottom-up, with no cycles between modules.
//!
//! The check reads the sources as text: it blanks comments and literals, then finds every
//! `crate::x` path (in `use` declarations, grouped `use crate::{…}` trees and inline paths)
//! and every `super::` path that climbs out of a top-level module to the crate root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules by layer, lowest first (the index is the layer number). Code may
/// use its own module and modules of lower layers; two modules of one layer may not use
/// each other, so that they stay independent.
const LAYERS: &[&[&str]] = &[
    // Small leaf utilities.
    &["util"],
    &["cluster", "runbooks", "history"],
    &["tools"],
    &["pipeline"],
    &["mcp"],
    // The composition root.
    &["app"],
    &["cli"],
];

/// Files under `src/` that belong to no layer: the crate roots declare every module, and
/// Cargo builds each file of `src/bin/` as a crate of its own.
const EXEMPT: &[&str] = &["lib.rs", "main.rs", "bin"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The module path of a source file given relative to `src/`: `tools/mod.rs` is
/// `[tools]`, `tools/pods.rs` is `[tools, pods]`, `app.rs` is `[app]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if let Some(file) = path.pop() {
        let stem = file.strip_suffix(".rs").unwrap_or(&file);
        if stem != "mod" {
            path.push(stem.to_string());
        }
    }
    path
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces comments and the contents of string and char literals with spaces, keeping
/// every newline so that line numbers still match the source.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut code = chars.clone();
    let blank = |code: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut code[from..to.min(chars.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n);
            blank(&mut code, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut code, i, j);
            i = j;
        } else if let Some((quote, hashes)) = raw_string_start(&chars, i) {
            // r"…", r#"…"#, br"…": no escapes; it ends at a quote followed by as many #.
            let mut j = quote + 1;
            while j < chars.len()
                && !(chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')))
            {
                j += 1;
            }
            blank(&mut code, quote + 1, j);
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut code, i + 1, j);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}', '"') or else a lifetime or label ('a).
            let end = if next == Some('\\') {
                // Skip the escaped character itself, which may be a quote: '\''.
                (i + 3..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut code, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else if is_identifier_char(c) {
            // Skip whole identifiers so that a word ending in `r` never opens a raw string.
            while i < chars.len() && is_identifier_char(chars[i]) {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    code.into_iter().collect()
}

/// Where the opening quote is and how many `#` there are, when a raw string literal
/// (`r"`, `r#"`, `br"`, `cr"`) starts at `i`; `r#name` is a raw identifier, not a string.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let r = if matches!(chars[i], 'b' | 'c') {
        i + 1
    } else {
        i
    };
    if chars.get(r) != Some(&'r') {
        return None;
    }
    let hashes = chars[r + 1..].iter().take_while(|&&c| c == '#').count();
    let quote = r + 1 + hashes;
    (chars.get(quote) == Some(&'"')).then_some((quote, hashes))
}

/// The few token kinds the path scanner needs; everything else is `Other`.
#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Word(String),
    PathSeparator,
    OpenBrace,
    CloseBrace,
    Comma,
    Star,
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    line: usize,
}

/// Splits code (already without comments and literals) into tokens with their line numbers.
fn tokenize(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let kind = if c == '\n' {
            line += 1;
            i += 1;
            continue;
        } else if c.is_whitespace() {
            i += 1;
            continue;
        } else if is_identifier_char(c) {
            let start = i;
            while i < chars.len() && is_identifier_char(chars[i]) {
                i += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Word(chars[start..i].iter().collect()),
                line,
            });
            continue;
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            i += 1;
            TokenKind::PathSeparator
        } else {
            match c {
                '{' => TokenKind::OpenBrace,
                '}' => TokenKind::CloseBrace,
                ',' => TokenKind::Comma,
                '*' => TokenKind::Star,
                _ => TokenKind::Other,
            }
        };
        tokens.push(Token { kind, line });
        i += 1;
    }
    tokens
}

/// What a path from the crate root names: one top-level module, or all of them (`*`).
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Module(String),
    Glob,
}

/// One reference from a file to a top-level module, by the line it is on.
#[derive(Debug, Clone, PartialEq)]
struct Reference {
    line: usize,
    target: Target,
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token { kind: TokenKind::Word(w), .. }) if w == word)
}

fn is_separator(token: Option<&Token>) -> bool {
    matches!(
        token,
        Some(Token {
            kind: TokenKind::PathSeparator,
            ..
        })
    )
}

/// The top-level modules named right after a path that reached the crate root
/// (`crate::` or enough `super::`), starting at token `at`: a module name, a glob, or a
/// `{…}` group whose every item starts with a top-level module name.
fn root_targets(tokens: &[Token], at: usize) -> Vec<Reference> {
    let reference = |token: &Token| match &token.kind {
        // `self` in a group names the crate root itself, which is no module.
        TokenKind::Word(word) if word != "self" => Some(Reference {
            line: token.line,
            target: Target::Module(word.clone()),
        }),
        TokenKind::Star => Some(Reference {
            line: token.line,
            target: Target::Glob,
        }),
        _ => None,
    };
    let Some(first) = tokens.get(at) else {
        return Vec::new();
    };
    if first.kind != TokenKind::OpenBrace {
        return reference(first).into_iter().collect();
    }
    // Only the first token of each item at the group's own level names a top-level module;
    // nested groups (`tools::{a, b}`) are inside that module.
    let mut found = Vec::new();
    let mut depth = 0;
    let mut item_starts = true;
    for token in &tokens[at..] {
        match token.kind {
            TokenKind::OpenBrace => {
                depth += 1;
                item_starts = depth == 1;
                continue;
            }
            TokenKind::CloseBrace => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            TokenKind::Comma if depth == 1 => {
                item_starts = true;
                continue;
            }
            _ => {}
        }
        if item_starts && depth == 1 {
            found.extend(reference(token));
        }
        item_starts = false;
    }
    found
}

/// Every reference to a top-level module in a file's code (without comments and literals),
/// given the file's module path: `crate::x…` anywhere, and `super::…` chains that climb
/// out of the file's top-level module. Inline `mod name { … }` blocks deepen the path, so
/// `super::` inside a file's `mod tests` stays within the file's module.
fn crate_references(code: &str, file_module_path: &[String]) -> Vec<Reference> {
    let tokens = tokenize(code);
    let mut references = Vec::new();
    // The brace depth at which each enclosing inline `mod` block was opened.
    let mut inline_modules: Vec<usize> = Vec::new();
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate() {
        match &token.kind {
            TokenKind::OpenBrace => {
                let opens_module = i >= 2
                    && is_word(tokens.get(i - 2), "mod")
                    && matches!(tokens[i - 1].kind, TokenKind::Word(_));
                if opens_module {
                    inline_modules.push(depth);
                }
                depth += 1;
            }
            TokenKind::CloseBrace => {
                depth -= 1;
                if inline_modules.last() == Some(&depth) {
                    inline_modules.pop();
                }
            }
            // `$crate` in macros is the same root as `crate`.
            TokenKind::Word(word) if word == "crate" && is_separator(tokens.get(i + 1)) => {
                references.extend(root_targets(&tokens, i + 2));
            }
            TokenKind::Word(word)
                if word == "super"
                    && is_separator(tokens.get(i + 1))
                    && !(i > 0 && is_separator(tokens.get(i - 1))) =>
            {
                let mut climbs = 0;
                let mut at = i;
                while is_word(tokens.get(at), "super") && is_separator(tokens.get(at + 1)) {
                    climbs += 1;
                    at += 2;
                }
                let depth_in_crate = file_module_path.len() + inline_modules.len();
                if climbs >= depth_in_crate {
                    references.extend(root_targets(&tokens, at));
                }
            }
            _ => {}
        }
    }
    references
}

/// The layer violations in one source file of a top-level module that is in the table,
/// each as `label:LINE: from (layer a) uses crate::to (layer b)`.
fn layer_violations(label: &str, file_module_path: &[String], source: &str) -> Vec<String> {
    let Some(from) = file_module_path.first() else {
        return Vec::new();
    };
    let Some(from_layer) = layer_of(from) else {
        return vec![not_in_table(from, label)];
    };
    let code = blank_comments_and_literals(source);
    crate_references(&code, file_module_path)
        .into_iter()
        .filter_map(|reference| {
            let line = reference.line;
            match reference.target {
                Target::Glob => Some(format!(
                    "{label}:{line}: {from} (layer {from_layer}) uses crate::* \
                     (every module; name the modules it needs instead)"
                )),
                Target::Module(to) => {
                    // Names outside the table are items of the crate root, or modules
                    // reported on their own as missing from the table.
                    let to_layer = layer_of(&to)?;
                    let allowed = to == *from || to_layer < from_layer;
                    (!allowed).then(|| {
                        format!(
                            "{label}:{line}: {from} (layer {from_layer}) uses crate::{to} \
                             (layer {to_layer})"
                        )
                    })
                }
            }
        })
        .collect()
}

fn not_in_table(module: &str, label: &str) -> String {
    format!(
        "{label}: top-level module `{module}` is not in the layer table; \
         add it to LAYERS in tests/layers.rs at the layer where it belongs"
    )
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// All problems in a source tree: top-level modules missing from the table (once each),
/// then every layer violation, by file and line.
fn check_tree(src: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    // Module name → the first file seen for it, to report each unknown module once.
    let mut unknown_modules: BTreeMap<String, String> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("file under src/");
        let top = relative
            .iter()
            .next()
            .map(|part| part.to_string_lossy().into_owned())
            .unwrap_or_default();
        if EXEMPT.contains(&top.as_str()) {
            continue;
        }
        let label = format!("src/{}", relative.to_string_lossy().replace('\\', "/"));
        let path = module_path(relative);
        let Some(module) = path.first() else {
            continue;
        };
        if layer_of(module).is_none() {
            unknown_modules.entry(module.clone()).or_insert(label);
            continue;
        }
        let source =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        problems.extend(layer_violations(&label, &path, &source));
    }
    let unknown = unknown_modules
        .iter()
        .map(|(module, label)| not_in_table(module, label));
    unknown.chain(problems).collect()
}

#[test]
fn layers_point_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(
        !rust_files(&src).is_empty(),
        "no sources in {}",
        src.display()
    );
    let problems = check_tree(&src);
    assert!(
        problems.is_empty(),
        "imports must point down the layers (see LAYERS in tests/layers.rs); {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself, on synthetic sources.
mod checker {
    use super::*;

    fn path(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|part| part.to_string()).collect()
    }

    /// The problems reported for a synthetic file of the given module path.
    fn violations(module: &[&str], source: &str) -> Vec<String> {
        layer_violations("src/test.rs", &path(module), source)
    }

    #[test]
    fn a_use_of_a_higher_layer_is_reported_with_its_line() {
        let source = "//! A backend.\n\nuse crate::tools::ToolDef;\nuse crate::util::clamp;\n";
        assert_eq!(
            violations(&["cluster", "demo"], source),
            ["src/test.rs:3: cluster (layer 1) uses crate::tools (layer 2)"]
        );
    }

    #[test]
    fn grouped_uses_name_each_top_level_module() {
        let source = "use crate::{\n    util::clamp,\n    pipeline::{Pipeline, stage::{A, B}},\n    \
                      cluster::{self, view},\n    mcp,\n};\n";
        assert_eq!(
            violations(&["tools"], source),
            [
                "src/test.rs:3: tools (layer 2) uses crate::pipeline (layer 3)",
                "src/test.rs:5: tools (layer 2) uses crate::mcp (layer 4)",
            ]
        );
    }

    #[test]
    fn inline_paths_in_code_and_tests_are_references() {
        let source = "fn f() {\n    let _ = crate::cli::run();\n}\n\n#[cfg(test)]\nmod tests {\n    \
                      fn g() { crate::app::App::new(); }\n}\n";
        assert_eq!(
            violations(&["pipeline"], source),
            [
                "src/test.rs:2: pipeline (layer 3) uses crate::cli (layer 6)",
                "src/test.rs:7: pipeline (layer 3) uses crate::app (layer 5)",
            ]
        );
    }

    #[test]
    fn siblings_of_one_layer_may_not_use_each_other() {
        assert_eq!(
            violations(&["cluster"], "use crate::runbooks::Index;\n"),
            ["src/test.rs:1: cluster (layer 1) uses crate::runbooks (layer 1)"]
        );
        assert!(violations(&["cluster", "view"], "use crate::cluster::Backend;\n").is_empty());
    }

    #[test]
    fn comments_and_literals_are_not_references() {
        let source = r####"// use crate::cli;
/// Calls crate::cli::run.
//! See crate::mcp.
/* crate::cli /* nested crate::cli */ still a comment crate::mcp */
const A: &str = "crate::cli";
const B: &str = "escaped \" crate::cli \\";
const C: &str = r"crate::cli \";
const D: &str = r#"a "quoted" crate::cli"#;
const E: &[u8] = br##"crate::cli "# still"##;
const F: char = '"';
const G: char = '\'';
fn h<'a>(x: &'a str) -> &'a str { x }
"####;
        assert!(violations(&["util"], source).is_empty());
    }

    #[test]
    fn code_after_literals_is_still_read() {
        let source =
            "const Q: char = '\"';\nconst S: &str = r#\"x\"#; fn f() { crate::tools::f(); }\n";
        assert_eq!(
            violations(&["util"], source),
            ["src/test.rs:2: util (layer 0) uses crate::tools (layer 2)"]
        );
    }

    #[test]
    fn super_that_climbs_to_the_crate_root_is_a_reference() {
        // In src/cluster/mod.rs, `super` is the crate root.
        assert_eq!(
            violations(
                &["cluster"],
                "use super::tools::ToolDef;\nuse super::util::x;\n"
            ),
            ["src/test.rs:1: cluster (layer 1) uses crate::tools (layer 2)"]
        );
        // In src/tools/pods.rs, `super::super` is the crate root; one `super` is tools.
        assert_eq!(
            violations(
                &["tools", "pods"],
                "use super::{lookup, ToolDef};\nuse super::super::{cluster, mcp::Server};\n"
            ),
            ["src/test.rs:2: tools (layer 2) uses crate::mcp (layer 4)"]
        );
        // Inside an inline module `super` climbs to the file's own module.
        let in_tests =
            "#[cfg(test)]\nmod tests {\n    use super::*;\n    fn f() { super::mcp(); }\n}\n";
        assert!(violations(&["tools"], in_tests).is_empty());
        // `pub(super)` names no path.
        assert!(violations(&["tools"], "pub(super) fn f() {}\n").is_empty());
    }

    #[test]
    fn a_glob_of_the_crate_root_is_reported() {
        assert_eq!(
            violations(&["tools"], "use crate::*;\n"),
            [
                "src/test.rs:1: tools (layer 2) uses crate::* (every module; name the modules it needs instead)"
            ]
        );
    }

    #[test]
    fn a_module_missing_from_the_table_is_reported() {
        let problems = violations(&["telemetry"], "use crate::util::x;\n");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("`telemetry` is not in the layer table")
                && problems[0].contains("add it to LAYERS"),
            "{problems:?}"
        );
    }

    #[test]
    fn module_paths_follow_the_file_layout() {
        assert_eq!(module_path(Path::new("app.rs")), path(&["app"]));
        assert_eq!(module_path(Path::new("tools/mod.rs")), path(&["tools"]));
        assert_eq!(
            module_path(Path::new("tools/pods.rs")),
            path(&["tools", "pods"])
        );
        assert_eq!(
            module_path(Path::new("runbooks/index/bm25.rs")),
            path(&["runbooks", "index", "bm25"])
        );
    }
}
