//! Code a buyer can copy from the storefront and run as shown: `curl` for the challenge,
//! `obol buy pay` to pay from the command line, and Python with the official x402 SDK (PyPI
//! `x402`, its httpx client) to pay from a program. Built from the offer's description: the
//! method, and the example query or body.

use serde_json::Value;

use crate::discovery::{BODY_METHODS, effective_io};
use crate::offer::{OfferType, ServiceOffer};

/// The URL, method and JSON body (body methods) of an example call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleCall {
    /// Absolute URL, with the example query for query methods.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// The example body, for body methods.
    pub body: Option<Value>,
}

/// The example call of `offer` at `endpoint` (its public URL).
pub fn example_call(offer: &ServiceOffer, endpoint: &str) -> ExampleCall {
    let io = effective_io(offer);
    let method = io
        .as_ref()
        .and_then(|(input, _)| input.method.clone())
        .unwrap_or_else(|| match offer.spec.type_ {
            OfferType::Http => "GET".into(),
            _ => "POST".into(),
        });
    let example = io.and_then(|(input, _)| input.example);
    let path = match offer.spec.type_ {
        OfferType::Inference | OfferType::Agent => "/v1/chat/completions",
        _ => "",
    };
    let mut url = format!("{endpoint}{path}");
    if BODY_METHODS.contains(&method.as_str()) {
        return ExampleCall {
            url,
            method,
            body: Some(example.unwrap_or_else(|| Value::Object(Default::default()))),
        };
    }
    if let Some(Value::Object(params)) = example {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| {
                let value = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                format!("{}={}", encode(k), encode(&value))
            })
            .collect();
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
    }
    ExampleCall {
        url,
        method,
        body: None,
    }
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A shell word in single quotes.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `curl` showing the 402 (the payment requirements) of the call.
pub fn curl(call: &ExampleCall) -> String {
    match &call.body {
        Some(body) => format!(
            "curl -i -X {} {} -H 'Content-Type: application/json' -d {}",
            call.method,
            quoted(&call.url),
            quoted(&body.to_string())
        ),
        None => format!("curl -i -X {} {}", call.method, quoted(&call.url)),
    }
}

/// Python paying the call with the official SDK; the key comes from `$PRIVATE_KEY`.
pub fn python(call: &ExampleCall) -> String {
    // JSON string literals are Python string literals too.
    let string = |text: &str| Value::String(text.to_owned()).to_string();
    let request = match &call.body {
        Some(body) => format!(
            "await http.request({}, {}, json={})",
            string(&call.method),
            string(&call.url),
            python_literal(body)
        ),
        None => format!(
            "await http.request({}, {})",
            string(&call.method),
            string(&call.url)
        ),
    };
    format!(
        r#"# pip install "x402[evm,httpx]"   then: PRIVATE_KEY=0x… python pay.py
import asyncio, os

from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner


async def main():
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(os.environ["PRIVATE_KEY"])))
    async with x402HttpxClient(client, timeout=60) as http:
        response = {request}
        print(response.status_code, response.text)


asyncio.run(main())
"#
    )
}

/// A JSON value as a Python literal (JSON, with Python's names for `true`, `false`, `null`).
fn python_literal(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(python_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validate::tests::offer;

    #[test]
    fn calls_follow_the_description() {
        let mut o = offer();
        o.spec.discovery = Some(
            serde_json::from_value(json!({"input": {"example": {"city": "São Paulo", "days": 3}}}))
                .unwrap(),
        );
        let call = example_call(&o, "https://s.example/services/echo");
        assert_eq!(
            call.url,
            "https://s.example/services/echo?city=S%C3%A3o+Paulo&days=3"
        );
        assert_eq!(
            curl(&call),
            "curl -i -X GET 'https://s.example/services/echo?city=S%C3%A3o+Paulo&days=3'"
        );
        assert!(python(&call).contains(
            r#"response = await http.request("GET", "https://s.example/services/echo?city=S%C3%A3o+Paulo&days=3")"#
        ));

        let mut llm = offer();
        llm.spec.type_ = OfferType::Inference;
        llm.spec.model = Some(crate::offer::ModelSpec {
            name: "m'1".into(),
            runtime: None,
        });
        let call = example_call(&llm, "https://s.example/services/llm");
        assert_eq!(
            call.url,
            "https://s.example/services/llm/v1/chat/completions"
        );
        assert_eq!(
            curl(&call),
            r#"curl -i -X POST 'https://s.example/services/llm/v1/chat/completions' -H 'Content-Type: application/json' -d '{"model":"m'\''1","messages":[{"role":"user","content":"Hello!"}]}'"#
        );
        assert!(python(&call).contains(
            r#"json={"model": "m'1", "messages": [{"role": "user", "content": "Hello!"}]})"#
        ));
        assert_eq!(
            python_literal(&json!({"a": [true, null, 1.5]})),
            r#"{"a": [True, None, 1.5]}"#
        );
    }
}
