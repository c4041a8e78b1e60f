//! Bounded input at the edge: a call's arguments are checked against the tool's input schema —
//! the one listed to the client, with the limits the params declare (`tools::limits`) — before
//! any stage or the tool does work: unknown names, JSON types, enums, string lengths in
//! characters (`maxLength`), number ranges (`minimum`/`maximum`), array lengths (`maxItems`)
//! and each item, and required arguments. A refusal names the argument, what it is (its length
//! or value) and what is valid, and repeats no more of a value than a short prefix.
//!
//! The check is linear in the size of the arguments, and a string's characters are counted
//! only when its bytes exceed its limit (a string has at least as many bytes as characters).

use rmcp::model::JsonObject;
use serde_json::{Map, Value};

use crate::tools::limits::what_string;
use crate::util::quote::{short, thousands};

/// Checks `arguments` against `schema`. `Err` is the message for the client (without the tool
/// name, which the caller adds).
pub fn check(schema: &JsonObject, arguments: &Map<String, Value>) -> Result<(), String> {
    let empty = Map::new();
    let properties = match schema.get("properties") {
        Some(Value::Object(properties)) => properties,
        _ => &empty,
    };
    let required: Vec<&str> = match schema.get("required") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, value) in arguments {
        let Some(property) = properties.get(name) else {
            if closed {
                return Err(format!(
                    "unknown argument {}; valid arguments: {}",
                    short(name),
                    list(properties.keys())
                ));
            }
            continue;
        };
        if value.is_null() {
            if required.contains(&name.as_str()) {
                return Err(format!(
                    "argument {name:?} is required; null is not a value"
                ));
            }
            continue;
        }
        check_value(schema, &format!("argument {name:?}"), property, value)?;
    }
    if let Some(missing) = required.iter().find(|r| !arguments.contains_key(**r)) {
        return Err(format!(
            "missing argument {missing:?} (required: {})",
            list(required.iter())
        ));
    }
    Ok(())
}

fn list<T: AsRef<str>>(names: impl Iterator<Item = T>) -> String {
    let names: Vec<String> = names.map(|n| n.as_ref().to_string()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A `$ref` to `#/$defs/Name` resolved in the root schema; any other property as it is.
fn resolve<'a>(root: &'a JsonObject, property: &'a Value) -> &'a Value {
    property
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name))
        .unwrap_or(property)
}

fn check_value(
    root: &JsonObject,
    label: &str,
    property: &Value,
    value: &Value,
) -> Result<(), String> {
    let property = resolve(root, property);
    if let Some(Value::Array(allowed)) = property.get("enum") {
        if allowed.contains(value) {
            return Ok(());
        }
        let got = match value {
            Value::String(s) => short(s),
            other => short(&other.to_string()),
        };
        let valid: Vec<String> = allowed
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        return Err(format!("{label} is {got}; valid: {}", valid.join(", ")));
    }
    let types: Vec<&str> = match property.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| is_type(value, t)) {
        let expected: Vec<&str> = types.iter().map(|t| type_phrase(t)).collect();
        return Err(format!(
            "{label} must be {}, not {}",
            expected.join(" or "),
            kind_of(value)
        ));
    }
    match value {
        Value::String(s) => {
            if let Some(max) = property.get("maxLength").and_then(Value::as_u64)
                && let Some(chars) = chars_over(s, max)
            {
                let what = what_string(max)
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                return Err(format!(
                    "{label} is {} characters; the limit is {}{what}",
                    thousands(chars),
                    thousands(max as usize)
                ));
            }
            if let Some(min) = property.get("minLength").and_then(Value::as_u64)
                && (s.len() as u64) < min.saturating_mul(4)
                && (s.chars().count() as u64) < min
            {
                return Err(format!("{label} is shorter than {min} characters"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let min = property.get("minimum").and_then(Value::as_f64);
            let max = property.get("maximum").and_then(Value::as_f64);
            if min.is_some_and(|min| x < min) || max.is_some_and(|max| x > max) {
                let whole = types.contains(&"integer");
                let kind = if whole { "a whole number" } else { "a number" };
                let valid = match (min, max) {
                    (Some(min), Some(max)) => {
                        format!("{kind} from {} to {}", number(min), number(max))
                    }
                    (Some(min), None) => format!("{kind} of at least {}", number(min)),
                    (None, Some(max)) => format!("{kind} of at most {}", number(max)),
                    (None, None) => unreachable!("a bound was crossed"),
                };
                let got = n
                    .as_u64()
                    .map_or_else(|| n.to_string(), |u| thousands(u as usize));
                return Err(format!("{label} is {got}; valid: {valid}"));
            }
        }
        Value::Array(items) => {
            if let Some(max) = property.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                return Err(format!(
                    "{label} has {} items; the limit is {}",
                    thousands(items.len()),
                    thousands(max as usize)
                ));
            }
            if let Some(item) = property.get("items") {
                for (i, value) in items.iter().enumerate() {
                    check_value(root, &format!("{label}[{i}]"), item, value)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The number of characters of `s` when it has more than `max`, counted only when its bytes
/// could be (at most once, linearly).
fn chars_over(s: &str, max: u64) -> Option<usize> {
    if s.len() as u64 <= max {
        return None;
    }
    let chars = s.chars().count();
    (chars as u64 > max).then_some(chars)
}

fn is_type(value: &Value, t: &str) -> bool {
    match t {
        "string" => value.is_string(),
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_phrase(t: &str) -> &str {
    match t {
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "array" => "an array",
        "object" => "an object",
        "null" => "null",
        other => other,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A bound as the schema states it: `1,000,000`, or `0.5`.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && (0.0..1e15).contains(&x) {
        thousands(x as usize)
    } else {
        x.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    fn schema() -> JsonObject {
        let Value::Object(schema) = json!({
            "$defs": {"GroupBy": {"enum": ["service", "message", "pod"], "type": "string"}},
            "additionalProperties": false,
            "properties": {
                "pod": {"type": "string", "maxLength": 253},
                "grep": {"type": "string", "maxLength": 1000},
                "note": {"type": "string", "maxLength": 5},
                "tail_lines": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                "max_tokens": {"type": "integer", "minimum": 500},
                "ratio": {"type": "number", "maximum": 0.5},
                "previous": {"type": "boolean"},
                "group_by": {"$ref": "#/$defs/GroupBy", "description": "how"},
                "tags": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 100}},
            },
            "required": ["pod"],
            "type": "object",
        }) else {
            unreachable!()
        };
        schema
    }

    fn run(arguments: Value) -> Result<(), String> {
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        check(&schema(), &arguments)
    }

    #[test]
    fn valid_arguments_pass() {
        run(json!({"pod": "web-1"})).unwrap();
        let all = json!({
            "pod": "p".repeat(253), "grep": "é".repeat(1000), "note": "ééééé",
            "tail_lines": 1_000_000, "max_tokens": 500.0, "ratio": 0.25, "previous": true,
            "group_by": "pod", "tags": vec!["t"; 16],
        });
        run(all.clone()).unwrap();
        // An optional argument may be null (the same as leaving it out).
        let mut with_null = all;
        with_null["grep"] = Value::Null;
        run(with_null).unwrap();
    }

    #[test]
    fn each_kind_of_refusal_names_the_argument_and_what_is_valid() {
        let cases = [
            (
                json!({"pod": "p".repeat(1_048_576)}),
                "argument \"pod\" is 1,048,576 characters; the limit is 253 (a Kubernetes name)",
            ),
            (
                json!({"pod": "x", "note": "ééééé!"}),
                "argument \"note\" is 6 characters; the limit is 5",
            ),
            (
                json!({"pod": "x", "colour": "red"}),
                "unknown argument \"colour\"; valid arguments: grep, group_by, max_tokens, note, pod, previous, ratio, tags, tail_lines",
            ),
            (
                json!({"pod": 7}),
                "argument \"pod\" must be a string, not a number",
            ),
            (
                json!({"pod": "x", "tail_lines": "ten"}),
                "argument \"tail_lines\" must be a whole number, not a string",
            ),
            (
                json!({"pod": "x", "tail_lines": 2.5}),
                "argument \"tail_lines\" must be a whole number, not a fractional number",
            ),
            (
                json!({"pod": "x", "tail_lines": 0}),
                "argument \"tail_lines\" is 0; valid: a whole number from 1 to 1,000,000",
            ),
            (
                json!({"pod": "x", "tail_lines": 1_000_001}),
                "argument \"tail_lines\" is 1,000,001; valid: a whole number from 1 to 1,000,000",
            ),
            (
                json!({"pod": "x", "max_tokens": 10}),
                "argument \"max_tokens\" is 10; valid: a whole number of at least 500",
            ),
            (
                json!({"pod": "x", "ratio": 0.75}),
                "argument \"ratio\" is 0.75; valid: a number of at most 0.5",
            ),
            (
                json!({"pod": "x", "previous": "yes"}),
                "argument \"previous\" must be true or false, not a string",
            ),
            (
                json!({"pod": "x", "group_by": "team"}),
                "argument \"group_by\" is \"team\"; valid: service, message, pod",
            ),
            (
                json!({"pod": "x", "tags": vec!["t"; 17]}),
                "argument \"tags\" has 17 items; the limit is 16",
            ),
            (
                json!({"pod": "x", "tags": ["ok", "t".repeat(101)]}),
                "argument \"tags\"[1] is 101 characters; the limit is 100 (a tag)",
            ),
            (
                json!({"pod": "x", "tags": ["ok", 3]}),
                "argument \"tags\"[1] must be a string, not a number",
            ),
            (json!({}), "missing argument \"pod\" (required: pod)"),
            (
                json!({"pod": null}),
                "argument \"pod\" is required; null is not a value",
            ),
        ];
        for (arguments, expected) in cases {
            assert_eq!(run(arguments.clone()).unwrap_err(), expected, "{arguments}");
        }
    }

    #[test]
    fn no_value_is_echoed_beyond_a_short_prefix() {
        let long = "k".repeat(1_000_000);
        let message = run(json!({"pod": "x", long.clone(): 1})).unwrap_err();
        assert!(message.len() < 300, "{message}");
        assert!(message.contains("(1,000,000 characters)"), "{message}");
        let message = run(json!({"pod": "x", "group_by": long})).unwrap_err();
        assert!(message.len() < 300, "{message}");
        let message = run(json!({"pod": "x", "tail_lines": 1e300})).unwrap_err();
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn a_megabyte_is_checked_in_linear_time() {
        let arguments = json!({"pod": "é".repeat(1_000_000), "grep": "x".repeat(1_000_000)});
        let started = Instant::now();
        for _ in 0..10 {
            run(arguments.clone()).unwrap_err();
        }
        // Debug build, ten 2 MB checks (clones included).
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// Whatever this check accepts, a full JSON Schema validator accepts, and the other way
    /// round, over a grid of values for each property.
    #[test]
    fn agrees_with_a_reference_validator() {
        let schema = Value::Object(schema());
        let reference = jsonschema::validator_for(&schema).unwrap();
        let values = [
            json!(null),
            json!(true),
            json!(0),
            json!(1),
            json!(-3),
            json!(0.25),
            json!(0.75),
            json!(2.0),
            json!(500),
            json!(1_000_000),
            json!(1_000_001),
            json!("web-1"),
            json!("pod"),
            json!("ééééé"),
            json!("éééééé"),
            json!("p".repeat(253)),
            json!("p".repeat(254)),
            json!("t".repeat(101)),
            json!([]),
            json!(["a", "b"]),
            json!(vec!["t"; 17]),
            json!(["t".repeat(101)]),
            json!([1]),
            json!({}),
        ];
        let names: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for name in names.iter().filter(|n| *n != "pod") {
            for value in &values {
                // Null stands for an absent optional argument here; JSON Schema has no such
                // notion, so it is left out of the comparison.
                if value.is_null() {
                    continue;
                }
                let arguments = json!({"pod": "web-1", name.clone(): value});
                let ours = run(arguments.clone());
                assert_eq!(
                    ours.is_ok(),
                    reference.is_valid(&arguments),
                    "{arguments}: {ours:?}"
                );
            }
        }
    }
}
