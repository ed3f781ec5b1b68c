//! An offer's self-description (`spec.discovery`) as the x402 Bazaar extension of its 402s
//! (shared/spec/extensions.md §3): `{info: {input, output?}, schema}`, built the way the official
//! `@x402/extensions` `declareDiscoveryExtension` builds it, so that the SDK's validator (ajv over
//! `schema`, applied to `info`) accepts it. Inference offers describe the OpenAI chat-completions
//! call by default.

use serde_json::{Map, Value, json};

use crate::offer::{DiscoverySpec, InputSpec, OfferType, OutputSpec, ServiceOffer};
use crate::validate::FieldError;

/// Query methods: the input is query parameters.
pub const QUERY_METHODS: [&str; 3] = ["GET", "HEAD", "DELETE"];
/// Body methods: the input is a body.
pub const BODY_METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];
/// Body encodings.
pub const BODY_TYPES: [&str; 3] = ["json", "form-data", "text"];
/// The largest schema or example accepted, serialised.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// At most this many tags.
pub const MAX_TAGS: usize = 5;

/// The method of an offer's calls: the declared one, else `POST` for inference, `GET` else.
fn method(input: Option<&InputSpec>, type_: OfferType) -> String {
    input
        .and_then(|i| i.method.clone())
        .unwrap_or_else(|| match type_ {
            OfferType::Inference | OfferType::FineTuning | OfferType::Agent | OfferType::Mcp => {
                "POST".into()
            }
            OfferType::Http => "GET".into(),
        })
}

/// Whether a schema refers outside the document (`$ref`/`$id` not starting with `#`).
fn has_external_reference(node: &Value) -> bool {
    match node {
        Value::Array(items) => items.iter().any(has_external_reference),
        Value::Object(map) => map.iter().any(|(key, value)| {
            ((key == "$ref" || key == "$id") && !value.as_str().is_some_and(|r| r.starts_with('#')))
                || has_external_reference(value)
        }),
        _ => false,
    }
}

/// The JSON documents (schemas and examples) of a description, by field.
fn documents(spec: &DiscoverySpec) -> Vec<(&'static str, &Value)> {
    let mut all = Vec::new();
    if let Some(i) = &spec.input {
        for (name, value) in [
            ("input.queryParams", &i.query_params),
            ("input.body", &i.body),
            ("input.headers", &i.headers),
            ("input.example", &i.example),
        ] {
            all.extend(value.as_ref().map(|v| (name, v)));
        }
    }
    if let Some(o) = &spec.output {
        for (name, value) in [("output.example", &o.example), ("output.schema", &o.schema)] {
            all.extend(value.as_ref().map(|v| (name, v)));
        }
    }
    all
}

/// Checks `spec.discovery`, reporting each broken rule.
pub(crate) fn check(spec: &DiscoverySpec, errors: &mut Vec<FieldError>) {
    let mut fail = |field: &str, message: String| {
        errors.push(FieldError {
            field: format!("spec.discovery.{field}").into(),
            message,
        });
    };
    if let Some(name) = &spec.service_name
        && (name.is_empty() || name.len() > 32 || !name.bytes().all(|b| (0x20..0x7f).contains(&b)))
    {
        fail(
            "serviceName",
            "must be 1 to 32 printable ASCII characters".into(),
        );
    }
    if spec.tags.len() > MAX_TAGS {
        fail("tags", format!("at most {MAX_TAGS}"));
    }
    for (i, tag) in spec.tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > 32 || tag.chars().any(char::is_control) {
            fail(&format!("tags[{i}]"), "must be 1 to 32 characters".into());
        } else if spec.tags[..i].contains(tag) {
            fail(&format!("tags[{i}]"), format!("{tag:?} is listed twice"));
        }
    }
    if let Some(icon) = &spec.icon_url {
        let ok = url::Url::parse(icon).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
        });
        if !ok || icon.len() > 2048 {
            fail(
                "iconUrl",
                "must be an http(s) URL without credentials".into(),
            );
        }
    }
    for (field, value) in documents(spec) {
        if serde_json::to_vec(value).map_or(0, |v| v.len()) > MAX_SCHEMA_BYTES {
            fail(field, format!("is larger than {MAX_SCHEMA_BYTES} bytes"));
        } else if !value.is_object() {
            fail(field, "must be a JSON object".into());
        } else if field != "input.example"
            && field != "output.example"
            && has_external_reference(value)
        {
            fail(
                field,
                "$ref and $id must point inside the document (\"#…\")".into(),
            );
        }
    }
    if let Some(input) = &spec.input {
        let method = input.method.as_deref().unwrap_or("GET");
        let query = QUERY_METHODS.contains(&method);
        if !query && !BODY_METHODS.contains(&method) {
            fail(
                "input.method",
                format!(
                    "{method:?} is not one of {}",
                    [QUERY_METHODS, BODY_METHODS].concat().join(", ")
                ),
            );
        } else if query && (input.body.is_some() || input.body_type.is_some()) {
            fail(
                "input.body",
                format!("{method} calls send query parameters, not a body"),
            );
        } else if !query && input.query_params.is_some() {
            fail(
                "input.queryParams",
                format!("{method} calls send a body; describe it in input.body"),
            );
        }
        if let Some(body_type) = &input.body_type
            && !BODY_TYPES.contains(&body_type.as_str())
        {
            fail(
                "input.bodyType",
                format!("{body_type:?} is not one of {}", BODY_TYPES.join(", ")),
            );
        }
    }
}

/// The chat-completions call of an inference offer serving `model`.
fn chat_input(model: &str) -> InputSpec {
    InputSpec {
        method: Some("POST".into()),
        body_type: Some("json".into()),
        body: Some(json!({
            "type": "object",
            "properties": {
                "model": {"type": "string", "const": model},
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
                            "content": {"type": "string"}
                        },
                        "required": ["role", "content"]
                    }
                },
                "max_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0},
                "stream": {"type": "boolean"}
            },
            "required": ["model", "messages"]
        })),
        example: Some(json!({"model": model, "messages": [{"role": "user", "content": "Hello!"}]})),
        ..InputSpec::default()
    }
}

/// The chat-completions answer of an inference offer serving `model`.
fn chat_output(model: &str) -> OutputSpec {
    OutputSpec {
        type_: Some("json".into()),
        example: Some(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi! How can I help?"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}
        })),
        schema: None,
    }
}

/// The offer's input and output, declared or (inference) the chat-completions defaults;
/// `None` when it describes no input.
pub fn effective_io(offer: &ServiceOffer) -> Option<(InputSpec, Option<OutputSpec>)> {
    if offer.spec.type_ == OfferType::Mcp {
        // Each tool describes itself (crate::mcp::listing::bazaar).
        return None;
    }
    let declared = offer.spec.discovery.as_ref();
    let model = offer.spec.model.as_ref().map(|m| m.name.as_str());
    let input = match (declared.and_then(|d| d.input.clone()), model) {
        (Some(input), _) => input,
        (None, Some(model)) if offer.spec.type_ == OfferType::Inference => chat_input(model),
        (None, _) => declared.map(|_| InputSpec::default())?,
    };
    let output = match (declared.and_then(|d| d.output.clone()), model) {
        (Some(output), _) => Some(output),
        (None, Some(model)) if offer.spec.type_ == OfferType::Inference => Some(chat_output(model)),
        (None, _) => None,
    };
    Some((input, output))
}

/// The offer's Bazaar extension, `None` for an offer that describes nothing.
pub fn bazaar(offer: &ServiceOffer) -> Option<Value> {
    let (input, output) = effective_io(offer)?;
    let method = method(Some(&input), offer.spec.type_);
    let mut info_input = Map::new();
    info_input.insert("type".into(), "http".into());
    info_input.insert("method".into(), method.clone().into());
    let mut schema_input = Map::new();
    schema_input.insert("type".into(), json!({"type": "string", "const": "http"}));
    let schema_of = |s: &Option<Value>| {
        let mut schema = json!({"type": "object"});
        if let (Some(Value::Object(given)), Value::Object(out)) = (s, &mut schema) {
            out.extend(given.clone());
        }
        schema
    };
    let example = input.example.clone().unwrap_or_else(|| json!({}));
    let required = if BODY_METHODS.contains(&method.as_str()) {
        let body_type = input.body_type.clone().unwrap_or_else(|| "json".into());
        info_input.insert("bodyType".into(), body_type.into());
        info_input.insert("body".into(), example);
        schema_input.insert(
            "method".into(),
            json!({"type": "string", "enum": BODY_METHODS}),
        );
        schema_input.insert(
            "bodyType".into(),
            json!({"type": "string", "enum": BODY_TYPES}),
        );
        schema_input.insert("body".into(), schema_of(&input.body));
        json!(["type", "method", "bodyType", "body"])
    } else {
        info_input.insert("queryParams".into(), example);
        schema_input.insert(
            "method".into(),
            json!({"type": "string", "enum": QUERY_METHODS}),
        );
        schema_input.insert("queryParams".into(), schema_of(&input.query_params));
        json!(["type", "method"])
    };
    if let Some(headers) = &input.headers {
        schema_input.insert("headers".into(), schema_of(&Some(headers.clone())));
    }
    let mut info = json!({"input": info_input});
    let mut properties = json!({
        "input": {"type": "object", "properties": schema_input, "required": required, "additionalProperties": false}
    });
    if let Some(example) = output.as_ref().and_then(|o| o.example.clone()) {
        let output = output.as_ref();
        let type_ = output
            .and_then(|o| o.type_.clone())
            .unwrap_or_else(|| "json".into());
        info["output"] = json!({"type": type_, "example": example});
        properties["output"] = json!({
            "type": "object",
            "properties": {"type": {"type": "string"}, "example": schema_of(&output.and_then(|o| o.schema.clone()))},
            "required": ["type"]
        });
    }
    Some(json!({
        "info": info,
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": ["input"]
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::offer;

    fn with(discovery: Value) -> ServiceOffer {
        let mut o = offer();
        o.spec.discovery = Some(serde_json::from_value(discovery).unwrap());
        o
    }

    fn fields(o: &ServiceOffer) -> Vec<String> {
        let mut errors = Vec::new();
        check(o.spec.discovery.as_ref().unwrap(), &mut errors);
        errors.into_iter().map(|e| e.field.into_owned()).collect()
    }

    #[test]
    fn a_query_api_becomes_a_query_extension() {
        let o = with(json!({
            "serviceName": "Weather", "tags": ["weather", "forecast"],
            "input": {"queryParams": {"properties": {"city": {"type": "string"}}, "required": ["city"]}, "example": {"city": "Oslo"}},
            "output": {"example": {"temp": 4}, "schema": {"properties": {"temp": {"type": "number"}}}}
        }));
        assert!(fields(&o).is_empty());
        let ext = bazaar(&o).unwrap();
        assert_eq!(
            ext["info"],
            json!({"input": {"type": "http", "method": "GET", "queryParams": {"city": "Oslo"}},
                   "output": {"type": "json", "example": {"temp": 4}}})
        );
        let input = &ext["schema"]["properties"]["input"]["properties"];
        assert_eq!(input["queryParams"]["required"], json!(["city"]));
        assert_eq!(input["queryParams"]["type"], "object");
    }

    #[test]
    fn inference_offers_describe_chat_completions_by_default() {
        let mut o = offer();
        o.spec.type_ = OfferType::Inference;
        o.spec.model = Some(crate::offer::ModelSpec {
            name: "qwen3:0.6b".into(),
            runtime: None,
        });
        let ext = bazaar(&o).unwrap();
        assert_eq!(ext["info"]["input"]["method"], "POST");
        assert_eq!(ext["info"]["input"]["bodyType"], "json");
        assert_eq!(ext["info"]["input"]["body"]["model"], "qwen3:0.6b");
        assert_eq!(
            ext["schema"]["properties"]["input"]["properties"]["body"]["properties"]["model"]["const"],
            "qwen3:0.6b"
        );
        assert_eq!(
            ext["info"]["output"]["example"]["object"],
            "chat.completion"
        );
        assert!(
            bazaar(&offer()).is_none(),
            "an http offer that describes nothing"
        );
    }

    #[test]
    fn bad_descriptions_name_their_field() {
        for (discovery, field) in [
            (
                json!({"serviceName": "x".repeat(33)}),
                "spec.discovery.serviceName",
            ),
            (
                json!({"tags": ["a", "b", "c", "d", "e", "f"]}),
                "spec.discovery.tags",
            ),
            (json!({"tags": ["a", "a"]}), "spec.discovery.tags[1]"),
            (
                json!({"iconUrl": "javascript:alert(1)"}),
                "spec.discovery.iconUrl",
            ),
            (
                json!({"iconUrl": "https://u:p@x.example/i.png"}),
                "spec.discovery.iconUrl",
            ),
            (
                json!({"input": {"method": "FETCH"}}),
                "spec.discovery.input.method",
            ),
            (
                json!({"input": {"method": "GET", "body": {}}}),
                "spec.discovery.input.body",
            ),
            (
                json!({"input": {"method": "POST", "queryParams": {}}}),
                "spec.discovery.input.queryParams",
            ),
            (
                json!({"input": {"method": "POST", "bodyType": "xml"}}),
                "spec.discovery.input.bodyType",
            ),
            (
                json!({"input": {"queryParams": {"$ref": "https://evil.example/s.json"}}}),
                "spec.discovery.input.queryParams",
            ),
            (
                json!({"input": {"queryParams": [1]}}),
                "spec.discovery.input.queryParams",
            ),
            (
                json!({"output": {"example": [1, 2]}}),
                "spec.discovery.output.example",
            ),
        ] {
            assert_eq!(fields(&with(discovery.clone())), [field], "{discovery}");
        }
        let same_document = with(
            json!({"input": {"queryParams": {"$defs": {"c": {"type": "string"}}, "properties": {"city": {"$ref": "#/$defs/c"}}}}}),
        );
        assert!(fields(&same_document).is_empty());
    }
}
