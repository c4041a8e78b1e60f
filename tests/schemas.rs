//! Every tool's input and output schema, as a client lists them, is a valid JSON Schema 2020-12
//! document (checked against the meta-schema) and uses only the formats the specification
//! defines — hosts warn about or reject others (MCP Inspector printed 16 warnings for `uint`).

mod common;

use serde_json::Value;
use sre_mcp::util::schema::STANDARD_FORMATS;

/// Every `format` keyword in a schema, with its JSON path.
fn formats(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get("format") {
                out.push((path.to_string(), format.clone()));
            }
            for (key, child) in map {
                formats(child, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                formats(child, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_listed_schema_is_valid_2020_12_with_standard_formats_only() {
    let client = common::start(&["--no-embeddings"]).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 17);
    let mut problems = Vec::new();
    for tool in &tools {
        let mut schemas = vec![("input", Value::Object((*tool.input_schema).clone()))];
        if let Some(output) = &tool.output_schema {
            schemas.push(("output", Value::Object((**output).clone())));
        } else {
            problems.push(format!("{}: no output schema", tool.name));
        }
        for (which, schema) in schemas {
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{} {which}",
                tool.name
            );
            if let Err(error) = jsonschema::meta::validate(&schema) {
                problems.push(format!("{} {which} schema: {error}", tool.name));
            }
            let mut found = Vec::new();
            formats(&schema, "", &mut found);
            for (path, format) in found {
                if !STANDARD_FORMATS.contains(&format.as_str()) {
                    problems.push(format!(
                        "{} {which} schema {path}: non-standard format {format:?}",
                        tool.name
                    ));
                }
            }
            // Validators that know every format, strictly, accept the schema too.
            if let Err(error) = jsonschema::options()
                .should_validate_formats(true)
                .should_ignore_unknown_formats(false)
                .build(&schema)
            {
                problems.push(format!("{} {which} schema: {error}", tool.name));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    client.cancel().await.unwrap();
}
