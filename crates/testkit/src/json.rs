//! JSON documents as tests read them.

use serde_json::Value;

/// The string `key` of every element of the array `array`, in order.
///
/// # Panics
///
/// When `array` is not an array or an element's `key` is not a string.
pub fn strings<'a>(array: &'a Value, key: &str) -> Vec<&'a str> {
    array
        .as_array()
        .unwrap_or_else(|| panic!("an array: {array}"))
        .iter()
        .map(|element| {
            element[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} is a string in {element}"))
        })
        .collect()
}

/// The `error.message` of an error body: OpenAI-style (the buyer proxy's answers) or
/// JSON-RPC (MCP's).
///
/// # Panics
///
/// When the body has no such string.
pub fn error_message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("an error message in {body}"))
}
