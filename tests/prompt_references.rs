//! Every tool, argument and resource that the server's instructions and prompts name
//! exists. The texts are written by hand, so a renamed tool, argument or output field
//! would otherwise leave a model calling something that is not there. The test asks the
//! real binary over stdio for its tools, resources, instructions and rendered prompts, and
//! checks each text against that vocabulary:
//! - a call form `some_tool(a=…, b)` names a tool, and each argument name is one of its
//!   input properties;
//! - any other snake_case word is a tool, an argument of some tool or a field of some
//!   output schema;
//! - a URI `scheme://…` has the scheme of a listed resource or resource template.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use rmcp::model::{GetPromptRequestParams, Tool};
use serde_json::{Map, Value};

/// A value for each prompt argument a prompt may declare, so that every prompt can be
/// rendered; a new argument needs a plausible value here.
const PLAUSIBLE_ARGUMENTS: &[(&str, &str)] = &[
    ("service", "payment-gateway"),
    ("namespace", "payments"),
    ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("description", "checkout returns 502"),
    ("symptoms", "502s"),
];

/// The argument the pipeline adds to every tool (to cap the reply's size in tokens).
const PIPELINE_ARGUMENT: &str = "max_tokens";

/// snake_case words the texts may use that are not tool vocabulary. Keep it to words that
/// really are something else (a command-line flag, a Kubernetes field…), with the reason.
const NOT_TOOL_VOCABULARY: &[&str] = &[];

/// What the server offers, as the texts may name it.
#[derive(Debug, Default)]
struct Vocabulary {
    /// Tool name → the names of its input properties.
    tools: BTreeMap<String, BTreeSet<String>>,
    /// Every property name anywhere in any tool's output schema.
    output_fields: BTreeSet<String>,
    /// The schemes of the listed resources and resource templates.
    resource_schemes: BTreeSet<String>,
}

impl Vocabulary {
    /// The vocabulary of the listed tools, and the schemes of the listed resource URIs.
    fn new(tools: &[Tool], resource_uris: &[&str]) -> Vocabulary {
        let mut vocabulary = Vocabulary::default();
        for tool in tools {
            let arguments = match tool.input_schema.get("properties") {
                Some(Value::Object(properties)) => properties.keys().cloned().collect(),
                _ => BTreeSet::new(),
            };
            vocabulary.tools.insert(tool.name.to_string(), arguments);
            if let Some(schema) = &tool.output_schema {
                collect_property_names(
                    &Value::Object((**schema).clone()),
                    &mut vocabulary.output_fields,
                );
            }
        }
        vocabulary.resource_schemes = resource_uris
            .iter()
            .filter_map(|uri| uri.split_once("://").map(|(scheme, _)| scheme.to_string()))
            .collect();
        vocabulary
    }

    fn takes_argument(&self, tool: &str, argument: &str) -> bool {
        argument == PIPELINE_ARGUMENT
            || self
                .tools
                .get(tool)
                .is_some_and(|arguments| arguments.contains(argument))
    }

    fn knows_word(&self, word: &str) -> bool {
        self.tools.contains_key(word)
            || word == PIPELINE_ARGUMENT
            || self
                .tools
                .values()
                .any(|arguments| arguments.contains(word))
            || self.output_fields.contains(word)
            || NOT_TOOL_VOCABULARY.contains(&word)
    }
}

/// Adds the keys of every `properties` object in a JSON Schema, at any depth (nested
/// objects, array items, `$defs`).
fn collect_property_names(schema: &Value, names: &mut BTreeSet<String>) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = object.get("properties") {
                names.extend(properties.keys().cloned());
            }
            object
                .values()
                .for_each(|value| collect_property_names(value, names));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|value| collect_property_names(value, names)),
        _ => {}
    }
}

/// A lower-case word with at least one underscore between letters or digits: `list_pods`,
/// `hours_back`, `trace_id`.
fn is_snake_case(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_lowercase())
        && word.contains('_')
        && word.split('_').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// The words of a text (maximal runs of ASCII letters, digits and `_`) with their byte
/// ranges.
fn words(text: &str) -> Vec<(Range<usize>, &str)> {
    let is_word_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (start, is_word_char(c)) {
            (None, true) => start = Some(i),
            (Some(from), false) => {
                found.push((from..i, &text[from..i]));
                start = None;
            }
            _ => {}
        }
    }
    found
}

/// A call form in a text: a snake_case word directly followed by `(`.
#[derive(Debug, PartialEq)]
struct Call<'a> {
    tool: &'a str,
    tool_range: Range<usize>,
    /// What is between the parentheses, and where; `None` when the call is not closed.
    arguments: Option<(usize, &'a str)>,
    /// The whole call as written, for messages.
    written: &'a str,
}

fn find_calls(text: &str) -> Vec<Call<'_>> {
    words(text)
        .into_iter()
        .filter(|(range, word)| is_snake_case(word) && text[range.end..].starts_with('('))
        .map(|(range, tool)| {
            let open = range.end;
            let close = closing_parenthesis(text, open);
            Call {
                tool,
                tool_range: range.clone(),
                arguments: close.map(|close| (open + 1, &text[open + 1..close])),
                written: &text[range.start..close.map_or(open + 1, |close| close + 1)],
            }
        })
        .collect()
}

/// The characters of `text` that are outside double-quoted strings (which may hold brackets
/// and commas), with their byte offsets.
fn outside_strings(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    text.char_indices().filter(move |&(_, c)| {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            return false;
        }
        if c == '"' {
            in_string = true;
            return false;
        }
        true
    })
}

/// The byte index of the `)` that closes the `(` at `open`, skipping nested brackets and
/// double-quoted strings (which may hold parentheses).
fn closing_parenthesis(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in outside_strings(&text[open..]) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits call arguments at the commas outside quotes and brackets (`<placeholders>`
/// included), each piece with its byte offset in `arguments`.
fn split_arguments(arguments: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in outside_strings(arguments) {
        match c {
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push((start, &arguments[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    if !arguments[start..].trim().is_empty() || !pieces.is_empty() {
        pieces.push((start, &arguments[start..]));
    }
    pieces
}

/// The name an argument passes, with its byte offset in `argument`: the word before `=`,
/// or the bare word when there is no `=`. Values alone (`"text"`, `<its namespace>`, `24`)
/// name nothing.
fn argument_name(argument: &str) -> Option<(usize, &str)> {
    let name = argument.split('=').next().unwrap_or(argument);
    let offset = name.len() - name.trim_start().len();
    let name = name.trim();
    let is_identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_identifier.then_some((offset, name))
}

/// URIs in a text (`scheme://rest`), as the byte range of the whole URI and its scheme.
fn uris(text: &str) -> Vec<(Range<usize>, &str)> {
    let is_scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let ends_uri = |c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '(' | ')' | ',');
    text.match_indices("://")
        .filter_map(|(at, _)| {
            let start = text[..at]
                .char_indices()
                .rev()
                .take_while(|&(_, c)| is_scheme_char(c))
                .last()
                .map(|(i, _)| i)?;
            let scheme = &text[start..at];
            if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return None;
            }
            let rest = &text[at + 3..];
            let end = at + 3 + rest.find(ends_uri).unwrap_or(rest.len());
            // A sentence may end right after the URI.
            let end = start + text[start..end].trim_end_matches(['.', ';', ':']).len();
            Some((start..end, scheme))
        })
        .collect()
}

/// The text around a byte range, on one line, for a message.
fn context(text: &str, range: &Range<usize>) -> String {
    let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[range.end..]
        .find('\n')
        .map_or(text.len(), |i| range.end + i);
    let mut from = range.start.saturating_sub(50).max(line_start);
    let mut to = (range.end + 50).min(line_end);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    while !text.is_char_boundary(to) {
        to += 1;
    }
    let before = if from > line_start { "…" } else { "" };
    let after = if to < line_end { "…" } else { "" };
    format!("{before}{}{after}", &text[from..to])
}

/// Every problem in one text (`source` says where it is from, for the messages).
fn check_text(source: &str, text: &str, vocabulary: &Vocabulary) -> Vec<String> {
    let mut problems = Vec::new();
    // Words already checked as a tool or an argument name, or inside a URI, are not
    // checked again as prose.
    let mut checked: Vec<Range<usize>> = Vec::new();

    for call in find_calls(text) {
        checked.push(call.tool_range.clone());
        let Some(arguments) = vocabulary.tools.get(call.tool) else {
            problems.push(format!(
                "{source}: calls `{}`, but there is no tool `{}`",
                call.written, call.tool
            ));
            continue;
        };
        let Some((arguments_start, written_arguments)) = call.arguments else {
            problems.push(format!(
                "{source}: `{}` has no closing parenthesis",
                context(text, &call.tool_range)
            ));
            continue;
        };
        for (piece_start, piece) in split_arguments(written_arguments) {
            let Some((name_start, name)) = argument_name(piece) else {
                continue;
            };
            let start = arguments_start + piece_start + name_start;
            checked.push(start..start + name.len());
            if !vocabulary.takes_argument(call.tool, name) {
                let known: Vec<&str> = arguments.iter().map(String::as_str).collect();
                problems.push(format!(
                    "{source}: `{}` passes `{name}`, which `{}` does not take (it takes: {})",
                    call.written,
                    call.tool,
                    known.join(", ")
                ));
            }
        }
    }

    for (range, scheme) in uris(text) {
        checked.push(range.clone());
        if !vocabulary.resource_schemes.contains(scheme) {
            let known: Vec<&str> = vocabulary
                .resource_schemes
                .iter()
                .map(String::as_str)
                .collect();
            problems.push(format!(
                "{source}: mentions `{}`, but no resource or resource template has the scheme \
                 `{scheme}` (schemes: {})",
                &text[range],
                known.join(", ")
            ));
        }
    }

    for (range, word) in words(text) {
        let already_checked = checked
            .iter()
            .any(|done| done.start <= range.start && range.end <= done.end);
        if already_checked || !is_snake_case(word) || vocabulary.knows_word(word) {
            continue;
        }
        problems.push(format!(
            "{source}: mentions `{word}`, which is no tool, tool argument or output field: \"{}\"",
            context(text, &range)
        ));
    }
    problems
}

/// The texts of a prompt's message contents, joined.
fn message_text(result: &rmcp::model::GetPromptResult) -> String {
    result
        .messages
        .iter()
        .filter_map(|message| message.content.as_text().map(|text| text.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn instructions_and_prompts_name_only_what_the_server_offers() {
    let client = common::start(&["--no-embeddings"]).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let resources = client.list_all_resources().await.expect("resources/list");
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    let resource_uris: Vec<&str> = resources
        .iter()
        .map(|resource| resource.uri.as_str())
        .chain(
            templates
                .iter()
                .map(|template| template.uri_template.as_str()),
        )
        .collect();
    let vocabulary = Vocabulary::new(&tools, &resource_uris);
    assert!(
        !vocabulary.tools.is_empty() && !vocabulary.output_fields.is_empty(),
        "the server lists no tools or no output fields: {vocabulary:?}"
    );

    // A set: the same problem in two renderings of one prompt is reported once.
    let mut problems = BTreeSet::new();
    let mut calls_seen = 0;
    match client
        .peer_info()
        .and_then(|info| info.instructions.clone())
    {
        Some(instructions) => {
            problems.extend(check_text("instructions", &instructions, &vocabulary))
        }
        None => {
            problems.insert("the server sends no instructions".to_string());
        }
    }

    let prompts = client.list_all_prompts().await.expect("prompts/list");
    assert!(!prompts.is_empty(), "the server lists no prompts");
    for prompt in &prompts {
        let source = format!("prompt {}", prompt.name);
        let declared = prompt.arguments.clone().unwrap_or_default();
        let mut all = Map::new();
        let mut required = Map::new();
        for argument in &declared {
            let Some((_, value)) = PLAUSIBLE_ARGUMENTS
                .iter()
                .find(|(name, _)| *name == argument.name)
            else {
                problems.insert(format!(
                    "{source}: argument `{}` has no value in PLAUSIBLE_ARGUMENTS \
                     (tests/prompt_references.rs); add one",
                    argument.name
                ));
                continue;
            };
            all.insert(argument.name.clone(), Value::from(*value));
            if argument.required == Some(true) {
                required.insert(argument.name.clone(), Value::from(*value));
            }
        }
        let descriptions = prompt.description.iter().chain(
            declared
                .iter()
                .filter_map(|argument| argument.description.as_ref()),
        );
        for description in descriptions {
            problems.extend(check_text(
                &format!("{source} (description)"),
                description,
                &vocabulary,
            ));
        }
        // With every argument and with the required ones only, since optional arguments
        // change the text.
        let mut renderings = vec![all];
        if required.len() < renderings[0].len() {
            renderings.push(required);
        }
        for arguments in renderings {
            let result = client
                .get_prompt(
                    GetPromptRequestParams::new(prompt.name.clone())
                        .with_arguments(arguments.clone()),
                )
                .await
                .unwrap_or_else(|e| panic!("prompts/get {} {arguments:?}: {e}", prompt.name));
            let text = message_text(&result);
            calls_seen += find_calls(&text).len();
            problems.extend(check_text(&source, &text, &vocabulary));
        }
    }
    client.cancel().await.expect("close the client");

    // The prompts are plans made of tool calls: finding none means the scan is broken.
    assert!(calls_seen > 0, "no tool calls found in any prompt");
    assert!(
        problems.is_empty(),
        "the instructions and prompts must name only tools, arguments, fields and resources \
         the server offers; {} problem(s):\n{}",
        problems.len(),
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The scanner itself, on synthetic texts.
mod scanner {
    use super::*;

    /// Two tools, one output field and one resource scheme.
    fn vocabulary() -> Vocabulary {
        let arguments = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
        Vocabulary {
            tools: BTreeMap::from([
                (
                    "list_pods".to_string(),
                    arguments(&["namespace", "label_selector"]),
                ),
                (
                    "get_recent_deploys".to_string(),
                    arguments(&["service", "hours_back"]),
                ),
            ]),
            output_fields: BTreeSet::from(["relevant_runbooks".to_string()]),
            resource_schemes: BTreeSet::from(["runbook".to_string()]),
        }
    }

    #[test]
    fn an_unknown_tool_and_an_unknown_argument_are_reported() {
        let text = "1. list_pod(namespace=\"payments\").\n\
                    2. get_recent_deploys(service=\"x\", hours=24) — the last rollout.";
        let problems = check_text("prompt p", text, &vocabulary());
        assert_eq!(
            problems,
            [
                "prompt p: calls `list_pod(namespace=\"payments\")`, but there is no tool `list_pod`",
                "prompt p: `get_recent_deploys(service=\"x\", hours=24)` passes `hours`, which \
                 `get_recent_deploys` does not take (it takes: hours_back, service)",
            ]
        );
    }

    #[test]
    fn a_renamed_word_in_prose_is_reported() {
        let text = "Then read the recent_deploys and the relevant_runbooks of list_pods.";
        assert_eq!(
            check_text("instructions", text, &vocabulary()),
            [
                "instructions: mentions `recent_deploys`, which is no tool, tool argument or \
                 output field: \"Then read the recent_deploys and the relevant_runbooks of list_pods.\""
            ]
        );
    }

    #[test]
    fn well_formed_calls_pass() {
        let text = "list_pods(namespace=<its namespace, or any>, label_selector=\"app=a, b (c)\") \
                    then get_recent_deploys(service, hours_back=24, max_tokens=500), \
                    get_recent_deploys(service=<it>) and list_pods() — see label_selector.";
        assert_eq!(check_text("p", text, &vocabulary()), Vec::<String>::new());
    }

    #[test]
    fn calls_need_the_parenthesis_right_after_the_name() {
        // Prose in parentheses after a tool's name is no call.
        let text = "get_recent_deploys (hours back, say a day)";
        assert!(find_calls(text).is_empty());
        assert!(check_text("p", text, &vocabulary()).is_empty());
    }

    #[test]
    fn arguments_split_at_top_level_commas_only() {
        let pieces: Vec<&str> = split_arguments("a=\"x, (y\", b=<c, d>, e(f, g), h")
            .into_iter()
            .map(|(_, piece)| piece)
            .collect();
        assert_eq!(pieces, ["a=\"x, (y\"", " b=<c, d>", " e(f, g)", " h"]);
        assert!(split_arguments("").is_empty());
        assert_eq!(argument_name(" hours_back=24"), Some((1, "hours_back")));
        assert_eq!(argument_name(" pod"), Some((1, "pod")));
        assert_eq!(argument_name("<its namespace>"), None);
        assert_eq!(argument_name("\"a=b\""), None);
    }

    #[test]
    fn resource_uris_need_a_listed_scheme() {
        let text = "Read the runbook at runbook://oom_killed, or bogus://thing.";
        assert_eq!(
            check_text("p", text, &vocabulary()),
            [
                "p: mentions `bogus://thing`, but no resource or resource template has the scheme \
              `bogus` (schemes: runbook)"
            ]
        );
    }

    #[test]
    fn property_names_are_collected_at_any_depth() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"pods": {"type": "array", "items": {"$ref": "#/$defs/Pod"}}},
            "$defs": {"Pod": {"properties": {"restart_count": {}, "last_state": {
                "anyOf": [{"properties": {"exit_code": {}}}]
            }}}}
        });
        let mut names = BTreeSet::new();
        collect_property_names(&schema, &mut names);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["exit_code", "last_state", "pods", "restart_count"]
        );
    }
}
