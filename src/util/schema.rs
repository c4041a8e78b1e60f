//! JSON Schema clean-up for what clients validate: only the formats JSON Schema 2020-12
//! defines. Schema generators add their own (`uint`, `int64`, `double`…); hosts warn about them
//! (MCP Inspector prints one warning per occurrence) or may reject the schema, so they become
//! the standard keywords that say the same (`minimum`, `maximum`) or are dropped.

use serde_json::{Map, Value, json};

/// The formats JSON Schema 2020-12 defines (Validation, section 7.3).
pub const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Replaces every non-standard `format` in a schema, recursively.
pub fn standard_formats(schema: &mut Map<String, Value>) {
    if let Some(Value::String(format)) = schema.get("format")
        && !STANDARD_FORMATS.contains(&format.as_str())
    {
        let format = format.clone();
        schema.remove("format");
        let range: Option<(Value, Option<Value>)> = match format.as_str() {
            "uint" | "uint64" | "uint128" => Some((json!(0), None)),
            "uint8" => Some((json!(0), Some(json!(u8::MAX)))),
            "uint16" => Some((json!(0), Some(json!(u16::MAX)))),
            "uint32" => Some((json!(0), Some(json!(u32::MAX)))),
            "int8" => Some((json!(i8::MIN), Some(json!(i8::MAX)))),
            "int16" => Some((json!(i16::MIN), Some(json!(i16::MAX)))),
            "int32" => Some((json!(i32::MIN), Some(json!(i32::MAX)))),
            // int64, float, double and others: the type says enough.
            _ => None,
        };
        if let Some((minimum, maximum)) = range {
            schema.entry("minimum").or_insert(minimum);
            if let Some(maximum) = maximum {
                schema.entry("maximum").or_insert(maximum);
            }
        }
    }
    for value in schema.values_mut() {
        standard_formats_in(value);
    }
}

fn standard_formats_in(value: &mut Value) {
    match value {
        Value::Object(map) => standard_formats(map),
        Value::Array(items) => items.iter_mut().for_each(standard_formats_in),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_formats_become_ranges() {
        let mut schema = json!({
            "properties": {
                "count": {"type": "integer", "format": "uint", "minimum": 0},
                "code": {"type": ["integer", "null"], "format": "int32"},
                "score": {"type": "number", "format": "float"},
                "at": {"type": "string", "format": "date-time"},
                "items": {"type": "array", "items": {"type": "integer", "format": "uint8"}},
            }
        });
        standard_formats(schema.as_object_mut().unwrap());
        assert_eq!(
            schema["properties"],
            json!({
                "count": {"type": "integer", "minimum": 0},
                "code": {"type": ["integer", "null"], "minimum": i32::MIN, "maximum": i32::MAX},
                "score": {"type": "number"},
                "at": {"type": "string", "format": "date-time"},
                "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
            })
        );
    }
}
