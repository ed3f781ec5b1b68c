//! A schemars JSON Schema (draft 2020-12, subschemas inlined) turned into a Kubernetes
//! structural schema (`openAPIV3Schema` of an `apiextensions.k8s.io/v1` CRD).
//!
//! The rules a structural schema keeps, and how each JSON Schema construct our types produce
//! maps onto them:
//!
//! - every node has one `type`, except free-form JSON (`serde_json::Value`): that node is
//!   `x-kubernetes-preserve-unknown-fields: true` and nothing else; a free-form object
//!   (`Map<String, Value>`) keeps `type: object` with the same flag;
//! - an optional field (`Option<T>`: `type: [T, "null"]` or `anyOf: [T, {type: null}]`) is
//!   `T`, left out of `required`; not `nullable`, so the API server prunes an explicit `null`
//!   the way our serde reads a missing field;
//! - a string enum written as `oneOf` of `const`s (variants with doc comments) is one `enum`;
//! - any other alternative (an untagged enum: a string or an object) cannot be structural
//!   without CEL: the node admits any JSON and our validation decides;
//! - no `$ref`, `$defs` or `definitions` (subschemas are inlined; a recursive type is an
//!   error), no `title`, no `$schema`; integer formats become `int32`/`int64` or are dropped,
//!   their bounds kept;
//! - a keyword this module does not know is an error, so a new serde or schemars construct
//!   cannot slip into the CRD unconverted.

use serde_json::{Map, Value, json};

use super::CrdError;

/// The flag Kubernetes reads as "keep whatever is here".
pub(crate) const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";

/// Keywords copied as they are.
const KEPT: [&str; 10] = [
    "required",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "default",
    PRESERVE,
];

/// Keywords dropped: documentation-only or meaningless to Kubernetes.
const DROPPED: [&str; 4] = ["$schema", "title", "examples", "deprecated"];

fn unsupported(path: &str, message: impl Into<String>) -> CrdError {
    CrdError::Unsupported {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A node that admits any JSON value.
fn free_form() -> Map<String, Value> {
    let mut node = Map::new();
    node.insert(PRESERVE.into(), Value::Bool(true));
    node
}

/// A doc comment as `kubectl explain` shows it: each paragraph on one line, intra-doc links
/// as plain code.
fn description(text: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect();
    paragraphs
        .join("\n\n")
        .replace("[`", "`")
        .replace("`]", "`")
}

/// `node` with `description` and `type` first (the order people read a schema in).
fn ordered(node: Map<String, Value>) -> Map<String, Value> {
    let mut ordered = Map::new();
    for key in ["description", "type"] {
        if let Some(value) = node.get(key) {
            ordered.insert(key.to_owned(), value.clone());
        }
    }
    for (key, value) in node {
        if !ordered.contains_key(&key) {
            ordered.insert(key, value);
        }
    }
    ordered
}

/// The one non-null type of a `type` keyword.
fn single_type(value: &Value, path: &str) -> Result<Option<String>, CrdError> {
    let types: Vec<&str> = match value {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Err(unsupported(path, "type is neither a string nor a list")),
    };
    let mut non_null = types.into_iter().filter(|t| *t != "null");
    match (non_null.next(), non_null.next()) {
        (Some(one), None) => Ok(Some(one.to_owned())),
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(unsupported(path, "a node of several types")),
    }
}

/// The Kubernetes format of an integer or number format, if it has one.
fn format(value: &Value) -> Option<&'static str> {
    match value.as_str()? {
        "int64" | "uint64" => Some("int64"),
        "int32" => Some("int32"),
        "double" => Some("double"),
        "float" => Some("float"),
        _ => None,
    }
}

/// The string values of a `oneOf`/`anyOf` of constants (or enums), when it is one.
fn string_constants(alternatives: &[&Value]) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    for alternative in alternatives {
        if let Some(constant) = alternative.get("const") {
            values.push(constant.as_str().map(Value::from)?);
        } else if let Some(Value::Array(members)) = alternative.get("enum") {
            for member in members {
                values.push(member.as_str().map(Value::from)?);
            }
        } else {
            return None;
        }
    }
    Some(values)
}

/// `anyOf`/`oneOf`: an optional value, a string enum, or free-form.
fn alternatives(value: &Value, path: &str) -> Result<Map<String, Value>, CrdError> {
    let Value::Array(all) = value else {
        return Err(unsupported(path, "anyOf/oneOf is not a list"));
    };
    let present: Vec<&Value> = all
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
        .collect();
    if let [one] = present.as_slice() {
        return structural(one, path);
    }
    if let Some(values) = string_constants(&present) {
        let mut node = Map::new();
        node.insert("type".into(), "string".into());
        node.insert("enum".into(), Value::Array(values));
        return Ok(node);
    }
    Ok(free_form())
}

/// The structural form of `schema`; `path` (`spec.routes[].path`) names it in errors.
pub(crate) fn structural(schema: &Value, path: &str) -> Result<Map<String, Value>, CrdError> {
    let object = match schema {
        Value::Bool(true) => return Ok(free_form()),
        Value::Object(object) => object,
        _ => return Err(unsupported(path, "a schema that admits nothing")),
    };
    let mut node = match object.get("anyOf").or_else(|| object.get("oneOf")) {
        Some(choices) => alternatives(choices, path)?,
        None => Map::new(),
    };
    let mut open = false;
    for (key, value) in object {
        match key.as_str() {
            "anyOf" | "oneOf" => {}
            "description" => {
                let text = value.as_str().unwrap_or_default();
                node.insert(key.clone(), description(text).into());
            }
            "type" => {
                if let Some(one) = single_type(value, path)? {
                    node.insert(key.clone(), one.into());
                }
            }
            "properties" => {
                let Value::Object(fields) = value else {
                    return Err(unsupported(path, "properties is not an object"));
                };
                let mut properties = Map::new();
                for (name, field) in fields {
                    let field = structural(field, &format!("{path}.{name}"))?;
                    properties.insert(name.clone(), Value::Object(field));
                }
                node.insert(key.clone(), Value::Object(properties));
            }
            "additionalProperties" => match value {
                Value::Bool(true) => open = true,
                Value::Bool(false) => {}
                entry => {
                    let entry = structural(entry, &format!("{path}.*"))?;
                    node.insert(key.clone(), Value::Object(entry));
                }
            },
            "items" => {
                let item = structural(value, &format!("{path}[]"))?;
                node.insert(key.clone(), Value::Object(item));
            }
            "format" => {
                if let Some(format) = format(value) {
                    node.insert(key.clone(), format.into());
                }
            }
            "enum" => {
                let Value::Array(members) = value else {
                    return Err(unsupported(path, "enum is not a list"));
                };
                let members = members.iter().filter(|m| !m.is_null()).cloned();
                node.insert(key.clone(), Value::Array(members.collect()));
            }
            "const" => {
                node.insert("enum".into(), json!([value]));
            }
            "$ref" => return Err(unsupported(path, "a recursive type ($ref)")),
            kept if KEPT.contains(&kept) => {
                node.insert(key.clone(), value.clone());
            }
            dropped if DROPPED.contains(&dropped) => {}
            other => return Err(unsupported(path, format!("the keyword {other:?}"))),
        }
    }
    let typed = node.get("type").and_then(Value::as_str);
    let free_object = typed == Some("object")
        && !node.contains_key("properties")
        && !node.contains_key("additionalProperties");
    if open && node.contains_key("properties") {
        return Err(unsupported(
            path,
            "an object with fields and free-form extras",
        ));
    }
    if (typed.is_none() && !node.contains_key(PRESERVE)) || free_object {
        node.insert(PRESERVE.into(), Value::Bool(true));
    }
    Ok(ordered(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_lose_null_and_keep_their_bounds() {
        let node = structural(
            &json!({"type": ["integer", "null"], "format": "uint16", "minimum": 1, "maximum": 65535}),
            "port",
        )
        .unwrap();
        assert_eq!(
            Value::Object(node),
            json!({"type": "integer", "minimum": 1, "maximum": 65535})
        );
        let node = structural(
            &json!({"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "null"}], "description": "[`X`] or not"}),
            "x",
        )
        .unwrap();
        assert_eq!(
            Value::Object(node),
            json!({"description": "`X` or not", "type": "object", "properties": {"a": {"type": "string"}}})
        );
    }

    #[test]
    fn documented_variants_become_one_enum_and_untagged_ones_free_form() {
        let node = structural(
            &json!({"oneOf": [{"type": "string", "const": "a", "description": "A"}, {"type": "string", "enum": ["b"]}]}),
            "e",
        )
        .unwrap();
        assert_eq!(
            Value::Object(node),
            json!({"type": "string", "enum": ["a", "b"]})
        );
        let node = structural(
            &json!({"anyOf": [{"type": "string"}, {"type": "object", "properties": {}}]}),
            "price",
        )
        .unwrap();
        assert_eq!(Value::Object(node), json!({PRESERVE: true}));
    }

    #[test]
    fn free_form_json_is_preserved() {
        assert_eq!(
            Value::Object(structural(&json!(true), "v").unwrap()),
            json!({PRESERVE: true})
        );
        assert_eq!(
            Value::Object(
                structural(
                    &json!({"type": "object", "additionalProperties": true}),
                    "m"
                )
                .unwrap()
            ),
            json!({"type": "object", PRESERVE: true})
        );
        assert_eq!(
            Value::Object(
                structural(
                    &json!({"type": "object", "additionalProperties": {"type": "string"}}),
                    "labels"
                )
                .unwrap()
            ),
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        );
    }

    #[test]
    fn what_cannot_be_structural_is_an_error_naming_the_field() {
        for (schema, expected) in [
            (json!({"$ref": "#/$defs/Node"}), "recursive"),
            (json!({"type": ["string", "integer"]}), "several types"),
            (
                json!({"type": "string", "contentEncoding": "base64"}),
                "contentEncoding",
            ),
        ] {
            let error = structural(&schema, "spec.x").unwrap_err().to_string();
            assert!(
                error.contains("spec.x") && error.contains(expected),
                "{error}"
            );
        }
    }
}
