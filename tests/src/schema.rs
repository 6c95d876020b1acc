//! A checker for the subset of JSON Schema that docs/openapi.json uses: `type` (one or a list,
//! with `null`), `properties`, `required`, `additionalProperties: false`, `items`, `enum`,
//! `$ref` into `#/components/schemas`, `minimum`, `pattern` and `description`. Any other
//! keyword is reported, so the document cannot say more than what is checked.

use serde_json::Value;

/// Keywords this checker understands.
const KNOWN: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "$ref",
    "minimum",
    "pattern",
    "description",
];

/// Checks `value` against `schema` (resolving `$ref` in `document`); returns every mismatch,
/// each naming where in the value it is (`$.blocks[0].link`).
pub fn check(document: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check_at(document, schema, value, "$", &mut errors);
    errors
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

fn check_at(document: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(keywords) = schema.as_object() else {
        errors.push(format!("{at}: the schema is not an object"));
        return;
    };
    for keyword in keywords.keys() {
        if !KNOWN.contains(&keyword.as_str()) {
            errors.push(format!("{at}: unsupported schema keyword {keyword:?}"));
        }
    }
    if let Some(reference) = keywords.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix("#/")
            .map(|path| {
                path.split('/')
                    .try_fold(document, |node, part| node.get(part))
            })
            .unwrap_or(None);
        match target {
            Some(target) => check_at(document, target, value, at, errors),
            None => errors.push(format!("{at}: unresolved $ref {reference}")),
        }
    }
    if let Some(types) = keywords.get("type") {
        let names: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.iter().any(|name| type_matches(name, value)) {
            errors.push(format!("{at}: {value} is not of type {types}"));
            return;
        }
    }
    if let Some(allowed) = keywords.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(minimum), Some(number)) = (
        keywords.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && number < minimum
    {
        errors.push(format!("{at}: {number} is below the minimum {minimum}"));
    }
    if let (Some(pattern), Some(text)) = (
        keywords.get("pattern").and_then(Value::as_str),
        value.as_str(),
    ) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(text) => {}
            Ok(_) => errors.push(format!("{at}: {text:?} does not match {pattern}")),
            Err(error) => errors.push(format!("{at}: invalid pattern {pattern}: {error}")),
        }
    }
    if let Some(object) = value.as_object() {
        let properties = keywords.get("properties").and_then(Value::as_object);
        for name in keywords
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                errors.push(format!("{at}: required field {name:?} is missing"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(schema) => check_at(document, schema, field, &format!("{at}.{name}"), errors),
                None if keywords.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: undocumented field {name:?}"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (keywords.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check_at(document, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;
    use serde_json::json;

    #[test]
    fn mismatches_are_found_and_named() {
        let document = json!({"components": {"schemas": {"Hash": {"type": "string", "pattern": "^[0-9a-f]{4}$"}}}});
        let schema = json!({
            "type": "object",
            "properties": {
                "hash": {"$ref": "#/components/schemas/Hash"},
                "link": {"type": ["string", "null"]},
                "n": {"type": "integer", "minimum": 1},
                "kind": {"enum": ["a", "b"]},
                "list": {"type": "array", "items": {"type": "integer"}}
            },
            "required": ["hash", "link"],
            "additionalProperties": false
        });
        let good = json!({"hash": "00ff", "link": null, "n": 2, "kind": "a", "list": [1, 2]});
        assert!(check(&document, &schema, &good).is_empty());
        let bad = json!({"hash": "00FF", "n": 0, "kind": "c", "list": [1, "x"], "extra": 1});
        let errors = check(&document, &schema, &bad);
        for expected in [
            "$.hash: \"00FF\" does not match",
            "required field \"link\" is missing",
            "$.n: 0 is below the minimum",
            "$.kind: \"c\" is not one of",
            "$.list[1]: \"x\" is not of type",
            "undocumented field \"extra\"",
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(expected) || e.contains(expected)),
                "{expected} not in {errors:?}"
            );
        }
        assert!(!check(&document, &json!({"oneOf": []}), &json!(1)).is_empty());
    }
}
